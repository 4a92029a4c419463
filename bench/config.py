"""The configuration of one run: plain data with typed defaults, validated in one place
before anything runs or is written, saved with the run and handed to every worker as data.

Configs are dataclasses read with `from_dict`, which rejects unknown keys (listing the
valid ones) and values of the wrong type, as submitit does; they round-trip through JSON
(`to_json` / `from_json`) and are read from JSON or TOML files (`load`). A launcher hands a
worker its config in the environment variable `RUN_CONFIG_ENV`, never as argv to re-parse.
"""

from __future__ import annotations

import dataclasses
import os
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bench.errors import UsageError
from bench.precision import PRECISIONS, TF32_CHOICES

DATA_SOURCES = ("real", "generated", "synthetic")
JIT_CHOICES = ("auto", "true", "false")
LAUNCHERS = ("gloo", "mpi")
RUN_CONFIG_ENV = "DISTBENCH_RUN_CONFIG"
STUDY_CONFIG_ENV = "DISTBENCH_STUDY_CONFIG"     # a study's config handed to `bench tune` (a Ray job)

C = TypeVar("C")


@dataclass
class RunConfig:
    workload: str
    strategy: str = "default"
    epochs: int = 1
    steps_per_epoch: int | None = None      # None: one pass over the training data
    batch_size: int | None = None           # global batch; None: per-replica x replicas or the workload's
    per_replica_batch_size: int | None = None
    devices: int | None = None
    local_workers: int | None = None        # start this many worker processes on this host
    cpus_per_replica: float | None = None   # cores each replica owns (None: Slurm's, an even share, or all);
                                            # a share below 1 (0.5) is a cgroup's CPU quota (local workers)
    launcher: str = "gloo"                  # horovod's local launcher: horovodrun over Gloo, or mpirun
    seed: int = 0
    data: str = "real"
    data_dir: str | None = None
    results: str = "results"
    overrides: dict[str, str | int | float | bool] = field(default_factory=dict)   # --set key=value
    warmup_steps: int = 5
    sample_interval_s: float = 1.0
    target_accuracy: float | None = None
    stop_at_target: bool = False            # train-to-accuracy: end once the target is reached
    jit_compile: str = "auto"               # Keras' default: XLA on GPUs, not on CPU
    checkpoint_every: int = 0               # epochs; 0 = no checkpoints
    resume: str | None = None               # checkpoint file or a run directory
    export: bool = False                    # char-RNNs: a SavedModel text generator
    scale_lr: bool = False                  # multi-worker: learning rate x number of workers
    precision: str = "float32"              # Keras dtype policy: float32, mixed_float16, mixed_bfloat16
    tf32: str = "on"                        # TensorFloat-32 matmuls on Ampere GPUs (TensorFlow's default: on)
    sparse_gradients: bool = False          # embeddings' gradients as IndexedSlices (see bench/gradients.py)
    merge_validation: bool = False          # train on training + validation data (retraining a best config)
    verbose: int | str = "auto"             # Keras progress output
    run_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, changed_only: bool = False) -> str:
        return to_json(self, changed_only)

    def worker(self, run_id: str) -> "RunConfig":
        """The config a launcher hands each of its workers: this run, launched no further."""
        return dataclasses.replace(self, local_workers=None, run_id=run_id)

    def validate(self) -> None:
        for name in ("epochs", "steps_per_epoch", "batch_size", "per_replica_batch_size", "devices",
                     "local_workers"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UsageError(f"--{name.replace('_', '-')} {value}: must be >= 1")
        if self.cpus_per_replica is not None:
            share = self.cpus_per_replica
            if share <= 0 or (share > 1 and share != int(share)) or (share < 1 and round(1 / share, 6) % 1):
                raise UsageError(f"--cpus-per-replica {share:g}: a whole number of cores, or a share that "
                                 f"divides one (0.5, 0.25)")
            if share < 1 and self.local_workers is None and not os.environ.get("DISTBENCH_CPU_SHARES"):
                raise UsageError(f"--cpus-per-replica {share:g}: a share of a core needs --local-workers N (the "
                                 f"launcher makes each worker's cgroup); on emulated nodes: bench cluster --cpus-per-node")
        if self.warmup_steps < 0:
            raise UsageError(f"--warmup-steps {self.warmup_steps}: must be >= 0")
        if self.checkpoint_every < 0:
            raise UsageError(f"--checkpoint-every {self.checkpoint_every}: must be >= 0")
        if self.sample_interval_s <= 0:
            raise UsageError(f"--sample-interval {self.sample_interval_s}: must be > 0")
        check_choice("--data", self.data, DATA_SOURCES)
        check_choice("--jit-compile", self.jit_compile, JIT_CHOICES)
        check_choice("--launcher", self.launcher, LAUNCHERS)
        check_choice("--precision", self.precision, PRECISIONS)
        check_choice("--tf32", self.tf32, TF32_CHOICES)
        if self.target_accuracy is not None and not 0 < self.target_accuracy <= 1:
            raise UsageError(f"--target-accuracy {self.target_accuracy}: must be in (0, 1]")
        if self.stop_at_target and self.target_accuracy is None:
            raise UsageError("--stop-at-target needs --target-accuracy")
        if self.batch_size and self.per_replica_batch_size:
            raise UsageError("give --batch-size (global) or --per-replica-batch-size, not both")
        if self.data_dir is not None and not Path(self.data_dir).is_dir():
            raise UsageError(f"--data-dir {self.data_dir}: no such directory")
        if self.resume is not None and not Path(self.resume).exists():
            raise UsageError(f"--resume {self.resume}: no such file or directory")
        results = Path(self.results)
        if results.exists() and not results.is_dir():
            raise UsageError(f"--results {self.results}: exists and is not a directory")

    @property
    def jit(self) -> bool | str:
        return jit_setting(self.jit_compile)


@dataclass
class StudyConfig:
    workload: str
    scheduler: str = "pbt"                  # pbt | search
    samples: int = 2                        # trials (PBT population, or search samples)
    iterations: int = 100                   # training iterations per trial (epochs)
    steps_per_iteration: int | None = None  # None: one pass over the training data
    batch_size: int | None = None
    space: dict[str, str] = field(default_factory=dict)      # replaces the workload's default space
    overrides: dict[str, str | int | float | bool] = field(default_factory=dict)   # --set: fixed hyperparameters
    perturbation_interval: int = 2
    quantile_fraction: float = 0.25
    synch: bool = False                     # PBT: perturb when every trial reached the interval
    reuse_workers: bool = True              # PBT: an exploit or resume goes on in a live worker process
    asha: bool = False                      # search: stop weak trials early
    retrain: bool = True                    # search: retrain the best config on train+val, test it
    cpus_per_trial: float = 1
    gpus_per_trial: float = 0
    num_cpus: int | None = None             # local Ray; None: all
    ray: str = "local"                      # local | auto | slurm
    data: str = "real"
    data_dir: str | None = None
    results: str = "results"
    seed: int = 0
    warmup_steps: int = 2
    precision: str = "float32"              # as RunConfig's: every trial and the retrain
    tf32: str = "on"
    jit_compile: str = "auto"               # as RunConfig's
    verbose: int = 0
    study_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, changed_only: bool = False) -> str:
        return to_json(self, changed_only)


