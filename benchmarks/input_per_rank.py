"""Input cost per rank against the replica count, in one process: rank 0's training pipeline of
mlp (Fashion-MNIST-shaped images, the workload's own `dataset`) built for N = 1, 8 and 64
replicas at a fixed per-replica batch, on one core; time per batch and the memory its
iteration adds. Goal (issue 25): ratio = largest / smallest time per batch <= 1.10.

Beside it, what every rank did before (built the whole global batch and kept its slice),
timed the same way once, to show what the ratio measures. The memory column is what the
process grew by while iterating (prefetch and map buffers), beyond the data it holds.

    .venv/bin/python benchmarks/input_per_rank.py              # 4096 per replica, as on an A100
    .venv/bin/python benchmarks/input_per_rank.py --per-replica 256 --replicas 1,8,64
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
os.environ.update(TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1", TF_CPP_MIN_LOG_LEVEL="2")

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench.core.sharding import Shard  # noqa: E402
from bench.data import fashion_mnist  # noqa: E402
from bench.workloads import mlp  # noqa: E402
from bench.workloads.base import Data  # noqa: E402


def measure(dataset: tf.data.Dataset, batches: int) -> tuple[float, float]:
    """(ms per batch after 3 untimed ones, MiB the process grew by while iterating)."""
    process = psutil.Process()
    before = process.memory_info().rss
    batch_of = iter(dataset.repeat())
    for _ in range(3):
        next(batch_of)
    peak = process.memory_info().rss
    start = time.perf_counter()
    for _ in range(batches):
        next(batch_of)
        peak = max(peak, process.memory_info().rss)
    return (time.perf_counter() - start) / batches * 1e3, (peak - before) / 2**20


def sliced(dataset: tf.data.Dataset, part: int) -> tf.data.Dataset:
    """Rank 0's slice of every global batch, as each rank took it before."""
    return dataset.map(lambda x, y: (x[:part], y[:part]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-replica", type=int, default=4096)
    parser.add_argument("--replicas", default="1,8,64")
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-before", action="store_true", help="skip the global-batch-per-rank path")
    args = parser.parse_args()
    counts = [int(n) for n in args.replicas.split(",")]
    samples = args.per_replica * max(counts) + 1000          # one full global batch at the largest count
    arrays = fashion_mnist.synthetic(samples, 10, 0)
    data = Data("generated", "in memory", {"train": (arrays["train_images"], arrays["train_labels"].astype(np.int32))})
    workload, hp = mlp.MLP(), {}
    print(f"mlp, {args.per_replica} per replica, {samples} samples, one core; rank 0's pipeline; "
          f"medians of {args.rounds} rounds in alternating order")
    ms: dict[int, list[float]] = {n: [] for n in counts}
    mib: dict[int, list[float]] = {n: [] for n in counts}
    for round_ in range(args.rounds):
        for count in (counts if round_ % 2 == 0 else counts[::-1]):
            global_batch = args.per_replica * count
            mine = workload.dataset(data, "train", global_batch, hp, 1, training=True, shard=Shard(0, count),
                                    repeat=True)
            took, grew = measure(mine, args.batches)
            ms[count].append(took)
            mib[count].append(grew)
    print("replicas global_batch ms_per_batch rss_growth_MiB" + ("" if args.no_before else " before_ms before_MiB"))
    times = []
    for count in counts:
        times.append(statistics.median(ms[count]))
        line = f"{count} {args.per_replica * count} {times[-1]:.2f} {statistics.median(mib[count]):.0f}"
        if not args.no_before:
            whole = workload.dataset(data, "train", args.per_replica * count, hp, 1, training=True)
            took, grew = measure(sliced(whole, args.per_replica), max(3, args.batches // count))
            line += f" {took:.2f} {grew:.0f}"
        print(line, flush=True)
    print(f"ratio={max(times) / min(times):.3f} (largest / smallest ms per batch; goal <= 1.10)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
