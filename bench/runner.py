"""Run one workload under one backend and write its result record: the library API that
`bench run` and the tests call. The only module that knows both workloads and backends."""

from __future__ import annotations

import os
import shutil
import signal
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import provenance, stats, workloads
from bench.config import RunConfig
from bench.errors import UsageError
from bench.hparams import for_workload, resolve
from bench.record import (STATUS_FAILED, STATUS_INTERRUPTED, STATUS_OK, RunRecord, new_run_id,
                          run_dir, utc_now, write_csv, write_record)
import strategies
from strategies.base import BackendOptions


@dataclass
class RunResult:
    record: RunRecord
    path: Path              # record.json
    exit_code: int          # 0 ok, 1 failed, 128 + signal when interrupted
    written: bool = True    # False on non-chief ranks, which write nothing


class _Signals:
    """SIGTERM (Slurm's time limit) and SIGINT end training after the current step;
    a second signal interrupts at once."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_Signals":
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.received is not None:
            # Interrupted: the record and the exit code are still to come. A further signal
            # (Slurm and launchers may send more) must not kill the process mid-write.
            for signum in self._previous:
                signal.signal(signum, lambda *args: None)
            return
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum


def resolve_batch(cfg: RunConfig, workload, replicas: int) -> tuple[int, int]:
    """(global, per-replica) batch sizes; the global batch must split evenly over replicas."""
    if cfg.per_replica_batch_size:
        return cfg.per_replica_batch_size * replicas, cfg.per_replica_batch_size
    global_batch = cfg.batch_size or workload.default_batch_size
    if global_batch % replicas:
        raise UsageError(f"global batch {global_batch} does not split over {replicas} replicas; "
                         "use a multiple or --per-replica-batch-size")
    return global_batch, global_batch // replicas


def prepare(cfg: RunConfig):
    """Validate everything that can be checked before TensorFlow starts."""
    cfg.validate()
    workload = workloads.get(cfg.workload)
    backend = strategies.get(cfg.strategy)
    overrides = for_workload(cfg.overrides, cfg.workload, set(workloads.names()))
    hp = resolve(workload.space, overrides, cfg.workload)
    return workload, backend, hp


def run(cfg: RunConfig) -> RunResult:
    workload, backend, hp = prepare(cfg)
    topology = backend.setup(BackendOptions(devices=cfg.devices, seed=cfg.seed, scale_lr=cfg.scale_lr))
    try:
        return _run(cfg, workload, backend, hp, topology)
    finally:
        backend.teardown()


def _run(cfg, workload, backend, hp, topology) -> RunResult:
    import keras
    from bench.sampler import ResourceSampler

    keras.utils.set_random_seed(cfg.seed)
    data = workload.load(cfg.data, cfg.data_dir, hp, cfg.seed)
    if cfg.merge_validation:
        _merge_validation(data)
    global_batch, per_replica = resolve_batch(cfg, workload, topology.num_replicas)
    resume_from = _resume_path(cfg.resume) if cfg.resume else None
    _check_options(cfg, workload, data)

    record = RunRecord(
        run_id=cfg.run_id or os.environ.get("DISTBENCH_RUN_ID") or new_run_id(),
        workload=workload.name, strategy=backend.name, ranks_per_node=topology.ranks_per_node,
        data_source=data.source, data_location=data.location,
        world_size=topology.world_size, num_replicas=topology.num_replicas,
        devices=topology.local_devices, global_batch_size=global_batch,
        per_replica_batch_size=per_replica, config=cfg.to_dict(), hyperparameters=hp,
    )
    out = run_dir(cfg.results, record.run_id)
    writer = topology.is_chief
    sampler = ResourceSampler(cfg.sample_interval_s)
    record.provenance = provenance.collect()
    record.extra.update(workload.record_extra(data))
    if writer:
        write_record(cfg.results, record)       # status "running": a killed job leaves a trace

    timer = _callbacks = None
    exit_code = 1
    t_start = time.perf_counter()
    with _Signals() as signals, sampler:
        try:
            from bench import callbacks as cb
            with backend.scope():
                model = workload.build(data, hp, per_replica, jit_compile=cfg.jit)
                initial_epoch = _restore(model, resume_from) if resume_from else 0
            train = workload.dataset(data, "train", global_batch, hp, cfg.seed, training=True)
            steps = cfg.steps_per_epoch or (None if data.source != "synthetic"
                                            else workload.steps_per_epoch(data, global_batch))
            if steps:
                train = train.repeat().take(steps)
            train = backend.prepare_dataset(train)
            validation = None
            if data.source != "synthetic" and "val" in data.splits:
                validation = backend.prepare_dataset(
                    workload.dataset(data, "val", global_batch, hp, cfg.seed, training=False), training=False)

            timer = cb.StepTimer(cfg.warmup_steps)
            agree = backend.any_rank if topology.world_size > 1 else None
            _callbacks = [timer, cb.StopOnSignal(lambda: signals.received is not None, agree)]
            target = None
            if cfg.target_accuracy is not None:
                metric = ("val_" if validation is not None else "") + workload.monitor
                target = cb.TimeToTarget(metric, cfg.target_accuracy, lambda: timer.train_start,
                                         stop=cfg.stop_at_target)
                _callbacks.append(target)
            checkpoints = None
            if cfg.checkpoint_every and writer:
                checkpoints = cb.EpochCheckpoint(out / "checkpoints", cfg.checkpoint_every)
                _callbacks.append(checkpoints)
            _callbacks += workload.callbacks(hp)

            history = backend.fit(model, train, epochs=cfg.epochs, initial_epoch=initial_epoch,
                                  validation_data=validation, callbacks=_callbacks,
                                  verbose=cfg.verbose if writer else 0, shuffle=False)
            # every rank must take the same branch below (evaluate is a collective)
            interrupted = (agree or bool)(signals.received is not None)
            record.history = {k: [float(v) for v in vals] for k, vals in history.history.items()}
            record.metrics = _final_metrics(record.history)
            if data.source != "synthetic" and "test" in data.splits and not interrupted:
                test = backend.prepare_dataset(
                    workload.dataset(data, "test", global_batch, hp, cfg.seed, training=False), training=False)
                values = model.evaluate(test, verbose=0, return_dict=True)
                record.metrics.update({f"test_{k}": float(v) for k, v in values.items()})
            if target is not None:
                record.metrics.update({"target_accuracy": cfg.target_accuracy, "target_metric": target.metric,
                                       "time_to_target_s": target.seconds, "epochs_to_target": target.epoch})
            if checkpoints is not None:
                record.artifacts["checkpoints"] = str(out / "checkpoints")
                record.artifacts["last_checkpoint"] = checkpoints.saved[-1] if checkpoints.saved else None
            if cfg.export and writer and not interrupted:
                record.artifacts["export"] = str(_export(workload, model, data, hp, out))
            if topology.world_size > 1:     # a collective: every rank takes part
                record.timing["rank_step_times_s"] = backend.gather([row[2] for row in timer.rows])
            communication = backend.communication(sum(row[2] for row in timer.rows))
            if communication:
                record.timing["communication"] = communication
            record.extra["jit_compile"] = bool(model.jit_compile)
            record.extra["parameters"] = int(model.count_params())
            record.extra["initial_epoch"] = initial_epoch
            if interrupted:
                signum = signals.received or signal.SIGTERM     # or a peer's signal
                record.status = STATUS_INTERRUPTED
                record.error = f"interrupted by {signal.Signals(signum).name}"
                exit_code = 128 + signum
            else:
                record.status, exit_code = STATUS_OK, 0
        except KeyboardInterrupt:
            record.status, record.error = STATUS_INTERRUPTED, "interrupted by a second signal"
            exit_code = 128 + (signals.received or signal.SIGINT)
        except UsageError:
            if writer:      # found before training (e.g. a checkpoint of another model): no run happened
                shutil.rmtree(out, ignore_errors=True)
            raise
        except Exception as exc:  # the record says why; the CLI prints one line
            record.status = STATUS_FAILED
            record.error = _one_line(f"{type(exc).__name__}: {_reason(exc)}")
            record.extra["traceback"] = traceback.format_exc(limit=-25)
            exit_code = 1
    record.finished_at = utc_now()
    record.timing["wall_s"] = time.perf_counter() - t_start
    _measurements(record, timer, sampler, workload, hp, global_batch, topology.num_replicas)
    path = out / "record.json"
    if writer:
        _write_timeseries(out, timer, sampler)
        path = write_record(cfg.results, record)
    return RunResult(record, path, exit_code, written=writer)


def _merge_validation(data) -> None:
    """The validation split joins the training split (the full training set)."""
    import numpy as np
    import tensorflow as tf
    if "val" not in data.splits:
        return
    train, val = data.splits["train"], data.splits.pop("val")
    data.splits["train"] = tf.nest.map_structure(lambda a, b: np.concatenate([a, b]), train, val)
    data.info["train_samples"] = len(tf.nest.flatten(data.splits["train"])[0])


def _reason(exc: Exception) -> str:
    """TensorFlow op errors put the cause after a trace of where the op was defined
    ("Detected at node ... defined at ..."); keep the cause."""
    text = str(exc)
    if "Detected at node" in text:
        lines = [line.strip() for line in text.splitlines()]
        tail = [line for line in lines[lines.index("") if "" in lines else 0:] if line]
        causes = [line for line in tail if not line.startswith(("File ", "[[", "Detected at node"))]
        return " ".join(causes[-4:]) if causes else text
    return text


def _one_line(text: str, limit: int = 400) -> str:
    """Errors end in one line of output: TensorFlow's can hold whole tensors."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _final_metrics(history: dict[str, list[float]]) -> dict[str, Any]:
    return {f"final_{k}": v[-1] for k, v in history.items() if v}


