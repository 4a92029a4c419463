"""Launching the multi-process backends with srun on a real (single-node) Slurm cluster."""

import os
import subprocess
import sys

import pytest

from bench.record import read_record
from conftest import record_paths


def srun(slurm, *args, tmp_path, timeout=600):
    env = {**os.environ, **slurm.env}
    return subprocess.run(["srun", *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=timeout)


@pytest.mark.parametrize("strategy, mpi", [("mwms", []), ("horovod", ["--mpi=pmix"])])
def test_srun_two_tasks(slurm, tmp_path, strategy, mpi):
    results = tmp_path / "results"
    done = srun(slurm, "-n", "2", *mpi, sys.executable, "-m", "bench", "run", "-w", "mlp", "-s", strategy,
                "--data", "generated", "--epochs", "1", "--steps-per-epoch", "5", "-q", "--results", str(results),
                tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    paths = record_paths(results)
    assert len(paths) == 1 and done.stdout.strip().splitlines() == [str(paths[0])]   # the chief alone
    record = read_record(paths[0])
    assert record.status == "ok" and record.world_size == 2 and record.ranks_per_node == 2
    assert [len(t) for t in record.timing["rank_step_times_s"]] == [5, 5]
    slurm_vars = record.provenance["slurm"]
    assert slurm_vars["SLURM_JOB_ID"] and slurm_vars["SLURM_STEP_NUM_TASKS"] == "2"


def test_srun_bench_comm(slurm, tmp_path):
    done = srun(slurm, "-n", "2", "--mpi=pmix", sys.executable, "-m", "bench", "comm", "--max-bytes", "65536",
                "--results", str(tmp_path), tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    record = read_record(done.stdout.strip().splitlines()[-1])
    assert record.kind == "comm" and record.world_size == 2
