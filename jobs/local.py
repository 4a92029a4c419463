"""A local study: every workload x strategy x replica count (x repeats) as separate `bench run`
processes on this host, then a summary table. Each run is its own process because a backend
configures devices before TensorFlow starts; each gets its RunConfig in the environment, as
every launched worker does. Writes and reads files only: no TensorFlow import here."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import strategies
from bench import workloads
from bench.core.config import DATA_SOURCES, RUN_CONFIG_ENV, RunConfig, from_dict
from bench.core.errors import UsageError
from bench.core.procs import bench_command
from bench.run import binding


# RunConfig's fields the study's matrix sets (workload, strategy, replicas, data per workload,
# the repeat's seed); every other field is the template every run takes (`bench study --FIELD`)
MATRIX_FIELDS = ("workload", "strategy", "devices", "local_workers", "data", "seed", "resume", "run_id")
RUN_DEFAULTS = {"epochs": 1, "steps_per_epoch": 20, "verbose": 0}      # a quick study unless told


@dataclass
class LocalStudy:
    workloads: list[str]
    strategies: list[str]
    counts: list[int] = field(default_factory=lambda: [2])    # replicas: devices or local workers
    name: str = "local"
    repeats: int = 1
    data: dict[str, str] = field(default_factory=dict)        # per workload; default generated
    run: dict[str, Any] = field(default_factory=dict)         # RunConfig's fields every run takes
                                                               # (--set: [workload.]key -> value)

    @property
    def results_dir(self) -> str:
        return self.run.get("results") or str(Path("results") / self.name)


def run_configs(study: LocalStudy) -> list[RunConfig]:
    """The study's runs; unknown names and bad counts are refused before anything runs."""
    for name in study.workloads:
        workloads.hyperparameters(name, study.run.get("overrides") or {})
    for name in study.strategies:
        strategies.run_class(name)
    if not study.counts or min(study.counts) < 1:
        raise UsageError(f"--devices {study.counts}: counts must be >= 1")
    if study.repeats < 1:
        raise UsageError(f"--repeats {study.repeats}: must be >= 1")
    taken = sorted(set(study.run) & set(MATRIX_FIELDS))
    if taken:
        raise UsageError(f"{taken[0]}: the study's matrix sets it, not its run template")
    # default: an even share for the largest count, so that 1 replica has the cores of one of N, not the machine's
    per_replica = max(1, len(binding.available_cores()) // max(study.counts))
    template = {**RUN_DEFAULTS, "cpus_per_replica": per_replica, **study.run, "results": study.results_dir}
    configs = []
    for repeat in range(study.repeats):
        for workload in study.workloads:
            base = from_dict(RunConfig, {**template, "workload": workload, "seed": repeat,
                                         "data": study.data.get(workload, "generated")}, "bench study")
            for strategy in study.strategies:
                configs += [_with_replicas(dataclasses.replace(base, strategy=strategy), count)
                            for count in _counts(strategy, study.counts)]
    return configs


def _counts(strategy: str, counts: list[int]) -> list[int]:
    backend = strategies.get_class(strategy)
    return counts if backend.multi_device or backend.multi_process else [1]


def _with_replicas(cfg: RunConfig, count: int) -> RunConfig:
    backend = strategies.get_class(cfg.strategy)
    if backend.multi_device:
        return dataclasses.replace(cfg, devices=count)
    if backend.multi_process:
        return dataclasses.replace(cfg, local_workers=count)
    return cfg


def parse_counts(text: str) -> list[int]:
    try:
        return [int(c) for c in str(text).split(",") if c]
    except ValueError:
        raise UsageError(f"--devices {text!r}: a count or a list like 1,2") from None


def data_sources(spec: str, chosen: list[str]) -> dict[str, str]:
    """`generated` for all, or per workload: `mlp=generated,charrnn-gru=real` (others: real)."""
    if "=" not in spec:
        pairs = {name: spec for name in chosen}
    else:
        pairs = {name: "real" for name in chosen}
        for item in spec.split(","):
            name, _, source = item.partition("=")
            if name not in chosen:
                raise UsageError(f"--data {item!r}: {name!r} is not one of the study's workloads")
            pairs[name] = source
    for name, source in pairs.items():
        if source not in DATA_SOURCES:
            raise UsageError(f"--data {name}={source}: must be one of {', '.join(DATA_SOURCES)}")
    return pairs


def describe(cfg: RunConfig) -> str:
    replicas = cfg.devices or cfg.local_workers or 1
    return f"{cfg.workload} {cfg.strategy} x{replicas} seed {cfg.seed}"


def run_study(study: LocalStudy) -> int:
    """Every run, one `bench run` process after the other; the number that failed (the caller
    reports on the study's results directory)."""
    configs = run_configs(study)
    Path(study.results_dir).mkdir(parents=True, exist_ok=True)
    failed = 0
    for i, cfg in enumerate(configs, 1):
        print(f"[{i}/{len(configs)}] bench run: {describe(cfg)}", flush=True)
        t0 = time.perf_counter()
        done = subprocess.run(bench_command("run"), capture_output=True, text=True,
                              env={**os.environ, RUN_CONFIG_ENV: cfg.to_json()})
        tail = (done.stderr.strip().splitlines() or [""])[-1]
        status = "ok" if done.returncode == 0 else f"exit {done.returncode}: {tail}"
        print(f"    {status} ({time.perf_counter() - t0:.1f} s)", flush=True)
        failed += done.returncode != 0
    if failed:
        print(f"\n{failed} of {len(configs)} runs failed", file=sys.stderr)
    return failed
