"""`bench report RESULTS... -o DIR`: Markdown and HTML reports with the same content, CSV
tables and PNG plots. The report is a list of blocks (headings, paragraphs, tables, lists,
images) rendered twice, so that the two formats cannot drift apart."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis import plots, predict, scaling, summary
from bench.errors import UsageError

COLUMNS = ["workload", "scaling", "strategy", "num_replicas", "runs", "samples_per_s", "ci_low", "ci_high",
           "samples_per_s_per_gpu", "speedup", "efficiency", "baseline", "speedup_vs_best", "efficiency_vs_best",
           "gpu_util_pct", "energy_per_sample_j"]


@dataclass
class Options:
    bandwidth_GBps: float | None = None        # intra-node bus bandwidth; default: `bench comm` records
    inter_node_GBps: float | None = None
    gpus_per_node: int = 2


@dataclass
class Report:
    markdown: Path
    html: Path
    summary: str        # the report's opening (explanation and scaling table), as Markdown


@dataclass
class Block:
    kind: str           # h2 | p | table | list | image
    content: object


def build(results: list[str], out: str | Path, options: Options | None = None) -> Report:
    options = options or Options()
    records, corrupt = summary.read_all(results)
    frame = summary.frame_of(records, corrupt)
    if frame.empty:
        raise UsageError(f"no records under {', '.join(map(str, results))}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = frame[frame["kind"].isin(["run"]) | frame["kind"].isna()]
    table = scaling.speedup(scaling.aggregate(runs))
    table.reindex(columns=COLUMNS).to_csv(out / "scaling.csv", index=False)

    blocks = [Block("p", "Throughput is the median over repeats with a 95% bootstrap interval. Speedup and "
                         "efficiency are relative to the same strategy's smallest GPU count (column `baseline`) "
                         "and to the best run of any strategy at the workload's smallest GPU count (`_vs_best`). "
                         "Strong scaling keeps the global batch, weak scaling the per-GPU batch. Energy per "
                         "sample is the GPUs' energy (NVML power samples) over the samples trained.")]
    blocks += [Block("table", _fmt(table)) if not table.empty else Block("p", "(no successful runs)")]
    summary_text = _markdown(blocks)
    prediction = _prediction_blocks(table, [r for r, _ in records], options, out, blocks)
    images = plots.throughput(table, prediction, out) + plots.efficiency(table, out) if not table.empty else []
    blocks += [Block("image", p) for p in images]
    blocks += _distribution_blocks(runs[runs["status"] == "ok"], out)
    blocks += _tuning_blocks([r for r, _ in records], out)
    blocks += _problem_blocks(frame)
    blocks += _provenance_blocks(frame)
    (out / "report.md").write_text(_markdown(blocks))
    (out / "report.html").write_text(_html(blocks))
    return Report(out / "report.md", out / "report.html", summary_text)


def _fmt(table: pd.DataFrame) -> pd.DataFrame:
    shown = table.reindex(columns=COLUMNS).copy()
    shown["samples_per_s"] = [f"{m:,.1f} [{lo:,.1f}, {hi:,.1f}]" for m, lo, hi in
                              zip(table["samples_per_s"], table["ci_low"], table["ci_high"])]
    shown["samples_per_s_per_gpu"] = table["samples_per_s_per_gpu"].map(lambda v: f"{v:,.1f}")
    for column in ("speedup", "efficiency", "speedup_vs_best", "efficiency_vs_best"):
        shown[column] = table[column].map(lambda v: f"{v:.2f}")
    shown["gpu_util_pct"] = table["gpu_util_pct"].map(lambda v: "-" if pd.isna(v) else f"{v:.0f}%")
    shown["energy_per_sample_j"] = table["energy_per_sample_j"].map(lambda v: "-" if pd.isna(v) else f"{v:.3g}")
    return shown.drop(columns=["ci_low", "ci_high"]).rename(columns={
        "num_replicas": "GPUs", "samples_per_s": "samples/s median [95% CI]", "samples_per_s_per_gpu": "per GPU",
        "gpu_util_pct": "GPU util", "energy_per_sample_j": "J/sample"})


def _prediction_blocks(table, records, options: Options, out: Path, blocks: list[Block]) -> pd.DataFrame:
    blocks.append(Block("h2", "Scaling prediction (ring allreduce)"))
    if options.bandwidth_GBps:
        bandwidth, source = options.bandwidth_GBps * 1e9, f"given: {options.bandwidth_GBps:g} GB/s"
    else:
        bandwidth, source = predict.bandwidth_from_comm(records)
    if table.empty or bandwidth is None:
        blocks.append(Block("p", "No prediction: it needs successful runs and a bus bandwidth "
                                 "(a `bench comm` record in the results, or `--bandwidth GBps`)."))
        return pd.DataFrame()
    inter = options.inter_node_GBps * 1e9 if options.inter_node_GBps else None
    model = predict.predict(table, bandwidth, inter, options.gpus_per_node)
    if model.empty:
        blocks.append(Block("p", "No prediction: the records carry no parameter counts."))
        return model
    joined = predict.with_measured(model, table)
    joined.to_csv(out / "prediction.csv", index=False)
    inter_text = f"{options.inter_node_GBps:g} GB/s" if inter else "the same"
    blocks.append(Block("p", f"Bus bandwidth inside a node: {source}; between nodes: {inter_text}; "
                             f"{options.gpus_per_node} GPUs per node. "
                             "Step time at N GPUs = compute + 2(N-1)/N x gradient bytes / bandwidth (no overlap), "
                             "or the larger of the two (full overlap). Assumptions:"))
    blocks.append(Block("list", predict.ASSUMPTIONS))
    shown = joined[joined["overlap"] == "none"][["workload", "scaling", "strategy", "num_replicas", "compute_s",
                                                 "allreduce_s", "samples_per_s", "efficiency",
                                                 "measured_samples_per_s", "measured_over_predicted"]].copy()
    for column in ("compute_s", "allreduce_s"):
        shown[column] = shown[column].map(lambda v: f"{1e3 * v:.2f} ms")
    for column in ("samples_per_s", "measured_samples_per_s"):
        shown[column] = shown[column].map(lambda v: "-" if pd.isna(v) else f"{v:,.0f}")
    for column in ("efficiency", "measured_over_predicted"):
        shown[column] = shown[column].map(lambda v: "-" if pd.isna(v) else f"{v:.2f}")
    blocks.append(Block("table", shown.rename(columns={"num_replicas": "GPUs", "samples_per_s": "predicted samples/s",
                                                       "measured_samples_per_s": "measured samples/s",
                                                       "measured_over_predicted": "measured/predicted"})))
    blocks += [Block("image", p) for p in plots.prediction(model, table, out)]
    return model


def _distribution_blocks(ok_runs: pd.DataFrame, out: Path) -> list[Block]:
    blocks = [Block("h2", "Step times and GPU utilisation")]
    images = plots.step_times(ok_runs, out)
    gpu = plots.gpu_utilisation(ok_runs, out)
    if not gpu:
        blocks.append(Block("p", "No GPU utilisation samples in these runs (no NVML GPU where they ran; "
                                 "each record says why under `gpu.reason`)."))
    return blocks + [Block("image", p) for p in images + gpu]


def _tuning_blocks(records, out: Path) -> list[Block]:
    studies = [r for r in records if r.kind == "study"]
    if not studies:
        return []
    trials = {r.run_id: r for r in records if r.kind == "trial"}
    rows = [{"study": s.run_id, "workload": s.workload, "scheduler": s.extra.get("scheduler"), "status": s.status,
             "trials": s.metrics.get("trials"), "failed": s.metrics.get("trials_failed"),
             "perturbations": s.metrics.get("perturbations"), "metric": s.extra.get("metric"),
             "best": s.metrics.get(f"best_{s.extra.get('metric')}"),
             "best config": _config_text(s.hyperparameters, s.extra.get("space")),
             "wall s": round(s.timing.get("wall_s", 0), 1)} for s in studies]
    images = plots.pbt_trials([s for s in studies if s.extra.get("scheduler") == "pbt"], trials, out)
    return [Block("h2", "Tuning studies (Ray Tune)"), Block("table", pd.DataFrame(rows))] + \
        [Block("image", p) for p in images]


def _config_text(hyperparameters: dict, tuned: dict | None) -> str:
    """The tuned hyperparameters of a configuration (all of them when the space is unknown)."""
    keys = sorted(tuned) if tuned else sorted(hyperparameters)
    return ", ".join(f"{k}={hyperparameters[k]:.4g}" if isinstance(hyperparameters[k], float)
                     else f"{k}={hyperparameters[k]}" for k in keys if k in hyperparameters)


def _problem_blocks(frame: pd.DataFrame) -> list[Block]:
    bad = frame[frame["status"] != "ok"]
    untimed = frame[(frame["status"] == "ok") & (frame["kind"] == "run") & frame["samples_per_s"].isna()]
    items = [f"{r['status']}: `{r['path']}`: {r['error']}" for _, r in bad.iterrows()]
    items += [f"ok, no timed steps (fewer steps than --warmup-steps): `{r['path']}`" for _, r in untimed.iterrows()]
    return [Block("h2", "Runs that did not succeed or were not timed"), Block("list", items)] if items else []


def _provenance_blocks(frame: pd.DataFrame) -> list[Block]:
    readable = frame[frame["status"] != "corrupt"]

    def distinct(column: str, limit: int = 12) -> str:
        values = sorted({str(v) for v in readable[column].dropna()})
        shown = ", ".join(values[:limit]) + (f" and {len(values) - limit} more" if len(values) > limit else "")
        return f"{len(values)}: {shown}" if values else "none recorded"
    items = [f"records: {len(frame)} ({', '.join(f'{k} {v}' for k, v in readable['kind'].value_counts().items())})",
             f"TensorFlow versions: {distinct('tensorflow')}", f"hosts: {distinct('hostname')}",
             f"GPU models: {distinct('gpu_models')}", f"Slurm jobs: {distinct('slurm_job_id')}",
             f"git commits: {distinct('git_sha')}"]
    return [Block("h2", "Provenance"), Block("list", items)]


def _markdown(blocks: list[Block]) -> str:
    lines = ["# Performance report", ""]
    for block in blocks:
        if block.kind == "h2":
            lines += [f"## {block.content}", ""]
        elif block.kind == "p":
            lines += [str(block.content), ""]
        elif block.kind == "table":
            lines += [block.content.to_markdown(index=False), ""]
        elif block.kind == "list":
            lines += [f"- {item}" for item in block.content] + [""]
        elif block.kind == "image":
            lines += [f"![{block.content.stem}]({block.content.name})", ""]
    return "\n".join(lines)


def _html(blocks: list[Block]) -> str:
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>Performance report</title>"
             "<style>body{font-family:sans-serif;max-width:80em;margin:auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 6px}img{max-width:100%}</style></head><body>",
             "<h1>Performance report</h1>"]
    for block in blocks:
        if block.kind == "h2":
            parts.append(f"<h2>{html.escape(str(block.content))}</h2>")
        elif block.kind == "p":
            parts.append(f"<p>{html.escape(str(block.content))}</p>")
        elif block.kind == "table":
            parts.append(block.content.to_html(index=False, escape=True))
        elif block.kind == "list":
            parts.append("<ul>" + "".join(f"<li>{html.escape(str(i))}</li>" for i in block.content) + "</ul>")
        elif block.kind == "image":
            data = base64.b64encode(block.content.read_bytes()).decode()
            parts.append(f'<img alt="{html.escape(block.content.stem)}" src="data:image/png;base64,{data}">')
    return "".join(parts) + "</body></html>"
