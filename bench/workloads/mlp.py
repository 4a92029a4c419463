"""Fashion-MNIST MLP (the Keras-Tuner course notes): Flatten, n_hidden x Dense(n_neurons, relu),
Dense(10, softmax); the last 5,000 training images are the validation set."""

from __future__ import annotations

import numpy as np

from bench.core.hparams import HParam
from bench.core.sharding import WHOLE
from bench.data import fashion_mnist
from bench.workloads.base import Data, Workload

VALIDATION = 5_000
SHAPE = fashion_mnist.IMAGE_SHAPE


def _scale(images, labels):
    import tensorflow as tf
    return tf.cast(images, tf.float32) / 255.0, labels


class MLP(Workload):
    name = "mlp"
    description = "Fashion-MNIST MLP (depth/width/learning rate/optimizer as hyperparameters)"
    space = {
        "n_hidden": HParam(2, 0, 8, help="hidden Dense layers"),
        "n_neurons": HParam(128, 16, 256, help="units per hidden layer"),
        "learning_rate": HParam(1e-3, 1e-6, 1.0, mutable=True),
        "optimizer": HParam("adam", choices=("sgd", "adam")),
    }
    default_batch_size = 32
    # The Keras-Tuner course study.
    tune_space = {"n_hidden": "randint(0, 8)", "n_neurons": "randint(16, 256)",
                  "learning_rate": "loguniform(0.0001, 0.01)", "optimizer": "choice(sgd, adam)"}
    tune_mutations = {"learning_rate": "loguniform(0.0001, 0.01)"}

    def load(self, source, data_dir, hp, seed):
        if source == "synthetic":
            return Data(source, "in-memory random tensors",
                        info={"train_samples": 55_000, "classes": 10})
        if source == "real":
            arrays, folder = fashion_mnist.load(data_dir)
            location = str(folder)
        else:
            arrays = fashion_mnist.synthetic(60_000, 10_000, seed)
            location = f"generated class-pattern images (seed {seed})"
        x, y = arrays["train_images"], arrays["train_labels"].astype(np.int32)
        splits = {
            "train": (x[:-VALIDATION], y[:-VALIDATION]),
            "val": (x[-VALIDATION:], y[-VALIDATION:]),
            "test": (arrays["test_images"], arrays["test_labels"].astype(np.int32)),
        }
        return Data(source, location, splits, {"train_samples": len(x) - VALIDATION, "classes": 10})

    def dataset(self, data, split, global_batch, hp, seed, training, shard=WHOLE, repeat=False):
        import tensorflow as tf
        from bench.workloads import pipeline
        if data.source == "synthetic":
            def make(rng, rows):
                return (rng.uniform((rows, *SHAPE)), rng.uniform((rows,), 0, 10, dtype=tf.int32))
            return pipeline.synthetic(make, global_batch, seed, shard)
        return pipeline.from_arrays(data.splits[split], global_batch, seed, training, batch_map=_scale, shard=shard,
                                    repeat=repeat)

    def build(self, data, hp, per_replica_batch, jit_compile=False):
        import keras
        layers = [keras.Input(SHAPE), keras.layers.Flatten()]
        layers += [keras.layers.Dense(hp["n_neurons"], activation="relu") for _ in range(hp["n_hidden"])]
        layers.append(keras.layers.Dense(10, activation="softmax", dtype="float32"))   # float32 under mixed precision
        model = keras.Sequential(layers, name="mlp")
        optimizer_cls = keras.optimizers.SGD if hp["optimizer"] == "sgd" else keras.optimizers.Adam
        model.compile(optimizer=optimizer_cls(learning_rate=hp["learning_rate"]),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                      jit_compile=jit_compile)
        return model
