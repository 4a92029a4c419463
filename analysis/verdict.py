"""The answer a study's reader comes for, per workload and scaling mode: which strategy is
fastest at each GPU count, how well each scales, as sentences and a strategy x count pivot
(pandas only)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from analysis.scaling import legend as scaling_legend, marks


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
    best: bool              # fastest at its count, or tied with the fastest (intervals overlap)
    marks: str = ""         # scaling.FLAGS' marks: why the figure may not be what it seems


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
    leaders = {c: set(_leaders(group[group["num_replicas"] == c])["strategy"]) for c in counts}
    rows = []
    for strategy, runs in group.groupby("strategy", sort=True):
        by_count = {int(r.num_replicas): r for r in runs.itertuples()}
        rows.append((strategy, [Cell(by_count[c].samples_per_s, by_count[c].efficiency, strategy in leaders[c],
                                     marks(getattr(by_count[c], "flags", ""))) if c in by_count else None
                                for c in counts]))
    note = (f"Cells: total samples/s of all replicas (median over repeats); below it, the scaling efficiency "
            f"against the strategy's run at the smallest count (without one, the best run there). Best per column marked "
            f"(a tie where 95% intervals overlap).")
    return Pivot(f"{workload}, {scaling_title(scaling)}", counts, rows, unit, note)


def sentences(group: pd.DataFrame, unit: Unit) -> list[str]:
    """One verdict per count: the fastest strategy, its throughput and efficiency, and every
    other strategy as a fraction of it."""
    lines = []
    for count in sorted(int(c) for c in group["num_replicas"].unique()):
        at = group[group["num_replicas"] == count].sort_values("samples_per_s", ascending=False)
        best, tied = at.iloc[0], _leaders(at)
        if len(tied) > 1:
            others = [f"{r['strategy']} {r['samples_per_s'] / best['samples_per_s']:.2f}x"
                      for _, r in at[~at.index.isin(tied.index)].iterrows()]
            lines.append(f"At {unit.count(count)}: {' and '.join(tied['strategy'])} tie "
                         f"({' and '.join(f'{v:,.0f}' for v in tied['samples_per_s'])} samples/s; their 95% intervals "
                         f"overlap)" + (f"; {', '.join(others)} of {best['strategy']}" if others else "") + ".")
            continue
        text = f"At {unit.count(count)}: {best['strategy']} fastest, {best['samples_per_s']:,.0f} samples/s"
        base = str(best.get("baseline", ""))
        if base.startswith("best "):        # no 1-replica run of its own (scaling.speedup)
            text += f", efficiency {best['efficiency']:.2f} of the best {base.split()[1][1:]}-{unit.one.split()[0]} run"
        elif count > _smallest(group, best["strategy"]) or base.split(" x")[0] != best["strategy"]:
            text += f", efficiency {best['efficiency']:.2f} of its {base.rsplit(' x', 1)[-1]}-{unit.one.split()[0]} run"
        others = [f"{r['strategy']} {r['samples_per_s'] / best['samples_per_s']:.2f}x" for _, r in at.iloc[1:].iterrows()]
        if others:
            text += "; " + ", ".join(others) + " of it"
        lines.append(text + ".")
    return lines


def _leaders(at: pd.DataFrame) -> pd.DataFrame:
    """The fastest row of one count and every row whose 95% interval overlaps its interval,
    fastest first: between them the runs cannot tell."""
    at = at.sort_values("samples_per_s", ascending=False)
    best = at.iloc[0]
    return at[(at["ci_high"] >= best["ci_low"]) & (at["ci_low"] <= best["ci_high"])]


def _smallest(group: pd.DataFrame, strategy: str) -> int:
    return int(group[group["strategy"] == strategy]["num_replicas"].min())


def legend(table: pd.DataFrame) -> str:
    """The marks that appear in `table`'s flags, each with what it means ("" when none)."""
    return scaling_legend(table["flags"] if "flags" in table else [])
