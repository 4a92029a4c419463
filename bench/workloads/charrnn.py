"""Character-level RNNs on tiny Shakespeare (the GRU text-generation tutorial and the
stateful 2 x LSTM course notes): StringLookup vocabulary with [UNK], Embedding 256,
RNN 1024 with return_sequences, Dense(vocab) logits, sparse CE from logits, Adam;
sequences of 100 with the target shifted by one."""

from __future__ import annotations

import numpy as np

from bench.core.hparams import HParam
from bench.core.sharding import WHOLE, Shard
from bench.data import shakespeare
from bench.workloads.base import Data, Workload

SYNTHETIC_VOCAB = 66     # 65 characters of tiny Shakespeare + [UNK]
SYNTHETIC_CHARS = 1_115_394


def vocabulary(text: str) -> list[str]:
    """The StringLookup vocabulary: [UNK] at id 0, then the sorted characters."""
    import keras
    lookup = keras.layers.StringLookup(vocabulary=sorted(set(text)), mask_token=None)
    return lookup.get_vocabulary()


def encode(text: str, vocab: list[str]) -> np.ndarray:
    import keras
    import tensorflow as tf
    lookup = keras.layers.StringLookup(vocabulary=vocab[1:], mask_token=None)
    return np.asarray(lookup(tf.strings.unicode_split(text, "UTF-8")), dtype=np.int32)


