"""Scaling-study specs (TOML) and their expansion into jobs. Reads and writes files only.

    [study]
    name = "charrnn-scaling"
    profile = "ft3"                 # or a path to a profile TOML
    results = "results/charrnn-scaling"
    repeats = 3
    epochs = 2
    steps_per_epoch = 50
    time_limit = "00:30:00"
    scaling = "strong"              # strong: batch_size is the global batch; weak: per GPU
    batch_size = 256
    tune = "search"                 # strategy "ray": one trial per GPU; "search" varies only the
                                    # learning rate (same step time), "pbt" the workload's mutations
    jit_compile = "auto"            # XLA: auto (Keras: on GPUs only), true or false

    [matrix]
    strategies = ["default", "mirrored", "mwms", "horovod"]
    gpus = [1, 2, 4, 8]
    nodes = [1, 2, 4]               # optional: default is the fewest nodes holding the GPUs
    precision = ["float32", "mixed_float16"]   # optional (default float32): Keras dtype policies
    tf32 = ["on", "off"]            # optional (default on): TensorFloat-32 matmuls on A100s

    [run]                           # optional: any other RunConfig field, every job's run takes it
    warmup_steps = 10

    [[workloads]]
    name = "charrnn-gru"
    data = "real"
    set = { rnn_units = 1024 }
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import strategies as backends
from strategies.base import Placement
from bench.core.config import JIT_CHOICES, SCHEDULERS, RunConfig, from_dict
from bench.core.errors import UsageError
from bench.core.precision import PRECISIONS, TF32_CHOICES, label

PROFILES = Path(__file__).resolve().parent / "profiles"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
TIME = re.compile(r"^(\d+-)?\d{1,2}:\d{2}:\d{2}$")
STUDY_KEYS = {"name", "profile", "results", "repeats", "epochs", "steps_per_epoch", "time_limit",
              "scaling", "batch_size", "tune", "jit_compile", "what_if_gpus"}
MATRIX_KEYS = {"strategies", "gpus", "nodes", "precision", "tf32"}
WORKLOAD_KEYS = {"name", "data", "set"}
# RunConfig's fields the study, matrix and workloads tables set (or a job has no say in): [run] sets the others
SPEC_SETS = {"workload", "strategy", "epochs", "steps_per_epoch", "batch_size", "per_replica_batch_size", "seed",
             "data", "results", "overrides", "precision", "tf32", "jit_compile", "devices", "local_workers",
             "resume", "run_id", "verbose"}
PROFILE_KEYS = {"name", "gpus_per_node", "gres", "cpus_per_task", "mem", "mem_per_gpu", "partition", "qos", "account",
                "setup", "mpi", "cpu_bind", "links", "venv"}
LINK_KEYS = {"inside_alpha_us", "inside_GBps", "inside_source", "between_alpha_us", "between_GBps", "between_source"}


@dataclass(frozen=True)
class Links:
    """A cluster's two levels as the scaling model takes them: seconds per message (alpha) and
    bus bandwidth (nccl-tests' busbw) inside a node and between nodes, each with its source."""
    inside_alpha_us: float
    inside_GBps: float
    inside_source: str
    between_alpha_us: float
    between_GBps: float
    between_source: str


@dataclass(frozen=True)
class Profile:
    name: str
    gpus_per_node: int
    gres: str
    cpus_per_task: int
    mem: str
    partition: str
    qos: str
    account: str
    setup: tuple[str, ...]
    mpi: str
    cpu_bind: str = ""              # srun --cpu-bind for every step (e.g. cores); "" where the site binds
    mem_per_gpu: str = ""           # a job's memory per node: this x the GPUs it uses there (not the node's)
    venv: str = ""                  # the virtual environment jobs activate, where the user sets it
    links: Links | None = None      # [links]: the what-if's figures where no `bench comm` measured them
    path: str = ""                  # the file it was read from


@dataclass(frozen=True)
class WorkloadSpec:
    name: str
    data: str = "real"
    settings: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Job:
    """One sbatch job: where it runs (`placement`, as its backend is told) and what it runs (`run`)."""
    study: str
    workload: WorkloadSpec
    strategy: str
    gpus: int
    nodes: int
    repeat: int
    run: RunConfig = field(compare=False)
    placement: Placement = field(compare=False)

    @property
    def precision(self) -> str:
        return self.run.precision

    @property
    def tf32(self) -> str:
        return self.run.tf32

    @property
    def name(self) -> str:
        numerics = "".join(f"-{part}" for part in label(self.precision, self.tf32).replace("tf32 off", "notf32").split())
        return (f"{self.study}-{self.workload.name}-{self.strategy}{numerics}"
                f"-g{self.gpus}-n{self.nodes}-r{self.repeat}")

    @property
    def gpus_per_node(self) -> int:
        return self.gpus // self.nodes


@dataclass
class Study:
    path: Path
    name: str
    profile: Profile
    results: str
    repeats: int
    epochs: int
    steps_per_epoch: int
    time_limit: str
    scaling: str
    batch_size: int
    strategies: list[str]
    gpus: list[int]
    nodes: list[int] | None
    workloads: list[WorkloadSpec]
    tune: str = "search"
    jit_compile: str = "auto"
    what_if_gpus: list[int] = field(default_factory=list)     # the report job's what-if on the profile
    precisions: list[str] = field(default_factory=lambda: ["float32"])
    tf32: list[str] = field(default_factory=lambda: ["on"])
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (combination, why)
    run: dict[str, Any] = field(default_factory=dict)         # [run]: RunConfig's other fields, every job
    venv: str = ""              # the environment `bench jobs write` ran from: the jobs activate it
                                # (the profile's `venv`, where set, wins)

    def jobs(self) -> list[Job]:
        """Every job of the matrix, each with its RunConfig; what cannot run is in `skipped`."""
        jobs, self.skipped = [], []
        for workload, strategy, (precision, tf32), gpus in itertools.product(
                self.workloads, self.strategies, itertools.product(self.precisions, self.tf32), self.gpus):
            for nodes in self.nodes or [math.ceil(gpus / self.profile.gpus_per_node)]:
                repeats = [Job(self.name, workload, strategy, gpus, nodes, repeat,
                               self._run(workload, strategy, repeat, precision, tf32), self._placement(gpus, nodes))
                           for repeat in range(self.repeats)]
                why = _unplaceable(gpus, nodes, self.profile.gpus_per_node) or \
                    backends.get_class(strategy).launch_problem(repeats[0].placement, repeats[0].run)
                if why:
                    self.skipped.append((f"{workload.name} {strategy} gpus={gpus} nodes={nodes}", why))
                    continue
                jobs += repeats
        return jobs

    def _placement(self, gpus: int, nodes: int) -> Placement:
        """Where a job runs, as its backend is told (GPUs, nodes, the profile's CPUs and MPI)."""
        profile = self.profile
        return Placement(gpus=gpus, nodes=nodes, gpu_nodes=bool(profile.gres),
                         cpus_per_gpu=profile.cpus_per_task, mpi=profile.mpi, cpu_bind=profile.cpu_bind,
                         options=(("tune", self.tune),))

    def _run(self, workload: WorkloadSpec, strategy: str, repeat: int, precision: str, tf32: str) -> RunConfig:
        """What a job runs, before its backend adds how (e.g. logical devices on CPU nodes):
        the [run] template, and what the study, the matrix and the workload's table set."""
        batch = ({"batch_size": self.batch_size} if self.scaling == "strong"
                 else {"per_replica_batch_size": self.batch_size})
        return RunConfig(**self.run, workload=workload.name, strategy=strategy, epochs=self.epochs,
                         steps_per_epoch=self.steps_per_epoch, data=workload.data, seed=repeat,
                         results=self.results, overrides=dict(workload.settings), verbose="log",
                         precision=precision, tf32=tf32, jit_compile=self.jit_compile, **batch)


def missing_data(study: Study) -> dict[str, str]:
    """The workloads whose real data is not on this machine (under [run] data_dir or the cache):
    workload -> why, in one line. Nothing is downloaded."""
    from bench import workloads as registry
    from bench.data import catalog
    why = {spec.name: catalog.absent(registry.real_dataset(spec.name), study.run.get("data_dir"))
           for spec in study.workloads if spec.data == "real"}
    return {name: text for name, text in why.items() if text}    # the loader's words name the dataset


def on_generated_data(study: Study, workloads: list[str]) -> Study:
    """The study with `workloads` on generated data of their real data's format."""
    return dataclasses.replace(study, workloads=[dataclasses.replace(w, data="generated") if w.name in workloads else w
                                                 for w in study.workloads])


def _unplaceable(gpus: int, nodes: int, per_node: int) -> str | None:
    if gpus % nodes:
        return f"{gpus} GPUs do not split evenly over {nodes} nodes"
    if gpus // nodes > per_node:
        return f"{gpus // nodes} GPUs per node, the profile has {per_node}"
    return None


def load(path: str | Path) -> Study:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML ({exc})") from None
    where = _Where(path)
    where.keys(data, {"study", "matrix", "workloads", "run"}, "")
    study = where.table(data, "study")
    matrix = where.table(data, "matrix")
    where.keys(study, STUDY_KEYS, "study.")
    where.keys(matrix, MATRIX_KEYS, "matrix.")
    name = where.name(study, "study.name")
    from bench import workloads as registry
    strategies = where.list_of(matrix, "matrix.strategies", str)
    for i, strategy in enumerate(strategies):
        where.check(lambda: backends.check(strategy), f"matrix.strategies[{i}]")
    specs = []
    items = data.get("workloads")
    if not isinstance(items, list) or not items:
        raise where.error("workloads", "needs at least one [[workloads]] table")
    for i, item in enumerate(items):
        key = f"workloads[{i}]"
        where.keys(item, WORKLOAD_KEYS, key + ".")
        workload = where.name(item, key + ".name")
        where.check(lambda: registry.check(workload), key + ".name")
        data_source = item.get("data", "real")
        if data_source not in ("real", "generated", "synthetic"):
            raise where.error(key + ".data", f"{data_source!r} is not real, generated or synthetic")
        settings = item.get("set", {})
        if not isinstance(settings, dict):
            raise where.error(key + ".set", "must be a table of hyperparameter = value")
        for hp, value in settings.items():
            if not NAME.match(hp) or not re.match(r"^[\w.+-]+$", str(value)):
                raise where.error(f"{key}.set.{hp}", f"{value!r} is not a plain name/number")
        where.check(lambda: registry.hyperparameters(workload, {k: str(v) for k, v in settings.items()}), key + ".set")
        specs.append(WorkloadSpec(workload, data_source, tuple((k, str(v)) for k, v in settings.items())))
    scaling = study.get("scaling", "strong")
    if scaling not in ("strong", "weak"):
        raise where.error("study.scaling", f"{scaling!r} is not strong or weak")
    time_limit = str(study.get("time_limit", "01:00:00"))
    if not TIME.match(time_limit):
        raise where.error("study.time_limit", f"{time_limit!r} is not [D-]HH:MM:SS")
    tune = study.get("tune", "search")
    jit = study.get("jit_compile", "auto")
    if jit not in JIT_CHOICES:
        raise where.error("study.jit_compile", f"{jit!r} is not {', '.join(JIT_CHOICES)}")
    if tune not in SCHEDULERS:
        raise where.error("study.tune", f"{tune!r} is not {' or '.join(SCHEDULERS)}")
    results = str(study.get("results", f"results/{name}"))
    if any(c in results for c in "\n\0"):
        raise where.error("study.results", "contains a newline")
    # jobs run in the scripts' directory: a relative results path means the spec's directory
    results = str((path.parent / results).resolve()) if not Path(results).is_absolute() else results
    return Study(
        path=path, name=name, profile=load_profile(study.get("profile", "local"), path), results=results,
        repeats=where.positive(study, "study.repeats", 1), epochs=where.positive(study, "study.epochs", 1),
        steps_per_epoch=where.positive(study, "study.steps_per_epoch", 20), time_limit=time_limit,
        scaling=scaling, batch_size=where.positive(study, "study.batch_size", 64), strategies=strategies,
        gpus=[where.positive({"g": g}, f"matrix.gpus[{i}]", None, "g") for i, g in enumerate(where.list_of(matrix, "matrix.gpus", int))],
        nodes=[where.positive({"n": n}, f"matrix.nodes[{i}]", None, "n") for i, n in enumerate(where.list_of(matrix, "matrix.nodes", int))]
        if "nodes" in matrix else None,
        workloads=specs, tune=tune, jit_compile=jit,
        what_if_gpus=[where.positive({"g": g}, f"study.what_if_gpus[{i}]", None, "g")
                      for i, g in enumerate(where.list_of(study, "study.what_if_gpus", int))]
        if "what_if_gpus" in study else [],
        precisions=_choices(where, matrix, "precision", PRECISIONS), tf32=_choices(where, matrix, "tf32", TF32_CHOICES),
        run=_run_template(where, data.get("run", {})))


def _run_template(where: "_Where", table: Any) -> dict[str, Any]:
    """[run]: RunConfig's fields the other tables do not set, checked as RunConfig checks them."""
    if not isinstance(table, dict):
        raise where.error("run", "must be a table of RunConfig settings")
    where.keys(table, {f.name for f in dataclasses.fields(RunConfig)} - SPEC_SETS, "run.")
    where.check(lambda: from_dict(RunConfig, {"workload": "any", **table}, "run").check_values(), "run")
    return dict(table)


def _choices(where: "_Where", matrix: dict, key: str, valid: tuple[str, ...]) -> list[str]:
    if key not in matrix:
        return [valid[0]]
    values = where.list_of(matrix, f"matrix.{key}", str)
    for i, value in enumerate(values):
        if value not in valid:
            raise where.error(f"matrix.{key}[{i}]", f"{value!r} is not one of {', '.join(valid)}")
    if len(set(values)) < len(values):
        raise where.error(f"matrix.{key}", "lists a value twice")
    return values


def load_profile(ref: str, spec_path: Path) -> Profile:
    path = PROFILES / f"{ref}.toml" if NAME.match(ref) and (PROFILES / f"{ref}.toml").is_file() \
        else (spec_path.parent / ref).resolve()
    if not path.is_file():
        known = ", ".join(p.stem for p in sorted(PROFILES.glob("*.toml")))
        raise UsageError(f"{spec_path}: study.profile: {ref!r} is neither a profile ({known}) nor a file")
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    where = _Where(path)
    where.keys(data, PROFILE_KEYS, "")
    setup = data.get("setup", [])
    if not isinstance(setup, list) or any("\n" in str(line) for line in setup):
        raise where.error("setup", "must be a list of single lines")
    return Profile(name=where.name(data, "name"), gpus_per_node=where.positive(data, "gpus_per_node", None),
                   gres=str(data.get("gres", "")), cpus_per_task=where.positive(data, "cpus_per_task", 1),
                   mem=str(data.get("mem", "")), partition=str(data.get("partition", "")),
                   qos=str(data.get("qos", "")), account=str(data.get("account", "")),
                   setup=tuple(str(line) for line in setup), mpi=str(data.get("mpi", "")),
                   cpu_bind=_cpu_bind(where, data.get("cpu_bind", "")), links=_links(where, data.get("links")),
                   mem_per_gpu=_mem_per_gpu(where, data), venv=_venv(where, data.get("venv", "")), path=str(path))


def _venv(where: "_Where", value) -> str:
    """A path the script activates inside double quotes ($HOME expands; nothing else runs)."""
    value = str(value)
    if any(c in value for c in '"`\\\n') or "$(" in value:
        raise where.error("venv", f"{value!r}: a plain path ($HOME and $USER may appear)")
    return value.rstrip("/")


MEMORY = re.compile(r"^(\d+)([KMGT]?)$")


def _mem_per_gpu(where: "_Where", data: dict) -> str:
    value = str(data.get("mem_per_gpu", ""))
    if value and data.get("mem"):
        raise where.error("mem_per_gpu", "give mem (a node's) or mem_per_gpu, not both")
    if value and not MEMORY.match(value):
        raise where.error("mem_per_gpu", f"{value!r} is not a Slurm size (e.g. 123G)")
    return value


def memory_for(per_gpu: str, gpus: int) -> str:
    """A Slurm size times a GPU count ("123G", 2 -> "246G")."""
    number, unit = MEMORY.match(per_gpu).groups()
    return f"{int(number) * gpus}{unit}"


def _links(where: "_Where", table) -> Links | None:
    if table is None:
        return None
    if not isinstance(table, dict):
        raise where.error("links", "must be a table ([links])")
    where.keys(table, LINK_KEYS, "links.")
    values = {}
    for key in sorted(LINK_KEYS):
        value = table.get(key)
        if key.endswith("_source"):
            if not isinstance(value, str) or not value.strip():
                raise where.error(f"links.{key}", "say where the figure comes from (a datasheet, a measurement)")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise where.error(f"links.{key}", f"{value!r}: must be a positive number")
        values[key] = value
    return Links(**values)


def _cpu_bind(where: "_Where", value) -> str:
    if not isinstance(value, str) or not re.match(r"^[\w:,.-]*$", value):
        raise where.error("cpu_bind", f"{value!r} is not an srun --cpu-bind value (e.g. cores, map_cpu:0,1)")
    return value


class _Where:
    """Validation errors that name the file and the key."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, key: str, what: str) -> UsageError:
        return UsageError(f"{self.path}: {key}: {what}")

    def keys(self, table: dict, allowed: set[str], prefix: str) -> None:
        unknown = sorted(set(table) - allowed)
        if unknown:
            raise self.error(prefix + unknown[0], f"unknown key (valid: {', '.join(sorted(allowed))})")

    def table(self, data: dict, key: str) -> dict:
        value = data.get(key)
        if not isinstance(value, dict):
            raise self.error(key, f"missing [{key}] table")
        return value

    def name(self, table: dict, key: str) -> str:
        value = table.get(key.rsplit(".", 1)[-1])
        if not isinstance(value, str) or not NAME.match(value):
            raise self.error(key, f"{value!r}: use letters, digits, '.', '_' and '-' (up to 64)")
        return value

    def positive(self, table: dict, key: str, default: int | None, field_name: str | None = None) -> int:
        value = table.get(field_name or key.rsplit(".", 1)[-1], default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self.error(key, f"{value!r}: must be a positive integer")
        return value

    def list_of(self, table: dict, key: str, kind: type) -> list:
        value = table.get(key.rsplit(".", 1)[-1])
        if not isinstance(value, list) or not value or not all(isinstance(v, kind) and not isinstance(v, bool) for v in value):
            raise self.error(key, f"must be a non-empty list of {kind.__name__}")
        return value

    def check(self, fn, key: str) -> None:
        try:
            fn()
        except UsageError as exc:
            raise self.error(key, str(exc)) from None
