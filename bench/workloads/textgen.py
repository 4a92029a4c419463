"""Text generation from char-RNNs, and its export as a SavedModel that generates with
TensorFlow alone (no distbench, no Keras model code):

    gen = tf.saved_model.load("<run>/export")
    gen.generate(start="ROMEO:", length=500, temperature=0.5, num=3, seed=0)  # -> 3 strings

Training models may be stateful with a fixed batch; generation rebuilds the same layers
non-stateful with `return_state=True`, copies the weights, and carries the state itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import keras
import tensorflow as tf

from bench.core.errors import UsageError

UNK = "[UNK]"


def step_model(trained: keras.Model) -> tuple[keras.Model, list[int]]:
    """(ids, *states) -> (logits, *states), with the trained model's weights; and the state sizes."""
    ids = keras.Input((None,), dtype="int32", name="ids")
    state_inputs, state_outputs, state_sizes = [], [], []
    x = ids
    for layer in trained.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.layers.RNN):
            config = dict(layer.get_config(), return_state=True, stateful=False, name=f"gen_{layer.name}")
            clone = type(layer).from_config(config)
            n_states = 2 if isinstance(layer, keras.layers.LSTM) else 1
            inputs = [keras.Input((layer.cell.units,), name=f"{layer.name}_state{i}") for i in range(n_states)]
            x, *states = clone(x, initial_state=inputs if n_states > 1 else inputs[0])
            clone.set_weights(layer.get_weights())
            state_inputs += inputs
            state_outputs += states
            state_sizes += [layer.cell.units] * n_states
        else:
            x = layer(x)
    return keras.Model([ids, *state_inputs], [x, *state_outputs], name="generator"), state_sizes


class TextGenerator(tf.Module):
    def __init__(self, trained: keras.Model, vocabulary: Sequence[str]) -> None:
        super().__init__(name="text_generator")
        self.model, self.state_sizes = step_model(trained)
        self.vocabulary = tf.constant(list(vocabulary))
        self.lookup = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(self.vocabulary[1:], tf.range(1, len(vocabulary), dtype=tf.int32)),
            default_value=0)                                  # unknown characters -> [UNK] (id 0)
        self.mask = tf.constant([-1e9] + [0.0] * (len(vocabulary) - 1))   # never emit [UNK]

    @tf.function(input_signature=[tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.int32),
                                  tf.TensorSpec([], tf.float32), tf.TensorSpec([], tf.int32),
                                  tf.TensorSpec([], tf.int32)])
    def generate(self, start, length, temperature, num, seed):
        """`num` continuations of `start`, `length` characters each, sampled at `temperature`."""
        prompt = self.lookup.lookup(tf.strings.unicode_split(start, "UTF-8"))
        ids = tf.tile(prompt[tf.newaxis], [num, 1])
        states = [tf.zeros([num, size]) for size in self.state_sizes]
        out = tf.TensorArray(tf.int32, size=length)
        for i in tf.range(length):
            logits, *states = self.model([ids, *states], training=False)
            states = [tf.cast(state, tf.float32) for state in states]    # mixed precision: computed in 16 bits
            last = logits[:, -1, :] / temperature + self.mask
            ids = tf.cast(tf.random.stateless_categorical(last, 1, seed=tf.stack([seed, i])), tf.int32)
            out = out.write(i, ids[:, 0])
        chars = tf.gather(self.vocabulary, tf.transpose(out.stack()))
        return tf.strings.join([tf.fill([num], start), tf.strings.reduce_join(chars, axis=1)])


def export(trained: keras.Model, vocabulary: Sequence[str], directory: Path) -> Path:
    generator = TextGenerator(trained, vocabulary)
    tf.saved_model.save(generator, str(directory))
    (Path(directory) / "vocabulary.json").write_text(json.dumps(list(vocabulary)))
    return Path(directory)


def generate_from(source: str, start: str, length: int, temperature: float, num: int,
                  seed: int | None) -> list[str]:
    """Generate from an export directory, or from a char-RNN run directory / checkpoint."""
    path = Path(source)
    if not path.exists():
        raise UsageError(f"{source}: no such export, run directory or checkpoint")
    seed = 0 if seed is None else seed
    if (path / "saved_model.pb").is_file():
        generator = tf.saved_model.load(str(path))
    else:
        generator = _from_run(path)
    texts = generator.generate(start=tf.constant(start), length=tf.constant(length, tf.int32),
                               temperature=tf.constant(temperature, tf.float32),
                               num=tf.constant(num, tf.int32), seed=tf.constant(seed, tf.int32))
    return [t.decode("utf-8", errors="replace") for t in texts.numpy()]


def _from_run(path: Path) -> TextGenerator:
    """Rebuild a run's model from its record and load a checkpoint's weights."""
    from bench import workloads
    from bench.core.record import latest_checkpoint, read_record
    from bench.workloads.base import Data

    run = path.parent.parent if path.is_file() else path
    checkpoint = path if path.is_file() else latest_checkpoint(run / "checkpoints")
    record_file = run / "record.json"
    if checkpoint is None or not record_file.is_file():
        raise UsageError(f"{path}: neither an export (saved_model.pb) nor a run with checkpoints")
    record = read_record(record_file)
    vocabulary = record.extra.get("vocabulary")
    if not vocabulary:
        raise UsageError(f"{path}: run of {record.workload!r} has no vocabulary; not a char-RNN run")
    workload = workloads.get(record.workload)
    data = Data("checkpoint", str(checkpoint), info={"vocab_size": len(vocabulary)})
    model = workload.build(data, record.hyperparameters, record.per_replica_batch_size)
    model.load_weights(checkpoint)
    return TextGenerator(model, vocabulary)
