"""Backend tax: each backend's throughput at ONE replica against `default`'s, on the same bound
cores, the same model and the same steps, in one run (alternated `--rounds` times; the
median round counts). Prints, per backend,

    ratio = samples/s (backend x1) / samples/s (default)

The goal is >= 0.97: at one replica there is nothing to communicate, so what a backend costs
beyond that is its own machinery (callbacks, collectives of metrics, dataset distribution).

    .venv/bin/python benchmarks/backend_tax.py                     # GRU 256, synthetic, batch 64, 40 steps
    .venv/bin/python benchmarks/backend_tax.py --steps 80 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile

from benchrun import samples_per_s

BACKENDS = {"default": {}, "mirrored": {"devices": 1}, "mwms": {"local_workers": 1},
            "horovod": {"local_workers": 1}}


def run(strategy: str, args: argparse.Namespace, results: str) -> float:
    config = {"workload": "charrnn-gru", "strategy": strategy, "data": "synthetic", "epochs": 2,
              "steps_per_epoch": args.steps, "per_replica_batch_size": args.batch, "cpus_per_replica": args.cpus,
              "overrides": {"rnn_units": str(args.units)}, "results": results, "verbose": 0,
              **BACKENDS[strategy]}
    return samples_per_s(config, strategy)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40, help="steps per epoch (2 epochs)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--units", type=int, default=256)
    parser.add_argument("--cpus", type=int, default=1, help="cores of the one replica")
    parser.add_argument("--rounds", type=int, default=3, help="every backend this many times, alternated")
    args = parser.parse_args()
    rounds: dict[str, list[float]] = {name: [] for name in BACKENDS}
    with tempfile.TemporaryDirectory() as results:
        for _ in range(args.rounds):
            for name in BACKENDS:
                rounds[name].append(run(name, args, results))
    base = statistics.median(rounds["default"])
    for name, values in rounds.items():
        shown = " / ".join(f"{v:,.1f}" for v in values)
        print(f"{name:<9} {shown} samples/s  ratio={statistics.median(values) / base:.3f}")
    worst = min(statistics.median(v) / base for v in rounds.values())
    print(f"worst ratio={worst:.3f} (goal >= 0.97)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
