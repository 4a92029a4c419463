"""The scaling model predicts 4 replicas from runs at 1 and 2, in one run.

On emulated nodes where every rank owns half a core (2 nodes of one core, 2 ranks a node, for
1 x 1, 1 x 2 and 2 x 2; 4 nodes of half a core for 2 x 1 and 4 x 1, so that the between level is
fitted on the kind of node it predicts: a rank alone on a node of a whole core leaves the other
half to the kernel's network work; mlp/mwms at 200 Mbit/s, 2 x 1, read 0.674 there and 0.632 on
half-core nodes, horovod 0.595 and 0.624), for each workload and strategy, per-replica batch
fixed (weak scaling):

  fitted on   1 x 1, run beside the runs of every link rate (the same minutes of the machine):
              compute there (this VM's speed drifts: its 1 x 1 runs of one config took 883 to
              1164 ms a step within an hour, and the hypervisor's steal comes and goes), and
              its spread (sigma); efficiency at a rate is against that rate's 1 x 1;
              `bench comm --strategy S` (the collective S's train step runs) on one node x 2:
              the inside level's alpha and B; on 2 nodes x 1 at each link rate: the collective
              alone of the 2 x 1 runs; on 2 nodes x 2 at each rate (both levels in one run, as
              on a cluster of 2-GPU nodes): the between level the model predicts with is one
              fit over 2 x 1 and 2 x 2, the inside part taken off (analysis/collectives.
              between_level); Horovod's from 2 x 1 alone timed with the algorithm Open MPI
              runs at 4 ranks (AT_FOUR, below); each fitted to the message sizes around the
              gradient's bytes;
              1 x 2 and 2 x 1 (every rate): the launch per step and the share of the
              collective not hidden behind compute (analysis/stepmodel.py), each against its
              own shape's collective alone;
  tested on   2 x 2 and 4 x 1 at every rate: the model's step with the collective as the
              backend runs it on that shape (analysis/collectives.py: mwms a ring, horovod
              Open MPI's Rabenseifner), the straggler of 4, the fitted launch and overlap.
              No training run at 4 replicas is fitted on; `--comm-at-four` also times the
              collective alone at 4 x 1 and prints it beside the model's (never fitted on).

Every rank's fraction of a core is enforced over a CFS period of 10 ms (`--cfs-period-us`), not the
kernel's 100 ms: over 100 ms a rank that spins in MPI uses its quota in the first half of each period
and stands still in the second, and Horovod's allreduce of 1 MiB between 2 half-core nodes at
200 Mbit/s took 179-211 ms (a full core: 55 ms; a 10 ms period: 85 ms; 2 nodes x 2 ranks: 73-79 ms),
so the 2-replica runs the model is fitted on measured the stall, not the link.

It prints `case measured predicted ratio` lines of weak-scaling efficiency (mean step of
1 x 1 / mean step of the case; `--statistic median` for medians) and last `worst |ratio - 1| at 4 replicas = X` (goal <= 0.10).
The fitted runs and the tested runs are never the same runs. Every run and `bench comm` is
repeated --repeat times, the whole sequence alternated (a slow spell of the machine hits every
case once); medians are used.

    .venv/bin/python benchmarks/predict_check.py --save m.json      # measures (45-48 min a repeat, versions 5-6; 7 a few more)
    .venv/bin/python benchmarks/predict_check.py --load m.json      # the model again, no runs
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from analysis import predict, stepmodel  # noqa: E402
from analysis.collectives import Level, Measured, between_level  # noqa: E402
from bench.run import cgroups  # noqa: E402
from bench.tools.emucluster import EmulatedCluster  # noqa: E402
from benchrun import bench_record, run_record, until_stopped  # noqa: E402

WORKLOADS = {"charrnn-gru": {"data": "synthetic", "overrides": {"rnn_units": "256"}},
             "mlp": {"data": "generated"}}
# Per-replica batches that spread each workload's efficiencies across the rates: at 64 samples
# mlp computes for less than one of Horovod's 5 ms cycles, and its efficiency measures jitter.
BATCHES = {"charrnn-gru": 64, "mlp": 4096}
# Steps per epoch. One run's mean step is the measurement, and mlp's 55-120 ms steps on half a core
# come with spells of slow ones (4 x 1 unshaped: 63.2 ms a step in one run, 73.7 in another; steps of
# 111-120 ms among 60s, on every rank at once): over 35 timed steps a spell more or less moves the
# mean by 10%. 195 timed steps cost mlp about 15 s a run; charrnn-gru's 0.5 s steps move less.
STEPS = {"charrnn-gru": 20, "mlp": 100}
FITTED = {"1x1": (1, 1), "1x2": (1, 2), "2x1": (2, 1)}
TESTED = {"2x2": (2, 2), "4x1": (4, 1)}
VERSION = 7
# version 3: one 1 x 1 per round for every rate (compute not paired); 3 and 4: no bench comm at 2 x 2
# (the between level from 2 x 1's)
# 5: Horovod's 2 x 1 collective only as Open MPI chooses at 2 ranks
# 6: 20 steps an epoch for every workload
READS = (3, 4, 5, 6, 7)
# A fractional core is a CFS quota: a step takes whole periods more often than not, and its median
# sticks to a multiple of the period (mlp horovod at 4096 a replica, 2 x 1: a median of 105.2 ms in two
# runs, p90s 181 and 198 ms). The mean (the run's throughput) moves with every millisecond of work.
STATISTICS = {"mean": ("mean_s", "std_s"), "median": ("step_s", "p90_s")}
# The sizes around both gradients (0.47 and 1.71 MB; the fit's window is a factor 2.5 either side),
# each the mean of 20 back-to-back calls: with 5 calls at half a core horovod's read 8.0 ms for
# 512 KiB and 5.3 ms for 1 MiB (a negative B)
COMM = ["--min-bytes", str(128 << 10), "--max-bytes", str(4 << 20), "--warmup", "3", "--iters", "20"]
COMM_SHAPES = {**FITTED, "2x2": (2, 2), "4x1": (4, 1)}
# Horovod's between level: its collective at 2 nodes x 1 with the algorithm Open MPI runs at 4
# ranks forced. Open MPI's coll/tuned picks by communicator size: at 200 Mbit/s, 1 MiB, Horovod's
# collective took 74 ms at 2 ranks (forced ring 73, forced Rabenseifner 89) and 135 at 4 (forced
# Rabenseifner 137, forced ring 91), so its 2 x 1 default times a form 4 ranks do not run. Not its
# 2 x 2 either: Horovod's collective at 1 node x 2 takes one 5 ms cycle at every size up to 1 MiB,
# its inside "level" is that cycle, and taking it off 2 x 2's time takes the cycle off twice (mlp
# at 200 Mbit/s: a 4 x 1 collective of 46.6 ms predicted with 2 x 2 in the fit, 57.0 without it,
# 54.8 timed alone).
AT_FOUR = {"horovod": "rabenseifner"}


def srun(nodes: int, per_node: int) -> list[str]:
    return ["srun", f"-N{nodes}", "--ntasks-per-node", str(per_node), "-c1", "--mpi=pmix"]


def summary(record: dict) -> dict:
    timing = record["timing"]
    steps = timing["step_time"]
    return {"step_s": steps["median_s"], "p90_s": steps["p90_s"], "mean_s": steps["mean_s"], "std_s": steps["std_s"],
            "collective_alone_s": (timing.get("communication") or {}).get("allreduce_s"),
            "gradient_bytes": 4.0 * record["extra"]["parameters"], "hosts": record["host"].get("rank_hosts"),
            "allreduce": record["extra"].get("allreduce", {}).get("cpu"),
            # what each rank ran on: a 1 x 1 run's median took 186 ms in one repeat, 93.5 in the next
            "cpu_share": record["host"].get("binding", {}).get("cpu_share"), "rank_cores": record["host"].get("rank_cores"),
            # the hypervisor's share of the chief's cores (this VM: 2% over its life, 5% in a 10 s look)
            "steal_pct": record["host"].get("steal_pct_mean"),
            "p90_over_median": steps["p90_s"] / steps["median_s"]}


def measure(args) -> dict:
    """Every run's summary, keyed "workload/strategy/shape" (and "@rate" where it crosses a
    link), and every `bench comm`'s rows, keyed "strategy/shape" (and "@rate")."""
    rates = args.rates.split(",")

    def keep(data: dict) -> None:
        if args.save:
            Path(args.save + ".part").write_text(json.dumps(data, indent=1))
            Path(args.save + ".part").replace(args.save)

    cases = [f"{w}/{s}" for w in args.workloads.split(",") for s in args.strategies.split(",")]
    batches = {case: args.batch or BATCHES[case.split("/")[0]] for case in cases}
    os.environ[cgroups.PERIOD_ENV] = str(args.cfs_period_us)
    steps = {case: args.steps or STEPS[case.split("/")[0]] for case in cases}
    data = {"version": VERSION, "cfs_period_us": args.cfs_period_us, "batches": batches, "rates": rates, "cases": cases, "steps": steps,
            "comm": COMM, "runs": {}, "comms": {}}
    with tempfile.TemporaryDirectory() as work:
        results = str(Path(work) / "results")
        with EmulatedCluster(Path(work) / "pairs", nodes=2, cores_per_node=1, slots_per_node=2,
                             name="pair") as pairs, \
                EmulatedCluster(Path(work) / "four", nodes=4, cores_per_node=0.5, name="quad") as four:
            on = {"1x1": pairs, "1x2": pairs, "2x1": four, "2x2": pairs, "4x1": four}

            def run(case: str, shape: str, key: str) -> None:
                workload, strategy = case.split("/")
                config = {"workload": workload, "strategy": strategy, "epochs": 2, "steps_per_epoch": steps[case],
                          "per_replica_batch_size": batches[case], "results": results, "verbose": 0,
                          **WORKLOADS[workload]}
                record = run_record(config, f"{key}", srun(*(FITTED | TESTED)[shape]), on[shape].env)
                data["runs"].setdefault(key, []).append(summary(record))
                keep(data)

            def comm(strategy: str, shape: str, key: str, algorithm: str = "default") -> None:
                record = bench_record(["comm", "--strategy", strategy, "--algorithm", algorithm, *COMM,
                                       "--results", results], key, srun(*COMM_SHAPES[shape]), on[shape].env)
                data["comms"].setdefault(key, []).append(record["metrics"]["allreduce"])
                keep(data)

            def shape_links(rate: str) -> None:
                for cluster in (pairs, four):
                    for index in range(cluster.nodes):
                        cluster.shape(index, rate=None if rate == "none" else rate)

            for repeat in range(args.repeat):
                shape_links("none")
                for strategy in args.strategies.split(","):
                    comm(strategy, "1x2", f"{strategy}/1x2")
                for case in cases:
                    for shape in ("1x1", "1x2"):
                        run(case, shape, f"{case}/{shape}")
                for rate in rates:
                    shape_links(rate)
                    for strategy in args.strategies.split(","):
                        for shape in ("2x1", "2x2", *(("4x1",) if args.comm_at_four else ())):
                            comm(strategy, shape, f"{strategy}/{shape}@{rate}")
                        if strategy in AT_FOUR:
                            comm(strategy, "2x1", f"{strategy}/2x1+{AT_FOUR[strategy]}@{rate}", AT_FOUR[strategy])
                    for case in cases:      # the rate's own 1 x 1 first: its runs' baseline
                        for shape in ("1x1", "2x1", *TESTED):
                            run(case, shape, f"{case}/{shape}@{rate}")
                        mean_ms = {shape: data["runs"][f"{case}/{shape}@{rate}"][-1]["mean_s"] * 1e3
                                   for shape in ("1x1", "2x1", *TESTED)}
                        print(f"# round {repeat + 1}, {case}@{rate}: mean step "
                              + ", ".join(f"{shape} {ms:.1f} ms" for shape, ms in mean_ms.items()), flush=True)
    return data


