"""`ray`: Ray Tune studies of trials (Population Based Training and hyperparameter search).

Here the unit of work is a study. This module knows Ray and nothing of workloads: the
caller hands it a trainable (a function of a config), the space as `bench.core.space`
dimensions, and gets Ray's ResultGrid back. Trials call `trial_context`, `restored_checkpoint`
and `report` from inside the trainable.

Ray sessions: `local` starts a Ray with the CPUs given; `auto` joins a running cluster
(RAY_ADDRESS or `ray start` on this node); `slurm` starts a head on this node and workers on
the other nodes of the allocation with srun (see strategies/ray_slurm.py).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
import shlex
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from bench.core.config import STUDY_CONFIG_ENV, StudyConfig
from bench.core.errors import UsageError
from bench.core.space import Dimension
from strategies.base import Backend, Placement

ADDRESSES = ("local", "auto", "slurm")


class RayTuneBackend(Backend):
    """A study backend: its unit of work is a study of trials (`bench tune`), not one run.
    In a scaling-study job the batch script itself drives the study: `--ray slurm` starts a
    Ray head here and workers on the other nodes, one trial per GPU with the per-GPU batch."""
    name = "ray"
    kind = "study"
    description = "Ray Tune studies: Population Based Training and hyperparameter search (bench tune)"

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """Installed, seen without importing Ray (`bench list` answers at once); `require_ray`
        imports it."""
        if importlib.util.find_spec("ray") is None:
            return False, "ray[tune] not installed; install with EXTRAS=...,ray"
        return True, ""

    @classmethod
    def node_check(cls) -> tuple[str, str]:
        try:
            return "ok", importlib.metadata.version("ray")
        except importlib.metadata.PackageNotFoundError:
            return "warning", "not installed (bench tune needs EXTRAS=...,ray)"

    @classmethod
    def launch_problem(cls, placement: Placement, cfg) -> str | None:
        if cfg.batch_size and cfg.batch_size % placement.gpus:
            return f"the global batch {cfg.batch_size} does not split over {placement.gpus} trials"
        return None

    @classmethod
    def sbatch_lines(cls, placement: Placement, cfg) -> list[str]:
        """The study as data (DISTBENCH_STUDY_CONFIG), as a run job hands its RunConfig: a trial
        per GPU, each as the matrix's run would be (precision, TF32, JIT, data, --set)."""
        scheduler = placement.option("tune", "search")
        study = StudyConfig.of_run(
            cfg, scheduler=scheduler, samples=placement.gpus, ray="slurm",
            batch_size=cfg.per_replica_batch_size or cfg.batch_size // placement.gpus,
            **({"gpus_per_trial": 1} if placement.gpu_nodes else {"cpus_per_trial": placement.cpus_per_gpu}))
        if scheduler == "search":       # trials differ in learning rate only: the same step time
            study.space, study.retrain = {"learning_rate": "loguniform(0.0001, 0.01)"}, False
        return [f"export {STUDY_CONFIG_ENV}={shlex.quote(study.to_json(changed_only=True))}",
                f"bench tune {scheduler} {shlex.quote(cfg.workload)}"]


def require_ray() -> None:
    try:
        import ray.tune  # noqa: F401
    except ImportError as exc:
        from strategies.base import unavailable
        raise unavailable("ray", f"ray[tune] not installed ({exc}); install with EXTRAS=...,ray") from None


@contextlib.contextmanager
def session(address: str = "local", num_cpus: int | None = None, num_gpus: int | None = None,
            verbose: bool = False, logs: Path | None = None) -> Iterator[dict[str, Any]]:
    """A Ray session for one study; Ray is shut down on the way out, also after a failure.
    A local session's files live in a private temporary directory (not Ray's shared /tmp/ray),
    short because Ray binds Unix sockets under it (108 bytes at most: a study's results path
    is often too long for it); its logs are kept in `logs` (the study's results), then the
    directory is removed."""
    require_ray()
    if address not in ADDRESSES:
        raise UsageError(f"--ray {address!r}: must be one of {', '.join(ADDRESSES)}")
    import ray
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if not verbose:     # Tune's output engine prints its experiment box and paths even when silent
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    cluster = contextlib.nullcontext({})
    if address == "slurm":
        from strategies import ray_slurm
        cluster = ray_slurm.cluster()
    temp = tempfile.mkdtemp(prefix="distbench-ray-", dir="/tmp") if address == "local" else None
    with cluster as started:
        try:
            if address == "local":
                ray.init(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
                         log_to_driver=verbose, configure_logging=verbose, _temp_dir=temp)
            else:
                ray.init(address=started.get("address", "auto"), log_to_driver=verbose)
            if "expected_nodes" in started:
                from strategies import ray_slurm
                ray_slurm.wait_for_nodes(started["expected_nodes"], started["timeout"])
            resources = ray.cluster_resources()
            yield {"address": address, "nodes": len([n for n in ray.nodes() if n["Alive"]]),
                   "cpus": resources.get("CPU", 0), "gpus": resources.get("GPU", 0)}
        finally:
            ray.shutdown()
            if temp is not None:
                _keep_logs(Path(temp), logs)


