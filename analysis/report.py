"""`bench report RESULTS... -o DIR`: Markdown and HTML reports with the same content, CSV
tables and PNG plots. The report is a list of blocks (headings, paragraphs, tables, lists,
images) rendered twice, so that the two formats cannot drift apart."""

from __future__ import annotations

import base64
import html
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis import plots, predict, scaling, summary, verdict
from bench.core.errors import UsageError
from jobs.slurm import outcome_line

COLUMNS = ["workload", "scaling", "strategy", "num_replicas", "runs", "samples_per_s", "ci_low", "ci_high",
           "samples_per_s_per_gpu", "speedup", "efficiency", "baseline", "speedup_vs_best", "efficiency_vs_best",
           "gpu_util_pct", "energy_per_sample_j", "flags"]


@dataclass
class Options:
    bandwidth_GBps: float | None = None        # intra-node bus bandwidth; default: `bench comm` records
    inter_node_GBps: float | None = None
    gpus_per_node: int | None = None           # replicas per node; default: from the runs that span nodes
    compare: list[str] | None = None           # results of another study: A/B columns against these
    tolerance: float = 0.05                    # --compare: a change beyond it with disjoint intervals is flagged
    profile: str | None = None                 # what-if: a cluster profile (name or path) ...
    what_if_gpus: list[int] | None = None      # ... and the GPU counts to predict there
    jobs: list[dict] | None = None             # the study's jobs and how each ended (jobs.slurm.collect's rows)


@dataclass
class Report:
    markdown: Path
    html: Path
    summary: str        # the report's first screen (verdicts and pivot tables), as Markdown
    unreadable: int = 0  # record files that could not be read (listed in the report)


@dataclass
class Block:
    kind: str           # h2 | h3 | p | table | list | image | pivot | details | group | grid
    content: object


def build(results: list[str], out: str | Path, options: Options | None = None) -> Report:
    options = options or Options()
    records, corrupt = summary.read_all(results)
    frame = summary.frame_of(records, corrupt)
    if not records:
        first = f" ({corrupt[0]['path']}: {corrupt[0]['error']})" if corrupt else ""
        raise UsageError(f"no readable records under {', '.join(map(str, results))}"
                         + (f": {len(corrupt)} could not be read{first}" if corrupt else ""))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = frame[frame["kind"].isin(["run"]) | frame["kind"].isna()]
    table = scaling.trust(scaling.speedup(scaling.aggregate(runs)))
    table.reindex(columns=COLUMNS).to_csv(out / "scaling.csv", index=False)

    history_blocks = _history_blocks(results, runs, table, out)
    blocks = _job_blocks(options.jobs or []) + _answer_blocks(table, frame, options.jobs or [])
    summary_text = _markdown(blocks)
    if options.compare:
        blocks += _comparison_blocks(results, options)
    prediction_blocks: list[Block] = []
    prediction = _prediction_blocks(table, [r for r, _ in records], runs, options, out, prediction_blocks)
    blocks += _plot_blocks(table, prediction, runs[runs["status"] == "ok"], out)
    blocks += history_blocks
    blocks += [Block("details", ("All measurements", _measurement_blocks(table))),
               Block("details", ("Scaling prediction (ring allreduce)", prediction_blocks))]
    if options.profile and options.what_if_gpus:
        blocks += _what_if_blocks(results, table, options, out)
    blocks += _tuning_blocks([r for r, _ in records], out)
    blocks += _problem_blocks(frame)
    blocks += _provenance_blocks(frame)
    (out / "report.md").write_text(_markdown(blocks))
    (out / "report.html").write_text(_html(blocks))
    return Report(out / "report.md", out / "report.html", summary_text, len(corrupt))


def _job_blocks(jobs: list[dict]) -> list[Block]:
    """Above the verdicts: per workload, how many of the study's jobs failed, and why (one line)."""
    lines = []
    for workload in sorted({job.get("workload", "?") for job in jobs}):
        mine = [job for job in jobs if job.get("workload", "?") == workload]
        lost = [job for job in mine if job["status"] != "ok"]
        if lost:
            whys = sorted({outcome_line(job) for job in lost}, key=lambda why: (": " not in why, why))  # told why first
            lines.append(f"{workload}: {len(lost)} of {len(mine)} jobs failed ({whys[0]}"
                         + (f"; and {len(whys) - 1} other reason(s)" if len(whys) > 1 else "") + ")")
    return [Block("h2", "Jobs that failed"), Block("list", lines)] if lines else []


