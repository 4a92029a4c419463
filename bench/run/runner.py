"""Run one workload under one backend and write its result record: the library API that
`bench run` and the tests call. The only module that knows both workloads and backends."""

from __future__ import annotations

import dataclasses
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import workloads
from bench.core import gradients, precision, provenance, stats
from bench.core.config import RunConfig
from bench.core.errors import UsageError
from bench.core.record import RunRecord, checkpoint_epoch, latest_checkpoint, new_run_id, run_dir, write_csv
from bench.run import binding, cgroups
from bench.run.lifecycle import Lifecycle, Watchdog, error_line, one_line
import strategies
from strategies.base import BackendOptions


@dataclass
class RunResult:
    record: RunRecord
    path: Path              # record.json
    exit_code: int          # 0 ok, 1 failed, 128 + signal when interrupted
    written: bool = True    # False on non-chief ranks, which write nothing


def progress_of(verbose: int | str) -> int | str:
    """What the chief shows while it trains: "auto" is Keras' bar on a terminal and a line an
    epoch elsewhere (a job's log, a launcher's pipe: horovodrun's), where the bar is one
    unreadable line of escape codes."""
    if verbose == "auto":
        return 1 if sys.stdout.isatty() else "log"
    return verbose


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
    """Validate everything that can be checked before TensorFlow starts (nothing here imports it)."""
    cfg.validate()
    workload = workloads.get(cfg.workload)
    backend = strategies.run_class(cfg.strategy)()
    problem = backend.run_problem(cfg)
    if problem:
        raise UsageError(problem)
    return workload, backend, workloads.hyperparameters(cfg.workload, cfg.overrides)


def run(cfg: RunConfig, bound: binding.Binding | None = None) -> RunResult:
    """One run in this process; `bound`: the cores it was bound to before TensorFlow was
    imported (`bench run` binds first), else it binds now."""
    workload, backend, hp = prepare(cfg)
    bound = bind(cfg, backend, bound)
    topology = backend.setup(_backend_options(cfg))
    try:
        return _run(cfg, workload, backend, hp, topology, bound)
    finally:
        _end(cfg, backend)


def _end(cfg: RunConfig, backend) -> None:
    backend.teardown()
    if cfg.precision != "float32":
        precision.reset()       # a caller in this process (a study's retrain, a trial's worker) keeps float32


def _backend_options(cfg: RunConfig) -> BackendOptions:
    return BackendOptions(devices=cfg.devices, seed=cfg.seed, scale_lr=cfg.scale_lr,
                          dense_gradients=not cfg.sparse_gradients)


def replicas_in_process(cfg: RunConfig, backend) -> int:
    return (cfg.devices or 1) if backend.multi_device else 1


def bind(cfg: RunConfig, backend, bound: binding.Binding | None = None) -> binding.Binding:
    """This process's cores and thread pools, before TensorFlow initialises."""
    if bound is None:
        bound = binding.bind_process(replicas_in_process(cfg, backend), cfg.cpus_per_replica)
    if not binding.apply_to_tensorflow(bound):
        bound = dataclasses.replace(bound, source=f"{bound.source}; TensorFlow already running, pools unchanged")
    return bound


@dataclass
class _Run:
    """What one run holds while it trains: its parts, and what it measures."""
    cfg: RunConfig
    workload: Any
    backend: Any
    hp: dict
    topology: Any
    data: Any
    global_batch: int
    per_replica: int
    out: Path
    binding: binding.Binding
    timer: Any = None
    rank_cores: list | None = None      # every rank's cores, gathered to the chief

    @property
    def writer(self) -> bool:
        return self.topology.is_chief


