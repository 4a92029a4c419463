"""`bench run --local-workers N`: start N worker processes of a multi-process backend on this
host, wait for them, and fail (non-zero) if any fails. A worker that dies makes the others
stop within a bounded time: they see the failure in their collectives, or are terminated
after a grace period. Worker logs go to <results>/<run_id>/worker-<rank>.log; the chief's
output is shown as it comes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.errors import UsageError
from bench.record import new_run_id

GRACE_S = float(os.environ.get("DISTBENCH_WORKER_GRACE", "90"))


LAUNCH_OPTIONS = ("--local-workers", "--launcher")


def strip_local_workers(argv: list[str]) -> list[str]:
    """The run's own options: without those that only the launcher reads."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in LAUNCH_OPTIONS:
            skip = True
            continue
        if arg.startswith(tuple(f"{o}=" for o in LAUNCH_OPTIONS)):
            continue
        out.append(arg)
    return out


def run_local(backend_cls, workers: int, run_argv: list[str], results: str, launcher: str = "gloo") -> int:
    """Start `workers` copies of `bench run <run_argv>`: through the backend's own launcher
    (horovodrun, mpirun) where it has one, else each with its backend environment."""
    if workers < 1:
        raise UsageError(f"--local-workers {workers}: must be >= 1")
    if not getattr(backend_cls, "multi_process", False):
        raise UsageError(f"--local-workers: strategy {backend_cls.name!r} runs in one process")
    from strategies.cluster import free_ports
    run_id = new_run_id()
    logs = Path(results) / run_id
    logs.mkdir(parents=True, exist_ok=True)
    ports = free_ports(workers)
    base_env = {**os.environ, "DISTBENCH_RUN_ID": run_id, "DISTBENCH_LAUNCHED": "1",
                **backend_cls.local_launch_env()}
    if hasattr(backend_cls, "local_command"):
        command = backend_cls.local_command(workers, run_argv, launcher)
        return _report(_wait([subprocess.Popen(command, env=base_env)], logs), logs)
    procs = []
    for rank in range(workers):
        env = {**base_env, **backend_cls.local_worker_env(rank, workers, ports)}
        cmd = [sys.executable, "-m", "bench", "run", *run_argv]
        if rank == 0:
            procs.append(subprocess.Popen(cmd, env=env))
        else:
            with open(logs / f"worker-{rank}.log", "w") as log:
                procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
    return _report(_wait(procs, logs), logs)


def _report(code: int, run_dir: Path) -> int:
    """The record's path is the last line, as for a single-process run."""
    record = run_dir / "record.json"
    if record.is_file():
        print(record, flush=True)
    return code


def _wait(procs: list[subprocess.Popen], logs: Path) -> int:
    first_failure: tuple[int, int] | None = None
    deadline = None

    def forward(signum, frame):        # SIGTERM (Slurm, kill) reaches every worker
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)
    previous = signal.signal(signal.SIGTERM, forward)
    try:
        while any(p.poll() is None for p in procs):
            for rank, proc in enumerate(procs):
                code = proc.poll()
                if code not in (None, 0) and first_failure is None:
                    first_failure = (rank, code)
                    deadline = time.monotonic() + GRACE_S
            if deadline is not None and time.monotonic() > deadline:
                _stop(procs)
                break
            time.sleep(0.2)
    except KeyboardInterrupt:
        _stop(procs, signal.SIGINT)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    codes = [p.wait() for p in procs]
    if first_failure is None:
        bad = [(rank, code) for rank, code in enumerate(codes) if code != 0]
        first_failure = bad[0] if bad else None
    if first_failure is not None:
        rank, code = first_failure
        where = "" if rank == 0 else f"; see {logs / f'worker-{rank}.log'}"
        print(f"bench: worker {rank} exited with code {code}{where}", file=sys.stderr)
        return codes[0] if codes[0] != 0 else 1
    return 0


def _stop(procs: list[subprocess.Popen], signum: int = signal.SIGTERM) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signum)
    end = time.monotonic() + 15
    while time.monotonic() < end and any(p.poll() is None for p in procs):
        time.sleep(0.2)
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
