"""Child processes of the harness: how they are stopped, and the one mpirun line.
No TensorFlow here (the Ray-on-Slurm driver and `bench comm` use it too)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from typing import Callable, Sequence

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


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP (or SIGINT) while something that must be cleaned up runs: raised like
    Ctrl-C's KeyboardInterrupt, so that `with` blocks, `finally` clauses and pytest's fixture
    teardown run for every stop signal, not only for Ctrl-C."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


_deferred = 0       # > 0 while cleaning up: a second signal must not interrupt the cleanup


def _raise_terminated(signum: int, frame) -> None:
    if not _deferred:
        raise Terminated(signum)


def catch_stop_signals() -> dict[int, object]:
    """SIGINT, SIGTERM and SIGHUP raise Terminated from now on; returns the handlers they had
    (for `restore_signals`). Only the main thread can set handlers: elsewhere nothing changes."""
    try:
        return {signum: signal.signal(signum, _raise_terminated) for signum in STOP_SIGNALS}
    except ValueError:
        return {}


def keep_catching_stop_signals() -> list[str]:
    """Catch the stop signals again where something replaced the handlers (Ray's in-process
    head sets a SIGTERM handler that calls sys.exit and never restores the one before it):
    the names of the signals taken back."""
    taken = []
    for signum in STOP_SIGNALS:
        try:
            if signal.getsignal(signum) is not _raise_terminated:
                signal.signal(signum, _raise_terminated)
                taken.append(signal.Signals(signum).name)
        except ValueError:          # not the main thread
            return taken
    return taken


def restore_signals(previous: dict[int, object]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def deferring_signals(cleanup: Callable[[], object]) -> object:
    """`cleanup()` with stop signals held off: a second Ctrl-C or SIGTERM does not cut it short."""
    global _deferred
    _deferred += 1
    try:
        return cleanup()
    finally:
        _deferred -= 1


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
