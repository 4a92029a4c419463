"""bAbI QA1 Memory Network (the PBT course notes, after the Keras babi_memnn example).

Input encoders m and c and a question encoder (Embedding + Dropout); match =
softmax(dot(m, q)); response = permute(add(match, c)); concat with the question;
LSTM(32), Dropout, Dense(vocab, softmax); RMSprop(learning_rate, rho).
bAbI has no validation split: the last 10% of the training questions are held out
(the course notes validate on the test set, which would let early stopping peek at it).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from bench.data import babi
from bench.hparams import HParam
from bench.workloads.base import Data, Workload
from bench.workloads import pipeline

# Shapes of real QA1 10k, used by --data synthetic.
SYNTHETIC_INFO = {"train_samples": 10_000, "vocab_size": 22, "story_len": 68, "query_len": 4}


class MemNN(Workload):
    name = "memnn"
    description = "Memory Network on bAbI QA1 (single supporting fact, 10k)"
    space = {
        "dropout": HParam(0.3, 0.0, 0.95, mutable=True),
        "learning_rate": HParam(0.01, 1e-6, 1.0, mutable=True),
        "rho": HParam(0.9, 0.0, 0.999, mutable=True, help="RMSprop discounting factor (< 1)"),
        "embedding_dim": HParam(64, 1, 4096),
        "lstm_units": HParam(32, 1, 4096),
        "train_questions": HParam(10_000, 10, 10_000_000, help="generated data only"),
        "validation_fraction": HParam(0.1, 0.0, 0.5, help="last training questions held out for validation"),
        "attention": HParam("query", choices=("query", "story"),
                            help="softmax of the match over the question words (the course and Keras example) "
                                 "or over the story positions (the memory network paper)"),
        "reduce_lr_patience": HParam(0, 0, 1000, help="epochs without val_loss progress before lr x 0.3; 0 = off"),
    }
    default_batch_size = 32
    load_hparams = ("train_questions", "validation_fraction")
    # The PBT course study: dropout resampled uniformly, lr and rho moved along grids.
    tune_mutations = {
        "dropout": "uniform(0, 0.95)",
        "learning_rate": "grid(0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02)",
        "rho": "grid(0.8, 0.85, 0.9, 0.95, 0.99)",
    }
    tune_space = {"dropout": "uniform(0.0, 0.6)", "learning_rate": "loguniform(0.0001, 0.02)",
                  "rho": "uniform(0.8, 0.99)"}

    def load(self, source, data_dir, hp, seed):
        if source == "synthetic":
            return Data(source, "in-memory random tensors", info=dict(SYNTHETIC_INFO))
        if source == "real":
            stories, location = babi.load_real(data_dir)
        else:
            stories, location = babi.load_generated(seed, hp["train_questions"])
        words = babi.vocabulary(stories["train"], stories["test"])
        index = {w: i + 1 for i, w in enumerate(words)}     # 0 is padding
        every = stories["train"] + stories["test"]
        story_len = max(len(s) for s, _, _ in every)
        query_len = max(len(q) for _, q, _ in every)
        held_out = round(len(stories["train"]) * hp["validation_fraction"])
        parts = {"train": stories["train"][:len(stories["train"]) - held_out],
                 "val": stories["train"][len(stories["train"]) - held_out:], "test": stories["test"]}
        if not held_out:        # every training question trains; nothing to validate on
            del parts["val"]
        splits = {}
        for split, part in parts.items():
            x, q, y = babi.vectorize(part, index, story_len, query_len)
            splits[split] = ((x, q), y)
        info = {"train_samples": len(parts["train"]), "vocab_size": len(words) + 1,
                "story_len": story_len, "query_len": query_len}
        return Data(source, str(location), splits, info)

    def dataset(self, data, split, global_batch, hp, seed, training):
        info = data.info
        if data.source == "synthetic":
            def make(rng):
                vocab = info["vocab_size"]
                return ((rng.uniform((global_batch, info["story_len"]), 1, vocab, dtype=tf.int32),
                         rng.uniform((global_batch, info["query_len"]), 1, vocab, dtype=tf.int32)),
                        rng.uniform((global_batch,), 1, vocab, dtype=tf.int32))
            return pipeline.synthetic(make, seed)
        return pipeline.from_arrays(data.splits[split], global_batch, seed, training)

    def callbacks(self, hp):
        if not hp["reduce_lr_patience"]:
            return []
        return [keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.3,
                                                  patience=hp["reduce_lr_patience"], min_lr=1e-5)]

    def build(self, data, hp, per_replica_batch, jit_compile=False):
        info, dropout, layers = data.info, hp["dropout"], keras.layers
        vocab, story_len, query_len = info["vocab_size"], info["story_len"], info["query_len"]
        story = keras.Input((story_len,), dtype="int32", name="story")
        question = keras.Input((query_len,), dtype="int32", name="question")

        def encoder(dim: int, name: str) -> keras.Sequential:
            return keras.Sequential([layers.Embedding(vocab, dim), layers.Dropout(dropout)], name=name)

        encoded_m = encoder(hp["embedding_dim"], "input_encoder_m")(story)     # (b, story, emb)
        encoded_c = encoder(query_len, "input_encoder_c")(story)               # (b, story, query)
        encoded_q = encoder(hp["embedding_dim"], "question_encoder")(question)  # (b, query, emb)
        match = layers.Dot(axes=(2, 2))([encoded_m, encoded_q])                # (b, story, query)
        match = layers.Softmax(axis=1 if hp["attention"] == "story" else -1)(match)
        response = layers.Permute((2, 1))(layers.Add()([match, encoded_c]))  # (b, query, story)
        answer = layers.Concatenate()([response, encoded_q])
        answer = layers.LSTM(hp["lstm_units"])(answer)
        answer = layers.Dropout(dropout)(answer)
        answer = layers.Dense(vocab, activation="softmax")(answer)
        model = keras.Model([story, question], answer, name="memnn")
        model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=hp["learning_rate"], rho=hp["rho"]),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                      jit_compile=jit_compile)
        return model
