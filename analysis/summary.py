"""Load result records into one tidy table, and print a summary (no TensorFlow here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import pandas as pd

from bench.errors import UsageError
from bench.record import RunRecord, iter_record_paths

COLUMNS = ["run_id", "kind", "workload", "strategy", "status", "data_source", "num_replicas",
           "global_batch_size", "per_replica_batch_size", "samples_per_s", "samples_per_s_per_device",
           "tokens_per_s", "median_step_s", "p90_step_s", "final_loss", "final_accuracy",
           "test_accuracy", "error", "path"]


def row(record: RunRecord, path: Path) -> dict:
    step = record.timing.get("step_time", {})
    return {
        "run_id": record.run_id, "kind": record.kind, "workload": record.workload, "strategy": record.strategy,
        "status": record.status, "data_source": record.data_source,
        "num_replicas": record.num_replicas, "global_batch_size": record.global_batch_size,
        "per_replica_batch_size": record.per_replica_batch_size,
        "samples_per_s": record.throughput.get("samples_per_s"),
        "samples_per_s_per_device": record.throughput.get("samples_per_s_per_device"),
        "tokens_per_s": record.throughput.get("tokens_per_s"),
        "median_step_s": step.get("median_s"), "p90_step_s": step.get("p90_s"),
        "final_loss": record.metrics.get("final_loss"),
        "final_accuracy": record.metrics.get("final_accuracy"),
        "test_accuracy": record.metrics.get("test_accuracy"),
        "error": record.error, "path": str(path),
    }


def load(results: Iterable[str | Path]) -> pd.DataFrame:
    """Every record under `results` as one row; unreadable records become rows with status
    'corrupt' and the reason, never a crash and never silently dropped."""
    rows = []
    for root in results:
        if not Path(root).is_dir():
            raise UsageError(f"{root}: no such results directory")
        for path in iter_record_paths(root):
            try:
                rows.append(row(RunRecord.from_json(path.read_text(encoding="utf-8")), path))
            except (ValueError, TypeError, json.JSONDecodeError, OSError) as exc:
                rows.append({"status": "corrupt", "error": f"{type(exc).__name__}: {exc}", "path": str(path)})
    return pd.DataFrame(rows, columns=COLUMNS)


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
