"""Multi-process backends with real local processes: MultiWorkerMirroredStrategy (TF_CONFIG
from the local launcher), Slurm environment checks, a worker killed mid-run."""

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.core.record import read_record
from conftest import DATA, SMALL, error_lines, record_paths

pytestmark = pytest.mark.stack



@pytest.mark.parametrize("workload", list(SMALL))
def test_mwms_with_two_local_workers(bench, tmp_path, workload):
    results = tmp_path / "results"
    done = bench("run", "-w", workload, "-s", "mwms", "--local-workers", "2", "--epochs", "2",
                 "--steps-per-epoch", "5", "--warmup-steps", "2", "--data", DATA[workload], "-q",
                 "--results", str(results), *SMALL[workload])
    assert done.returncode == 0, done.stderr
    paths = record_paths(results)
    assert len(paths) == 1                                  # the chief alone writes the record
    record = read_record(paths[0])
    assert done.stdout.strip().splitlines()[-1] == str(paths[0])
    assert record.status == "ok" and record.strategy == "mwms"
    assert record.world_size == 2 and record.num_replicas == 2 and record.ranks_per_node == 2
    ranks = record.timing["rank_step_times_s"]
    assert len(ranks) == 2 and all(len(times) == 10 for times in ranks)   # every worker's steps
    assert ranks[0] != ranks[1]
    assert [s["count"] for s in record.timing["per_rank_step_time"]] == [8, 8]
    assert math.isfinite(record.metrics["final_loss"])
    assert (paths[0].parent / "worker-1.log").is_file()


@pytest.mark.parametrize("env, message", [
    ({}, "strategy 'mwms' needs a cluster"),
    ({"SLURM_JOB_ID": "77"}, "SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_STEP_NODELIST, SLURM_STEP_TASKS_PER_NODE not set"),
    ({"SLURM_JOB_ID": "77", "SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "2",
      "SLURM_STEP_NODELIST": "node[01-", "SLURM_STEP_TASKS_PER_NODE": "2"}, "malformed Slurm environment"),
    ({"SLURM_JOB_ID": "77", "SLURM_PROCID": "3", "SLURM_STEP_NUM_TASKS": "2",
      "SLURM_STEP_NODELIST": "node[01-02]", "SLURM_STEP_TASKS_PER_NODE": "1(x2)"}, "inconsistent Slurm environment"),
    ({"TF_CONFIG": "{not json"}, "TF_CONFIG is malformed"),
])
def test_missing_or_malformed_cluster_environment_is_exit_2(bench, tmp_path, env, message):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k != "TF_CONFIG"}
    done = subprocess.run([sys.executable, "-m", "bench", "run", "-w", "mlp", "-s", "mwms", "--data", "generated",
                           "--results", str(tmp_path)], capture_output=True, text=True, env={**clean, **env})
    assert done.returncode == 2, done.stderr
    lines = error_lines(done.stderr)
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert not record_paths(tmp_path)


def test_local_workers_needs_a_multi_process_strategy(bench, tmp_path):
    done = bench("run", "-w", "mlp", "-s", "mirrored", "--local-workers", "2", "--results", str(tmp_path))
    assert done.returncode == 2 and "runs in one process" in error_lines(done.stderr)[0]


def test_killed_worker_fails_the_run_within_bounded_time(tmp_path):
    """Kill worker 1 mid-run: the chief stops with a clear error (no hang) and its record says failed."""
    results = tmp_path / "results"
    env = {**os.environ, "DISTBENCH_COLLECTIVE_TIMEOUT": "30", "DISTBENCH_WORKER_GRACE": "60"}
    launcher = subprocess.Popen(
        [sys.executable, "-m", "bench", "run", "-w", "charrnn-gru", "-s", "mwms", "--local-workers", "2",
         "--epochs", "1", "--steps-per-epoch", "100000", "-q", "--results", str(results), *SMALL["charrnn-gru"]],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not record_paths(results):
        time.sleep(0.2)
    assert record_paths(results), "the run never started"
    time.sleep(5)
    worker = _worker_pid(launcher.pid, rank=1)
    os.kill(worker, signal.SIGKILL)
    t_kill = time.monotonic()
    stdout, stderr = launcher.communicate(timeout=180)
    elapsed = time.monotonic() - t_kill
    assert launcher.returncode != 0
    assert elapsed < 150, f"took {elapsed:.0f} s to notice"
    assert any("worker 1 exited with code -9" in line for line in error_lines(stderr)), stderr
    record = read_record(record_paths(results)[0])
    assert record.status == "failed", (record.status, record.error)
    assert "task:1" in record.error and "Collective" in record.error, record.error   # names the dead peer
    assert "Detected at node" not in record.error and len(record.error) <= 400


def _worker_pid(launcher_pid: int, rank: int) -> int:
    """The pid of the launcher's child whose TF_CONFIG names task `rank`."""
    for _ in range(50):
        children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(launcher_pid)],
                                  capture_output=True, text=True).stdout.split()
        for pid in children:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            config = [e for e in environ if e.startswith(b"TF_CONFIG=")]
            if config and f'"index": {rank}'.encode() in config[0]:
                return int(pid)
        time.sleep(0.2)
    raise AssertionError("worker process not found")


def test_sigterm_to_all_workers_stops_them_together_with_an_interrupted_record(tmp_path):
    """Slurm's time limit sends SIGTERM to every task: the workers agree on the step to stop
    after (no allreduce left waiting for a peer), and the chief records 'interrupted'."""
    results = tmp_path / "results"
    env = {**os.environ, "DISTBENCH_COLLECTIVE_TIMEOUT": "300"}
    launcher = subprocess.Popen(
        [sys.executable, "-m", "bench", "run", "-w", "charrnn-gru", "-s", "mwms", "--local-workers", "2",
         "--epochs", "1", "--steps-per-epoch", "100000", "-q", "--results", str(results), *SMALL["charrnn-gru"]],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not record_paths(results):
        time.sleep(0.2)
    assert record_paths(results), "the run never started"
    time.sleep(6)
    workers = [_worker_pid(launcher.pid, rank) for rank in (0, 1)]
    os.kill(workers[1], signal.SIGTERM)          # not at the same instant, as in real life
    time.sleep(0.3)
    os.kill(workers[0], signal.SIGTERM)
    t0 = time.monotonic()
    stdout, stderr = launcher.communicate(timeout=120)
    assert time.monotonic() - t0 < 60, "workers did not stop together"
    assert launcher.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    record = read_record(record_paths(results)[0])
    assert record.status == "interrupted", (record.status, record.error)
    ranks = record.timing["rank_step_times_s"]
    assert len(ranks[0]) == len(ranks[1]) > 0                # both stopped after the same step
