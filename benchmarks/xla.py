"""Does XLA (`--jit-compile true`) help each workload on this host? Each configuration runs
as its own `bench run` process, alternating, and the script prints the throughput ratio
xla / no-xla per workload (> 1 means XLA helps).

    .venv/bin/python benchmarks/xla.py                       # all workloads, small steps
    .venv/bin/python benchmarks/xla.py --workloads charrnn-gru --steps 10
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

FULL = {"mlp": "generated", "memnn": "generated", "charrnn-gru": "real", "charrnn-lstm": "real"}


def throughput(workload: str, jit: str, steps: int, results: str, extra: list[str]) -> float:
    cmd = [sys.executable, "-m", "bench", "run", "-q", "-w", workload, "--data", FULL[workload],
           "--jit-compile", jit, "--epochs", "1", "--steps-per-epoch", str(steps), "--warmup-steps", "3",
           "--results", results, *extra]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr.strip().splitlines()[-1:]}")
    record = json.loads(Path(done.stdout.strip().splitlines()[-1]).read_text())
    return record["throughput"]["samples_per_s"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default=",".join(FULL))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--set", action="append", dest="sets", default=[])
    args = parser.parse_args()
    extra = [x for s in args.sets for x in ("--set", s)]
    with tempfile.TemporaryDirectory() as results:
        for workload in args.workloads.split(","):
            runs = {"false": [], "true": []}
            for _ in range(args.trials):
                for jit in runs:
                    runs[jit].append(throughput(workload, jit, args.steps, results, extra))
            ratio = statistics.median(runs["true"]) / statistics.median(runs["false"])
            print(f"{workload:<13} no-xla {statistics.median(runs['false']):10.1f} samples/s  "
                  f"xla {statistics.median(runs['true']):10.1f} samples/s  ratio={ratio:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
