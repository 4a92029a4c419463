"""Child processes of the harness: how they are stopped, and the one mpirun line.
No TensorFlow here (the Ray-on-Slurm driver and `bench comm` use it too)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from typing import Sequence

# Containers and CI run as root, which Open MPI refuses without these. For local launches
# only, never in cluster launch lines.
MPIRUN_AS_ROOT_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}


def stop(procs: Sequence[subprocess.Popen], signum: int = signal.SIGTERM, grace_s: float = 15) -> None:
    """Send `signum` to every running process (last started first), wait up to `grace_s`
    for all of them, then kill what is left."""
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.send_signal(signum)
    deadline = time.monotonic() + grace_s
    for proc in procs:
        try:
            proc.wait(max(0.05, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def mpirun(ranks: int, command: Sequence[str], env_names: Sequence[str] = ()) -> list[str]:
    """`mpirun` of `command` on this host: `ranks` processes, oversubscription allowed, no
    binding by Open MPI (the harness binds its processes itself), `env_names` exported."""
    exported = [arg for name in ("PATH", *env_names) for arg in ("-x", name)]
    return ["mpirun", "-np", str(ranks), "--oversubscribe", "--bind-to", "none", *exported, *command]


def bench_command(*args: str) -> list[str]:
    """`bench ARGS` with this interpreter (a batch job's PATH may not hold the venv)."""
    return [sys.executable, "-m", "bench", *args]


def local_env(extra: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **MPIRUN_AS_ROOT_ENV, **extra}


def free_ports(count: int) -> list[int]:
    """`count` distinct free TCP ports on 127.0.0.1."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()
