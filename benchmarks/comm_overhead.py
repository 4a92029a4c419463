"""Cost of data parallelism on this host: step throughput of 2 local workers vs 1 at the same
per-worker batch (weak scaling), for charrnn-gru, in one run. Prints, per backend,

    ratio = throughput(2 workers) / (2 x throughput(1 worker))

i.e. the weak-scaling efficiency (1.0 = perfect). On a 2-core machine both workers share
the cores, so this measures contention plus communication, not a cluster's scaling.

    .venv/bin/python benchmarks/comm_overhead.py                       # GRU 1024, batch 64/worker
    .venv/bin/python benchmarks/comm_overhead.py --set rnn_units=256 --steps 20
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def run(args: argparse.Namespace, strategy: list[str], results: str) -> dict:
    sets = [x for s in args.sets for x in ("--set", s)]
    cmd = [sys.executable, "-m", "bench", "run", "-q", "-w", "charrnn-gru", *strategy,
           "--per-replica-batch-size", str(args.batch), "--epochs", "1", "--steps-per-epoch", str(args.steps),
           "--warmup-steps", "3", "--results", results, *sets]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}: {done.stderr.strip().splitlines()[-3:]}")
    return json.loads(Path(done.stdout.strip().splitlines()[-1]).read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=64, help="per-worker batch")
    parser.add_argument("--backends", default="mwms,horovod")
    parser.add_argument("--set", action="append", dest="sets", default=[])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as results:
        one = run(args, ["-s", "default"], results)["throughput"]["samples_per_s"]
        print(f"1 worker : {one:8.1f} samples/s", flush=True)
        for backend in args.backends.split(","):
            record = run(args, ["-s", backend, "--local-workers", "2"], results)
            two = record["throughput"]["samples_per_s"]
            comm = record["timing"].get("communication", {}).get("allreduce_share")
            extra = f", allreduce {comm:.1%} of step time" if comm is not None else ""
            print(f"2 workers ({backend}): {two:8.1f} samples/s{extra}")
            print(f"ratio[{backend}]={two / (2 * one):.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
