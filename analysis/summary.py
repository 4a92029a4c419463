"""Load result records into one tidy table, and print a summary (no TensorFlow here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import pandas as pd

from bench.core.errors import UsageError
from bench.core.precision import label
from bench.core.record import (RunRecord, iter_record_paths, nodes_of, overrides_text, scaling_of,
                               tensorflow_version)

COLUMNS = ["run_id", "kind", "workload", "strategy", "backend", "numerics", "status", "scaling", "data_source", "num_replicas",
           "ranks_per_node", "nodes", "jit", "overrides", "global_batch_size", "per_replica_batch_size", "samples_per_s", "samples_per_s_per_device",
           "tokens_per_s", "median_step_s", "p90_step_s", "timed_steps", "final_loss", "final_accuracy",
           "test_accuracy", "shared_cores", "others_cpu_pct", "steal_pct", "gpu_util_pct", "energy_j", "samples_trained", "parameters", "hostname",
           "gpu_models", "slurm_job_id", "git_sha", "tensorflow", "error", "path"]


def row(record: RunRecord, path: Path) -> dict:
    step = record.timing.get("step_time", {})
    per_gpu = (record.gpu or {}).get("per_gpu") or {}
    utils = [g["util_pct_mean"] for g in per_gpu.values() if g.get("util_pct_mean") is not None]
    energies = [g["energy_j"] for g in per_gpu.values() if g.get("energy_j") is not None]
    steps = record.timing.get("steps")
    packages = record.provenance.get("packages") or {}
    numerics = label(record.config.get("precision", "float32"), record.config.get("tf32", "on"))
    return {
        "run_id": record.run_id, "kind": record.kind, "workload": record.workload,
        # runs of another precision are a series of their own beside the strategy's
        "strategy": f"{record.strategy} {numerics}" if numerics else record.strategy,
        "backend": record.strategy, "numerics": numerics or "fp32",
        "status": record.status, "data_source": record.data_source,
        "scaling": scaling_of(record.config),
        "num_replicas": record.num_replicas, "ranks_per_node": record.ranks_per_node,
        "nodes": nodes_of(record.world_size, record.ranks_per_node),
        "jit": str(record.config.get("jit_compile", "auto")).lower(),
        "overrides": overrides_text(record.config),
        "global_batch_size": record.global_batch_size,
        "per_replica_batch_size": record.per_replica_batch_size,
        "samples_per_s": record.throughput.get("samples_per_s"),
        "samples_per_s_per_device": record.throughput.get("samples_per_s_per_device"),
        "tokens_per_s": record.throughput.get("tokens_per_s"),
        "median_step_s": step.get("median_s"), "p90_step_s": step.get("p90_s"),
        "timed_steps": step.get("count"),
        "final_loss": record.metrics.get("final_loss"),
        "final_accuracy": record.metrics.get("final_accuracy"),
        "test_accuracy": record.metrics.get("test_accuracy"),
        "shared_cores": shared_cores(record.host or {}),
        "others_cpu_pct": (record.host or {}).get("others_cpu_pct_mean"),
        "steal_pct": (record.host or {}).get("steal_pct_mean"),
        "gpu_util_pct": sum(utils) / len(utils) if utils else None,
        "energy_j": sum(energies) if energies else None,
        "samples_trained": steps * record.global_batch_size if steps and record.global_batch_size else None,
        "parameters": record.extra.get("parameters"),
        "hostname": record.provenance.get("hostname"),
        "gpu_models": ",".join(record.provenance.get("gpu_models") or []) or None,
        "slurm_job_id": (record.provenance.get("slurm") or {}).get("SLURM_JOB_ID"),
        "git_sha": (record.provenance.get("git") or {}).get("sha"),
        "tensorflow": tensorflow_version(packages),
        "error": record.error, "path": str(path),
    }


def shared_cores(host: dict) -> bool | None:
    """Whether other processes kept the run's cores busier than its cgroup's quota left them
    (10 points of slack): the run measured their work too. None: not sampled."""
    others = host.get("others_cpu_pct_mean")
    if others is None:
        return None
    cores = host.get("cores") or 1
    share = (host.get("binding") or {}).get("cpu_share")
    left = 100 * max(0.0, cores - share) / cores if share else 0.0
    return bool(others > left + 10)


def read_all(results: Iterable[str | Path]) -> tuple[list[tuple[RunRecord, Path]], list[dict]]:
    """Every record under `results`, and a row (status 'corrupt', the reason) for each file
    that is not a readable record of this schema: never a crash, never silently dropped."""
    records, corrupt = [], []
    for root in results:
        if not Path(root).is_dir():
            raise UsageError(f"{root}: no such results directory")
        for path in iter_record_paths(root):
            try:
                records.append((RunRecord.from_json(path.read_text(encoding="utf-8")), path))
            except (ValueError, TypeError, json.JSONDecodeError, OSError) as exc:
                corrupt.append({"status": "corrupt", "error": f"{type(exc).__name__}: {exc}", "path": str(path)})
    return records, corrupt


def frame_of(records: list[tuple[RunRecord, Path]], corrupt: list[dict] = ()) -> pd.DataFrame:
    return pd.DataFrame([row(record, path) for record, path in records] + list(corrupt), columns=COLUMNS)


def load(results: Iterable[str | Path]) -> pd.DataFrame:
    """Every record under `results` as one row of a tidy table (the library API)."""
    return frame_of(*read_all(results))


def table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "(no records)"
    ok = frame[frame["status"] == "ok"]
    lines = []
    if not ok.empty:
        view = (ok.groupby(["workload", "strategy", "num_replicas"], sort=True)
                .agg(runs=("run_id", "count"), samples_per_s=("samples_per_s", "median"),
                     per_device=("samples_per_s_per_device", "median"),
                     median_step_ms=("median_step_s", lambda s: 1e3 * s.median()),
                     final_loss=("final_loss", "median"))
                .reset_index())
        lines.append(view.to_string(index=False, float_format=lambda v: f"{v:,.2f}"))
    bad = frame[frame["status"] != "ok"]
    for _, item in bad.iterrows():
        lines.append(f"{item['status']}: {item['path']}: {item['error']}")
    return "\n".join(lines)
