"""Shared fixtures. Runs that need a fresh TensorFlow (device set-up happens before it starts)
go through the real `bench` CLI in a subprocess; the rest call the library directly.

Two tiers: tests marked `stack` start TensorFlow, Horovod, Ray, MPI or Slurm; the rest are the
fast tier (pure functions, golden files, layering; `make test-fast`), which must not import
TensorFlow in this process (checked around every fast test)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = (ROOT.parent / "shared" / "data").resolve()

# Small shapes and data sources for short real runs of every workload.
SMALL = {
    "mlp": ["--set", "n_neurons=32"],
    "memnn": ["--set", "train_questions=400"],
    "charrnn-gru": ["--set", "rnn_units=32", "--set", "embedding_dim=16", "--batch-size", "16"],
    "charrnn-lstm": ["--set", "rnn_units=32", "--set", "embedding_dim=16", "--batch-size", "16"],
}
DATA = {"mlp": "generated", "memnn": "generated", "charrnn-gru": "real", "charrnn-lstm": "real"}


@pytest.fixture(scope="session", autouse=True)
def _environment(tmp_path_factory):
    """Offline, a private data cache, pre-staged tiny Shakespeare, quiet TensorFlow."""
    cache = tmp_path_factory.mktemp("cache")
    os.environ.update({
        "DISTBENCH_OFFLINE": "1",
        "DISTBENCH_CACHE": str(cache),
        "DISTBENCH_DATA_DIR": str(SHARED_DATA),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    })
    yield


@pytest.fixture(scope="session", autouse=True)
def _stop_signals_unwind_the_session():
    """SIGTERM or SIGHUP to the test session (CI's time limit, a user's kill) unwinds it like
    Ctrl-C, so that every fixture's cluster is torn down (bench.core.procs.Terminated)."""
    from bench.core import procs
    previous = procs.catch_stop_signals()
    yield
    procs.restore_signals(previous)


@pytest.fixture(autouse=True)
def _stop_signals_stay_caught():
    """A test may let a library replace the handlers (Ray's in-process head: SIGTERM calls
    sys.exit, and nothing is torn down); after each test they are ours again."""
    from bench.core import procs
    yield
    procs.keep_catching_stop_signals()


HEAVY = ("tensorflow", "keras", "horovod", "ray")


@pytest.fixture(autouse=True)
def _fast_tier_stays_light(request):
    """A fast-tier test that imports TensorFlow (or Keras, Horovod, Ray) belongs to the stack tier."""
    before = {m for m in sys.modules if m.split(".")[0] in HEAVY}
    yield
    if request.node.get_closest_marker("stack") is None:
        new = sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] in HEAVY} - {m.split(".")[0] for m in before})
        assert not new, f"fast-tier test imported {', '.join(new)}: mark it @pytest.mark.stack"


@pytest.fixture
def bench(tmp_path):
    """Run the `bench` CLI in a fresh process; returns the CompletedProcess."""
    def run(*args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True,
                              timeout=timeout, cwd=tmp_path, env={**os.environ, **(env or {})})
    return run


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def record_paths(results: Path) -> list[Path]:
    return sorted(Path(results).rglob("record.json"))


def error_lines(stderr: str) -> list[str]:
    """stderr lines that are ours (TensorFlow's C++ start-up banners aside)."""
    return [line for line in stderr.splitlines() if line.startswith("bench")]


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A real single-node Slurm cluster with this machine's cores: the emulated cluster of
    `bench cluster` (bench.tools.emucluster, the one emulator of tests and demo) with one node."""
    yield from _emulated_cluster(tmp_path_factory, nodes=1, cores_per_node=len(os.sched_getaffinity(0)), name="one")


def _emulated_cluster(tmp_path_factory, **shape):
    from bench.tools import emucluster
    why = emucluster.unavailable()
    if why and os.environ.get("CI"):
        pytest.fail(why)        # CI installs Slurm and runs as root: a missing cluster is a failure
    if why:
        pytest.skip(why)
    cluster = emucluster.EmulatedCluster(tmp_path_factory.mktemp("emu"), **shape).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def emulated(tmp_path_factory):
    """A 2-node Slurm cluster (1 core each) emulated on this machine (bench.tools.emucluster);
    skipped, with the reason, where the machine cannot make network namespaces."""
    yield from _emulated_cluster(tmp_path_factory, nodes=2, cores_per_node=1)


@pytest.fixture(scope="module")
def emulated_2x2(tmp_path_factory):
    """FinisTerrae III's shape: 2 nodes of 2 ranks (1 core a node, 2 Slurm CPUs: half a core a rank)."""
    yield from _emulated_cluster(tmp_path_factory, nodes=2, cores_per_node=1, slots_per_node=2)


@pytest.fixture(scope="module")
def emulated_4x1(tmp_path_factory):
    """4 nodes of half a core each (a cgroup's CPU quota), one rank each."""
    yield from _emulated_cluster(tmp_path_factory, nodes=4, cores_per_node=0.5)


def pytest_collection_modifyitems(config, items):
    """Tests on a real Slurm cluster are of the stack tier, wherever they are."""
    for item in items:
        if {"slurm", "emulated", "emulated_2x2", "emulated_4x1"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.stack)