def _run(cfg, workload, backend, hp, topology, bound: binding.Binding) -> RunResult:
    import keras
    from bench.run.sampler import ResourceSampler

    keras.utils.set_random_seed(cfg.seed)
    data = workload.load(cfg.data, cfg.data_dir, hp, cfg.seed)
    if cfg.merge_validation:
        _merge_validation(data)
    global_batch, per_replica = resolve_batch(cfg, workload, topology.num_replicas)
    resume_from = _resume_path(cfg.resume) if cfg.resume else None
    _check_options(cfg, workload, data)
    record = _start_record(cfg, workload, backend, hp, topology, data, global_batch, per_replica)
    state = _Run(cfg, workload, backend, hp, topology, data, global_batch, per_replica,
                 run_dir(cfg.results, record.run_id), bound)
    sampler = ResourceSampler(cfg.sample_interval_s)

    def measurements(record: RunRecord) -> None:
        _measurements(record, state.timer, sampler, workload, hp, global_batch, topology.num_replicas)
        record.host["binding"] = {**bound.to_record(), "process_cores": binding.process_cores(),
                                  "cpu_share": cgroups.read_share()}
        if state.rank_cores:
            record.host["rank_cores"] = state.rank_cores
        if topology.hosts:
            record.host["rank_hosts"] = topology.hosts
            record.host["rank_local_ranks"] = [topology.hosts[:rank].count(host) for rank, host in enumerate(topology.hosts)]
        if record.status == "failed" and topology.world_size > 1:
            lost = _lost_peers(record.error or "", topology.hosts)
            record.error = one_line("; ".join(filter(None, [lost, record.error])))
        if state.writer:
            _write_timeseries(state.out, state.timer, sampler)

    life = Lifecycle(cfg.results, record, writer=state.writer, before_write=measurements, discard_bad_input=True,
                     watchdog=_watchdog(state) if topology.world_size > 1 else None)
    with life, sampler:
        _train(state, record, life, resume_from)
    return RunResult(record, life.path, life.exit_code, written=state.writer)


def _lost_peers(error: str, hosts: list[str]) -> str:
    """Name the peers a collective lost: what Slurm says of the job's nodes (a dead node is
    noticed after its timeout), then the ranks the error came through (TensorFlow's task:N:
    with more than two ranks, the neighbour that saw the connection close, not necessarily
    the rank that died)."""
    from strategies.cluster import unresponsive_nodes
    ranks = sorted({int(n) for n in re.findall(r"task:(\d+)", error)})
    named = [f"rank {r} on {hosts[r]}" if r < len(hosts) else f"rank {r}" for r in ranks]
    through = ("lost " if len(hosts) <= 2 else "the error came through ") + ", ".join(named) if named else ""
    return "; ".join(filter(None, [unresponsive_nodes(), through]))


def _watchdog(state: _Run) -> Watchdog:
    """Multi-process runs: a rank blocked in a collective after a signal still gets its record."""

    def progress() -> tuple[float, float]:
        timer = state.timer
        return (timer.last_step_end, timer.longest_step) if timer is not None else (0.0, 0.0)
    return Watchdog(progress)


def _start_record(cfg, workload, backend, hp, topology, data, global_batch, per_replica) -> RunRecord:
    record = RunRecord(
        run_id=cfg.run_id or new_run_id(),
        workload=workload.name, strategy=backend.name, ranks_per_node=topology.ranks_per_node,
        data_source=data.source, data_location=data.location,
        world_size=topology.world_size, num_replicas=topology.num_replicas,
        devices=topology.local_devices, global_batch_size=global_batch,
        per_replica_batch_size=per_replica, config=cfg.to_dict(), hyperparameters=hp,
    )
    record.provenance = provenance.collect()
    record.extra.update(workload.record_extra(data))
    return record