def _answer_blocks(table: pd.DataFrame, frame: pd.DataFrame, jobs: list[dict] = ()) -> list[Block]:
    """The first screen: per workload and scaling mode, a verdict per count and the pivot; a
    workload whose every job failed gets its section saying so."""
    measured = set(table["workload"]) if not table.empty else set()
    lost = [Block("group", [Block("h2", workload), Block("p", f"No result: every one of its {count} jobs failed "
                                                               "(see \"Jobs that failed\").")])
            for workload, count in sorted(Counter(job.get("workload", "?") for job in jobs).items())
            if workload not in measured and all(j["status"] != "ok" for j in jobs if j.get("workload") == workload)]
    if table.empty:
        return lost + [Block("p", "No successful timed runs: see the problems below.")]
    answers = []
    for (workload, mode), group in table.groupby(["workload", "scaling"], sort=True):
        unit = verdict.unit_of(frame, workload)
        made = verdict.pivot(group, workload, mode, unit)
        answers.append(Block("group", [Block("h2", made.title), *_data_blocks(frame, workload),
                                       Block("list", verdict.sentences(group, unit)), Block("pivot", made)]))
    legend = verdict.legend(table)
    return [Block("grid", answers + lost)] + ([Block("p", legend)] if legend else [])


def _data_blocks(frame: pd.DataFrame, workload: str) -> list[Block]:
    """A workload whose runs did not read its real dataset says so, per workload."""
    sources = sorted({str(s) for s in frame[(frame["workload"] == workload) & (frame["status"] == "ok")]["data_source"].dropna()})
    made_up = [s for s in sources if s != "real"]
    if not made_up:
        return []
    return [Block("p", f"Data: {' and '.join(sources)}. Generated and synthetic data have the real data's format "
                       "(step times hold), not its content (accuracy is not the real task's).")]


def _measurement_blocks(table: pd.DataFrame) -> list[Block]:
    explanation = Block("p", "Throughput is the median over repeats with a 95% bootstrap interval. Speedup and "
                             "efficiency are relative to the strategy's run at the workload's smallest count, or where "
                             "it has none the best run there (`scaling.csv` names it in `baseline`); runs that differ "
                             "in what they compute (data, JIT, `set`, batch, ranks per node) are separate series, "
                             "named by what differs; `eff vs best` to the fastest strategy at the workload's smallest "
                             "count. Strong scaling keeps the global batch, weak scaling the per-replica batch. "
                             "Energy per sample is the GPUs' energy (NVML power samples) over the samples trained.")
    return [explanation, Block("table", _fmt(table)) if not table.empty else Block("p", "(no successful runs)")]


def _plot_blocks(table: pd.DataFrame, prediction: pd.DataFrame, ok_runs: pd.DataFrame, out: Path) -> list[Block]:
    """Per workload: throughput (ideal and model), efficiency, step-time distribution."""
    if table.empty:
        return []
    images = plots.throughput(table, prediction, out) + plots.efficiency(table, out) + plots.step_times(ok_runs, out)
    blocks = [Block("h2", "Plots")]
    for workload in sorted(table["workload"].unique()):
        modes = sorted(table[table["workload"] == workload]["scaling"].unique())
        names = [f"{kind}-{workload}-{mode}" for kind in ("throughput", "efficiency") for mode in modes]
        mine = [path for name in names + [f"steps-{workload}"] for path in images if path.stem == name]
        blocks += [Block("h3", workload)] + [Block("image", path) for path in mine]
    gpu = plots.gpu_utilisation(ok_runs, out)
    if gpu:
        return blocks + [Block("h3", "GPU utilisation")] + [Block("image", path) for path in gpu]
    return blocks + [Block("p", "No GPU utilisation samples in these runs (no NVML GPU where they ran; "
                                "each record says why under `gpu.reason`).")]


PREVIOUS = "last:5"      # the report's "against previous runs": the last five studies of the same cases