def median_rows(runs: list[list[dict]]) -> list[dict]:
    """One `allreduce` row per message size: the median time over repeated `bench comm` runs."""
    times: dict[float, list[float]] = {}
    for rows in runs:
        for row in rows:
            times.setdefault(float(row["bytes"]), []).append(float(row["time_us"]))
    return [{"bytes": size, "time_us": statistics.median(values)} for size, values in sorted(times.items())]


def level(rows: list[dict], nbytes: float) -> Level:
    return Level(*predict.fit_alpha_beta(median_rows(rows), 2, around=nbytes))


def between_from(comms: dict[str, list], nbytes: float, algorithm: str, inside: Level) -> Level:
    """The between level from the collective alone at one or more shapes (`comms`: the runs of
    each, by shape), the inside part taken off, one fit over all."""
    measured = [Measured(*COMM_SHAPES[shape], tuple((row["bytes"], row["time_us"] * 1e-6) for row in median_rows(rows)))
                for shape, rows in comms.items()]
    return between_level(algorithm, measured, inside, nbytes, predict.AROUND_FACTOR)


def alone_at(data: dict, strategy: str, shape: str, rate: str, nbytes: float) -> float | None:
    """The collective alone at `shape`, at the gradient's bytes (the alpha-beta line through the
    sizes around it), where it was measured."""
    rows = data["comms"].get(f"{strategy}/{shape}@{rate}")
    if not rows:
        return None
    fitted = level(rows, nbytes)
    return 2 * fitted.alpha + nbytes / fitted.bandwidth