def _train(state: _Run, record: RunRecord, life: Lifecycle, resume_from: Path | None) -> None:
    """Build, fit, evaluate; every rank takes the same branches (evaluate and gather are
    collectives)."""
    from bench.run import callbacks as cb
    cfg, workload, backend, hp, data = state.cfg, state.workload, state.backend, state.hp, state.data
    model, initial_epoch, record.extra["numerics"] = _build(state, resume_from)
    train, steps, validation = _datasets(state)
    state.timer = timer = cb.StepTimer(cfg.warmup_steps)
    agree = backend.any_rank if state.topology.world_size > 1 else None
    callbacks = [*backend.callbacks(), timer, cb.StopOnSignal(lambda: life.signals.received is not None, agree)]
    target = checkpoints = None
    if cfg.target_accuracy is not None:
        metric = ("val_" if validation is not None else "") + workload.monitor
        target = cb.TimeToTarget(metric, cfg.target_accuracy, lambda: timer.train_start, stop=cfg.stop_at_target)
        callbacks.append(target)
    if cfg.checkpoint_every and state.writer:
        checkpoints = cb.EpochCheckpoint(state.out / "checkpoints", cfg.checkpoint_every)
        callbacks.append(checkpoints)
    progress = progress_of(cfg.verbose) if state.writer else 0
    if progress == "log":
        callbacks.append(cb.ProgressLines(timer, cfg.epochs, steps, state.global_batch, initial_epoch))
    history = backend.fit(model, train, epochs=cfg.epochs, initial_epoch=initial_epoch, steps_per_epoch=steps,
                          validation_data=validation, callbacks=callbacks + workload.callbacks(hp),
                          verbose=0 if progress == "log" else progress, shuffle=False)
    interrupted = (agree or bool)(life.signals.received is not None)
    record.history = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    record.metrics = _final_metrics(record.history)
    if not interrupted:
        record.metrics.update(_test_metrics(state, model))
    if target is not None:
        record.metrics.update({"target_accuracy": cfg.target_accuracy, "target_metric": target.metric,
                               "time_to_target_s": target.seconds, "epochs_to_target": target.epoch})
    if checkpoints is not None:
        record.artifacts["checkpoints"] = str(state.out / "checkpoints")
        record.artifacts["last_checkpoint"] = checkpoints.saved[-1] if checkpoints.saved else None
    if cfg.export and state.writer and not interrupted:
        record.artifacts["export"] = str(_export(workload, model, data, hp, state.out))
    _timing(state, record, model)
    record.extra.update({**_trained_with(cfg, model), "parameters": int(model.count_params()),
                         "initial_epoch": initial_epoch})
    if backend.settings:
        record.extra["backend_settings"] = backend.settings
    if backend.allreduce:
        record.extra["allreduce"] = dict(backend.allreduce)
    if backend.multi_device and not backend.multi_process:
        record.extra["one_node"] = True         # one process over a node's devices: never more
    if interrupted:
        life.interrupted()      # this rank's signal, or a peer's
    elif not state.timer.timed:
        life.no_timed_steps(len(state.timer.rows), cfg.warmup_steps)
    else:
        life.ok()


def _build(state: _Run, resume_from: Path | None) -> tuple[Any, int, dict]:
    """The model under the backend's scope, its checkpoint restored (if any); the epoch to
    go on from; the numerics (dtype policy, TF32) it runs with."""
    cfg = state.cfg
    numerics = precision.apply(cfg.precision, cfg.tf32)
    with state.backend.scope():
        model = state.workload.build(state.data, state.hp, state.per_replica, jit_compile=cfg.jit)
        initial_epoch = _restore(model, resume_from) if resume_from else 0
        gradients.prepare_apply(model.optimizer, dense=not cfg.sparse_gradients)
    return model, initial_epoch, numerics


def _trained_with(cfg: RunConfig, model) -> dict[str, Any]:
    """How the model trains, as its record says: XLA, and the embeddings' gradients."""
    return {"jit_compile": bool(model.jit_compile), "embedding_gradients": "sparse" if cfg.sparse_gradients else "dense"}


