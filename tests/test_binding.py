"""Every worker binds before TensorFlow starts: while training, every thread of every worker
(TensorFlow's pools, Horovod's and gRPC's threads, the allocator's) runs on that worker's own
cores, and the record states the cores read back from the processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.core.config import RUN_CONFIG_ENV
from bench.core.record import read_record
from bench.run.binding import parse_cores
from conftest import record_paths

pytestmark = pytest.mark.stack


def workers_of(results: Path) -> list[int]:
    """`python -m bench run` processes handed a config whose results are `results`."""
    marker = f'"results":"{results}"'.encode()
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if argv[1:4] == [b"-m", b"bench", b"run"] and marker in (entry / "environ").read_bytes().replace(b" ", b""):
                found.append(int(entry.name))
        except (OSError, IndexError):
            pass
    return found


def thread_cores(pid: int) -> dict[str, set[int]]:
    """Each thread's name and id -> the cores it may run on."""
    threads = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            status = (task / "status").read_text()
            allowed = next(line for line in status.splitlines() if line.startswith("Cpus_allowed_list"))
            threads[f"{(task / 'comm').read_text().strip()}/{task.name}"] = set(parse_cores(allowed.split(":")[1].strip()))
        except (OSError, StopIteration):
            pass
    return threads


def check_threads_while_training(start, results: Path, workers: int) -> list[set[int]]:
    """Start a run, wait until every worker's TensorFlow pools exist, then check every thread."""
    proc = start()
    try:
        deadline, seen = time.monotonic() + 240, {}
        while time.monotonic() < deadline:
            pids = workers_of(results)
            seen = {pid: thread_cores(pid) for pid in pids}
            if len(pids) == workers and all(any(n.startswith("tf_Compute") for n in t) for t in seen.values()):
                break
            assert proc.poll() is None, "the run ended before its workers were seen"
            time.sleep(0.5)
        else:
            raise AssertionError(f"no {workers} training workers seen: {seen}")
        time.sleep(2)                      # a few steps on: every thread that training starts
        sets = []
        for pid in workers_of(results):
            threads = thread_cores(pid)
            mine = set.union(*threads.values())
            assert len(mine) == 1, {pid: threads}                  # one core each, every thread on it
            sets.append(mine)
        assert len(set.union(*sets)) == workers, sets              # and no two workers share it
        return sets
    finally:
        proc.terminate()
        proc.wait(timeout=120)


@pytest.mark.parametrize("strategy", ["horovod", "mwms"])
def test_local_workers_run_every_thread_on_their_own_core(tmp_path, strategy):
    results = tmp_path / "results"
    command = [sys.executable, "-m", "bench", "run", "-w", "mlp", "-s", strategy, "--local-workers", "2",
               "--cpus-per-replica", "1", "--epochs", "1", "--steps-per-epoch", "100000", "--data", "generated",
               "--set", "n_neurons=32", "-q", "--results", str(results)]
    check_threads_while_training(lambda: subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL,
                                                          stderr=subprocess.DEVNULL), results, 2)


def test_the_record_states_the_cores_read_back_from_every_rank(bench, tmp_path):
    results = tmp_path / "results"
    done = bench("run", "-w", "mlp", "-s", "horovod", "--local-workers", "2", "--cpus-per-replica", "1",
                 "--epochs", "1", "--steps-per-epoch", "8", "--data", "generated", "-q", "--results", str(results))
    assert done.returncode == 0, done.stderr[-2000:]
    record = read_record(record_paths(results)[0])
    assert record.host["rank_cores"] == [[0], [1]]
    assert record.host["binding"]["process_cores"] == [0]
    assert record.host["binding"]["before_tensorflow"] is True


@pytest.mark.parametrize("strategy, mpi", [("horovod", ["--mpi=pmix"]), ("mwms", [])])
def test_workers_on_emulated_nodes_run_every_thread_on_their_node_core(emulated, tmp_path, strategy, mpi):
    results = tmp_path / "results"
    config = {"workload": "mlp", "strategy": strategy, "data": "generated", "steps_per_epoch": 100000,
              "per_replica_batch_size": 32, "results": str(results), "verbose": 0, "overrides": {"n_neurons": "32"}}
    env = {**os.environ, **emulated.env, RUN_CONFIG_ENV: json.dumps(config)}
    command = ["srun", "-N2", "-n2", "-c1", *mpi, sys.executable, "-m", "bench", "run"]
    check_threads_while_training(lambda: subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                                                          stderr=subprocess.DEVNULL), results, 2)
