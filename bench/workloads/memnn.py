"""bAbI QA1 Memory Network (the PBT course notes, after the Keras babi_memnn example).

`architecture=course` (default): input encoders m and c and a question encoder
(Embedding + Dropout) over the story's words; match = softmax(dot(m, q)); response =
permute(add(match, c)); concat with the question; LSTM(32), Dropout, Dense(vocab, softmax).
`architecture=memn2n`: the End-To-End Memory Network of Sukhbaatar et al. (2015) the
course model simplifies: one memory per statement (bag of words with position encoding,
plus a learnt temporal encoding), `hops` rounds of attention, Dense(vocab, softmax).
Both train with RMSprop(learning_rate, rho).
bAbI has no validation split: the last 10% of the training questions are held out
(the course notes validate on the test set, which would let early stopping peek at it).
"""

from __future__ import annotations


from bench.core.hparams import HParam
from bench.core.sharding import WHOLE
from bench.data import babi
from bench.workloads.base import Data, Workload

# Shapes of real QA1 10k, used by --data synthetic.
SYNTHETIC_INFO = {"train_samples": 10_000, "vocab_size": 22, "story_len": 68, "query_len": 4,
                  "memories": 10, "sentence_len": 7}


class MemNN(Workload):
    name = "memnn"
    description = "Memory Network on bAbI QA1 (single supporting fact, 10k)"
    space = {
        "dropout": HParam(0.3, 0.0, 0.95, mutable=True),
        "learning_rate": HParam(0.01, 1e-6, 1.0, mutable=True),
        "rho": HParam(0.9, 0.0, 0.999, mutable=True, help="RMSprop discounting factor (< 1)"),
        "embedding_dim": HParam(64, 1, 4096),
        "lstm_units": HParam(32, 1, 4096, only_with=("architecture", "course")),
        "train_questions": HParam(10_000, 10, 10_000_000, help="generated data only"),
        "validation_fraction": HParam(0.1, 0.0, 0.5, help="last training questions held out for validation"),
        "attention": HParam("query", choices=("query", "story"),
                            help="softmax of the match over the question words (the course and Keras example) "
                                 "or over the story positions (the memory network paper)",
                            only_with=("architecture", "course")),
        "reduce_lr_patience": HParam(0, 0, 1000, help="epochs without val_loss progress before lr x 0.3; 0 = off"),
        "architecture": HParam("course", choices=("course", "memn2n"),
                               help="course: the course's (Keras example's) model; memn2n: the End-To-End "
                                    "Memory Network paper's (statement memories, position and temporal encoding)"),
        "hops": HParam(1, 1, 10, help="rounds of attention over the memories",
                       only_with=("architecture", "memn2n")),
        "story_layout": HParam("words", choices=("words", "statements"),
                               help="course: the story as one left-padded word sequence (the Keras example) or "
                                    "one fixed-width slot per statement, newest last",
                               only_with=("architecture", "course")),
    }
    default_batch_size = 32
    load_hparams = ("train_questions", "validation_fraction", "architecture", "story_layout")
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
        statements = [babi.sentences(s) for s, _, _ in every]
        shapes = {"story_len": max(len(s) for s, _, _ in every), "query_len": max(len(q) for _, q, _ in every),
                  "memories": max(map(len, statements)),
                  "sentence_len": max(len(s) for story in statements for s in story)}
        held_out = round(len(stories["train"]) * hp["validation_fraction"])
        parts = {"train": stories["train"][:len(stories["train"]) - held_out],
                 "val": stories["train"][len(stories["train"]) - held_out:], "test": stories["test"]}
        if not held_out:        # every training question trains; nothing to validate on
            del parts["val"]
        splits = {}
        for split, part in parts.items():
            if _by_statement(hp):
                x, q, y = babi.vectorize_sentences(part, index, shapes["memories"], shapes["sentence_len"],
                                                   shapes["query_len"])
                x = x.reshape(len(x), *_story_shape(shapes, hp))
            else:
                x, q, y = babi.vectorize(part, index, shapes["story_len"], shapes["query_len"])
            splits[split] = ((x, q), y)
        info = {"train_samples": len(parts["train"]), "vocab_size": len(words) + 1, **shapes}
        return Data(source, str(location), splits, info)

    def dataset(self, data, split, global_batch, hp, seed, training, shard=WHOLE, repeat=False):
        import tensorflow as tf
        from bench.workloads import pipeline
        info = data.info
        if data.source == "synthetic":
            story_shape = _story_shape(info, hp)

            def make(rng, rows):
                vocab = info["vocab_size"]
                return ((rng.uniform((rows, *story_shape), 1, vocab, dtype=tf.int32),
                         rng.uniform((rows, info["query_len"]), 1, vocab, dtype=tf.int32)),
                        rng.uniform((rows,), 1, vocab, dtype=tf.int32))
            return pipeline.synthetic(make, global_batch, seed, shard)
        return pipeline.from_arrays(data.splits[split], global_batch, seed, training, shard=shard, repeat=repeat)

    def callbacks(self, hp):
        if not hp["reduce_lr_patience"]:
            return []
        import keras
        return [keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.3,
                                                  patience=hp["reduce_lr_patience"], min_lr=1e-5)]

    def build(self, data, hp, per_replica_batch, jit_compile=False):
        import keras
        info = data.info
        story = keras.Input(_story_shape(info, hp), dtype="int32", name="story")
        question = keras.Input((info["query_len"],), dtype="int32", name="question")
        answer = (_memn2n if hp["architecture"] == "memn2n" else _course)(story, question, info, hp)
        model = keras.Model([story, question], answer, name="memnn")
        model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=hp["learning_rate"], rho=hp["rho"]),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                      jit_compile=jit_compile)
        return model


def _by_statement(hp: dict) -> bool:
    return hp["architecture"] == "memn2n" or hp["story_layout"] == "statements"


def _story_shape(info: dict, hp: dict) -> tuple[int, ...]:
    if hp["architecture"] == "memn2n":
        return (info["memories"], info["sentence_len"])
    if hp["story_layout"] == "statements":
        return (info["memories"] * info["sentence_len"],)
    return (info["story_len"],)


def _course(story, question, info, hp):
    import keras
    layers, dropout = keras.layers, hp["dropout"]
    vocab, query_len = info["vocab_size"], info["query_len"]

    def encoder(dim: int, name: str):
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
    return layers.Dense(vocab, activation="softmax", dtype="float32")(answer)


def _memn2n(story, question, info, hp):
    import keras
    from bench.workloads.layers import BagOfWords, MemoryHops
    layers, dropout, dim = keras.layers, hp["dropout"], hp["embedding_dim"]
    vocab, memories = info["vocab_size"], info["memories"]
    match_memories = layers.Dropout(dropout)(BagOfWords(vocab, dim, memories, name="memory_a")(story))
    read_memories = layers.Dropout(dropout)(BagOfWords(vocab, dim, memories, name="memory_c")(story))
    query = BagOfWords(vocab, dim, name="question_b")(question)
    state = MemoryHops(hp["hops"], name="hops")([match_memories, read_memories, query])
    return layers.Dense(vocab, activation="softmax", dtype="float32")(state)
