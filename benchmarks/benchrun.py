"""One `bench run` of a benchmark: the config handed as data, its record read back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def samples_per_s(config: dict, what: str, launch: list[str] = (), env: dict | None = None) -> float:
    """Throughput of `bench run` with `config` in DISTBENCH_RUN_CONFIG, started under `launch`
    (e.g. an srun line); the benchmark ends with the run's error where it did not end ok."""
    done = subprocess.run([*launch, sys.executable, "-m", "bench", "run"], capture_output=True, text=True,
                          env={**os.environ, **(env or {}), "DISTBENCH_RUN_CONFIG": json.dumps(config)})
    if done.returncode != 0:
        raise SystemExit(f"{what}: {done.stderr.strip().splitlines()[-3:]}")
    record = json.loads(Path(done.stdout.strip().splitlines()[-1]).read_text())
    if record["status"] != "ok":
        raise SystemExit(f"{what}: {record['run_id']}: {record['status']}: {record['error']}")
    return record["throughput"]["samples_per_s"]
