"""The answer a study's reader comes for, per workload and scaling mode: which strategy is
fastest at each GPU count, how well each scales, as sentences and a strategy x count pivot
(pandas only)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Unit:
    """What a replica was: a GPU, or a share of a CPU node's cores."""
    one: str
    many: str

    def count(self, n: int) -> str:
        return f"{n} {self.one if n == 1 else self.many}"


GPU = Unit("GPU", "GPUs")
CPU = Unit("replica (CPU)", "replicas (CPU)")


@dataclass(frozen=True)
class Cell:
    samples_per_s: float
    efficiency: float
    best: bool


@dataclass(frozen=True)
class Pivot:
    title: str
    counts: list[int]                                   # columns
    rows: list[tuple[str, list[Cell | None]]]           # (strategy, a cell per count)
    unit: Unit
    note: str


def unit_of(frame: pd.DataFrame, workload: str) -> Unit:
    """GPUs where any of the workload's runs recorded a GPU model, CPU replicas otherwise."""
    rows = frame[frame["workload"] == workload]
    return GPU if rows["gpu_models"].notna().any() else CPU


def scaling_title(scaling: str) -> str:
    return ("weak scaling (per-replica batch fixed)" if scaling == "weak"
            else "strong scaling (global batch fixed)")


def pivot(group: pd.DataFrame, workload: str, scaling: str, unit: Unit) -> Pivot:
    """`group`: the scaling table's rows of one (workload, scaling), with efficiency."""
    counts = sorted(int(c) for c in group["num_replicas"].unique())
    fastest = {c: group[group["num_replicas"] == c]["samples_per_s"].max() for c in counts}
    rows = []
    for strategy, runs in group.groupby("strategy", sort=True):
        by_count = {int(r.num_replicas): r for r in runs.itertuples()}
        rows.append((strategy, [Cell(by_count[c].samples_per_s, by_count[c].efficiency,
                                     by_count[c].samples_per_s == fastest[c]) if c in by_count else None
                                for c in counts]))
    note = (f"Cells: total samples/s of all replicas (median over repeats); below it, the scaling efficiency "
            f"against the same strategy's smallest count. Best per column marked.")
    return Pivot(f"{workload}, {scaling_title(scaling)}", counts, rows, unit, note)


def sentences(group: pd.DataFrame, unit: Unit) -> list[str]:
    """One verdict per count: the fastest strategy, its throughput and efficiency, and every
    other strategy as a fraction of it."""
    lines = []
    for count in sorted(int(c) for c in group["num_replicas"].unique()):
        at = group[group["num_replicas"] == count].sort_values("samples_per_s", ascending=False)
        best = at.iloc[0]
        text = f"At {unit.count(count)}: {best['strategy']} fastest, {best['samples_per_s']:,.0f} samples/s"
        base = str(best.get("baseline", ""))
        if count > _smallest(group, best["strategy"]):
            text += f", efficiency {best['efficiency']:.2f} of its {base.rsplit(' x', 1)[-1]}-{unit.one.split()[0]} run"
        others = [f"{r['strategy']} {r['samples_per_s'] / best['samples_per_s']:.2f}x" for _, r in at.iloc[1:].iterrows()]
        if others:
            text += "; " + ", ".join(others) + " of it"
        lines.append(text + ".")
    return lines


def _smallest(group: pd.DataFrame, strategy: str) -> int:
    return int(group[group["strategy"] == strategy]["num_replicas"].min())