def median_of(runs: list[dict], field: str) -> float:
    return statistics.median(run[field] for run in runs)


def spread(run: dict, statistic: str) -> float:
    """One replica's step-time sigma: the std with the mean, from the p90 with the median."""
    return run["std_s"] if statistic == "mean" else stepmodel.robust_sigma(run["step_s"], run["p90_s"])


def computes(data: dict, case: str, statistic: str) -> dict[str, float]:
    """One replica's step beside the runs of each link rate (key "" : beside the 1 x 2 runs);
    a version-3 file has one 1 x 1 for all."""
    runs, step = data["runs"], STATISTICS[statistic][0]
    start = median_of(runs[f"{case}/1x1"], step)
    return {"": start, **{rate: median_of(runs[f"{case}/1x1@{rate}"], step) if f"{case}/1x1@{rate}" in runs
                          else start for rate in data["rates"]}}


def ahead_keys(data: dict, strategy: str, rate: str) -> dict[str, str] | None:
    """The collectives alone the between level is fitted on, by shape: Horovod's at 2 x 1 with
    the algorithm of 4 ranks (AT_FOUR), where timed so; otherwise 2 x 1 and 2 x 2 together;
    None where 2 x 2 was not timed (versions 3-4: the 2 x 1 level the fitted runs ran on)."""
    forced = f"{strategy}/2x1+{AT_FOUR.get(strategy)}@{rate}"
    if forced in data["comms"]:
        return {"2x1": forced}
    if f"{strategy}/2x2@{rate}" in data["comms"]:
        return {"2x1": f"{strategy}/2x1@{rate}", "2x2": f"{strategy}/2x2@{rate}"}
    return None