def _datasets(state: _Run):
    """The training pipeline (as the backend feeds it: each process its replicas' rows of
    every global batch), the steps of an epoch (None: one pass), and validation. With a step
    count the pipeline repeats and fit() keeps one iterator across epochs: a new iterator per
    epoch cost MultiWorkerMirrored 10 s at every epoch's first step on the emulated nodes (a
    new distributed iterator)."""
    cfg, data, backend = state.cfg, state.data, state.backend
    steps = cfg.steps_per_epoch or (None if data.source != "synthetic"
                                    else state.workload.steps_per_epoch(data, state.global_batch))
    train = backend.distribute(_maker(state, "train", training=True, repeat=bool(steps)), state.global_batch)
    validation = None
    if data.source != "synthetic" and "val" in data.splits:
        validation = backend.distribute(_maker(state, "val", training=False), state.global_batch, training=False)
    return train, steps, validation


def _maker(state: _Run, split: str, training: bool, repeat: bool = False):
    """make(shard): the workload's pipeline of `split`, that shard's rows only."""
    def make(shard):
        return state.workload.dataset(state.data, split, state.global_batch, state.hp, state.cfg.seed,
                                      training=training, shard=shard, repeat=repeat)
    return make


def _test_metrics(state: _Run, model) -> dict[str, float]:
    if state.data.source == "synthetic" or "test" not in state.data.splits:
        return {}
    test = state.backend.distribute(_maker(state, "test", training=False), state.global_batch, training=False)
    return {f"test_{k}": v for k, v in state.backend.evaluate(model, test).items()}


def _timing(state: _Run, record: RunRecord, model) -> None:
    seconds = [row.seconds for row in state.timer.rows]
    if state.topology.world_size > 1:     # collectives: every rank takes part
        record.timing["rank_step_times_s"] = state.backend.gather(seconds)
        cores = state.backend.gather([float(core) for core in binding.process_cores()])
        state.rank_cores = [[int(core) for core in rank] for rank in cores]
    try:
        communication = state.backend.communication(model, state.timer.timed)
    except Exception as exc:      # every rank fails alike: the measurement, not the run
        communication = {"error": error_line(exc)}
    if communication:
        record.timing["communication"] = communication


def _merge_validation(data) -> None:
    """The validation split joins the training split (the full training set)."""
    import numpy as np
    import tensorflow as tf
    if "val" not in data.splits:
        return
    train, val = data.splits["train"], data.splits.pop("val")
    data.splits["train"] = tf.nest.map_structure(lambda a, b: np.concatenate([a, b]), train, val)
    data.info["train_samples"] = len(tf.nest.flatten(data.splits["train"])[0])


def _final_metrics(history: dict[str, list[float]]) -> dict[str, Any]:
    return {f"final_{k}": v[-1] for k, v in history.items() if v}


