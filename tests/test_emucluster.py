"""The emulated cluster leaves nothing behind: SIGTERM to its owner (the CLI or a program
using the library) ends the command and its job steps and removes every daemon, namespace,
link, cgroup and mount; after SIGKILL, `bench cluster clean` removes them. And a job step the
nodes can never hold fails at once with Slurm's reason."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bench.tools import emucluster

pytestmark = pytest.mark.stack


OWNERS: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _can_emulate_and_leaves_nothing_when_failing(tmp_path):
    why = emucluster.unavailable()
    if why:
        pytest.skip(why)
    yield
    for proc in OWNERS:                  # a failed test's cluster is not left running
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    OWNERS.clear()
    emucluster.clean(tmp_path / "cluster")


def machine() -> dict[str, set[str]]:
    """What a cluster could leave: namespaces, links, cgroups, mounts."""
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return {"namespaces": {line.split()[0] for line in netns.splitlines() if line.strip()},
            "links": {line.split(":")[1].strip() for line in links.splitlines()},
            "cgroups": {str(p) for p in Path("/sys/fs/cgroup").glob(f"*/{emucluster.PREFIX}*")},
            "mounts": set(Path("/proc/mounts").read_text().splitlines())}


def processes_of(root: Path) -> list[str]:
    """Live processes whose command line or environment names the cluster's directory."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if "Z" in (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]:
                continue                 # a zombie holds nothing; init reaps it
            if str(root).encode() in (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes():
                found.append(f"{entry.name} {(entry / 'comm').read_text().strip()}")
        except OSError:
            pass
    return found


def wait_for(ready, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def running_steps(conf: Path) -> bool:
    done = subprocess.run(["squeue", "-h", "-t", "R", "-o", "%i"], capture_output=True, text=True,
                          env={**os.environ, "SLURM_CONF": str(conf)})
    return done.returncode == 0 and bool(done.stdout.strip())


def start_cluster_run(root: Path, tmp_path: Path) -> subprocess.Popen:
    """`bench cluster run` of a 2-node job step that would sleep 5 minutes, once it runs."""
    proc = subprocess.Popen([sys.executable, "-m", "bench", "cluster", "run", "--dir", str(root), "--nodes", "2",
                             "--cores-per-node", "1", "--", "srun", "-N2", "-n2", "sleep", "300"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    OWNERS.append(proc)
    wait_for(lambda: proc.poll() is not None or running_steps(root / "slurm.conf"), 90, "the job step to run")
    assert proc.poll() is None, proc.communicate()
    return proc


def test_sigterm_to_cluster_run_ends_the_command_and_removes_everything(tmp_path):
    before = machine()
    root = tmp_path / "cluster"
    proc = start_cluster_run(root, tmp_path)
    assert machine()["namespaces"] - before["namespaces"], "the cluster made no namespace"
    assert any("slurmstepd" in p for p in processes_of(root)), processes_of(root)
    signalled = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    took = time.monotonic() - signalled
    assert proc.returncode == 128 + signal.SIGTERM, err
    [line] = [line for line in err.splitlines() if line.startswith("cluster:")]
    assert line.startswith("cluster: SIGTERM: stopped ") and "srun" in line and "2 namespaces" in line, line
    assert took < 15, took
    assert machine() == before
    assert processes_of(root) == []
    assert not (root / emucluster.OWNER_FILE).exists()


def test_sigkill_leaves_what_bench_cluster_clean_removes_and_a_second_clean_finds_nothing(tmp_path):
    before = machine()
    root = tmp_path / "cluster"
    proc = start_cluster_run(root, tmp_path)
    proc.kill()
    proc.wait()
    assert processes_of(root) and machine() != before           # the leftovers a killed owner leaves

    # the next cluster says so, and which command removes them
    other = subprocess.run([sys.executable, "-m", "bench", "cluster", "run", "--dir", str(tmp_path / "other"),
                            "--nodes", "1", "--", "true"], capture_output=True, text=True, timeout=120)
    assert other.returncode == 0, other.stderr
    assert "whose owner died" in other.stdout and "bench cluster clean --all" in other.stdout, other.stdout

    clean = subprocess.run([sys.executable, "-m", "bench", "cluster", "clean", "--dir", str(root)],
                           capture_output=True, text=True, timeout=60)
    assert clean.returncode == 0, clean.stderr
    assert "removed" in clean.stdout and "slurmctld" in clean.stdout and "2 namespaces" in clean.stdout, clean.stdout
    assert machine() == before
    assert processes_of(root) == []
    again = subprocess.run([sys.executable, "-m", "bench", "cluster", "clean", "--dir", str(root)],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "nothing to clean" in again.stdout, again.stdout


def test_sigterm_to_a_program_using_the_cluster_unwinds_it(tmp_path):
    """What the benchmarks and test fixtures get: SIGTERM raises through their `with` block."""
    before = machine()
    root = tmp_path / "cluster"
    program = textwrap.dedent(f"""
        import subprocess, sys
        from bench.core.procs import Terminated
        from bench.tools.emucluster import EmulatedCluster
        try:
            with EmulatedCluster({str(root)!r}, nodes=1) as cluster:
                subprocess.run(["srun", "-N1", "sleep", "300"], env={{**__import__("os").environ, **cluster.env}})
        except Terminated as stop:
            sys.exit(stop.exit_code)
    """)
    proc = subprocess.Popen([sys.executable, "-c", program], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    OWNERS.append(proc)
    wait_for(lambda: proc.poll() is not None or running_steps(root / "slurm.conf"), 90, "the job step to run")
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM
    assert machine() == before
    assert processes_of(root) == []


def test_clean_never_touches_a_live_cluster(emulated, bench):
    done = bench("cluster", "clean", "--dir", str(emulated.root))
    assert done.returncode == 1 and "is running" in done.stderr, done.stderr
    assert emulated.idle_nodes() == emulated.nodes
    done = bench("cluster", "clean", "--all")
    assert done.returncode == 0 and emulated.tag not in done.stdout
    assert emulated.idle_nodes() == emulated.nodes


@pytest.mark.parametrize("request_", [["-N2", "--ntasks-per-node", "2"], ["-N3"], ["-N1", "-c2"]])
def test_a_step_the_nodes_can_never_hold_fails_at_once_with_slurms_reason(emulated, tmp_path, request_):
    started = time.monotonic()
    done = subprocess.run(["srun", *request_, "hostname"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **emulated.env}, cwd=tmp_path)
    assert done.returncode != 0
    assert "Unable to allocate resources" in done.stderr, done.stderr
    assert time.monotonic() - started < 10


def test_sigterm_to_a_test_session_tears_its_clusters_down_even_after_a_library_took_the_handler(tmp_path):
    """Ray's in-process head replaces SIGTERM's handler with one that calls sys.exit (and
    nothing is torn down); the session takes the handlers back after each test."""
    before = machine()
    (tmp_path / "test_inner.py").write_text(textwrap.dedent("""
        import os, signal, time
        def test_the_session_cluster_starts(emulated):
            pass
        def test_a_library_replaces_sigterm():
            signal.signal(signal.SIGTERM, lambda *a: os._exit(1))
        def test_then_sigterm_arrives(emulated):
            open(os.environ["UP_MARKER"], "w").close()
            time.sleep(300)
    """))
    tests = Path(__file__).resolve().parent
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "conftest", "-q", "-s", "-p", "no:cacheprovider",
                             str(tmp_path / "test_inner.py")], cwd=tmp_path, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(tests), "UP_MARKER": str(tmp_path / "up")})
    OWNERS.append(proc)
    wait_for(lambda: proc.poll() is not None or (tmp_path / "up").exists(), 120, "the session's cluster")
    assert machine()["namespaces"] - before["namespaces"], "no cluster up"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "Terminated: SIGTERM" in out, out[-2000:]
    assert machine() == before
