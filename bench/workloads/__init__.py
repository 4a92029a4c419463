"""Registry of workloads by name. Modules are imported lazily: listing names needs no TensorFlow."""

from __future__ import annotations

import importlib
from typing import Any, Mapping

from bench.core.errors import UsageError

# name -> (module, class)
_WORKLOADS = {
    "mlp": ("bench.workloads.mlp", "MLP"),
    "memnn": ("bench.workloads.memnn", "MemNN"),
    "charrnn-gru": ("bench.workloads.charrnn", "CharRNNGRU"),
    "charrnn-lstm": ("bench.workloads.charrnn", "CharRNNLSTM"),
}
# the dataset `--data real` reads (`bench data fetch NAME`)
_REAL_DATA = {"mlp": "fashion-mnist", "memnn": "babi", "charrnn-gru": "tinyshakespeare",
              "charrnn-lstm": "tinyshakespeare"}


def names() -> list[str]:
    return list(_WORKLOADS)


def check(name: str) -> str:
    """The name, if registered (no import of the workload's module, so no TensorFlow)."""
    if name not in _WORKLOADS:
        raise UsageError(f"unknown workload {name!r}; valid: {', '.join(_WORKLOADS)}")
    return name


def get(name: str):
    module, cls = _WORKLOADS[check(name)]
    return getattr(importlib.import_module(module), cls)()


def hyperparameters(name: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The workload's hyperparameters: its defaults with the `--set` overrides that apply to it
    (bare keys, and `name.key` keys), each checked against its space (no TensorFlow)."""
    from bench.core.hparams import for_workload, resolve
    return resolve(get(name).space, for_workload(overrides, name, set(_WORKLOADS)), name)


def real_dataset(name: str) -> str:
    """The dataset a workload's real data is (no TensorFlow)."""
    return _REAL_DATA[check(name)]
