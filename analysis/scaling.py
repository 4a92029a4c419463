"""Aggregation over repeats, speedup and scaling efficiency (pandas, no TensorFlow).

Throughput is the measure: with a fixed global batch (strong scaling) the throughput ratio
is the speedup in time to process the data; with a fixed per-GPU batch (weak scaling) it is
the scaled speedup. Efficiency = speedup / (GPUs / baseline GPUs)."""

from __future__ import annotations

import numpy as np
import pandas as pd

KEYS = ["workload", "scaling", "strategy", "num_replicas"]
# What changes the work a run does besides its strategy and numerics (already in the strategy's
# label): runs of one workload that differ in any of these are separate series, named by it
WORK = {"data_source": "data", "jit": "jit", "overrides": "set", "batch": "batch"}


def cases(ok: pd.DataFrame) -> pd.DataFrame:
    """`ok` with like runs under one label: `strategy` gains what differs between the workload's
    runs (e.g. "mwms data generated", "horovod 2/node"); `series` is the label without the
    shape, whose 1-replica run is the baseline of the shaped series."""
    out = ok.copy()
    out["batch"] = np.where(out["scaling"] == "weak", out["per_replica_batch_size"], out["global_batch_size"])
    for column in WORK:
        if column not in out:
            out[column] = ""
    out["per_node"] = (out["num_replicas"] // out["nodes"].fillna(1).clip(lower=1)).fillna(1).astype(int)
    labels = out["strategy"].astype(str)
    for _, group in out.groupby(["workload", "scaling"]):
        for column, name in WORK.items():
            values = group[column].fillna("").astype(str)
            if values.nunique() > 1:
                labels[group.index] = labels[group.index] + values.map(
                    lambda v, name=name: f" {name} {v}" if v else "")
    out["series"] = labels
    shaped = out.groupby(["workload", "scaling", "series", "num_replicas"])["per_node"].transform("nunique") > 1
    shaped = shaped.groupby([out["workload"], out["scaling"], out["series"]]).transform("any")
    several = shaped & (out["num_replicas"] > 1)
    out["strategy"] = labels.where(~several, labels + " " + out["per_node"].astype(str) + "/node")
    return out


def confidence_interval(values: np.ndarray, level: float = 0.95, resamples: int = 2000,
                        seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval of the median (deterministic; a single value gives a point)."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return float(values[0]), float(values[0])
    rng = np.random.default_rng(seed)
    medians = np.median(rng.choice(values, size=(resamples, len(values)), replace=True), axis=1)
    tail = (1 - level) / 2 * 100
    return float(np.percentile(medians, tail)), float(np.percentile(medians, 100 - tail))


def aggregate(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (workload, strategy, GPUs): runs, median throughput and its 95% interval,
    per-GPU throughput, median step time. Only records with status ok."""
    ok = cases(frame[(frame["status"] == "ok") & frame["samples_per_s"].notna()])
    rows = []
    for key, group in ok.groupby(KEYS, sort=True):
        throughput = group["samples_per_s"].to_numpy(dtype=float)
        low, high = confidence_interval(throughput)
        key = (*key[:-1], int(key[-1]))         # num_replicas: float where corrupt rows left NaN
        gpus = key[-1]
        energy = (group["energy_j"] / group["samples_trained"]).dropna()
        rows.append({**dict(zip(KEYS, key)), "series": group["series"].iloc[0], "runs": len(group),
                     "global_batch_size": int(group["global_batch_size"].median()),
                     "per_replica_batch_size": int(group["per_replica_batch_size"].median()),
                     "samples_per_s": float(np.median(throughput)), "ci_low": low, "ci_high": high,
                     "samples_per_s_per_gpu": float(np.median(throughput)) / gpus,
                     "median_step_s": float(group["median_step_s"].median()),
                     "p90_step_s": float(group["p90_step_s"].median()),
                     "ranks_per_node": group["ranks_per_node"].median(),
                     "gpu_util_pct": group["gpu_util_pct"].median(),
                     "shared_runs": int(group["shared_cores"].eq(True).sum()),
                     "energy_per_sample_j": float(energy.median()) if len(energy) else np.nan,
                     "parameters": group["parameters"].median()})
    return pd.DataFrame(rows, columns=[*KEYS, "series", "runs", "global_batch_size", "per_replica_batch_size",
                                       "samples_per_s", "ci_low", "ci_high", "samples_per_s_per_gpu",
                                       "median_step_s", "p90_step_s", "ranks_per_node", "gpu_util_pct", "shared_runs",
                                       "energy_per_sample_j", "parameters"])


def speedup(table: pd.DataFrame) -> pd.DataFrame:
    """Adds speedup and efficiency relative to (a) the strategy's run at the workload's smallest
    count (a shaped series, e.g. "mwms 2/node": its series' run there; without one, the best run
    there, and `baseline` says so) and (b) the best run of any strategy at that count."""
    out = table.copy()
    for column in ("baseline", "speedup", "efficiency", "speedup_vs_best", "efficiency_vs_best"):
        out[column] = np.nan if column != "baseline" else ""
    for _, group in out.groupby(["workload", "scaling"]):
        smallest = group["num_replicas"].min()
        at_smallest = group[group["num_replicas"] == smallest]
        best = at_smallest.sort_values("samples_per_s").iloc[-1]
        for strategy, rows in group.groupby("strategy"):
            base, named = _baseline(rows, at_smallest, best, smallest)
            for index, row in rows.iterrows():
                scale = row["num_replicas"] / base["num_replicas"]
                out.loc[index, "baseline"] = named
                out.loc[index, "speedup"] = row["samples_per_s"] / base["samples_per_s"]
                out.loc[index, "efficiency"] = out.loc[index, "speedup"] / scale
                best_scale = row["num_replicas"] / smallest
                out.loc[index, "speedup_vs_best"] = row["samples_per_s"] / best["samples_per_s"]
                out.loc[index, "efficiency_vs_best"] = out.loc[index, "speedup_vs_best"] / best_scale
    return out


def _baseline(rows: pd.DataFrame, at_smallest: pd.DataFrame, best: pd.Series, smallest: int) -> tuple[pd.Series, str]:
    """A series' baseline and its name in `baseline`: never the series' own larger count."""
    own = rows[rows["num_replicas"] == smallest]
    if len(own):
        return own.iloc[0], f"{own.iloc[0]['strategy']} x{int(smallest)}"
    series = rows["series"].iloc[0] if "series" in rows else None
    same = at_smallest[at_smallest["series"] == series] if series is not None and "series" in at_smallest else at_smallest[:0]
    if len(same):
        return same.iloc[0], f"{same.iloc[0]['strategy']} x{int(smallest)}"
    return best, f"best x{int(smallest)} ({best['strategy']}; no {rows['strategy'].iloc[0]} x{int(smallest)} run)"


# Why a figure may not be what it seems: the mark a cell carries, and the legend's words
FLAGS = {
    "one repeat": ("¹", "the median rests on one run: no interval"),
    "wide interval": ("±", "the 95% interval is wider than 10% of the median"),
    "super-linear": ("↑", "efficiency above 1.05: more than ideal, e.g. a baseline slowed by its own "
                          "input pipeline or memory, a per-replica batch that fits a cache, or a noisy baseline"),
    "shared cores": ("s", "other processes used the run's cores during it (host sampler): it measured their work too"),
}


def trust(table: pd.DataFrame) -> pd.DataFrame:
    """Adds `flags`: the FLAGS names that hold for each cell, joined by ", " ("" for none)."""
    out = table.copy()

    def flags(row: pd.Series) -> str:
        held = [row["runs"] == 1,
                row["runs"] > 1 and (row["ci_high"] - row["ci_low"]) > 0.10 * row["samples_per_s"],
                row.get("efficiency", 0) > 1.05,
                row.get("shared_runs", 0) > 0]
        return ", ".join(name for name, hold in zip(FLAGS, held) if hold)
    out["flags"] = out.apply(flags, axis=1) if len(out) else pd.Series(dtype=str)
    return out


def legend(flags) -> str:
    """"Marks: ..." for the FLAGS that appear in `flags` (cells' `flags` strings), "" for none."""
    held = {name for text in flags if isinstance(text, str) for name in text.split(", ")}
    shown = [name for name in FLAGS if name in held]
    return "Marks: " + "; ".join(f"{FLAGS[name][0]} {name}: {FLAGS[name][1]}" for name in shown) + "." if shown else ""


def marks(flags: str) -> str:
    """A cell's flags as their marks ("¹±")."""
    return "".join(FLAGS[name][0] for name in flags.split(", ") if name in FLAGS) if flags else ""
