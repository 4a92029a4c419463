"""Keras building blocks of the workloads: memn2n's layers, the stateful char-RNN's callback.

Imported when a model is built (it imports Keras), so that a workload's name, hyperparameters
and checks need no TensorFlow; importing it registers the layers for `keras.saving.load_model`."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


def position_encoding(words: int, dim: int) -> np.ndarray:
    """The paper's l_kj = (1 - j/J) - (k/d)(1 - 2j/J): a bag of words that knows word order."""
    j = np.arange(1, words + 1)[:, None] / words
    k = np.arange(1, dim + 1)[None, :] / dim
    return ((1 - j) - k * (1 - 2 * j)).astype("float32")


@keras.saving.register_keras_serializable(package="distbench")
class BagOfWords(keras.layers.Layer):
    """Word ids (..., words) -> (..., dim): position-encoded embeddings summed over the
    words, padding (id 0) contributing nothing; with `memories`, a learnt temporal
    encoding per memory row is added (rows are ordered oldest to newest)."""

    def __init__(self, vocab_size: int, dim: int, memories: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.dim, self.memories = vocab_size, dim, memories
        self.embedding = keras.layers.Embedding(vocab_size, dim)

    def build(self, input_shape):
        self.embedding.build(input_shape)
        if self.memories:
            self.temporal = self.add_weight(shape=(self.memories, self.dim), name="temporal",
                                            initializer=keras.initializers.RandomNormal(stddev=0.1))

    def call(self, tokens):
        present = ops.expand_dims(ops.cast(ops.not_equal(tokens, 0), self.compute_dtype), -1)
        weights = ops.cast(position_encoding(tokens.shape[-1], self.dim), self.compute_dtype)
        encoded = ops.sum(self.embedding(tokens) * present * weights, axis=-2)
        return encoded + self.temporal if self.memories else encoded

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.dim)

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "dim": self.dim,
                "memories": self.memories}


@keras.saving.register_keras_serializable(package="distbench")
class MemoryHops(keras.layers.Layer):
    """`hops` rounds of attention with layer-wise tied weights: p = softmax(m . u),
    u <- H u + sum(p c). Inputs: memories to match (m), memories to read (c), query (u)."""

    def __init__(self, hops: int, **kwargs):
        super().__init__(**kwargs)
        self.hops = hops

    def build(self, input_shapes):
        query_shape = input_shapes[2]
        self.project = keras.layers.Dense(query_shape[-1], use_bias=False)
        self.project.build(query_shape)

    def call(self, inputs):
        match_memories, read_memories, query = inputs
        for _ in range(self.hops):
            attention = ops.softmax(ops.einsum("bmd,bd->bm", match_memories, query), axis=-1)
            query = self.project(query) + ops.einsum("bm,bmd->bd", attention, read_memories)
        return query

    def compute_output_shape(self, input_shapes):
        return input_shapes[2]

    def get_config(self):
        return {**super().get_config(), "hops": self.hops}


class ResetStates(keras.callbacks.Callback):
    """A stateful RNN's states reset at the start of every epoch (its streams start again)."""

    def on_epoch_begin(self, epoch, logs=None):
        for layer in self.model.layers:
            if getattr(layer, "stateful", False):
                layer.reset_state()

