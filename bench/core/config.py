"""The configuration of one run: plain data with typed defaults, validated in one place
before anything runs or is written, saved with the run and handed to every worker as data.

Configs are dataclasses read with `from_dict`, which rejects unknown keys (listing the
valid ones) and values of the wrong type, as submitit does; they round-trip through JSON
(`to_json` / `from_json`) and are read from JSON or TOML files (`load`). A launcher hands a
worker its config in the environment variable `RUN_CONFIG_ENV`, never as argv to re-parse.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

from bench.core.errors import UsageError
from bench.core.precision import PRECISIONS, TF32_CHOICES

DATA_SOURCES = ("real", "generated", "synthetic")
JIT_CHOICES = ("auto", "true", "false")
LAUNCHERS = ("gloo", "mpi")
SCHEDULERS = ("pbt", "search")
RAY_MODES = ("local", "auto", "slurm")
RUN_CONFIG_ENV = "DISTBENCH_RUN_CONFIG"
STUDY_CONFIG_ENV = "DISTBENCH_STUDY_CONFIG"     # a study's config handed to `bench tune` (a Ray job)
RESULTS_ENV = "DISTBENCH_RESULTS"

C = TypeVar("C")


def opt(default: Any = dataclasses.MISSING, help: str = "", *, factory: Any = None,
        choices: tuple[str, ...] | None = None, flag: str | None = None, aliases: tuple[str, ...] = (),
        metavar: str | None = None, env: str | None = None, action: str | None = None,
        study: bool = True, scheduler: str | None = None, cli: bool = True) -> Any:
    """A config field and what the command lines say of it, declared once: its help, choices,
    flag (default --field-name) and aliases, the environment variable that supplies it when
    not given, whether a study's trials take it (`study`), the one scheduler it belongs to,
    and whether it is an option at all (`cli`). Command lines are built from these
    (`add_options`); a field declared without them is an option of every command."""
    metadata = {"help": help, "choices": choices, "flag": flag, "aliases": aliases, "metavar": metavar,
                "env": env, "action": action, "study": study, "scheduler": scheduler, "cli": cli}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class RunConfig:
    workload: str = opt(help="see `bench list`", aliases=("-w",))
    strategy: str = opt("default", "see `bench list`", aliases=("-s",), study=False)
    epochs: int = opt(1)
    steps_per_epoch: int | None = opt(None, "default: one pass over the training data")
    batch_size: int | None = opt(None, "global batch size (default: the workload's, or per replica x replicas)")
    per_replica_batch_size: int | None = opt(None, "instead of --batch-size (weak scaling)", study=False)
    devices: int | None = opt(None, "replicas on this host (mirrored: GPUs, or logical CPUs without GPUs)",
                              study=False)
    local_workers: int | None = opt(None, "multi-process strategies: start N workers on this host (127.0.0.1)",
                                    metavar="N", study=False)
    cpus_per_replica: float | None = opt(
        None, "cores each replica owns; local workers get disjoint sets (default: an even share; under Slurm "
              "its allocation); a share below 1 (0.5) with --local-workers is a cgroup's CPU quota",
        metavar="N", study=False)
    launcher: str = opt("gloo", "horovod --local-workers: horovodrun over Gloo, or mpirun", choices=LAUNCHERS,
                        study=False)
    seed: int = opt(0)
    data: str = opt("real", "real files, generated data of the same format, or in-memory tensors",
                    choices=DATA_SOURCES)
    data_dir: str | None = opt(None, "pre-staged datasets (default: $DISTBENCH_DATA_DIR, then the cache)")
    results: str = opt("results", "results directory", env=RESULTS_ENV)
    overrides: dict[str, str | int | float | bool] = opt(
        factory=dict, help="workload hyperparameter, e.g. --set rnn_units=256 (repeatable)", flag="--set",
        metavar="KEY=VALUE")
    tags: dict[str, str] = opt(factory=dict, help="a label of the run for its history, e.g. --tag driver=550 "
                               "(repeatable; `bench history --tag driver=550` selects by it)", flag="--tag",
                               metavar="KEY=VALUE")
    warmup_steps: int = opt(5, "steps excluded from timing")
    sample_interval_s: float = opt(1.0, "GPU/host sampling period", flag="--sample-interval",
                                metavar="S", study=False)
    target_accuracy: float | None = opt(None, "record the time to reach this accuracy", study=False)
    stop_at_target: bool = opt(False, "end training once the target is reached", study=False)
    jit_compile: str = opt("auto", "XLA (auto: Keras enables it on GPUs only)", choices=JIT_CHOICES)
    checkpoint_every: int = opt(0, "epochs between checkpoints (0: none)", metavar="EPOCHS", study=False)
    resume: str | None = opt(None, "a checkpoint file or a run directory", metavar="CHECKPOINT_OR_RUN_DIR",
                             study=False)
    export: bool = opt(False, "char-RNNs: export a SavedModel text generator", study=False)
    scale_lr: bool = opt(False, "multi-worker: learning rate x number of workers", study=False)
    precision: str = opt("float32", "Keras dtype policy; mixed_float16 scales the loss", choices=PRECISIONS)
    tf32: str = opt("on", "TensorFloat-32 matmuls on A100s (TensorFlow's default: on)", choices=TF32_CHOICES)
    sparse_gradients: bool = opt(False, "keep embeddings' gradients sparse (for tables much larger than a "
                                        "step's lookups; default: dense)")
    merge_validation: bool = opt(False, "train on training + validation data (a best config retrained)",
                                 study=False, cli=False)
    verbose: int | str = opt("auto", "Keras progress output (auto, 0, 1, 2), or log: a line per epoch and at "
                             "least every 30 s, for job logs", study=False, cli=False)
    run_id: str | None = opt(None, study=False, cli=False)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, changed_only: bool = False) -> str:
        return to_json(self, changed_only)

    def worker(self, run_id: str) -> "RunConfig":
        """The config a launcher hands each of its workers: this run, launched no further."""
        return dataclasses.replace(self, local_workers=None, run_id=run_id)

    def validate(self) -> None:
        """Every check, those of this host (paths, a share's cgroup) included."""
        self.check_values()
        share = self.cpus_per_replica
        if share is not None and share < 1 and self.local_workers is None and not os.environ.get("DISTBENCH_CPU_SHARES"):
            raise UsageError(f"--cpus-per-replica {share:g}: a share of a core needs --local-workers N (the "
                             f"launcher makes each worker's cgroup); on emulated nodes: bench cluster --cpus-per-node")
        if self.data_dir is not None and not Path(self.data_dir).is_dir():
            raise UsageError(f"--data-dir {self.data_dir}: no such directory")
        if self.resume is not None and not Path(self.resume).exists():
            raise UsageError(f"--resume {self.resume}: no such file or directory")
        results = Path(self.results)
        if results.exists() and not results.is_dir():
            raise UsageError(f"--results {self.results}: exists and is not a directory")

    def check_values(self) -> None:
        """The checks that need no host: ranges, choices, and settings that go together."""
        for name in ("epochs", "steps_per_epoch", "batch_size", "per_replica_batch_size", "devices",
                     "local_workers"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UsageError(f"--{name.replace('_', '-')} {value}: must be >= 1")
        share = self.cpus_per_replica
        if share is not None and (share <= 0 or (share > 1 and share != int(share))
                                  or (share < 1 and round(1 / share, 6) % 1)):
            raise UsageError(f"--cpus-per-replica {share:g}: a whole number of cores, or a share that "
                             f"divides one (0.5, 0.25)")
        if self.warmup_steps < 0:
            raise UsageError(f"--warmup-steps {self.warmup_steps}: must be >= 0")
        if self.checkpoint_every < 0:
            raise UsageError(f"--checkpoint-every {self.checkpoint_every}: must be >= 0")
        if self.sample_interval_s <= 0:
            raise UsageError(f"--sample-interval {self.sample_interval_s}: must be > 0")
        for f in dataclasses.fields(self):
            if f.metadata.get("choices"):
                check_choice(flag_of(f), getattr(self, f.name), f.metadata["choices"])
        if self.target_accuracy is not None and not 0 < self.target_accuracy <= 1:
            raise UsageError(f"--target-accuracy {self.target_accuracy}: must be in (0, 1]")
        if self.stop_at_target and self.target_accuracy is None:
            raise UsageError("--stop-at-target needs --target-accuracy")
        if self.batch_size and self.per_replica_batch_size:
            raise UsageError("give --batch-size (global) or --per-replica-batch-size, not both")

    @property
    def jit(self) -> bool | str:
        return jit_setting(self.jit_compile)


@dataclass
class StudyConfig(RunConfig):
    """A study of trials under Ray Tune: the run every trial is (RunConfig's fields a trial
    takes: one replica, one iteration = one epoch) plus the scheduler's fields."""
    epochs: int = opt(100, "training iterations (epochs) per trial", aliases=("--iterations",))
    steps_per_epoch: int | None = opt(None, "steps per iteration (default: one pass over the training data)",
                                      aliases=("--steps-per-iteration",))
    warmup_steps: int = opt(2, "steps excluded from timing")
    verbose: int | str = opt(0, "Ray's progress output", aliases=("-v",), action="count")
    scheduler: str = opt("pbt", choices=SCHEDULERS, cli=False)
    samples: int = opt(2, "trials (PBT population, or search samples)", aliases=("--trials",))
    space: dict[str, str] = opt(
        factory=dict, flag="--space", metavar="NAME=DIST",
        help="e.g. dropout='uniform(0, 0.9)', learning_rate='loguniform(1e-4, 1e-2)', optimizer='choice(sgd, "
             "adam)', rho='grid(0.8, 0.9, 0.99)', n_hidden='randint(0, 8)'; replaces the workload's default")
    perturbation_interval: int = opt(2, "iterations between PBT's perturbations", scheduler="pbt")
    quantile_fraction: float = opt(0.25, "the bottom share of trials that exploit the top", scheduler="pbt")
    synch: bool = opt(False, "perturb once every trial reached the interval", scheduler="pbt")
    reuse_workers: bool = opt(True, "an exploit or resume goes on in a live worker process", scheduler="pbt")
    asha: bool = opt(False, "stop weak trials early (ASHA)", scheduler="search")
    retrain: bool = opt(True, "retrain the best config on training + validation data, then test it",
                        scheduler="search")
    cpus_per_trial: float = opt(1)
    gpus_per_trial: float = opt(0, "fractions share a GPU")
    num_cpus: int | None = opt(None, "CPUs of the local Ray (default: all)")
    ray: str = opt("local", "start a local Ray, join a running one, or start Ray on the Slurm allocation's nodes",
                   choices=RAY_MODES)
    study_id: str | None = opt(None, cli=False)

    def validate(self) -> None:
        """RunConfig's checks, the scheduler's, and no setting a trial does not take."""
        for f in dataclasses.fields(RunConfig):
            if not trials_take(f) and STUDY_FIELDS[f.name] is f and getattr(self, f.name) != _default(f):
                raise UsageError(f"{f.name} = {getattr(self, f.name)!r}: a run's setting; a study's trials "
                                 f"do not take it")
        super().validate()
        for name in ("samples", "perturbation_interval"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be >= 1")
        if self.cpus_per_trial <= 0 or self.gpus_per_trial < 0:
            raise UsageError("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0")
        if not 0 < self.quantile_fraction <= 0.5:
            raise UsageError(f"--quantile-fraction {self.quantile_fraction}: must be in (0, 0.5]")

    def trial_run(self, **changes: Any) -> RunConfig:
        """The RunConfig of this study's runs (a trial, the retrain), with `changes`."""
        run = {f.name: getattr(self, f.name) for f in dataclasses.fields(RunConfig)}
        return RunConfig(**{**run, "verbose": 0, **changes})

    @classmethod
    def of_run(cls, run: RunConfig, **study: Any) -> "StudyConfig":
        """A study whose trials are `run` (what a trial takes of it) with the study's fields."""
        taken = {f.name: getattr(run, f.name) for f in dataclasses.fields(RunConfig) if trials_take(f)}
        return cls(**{**taken, **study})


STUDY_FIELDS = {f.name: f for f in dataclasses.fields(StudyConfig)}
# What a scheduler's study is when a command line leaves it out (a search tries more, shorter trials)
SCHEDULER_DEFAULTS = {"pbt": {}, "search": {"samples": 10, "epochs": 10}}


def flag_of(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def trials_take(f: dataclasses.Field) -> bool:
    """Whether a study's trials take this RunConfig field (and `bench tune` offers it)."""
    return f.metadata.get("study", True)


# --- command lines built from the fields -----------------------------------------------

def add_options(parser: Any, cls: type, *, skip: Iterable[str] = (), positional: Iterable[str] = (),
                keep: Callable[[dataclasses.Field], bool] = lambda f: True,
                defaults: dict[str, Any] | None = None) -> None:
    """An argparse option per field of the config dataclass `cls` (its flag, aliases, type,
    choices and help from `opt`). Options left out are absent from the namespace (argparse's
    SUPPRESS), so that `given` returns only what the command line said; `defaults` are what
    the help shows where the command's own defaults differ from the class's."""
    hints = typing.get_type_hints(cls)
    skip, positional, defaults = set(skip), list(positional), defaults or {}
    for name in positional:
        parser.add_argument(name, help=_field(cls, name).metadata.get("help") or None)
    for f in dataclasses.fields(cls):
        if f.name in skip or f.name in positional or not f.metadata.get("cli", True) or not keep(f):
            continue
        meta, kind = f.metadata, _scalar(hints[f.name])
        default = defaults.get(f.name, _default(f))
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS}
        flags = [flag_of(f), *meta.get("aliases", ())]
        if meta.get("action"):
            kwargs["action"] = meta["action"]
        elif kind is bool:
            kwargs["action"] = "store_false" if default else "store_true"
            flags = flags if not default else ["--no-" + f.name.replace("_", "-")]
        elif kind is dict:
            kwargs.update(action="append", metavar=meta.get("metavar") or "KEY=VALUE")
        else:
            kwargs.update(type=kind, choices=meta.get("choices"), metavar=meta.get("metavar"))
        quiet = kind in (bool, dict) or default in (None, dataclasses.MISSING) or meta.get("action")
        shown = "" if quiet or "default" in (meta.get("help") or "") else f"default: {default}"
        if meta.get("env"):
            shown = f"default: ${meta['env']}, else {default}"
        kwargs["help"] = "; ".join(part for part in (meta.get("help"), shown) if part) or None
        parser.add_argument(*flags, **kwargs)


def given(cls: type, namespace: Any, skip: Iterable[str] = ()) -> dict[str, Any]:
    """The fields of `cls` a command line gave (see `add_options`) as config values (`--set k=v`
    lists as dicts), but those in `skip` (options of the same names that mean something else)."""
    from bench.core.hparams import parse_set_options
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if hasattr(namespace, f.name) and f.name not in skip:
            value = getattr(namespace, f.name)
            values[f.name] = parse_set_options(value, flag_of(f)) if _scalar(hints[f.name]) is dict else value
    return values


def with_env(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """`values` and, for each field they leave out, its environment variable's value if set."""
    env = {f.name: os.environ[f.metadata["env"]] for f in dataclasses.fields(cls)
           if f.metadata.get("env") and os.environ.get(f.metadata["env"])}
    return {**env, **values}


def _field(cls: type, name: str) -> dataclasses.Field:
    return {f.name: f for f in dataclasses.fields(cls)}[name]


def _scalar(hint: Any) -> Any:
    """The type an option parses: `int | None` is int, `dict[...]` is dict, `int | str` is str."""
    if typing.get_origin(hint) is dict:
        return dict
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    return args[0] if len(args) == 1 else str


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
