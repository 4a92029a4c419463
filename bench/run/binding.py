"""Per-replica resources: the cores a process owns and the threads TensorFlow gets on them.

A replica owns a fixed set of cores. Each process binds itself before TensorFlow starts:
its CPU affinity, and TensorFlow's intra- and inter-op thread pools sized to its cores (by
default TensorFlow sizes them to the whole machine, so two replicas on one host would
share what one had). Where the cores come from, first match wins:

1. the local launcher: `DISTBENCH_CORES` (this process's cores), or `DISTBENCH_CORE_SETS`
   (one set per local rank, `0-1;2-3`, for launchers that start the ranks themselves:
   horovodrun, mpirun);
2. Slurm: the affinity mask srun gave the task (`--cpu-bind=cores` with `--cpus-per-task`),
   checked against `SLURM_CPUS_PER_TASK`;
3. `--cpus-per-replica N`: the first N x replicas cores of the current affinity;
4. nothing: the process keeps every core it may run on (unbound), and the record says so.

No TensorFlow import here: `apply` runs before it.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from bench.core import hostlist, startup
from bench.core.errors import UsageError
from bench.run import cgroups

CORES_ENV = "DISTBENCH_CORES"
CORE_SETS_ENV = "DISTBENCH_CORE_SETS"
LOCAL_RANK_VARS = ("DISTBENCH_LOCAL_RANK", "HOROVOD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID")


@dataclass(frozen=True)
class Binding:
    cores: tuple[int, ...]          # core ids this process runs on
    replicas: int                   # replicas this process trains (mirrored on CPU: --devices)
    source: str                     # launcher | slurm | cpus_per_replica | unbound
    intra_op_threads: int
    inter_op_threads: int
    before_tensorflow: bool = False     # applied before this process imported TensorFlow

    @property
    def cores_per_replica(self) -> float:
        return len(self.cores) / self.replicas

    def to_record(self) -> dict:
        return {**asdict(self), "cores": list(self.cores), "cores_per_replica": self.cores_per_replica}


def available_cores() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def split(cores: list[int], sets: int, per_set: int | None = None) -> list[list[int]]:
    """`sets` disjoint, contiguous core sets of `per_set` cores (default: an even share)."""
    per_set = per_set or len(cores) // sets
    if per_set < 1 or sets * per_set > len(cores):
        raise UsageError(f"{sets} replicas x {per_set or 1} cores do not fit the {len(cores)} cores "
                         f"this process may use ({format_cores(cores)}); lower --cpus-per-replica or the replicas")
    return [cores[i * per_set:(i + 1) * per_set] for i in range(sets)]


def format_cores(cores) -> str:
    """[0, 1, 2, 5] -> '0-2,5' (as taskset and Slurm write them)."""
    cores, parts, start = sorted(cores), [], None
    for i, core in enumerate(cores):
        if start is None:
            start = core
        if i + 1 == len(cores) or cores[i + 1] != core + 1:
            parts.append(str(start) if start == core else f"{start}-{core}")
            start = None
    return ",".join(parts)


def parse_cores(text: str) -> list[int]:
    """'0-2,5' -> [0, 1, 2, 5]; ValueError when malformed."""
    hosts = hostlist.expand(f"c[{text}]") if text.strip() else []
    return sorted({int(host[1:]) for host in hosts})


def resolve(replicas: int = 1, cpus_per_replica: float | None = None, env=None) -> Binding:
    env = os.environ if env is None else env
    cores, source = _assigned(env)
    if cores is None and env.get("SLURM_JOB_ID") and env.get("SLURM_CPUS_PER_TASK"):
        cores, source = _slurm(env), "slurm"
    if cores is None and cpus_per_replica:
        cores, source = split(available_cores(), 1, math.ceil(cpus_per_replica * replicas))[0], "cpus_per_replica"
    if cores is None:
        cores, source = available_cores(), "unbound"
    return Binding(tuple(cores), replicas, source, *threads_for(len(cores), replicas))


def threads_for(cores: int, replicas: int) -> tuple[int, int]:
    """(intra-op, inter-op) threads: every core for the ops' inner loops; independent ops
    run one per replica beside it. Collective and communication threads (gRPC, Horovod's
    background loop, Gloo) mostly wait on the network and are not counted against cores."""
    return max(1, cores), max(1, min(cores, 2 * replicas))


def apply(binding: Binding) -> None:
    """Pin this process and size TensorFlow's thread pools, before TensorFlow starts (the
    environment variables are what TensorFlow reads when it creates its pools). Every thread
    the process already has is pinned too: `sched_setaffinity(0, ...)` moves only the calling
    thread, and threads started before it (an import's) would keep every core."""
    if binding.source != "unbound":
        for thread in _threads():
            try:
                os.sched_setaffinity(thread, binding.cores)
            except ProcessLookupError:      # a thread that ended meanwhile
                pass
    os.environ["TF_NUM_INTRAOP_THREADS"] = str(binding.intra_op_threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = str(binding.inter_op_threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(binding.intra_op_threads))


def bind_process(replicas: int = 1, cpus_per_replica: float | None = None) -> Binding:
    """This process's cores (and its share of them, where the launcher made a cgroup for it),
    resolved and applied: the first thing a worker does, before it imports TensorFlow (or
    anything else that starts threads)."""
    bound = replace(resolve(replicas, cpus_per_replica), before_tensorflow="tensorflow" not in sys.modules)
    _join_share()
    apply(bound)
    return bound


def _join_share(env=None) -> None:
    """A local worker joins the cgroup its launcher made for its local rank."""
    env = os.environ if env is None else env
    if not env.get(cgroups.SHARES_ENV):
        return
    sets = env[cgroups.SHARES_ENV].split(";")
    rank = _local_rank(env)
    if rank is None or rank >= len(sets):
        raise UsageError(f"{cgroups.SHARES_ENV}={env[cgroups.SHARES_ENV]!r} but local rank {rank} has no cgroup")
    cgroups.join(sets[rank].split(","))


def local_shares(workers: int, cpus_per_replica: float | None, tag: str) -> tuple[list[list[int]], list[list[str]]] | None:
    """For a share below one core: each local worker's core and its cgroup (held to the
    share); None otherwise. The launcher removes the cgroups (`cgroups.remove`)."""
    if cpus_per_replica is None or cpus_per_replica >= 1:
        return None
    core_sets = cgroups.fit(workers, cpus_per_replica, available_cores())
    made: list[list[str]] = []
    try:
        for rank, cores in enumerate(core_sets):
            made.append(cgroups.create(f"{tag}r{rank}", cores, cpus_per_replica))
    except BaseException:
        cgroups.remove([path for paths in made for path in paths])
        raise
    return core_sets, made


def process_cores(pid: int | str = "self") -> list[int]:
    """The cores any thread of a process may run on, read back from the kernel (not from
    the plan): the union of its threads' affinities."""
    cores: set[int] = set()
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            allowed = next(line for line in status.read_text().splitlines() if line.startswith("Cpus_allowed_list:"))
        except (OSError, StopIteration):
            continue
        cores.update(parse_cores(allowed.split(":", 1)[1].strip()))
    return sorted(cores)


def _threads() -> list[int]:
    try:
        return [int(task) for task in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


def apply_to_tensorflow(binding: Binding) -> bool:
    """The same thread counts through TensorFlow's API (after import, before it initialises).
    False where TensorFlow already runs in this process (a run inside a tuning study's
    driver): its pools stay as they are."""
    tf = startup.import_tensorflow()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(binding.intra_op_threads)
        tf.config.threading.set_inter_op_parallelism_threads(binding.inter_op_threads)
    except RuntimeError:
        return False
    return True


def local_core_sets(workers: int, cpus_per_replica: float | None) -> list[list[int]] | None:
    """Disjoint cores for `workers` local processes; None (unbound) when there are more
    workers than cores and no --cpus-per-replica asks for a fit."""
    cores = available_cores()
    if cpus_per_replica is None and workers > len(cores):
        return None
    return split(cores, workers, int(cpus_per_replica) if cpus_per_replica else None)


def _assigned(env) -> tuple[list[int] | None, str]:
    try:
        if env.get(CORES_ENV):
            return parse_cores(env[CORES_ENV]), "launcher"
        if env.get(CORE_SETS_ENV):
            sets = [parse_cores(part) for part in env[CORE_SETS_ENV].split(";")]
            rank = _local_rank(env)
            if rank is None or rank >= len(sets):
                raise UsageError(f"{CORE_SETS_ENV}={env[CORE_SETS_ENV]!r} but local rank {rank} has no set")
            return sets[rank], "launcher"
    except ValueError as exc:
        raise UsageError(f"malformed core list in {CORES_ENV} / {CORE_SETS_ENV}: {exc}") from None
    return None, ""


def _local_rank(env) -> int | None:
    return next((int(env[v]) for v in LOCAL_RANK_VARS if env.get(v, "").isdigit()), None)


def _slurm(env) -> list[int]:
    """The task's affinity mask from srun; SLURM_CPUS_PER_TASK must be a number."""
    try:
        wanted = int(env["SLURM_CPUS_PER_TASK"])
    except ValueError:
        raise UsageError(f"malformed SLURM_CPUS_PER_TASK={env['SLURM_CPUS_PER_TASK']!r}") from None
    cores = available_cores()
    if len(cores) < wanted:     # every CPU-side cost would be measured on fewer cores, without a word
        raise UsageError(f"this task may run on {len(cores)} of the {wanted} cores its job asked for "
                         f"(SLURM_CPUS_PER_TASK): since Slurm 22.05 srun does not pass --cpus-per-task on; "
                         f"give srun --cpus-per-task={wanted}, or export SRUN_CPUS_PER_TASK={wanted} before it")
    # without --cpu-bind (TaskPlugin=task/none) the mask is the node's: take the task's share
    if len(cores) > wanted:
        local = int(env.get("SLURM_LOCALID", "0") or 0)
        sets = len(cores) // wanted
        return cores[(local % sets) * wanted:(local % sets + 1) * wanted]
    return cores