def case_model(data: dict, case: str, statistic: str) -> tuple[stepmodel.StepModel, dict[str, stepmodel.Levels],
                                                                 dict[str, stepmodel.Levels]]:
    """The step model of `case`, fitted on its 1 x 1, 1 x 2 and 2 x 1 runs; the links at each rate
    its fitted runs ran on (between: the collective at 2 x 1), and those it predicts with
    (between: fitted on the collectives ahead_keys names)."""
    runs = data["runs"]
    strategy = case.split("/")[1]
    step = STATISTICS[statistic][0]
    one = runs[f"{case}/1x1"] + [r for rate in data["rates"] for r in runs.get(f"{case}/1x1@{rate}", [])]
    gradient = one[0]["gradient_bytes"]
    compute = computes(data, case, statistic)
    sigma = statistics.median(spread(r, statistic) for r in one)
    inside = level(data["comms"][f"{strategy}/1x2"], gradient)
    levels = {rate: stepmodel.Levels(inside, level(data["comms"][f"{strategy}/2x1@{rate}"], gradient), rate)
              for rate in data["rates"]}
    points = [stepmodel.FitPoint(1, 2, median_of(runs[f"{case}/1x2"], step), levels[data["rates"][0]], compute[""])]
    points += [stepmodel.FitPoint(2, 1, median_of(runs[f"{case}/2x1@{rate}"], step), levels[rate], compute[rate])
               for rate in data["rates"]]
    algorithm = runs[f"{case}/1x2"][0]["allreduce"]      # as the backend's records say it runs here
    ahead = {}
    for rate, fitted_on in levels.items():
        keys = ahead_keys(data, strategy, rate)
        ahead[rate] = fitted_on if keys is None else stepmodel.Levels(
            inside, between_from({shape: data["comms"][key] for shape, key in keys.items()}, gradient, algorithm, inside),
            " and ".join(keys.values()))
    return stepmodel.fit(compute[""], sigma, gradient, algorithm, points), levels, ahead


