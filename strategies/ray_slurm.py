"""Ray on a Slurm allocation: a head on the first node and workers on the others, each a
`ray start --block` inside its own srun step (as the CESGA course's head/worker scripts
do). The study then connects to the head; on the way out the steps are stopped, also when
the study failed, so that no Ray process outlives the job.

Run from the batch script on the allocation's first node:
    bench tune pbt memnn --ray slurm ...
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

from bench.core import hostlist
from bench.core.errors import UsageError
from bench.core.procs import stop

HEAD_PORT = 6379


def allocation() -> dict:
    """Nodes, CPUs and GPUs per node of the current Slurm job, from its variables."""
    nodelist = os.environ.get("SLURM_JOB_NODELIST") or os.environ.get("SLURM_NODELIST")
    if not os.environ.get("SLURM_JOB_ID") or not nodelist:
        raise UsageError("--ray slurm: not inside a Slurm allocation (SLURM_JOB_ID / SLURM_JOB_NODELIST unset)")
    try:
        listed = hostlist.expand(nodelist)
    except ValueError as exc:
        raise UsageError(f"--ray slurm: cannot expand SLURM_JOB_NODELIST={nodelist!r}: {exc}") from None
    cpus = os.environ.get("SLURM_CPUS_PER_TASK") or os.environ.get("SLURM_CPUS_ON_NODE") or "1"
    gpus = os.environ.get("SLURM_GPUS_ON_NODE") or "0"
    try:
        return {"nodes": listed, "cpus": int(cpus), "gpus": int(gpus), "job": os.environ["SLURM_JOB_ID"]}
    except ValueError:
        raise UsageError(f"--ray slurm: malformed SLURM_CPUS_PER_TASK={cpus!r} or SLURM_GPUS_ON_NODE={gpus!r}") from None


def prepare_environment() -> None:
    """Ray's token authentication with a token of this job, handed to the head, the workers
    and this driver through the environment (srun passes it on; no shared home needed).
    Ray reads these when it is first used: set here before, or refreshed when it was."""
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    if os.environ["RAY_AUTH_MODE"] == "token":
        os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    if "ray._raylet" in sys.modules:
        from strategies import compat
        compat.refresh_ray_authentication()


def _ray_command() -> str:
    """The `ray` of this environment (a batch job's PATH may not hold the venv)."""
    beside = Path(sys.executable).with_name("ray")
    return str(beside) if beside.exists() else "ray"


def _ray_start(alloc: dict, temp_dir: str) -> list[str]:
    return [_ray_command(), "start", "--block", f"--num-cpus={alloc['cpus']}", f"--num-gpus={alloc['gpus']}",
            "--disable-usage-stats", f"--temp-dir={temp_dir}"]


def _wait_for_port(host: str, port: int, step: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if step.poll() is not None:
            raise UsageError(f"--ray slurm: the Ray head on {host} exited with {step.returncode} before it listened")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        time.sleep(0.5)
    raise UsageError(f"--ray slurm: the Ray head on {host}:{port} did not come up within {timeout:.0f} s")


@contextlib.contextmanager
def cluster(port: int = HEAD_PORT, timeout: float = 180) -> Iterator[dict]:
    """Start Ray on every node of the allocation; yields the head's address."""
    alloc = allocation()
    head = alloc["nodes"][0]
    head_ip = socket.gethostbyname(head)
    # AF_UNIX socket paths are limited to 107 bytes: keep Ray's directory short.
    temp_dir = f"/tmp/ray-{os.environ.get('SLURM_CLUSTER_NAME', 'slurm')[:16]}-{alloc['job']}"
    prepare_environment()
    steps: list[subprocess.Popen] = []
    try:
        steps.append(subprocess.Popen(
            ["srun", "--nodes=1", "--ntasks=1", "-w", head, "--overlap",
             *_ray_start(alloc, temp_dir), "--head", f"--node-ip-address={head_ip}", f"--port={port}",
             "--include-dashboard=false"]))
        _wait_for_port(head_ip, port, steps[0], timeout)
        others = alloc["nodes"][1:]
        if others:
            steps.append(subprocess.Popen(
                ["srun", f"--nodes={len(others)}", f"--ntasks={len(others)}", "--ntasks-per-node=1",
                 "-w", ",".join(others), "--overlap", *_ray_start(alloc, temp_dir),
                 f"--address={head_ip}:{port}"]))
        yield {"address": f"{head_ip}:{port}", "expected_nodes": len(alloc["nodes"]), "timeout": timeout}
    finally:
        stop(steps, grace_s=30)       # workers first, then the head
        shutil.rmtree(temp_dir, ignore_errors=True)     # this node's; on a cluster, /tmp is per node


def wait_for_nodes(expected: int, timeout: float) -> int:
    """Block until `expected` Ray nodes are alive (the workers join after the head)."""
    import ray
    deadline = time.monotonic() + timeout
    alive = 0
    while time.monotonic() < deadline:
        alive = sum(1 for node in ray.nodes() if node["Alive"])
        if alive >= expected:
            return alive
        time.sleep(1)
    raise UsageError(f"--ray slurm: {alive} of {expected} Ray nodes came up within {timeout:.0f} s")
