"""The backend interface: how a backend launches its processes, and how it runs one.

A backend never imports a workload. It owns its launch (nothing else names it):

    Backend.local_processes(workers, cfg_json, launcher)   # `--local-workers N` on this host
    Backend.launch_problem(placement, cfg)                  # a study job it cannot run, and why
    Backend.sbatch_shape(placement) / sbatch_lines(...)     # its part of a job script

and, inside each process, the runner drives it:

    backend.setup(options)            # devices / cluster, before TensorFlow initialises
    with backend.scope():             # model construction (variables placed per backend)
        model = workload.build(...)
    dataset = backend.distribute(make, global_batch, training=True)  # make(shard): its rows only
    history = backend.fit(model, dataset, callbacks=backend.callbacks() + ..., **fit_kwargs)
    metrics = backend.evaluate(model, backend.distribute(make_test, global_batch, training=False))
    records = backend.gather(local_measurements)   # chief gets every rank's
    backend.teardown()
"""

from __future__ import annotations

import contextlib
import shlex
from dataclasses import dataclass, field
from typing import Any, Callable

from bench.core.config import RUN_CONFIG_ENV, RunConfig
from bench.core.errors import BackendUnavailable, UsageError
from bench.core.sharding import WHOLE, Shard


@dataclass
class BackendOptions:
    devices: int | None = None      # replicas requested on this host (None: all / 1)
    seed: int = 0
    scale_lr: bool = False          # multiply the learning rate by the number of workers
    dense_gradients: bool = True    # embeddings' gradients summed to dense before any all-reduce


@dataclass
class Topology:
    """What the record states about where a run ran."""
    world_size: int = 1             # processes
    rank: int = 0
    num_replicas: int = 1           # replicas training in sync, all processes
    local_devices: list[str] = field(default_factory=list)
    ranks_per_node: int = 1
    hosts: list[str] = field(default_factory=list)     # every rank's host, in rank order

    @property
    def is_chief(self) -> bool:
        return self.rank == 0


@dataclass(frozen=True)
class LocalProcess:
    """One process a local launch starts: its command and environment (on top of the
    launcher's). The first is the chief, whose output is shown; the others log to files."""
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Placement:
    """Where a job of a study runs, as a backend needs to know it to write its launch."""
    gpus: int                       # replicas in total
    nodes: int
    gpu_nodes: bool                 # the nodes have GPUs (else replicas are CPU devices or processes)
    cpus_per_gpu: int               # the cluster profile's cores per GPU
    mpi: str = ""                   # the profile's srun options for MPI ranks, e.g. --mpi=pmix
    cpu_bind: str = ""              # srun --cpu-bind, e.g. cores: each task on its own cores
    options: tuple[tuple[str, str], ...] = ()   # study options a backend may read (e.g. tune)

    @property
    def gpus_per_node(self) -> int:
        return self.gpus // self.nodes

    def option(self, name: str, default: str) -> str:
        return dict(self.options).get(name, default)


@dataclass(frozen=True)
class SbatchShape:
    tasks_per_node: int
    cpus_per_task: int


