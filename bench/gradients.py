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


def apply_dense(optimizer: Any) -> None:
    """Make `optimizer` densify the gradients it is given (Keras' train step hands them to
    `Optimizer.apply`, under every tf.distribute strategy, before the all-reduce)."""
    apply = optimizer.apply

    def dense_apply(grads, trainable_variables=None):
        return apply(densify(list(grads)), trainable_variables)
    optimizer.apply = dense_apply
