"""The in-memory input pipeline, in one run: batches a second of `from_arrays`' gathered path
against tf.data's per-sample path (cache, shuffle, batch) it replaced, on one core, for
Fashion-MNIST-shaped data at a 1- and a 2-replica global batch (every rank of a data-parallel
run builds the global batch).

    .venv/bin/python benchmarks/pipeline.py            # ratio = per-sample ms / gathered ms
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
os.environ.update(TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1", TF_CPP_MIN_LOG_LEVEL="2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench.data import fashion_mnist  # noqa: E402
from bench.workloads import mlp, pipeline  # noqa: E402


def per_sample(arrays, global_batch: int, seed: int) -> tf.data.Dataset:
    """The pipeline before: tf.data's per-sample cache, full shuffle, batch."""
    size = len(arrays[0])
    ds = tf.data.Dataset.from_tensor_slices(arrays).cache().shuffle(size, seed=seed, reshuffle_each_iteration=True)
    return ds.batch(global_batch, drop_remainder=True).map(mlp._scale).prefetch(pipeline.AUTOTUNE)


def ms_per_batch(dataset: tf.data.Dataset, batches: int) -> float:
    batch_of = iter(dataset.repeat())
    for _ in range(3):
        next(batch_of)
    start = time.perf_counter()
    for _ in range(batches):
        next(batch_of)
    return (time.perf_counter() - start) / batches * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    arrays = fashion_mnist.synthetic(60_000, 10_000, 0)
    train = (arrays["train_images"][:55_000], arrays["train_labels"][:55_000].astype(np.int32))
    for global_batch in (4096, 8192):
        before = ms_per_batch(per_sample(train, global_batch, 1), args.batches)
        after = ms_per_batch(pipeline.from_arrays(train, global_batch, 1, True, batch_map=mlp._scale), args.batches)
        print(f"batch {global_batch}: per-sample {before:.2f} ms, gathered {after:.2f} ms, ratio={before / after:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
