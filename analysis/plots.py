"""The report's figures (matplotlib, PNG). Each function returns the paths it wrote."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

STEP_RUNS_PER_CASE = 3      # step-time distributions read steps.csv of at most this many runs per case
GPU_RUNS = 4                # utilisation traces drawn


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _legend(axis) -> None:
    """Beside the axes, never over the data."""
    axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    _pyplot().close(figure)
    return path


def throughput(table: pd.DataFrame, prediction: pd.DataFrame, out: Path) -> list[Path]:
    """Throughput vs GPUs per strategy with 95% intervals, the ideal line and, where a
    prediction exists, the ring-allreduce model without overlap (dashed)."""
    plt, paths = _pyplot(), []
    for (workload, scaling), group in table.groupby(["workload", "scaling"]):
        figure, axis = plt.subplots(figsize=(6.4, 3.6))
        for strategy, rows in group.groupby("strategy"):
            rows = rows.sort_values("num_replicas")
            line = axis.errorbar(rows["num_replicas"], rows["samples_per_s"],
                                 yerr=[rows["samples_per_s"] - rows["ci_low"], rows["ci_high"] - rows["samples_per_s"]],
                                 marker="o", capsize=3, label=strategy)
            base = rows.iloc[0]
            axis.plot(rows["num_replicas"], base["samples_per_s"] * rows["num_replicas"] / base["num_replicas"],
                      linestyle=":", color="grey")
            if not prediction.empty:
                model = prediction[(prediction.workload == workload) & (prediction.scaling == scaling) &
                                   (prediction.strategy == strategy) & (prediction.overlap == "none") &
                                   (prediction.num_replicas <= rows["num_replicas"].max())]
                if not model.empty:
                    axis.plot(model["num_replicas"], model["samples_per_s"], linestyle="--",
                              color=line[0].get_color(), alpha=0.6)
        axis.set_xticks(sorted(group["num_replicas"].unique()))
        axis.set(xlabel="replicas", ylabel="samples/s (total)",
                 title=f"{workload} ({scaling}): throughput\n(dotted: ideal, dashed: model)")
        _legend(axis)
        paths.append(_save(figure, out / f"throughput-{workload}-{scaling}.png"))
    return paths


def efficiency(table: pd.DataFrame, out: Path) -> list[Path]:
    plt, paths = _pyplot(), []
    for (workload, scaling), group in table.groupby(["workload", "scaling"]):
        figure, axis = plt.subplots(figsize=(6.4, 3.6))
        for strategy, rows in group.groupby("strategy"):
            rows = rows.sort_values("num_replicas")
            axis.plot(rows["num_replicas"], rows["efficiency"], marker="o", label=strategy)
        axis.axhline(1.0, color="grey", linestyle=":")
        axis.set_xticks(sorted(group["num_replicas"].unique()))
        axis.set(xlabel="replicas", ylabel="efficiency", ylim=(0, None),
                 title=f"{workload} ({scaling}): scaling efficiency\n(vs the strategy's run at the smallest count)")
        _legend(axis)
        paths.append(_save(figure, out / f"efficiency-{workload}-{scaling}.png"))
    return paths


def prediction(prediction: pd.DataFrame, table: pd.DataFrame, out: Path) -> list[Path]:
    plt, paths = _pyplot(), []
    for (workload, scaling), group in prediction.groupby(["workload", "scaling"]):
        figure, axis = plt.subplots(figsize=(7.5, 3.6))
        for strategy, rows in group.groupby("strategy"):
            none = rows[rows.overlap == "none"].sort_values("num_replicas")
            full = rows[rows.overlap == "full"].sort_values("num_replicas")
            line, = axis.plot(none["num_replicas"], none["efficiency"], linestyle="--",
                              label=f"{strategy} model, no overlap")
            axis.plot(full["num_replicas"], full["efficiency"], linestyle=":", color=line.get_color(),
                      label=f"{strategy} model, full overlap")
            measured = table[(table.workload == workload) & (table.scaling == scaling) & (table.strategy == strategy)]
            axis.plot(measured["num_replicas"], measured["efficiency"], "o", color=line.get_color(),
                      label=f"{strategy} measured")
        axis.set_xscale("log", base=2)
        counts = sorted(group["num_replicas"].unique())
        axis.set_xticks(counts, [str(int(c)) for c in counts])
        axis.set(xlabel="replicas", ylabel="efficiency", ylim=(0, 1.05),
                 title=f"{workload} ({scaling}): ring-allreduce model vs measured")
        _legend(axis)
        paths.append(_save(figure, out / f"prediction-{workload}-{scaling}.png"))
    return paths


def step_times(runs: pd.DataFrame, out: Path) -> list[Path]:
    """Box plots of the timed steps of a few runs per (strategy, GPUs), from their steps.csv."""
    plt, paths = _pyplot(), []
    for workload, group in runs.groupby("workload"):
        labels, data = [], []
        for (strategy, gpus), rows in group.groupby(["strategy", "num_replicas"]):
            times = []
            for path in rows["path"].head(STEP_RUNS_PER_CASE):
                times += _step_seconds(Path(path).with_name("steps.csv"))
            if times:
                labels.append(f"{strategy}\nx{int(gpus)}")
                data.append([1e3 * t for t in times])
        if not data:
            continue
        figure, axis = plt.subplots(figsize=(min(12, max(6.4, 0.8 * len(data))), 3.6))
        axis.boxplot(data, showfliers=True)
        axis.set_yscale("log")          # one slow step (a retrace, a GC pause) must not flatten the boxes
        axis.set_xticks(range(1, len(labels) + 1), labels, fontsize="small")
        axis.set(ylabel="step time (ms)", title=f"{workload}: step-time distribution (warm-up excluded)")
        paths.append(_save(figure, out / f"steps-{workload}.png"))
    return paths


def _step_seconds(path: Path) -> list[float]:
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return [float(row["seconds"]) for row in csv.DictReader(handle) if row.get("warmup") == "0"]


def gpu_utilisation(runs: pd.DataFrame, out: Path) -> list[Path]:
    traces = []
    for _, run in runs.iterrows():
        path = Path(run["path"]).with_name("gpu.csv")
        if path.is_file():
            traces.append((f"{run['workload']} {run['strategy']} x{int(run['num_replicas'])}", pd.read_csv(path)))
        if len(traces) == GPU_RUNS:
            break
    if not traces:
        return []
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4))
    for label, frame in traces:       # columns: bench.run.sampler.ResourceSampler.GPU_COLUMNS
        for gpu, rows in frame.groupby("gpu"):
            axis.plot(rows["t_s"] - frame["t_s"].min(), rows["util_pct"], label=f"{label} GPU {gpu}")
    axis.set(xlabel="time (s)", ylabel="GPU utilisation (%)", ylim=(0, 100), title="GPU utilisation over time")
    _legend(axis)
    return [_save(figure, out / "gpu-utilisation.png")]


def pbt_trials(studies: list, trials: dict, out: Path) -> list[Path]:
    """Per PBT study: every trial's score per iteration, exploits marked where they happened."""
    plt, paths = _pyplot(), []
    for study in studies:
        metric = study.extra.get("metric", "mean_accuracy")
        figure, axis = plt.subplots(figsize=(6, 4))
        for run_id in study.extra.get("trial_records", []):
            trial = trials.get(run_id)
            if trial is None or not trial.history.get(metric):
                continue
            scores = trial.history[metric]
            line, = axis.plot(range(1, len(scores) + 1), scores, label=trial.extra.get("trial_id", run_id))
            for event in trial.extra.get("events", []):
                if event["type"] == "exploit" and 0 < event["iteration"] <= len(scores):
                    axis.plot(event["iteration"], scores[event["iteration"] - 1], "x", color=line.get_color(),
                              markersize=9)
        axis.set(xlabel="training iteration", ylabel=metric,
                 title=f"{study.workload} PBT: trials (x: exploit of another trial)")
        _legend(axis)
        paths.append(_save(figure, out / f"pbt-{study.run_id}.png"))
    return paths


