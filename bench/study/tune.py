"""Studies of trials under Ray Tune: Population Based Training and hyperparameter search,
for any registered workload. The library API behind `bench tune pbt|search`.

Every study writes a study record (kind "study") and one record per trial (kind "trial")
into the results directory, in the run records' schema; Ray's own files go to
``<results>/<study_id>/ray``. A training iteration is one epoch (or --steps-per-iteration
steps); every iteration reports its metrics and step timing with a `.keras` checkpoint,
which PBT restores into another trial when that trial exploits this one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import workloads
from bench.core import provenance, startup
from bench.core.config import StudyConfig, from_dict
from bench.core.errors import UsageError
from bench.core.hparams import check_applies, for_workload, resolve
from bench.core.record import STATUS_FAILED, STATUS_INTERRUPTED, STATUS_OK, RunRecord, new_run_id
from bench.core.space import Dimension, clamp_config, parse_space
from bench.run.lifecycle import Lifecycle, error_line, finish
from strategies.raytune import RayTuneBackend

# Fault injection for testing failure handling: "<trial index>@<iteration>" makes that trial raise.
FAULT_ENV = "DISTBENCH_TRIAL_FAULT"


@dataclass
class StudyResult:
    record: RunRecord
    path: Path
    trials: list[RunRecord]
    retrain: RunRecord | None
    exit_code: int


def plan(cfg: StudyConfig):
    """Everything that can be checked before Ray starts: (workload, fixed hp, dimensions)."""
    cfg.validate()
    if cfg.ray == "slurm":
        from strategies import ray_slurm
        ray_slurm.allocation()      # inside an allocation, with readable Slurm variables
    workload = workloads.get(cfg.workload)
    fixed = resolve(workload.space, for_workload(cfg.overrides, cfg.workload, set(workloads.names())),
                    cfg.workload)
    pbt = cfg.scheduler == "pbt"
    entries = cfg.space or (workload.tune_mutations if pbt else workload.tune_space)
    if not entries:
        raise UsageError(f"{cfg.workload}: no default {'mutations' if pbt else 'search space'}; give --space")
    dimensions = parse_space(entries, workload.space, cfg.workload, mutations=pbt)
    for name in dimensions:
        condition = workload.space[name].only_with
        if condition and condition[0] not in dimensions:
            check_applies(workload.space, name, fixed)
    if pbt and not workload.monitor:
        raise UsageError(f"pbt: {cfg.workload} reports no accuracy to rank trials by")
    return workload, fixed, dimensions


def metric_of(workload) -> tuple[str, str]:
    """Mean validation accuracy; the loss for workloads without accuracy (the char-RNNs,
    which have no validation split either, as in the tutorials)."""
    return ("mean_accuracy", "max") if workload.monitor else ("loss", "min")


def run_study(cfg: StudyConfig) -> StudyResult:
    workload, fixed, dimensions = plan(cfg)
    # Missing or corrupt data ends the study here, in one line, before anything is written;
    # the trials then share this copy through Ray's object store.
    data = workload.load(cfg.data, cfg.data_dir, fixed, cfg.seed)
    if cfg.ray in ("slurm", "local"):       # clusters of this study's own: a token of its own (without
        from strategies import ray_slurm    # one a local Ray 2.60 warns on every start), before Ray is imported
        ray_slurm.prepare_environment()
    from strategies import raytune
    raytune.require_ray()
    study_id = cfg.study_id = cfg.study_id or new_run_id(cfg.scheduler)
    # trials run in their own directories: paths handed to them must not be relative
    cfg.results = str(Path(cfg.results).resolve())
    cfg.data_dir = str(Path(cfg.data_dir).resolve()) if cfg.data_dir else None
    metric, mode = metric_of(workload)
    record = RunRecord(run_id=study_id, workload=cfg.workload, strategy=RayTuneBackend.name, kind="study",
                       data_source=cfg.data, config=cfg.to_dict(), hyperparameters=fixed,
                       global_batch_size=cfg.batch_size or workload.default_batch_size)
    record.provenance = provenance.collect()
    record.extra.update({"scheduler": cfg.scheduler, "metric": metric, "mode": mode,
                         "space": {n: d.text() for n, d in dimensions.items()}})
    storage = Path(cfg.results) / study_id / "ray"
    record.artifacts["ray_storage"] = str(storage)
    record.artifacts["ray_logs"] = str(storage.parent / "ray-logs")
    trials: list[RunRecord] = []
    retrained = None
    with Lifecycle(cfg.results, record, on_first_signal=_stop_ray_tune) as life:
        with raytune.session(cfg.ray, cfg.num_cpus, verbose=bool(cfg.verbose), logs=storage.parent / "ray-logs") \
                as ray_info, _ray_sigint_off():
            # after ray.init, which installs a SIGTERM handler of its own
            life.signals.install()
            record.extra["ray"] = ray_info
            shared = None if set(dimensions) & set(workload.load_hparams) else data
            grid = _fit(cfg, workload, fixed, dimensions, metric, mode, storage, study_id, shared)
            trials = _trial_records(cfg, grid, study_id, metric, mode, record.provenance,
                                    life.signals.received is not None)
        _summarise(record, trials, metric, mode, raytune.perturbation_log(storage / study_id))
        if life.signals.received:
            life.interrupted()
        else:
            retrained = _conclude(cfg, record, life, storage, study_id)
    return StudyResult(record, life.path, trials, retrained, life.exit_code)


def _conclude(cfg: StudyConfig, record: RunRecord, life: Lifecycle, storage: Path,
              study_id: str) -> RunRecord | None:
    """A study that ran to its end: checkpoints pruned, the best config retrained (search)."""
    from strategies import raytune
    retrained = None
    record.extra["checkpoints_pruned"] = raytune.prune_checkpoints(storage / study_id)
    if cfg.scheduler == "search" and cfg.retrain and record.metrics.get("best_trial"):
        retrained = _retrain(cfg, record.hyperparameters, study_id)
        record.metrics.update({f"retrain_{k}": v for k, v in retrained.metrics.items() if k.startswith("test_")})
        record.artifacts["retrain_record"] = retrained.run_id
    if record.metrics.get("best_trial") is not None:
        life.ok()
    else:
        life.failed("no trial finished an iteration")
    return retrained


def describe(result: StudyResult) -> str:
    """A few lines for the terminal: the trials, the best configuration and score."""
    record, metric = result.record, result.record.extra.get("metric", "score")
    lines = []
    for trial in result.trials:
        score = trial.metrics.get(f"best_{metric}")
        shown = f"{score:.4f}" if isinstance(score, float) else "-"
        exploits = sum(e["type"] == "exploit" for e in trial.extra.get("events", []))
        lines.append(f"  {trial.extra['trial_id']:<14} {trial.status:<7} best {metric} {shown}"
                     f"{f'  exploits {exploits}' if exploits else ''}{'  ' + trial.error if trial.error else ''}")
    m = record.metrics
    lines.append(f"{record.kind} {record.run_id}: {record.status}"
                 + (f" ({record.error})" if record.error else "")
                 + f", {m.get('trials', 0)} trials ({m.get('trials_failed', 0)} failed), "
                 f"{m.get('perturbations', 0)} perturbations, {record.timing.get('wall_s', 0):.0f} s")
    if m.get("best_trial"):
        lines.append(f"best {metric} {m[f'best_{metric}']:.4f}: {json.dumps(record.hyperparameters, sort_keys=True)}")
    if "retrain_test_accuracy" in m:
        lines.append(f"best config retrained on train+val: test accuracy {m['retrain_test_accuracy']:.4f}")
    return "\n".join(lines)


def _stop_ray_tune(signum: int) -> None:
    """The first SIGTERM (Slurm's time limit, scancel) or SIGINT (Ctrl-C) is passed to Ray
    Tune as SIGUSR1, its graceful stop: the trials stop and return what they reported, so
    the trial records are still written, and the study knows it was interrupted. (Ray's own
    SIGINT handler stops the same way but leaves no trace: the study looked finished.)
    Before Ray Tune runs there is nothing to stop gracefully: stop waiting."""
    if callable(signal.getsignal(signal.SIGUSR1)):
        os.kill(os.getpid(), signal.SIGUSR1)
    else:
        raise KeyboardInterrupt


@contextlib.contextmanager
def _ray_sigint_off():
    """Ray Tune's own SIGINT handler off while the study runs (ours passes it on)."""
    previous = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = previous


def _fit(cfg, workload, fixed, dimensions, metric, mode, storage, study_id, data):
    import random
    from ray import tune
    from ray.tune.search import BasicVariantGenerator
    from strategies import raytune
    random.seed(cfg.seed)       # PBT draws its perturbations from `random`
    param_space: dict[str, Any] = dict(fixed)
    scheduler = None
    if cfg.scheduler == "pbt":
        # As in the course study, every trial starts from the same values and PBT explores.
        explore = _Explore(dimensions, workload.space)
        scheduler = raytune.pbt_scheduler(dimensions, explore, cfg.perturbation_interval, cfg.synch,
                                          cfg.quantile_fraction)
    else:
        param_space.update({name: raytune.search_domain(d) for name, d in dimensions.items()})
        if cfg.asha:
            scheduler = raytune.asha_scheduler(cfg.epochs)
    trainable = tune.with_parameters(_trial, study=cfg.to_dict(), data=data)
    return raytune.run_study(
        trainable, param_space, name=study_id, storage=storage, metric=metric, mode=mode,
        samples=cfg.samples, iterations=cfg.epochs, scheduler=scheduler,
        search=BasicVariantGenerator(random_state=cfg.seed),
        cpus_per_trial=cfg.cpus_per_trial, gpus_per_trial=cfg.gpus_per_trial,
        reuse_actors=cfg.scheduler == "pbt" and cfg.reuse_workers, verbose=cfg.verbose)


class _Explore:
    """PBT's custom explore function: perturbed values clamped to the declared and valid
    ranges. A class, not a closure, so that Ray can pickle it."""

    def __init__(self, dimensions: dict[str, Dimension], hparams) -> None:
        self.dimensions, self.hparams = dimensions, dict(hparams)

    def __call__(self, config: dict) -> dict:
        return clamp_config(config, self.dimensions, self.hparams)


# --- one trial (runs in a Ray worker process) ------------------------------------------

def _trial(config: dict, study: dict, data=None) -> None:
    """One trial: the study's run (bench.run.runner.Session, as `bench run` builds it) trained an
    iteration (epoch) at a time, each reported to Ray with a checkpoint PBT may restore here or
    into another trial."""
    startup.import_tensorflow()         # keras' backend, without TensorFlow's native start-up lines
    import keras
    from bench.run import runner
    from strategies import raytune

    cfg = from_dict(StudyConfig, study, "study")
    keras.backend.clear_session()       # a reused worker process (PBT): the earlier trial's model goes
    trial_id, index, _ = raytune.trial_context()
    workload = workloads.get(cfg.workload)
    hp = resolve(workload.space, {k: _plain(v) for k, v in config.items() if k in workload.space}, cfg.workload)
    if data is None:        # the study searches a hyperparameter the data depends on
        data = workload.load(cfg.data, cfg.data_dir, hp, cfg.seed)
    session = runner.Session(cfg.trial_run(overrides=hp, seed=cfg.seed + index), data, _trial_binding(cfg))
    try:
        _iterations(cfg, session, trial_id, index, hp)
    finally:
        session.close()


def _trial_binding(cfg: StudyConfig):
    """Ray places trials on nodes, not on cores: a trial's threads are its --cpus-per-trial, unpinned."""
    from bench.run import binding
    threads = max(1, int(cfg.cpus_per_trial))
    return binding.Binding(tuple(binding.available_cores()), 1, "ray trial: --cpus-per-trial threads", threads, threads)


def _iterations(cfg: StudyConfig, session, trial_id: str, index: int, hp: dict) -> None:
    from strategies import raytune
    workload = session.state.workload
    start, restored = 0, {}
    with raytune.restored_checkpoint() as directory:
        if directory is not None:
            restored = json.loads((directory / "meta.json").read_text())
            session.load(directory / "model.keras", hp.get("learning_rate"))
            start = restored["iteration"]
    log = iteration_log(cfg.results, cfg.study_id, trial_id)
    fault = _fault(index)
    for iteration in range(start + 1, cfg.epochs + 1):
        if fault == iteration:
            raise RuntimeError(f"injected failure ({FAULT_ENV}) in trial {index} at iteration {iteration}")
        metrics = session.epoch(iteration)
        if workload.monitor:
            metrics["mean_accuracy"] = metrics.get(f"val_{workload.monitor}", metrics.get(workload.monitor))
        first = iteration == start + 1      # the restore, if any, happened before this one
        metrics.update({"iteration": iteration, "config_json": json.dumps(hp, sort_keys=True),
                        "restored_from_trial": restored.get("trial_id", "") if first else "",
                        "restored_from_iteration": restored.get("iteration", 0) if first else 0})
        _append_line(log, {**metrics, "trial_id": trial_id, "time": time.time(), "host": socket.gethostname(),
                           "pid": os.getpid(), "run_settings": session.settings(),
                           "telemetry": session.telemetry()})

        def write(directory: Path, iteration=iteration) -> None:
            session.save(directory / "model.keras")
            (directory / "meta.json").write_text(json.dumps(
                {"trial_id": trial_id, "iteration": iteration, "hyperparameters": hp}))
        raytune.report(metrics, write)


def iteration_log(results: str, study_id: str, trial_id: str) -> Path:
    """Each trial appends one JSON line per iteration here: Ray's own per-trial progress
    files can miss the iteration reported while PBT clones a trial."""
    return Path(results).resolve() / study_id / "trials" / f"{trial_id}.jsonl"


def _append_line(path: Path, values: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(values, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _read_iterations(path: Path) -> list[dict]:
    """The iterations of a trial's lineage: the latest line per iteration (a trial that
    exploits another continues from the other's iteration and may redo some)."""
    if not path.exists():
        return []
    rows: dict[int, dict] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:          # a line cut by a killed trial
            continue
        rows[int(row["iteration"])] = row
    return [rows[i] for i in sorted(rows)]


def _plain(value: Any) -> Any:
    """numpy scalars from Ray's samplers as Python values."""
    return value.item() if hasattr(value, "item") else value


def _fault(index: int) -> int | None:
    spec = os.environ.get(FAULT_ENV, "")
    trial, _, iteration = spec.partition("@")
    if spec and trial.isdigit() and iteration.isdigit() and int(trial) == index:
        return int(iteration)
    return None


# --- records ---------------------------------------------------------------------------

def _trial_records(cfg: StudyConfig, grid, study_id: str, metric: str, mode: str, provenance: dict,
                   interrupted: bool = False) -> list[RunRecord]:
    records = []
    for result in grid:
        record = _trial_record(cfg, result, study_id, metric, mode)
        # the driver's (versions, git sha, SLURM_*): a trial may run on another node of the job
        record.provenance = provenance
        record.extra["provenance_of"] = "study driver"
        if interrupted and record.status == STATUS_OK and record.metrics.get("iterations", 0) < cfg.epochs:
            record.status, record.error = STATUS_INTERRUPTED, "the study was interrupted"
        finish(cfg.results, record)
        records.append(record)
    return records


def _trial_record(cfg, result, study_id, metric, mode) -> RunRecord:
    batch = cfg.batch_size or workloads.get(cfg.workload).default_batch_size
    # from the trial's directory: after an exploit, PBT hands a trial the last result of the
    # trial it cloned, trial id included
    trial_id = Path(result.path).name       # strategies.raytune.trial_directory
    rows = _read_iterations(iteration_log(cfg.results, study_id, trial_id))
    record = RunRecord(run_id=f"{study_id}-{trial_id}", workload=cfg.workload, strategy=RayTuneBackend.name,
                       kind="trial", data_source=cfg.data, global_batch_size=batch,
                       per_replica_batch_size=batch, config={"study_id": study_id})
    record.hyperparameters = {k: _plain(v) for k, v in result.config.items()}
    record.extra.update({"study_id": study_id, "trial_id": trial_id, "path": str(result.path)})
    record.extra["config_history"], record.extra["events"] = _history_and_events(rows)
    record.extra.update(rows[-1].get("run_settings", {}) if rows else {})    # numerics, JIT, gradients
    telemetry = rows[-1].get("telemetry", {}) if rows else {}     # the last process the trial ran in
    record.gpu, record.host = telemetry.get("gpu", record.gpu), telemetry.get("host", record.host)
    keys = ["loss", "val_loss", "accuracy", "val_accuracy", "mean_accuracy", "iteration_s",
            "step_time_median_s", "samples_per_s", "tokens_per_s"]
    record.history = {k: [float(row[k]) for row in rows if _number(row.get(k))] for k in keys
                      if any(_number(row.get(k)) for row in rows)}
    scores = record.history.get(metric, [])
    if scores:
        record.metrics = {f"final_{metric}": scores[-1],
                          f"best_{metric}": max(scores) if mode == "max" else min(scores),
                          "iterations": int(rows[-1]["iteration"])}
    steps = record.history.get("step_time_median_s", [])
    if steps:
        record.timing["step_time"] = {"median_s": statistics.median(steps), "per_iteration_median_s": steps}
        record.throughput["samples_per_s"] = statistics.median(record.history["samples_per_s"])
    record.timing["train_s"] = float(sum(record.history.get("iteration_s", [])))
    if result.error is not None:
        cause = getattr(result.error, "cause", None) or result.error   # Ray wraps the trial's exception
        record.status = STATUS_FAILED
        record.error = error_line(cause)
        record.extra["traceback"] = str(result.error)[-4000:]
    else:
        record.status = STATUS_OK
    return record


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value))


def _history_and_events(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """The hyperparameters per stretch of iterations, and every restore of a checkpoint
    (an exploit when the checkpoint came from another trial)."""
    history, events, previous = [], [], None
    for row in rows:
        config = json.loads(row.get("config_json") or "{}")
        if config != previous:
            history.append({"from_iteration": int(row["iteration"]), "hyperparameters": config})
        source = row.get("restored_from_trial")
        if isinstance(source, str) and source:
            own = row.get("trial_id")
            events.append({"type": "restore" if source == own else "exploit",
                           "iteration": int(row["iteration"]), "from_trial": source,
                           "from_iteration": int(row["restored_from_iteration"]),
                           "old_hyperparameters": previous, "new_hyperparameters": config})
        previous = config
    return history, events


def _summarise(record: RunRecord, trials: list[RunRecord], metric: str, mode: str,
               perturbations: list) -> None:
    finished = [t for t in trials if f"best_{metric}" in t.metrics]
    pick = max if mode == "max" else min
    best = pick(finished, key=lambda t: t.metrics[f"best_{metric}"]) if finished else None
    record.metrics.update({
        "trials": len(trials), "trials_failed": sum(t.status == STATUS_FAILED for t in trials),
        "perturbations": len(perturbations),
        "exploits": sum(e["type"] == "exploit" for t in trials for e in t.extra["events"]),
        "best_trial": best.run_id if best else None,
        f"best_{metric}": best.metrics[f"best_{metric}"] if best else None,
    })
    record.extra["trial_records"] = [t.run_id for t in trials]
    record.extra["perturbation_log"] = perturbations
    if best:
        history = best.extra["config_history"]
        record.hyperparameters = history[-1]["hyperparameters"] if history else best.hyperparameters


def _retrain(cfg: StudyConfig, hyperparameters: dict, study_id: str) -> RunRecord:
    """The best configuration trained afresh on training + validation data, then tested."""
    from bench.run.runner import run
    result = run(cfg.trial_run(overrides=dict(hyperparameters), merge_validation=True, run_id=f"{study_id}-retrain"))
    result.record.extra["study_id"] = study_id
    finish(cfg.results, result.record)
    return result.record
