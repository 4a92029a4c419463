"""Embedding gradients as dense tensors, the same under every strategy.

TensorFlow differentiates an embedding lookup into `tf.IndexedSlices`: one row per lookup,
duplicates included (a char-RNN batch of 64 x 100 characters: 6,400 rows of 256 floats,
6.5 MB, for a table of 65 x 256, 66 kB). Distributed, such gradients are all-gathered
(MultiWorkerMirrored, Horovod), so every step moved a hundred times the table's bytes, and
optimizers that square the gradient (Keras' RMSprop) squared each duplicate row instead of
their sum. Summed into the table's shape first, the gradient is the true one, costs the
table's bytes in one all-reduce with the others, and gives every strategy the same update.
Tables far larger than a step's lookups keep sparse gradients with `sparse_gradients`.
"""

from __future__ import annotations

from typing import Any


def densify(gradients: list) -> list:
    """The gradients with every IndexedSlices summed into its dense shape."""
    import tensorflow as tf
    return [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in gradients]


def prepare_apply(optimizer: Any, dense: bool = True) -> None:
    """Make `optimizer` densify the gradients it is given (when `dense`) and, under dynamic
    loss scaling with several replicas, skip or apply a step on all replicas alike. Keras'
    train step hands the gradients to `Optimizer.apply` under every tf.distribute strategy,
    before their all-reduce."""
    import keras
    apply = optimizer.apply
    loss_scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

    def prepared_apply(grads, trainable_variables=None):
        grads = densify(list(grads)) if dense else list(grads)
        if loss_scaled:
            grads = _agreed_finite(grads)
        return apply(grads, trainable_variables)
    optimizer.apply = prepared_apply


def _agreed_finite(gradients: list) -> list:
    """Keras' LossScaleOptimizer checks a replica's own gradients for inf/NaN before their
    all-reduce (MultiWorkerMirrored runs without a merge call), and skips the step where it
    finds any: a replica that overflowed alone would skip while the others wait for it in
    the all-reduce. Every replica's gradients are made non-finite when any replica's are
    (one all-reduce of a flag), so all skip the step and halve the loss scale together."""
    import tensorflow as tf
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return gradients
    present = [g for g in gradients if g is not None]
    values = [g.values if isinstance(g, tf.IndexedSlices) else g for g in present]
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in values])
    overflowed = context.all_reduce("SUM", 1.0 - tf.cast(finite, tf.float32))
    factor = tf.where(overflowed > 0, float("nan"), 1.0)

    def poisoned(g):
        if g is None:
            return None
        if isinstance(g, tf.IndexedSlices):
            return tf.IndexedSlices(g.values * tf.cast(factor, g.dtype), g.indices, g.dense_shape)
        return g * tf.cast(factor, g.dtype)
    return [poisoned(g) for g in gradients]