def _measurements(record, timer, sampler, workload, hp, global_batch, replicas) -> None:
    if timer is not None:
        timed = timer.timed
        record.timing.update({
            "warmup_steps": sum(1 for row in timer.rows if row[3]),
            "steps": len(timer.rows),
            "step_time": stats.step_time_summary(timed),
            "epoch_times_s": timer.epoch_times,
            "epoch_train_times_s": timer.epoch_train_times,
            "train_s": sum(timer.epoch_times),
        })
        record.throughput = stats.throughput(timed, global_batch, replicas,
                                             workload.tokens_per_sample(hp))
        ranks = record.timing.get("rank_step_times_s")
        if ranks:
            warm = record.timing["warmup_steps"]
            record.timing["per_rank_step_time"] = [stats.step_time_summary(times[warm:]) for times in ranks]
    record.gpu = sampler.gpu_summary()
    record.host = sampler.host_summary()


def _write_timeseries(out: Path, timer, sampler) -> None:
    if timer is not None:
        write_csv(out / "steps.csv", ["epoch", "step", "seconds", "warmup"],
                  ([e, s, f"{t:.6f}", int(w)] for e, s, t, w in timer.rows))
    write_csv(out / "host.csv", sampler.HOST_COLUMNS, sampler.host_rows)
    if sampler.gpu_rows:
        write_csv(out / "gpu.csv", sampler.GPU_COLUMNS, sampler.gpu_rows)