def what_if(prediction: pd.DataFrame, table: pd.DataFrame, profile: str, out: Path) -> list[Path]:
    """Throughput vs GPUs per strategy: measured (markers, solid), the model out to the what-if
    counts (dashed) inside its validated error (a band)."""
    plt, paths = _pyplot(), []
    for (workload, scaling), group in prediction.groupby(["workload", "scaling"]):
        figure, axis = plt.subplots(figsize=(7.0, 3.8))
        for strategy, rows in group.groupby("strategy"):
            rows = rows.sort_values("gpus")
            measured = table[(table.workload == workload) & (table.scaling == scaling)
                             & (table.strategy == strategy)].sort_values("num_replicas")
            line, = axis.plot(measured["num_replicas"], measured["samples_per_s"], marker="o", label=f"{strategy}")
            if len(rows) > 1:
                axis.plot(rows["gpus"], rows["samples_per_s"], linestyle="--", color=line.get_color())
                axis.fill_between(rows["gpus"], rows["low"], rows["high"], color=line.get_color(), alpha=0.15)
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        counts = sorted(set(group["gpus"]) | set(table[table.workload == workload]["num_replicas"]))
        axis.set_xticks(counts, [str(int(c)) for c in counts])
        axis.set(xlabel="GPUs", ylabel="samples/s (total)",
                 title=f"{workload} ({scaling}): what-if on {profile}\n(solid: measured; dashed: model, band: its error)")
        _legend(axis)
        paths.append(_save(figure, out / f"whatif-{workload}-{scaling}.png"))
    return paths