def _history_blocks(results: list[str], runs: pd.DataFrame, table: pd.DataFrame, out: Path) -> list[Block]:
    """Where the results database holds earlier studies of this report's cases: each case
    against them (a `vs previous` column of the table, as `bench compare --baseline last:5`
    says it) and their trend. Nothing when it holds none; a paragraph when it cannot be read."""
    from analysis import compare, history as trends
    from bench.core import history
    where = history.location(results[0])
    if not where.is_file():
        return []
    try:
        with history.opened(where, create=False) as db:
            words, paths = history.baseline(db, PREVIOUS, results)
            cases = table[["workload", "strategy", "num_replicas"]].drop_duplicates().itertuples(index=False)
            rows = [row for w, st, n in cases for row in history.select(db, history.Query(
                {"workload": w, "strategy": st.split(" ")[0], "replicas": int(n)}))]
    except (UsageError, OSError) as exc:
        return [Block("h2", "Against previous runs"), Block("p", f"The results database could not be read: {exc}")]
    if not paths:
        return []
    try:
        versus = compare.compare_frames(compare.records_frame(paths), runs, 0.05, f"the baseline ({words})")
    except UsageError:          # none of those runs readable and ok
        return []
    versus = versus[versus["samples_per_s_cur"].notna()]
    table["previous"] = table.merge(versus, how="left", on=scaling.KEYS).apply(
        lambda r: "-" if pd.isna(r.get("change")) else f"{r['change']:+.1%} ({r['verdict']})", axis=1).to_numpy()
    shown = pd.DataFrame({
        "workload": versus["workload"], "strategy": versus["strategy"], "count": versus["num_replicas"].map(int),
        "previous samples/s": [_interval(r, "base") for _, r in versus.iterrows()],
        "this study": [_interval(r, "cur") for _, r in versus.iterrows()],
        "change": versus["change"].map(lambda v: "-" if pd.isna(v) else f"{v:+.1%}"),
        "verdict": versus["verdict"]})
    blocks = [Block("h2", "Against previous runs"),
              Block("p", f"From the results database {where}: {words}, {len(paths)} run(s) of this report's cases. "
                         "A change beyond 5% whose 95% intervals do not overlap is flagged (REGRESSION or faster)."),
              Block("table", shown)]
    points = trends.points(rows)
    if len(points) > len(points.drop_duplicates(["workload", "strategy", "replicas"])):
        blocks.append(Block("image", trends.plot(points, out / "history-trend.png")))
    return blocks


def _comparison_blocks(results: list[str], options: Options) -> list[Block]:
    from analysis import compare
    table = compare.compare(results, options.compare, options.tolerance)
    shown = pd.DataFrame({
        "workload": table["workload"], "scaling": table["scaling"], "strategy": table["strategy"],
        "count": table["num_replicas"].map(int),
        "A samples/s": [_interval(r, "base") for _, r in table.iterrows()],
        "B samples/s": [_interval(r, "cur") for _, r in table.iterrows()],
        "B/A": table["change"].map(lambda v: "-" if pd.isna(v) else f"{v:+.1%}"),
        "intervals overlap": ["-" if pd.isna(r["change"]) else "yes" if r["overlap"] else "no"
                              for _, r in table.iterrows()],
        "verdict": table["verdict"]})
    text = (f"A: {', '.join(map(str, results))}; B: {', '.join(map(str, options.compare))}. A change beyond "
            f"{options.tolerance:.0%} whose 95% intervals do not overlap is flagged (REGRESSION or faster).")
    return [Block("h2", "Comparison: A (this report) and B"), Block("p", text), Block("table", shown)]


def _interval(row, side: str) -> str:
    median = row[f"samples_per_s_{side}"]
    return "-" if pd.isna(median) else f"{median:,.0f} [{row[f'ci_low_{side}']:,.0f}, {row[f'ci_high_{side}']:,.0f}]"


def _fmt(table: pd.DataFrame) -> pd.DataFrame:
    shown = pd.DataFrame({
        "workload": table["workload"], "scaling": table["scaling"], "strategy": table["strategy"],
        "count": table["num_replicas"].map(int), "runs": table["runs"],
        "samples/s (total)": table["samples_per_s"].map(lambda v: f"{v:,.1f}"),
        "95% CI": [f"{lo:,.1f}-{hi:,.1f}" for lo, hi in zip(table["ci_low"], table["ci_high"])],
        "per replica": table["samples_per_s_per_gpu"].map(lambda v: f"{v:,.1f}"),
        "speedup": table["speedup"].map(lambda v: f"{v:.2f}"),
        "efficiency": table["efficiency"].map(lambda v: f"{v:.2f}"),
        "eff vs best": table["efficiency_vs_best"].map(lambda v: f"{v:.2f}"),
        "GPU util": table["gpu_util_pct"].map(lambda v: "-" if pd.isna(v) else f"{v:.0f}%"),
        "J/sample": table["energy_per_sample_j"].map(lambda v: "-" if pd.isna(v) else f"{v:.3g}"),
        "flags": table["flags"] if "flags" in table else ""})
    if "previous" in table:
        shown["vs previous runs"] = table["previous"]
    return shown


