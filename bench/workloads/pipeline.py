"""tf.data building blocks shared by the workloads (as in the tf.data course notes):
shuffle, batch, prefetch(AUTOTUNE); and a synthetic source with no input I/O."""

from __future__ import annotations

from typing import Any, Callable

import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE


def from_arrays(arrays: Any, global_batch: int, seed: int, training: bool,
                shuffle_buffer: int | None = None, batch_map: Callable | None = None) -> tf.data.Dataset:
    """In-memory arrays -> shuffled (training), batched, prefetched pipeline.

    A full shuffle (no `shuffle_buffer`, or one as large as the data) draws each epoch's
    permutation at once and gathers every batch whole. tf.data's per-sample cache, shuffle
    and batch took 8.5 ms for a Fashion-MNIST batch of 4096 on one core and 21.0 ms for 8192,
    against 1.5 and 3.3 ms gathered (`benchmarks/pipeline.py`); every rank of a
    data-parallel run builds the global batch, so the per-sample path grew each replica's
    step with the number of replicas."""
    size = len(tf.nest.flatten(arrays)[0])
    if training and (shuffle_buffer is None or shuffle_buffer >= size):
        ds = _shuffled_batches(arrays, size, global_batch, seed)
    else:
        ds = tf.data.Dataset.from_tensor_slices(arrays).cache()
        if training:
            ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(global_batch, drop_remainder=training)
    if batch_map is not None:
        ds = ds.map(batch_map, num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)


def _shuffled_batches(arrays: Any, size: int, global_batch: int, seed: int) -> tf.data.Dataset:
    """One pass of full batches in a fresh random order each iteration (as `shuffle` with
    `reshuffle_each_iteration`), the last partial batch dropped."""
    tensors = tf.nest.map_structure(tf.convert_to_tensor, arrays)
    steps = size // global_batch

    def epoch(epoch_seed):
        order = tf.random.experimental.stateless_shuffle(tf.range(size), seed=epoch_seed)
        return tf.data.Dataset.from_tensor_slices(tf.reshape(order[:steps * global_batch], [steps, global_batch]))

    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2).take(1)
    return seeds.flat_map(epoch).map(lambda index: tf.nest.map_structure(lambda t: tf.gather(t, index), tensors))


def synthetic(make_batch: Callable[[tf.random.Generator], Any], seed: int) -> tf.data.Dataset:
    """One batch generated in memory, repeated forever: measures compute without input I/O."""
    batch = make_batch(tf.random.Generator.from_seed(seed))
    return tf.data.Dataset.from_tensors(batch).repeat().prefetch(AUTOTUNE)