def jit_setting(choice: str) -> bool | str:
    """Keras' jit_compile for a --jit-compile choice."""
    return {"auto": "auto", "true": True, "false": False}[choice]


def check_choice(flag: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise UsageError(f"{flag} {value!r}: must be one of {', '.join(valid)}")


# --- plain data in and out, for any config dataclass ---------------------------------

def from_dict(cls: type[C], data: Any, where: str = "config") -> C:
    """An instance of the dataclass `cls` from plain data: unknown keys, missing required
    keys and values of the wrong type are one UsageError naming `where` and the key."""
    if not isinstance(data, dict):
        raise UsageError(f"{where}: expected a table of settings, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise UsageError(f"{where}: unknown key {unknown[0]!r} (valid: {', '.join(fields)})")
    missing = [name for name, f in fields.items() if name not in data and _required(f)]
    if missing:
        raise UsageError(f"{where}: {missing[0]!r} is required")
    hints = typing.get_type_hints(cls)
    for name, value in data.items():
        if not _matches(value, hints[name]):
            raise UsageError(f"{where}: {name} = {value!r}: expected {_type_name(hints[name])}")
    return cls(**data)


def to_json(config: Any, changed_only: bool = False) -> str:
    """JSON of a config; with `changed_only`, only what differs from the defaults."""
    data = dataclasses.asdict(config)
    if changed_only:
        data = {f.name: data[f.name] for f in dataclasses.fields(config)
                if _required(f) or data[f.name] != _default(f)}
    return json.dumps(data, sort_keys=True, separators=(",", ":") if changed_only else (", ", ": "))


def from_json(cls: type[C], text: str, where: str) -> C:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{where}: not valid JSON ({exc})") from None
    return from_dict(cls, data, where)


def load(cls: type[C], path: str | Path) -> C:
    """A config from a .json or .toml file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc.strerror})") from None
    if path.suffix == ".toml":
        try:
            return from_dict(cls, tomllib.loads(text), str(path))
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"{path}: not valid TOML ({exc})") from None
    return from_json(cls, text, str(path))


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is dict:
        key, item = typing.get_args(hint)
        return isinstance(value, dict) and all(_matches(k, key) and _matches(v, item) for k, v in value.items())
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_matches(v, item) for v in value)
    if hint is Any:
        return True
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return "null"
    return getattr(hint, "__name__", str(hint)) if typing.get_origin(hint) is None else str(hint)
