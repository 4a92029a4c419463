"""tf.data building blocks shared by the workloads (as in the tf.data course notes):
cache, shuffle, batch, prefetch(AUTOTUNE); and a synthetic source with no input I/O."""

from __future__ import annotations

from typing import Any, Callable

import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE


def from_arrays(arrays: Any, global_batch: int, seed: int, training: bool,
                shuffle_buffer: int | None = None, batch_map: Callable | None = None) -> tf.data.Dataset:
    """In-memory arrays -> cached, shuffled (training), batched, prefetched pipeline."""
    ds = tf.data.Dataset.from_tensor_slices(arrays).cache()
    if training:
        size = len(tf.nest.flatten(arrays)[0])
        ds = ds.shuffle(shuffle_buffer or size, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(global_batch, drop_remainder=training)
    if batch_map is not None:
        ds = ds.map(batch_map, num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)


def synthetic(make_batch: Callable[[tf.random.Generator], Any], seed: int) -> tf.data.Dataset:
    """One batch generated in memory, repeated forever: measures compute without input I/O."""
    batch = make_batch(tf.random.Generator.from_seed(seed))
    return tf.data.Dataset.from_tensors(batch).repeat().prefetch(AUTOTUNE)
