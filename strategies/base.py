"""The backend interface: set up, wrap model construction, run, tear down.

A backend never imports a workload. The runner drives it:

    backend.setup(options)            # devices / cluster, before TensorFlow initialises
    with backend.scope():             # model construction (variables placed per backend)
        model = workload.build(...)
    history = backend.fit(model, dataset, **fit_kwargs)
    records = backend.gather(local_measurements)   # chief gets every rank's
    backend.teardown()
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from bench.errors import BackendUnavailable, UsageError


@dataclass
class BackendOptions:
    devices: int | None = None      # replicas requested on this host (None: all / 1)
    seed: int = 0
    scale_lr: bool = False          # multiply the learning rate by the number of workers


@dataclass
class Topology:
    """What the record states about where a run ran."""
    world_size: int = 1             # processes
    rank: int = 0
    num_replicas: int = 1           # replicas training in sync, all processes
    local_devices: list[str] = field(default_factory=list)
    ranks_per_node: int = 1

    @property
    def is_chief(self) -> bool:
        return self.rank == 0


class Backend:
    name: str = ""
    description: str = ""
    multi_process: bool = False     # one process per worker/rank (supports --local-workers)
    multi_device: bool = False      # one process over several local devices (--devices)

    def __init__(self) -> None:
        self.topology = Topology()

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """Whether this backend can run here, and why not."""
        return True, ""

    def setup(self, options: BackendOptions) -> Topology:
        raise NotImplementedError

    def scope(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def prepare_dataset(self, dataset: Any, training: bool = True) -> Any:
        """The pipeline of global batches as this process should feed it to fit() (training)
        or evaluate()."""
        return dataset

    def fit(self, model: Any, dataset: Any, **kwargs: Any) -> Any:
        return model.fit(dataset, **kwargs)

    def gather(self, values: list[float]) -> list[list[float]]:
        """Every rank's list of floats, in rank order (single process: [values])."""
        return [values]

    def any_rank(self, flag: bool) -> bool:
        """True on every rank if `flag` is true on any (a collective where multi-process)."""
        return flag

    def communication(self, step_seconds: float) -> dict | None:
        """Time spent in gradient communication during fit(), where it can be measured."""
        return None

    @classmethod
    def local_launch_env(cls) -> dict[str, str]:
        """Environment for every process started by --local-workers."""
        return {}

    @classmethod
    def local_worker_env(cls, rank: int, world: int, ports: list[int]) -> dict[str, str]:
        """Environment of worker `rank` started by --local-workers (e.g. its TF_CONFIG)."""
        raise NotImplementedError

    def teardown(self) -> None:
        pass


def build_compiled_state(model: Any, strategy: Any, dataset: Any) -> None:
    """Build a compiled model's loss, metrics and optimizer state under `strategy` from the
    dataset's element_spec, and stop Keras from doing it by peeking at a batch.

    Under tf.distribute, Keras 3's fit() and evaluate() first pull one batch through a
    throwaway iterator to learn shapes. With a seeded shuffle that reshuffles per iteration,
    that extra iterator advances the order: training would see another sequence of batches
    than under the default strategy, and data-parallel training would not be the same
    computation. Under MultiWorkerMirroredStrategy the peek also fails outright
    (keras-team/keras#20585). Only shapes and dtypes are needed, so take them from the
    element_spec, with the batch dimension at its per-replica size (stateful models fix it).
    """
    import tensorflow as tf
    from keras import KerasTensor

    def per_replica(spec):
        shape = list(spec.shape)
        if shape and shape[0] is not None:
            shape[0] //= strategy.num_replicas_in_sync
        return KerasTensor(shape, spec.dtype.name)

    batch = tf.nest.map_structure(per_replica, dataset.element_spec)
    with strategy.scope():
        model._symbolic_build(data_batch=batch)
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None


def require_positive(devices: int | None, flag: str = "--devices") -> None:
    if devices is not None and devices < 1:
        raise UsageError(f"{flag} {devices}: must be >= 1")


def unavailable(name: str, reason: str) -> BackendUnavailable:
    return BackendUnavailable(f"strategy {name!r} is not available here: {reason}")
