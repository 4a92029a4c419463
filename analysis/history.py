"""A case's throughput across studies, from the results database (`bench history trend`): one
point per study (the median of its runs, their 95% interval as a band), and a marked line where
the code or a framework changed between studies (git sha; TensorFlow, Keras, Horovod, Ray)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from analysis import plots, scaling
from bench.core.errors import UsageError
from bench.core.history import FRAMEWORKS

# what a change of marks on the trend, as the database names it
VERSIONS = ("git_sha", *FRAMEWORKS)


def parse_case(text: str) -> dict[str, Any]:
    """'mlp/mwms/2' (workload/strategy/replicas) or 'mlp/mwms' (every replica count)."""
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts) or (len(parts) == 3 and not parts[2].isdigit()):
        raise UsageError(f"case {text!r}: expected WORKLOAD/STRATEGY[/REPLICAS], e.g. mlp/mwms/2")
    case = {"workload": parts[0], "strategy": parts[1]}
    if len(parts) == 3:
        case["replicas"] = int(parts[2])
    return case


def points(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per (workload, strategy, replicas, study) of ok runs: when the study ran (its
    first run), the median throughput and its 95% interval, the runs, git sha and framework
    versions, and what of those changed since the case's previous study."""
    frame = pd.DataFrame(list(rows))
    columns = ["workload", "strategy", "replicas", "study", "started_at", "runs", "samples_per_s", "ci_low",
               "ci_high", *VERSIONS, "changed"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    frame = frame[(frame["status"] == "ok") & frame["samples_per_s"].notna()]
    out = []
    for (workload, strategy, replicas, study), group in frame.groupby(["workload", "strategy", "replicas", "study"]):
        low, high = scaling.confidence_interval(group["samples_per_s"].to_numpy())
        out.append({"workload": workload, "strategy": strategy, "replicas": int(replicas), "study": study,
                    "started_at": group["started_at"].min(), "runs": len(group),
                    "samples_per_s": float(np.median(group["samples_per_s"])), "ci_low": low, "ci_high": high,
                    **{name: _most_common(group[name]) if name in group else None for name in VERSIONS}})
    table = pd.DataFrame(out, columns=columns[:-1]).sort_values(["workload", "strategy", "replicas", "started_at"])
    before = table.groupby(["workload", "strategy", "replicas"])[list(VERSIONS)].shift()
    table["changed"] = [_changes(b, r) for (_, b), (_, r) in zip(before.iterrows(), table.iterrows())]
    return table.reset_index(drop=True)


def _changes(before: pd.Series, now: pd.Series) -> str:
    """'git aaaaaaaa -> bbbbbbbb, horovod 0.28.1 -> 0.28.2': only what both studies name."""
    said = []
    for name in VERSIONS:
        old, new = before[name], now[name]
        if isinstance(old, str) and isinstance(new, str) and old != new:
            label, old, new = ("git", old[:8], new[:8]) if name == "git_sha" else (name, old, new)
            said.append(f"{label} {old} -> {new}")
    return ", ".join(said)


def _most_common(values: pd.Series) -> Any:
    counts = values.dropna().value_counts()
    return counts.index[0] if len(counts) else None


def text(table: pd.DataFrame) -> str:
    if table.empty:
        return "(no ok runs of these cases in the database)"
    lines = []
    for _, r in table.iterrows():
        lines.append(f"{r['workload']}/{r['strategy']}/{r['replicas']}  {str(r['started_at'])[:16].replace('T', ' ')}  "
                     f"{r['study']:<20} {r['samples_per_s']:>12,.1f} [{r['ci_low']:,.1f}, {r['ci_high']:,.1f}]  "
                     f"{r['runs']} run(s)" + (f"  changed: {r['changed']}" if r["changed"] else ""))
    return "\n".join(lines)


def plot(table: pd.DataFrame, out: Path) -> Path:
    """Throughput over time per case, its interval as a band; a dotted vertical line where the
    git sha or a framework version changed, labelled."""
    plt = plots._pyplot()
    figure, axis = plt.subplots(figsize=(7.2, 3.8))
    for (workload, strategy, replicas), rows in table.groupby(["workload", "strategy", "replicas"]):
        when = pd.to_datetime(rows["started_at"], utc=True)
        line = axis.plot(when, rows["samples_per_s"], marker="o", label=f"{workload}/{strategy}/{replicas}")[0]
        axis.fill_between(when, rows["ci_low"], rows["ci_high"], color=line.get_color(), alpha=0.2)
        for moment, change in zip(when, rows["changed"]):
            if change:
                axis.axvline(moment, linestyle=":", color=line.get_color())
                axis.annotate(change, (moment, axis.get_ylim()[1]), rotation=90, fontsize="x-small",
                              va="top", ha="right", color=line.get_color())
    axis.set(xlabel="study (first run)", ylabel="samples/s (total)",
             title="throughput across studies (band: 95% interval of the median; dotted: code or a framework changed)")
    axis.title.set_fontsize("small")
    figure.autofmt_xdate()
    plots._legend(axis)
    return plots._save(figure, Path(out))
