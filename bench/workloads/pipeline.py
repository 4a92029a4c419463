"""tf.data building blocks shared by the workloads: each replica's share of every global batch
(`bench.core.sharding`), gathered from in-memory arrays and prefetched; and a synthetic source
with no input I/O."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import tensorflow as tf

from bench.core.sharding import WHOLE, Shard

AUTOTUNE = tf.data.AUTOTUNE


def from_arrays(arrays: Any, global_batch: int, seed: int, training: bool,
                shuffle_buffer: int | None = None, batch_map: Callable | None = None,
                shard: Shard = WHOLE, repeat: bool = False) -> tf.data.Dataset:
    """In-memory arrays -> `shard`'s rows of every global batch, prefetched.

    Training: an epoch's order is drawn at once (a seeded permutation, fresh each iteration;
    with `shuffle_buffer` smaller than the data, a permutation within consecutive windows of
    that many samples), cut into full global batches (the remainder dropped), and each shard
    gathers only its own rows of each batch. Evaluation: the samples in order, in global
    batches whose last one may be partial (its rows split as evenly as the shards allow; a
    shard with none of them gets it empty, as tf.distribute pads a replica without data, so
    that every worker runs as many evaluation steps and collectives as the others).

    `repeat` (training): the passes follow one another in one stream, each in a fresh order,
    without restarting the pipeline between them (a `.repeat()` over the pass would: at 64
    replicas of a small data set every batch is a pass, and the restart was a sixth of its
    cost).

    Every shard therefore reads the same global order, and the shards of one step together
    hold exactly the global batch one device would; no shard builds the global batch. (Before,
    every rank built the whole global batch and sliced its part, and before that tf.data's
    per-sample cache/shuffle/batch took 8.5 ms for a Fashion-MNIST batch of 4096 on one core,
    against 1.5 gathered: `benchmarks/pipeline.py`, `benchmarks/input_per_rank.py`.)"""
    tensors = tf.nest.map_structure(tf.convert_to_tensor, arrays)
    size = len(tf.nest.flatten(arrays)[0])
    rows = _training_rows(size, global_batch, seed, shuffle_buffer, shard, repeat) if training \
        else _evaluation_rows(size, global_batch, shard)
    ds = rows.map(lambda index: tf.nest.map_structure(lambda t: tf.gather(t, index), tensors),
                  num_parallel_calls=AUTOTUNE, deterministic=True)
    if batch_map is not None:
        ds = ds.map(batch_map, num_parallel_calls=AUTOTUNE, deterministic=True)
    return ds.prefetch(AUTOTUNE)


def _training_rows(size: int, global_batch: int, seed: int, window: int | None, shard: Shard,
                   repeat: bool = False) -> tf.data.Dataset:
    """The shard's row indices of every full global batch of one pass (or, with `repeat`, of
    pass after pass), in a fresh order each iteration (as `shuffle` with
    `reshuffle_each_iteration`) and each pass. The order is a random-access permutation
    (`RandomIndexShuffle`): a shard computes the positions of its own rows only, so its cost
    per batch does not grow with the global batch (an argsort of the epoch's order would,
    amortised over fewer steps an epoch as the replicas grow)."""
    steps = size // global_batch
    start, stop = shard.bounds(global_batch)
    window = min(window or size, size)

    def rows(iteration_seed, count):
        passes, step = count // steps, count % steps
        position = step * global_batch + tf.range(start, stop, dtype=tf.int64)
        block = position // window              # permuted within consecutive windows
        # the op itself, with [n, 3] seeds: index_shuffle's wrapper pads batched seeds along
        # the batch axis (TF 2.21: "Seed has shape [13, 3] but must have shape [12, 3]")
        seeds = tf.stack([tf.fill(tf.shape(block), iteration_seed[0]),
                          tf.fill(tf.shape(block), iteration_seed[1] + passes), block], axis=1)
        length = tf.minimum(tf.constant(window, tf.int64), size - block * window)
        return block * window + tf.raw_ops.RandomIndexShuffle(index=position % window, seed=seeds,
                                                              max_index=length - 1, rounds=4)

    def stream(iteration_seed):
        counts = tf.data.Dataset.counter() if repeat else tf.data.Dataset.range(steps)
        return counts.map(lambda count: rows(iteration_seed, count))

    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2).take(1)
    # the length stated: Keras counts a pass's steps from it (unknown, evaluate() averaged 3
    # batches as if there were 4: "Your input ran out of data")
    length = tf.data.INFINITE_CARDINALITY if repeat else steps
    return seeds.flat_map(stream).apply(tf.data.experimental.assert_cardinality(length))


def _evaluation_rows(size: int, global_batch: int, shard: Shard) -> tf.data.Dataset:
    full = size // global_batch
    start, stop = shard.bounds(global_batch)
    rows = tf.data.Dataset.from_tensor_slices(np.arange(full * global_batch).reshape(full, global_batch)[:, start:stop])
    first, last = shard.bounds(size - full * global_batch)
    if size > full * global_batch:      # every shard gets the partial batch, empty if it has none of its
        rows = rows.concatenate(tf.data.Dataset.from_tensors(np.arange(full * global_batch + first,
                                                                       full * global_batch + last)))
    return rows


def synthetic(make_batch: Callable[[tf.random.Generator, int], Any], global_batch: int, seed: int,
              shard: Shard = WHOLE) -> tf.data.Dataset:
    """One batch of the shard's rows generated in memory, repeated forever: measures compute
    without input I/O. `make_batch(generator, rows)`."""
    batch = make_batch(tf.random.Generator.from_seed(seed * 1_000_003 + shard.index), shard.size(global_batch))
    return tf.data.Dataset.from_tensors(batch).repeat().prefetch(AUTOTUNE)