def _keep_logs(temp: Path, logs: Path | None) -> None:
    """The session's logs copied to `logs` (when given), then its temporary directory removed."""
    import shutil
    try:
        sessions = [d for d in temp.glob("session_*") if d.is_dir() and not d.is_symlink()]
        if logs is not None and sessions and (sessions[0] / "logs").is_dir():
            shutil.copytree(sessions[0] / "logs", logs, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("*.sock", "*.socket"))
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def search_domain(dimension: Dimension):
    """A `bench.core.space` dimension as a Ray Tune search-space domain."""
    from ray import tune
    low, high = dimension.low, dimension.high
    return {
        "uniform": lambda: tune.uniform(low, high),
        "loguniform": lambda: tune.loguniform(low, high),
        "randint": lambda: tune.randint(low, high + 1),          # Ray's upper end is exclusive
        "choice": lambda: tune.choice(list(dimension.values)),
        "grid": lambda: tune.grid_search(list(dimension.values)),
    }[dimension.kind]()


def mutation(dimension: Dimension):
    """A dimension as a PBT mutation: ranges resample or scale by 0.8/1.2, lists move to a
    neighbouring value."""
    if dimension.is_range:
        return search_domain(dimension)
    return list(dimension.values)


def pbt_scheduler(mutations: Mapping[str, Dimension], explore: Callable[[dict], dict],
                  perturbation_interval: int, synch: bool, quantile_fraction: float,
                  resample_probability: float = 0.25):
    from ray.tune.schedulers import PopulationBasedTraining
    return PopulationBasedTraining(
        time_attr="training_iteration", perturbation_interval=perturbation_interval,
        hyperparam_mutations={name: mutation(d) for name, d in mutations.items()},
        custom_explore_fn=explore, synch=synch, quantile_fraction=quantile_fraction,
        resample_probability=resample_probability)


def asha_scheduler(max_iterations: int, grace_period: int = 1):
    from ray.tune.schedulers import ASHAScheduler
    return ASHAScheduler(time_attr="training_iteration", max_t=max_iterations,
                         grace_period=min(grace_period, max_iterations))


def run_study(trainable: Callable[[dict], None], param_space: dict[str, Any], *, name: str,
              storage: Path, metric: str, mode: str, samples: int, iterations: int,
              scheduler: Any = None, search: Any = None, cpus_per_trial: float = 1, gpus_per_trial: float = 0,
              reuse_actors: bool = False, verbose: int = 0):
    """Run the trials; a trial that raises is recorded as errored and the others go on.
    `reuse_actors`: a paused or exploiting trial goes on in a live worker process instead
    of a new one (which imports TensorFlow again)."""
    from ray import tune
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": cpus_per_trial, "gpu": gpus_per_trial}),
        param_space=param_space,
        tune_config=tune.TuneConfig(metric=metric, mode=mode, num_samples=samples, scheduler=scheduler,
                                    search_alg=search, trial_dirname_creator=trial_directory,
                                    reuse_actors=reuse_actors),
        run_config=tune.RunConfig(
            name=name, storage_path=str(Path(storage).resolve()), verbose=verbose,
            stop={"training_iteration": iterations},
            # Every checkpoint is kept while trials run: Ray's pruning races with PBT's exploits
            # (a trial restored a deleted checkpoint here); prune_checkpoints tidies up after.
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
            failure_config=tune.FailureConfig(max_failures=0, fail_fast=False)),
    )
    return tuner.fit()


def trial_directory(trial) -> str:
    """A trial's directory is named by its id alone (results name trials by it)."""
    return trial.trial_id


# --- inside a trial -------------------------------------------------------------------

def trial_context() -> tuple[str, int, str]:
    """(trial id, trial index in the study, trial directory)."""
    from ray import tune
    context = tune.get_context()
    trial_id = context.get_trial_id()
    suffix = trial_id.rsplit("_", 1)[-1]
    return trial_id, int(suffix) if suffix.isdigit() else 0, context.get_trial_dir()


@contextlib.contextmanager
def restored_checkpoint() -> Iterator[Path | None]:
    """The checkpoint this trial (re)starts from: its own after a restart, another trial's
    after a PBT exploit; None on a fresh start."""
    from ray import tune
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        yield None
        return
    with checkpoint.as_directory() as directory:
        yield Path(directory)


def report(metrics: dict[str, Any], write_checkpoint: Callable[[Path], None] | None = None) -> None:
    """Report one training iteration, with a checkpoint written by `write_checkpoint`."""
    from ray import tune
    if write_checkpoint is None:
        tune.report(metrics)
        return
    with tempfile.TemporaryDirectory(prefix="distbench-ckpt-") as directory:
        write_checkpoint(Path(directory))
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))


def prune_checkpoints(experiment_dir: Path) -> int:
    """Keep each trial's last checkpoint; returns how many were removed."""
    import shutil
    removed = 0
    for trial_dir in Path(experiment_dir).iterdir():
        checkpoints = sorted(trial_dir.glob("checkpoint_*")) if trial_dir.is_dir() else []
        for old in checkpoints[:-1]:
            shutil.rmtree(old, ignore_errors=True)
            removed += 1
    return removed


def perturbation_log(experiment_dir: Path) -> list[list[Any]]:
    """PBT's own log of exploits: [target tag, clone tag, target iteration, clone iteration,
    clone config, new config] per line of pbt_global.txt."""
    import json
    path = Path(experiment_dir) / "pbt_global.txt"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
