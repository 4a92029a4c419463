"""Every private Keras / TensorFlow / Ray call of distbench, in one place.

Each was read and checked against the versions in CHECKED (`tests/test_compat.py` fails
with a clear message when the installed ones fall outside, and every call here fails with
one naming line, not an AttributeError deep in a training step, when the private name is
gone). Public APIs are used wherever they exist: `keras.tree`,
`keras.utils.unpack_x_y_sample_weight`, `Model.compute_loss`.

Horovod's private use is none: `horovod.tensorflow` is used through its public functions
(`grouped_allreduce`, `broadcast_variables`, `allgather_object`); its Keras integration,
which targets Keras 2 (horovod#4290), is not used at all.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

# package -> (lowest, highest) major.minor checked
CHECKED = {"keras": ((3, 15), (3, 15)), "tensorflow": ((2, 21), (2, 21)), "ray": ((2, 60), (2, 60))}
DISTRIBUTIONS = {"tensorflow": ("tensorflow", "tensorflow-cpu")}


class CompatError(RuntimeError):
    """A private Keras / TensorFlow name distbench relies on is missing in this version."""


def installed_version(package: str) -> str | None:
    for distribution in DISTRIBUTIONS.get(package, (package,)):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def version_problems(versions: dict[str, str | None] | None = None) -> list[str]:
    """One line per installed package outside the checked range (empty: all within)."""
    versions = versions if versions is not None else {name: installed_version(name) for name in CHECKED}
    problems = []
    for package, (low, high) in CHECKED.items():
        version = versions.get(package)
        if version is None:
            continue
        major_minor = tuple(int(part) for part in version.split(".")[:2])
        if not low <= major_minor <= high:
            problems.append(f"{package} {version} is outside {_text(low)}-{_text(high)}, the versions "
                            f"strategies/compat.py was checked against: re-check its private calls")
    return problems


def _text(version: tuple[int, int]) -> str:
    return ".".join(map(str, version))


def _private(owner: Any, name: str, what: str) -> Any:
    try:
        return getattr(owner, name)
    except AttributeError:
        raise CompatError(f"{what}: {getattr(owner, '__name__', type(owner).__name__)}.{name} is gone in "
                          f"this version ({'; '.join(version_problems()) or 'see strategies/compat.py'})") from None


# --- Keras: building a compiled model's state without peeking at a batch -----------------

def symbolic_build(model: Any, data_batch: Any) -> None:
    """Build the loss, metrics and optimizer state from symbolic tensors, then stop Keras'
    fit()/evaluate() from building them again by pulling a batch (see
    strategies.base.build_compiled_state for why)."""
    _private(model, "_symbolic_build", "building the compiled state")(data_batch=data_batch)
    _private(model, "_maybe_symbolic_build", "skipping Keras' build from a batch")
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None


# --- Keras: the multi-worker reduction of scalar logs (keras-team/keras#20585) -----------

def average_scalar_logs_over_workers() -> None:
    """Keras 3's multi-worker log reduction calls strategy.reduce("MEAN", v, axis=0) on every
    per-replica log; the logs (loss, metrics) are scalars, so fit() fails with "Invalid
    reduction dimension 0 for input with 0 dimensions". Scalars are averaged over replicas
    (axis=None); everything else is left to Keras. Installed once per process."""
    import keras
    from keras.src.backend.tensorflow import trainer as tf_trainer
    original = _private(tf_trainer, "reduce_per_replica", "the multi-worker log reduction")
    multi_worker = _private(tf_trainer, "_collective_all_reduce_multi_worker", "the multi-worker log reduction")
    if getattr(original, "distbench_patch", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and multi_worker(strategy):
            def mean(v):
                if getattr(v, "shape", None) is not None and v.shape.rank == 0:
                    return strategy.reduce("MEAN", v, axis=None)
                return original(v, strategy, reduction)
            return keras.tree.map_structure(mean, values)
        return original(values, strategy, reduction)

    reduce_per_replica.distbench_patch = True
    tf_trainer.reduce_per_replica = reduce_per_replica


# --- Keras: what a custom train_step needs of the model (Horovod's) ----------------------

def call_for_training(model: Any, x: Any) -> Any:
    """The forward pass as Keras' own train_step makes it (training=True where accepted)."""
    if _private(model, "_call_has_training_arg", "the forward pass"):
        return model(x, training=True)
    return model(x)


def loss_tracker(model: Any) -> Any:
    """The metric that Keras reports as `loss` (fed by train_step, not by compute_loss)."""
    return _private(model, "_loss_tracker", "the reported loss")


def unscale_loss_for_distribution(loss: Any) -> Any:
    """Keras scales the loss by 1/replicas under tf.distribute; undone before it is reported."""
    from keras.src.losses import loss as loss_module
    return _private(loss_module, "unscale_loss_for_distribution", "the reported loss")(loss)


# --- Ray: token authentication chosen after Ray was imported ------------------------------

def refresh_ray_authentication() -> None:
    """Ray reads RAY_AUTH_MODE and RAY_AUTH_TOKEN into a cache of its C++ config when first
    used; a mode set later reaches the GCS it starts (through the environment) but not this
    driver, which then sends no token ("Authentication token is missing"). Ray's own
    `_enable_token_auth` refreshes the same way. Only needed when Ray is already imported."""
    from ray import _raylet
    _private(_raylet, "Config", "refreshing Ray's authentication mode").initialize("")
    loader = _private(_raylet, "AuthenticationTokenLoader", "refreshing Ray's authentication token")
    loader.instance().reset_cache()