def _prediction_blocks(table, records, runs: pd.DataFrame, options: Options, out: Path,
                       blocks: list[Block]) -> pd.DataFrame:
    links = {} if options.bandwidth_GBps else predict.links_from_comm(records)
    if options.bandwidth_GBps:
        bandwidth, source = options.bandwidth_GBps * 1e9, f"given: {options.bandwidth_GBps:g} GB/s"
    elif links:
        fits = {key: link.fit() for key, link in sorted(links.items())}
        bandwidth, source = max(b for _, b in fits.values()), "; ".join(
            f"{key[0]} {links[key].where}: alpha {alpha * 1e6:,.0f} us, B {b / 1e9:.3f} GB/s over all sizes of "
            f"{links[key].source}" for key, (alpha, b) in fits.items())
        source += (f" (each prediction fits alpha and B to the sizes within a factor {predict.AROUND_FACTOR:g} of its "
                   "gradient's bytes)")
    else:
        bandwidth, source = predict.bandwidth_from_comm(records)
    if table.empty or bandwidth is None:
        blocks.append(Block("p", "No prediction: it needs successful runs and a bus bandwidth "
                                 "(a `bench comm` record in the results, or `--bandwidth GBps`)."))
        return pd.DataFrame()
    inter = options.inter_node_GBps * 1e9 if options.inter_node_GBps else None
    # at the measured counts and every count the study ran or tried (failed runs included)
    requested = sorted({int(n) for n in runs["num_replicas"].dropna()})
    per_node, per_node_how = ((options.gpus_per_node, "given") if options.gpus_per_node
                              else replicas_per_node(records))
    model = predict.predict(table, bandwidth, inter, per_node, counts=requested, links=links)
    if not model.empty:     # each strategy at the counts it ran or tried, not at every other's
        tried = set(zip(runs["workload"], runs["strategy"], runs["num_replicas"].fillna(0).astype(int)))
        model = model[[key in tried for key in zip(model["workload"], model["strategy"], model["num_replicas"])]]
    if model.empty:
        blocks.append(Block("p", "No prediction: the records carry no parameter counts."))
        return model
    joined = predict.with_measured(model, table)
    joined.to_csv(out / "prediction.csv", index=False)
    inter_text = f"{options.inter_node_GBps:g} GB/s" if inter else "the same"
    replicas = f"{per_node} replica{'s' if per_node != 1 else ''} per node ({per_node_how})"
    blocks.append(Block("p", f"Inputs: {source}; between nodes: {inter_text}; {replicas}; overlap: none "
                             "(and full, in the plots). Compute is fitted on each strategy's smallest count "
                             "(`fitted`), the fixed overhead per step on its second-smallest (`fitted overhead`); "
                             "the other measured points test the model (`tested`), flagged where measured and "
                             "predicted differ by more than 10%. Assumptions:"))
    blocks.append(Block("list", predict.ASSUMPTIONS))
    none = joined[joined["overlap"] == "none"]
    smallest = none.groupby(["workload", "scaling", "strategy"])["num_replicas"].transform("min")
    ratio = none["measured_over_predicted"]
    roles = [_point_role(n, low, calibrated, r)
             for n, low, calibrated, r in zip(none["num_replicas"], smallest, none["overhead_from"], ratio)]
    shown = pd.DataFrame({
        "workload": none["workload"], "scaling": none["scaling"], "strategy": none["strategy"],
        "count": none["num_replicas"].map(int),
        "compute": none["compute_s"].map(lambda v: f"{1e3 * v:.1f} ms"),
        "overhead": none["overhead_s"].map(lambda v: f"{1e3 * v:.1f} ms"),
        "allreduce": none["allreduce_s"].map(lambda v: f"{1e3 * v:.2f} ms"),
        "predicted samples/s": none["samples_per_s"].map(lambda v: f"{v:,.0f}"),
        "measured samples/s": none["measured_samples_per_s"].map(lambda v: "-" if pd.isna(v) else f"{v:,.0f}"),
        "measured/predicted": ratio.map(lambda v: "-" if pd.isna(v) else f"{v:.2f}"),
        "point": roles,
        "off >10%": ["yes" if role == "tested" and abs(r - 1) > 0.10 else "" for role, r in zip(roles, ratio)]})
    blocks.append(Block("table", shown))
    blocks += [Block("image", p) for p in plots.prediction(model, table, out)]
    return model