def _resume_path(resume: str) -> Path:
    from bench.callbacks import checkpoint_epoch, latest_checkpoint
    path = Path(resume)
    if path.is_dir():
        found = latest_checkpoint(path / "checkpoints") or latest_checkpoint(path)
        if found is None:
            raise UsageError(f"--resume {resume}: no epoch-NNNN.weights.h5 checkpoint in it")
        return found
    try:
        checkpoint_epoch(path)
    except ValueError as exc:
        raise UsageError(f"--resume {exc}") from None
    return path


def _restore(model, path: Path) -> int:
    """Load model and optimizer state; returns the epoch to continue from."""
    from bench.callbacks import checkpoint_epoch
    model.optimizer.build(model.trainable_variables)
    try:
        model.load_weights(path)
    except (ValueError, OSError) as exc:
        raise UsageError(f"--resume {path}: does not fit this model ({exc})") from None
    return checkpoint_epoch(path)


def _check_options(cfg: RunConfig, workload, data) -> None:
    """Options that depend on the workload or data, checked before anything is written."""
    if cfg.target_accuracy is not None and not workload.monitor:
        raise UsageError(f"--target-accuracy: workload {workload.name!r} reports no accuracy")
    if cfg.export and not hasattr(workload, "export_generator"):   # only the char-RNNs generate
        raise UsageError(f"--export: workload {workload.name!r} has no exportable generator")
    if cfg.export and data.source == "synthetic":
        raise UsageError("--export: synthetic data has no vocabulary to generate text with")


def _export(workload, model, data, hp, out: Path) -> Path:
    return workload.export_generator(model, data, hp, out / "export")
