"""`bench comm`: allreduce bandwidth over MPI (mpi4py), or with the collective a backend's
train step uses (`--strategy NAME`: the backend times its own, `Backend.allreduce_seconds`),
as nccl-tests reports it.

For each message size (powers of two), `warmup` allreduces are run and discarded, then
`iters` are timed between barriers; the slowest rank's time counts. Algorithm bandwidth
algbw = bytes / time; bus bandwidth busbw = algbw x 2(n-1)/n, the ring all-reduce's traffic
per link, comparable across rank counts. The result is a record of kind "comm" that the
analysis uses to predict scaling.

    mpirun -np 4 python -m bench comm            # or srun -n 4 --mpi=pmix ... on Slurm
    bench comm --local-workers 2                 # this host
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from bench.core import provenance
from bench.core.config import to_json
from bench.core.errors import UsageError
from bench.core.record import RunRecord, new_run_id, run_dir, write_csv
from bench.run.lifecycle import Lifecycle

KIB = 1024
# Open MPI's allreduce algorithms (coll/tuned): "default" leaves the choice to Open MPI. On
# the emulated nodes under a 300 Mbit/s link (0.0375 GB/s), 2 ranks, 16 MiB: default and
# ring 0.018-0.020 GB/s, recursive_doubling 0.035 GB/s; plain TCP reaches 0.036 GB/s each
# way at once. Open MPI 4.1.4's choice for 2 ranks and large messages is the factor 2.
ALGORITHMS = {"default": 0, "basic_linear": 1, "nonoverlapping": 2, "recursive_doubling": 3, "ring": 4,
              "segmented_ring": 5, "rabenseifner": 6}
COMM_CONFIG_ENV = "DISTBENCH_COMM_CONFIG"
MPI = "mpi"         # mpi4py's allreduce, no backend's


def sizes(min_bytes: int, max_bytes: int) -> list[int]:
    if min_bytes < 4 or max_bytes < min_bytes:
        raise UsageError(f"message sizes {min_bytes}..{max_bytes} bytes: need 4 <= min <= max")
    out, size = [], 1 << (min_bytes - 1).bit_length()
    while size <= max_bytes:
        out.append(size)
        size *= 2
    return out


def bus_factor(ranks: int) -> float:
    return 2 * (ranks - 1) / ranks


def measure(comm, nbytes: int, warmup: int, iters: int) -> float:
    """Seconds per allreduce of `nbytes` of float32, the slowest rank's."""
    from mpi4py import MPI
    send = np.ones(nbytes // 4, dtype=np.float32)
    recv = np.empty_like(send)
    for _ in range(warmup):
        comm.Allreduce(send, recv, op=MPI.SUM)
    comm.Barrier()
    start = time.perf_counter()
    for _ in range(iters):
        comm.Allreduce(send, recv, op=MPI.SUM)
    elapsed = (time.perf_counter() - start) / iters
    return comm.allreduce(elapsed, op=MPI.MAX)


def select_algorithm(name: str) -> None:
    """Open MPI reads its MCA variables at MPI_Init: call before mpi4py's MPI is imported."""
    if ALGORITHMS[name]:
        os.environ["OMPI_MCA_coll_tuned_use_dynamic_rules"] = "1"
        os.environ["OMPI_MCA_coll_tuned_allreduce_algorithm"] = str(ALGORITHMS[name])


@dataclass
class Collective:
    """The allreduce being measured, and who takes part."""
    ranks: int
    rank: int
    hosts: list[str]
    seconds: Callable[[int], float]         # nbytes -> seconds per allreduce, the slowest rank's
    library: str
    close: Callable[[], None] = lambda: None


def mpi_collective(algorithm: str, warmup: int, iters: int) -> Collective:
    select_algorithm(algorithm)
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    return Collective(comm.Get_size(), comm.Get_rank(), comm.allgather(socket.gethostname()),
                      lambda nbytes: measure(comm, nbytes, warmup, iters), MPI.Get_library_version().splitlines()[0])


def backend_collective(name: str, warmup: int, iters: int, algorithm: str = "default") -> Collective:
    """The collective a training backend's step uses (MultiWorkerMirrored's TensorFlow
    collective ops over gRPC, Horovod's allreduce), started as a run of it would be;
    `algorithm`: Open MPI's, for a backend whose collective is Open MPI's allreduce."""
    select_algorithm(algorithm)
    import strategies
    from bench.run import binding
    from strategies.base import BackendOptions
    backend = strategies.get(name)
    bound = binding.resolve(1, None)
    binding.apply(bound)
    binding.apply_to_tensorflow(bound)
    topology = backend.setup(BackendOptions())
    if algorithm != "default" and not backend.open_mpi_allreduce:
        backend.teardown()
        raise UsageError(f"--algorithm {algorithm}: strategy {name!r} runs its own allreduce here (not Open MPI's)")
    return Collective(topology.world_size, topology.rank, list(topology.hosts),
                      lambda nbytes: backend.allreduce_seconds(nbytes, warmup, iters),
                      f"{name} ({', '.join(f'{k}={v}' for k, v in backend.settings.items()) or 'defaults'})",
                      backend.teardown)


def run(min_bytes: int = KIB, max_bytes: int = 256 * KIB * KIB, warmup: int = 5, iters: int = 20,
        results: str = "results", run_id: str | None = None,
        algorithm: str = "default", strategy: str = MPI) -> tuple[RunRecord | None, int, Path]:
    collective = (mpi_collective(algorithm, warmup, iters) if strategy == MPI
                  else backend_collective(strategy, warmup, iters, algorithm))
    try:
        return _measure_sizes(collective, min_bytes, max_bytes, warmup, iters, results, run_id, algorithm, strategy)
    finally:
        collective.close()


def _measure_sizes(collective: Collective, min_bytes, max_bytes, warmup, iters, results, run_id, algorithm,
                   strategy) -> tuple[RunRecord | None, int, Path]:
    ranks, rank, hosts = collective.ranks, collective.rank, collective.hosts
    if ranks < 2:
        raise UsageError("bench comm needs 2 or more ranks: mpirun -np N, srun -n N, or --local-workers N")
    record = RunRecord(run_id=run_id or new_run_id("comm"),
                       workload="allreduce", strategy=strategy, kind="comm", world_size=ranks,
                       num_replicas=ranks, ranks_per_node=hosts.count(hosts[0]),
                       config={"min_bytes": min_bytes, "max_bytes": max_bytes, "warmup": warmup, "iters": iters,
                               "dtype": "float32", "op": "sum", "hosts": hosts, "algorithm": algorithm,
                               "strategy": strategy})
    record.provenance = provenance.collect()
    with Lifecycle(results, record, writer=rank == 0) as life:
        rows = []
        for nbytes in sizes(min_bytes, max_bytes):
            seconds = collective.seconds(nbytes)
            algbw = nbytes / seconds / 1e9
            rows.append({"bytes": nbytes, "time_us": seconds * 1e6, "algbw_GBps": algbw,
                         "busbw_GBps": algbw * bus_factor(ranks)})
            if rank == 0:
                print(f"{nbytes:>12} B  {seconds * 1e6:>12.1f} us  algbw {algbw:8.3f} GB/s  "
                      f"busbw {algbw * bus_factor(ranks):8.3f} GB/s", flush=True)
        record.metrics = {"allreduce": rows, "peak_busbw_GBps": max(r["busbw_GBps"] for r in rows),
                          "mpi_library" if strategy == MPI else "collective": collective.library}
        if rank == 0:
            write_csv(run_dir(results, record.run_id) / "allreduce.csv", list(rows[0]),
                      ([r[k] for k in rows[0]] for r in rows))
        life.ok()
    return (record if rank == 0 else None), life.exit_code, life.path


@dataclass
class CommConfig:
    min_bytes: int = KIB
    max_bytes: int = 256 * KIB * KIB
    warmup: int = 5
    iters: int = 20
    results: str = "results"
    local_workers: int | None = None     # mpirun this many ranks on this host
    run_id: str | None = None
    algorithm: str = "default"           # Open MPI's allreduce algorithm (ALGORITHMS)
    strategy: str = MPI                  # mpi (mpi4py), or a backend's collective (strategies.with_collective)

    def validate(self) -> None:
        if self.warmup < 0 or self.iters < 1:
            raise UsageError("--warmup must be >= 0 and --iters >= 1")
        sizes(self.min_bytes, self.max_bytes)
        if self.algorithm not in ALGORITHMS:
            raise UsageError(f"--algorithm {self.algorithm!r}: must be one of {', '.join(ALGORITHMS)}")
        if self.strategy != MPI:
            import strategies
            valid = [MPI, *strategies.with_collective()]
            if self.strategy not in valid:
                raise UsageError(f"--strategy {self.strategy!r}: must be one of {', '.join(valid)}")
            if self.algorithm != "default" and not strategies.get_class(self.strategy).open_mpi_allreduce:
                allowed = [MPI, *(n for n in valid[1:] if strategies.get_class(n).open_mpi_allreduce)]
                raise UsageError(f"--algorithm chooses Open MPI's allreduce: only with --strategy {' or '.join(allowed)}")
            problem = strategies.get_class(self.strategy).comm_problem(self.local_workers)
            if problem:
                raise UsageError(problem)
        if self.local_workers is not None and self.local_workers < 2:
            raise UsageError(f"--local-workers {self.local_workers}: bench comm needs 2 or more")


def main(cfg: CommConfig) -> int:
    """`bench comm`: this process is one rank (or, with local_workers, the launcher)."""
    cfg.validate()
    if cfg.local_workers:
        return _local(cfg)
    try:
        record, code, path = run(cfg.min_bytes, cfg.max_bytes, cfg.warmup, cfg.iters, cfg.results, cfg.run_id,
                                 cfg.algorithm, cfg.strategy)
    except ImportError as exc:
        raise UsageError(f"bench comm needs mpi4py and an MPI library ({exc})") from None
    if record is not None and not os.environ.get("DISTBENCH_LAUNCHED"):
        print(path)
    return code


def _local(cfg: CommConfig) -> int:
    """mpirun on this host; every rank gets the config in COMM_CONFIG_ENV."""
    import subprocess
    from bench.core.procs import bench_command, local_env, mpirun
    worker = dataclasses.replace(cfg, local_workers=None, run_id=new_run_id("comm"))
    env = local_env({COMM_CONFIG_ENV: to_json(worker), "DISTBENCH_LAUNCHED": "1"})
    command = mpirun(cfg.local_workers, bench_command("comm"), [COMM_CONFIG_ENV, "DISTBENCH_LAUNCHED"])
    code = subprocess.run(command, env=env).returncode
    record = run_dir(cfg.results, worker.run_id) / "record.json"
    if record.is_file():
        print(record)
    return code
