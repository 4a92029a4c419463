"""Launching the multi-process backends with srun on a real (single-node) Slurm cluster."""

import os
import subprocess
import sys

import pytest

from bench.core.record import read_record
from conftest import record_paths

pytestmark = pytest.mark.stack


def srun(slurm, *args, tmp_path, timeout=600):
    env = {**os.environ, **slurm.env}
    return subprocess.run(["srun", *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=timeout)


@pytest.mark.parametrize("strategy, mpi", [("mwms", []), ("horovod", ["--mpi=pmix"])])
def test_srun_two_tasks(slurm, tmp_path, strategy, mpi):
    results = tmp_path / "results"
    done = srun(slurm, "-n", "2", *mpi, sys.executable, "-m", "bench", "run", "-w", "mlp", "-s", strategy,
                "--data", "generated", "--epochs", "1", "--steps-per-epoch", "5", "--warmup-steps", "1", "-q",
                "--results", str(results),
                tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    paths = record_paths(results)
    lines = done.stdout.strip().splitlines()          # the chief alone: its summary, then the record
    assert len(paths) == 1 and len(lines) == 2 and lines[1] == str(paths[0])
    assert lines[0].startswith(f"mlp / {strategy} x2: ")
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


def test_ray_on_a_slurm_allocation_runs_a_pbt_study_and_stops_ray(slurm, tmp_path):
    """`bench tune --ray slurm` in a batch job: a Ray head in its own srun step, the study
    against it, and no Ray process left when the job ends (a single-node cluster here: the
    workers' srun step is only started with more nodes)."""
    results = tmp_path / "results"
    study = (f"{sys.executable} -m bench tune pbt memnn --ray slurm --smoke-test --synch "
             f"--steps-per-iteration 5 --data generated --set train_questions=400 --results {results}")
    env = {**os.environ, **slurm.env}
    done = subprocess.run(["sbatch", "--wait", "--nodes=1", "--ntasks-per-node=1", "--cpus-per-task=2",
                           "-o", str(tmp_path / "job.out"), "--wrap", study],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    output = (tmp_path / "job.out").read_text()
    assert done.returncode == 0, output[-3000:]
    records = [read_record(p) for p in record_paths(results)]
    [study_record] = [r for r in records if r.kind == "study"]
    assert study_record.status == "ok" and study_record.extra["ray"]["address"] == "slurm"
    assert study_record.extra["ray"]["nodes"] == 1 and study_record.extra["ray"]["cpus"] == 2
    assert study_record.provenance["slurm"]["SLURM_JOB_ID"]
    assert sum(r.kind == "trial" and r.status == "ok" for r in records) == 2
    slurm_vars = study_record.provenance["slurm"]
    temp_dir = f"/tmp/ray-{slurm_vars['SLURM_CLUSTER_NAME'][:16]}-{slurm_vars['SLURM_JOB_ID']}"
    leftover = subprocess.run(["pgrep", "-f", temp_dir], capture_output=True, text=True)
    assert leftover.stdout == "", leftover.stdout
    assert not os.path.exists(temp_dir)


def test_ray_slurm_outside_an_allocation_is_one_line(bench, tmp_path):
    env = {k: "" for k in ("SLURM_JOB_ID", "SLURM_JOB_NODELIST", "SLURM_NODELIST")}
    done = bench("tune", "pbt", "memnn", "--ray", "slurm", "--data", "generated", "--results", str(tmp_path), env=env)
    assert done.returncode == 2
    assert [line for line in done.stderr.splitlines() if line.startswith("bench")] == [
        "bench: error: --ray slurm: not inside a Slurm allocation (SLURM_JOB_ID / SLURM_JOB_NODELIST unset)"]
    assert not record_paths(tmp_path)
