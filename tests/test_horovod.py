"""Horovod built from source against our TensorFlow, run with real local processes over Gloo
and over MPI (Open MPI)."""

import math
import subprocess
import sys
from pathlib import Path

import pytest

from bench.core.record import read_record
from conftest import DATA, SMALL, record_paths

pytestmark = pytest.mark.stack


def test_horovod_build_has_tensorflow_gloo_and_mpi():
    done = subprocess.run([str(Path(sys.executable).parent / "horovodrun"), "--check-build"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = {line.strip() for line in done.stdout.splitlines()}
    assert {"[X] TensorFlow", "[X] Gloo", "[X] MPI"} <= lines, done.stdout


# both launchers; every workload under Horovod at 2 and 4 ranks is also in test_equivalence.py
@pytest.mark.parametrize("workload, launcher", [("mlp", "gloo"), ("mlp", "mpi"), ("charrnn-lstm", "gloo"),
                                                ("memnn", "mpi")])
def test_horovod_with_two_local_processes(bench, tmp_path, workload, launcher):
    results = tmp_path / "results"
    done = bench("run", "-w", workload, "-s", "horovod", "--local-workers", "2", "--launcher", launcher,
                 "--epochs", "2", "--steps-per-epoch", "5", "--warmup-steps", "2", "--data", DATA[workload],
                 "-q", "--results", str(results), *SMALL[workload])
    assert done.returncode == 0, done.stderr[-3000:]
    paths = record_paths(results)
    assert len(paths) == 1
    # the launcher says the chief's summary, unprefixed by horovodrun ("[0]<stdout>:"), then the path
    assert done.stdout.splitlines()[-2:] == [read_record(paths[0]).outcome_line(), str(paths[0])], done.stdout
    assert "absl::InitializeLog" not in done.stderr, done.stderr    # nor TensorFlow's start-up lines, horovodrun's too
    record = read_record(paths[0])
    assert record.status == "ok" and record.strategy == "horovod"
    assert record.world_size == 2 and record.num_replicas == 2 and record.ranks_per_node == 2
    ranks = record.timing["rank_step_times_s"]
    assert len(ranks) == 2 and all(len(t) == 10 for t in ranks) and ranks[0] != ranks[1]
    assert math.isfinite(record.metrics["final_loss"])
    communication = record.timing["communication"]          # the grouped allreduce, timed after training
    assert communication["allreduce_s"] > 0 and communication["allreduce_share"] > 0   # timed: no upper bound
    assert 0 < communication["bytes"] <= 4 * record.extra["parameters"] and "after training" in communication["method"]