class Backend:
    name: str = ""
    description: str = ""
    kind: str = "run"               # "run": `bench run` trains once; "study": a study of trials
    multi_process: bool = False     # one process per worker/rank (supports --local-workers)
    multi_device: bool = False      # one process over several local devices (--devices)
    # The allreduce its train step runs, on CPUs and on GPUs, by the scaling model's names
    # (analysis/collectives.py); written in every record for the analysis, which never imports
    # a backend. Empty: no collective.
    allreduce: dict[str, str] = {}
    # Its CPU collective is Open MPI's MPI_Allreduce when launched by MPI, so `bench comm
    # --algorithm` can force Open MPI's choice for it (coll/tuned, read at MPI_Init).
    open_mpi_allreduce: bool = False

    def __init__(self) -> None:
        self.topology = Topology()
        self.settings: dict[str, str] = {}     # what setup() tuned (e.g. environment), for the record

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """Whether this backend can run here, and why not."""
        return True, ""

    def setup(self, options: BackendOptions) -> Topology:
        raise NotImplementedError

    def scope(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def distribute(self, make: Callable[[Shard], Any], global_batch: int, training: bool = True) -> Any:
        """The pipeline this process feeds to fit() (training) or evaluate(): `make(shard)`
        builds a shard's rows of every global batch and nothing else, so that each process
        reads only its replicas' share (one process of one replica: every row)."""
        return make(WHOLE)

    def callbacks(self) -> list:
        """Keras callbacks the backend needs in fit(), before any other (e.g. reducing the
        validation metrics over ranks, so that later callbacks see the global ones)."""
        return []

    def evaluate(self, model: Any, dataset: Any) -> dict[str, float]:
        """The metrics over every rank's share of `dataset` (a collective where multi-process)."""
        return {k: float(v) for k, v in model.evaluate(dataset, verbose=0, return_dict=True).items()}

    def fit(self, model: Any, dataset: Any, **kwargs: Any) -> Any:
        return model.fit(dataset, **kwargs)

    def gather(self, values: list[float]) -> list[list[float]]:
        """Every rank's list of floats, in rank order (single process: [values])."""
        return [values]

    def any_rank(self, flag: bool) -> bool:
        """True on every rank if `flag` is true on any (a collective where multi-process)."""
        return flag

    def communication(self, model: Any, step_seconds: list[float]) -> dict | None:
        """The gradient collective of one step, timed apart from the measured steps, and its
        share of the median step (a collective: every rank calls it)."""
        return None

    def allreduce_seconds(self, nbytes: int, warmup: int, iters: int) -> float:
        """Seconds per allreduce (sum) of `nbytes` of float32 over all ranks with the collective
        this backend's train step uses, the slowest rank's (`bench comm --strategy`). A backend
        that has one between processes overrides this."""
        raise UsageError(f"strategy {self.name!r} has no collective of its own between processes")

    @classmethod
    def node_check(cls) -> tuple[str, str] | None:
        """`bench doctor`'s line for what this backend needs on a node beyond TensorFlow:
        ("ok" | "warning" | "error", what was found and the fix); None: nothing to check."""
        return None

    @classmethod
    def has_collective(cls) -> bool:
        """Whether `bench comm --strategy NAME` can time this backend's collective."""
        return cls.allreduce_seconds is not Backend.allreduce_seconds

    @classmethod
    def comm_problem(cls, local_workers: int | None) -> str | None:
        """Why `bench comm --strategy NAME` cannot run so (None: it can)."""
        return None

    # --- launch -----------------------------------------------------------------------

    @classmethod
    def local_processes(cls, workers: int, config_json: str, launcher: str) -> list[LocalProcess]:
        """The processes that run `workers` replicas of a run on this host; each worker gets
        the run's config (JSON) in RUN_CONFIG_ENV."""
        raise UsageError(f"--local-workers: strategy {cls.name!r} runs in one process")

    @classmethod
    def run_problem(cls, cfg: RunConfig) -> str | None:
        """Why this backend cannot run `cfg` (None: it can), known without TensorFlow."""
        if cfg.devices not in (None, 1) and not cls.multi_device:
            other = " (or --local-workers N)" if cls.multi_process else ""
            return f"strategy {cls.name!r} runs one device a process; --devices {cfg.devices} needs --strategy mirrored{other}"
        if cfg.local_workers is not None and not cls.multi_process:
            return f"--local-workers: strategy {cls.name!r} runs in one process"
        return None

    @classmethod
    def launch_problem(cls, placement: Placement, cfg: RunConfig) -> str | None:
        """Why this backend cannot run a study job so placed (None: it can)."""
        return None

    @classmethod
    def sbatch_shape(cls, placement: Placement) -> SbatchShape:
        if cls.multi_process:
            return SbatchShape(placement.gpus_per_node, placement.cpus_per_gpu)
        return SbatchShape(1, placement.cpus_per_gpu * placement.gpus_per_node)

    @classmethod
    def sbatch_lines(cls, placement: Placement, cfg: RunConfig) -> list[str]:
        """The job script's lines that launch the run: its config in the environment (srun
        passes it to every task, on every node), then the srun step."""
        cfg = cls.job_config(placement, cfg)
        srun = ["srun", *cls.srun_options(placement), "bench", "run"]
        return [f"export {RUN_CONFIG_ENV}={shlex.quote(cfg.to_json(changed_only=True))}",
                " ".join(shlex.quote(part) for part in srun)]

    @classmethod
    def srun_options(cls, placement: Placement) -> list[str]:
        bind = [f"--cpu-bind={placement.cpu_bind}"] if placement.cpu_bind else []
        if cls.multi_process:
            return ["--nodes", str(placement.nodes), "--ntasks-per-node", str(placement.gpus_per_node), *bind]
        return ["--nodes", "1", "--ntasks", "1", *bind]

    @classmethod
    def job_config(cls, placement: Placement, cfg: RunConfig) -> RunConfig:
        """The run's config as this backend runs it in a job so placed."""
        return cfg

    def teardown(self) -> None:
        pass


def distribute_from_function(strategy: Any, make: Callable[[Shard], Any], global_batch: int) -> tuple[Any, Any]:
    """`strategy.distribute_datasets_from_function` over `make`: each input pipeline (a worker
    process) builds only its replicas' rows of every global batch (its shard), split into
    one per-replica batch per local replica, in replica order. Returns the distributed dataset
    and the per-replica element spec (for `build_compiled_state`)."""
    import tensorflow as tf
    specs = []

    def dataset_fn(context):
        local = strategy.num_replicas_in_sync // context.num_input_pipelines
        dataset = make(Shard(context.input_pipeline_id, context.num_input_pipelines))
        per_replica = context.get_per_replica_batch_size(global_batch)

        def replica_spec(spec):
            shape = list(spec.shape)
            if shape and shape[0] is not None:
                shape[0] = per_replica if shape[0] == per_replica * local else shape[0] // local
            return tf.TensorSpec(shape, spec.dtype)
        specs.append(tf.nest.map_structure(replica_spec, dataset.element_spec))
        return dataset.rebatch([per_replica] * local) if local > 1 else dataset
    distributed = strategy.distribute_datasets_from_function(dataset_fn)
    return distributed, specs[0]


def build_compiled_state(model: Any, strategy: Any, element_spec: Any) -> None:
    """Build a compiled model's loss, metrics and optimizer state under `strategy` from the
    per-replica element spec, and stop Keras from doing it by peeking at a batch.

    Under tf.distribute, Keras 3's fit() and evaluate() first pull one batch through a
    throwaway iterator to learn shapes. With a seeded shuffle that reshuffles per iteration,
    that extra iterator advances the order: training would see another sequence of batches
    than under the default strategy, and data-parallel training would not be the same
    computation. Under MultiWorkerMirroredStrategy the peek also fails outright
    (keras-team/keras#20585). Only shapes and dtypes are needed (stateful models fix the
    per-replica batch), so take them from the spec.
    """
    import tensorflow as tf
    from keras import KerasTensor
    from strategies import compat
    batch = tf.nest.map_structure(lambda spec: KerasTensor(list(spec.shape), spec.dtype.name), element_spec)
    with strategy.scope():
        compat.symbolic_build(model, batch)


def timed_collective(reduce, shapes: list, step_seconds: list[float], what: str,
                     repeats: int = 10) -> dict:
    """Seconds per call of `reduce()` (2 untimed calls first) and its share of the median step;
    `shapes` are the (shape, dtype) of what it reduces."""
    import math
    import statistics
    import tensorflow as tf
    seconds = time_calls(reduce, 2, repeats)
    step = statistics.median(step_seconds) if step_seconds else float("nan")
    return {"allreduce_s": seconds, "allreduce_share": seconds / step, "bytes": sum(
                math.prod(shape) * tf.as_dtype(dtype).size for shape, dtype in shapes),
            "method": f"{what} of zeros shaped like the trainable variables, after training, "
                      f"mean of {repeats}; not overlapped with compute; embedding gradients dense, as "
                      "in training unless --sparse-gradients"}


def time_calls(call, warmup: int, iters: int) -> float:
    """Mean seconds per `call()` after `warmup` untimed calls (call returns once it is done)."""
    import time
    for _ in range(warmup):
        call()
    start = time.perf_counter()
    for _ in range(iters):
        call()
    return (time.perf_counter() - start) / iters


def require_positive(devices: int | None, flag: str = "--devices") -> None:
    if devices is not None and devices < 1:
        raise UsageError(f"{flag} {devices}: must be >= 1")


def unavailable(name: str, reason: str) -> BackendUnavailable:
    return BackendUnavailable(f"strategy {name!r} is not available here: {reason}")
