"""Aggregation over repeats, speedup and scaling efficiency (pandas, no TensorFlow).

Throughput is the measure: with a fixed global batch (strong scaling) the throughput ratio
is the speedup in time to process the data; with a fixed per-GPU batch (weak scaling) it is
the scaled speedup. Efficiency = speedup / (GPUs / baseline GPUs)."""

from __future__ import annotations

import numpy as np
import pandas as pd

KEYS = ["workload", "scaling", "strategy", "num_replicas"]


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
    ok = frame[(frame["status"] == "ok") & frame["samples_per_s"].notna()]
    rows = []
    for key, group in ok.groupby(KEYS, sort=True):
        throughput = group["samples_per_s"].to_numpy(dtype=float)
        low, high = confidence_interval(throughput)
        key = (*key[:-1], int(key[-1]))         # num_replicas: float where corrupt rows left NaN
        gpus = key[-1]
        energy = (group["energy_j"] / group["samples_trained"]).dropna()
        rows.append({**dict(zip(KEYS, key)), "runs": len(group),
                     "global_batch_size": int(group["global_batch_size"].median()),
                     "per_replica_batch_size": int(group["per_replica_batch_size"].median()),
                     "samples_per_s": float(np.median(throughput)), "ci_low": low, "ci_high": high,
                     "samples_per_s_per_gpu": float(np.median(throughput)) / gpus,
                     "median_step_s": float(group["median_step_s"].median()),
                     "p90_step_s": float(group["p90_step_s"].median()),
                     "ranks_per_node": group["ranks_per_node"].median(),
                     "gpu_util_pct": group["gpu_util_pct"].median(),
                     "energy_per_sample_j": float(energy.median()) if len(energy) else np.nan,
                     "parameters": group["parameters"].median()})
    return pd.DataFrame(rows, columns=[*KEYS, "runs", "global_batch_size", "per_replica_batch_size",
                                       "samples_per_s", "ci_low", "ci_high", "samples_per_s_per_gpu",
                                       "median_step_s", "p90_step_s", "ranks_per_node", "gpu_util_pct", "energy_per_sample_j", "parameters"])


def speedup(table: pd.DataFrame) -> pd.DataFrame:
    """Adds speedup and efficiency relative to (a) the same strategy's smallest GPU count and
    (b) the best run of any strategy at the smallest GPU count of the workload."""
    out = table.copy()
    for column in ("baseline", "speedup", "efficiency", "speedup_vs_best", "efficiency_vs_best"):
        out[column] = np.nan if column != "baseline" else ""
    for _, group in out.groupby(["workload", "scaling"]):
        smallest = group["num_replicas"].min()
        best = group[group["num_replicas"] == smallest].sort_values("samples_per_s").iloc[-1]
        for strategy, rows in group.groupby("strategy"):
            base = rows.sort_values("num_replicas").iloc[0]
            for index, row in rows.iterrows():
                scale = row["num_replicas"] / base["num_replicas"]
                out.loc[index, "baseline"] = f"{strategy} x{int(base['num_replicas'])}"
                out.loc[index, "speedup"] = row["samples_per_s"] / base["samples_per_s"]
                out.loc[index, "efficiency"] = out.loc[index, "speedup"] / scale
                best_scale = row["num_replicas"] / smallest
                out.loc[index, "speedup_vs_best"] = row["samples_per_s"] / best["samples_per_s"]
                out.loc[index, "efficiency_vs_best"] = out.loc[index, "speedup_vs_best"] / best_scale
    return out
