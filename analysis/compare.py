"""`bench compare BASELINE CURRENT --tolerance 5%`: a regression check in the manner of
ReFrame's performance references. Per (workload, scaling, strategy, GPUs): the change of the
median throughput, with both 95% intervals; a case regresses when it is slower than the
tolerance allows and the intervals do not overlap (so noise alone does not fail a build)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis import scaling, summary
from bench.core.errors import UsageError
from bench.core.record import RunRecord


def parse_tolerance(text: str) -> float:
    """'5%' or '0.05' -> 0.05."""
    value = str(text).strip()
    try:
        tolerance = float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError:
        raise UsageError(f"--tolerance {text!r}: expected a percentage such as 5% or a fraction such as 0.05") from None
    if not 0 <= tolerance < 1:
        raise UsageError(f"--tolerance {text!r}: must be in [0%, 100%)")
    return tolerance


def compare(baseline: list[str | Path], current: list[str | Path], tolerance: float) -> pd.DataFrame:
    """BASELINE's and CURRENT's results directories, case by case."""
    old, new = (summary.load(paths) for paths in (baseline, current))
    return compare_frames(old, new, tolerance, ", ".join(map(str, baseline)), ", ".join(map(str, current)))


def records_frame(paths: list[str]) -> pd.DataFrame:
    """The records at `paths` (a history's selection) as summary's table; a record file that
    is gone or unreadable is a row of status 'corrupt', as under a directory."""
    records, corrupt = [], []
    for path in paths:
        try:
            records.append((RunRecord.from_json(Path(path).read_text(encoding="utf-8")), Path(path)))
        except (ValueError, TypeError, OSError) as exc:
            corrupt.append({"status": "corrupt", "error": f"{type(exc).__name__}: {exc}", "path": str(path)})
    return summary.frame_of(records, corrupt)


def compare_frames(old_runs: pd.DataFrame, new_runs: pd.DataFrame, tolerance: float,
                   old_name: str = "the baseline", new_name: str = "the current runs") -> pd.DataFrame:
    old, new = (scaling.trust(scaling.aggregate(frame)) for frame in (old_runs, new_runs))
    if old.empty or new.empty:
        raise UsageError(f"no successful runs in {old_name if old.empty else new_name}")
    keep = [*scaling.KEYS, "runs", "samples_per_s", "ci_low", "ci_high", "flags"]
    merged = old[keep].merge(new[keep], on=scaling.KEYS, how="outer", suffixes=("_base", "_cur"))
    merged["change"] = merged["samples_per_s_cur"] / merged["samples_per_s_base"] - 1
    overlap = (merged["ci_high_cur"] >= merged["ci_low_base"]) & (merged["ci_low_cur"] <= merged["ci_high_base"])
    merged["overlap"] = overlap
    merged["verdict"] = np.select(
        [merged["samples_per_s_base"].isna(), merged["samples_per_s_cur"].isna(),
         (merged["change"] < -tolerance) & ~overlap, (merged["change"] > tolerance) & ~overlap],
        ["new", "missing", "REGRESSION", "faster"], default="same")
    return merged.sort_values(scaling.KEYS).reset_index(drop=True)


def render(table: pd.DataFrame, tolerance: float) -> str:
    lines = [f"{'workload':<14} {'scaling':<7} {'strategy':<9} {'GPUs':>4} {'baseline samples/s':>28} "
             f"{'current samples/s':>28} {'change':>8}  verdict"]
    for _, r in table.iterrows():
        def cell(kind: str) -> str:
            median = r[f"samples_per_s_{kind}"]
            if pd.isna(median):
                return "-"
            return (f"{median:,.1f} [{r[f'ci_low_{kind}']:,.1f}, {r[f'ci_high_{kind}']:,.1f}]"
                    + scaling.marks(r[f"flags_{kind}"]))
        change = "" if pd.isna(r["change"]) else f"{100 * r['change']:+.1f}%"
        lines.append(f"{r['workload']:<14} {r['scaling']:<7} {r['strategy']:<9} {int(r['num_replicas']):>4} "
                     f"{cell('base'):>28} {cell('cur'):>28} {change:>8}  {r['verdict']}")
    regressions = int((table["verdict"] == "REGRESSION").sum())
    lines.append(f"{regressions} regression(s) beyond {100 * tolerance:g}% with non-overlapping 95% intervals "
                 f"in {len(table)} case(s)")
    marks = scaling.legend([*table["flags_base"], *table["flags_cur"]])
    if marks:
        lines.append(marks)
    return "\n".join(lines)
