"""Four replicas across emulated nodes in both of FinisTerrae III's shapes: 2 nodes x 2 ranks
(two ranks sharing a node, as its 2-GPU nodes run) and 4 nodes x 1 (half a core each). Each
run trains the same computation as one device (loss after 8 steps), and its record names every
rank's host, local rank and cores, read back from the processes; a dead node among 4 ends the
job with a record naming it. At 2 x 2: bench comm, a Ray study with 2 trials on each node, and
a generated study at 1, 2 and 4 replicas submitted, collected and reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.core.config import RUN_CONFIG_ENV, STUDY_CONFIG_ENV
from bench.core.record import read_record
from conftest import record_paths


pytestmark = pytest.mark.stack

CONFIG = {"workload": "mlp", "data": "generated", "epochs": 1, "steps_per_epoch": 8, "batch_size": 64, "seed": 3,
          "verbose": 0, "overrides": {"n_neurons": "32"}}


def srun(cluster, args, tmp_path, config, timeout=600):
    env = {**os.environ, **cluster.env, RUN_CONFIG_ENV: json.dumps(config)}
    return subprocess.run(["srun", *args, sys.executable, "-m", "bench", "run"], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=timeout)


@pytest.fixture(scope="module")
def one_device_loss(tmp_path_factory):
    results = tmp_path_factory.mktemp("default")
    env = {**os.environ, RUN_CONFIG_ENV: json.dumps({**CONFIG, "strategy": "default", "results": str(results)})}
    done = subprocess.run([sys.executable, "-m", "bench", "run"], capture_output=True, text=True, env=env,
                          cwd=results, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return read_record(record_paths(results)[0]).history["loss"][0]


def check_four(record, hosts: list[str], one_device_loss: float) -> None:
    assert record.status == "ok" and record.world_size == 4 and record.num_replicas == 4
    assert record.host["rank_hosts"] == hosts
    assert len(record.timing["rank_step_times_s"]) == 4
    assert abs(record.history["loss"][0] - one_device_loss) / one_device_loss <= 1e-5


@pytest.mark.parametrize("strategy, mpi", [("mwms", []), ("horovod", ["--mpi=pmix"])])
def test_two_nodes_of_two_ranks(emulated_2x2, tmp_path, strategy, mpi, one_device_loss):
    cluster = emulated_2x2
    results = tmp_path / "results"
    done = srun(cluster, ["-N2", "--ntasks-per-node", "2", "-c1", *mpi], tmp_path,
                {**CONFIG, "strategy": strategy, "results": str(results)})
    assert done.returncode == 0, done.stderr[-3000:]
    record = read_record(record_paths(results)[0])
    check_four(record, [h for h in cluster.hostnames for _ in range(2)], one_device_loss)
    assert record.ranks_per_node == 2
    assert record.host["rank_local_ranks"] == [0, 1, 0, 1]
    # both ranks of a node on its one core (Slurm CPUs 2 on 1 core: half a core each, each its own share)
    assert record.host["rank_cores"] == [[0], [0], [1], [1]]
    assert record.host["binding"]["cpu_share"] == 0.5
    assert cluster.task_cgroups() == []                   # each task's share removed after it


@pytest.mark.parametrize("strategy, mpi", [("mwms", []), ("horovod", ["--mpi=pmix"])])
def test_four_nodes_of_half_a_core(emulated_4x1, tmp_path, strategy, mpi, one_device_loss):
    cluster = emulated_4x1
    results = tmp_path / "results"
    done = srun(cluster, ["-N4", "-n4", "-c1", *mpi], tmp_path, {**CONFIG, "strategy": strategy, "results": str(results)})
    assert done.returncode == 0, done.stderr[-3000:]
    record = read_record(record_paths(results)[0])
    check_four(record, cluster.hostnames, one_device_loss)
    assert record.ranks_per_node == 1 and record.host["rank_local_ranks"] == [0, 0, 0, 0]
    assert record.host["rank_cores"] == [[0], [0], [1], [1]]
    assert record.host["binding"]["cpu_share"] == 0.5


def test_bench_comm_inside_and_between_nodes_at_two_by_two(emulated_2x2, tmp_path):
    env = {**os.environ, **emulated_2x2.env}
    done = subprocess.run(["srun", "-N2", "--ntasks-per-node", "2", "-c1", "--mpi=pmix", sys.executable, "-m", "bench",
                           "comm", "--max-bytes", "1048576", "--iters", "5", "--results", str(tmp_path)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    record = read_record(done.stdout.strip().splitlines()[-1])
    assert record.world_size == 4 and record.config["hosts"] == [h for h in emulated_2x2.hostnames for _ in range(2)]
    assert record.metrics["peak_busbw_GBps"] > 0


def test_a_dead_node_among_four_ends_the_job_with_a_record_naming_it(emulated_4x1, tmp_path):
    cluster = emulated_4x1
    results = tmp_path / "results"
    env = {**os.environ, **cluster.env,
           RUN_CONFIG_ENV: json.dumps({**CONFIG, "strategy": "mwms", "steps_per_epoch": 100000, "results": str(results)})}
    job = subprocess.Popen(["srun", "-N4", "-n4", "-c1", sys.executable, "-m", "bench", "run"], env=env, cwd=tmp_path,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not record_paths(results):
            time.sleep(0.5)
        time.sleep(10)
        assert job.poll() is None, "the run ended before the fault"
        started = time.monotonic()
        cluster.kill_node(2)
        job.wait(timeout=150)
        ended_after = time.monotonic() - started
    finally:
        if job.poll() is None:
            job.kill()
        cluster.restart_node(2)
    record = read_record(record_paths(results)[0])
    assert record.status == "failed" and cluster.hostnames[2] in record.error, record.error
    assert ended_after < 120


def test_ray_study_with_two_trials_on_each_node(emulated_2x2, tmp_path):
    """bench tune --ray slurm in a batch job of 2 nodes x 2 CPUs: one Ray node per Slurm node
    (the head on the first, the workers' srun step on the second), 4 trials at once, 2 on each."""
    results = tmp_path / "results"
    # handed as a job script hands it (strategies/raytune.py:sbatch_lines)
    handed = {"workload": "mlp", "scheduler": "search", "ray": "slurm", "samples": 4, "epochs": 2,
              "steps_per_epoch": 5, "data": "generated", "overrides": {"n_neurons": "16"}, "retrain": False,
              "precision": "mixed_bfloat16", "results": str(results)}
    done = subprocess.run(["sbatch", "--wait", "--nodes=2", "--ntasks-per-node=1", "--cpus-per-task=2",
                           "-o", str(tmp_path / "job.out"), "--wrap", f"{sys.executable} -m bench tune search mlp"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=600,
                          env={**os.environ, **emulated_2x2.env, STUDY_CONFIG_ENV: json.dumps(handed)})
    output = (tmp_path / "job.out").read_text()
    assert done.returncode == 0, output[-3000:]
    records = [read_record(p) for p in record_paths(results)]
    [study_record] = [r for r in records if r.kind == "study"]
    assert study_record.status == "ok" and study_record.extra["ray"]["nodes"] == 2
    assert study_record.config["precision"] == "mixed_bfloat16"
    trials_on = {}
    for log in (results / study_record.run_id / "trials").glob("*.jsonl"):
        for host in {json.loads(line)["host"] for line in log.read_text().splitlines()}:
            trials_on[host] = trials_on.get(host, 0) + 1
    assert trials_on == {host: 2 for host in emulated_2x2.hostnames}


STUDY = """
[study]
name = "ft3shape"
profile = "emulated-ft3"
results = "results"
steps_per_epoch = 8
time_limit = "00:10:00"
scaling = "weak"
batch_size = 32

[matrix]
strategies = ["mwms"]           # horovod at 2 x 2: test_two_nodes_of_two_ranks (14 processes were 180 s)
gpus = [1, 2, 4]

[[workloads]]
name = "mlp"
data = "generated"
set = { n_neurons = 16 }
"""


def logs_of_failed(jobs: str, collected: str) -> str:
    failed = [line.split()[-1][: -len(".sbatch")] for line in collected.splitlines()
              if line.endswith(".sbatch") and not line.startswith("ok ")]
    tails = [f"--- {path.name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-40:])
             for name in failed for path in sorted(Path(jobs, "logs").glob(f"{name}.*"))]
    return "\n".join(tails)


def test_a_generated_study_at_one_two_and_four_replicas_is_submitted_collected_and_reported(
        emulated_2x2, bench, tmp_path):
    """FinisTerrae III's shape (profile emulated-ft3: 2 replicas a node): 1 replica, 2 on one
    node, 4 on two; every replica half a core, alone on its node or not."""
    (tmp_path / "study.toml").write_text(STUDY)
    env = {**emulated_2x2.env, "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    jobs = str(tmp_path / "jobs")
    assert bench("jobs", "write", str(tmp_path / "study.toml"), "-o", jobs, env=env).returncode == 0
    done = bench("jobs", "submit", jobs, env=env)
    assert "submitted 3 jobs (0 already submitted)" in done.stdout, done.stderr
    plan = json.loads(Path(jobs, "jobs.json").read_text())["jobs"]
    order = sorted(json.loads(Path(jobs, "manifest.json").read_text())["jobs"].items(), key=lambda j: int(j[1]["job_id"]))
    assert [plan[script]["gpus"] for script, _ in order] == [4, 2, 1]      # the largest first: none waits behind
    waited = bench("jobs", "wait", jobs, "--timeout", "500", "--poll", "2", env=env)
    assert waited.returncode == 0, waited.stdout + waited.stderr
    collected = bench("jobs", "collect", jobs, "--results", str(tmp_path / "results"), env=env)
    assert collected.returncode == 0 and collected.stdout.count("ok ") == 3, collected.stdout + logs_of_failed(
        jobs, collected.stdout)
    records = [read_record(p) for p in record_paths(tmp_path / "results")]
    hosts = {r.num_replicas: r.host["rank_hosts"] for r in records}
    assert sorted(r.num_replicas for r in records) == [1, 2, 4]
    assert len(set(hosts[2])) == 1 and hosts[4] == [h for h in emulated_2x2.hostnames for _ in range(2)]
    assert {r.host["binding"]["cpu_share"] for r in records} == {0.5}
    report = (tmp_path / "results" / "report" / "report.md").read_text()    # the study's report job, after all
    assert "| mlp" in report and "4 replicas" in report
