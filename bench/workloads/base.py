"""The workload interface: model builder + data pipeline + metrics, registered by name.

A workload never imports a backend: it builds a compiled Keras model (the runner
calls `build` inside the backend's scope) and tf.data pipelines of a given global
batch (the backend distributes them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from bench.core.hparams import HParam
from bench.core.sharding import WHOLE, Shard

from bench.core.config import DATA_SOURCES  # noqa: F401  (re-exported)


@dataclass
class Data:
    """What `Workload.load` returns: arrays per split (None for synthetic) and shapes."""
    source: str
    location: str
    splits: dict[str, Any] = field(default_factory=dict)   # split -> (x, y)
    info: dict[str, Any] = field(default_factory=dict)     # vocab sizes, lengths, sample counts


class Workload:
    name: str = ""
    description: str = ""
    space: Mapping[str, HParam] = {}
    default_batch_size: int = 32
    monitor: str | None = "accuracy"      # the accuracy metric's name, if any
    stateful: bool = False                 # needs a fixed per-replica batch
    tune_space: Mapping[str, str] = {}     # default search space (bench.core.space syntax)
    tune_mutations: Mapping[str, str] = {} # default PBT mutations (mutable hyperparameters only)
    load_hparams: tuple[str, ...] = ()     # hyperparameters that `load` depends on

    def load(self, source: str, data_dir: str | None, hp: dict[str, Any], seed: int) -> Data:
        raise NotImplementedError

    def dataset(self, data: Data, split: str, global_batch: int, hp: dict[str, Any],
                seed: int, training: bool, shard: Shard = WHOLE, repeat: bool = False):
        """A tf.data pipeline of `shard`'s rows of every global batch of `split` (the whole
        batch by default), built without the other shards' rows: one pass, or with `repeat`
        pass after pass in one stream (training); synthetic data repeats one in-memory batch."""
        raise NotImplementedError

    def build(self, data: Data, hp: dict[str, Any], per_replica_batch: int,
              jit_compile: bool | str = False):
        """A compiled keras.Model (called inside the backend's scope)."""
        raise NotImplementedError

    def steps_per_epoch(self, data: Data, global_batch: int) -> int:
        return max(1, data.info["train_samples"] // global_batch)

    def tokens_per_sample(self, hp: dict[str, Any]) -> int | None:
        return None

    def callbacks(self, hp: dict[str, Any]) -> list:
        """Keras callbacks the model itself needs (e.g. resetting RNN state each epoch)."""
        return []

    def record_extra(self, data: Data) -> dict[str, Any]:
        """Facts about the data that the record should carry (e.g. a char vocabulary)."""
        return {}