def _measurements(record, timer, sampler, workload, hp, global_batch, replicas) -> None:
    if timer is not None:
        timed = timer.timed
        record.timing.update({
            "warmup_steps": sum(1 for row in timer.rows if row.warmup),
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
    record.host = sampler.host_summary(since=timer.timed_start if timer is not None else None)


def _write_timeseries(out: Path, timer, sampler) -> None:
    if timer is not None:
        write_csv(out / "steps.csv", ["epoch", "step", "seconds", "warmup"],
                  ([row.epoch, row.step, f"{row.seconds:.6f}", int(row.warmup)] for row in timer.rows))
    write_csv(out / "host.csv", sampler.HOST_COLUMNS, sampler.host_rows)
    if sampler.gpu_rows:
        write_csv(out / "gpu.csv", sampler.GPU_COLUMNS, sampler.gpu_rows)


def _resume_path(resume: str) -> Path:
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
    try:
        _load_state(model, path)
    except (ValueError, OSError) as exc:
        raise UsageError(f"--resume {path}: does not fit this model ({exc})") from None
    return checkpoint_epoch(path)


def _load_state(model, path: Path) -> None:
    """Weights and optimizer state of a checkpoint into `model` (its optimizer built first)."""
    model.optimizer.build(model.trainable_variables)
    model.load_weights(path)


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


# --- a run an epoch at a time (a Ray trial: one iteration per call) ----------------------

class Session:
    """A run's model, data pipelines and step timer, built as `run` builds them (backend, binding,
    numerics, JIT, gradients, sharded input), trained one epoch per `epoch()` call. A Ray trial
    is one: PBT saves and restores it between iterations. Single-process backends only."""

    def __init__(self, cfg: RunConfig, data=None, bound: binding.Binding | None = None) -> None:
        import keras
        workload, backend, hp = prepare(cfg)
        bound = bind(cfg, backend, bound)
        topology = backend.setup(_backend_options(cfg))
        if topology.world_size > 1:
            _end(cfg, backend)
            raise UsageError(f"strategy {cfg.strategy!r}: a session trains in one process")
        try:
            keras.utils.set_random_seed(cfg.seed)
            data = data if data is not None else workload.load(cfg.data, cfg.data_dir, hp, cfg.seed)
            global_batch, per_replica = resolve_batch(cfg, workload, topology.num_replicas)
            self.state = _Run(cfg, workload, backend, hp, topology, data, global_batch, per_replica,
                              Path(cfg.results), bound)
            self.model, _, self.numerics = _build(self.state, None)
            self.train, self.steps, self.validation = _datasets(self.state)
        except BaseException:
            _end(cfg, backend)
            raise
        from bench.run.callbacks import StepTimer
        from bench.run.sampler import ResourceSampler
        self.state.timer = self.timer = StepTimer(cfg.warmup_steps)
        self.sampler = ResourceSampler(cfg.sample_interval_s)
        self.sampler.start()

    def epoch(self, epoch: int) -> dict[str, float]:
        """Train epoch `epoch` (1-based); its last metrics and the timing of its steps."""
        state, seen = self.state, len(self.timer.rows)
        history = state.backend.fit(self.model, self.train, epochs=epoch, initial_epoch=epoch - 1,
                                    steps_per_epoch=self.steps, validation_data=self.validation,
                                    callbacks=[self.timer, *state.workload.callbacks(state.hp)],
                                    verbose=0, shuffle=False)
        metrics = {k: float(v[-1]) for k, v in history.history.items()}
        timed = [row.seconds for row in self.timer.rows[seen:] if not row.warmup]
        metrics.update({"iteration_s": self.timer.epoch_times[-1] if self.timer.epoch_times else float("nan"),
                        "steps": len(self.timer.rows) - seen, "timed_steps": len(timed)})
        if timed:
            median = stats.step_time_summary(timed)["median_s"]
            metrics.update({"step_time_median_s": median, "samples_per_s": state.global_batch / median})
            tokens = state.workload.tokens_per_sample(state.hp)
            if tokens:
                metrics["tokens_per_s"] = state.global_batch * tokens / median
        return metrics

    def settings(self) -> dict[str, Any]:
        """What the run's record says of how it trained (as `run` records them)."""
        return {"numerics": self.numerics, **_trained_with(self.state.cfg, self.model)}

    def telemetry(self) -> dict[str, Any]:
        """The GPU (NVML) and host (psutil) summaries since the session began, as a run's record has
        them, with a sample taken now."""
        self.sampler.sample_now()
        return {"gpu": self.sampler.gpu_summary(), "host": self.sampler.host_summary()}

    def save(self, path: Path) -> None:
        self.model.save(path)

    def load(self, path: Path, learning_rate: float | None = None) -> None:
        """Weights and optimizer state of a `.keras` file saved by `save` into this model, which
        may have been built with other hyperparameters (PBT's exploit): a new dropout takes
        effect, and `learning_rate`, where given, replaces the file's."""
        _load_state(self.model, path)
        if learning_rate is not None:
            self.model.optimizer.learning_rate = learning_rate

    def close(self) -> None:
        self.sampler.stop()
        _end(self.state.cfg, self.state.backend)
