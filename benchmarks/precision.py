"""Throughput of mixed_bfloat16 (and optionally mixed_float16) against float32, per workload,
in one run: the same `bench run` (default strategy, bound to the same cores, same steps),
the precisions alternated --repeat times, the ratio of the medians printed.

    .venv/bin/python benchmarks/precision.py
    .venv/bin/python benchmarks/precision.py --precisions mixed_bfloat16,mixed_float16 --workloads charrnn-gru

On a CPU this says what the kernels here make of 16-bit compute (a CPU without native
bfloat16 matmuls converts); on an A100 run the same script (or a study with
`precision = [...]` in its matrix) to see the tensor cores' effect.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile

from benchrun import samples_per_s

WORKLOADS = {
    "charrnn-gru": {"data": "synthetic", "overrides": {"rnn_units": "256"}},
    "charrnn-lstm": {"data": "synthetic", "overrides": {"rnn_units": "256"}},
    "mlp": {"data": "generated"},
    "memnn": {"data": "generated"},
}


def throughput(workload: str, precision: str, results: str, args) -> float:
    cfg = {"workload": workload, "precision": precision, "epochs": 1, "steps_per_epoch": args.steps,
           "warmup_steps": 5, "cpus_per_replica": args.cores, "results": results, "verbose": 0,
           **WORKLOADS[workload]}
    return samples_per_s(cfg, f"{workload} {precision}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--precisions", default="mixed_bfloat16", help="each against float32")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--cores", type=int, default=1, help="cores the run owns")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    others = args.precisions.split(",")
    print(f"workload float32 {' '.join(others)} (samples/s, medians of {args.repeat}) ratios")
    with tempfile.TemporaryDirectory() as work:
        for workload in args.workloads.split(","):
            runs: dict[str, list[float]] = {p: [] for p in ["float32", *others]}
            for _ in range(args.repeat):
                for precision in runs:
                    runs[precision].append(throughput(workload, precision, work, args))
            medians = {p: statistics.median(v) for p, v in runs.items()}
            ratios = " ".join(f"{p}/float32={medians[p] / medians['float32']:.3f}" for p in others)
            print(f"{workload} {' '.join(f'{m:.1f}' for m in medians.values())} {ratios}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