class _CharRNN(Workload):
    monitor = None          # loss only, as in the tutorials
    default_batch_size = 64
    load_hparams = ("generated_chars", "seq_length")
    tune_space = {"learning_rate": "loguniform(0.0001, 0.01)"}
    tune_mutations = {"learning_rate": "loguniform(0.0001, 0.01)"}
    space = {
        "embedding_dim": HParam(256, 1, 8192),
        "rnn_units": HParam(1024, 1, 16384),
        "seq_length": HParam(100, 2, 100_000),
        "learning_rate": HParam(1e-3, 1e-6, 1.0, mutable=True),
        "shuffle_buffer": HParam(10_000, 1, 10_000_000),
        "generated_chars": HParam(200_000, 1_000, 100_000_000, help="--data generated only"),
    }

    def tokens_per_sample(self, hp):
        return hp["seq_length"]

    def load(self, source, data_dir, hp, seed):
        if source == "synthetic":
            return Data(source, "in-memory random tensors",
                        info={"vocab": None, "vocab_size": SYNTHETIC_VOCAB, "chars": SYNTHETIC_CHARS,
                              "train_samples": SYNTHETIC_CHARS // (hp["seq_length"] + 1)})
        if source == "real":
            text, path = shakespeare.load(data_dir)
            location = str(path)
        else:
            text = shakespeare.generated_text(hp["generated_chars"], seed)
            location = f"generated dialogue text (seed {seed})"
        vocab = vocabulary(text)
        ids = encode(text, vocab)
        return Data(source, location, {"train": ids},
                    {"vocab": vocab, "vocab_size": len(vocab), "chars": len(text),
                     "train_samples": len(ids) // (hp["seq_length"] + 1)})

    def _synthetic(self, data, global_batch, hp, seed, shard):
        import tensorflow as tf
        from bench.workloads import pipeline
        seq, vocab = hp["seq_length"], data.info["vocab_size"]

        def make(rng, rows):
            ids = rng.uniform((rows, seq + 1), 1, vocab, dtype=tf.int32)
            return ids[:, :-1], ids[:, 1:]
        return pipeline.synthetic(make, global_batch, seed, shard)

    def build(self, data, hp, per_replica_batch, jit_compile=False):
        import keras
        vocab = data.info["vocab_size"]
        inputs = self._input(per_replica_batch)
        x = keras.layers.Embedding(vocab, hp["embedding_dim"], name="embedding")(inputs)
        for i, layer in enumerate(self._rnn_layers(hp)):
            x = layer(x)
        logits = keras.layers.Dense(vocab, name="logits", dtype="float32")(x)     # float32 under mixed precision
        model = keras.Model(inputs, logits, name=self.name.replace("-", "_"))
        model.compile(optimizer=keras.optimizers.Adam(hp["learning_rate"]),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      jit_compile=jit_compile)
        return model

    def _input(self, per_replica_batch):
        import keras
        return keras.Input((None,), dtype="int32", name="ids")

    def record_extra(self, data):
        return {"vocabulary": data.info["vocab"]} if data.info.get("vocab") else {}

    def export_generator(self, model, data, hp, directory):
        from bench.workloads import textgen
        return textgen.export(model, data.info["vocab"], directory)

    def _rnn_layers(self, hp):
        raise NotImplementedError


class CharRNNGRU(_CharRNN):
    name = "charrnn-gru"
    description = "char-RNN, GRU 1024 with embedding 256 (TensorFlow text-generation tutorial)"

    def dataset(self, data, split, global_batch, hp, seed, training, shard=WHOLE, repeat=False):
        if data.source == "synthetic":
            return self._synthetic(data, global_batch, hp, seed, shard)
        from bench.workloads import pipeline
        seq = hp["seq_length"]
        ids = data.splits["train"]
        n = len(ids) // (seq + 1)
        chunks = ids[: n * (seq + 1)].reshape(n, seq + 1)
        return pipeline.from_arrays((chunks[:, :-1], chunks[:, 1:]), global_batch, seed, training,
                                    shuffle_buffer=hp["shuffle_buffer"], shard=shard, repeat=repeat)

    def _rnn_layers(self, hp):
        import keras
        return [keras.layers.GRU(hp["rnn_units"], return_sequences=True, name="gru")]


class CharRNNLSTM(_CharRNN):
    """Stateful: row i of every batch continues row i of the previous batch, so the
    LSTM state carries across batches; states are reset at the start of each epoch."""
    name = "charrnn-lstm"
    description = "char-RNN, stateful 2 x LSTM 1024 with embedding 256 (course notes)"
    stateful = True
    space = {**_CharRNN.space, "layers": HParam(2, 1, 8)}

    def steps_per_epoch(self, data, global_batch):
        return max(1, (data.info["chars"] // global_batch - 1) // 100)

    def dataset(self, data, split, global_batch, hp, seed, training, shard=WHOLE, repeat=False):
        if data.source == "synthetic":
            return self._synthetic(data, global_batch, hp, seed, shard)
        import tensorflow as tf
        x, y = contiguous_batches(data.splits["train"], global_batch, hp["seq_length"], shard)
        batches = tf.data.Dataset.from_tensor_slices((x, y))
        return (batches.repeat() if repeat else batches).prefetch(tf.data.AUTOTUNE)

    def _input(self, per_replica_batch):
        import keras
        return keras.Input(batch_shape=(per_replica_batch, None), dtype="int32", name="ids")

    def _rnn_layers(self, hp):
        import keras
        return [keras.layers.LSTM(hp["rnn_units"], return_sequences=True, stateful=True, name=f"lstm_{i}")
                for i in range(hp["layers"])]

    def callbacks(self, hp):
        from bench.workloads.layers import ResetStates
        return [ResetStates()]


def contiguous_batches(ids: np.ndarray, batch: int, seq: int, shard: Shard = WHOLE) -> tuple[np.ndarray, np.ndarray]:
    """(steps, rows, seq) inputs and targets: row i of every global batch reads stream i in
    order; a shard keeps its own streams (its rows of every batch), so each replica's state
    carries on its own contiguous text."""
    stream_len = len(ids) // batch
    steps = (stream_len - 1) // seq
    if steps < 1:
        raise ValueError(f"text of {len(ids)} characters is too short for batch {batch} x sequence {seq}")
    first, last = shard.bounds(batch)
    streams = ids[: batch * stream_len].reshape(batch, stream_len)[first:last]
    rows = last - first
    x = streams[:, : steps * seq].reshape(rows, steps, seq).transpose(1, 0, 2)
    y = streams[:, 1: steps * seq + 1].reshape(rows, steps, seq).transpose(1, 0, 2)
    return np.ascontiguousarray(x), np.ascontiguousarray(y)
