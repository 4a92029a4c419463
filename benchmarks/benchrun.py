"""One `bench` command of a benchmark (a run with its config handed as data, or `bench comm`),
its record read back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.core.procs import Terminated  # noqa: E402


def bench_record(command: list[str], what: str, launch: list[str] = (), env: dict | None = None) -> dict:
    """The record of `bench COMMAND...` started under `launch` (e.g. an srun line); the
    benchmark ends with the command's error where it did not end ok."""
    done = subprocess.run([*launch, sys.executable, "-m", "bench", *command], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise SystemExit(f"{what}: {done.stderr.strip().splitlines()[-3:]}")
    record = json.loads(Path(done.stdout.strip().splitlines()[-1]).read_text())
    if record["status"] != "ok":
        raise SystemExit(f"{what}: {record['run_id']}: {record['status']}: {record['error']}")
    return record


def run_record(config: dict, what: str, launch: list[str] = (), env: dict | None = None) -> dict:
    """The record of `bench run` with `config` in DISTBENCH_RUN_CONFIG."""
    return bench_record(["run"], what, launch, {**(env or {}), "DISTBENCH_RUN_CONFIG": json.dumps(config)})


def samples_per_s(config: dict, what: str, launch: list[str] = (), env: dict | None = None) -> float:
    return run_record(config, what, launch, env)["throughput"]["samples_per_s"]


def at_once(config: dict, hosts: list[str], env: dict, cpus: int = 1) -> list[float]:
    """Independent 1-replica runs of `config` started together on an emulated cluster, one on
    each of `hosts` (a host may come twice: two tasks on one node), each with `cpus` Slurm CPUs:
    each one's samples/s. With one host, the run alone."""
    runs = [subprocess.Popen(["srun", "-N1", "-n1", f"-c{cpus}", "-w", host, sys.executable, "-m", "bench", "run"],
                             env={**os.environ, **env, "DISTBENCH_RUN_CONFIG": json.dumps(config)},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for host in hosts]
    rates = []
    for run in runs:
        out, err = run.communicate()
        if run.returncode != 0:
            raise SystemExit(f"{len(hosts)} runs at once: {err.strip().splitlines()[-3:]}")
        rates.append(json.loads(Path(out.strip().splitlines()[-1]).read_text())["throughput"]["samples_per_s"])
    return rates


def until_stopped(main: Callable[[], int]) -> int:
    """`main()`'s exit code; stopped by SIGINT, SIGTERM or SIGHUP while an emulated cluster was
    up (which removed itself as the signal unwound), one line and 128 + the signal."""
    try:
        return main()
    except Terminated as stop:
        print(f"{Path(sys.argv[0]).name}: stopped by {stop}; the emulated cluster was removed", file=sys.stderr)
        return stop.exit_code
