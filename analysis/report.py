"""`bench report RESULTS... -o DIR`: Markdown and HTML reports, CSV tables and plots."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

from analysis import scaling, summary
from bench.errors import UsageError

COLUMNS = ["workload", "strategy", "num_replicas", "runs", "samples_per_s", "ci_low", "ci_high",
           "samples_per_s_per_gpu", "speedup", "efficiency", "baseline", "speedup_vs_best", "efficiency_vs_best"]


def build(results: list[str], out: str | Path) -> Path:
    frame = summary.load(results)
    if frame.empty:
        raise UsageError(f"no records under {', '.join(map(str, results))}")
    runs = frame[frame["kind"].isin(["run"]) | frame["kind"].isna()]
    table = scaling.speedup(scaling.aggregate(runs))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table.reindex(columns=COLUMNS).to_csv(out / "scaling.csv", index=False)
    plots = _plots(table, out)
    problems = frame[frame["status"] != "ok"]
    markdown = _markdown(table, problems, plots)
    (out / "report.md").write_text(markdown)
    (out / "report.html").write_text(_html(table, problems, plots))
    return out / "report.md"


def _fmt(table: pd.DataFrame) -> pd.DataFrame:
    shown = table.reindex(columns=COLUMNS).copy()
    shown["samples_per_s"] = [f"{m:,.1f} [{lo:,.1f}, {hi:,.1f}]" for m, lo, hi in
                              zip(table["samples_per_s"], table["ci_low"], table["ci_high"])]
    for column in ("samples_per_s_per_gpu",):
        shown[column] = table[column].map(lambda v: f"{v:,.1f}")
    for column in ("speedup", "efficiency", "speedup_vs_best", "efficiency_vs_best"):
        shown[column] = table[column].map(lambda v: f"{v:.2f}")
    return shown.drop(columns=["ci_low", "ci_high"]).rename(columns={
        "num_replicas": "GPUs", "samples_per_s": "samples/s median [95% CI]", "samples_per_s_per_gpu": "per GPU"})


def _markdown(table: pd.DataFrame, problems: pd.DataFrame, plots: list[Path]) -> str:
    lines = ["# Performance report", "",
             "Throughput is the median over repeats with a 95% bootstrap interval. Speedup and "
             "efficiency are relative to the same strategy's smallest GPU count (column `baseline`) "
             "and to the best run of any strategy at the workload's smallest GPU count (`_vs_best`).", ""]
    lines.append(_fmt(table).to_markdown(index=False) if not table.empty else "(no successful runs)")
    lines += ["", *[f"![{p.stem}]({p.name})" for p in plots]]
    if not problems.empty:
        lines += ["", "## Runs that did not succeed", ""]
        lines += [f"- {row['status']}: `{row['path']}`: {row['error']}" for _, row in problems.iterrows()]
    return "\n".join(lines) + "\n"


def _html(table: pd.DataFrame, problems: pd.DataFrame, plots: list[Path]) -> str:
    images = "".join(f'<img alt="{p.stem}" src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">'
                     for p in plots)
    failed = "".join(f"<li>{html.escape(str(r['status']))}: <code>{html.escape(str(r['path']))}</code>: "
                     f"{html.escape(str(r['error']))}</li>" for _, r in problems.iterrows())
    body = _fmt(table).to_html(index=False, escape=True) if not table.empty else "<p>(no successful runs)</p>"
    return ("<!doctype html><html><head><meta charset='utf-8'><title>Performance report</title></head><body>"
            "<h1>Performance report</h1>" + body + images +
            (f"<h2>Runs that did not succeed</h2><ul>{failed}</ul>" if failed else "") + "</body></html>")


def _plots(table: pd.DataFrame, out: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    paths = []
    for workload, group in table.groupby("workload"):
        figure, axis = plt.subplots(figsize=(6, 4))
        for strategy, rows in group.groupby("strategy"):
            rows = rows.sort_values("num_replicas")
            axis.errorbar(rows["num_replicas"], rows["samples_per_s"],
                          yerr=[rows["samples_per_s"] - rows["ci_low"], rows["ci_high"] - rows["samples_per_s"]],
                          marker="o", capsize=3, label=strategy)
            base = rows.iloc[0]
            axis.plot(rows["num_replicas"], base["samples_per_s"] * rows["num_replicas"] / base["num_replicas"],
                      linestyle=":", color="grey")
        axis.set_xticks(sorted(group["num_replicas"].unique()))
        axis.set_xlabel("GPUs (replicas)")
        axis.set_ylabel("samples/s")
        axis.set_title(f"{workload}: throughput (dotted: ideal)")
        axis.legend()
        path = out / f"throughput-{workload}.png"
        figure.tight_layout()
        figure.savefig(path, dpi=100)
        plt.close(figure)
        paths.append(path)
    return paths