def _what_if_blocks(results: list[str], table: pd.DataFrame, options: Options, out: Path) -> list[Block]:
    from analysis import whatif
    prediction, inputs = whatif.from_results(results, options.profile, options.what_if_gpus)
    prediction.to_csv(out / "whatif.csv", index=False)
    counts = ", ".join(map(str, options.what_if_gpus))
    profile = Path(options.profile).stem          # a profile's name is its file's stem
    blocks = [Block("h2", f"What-if: {counts} GPUs on {profile}"),
              Block("p", "Each strategy's step at counts not run, from its measured counts (compute, spread, "
                         "launch and overlap) and the cluster's links (analysis/stepmodel.py); the band is the "
                         "model's validated error. Inputs:"),
              Block("list", inputs)]
    if prediction.empty:
        return blocks + [Block("p", "Nothing to predict: see the inputs above.")]
    shown = pd.DataFrame({"workload": prediction["workload"], "strategy": prediction["strategy"],
                          "GPUs": prediction["gpus"],
                          "nodes x GPUs": [f"{n}x{g}" for n, g in zip(prediction["nodes"], prediction["per_node"])],
                          "kind": ["measured count" if m else "what-if" for m in prediction["measured"]],
                          "samples/s": [f"{v:,.0f} [{lo:,.0f}, {hi:,.0f}]" for v, lo, hi in
                                        zip(prediction["samples_per_s"], prediction["low"], prediction["high"])],
                          "efficiency": prediction["efficiency"].map(lambda v: f"{v:.2f}")})
    images = plots.what_if(prediction, table, profile, out)
    return blocks + [Block("table", shown)] + [Block("image", path) for path in images]


def replicas_per_node(records, default: int = 2) -> tuple[int, str]:
    """Replicas per node of the runs that span nodes (the most any had), else `default`; and
    where the number came from."""
    spanning = [r.ranks_per_node for r in records if r.kind == "run" and r.status == "ok"
                and 0 < (r.ranks_per_node or 0) < r.world_size]
    if spanning:
        return max(spanning), "from the runs that span nodes"
    return default, "assumed: no run spans nodes; --gpus-per-node sets it"


def _point_role(count: int, smallest: int, calibrated: int, ratio: float) -> str:
    if count == smallest:
        return "fitted"
    if count == calibrated:
        return "fitted overhead"
    return "tested" if not pd.isna(ratio) else "predicted"


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
    return [Block("details", ("Tuning studies (Ray Tune)",
                              [Block("table", pd.DataFrame(rows))] + [Block("image", p) for p in images]))]


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
    return [Block("details", (f"Runs that did not succeed or were not timed ({len(items)})",
                              [Block("list", items)]))] if items else []


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
    return [Block("details", ("Provenance", [Block("list", items)]))]


def _markdown(blocks: list[Block], level: int = 2, top: bool = True) -> str:
    lines = ["# Performance report", ""] if top else []
    for block in blocks:
        if block.kind in ("h2", "h3"):
            lines += [f"{'#' * (level if block.kind == 'h2' else level + 1)} {block.content}", ""]
        elif block.kind == "p":
            lines += [str(block.content), ""]
        elif block.kind == "table":
            lines += [block.content.to_markdown(index=False), ""]
        elif block.kind == "list":
            lines += [f"- {item}" for item in block.content] + [""]
        elif block.kind == "image":
            lines += [f"![{block.content.stem}]({block.content.name})", ""]
        elif block.kind == "pivot":
            lines += [_pivot_markdown(block.content), ""]
        elif block.kind == "details":
            title, inner = block.content
            lines += [f"{'#' * level} {title}", "", _markdown(inner, level + 1, top=False)]
        elif block.kind in ("group", "grid"):
            lines += [_markdown(block.content, level, top=False)]
    return "\n".join(lines)


def _pivot_markdown(pivot: "verdict.Pivot") -> str:
    header = ["strategy", *(pivot.unit.count(c) for c in pivot.counts)]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for strategy, cells in pivot.rows:
        shown = ["-" if c is None else f"{'**' if c.best else ''}{c.samples_per_s:,.0f}{'** (best)' if c.best else ''}"
                 f"{c.marks}<br>eff {c.efficiency:.2f}" for c in cells]
        rows.append("| " + " | ".join([strategy, *shown]) + " |")
    return "\n".join(rows) + "\n\n" + pivot.note