def evaluate(data: dict, statistic: str) -> float:
    """Prints the table; returns the worst |ratio - 1| over the cases at 4 replicas."""
    if data.get("version") not in READS:
        raise SystemExit("predict_check: this --load file is of version "
                         f"{data.get('version')}, not {' or '.join(map(str, READS))} (it lacks what the model now "
                         "reads); measure again")
    print(f"case measured predicted ratio (efficiency from each run's {statistic} step; "
          f"CFS period {data.get('cfs_period_us', 100_000) / 1e3:g} ms)")
    worst = 0.0
    for case in data["cases"]:
        model, levels, ahead = case_model(data, case, statistic)
        compute = computes(data, case, statistic)
        strategy = case.split("/")[1]
        print(f"# {case}: compute {model.compute_s * 1e3:.1f} ms, sigma {model.sigma_s * 1e3:.2f} ms, launch "
              f"{model.launch_s * 1e3:.1f} ms, overlap {model.overlap:.2f}, {model.algorithm}, "
              f"{model.gradient_bytes / 1e6:.2f} MB; inside alpha {levels[data['rates'][0]].inside.alpha * 1e6:.0f} us "
              f"B {levels[data['rates'][0]].inside.bandwidth / 1e9:.3f} GB/s; between "
              + ", ".join(f"{rate}: alpha {lv.between.alpha * 1e6:.0f} us B {lv.between.bandwidth / 1e9:.3f} GB/s"
                          for rate, lv in levels.items())
              + "; between predicted with: " + ", ".join(f"{lv.source}: alpha {lv.between.alpha * 1e6:.0f} us B "
                                                   f"{lv.between.bandwidth / 1e9:.3f} GB/s" for rate, lv in ahead.items()))
        for rate in data["rates"]:
            for shape, (nodes, per_node) in {"1x2": (1, 2), "2x1": (2, 1), **TESTED}.items():
                key = f"{case}/{shape}" + ("" if shape == "1x2" else f"@{rate}")
                if shape == "1x2" and rate != data["rates"][0]:
                    continue
                beside = compute["" if shape == "1x2" else rate]       # the 1 x 1 of the same minutes
                links = (ahead if shape in TESTED else levels)[rate]
                parts = dataclasses.replace(model, compute_s=beside).parts(nodes, per_node, links)
                measured = beside / median_of(data["runs"][key], STATISTICS[statistic][0])
                predicted = beside / parts["step_s"]
                role = "tested" if shape in TESTED else "fitted"
                if role == "tested":
                    worst = max(worst, abs(predicted / measured - 1))
                alone = alone_at(data, strategy, shape, rate, model.gradient_bytes) if shape == "4x1" else None
                print(f"{key} {measured:.3f} {predicted:.3f} ratio={predicted / measured:.3f} ({role}; "
                      + ", ".join(f"{name[:-2]} {value * 1e3:.1f}" for name, value in parts.items()
                                  if name not in ("compute_s", "step_s"))
                      + (f"; alone measured {alone * 1e3:.1f}" if alone is not None else "") + " ms)")
    print(f"worst |ratio - 1| at 4 replicas = {worst:.3f} (goal <= 0.10)")
    return worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="none,1gbit,200mbit", help="link rates (none: unshaped)")
    parser.add_argument("--workloads", default="charrnn-gru,mlp")
    parser.add_argument("--strategies", default="mwms,horovod")
    parser.add_argument("--steps", type=int, help="steps per epoch, every workload (2 epochs, 5 of warm-up); "
                        f"default: {', '.join(f'{w} {n}' for w, n in STEPS.items())}")
    parser.add_argument("--batch", type=int, help="per replica, every workload; default: "
                        + ", ".join(f"{w} {b}" for w, b in BATCHES.items()))
    parser.add_argument("--repeat", type=int, default=2, help="the whole sequence of runs, alternated; medians")
    parser.add_argument("--cfs-period-us", type=int, default=10_000,
                        help="the CFS period over which each rank's fraction of a core is enforced")
    parser.add_argument("--save", help="write every measurement to this JSON file (as it goes)")
    parser.add_argument("--load", help="evaluate the model on a --save file instead of measuring")
    parser.add_argument("--comm-at-four", action="store_true",
                        help="also time the collective alone at 4 x 1 (printed beside the model's; never fitted on)")
    parser.add_argument("--statistic", choices=STATISTICS, default="mean",
                        help="each run's step time: the mean (its throughput; default) or the median")
    args = parser.parse_args()
    unknown = sorted(set(args.workloads.split(",")) - set(WORKLOADS))
    if unknown and not args.load:
        parser.error(f"unknown workload(s) {', '.join(unknown)}: choose from {', '.join(WORKLOADS)}")
    data = json.loads(Path(args.load).read_text()) if args.load else measure(args)
    if args.save:
        Path(args.save).write_text(json.dumps(data, indent=1))
    evaluate(data, args.statistic)
    return 0


if __name__ == "__main__":
    sys.exit(until_stopped(main))
