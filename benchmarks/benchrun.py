"""One `bench` command of a benchmark (a run with its config handed as data, or `bench comm`),
its record read back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


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