STYLE = """
body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:#1d2433;max-width:1180px;
 margin:0 auto;padding:0 16px 48px}
h1{font-size:1.5em;margin:.6em 0 .2em}h2{font-size:1.2em;margin:1.1em 0 .3em}h3{font-size:1.05em}
ul{margin:.2em 0 .5em;padding-left:1.2em}li,p{overflow-wrap:anywhere}
table{border-collapse:collapse;margin:.4em 0 .8em;font-variant-numeric:tabular-nums}
td,th{border-bottom:1px solid #dde2ea;padding:3px 10px;text-align:right;white-space:nowrap}
th{background:#f3f5f9;font-weight:600}td:first-child,th:first-child{text-align:left}
.answers{display:grid;grid-template-columns:repeat(auto-fit,minmax(540px,1fr));gap:0 28px}
.answer h2{margin-top:.7em}.answer ul{font-size:.93em}
.pivot td{padding:2px 12px;line-height:1.25}.pivot .v{display:block;font-weight:600}.pivot .e{display:block;color:#5b6475;font-size:.85em}
.pivot td.best{background:#e6f4ea}.pivot td.best .v:after{content:" \\2605";color:#1e7b34}
.note{color:#5b6475;font-size:.85em;margin-top:-.4em}
.scroll{overflow-x:auto;max-width:100%}
details{border-top:1px solid #dde2ea;padding:.3em 0}summary{cursor:pointer;font-weight:600;font-size:1.1em}
img{max-width:100%;height:auto;display:block;margin:.3em 0}
.plots{display:flex;flex-wrap:wrap;gap:8px}.plots img{width:570px}
"""


def _html(blocks: list[Block], top: bool = True) -> str:
    parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>"
             "<meta name='viewport' content='width=device-width,initial-scale=1'><title>Performance report</title>"
             f"<style>{STYLE}</style></head><body><h1>Performance report</h1>"] if top else []
    images: list[str] = []

    def flush() -> None:
        if images:
            parts.append("<div class='plots'>" + "".join(images) + "</div>")
            images.clear()
    for block in blocks:
        if block.kind != "image":
            flush()
        if block.kind in ("h2", "h3"):
            parts.append(f"<{block.kind}>{html.escape(str(block.content))}</{block.kind}>")
        elif block.kind == "p":
            parts.append(f"<p>{html.escape(str(block.content))}</p>")
        elif block.kind == "table":
            parts.append("<div class='scroll'>" + block.content.to_html(index=False, escape=True, border=0) + "</div>")
        elif block.kind == "list":
            parts.append("<ul>" + "".join(f"<li>{html.escape(str(i))}</li>" for i in block.content) + "</ul>")
        elif block.kind == "image":
            data = base64.b64encode(block.content.read_bytes()).decode()
            images.append(f'<img alt="{html.escape(block.content.stem)}" src="data:image/png;base64,{data}">')
        elif block.kind == "pivot":
            parts.append(_pivot_html(block.content))
        elif block.kind == "details":
            title, inner = block.content
            parts.append(f"<details><summary>{html.escape(title)}</summary>{_html(inner, top=False)}</details>")
        elif block.kind == "group":
            parts.append(f"<section class='answer'>{_html(block.content, top=False)}</section>")
        elif block.kind == "grid":
            parts.append(f"<div class='answers'>{_html(block.content, top=False)}</div>")
    flush()
    return "".join(parts) + ("</body></html>" if top else "")


def _pivot_html(pivot: "verdict.Pivot") -> str:
    head = "".join(f"<th>{html.escape(pivot.unit.count(c))}</th>" for c in pivot.counts)
    rows = []
    for strategy, cells in pivot.rows:
        shown = "".join("<td>-</td>" if c is None else
                        f"<td{' class=best' if c.best else ''}><span class=v>{c.samples_per_s:,.0f}"
                        f"{html.escape(c.marks)}</span>"
                        f"<span class=e>eff {c.efficiency:.2f}</span></td>" for c in cells)
        rows.append(f"<tr><td>{html.escape(strategy)}</td>{shown}</tr>")
    return (f"<div class='scroll'><table class='pivot'><tr><th>strategy</th>{head}</tr>{''.join(rows)}</table></div>"
            f"<p class='note'>{html.escape(pivot.note)}</p>")
