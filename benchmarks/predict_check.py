"""The scaling model against measurement on links of known speed, in one run.

On the emulated 2-node cluster (one core per node), for each workload and strategy:

  fitted on   one node: t(b) = t0 + c x b from runs at two per-replica batches;
              each link rate and strategy: alpha and B of a ring allreduce fitted to the
              message sizes within a factor 2.5 of the gradient's bytes of a `bench comm --strategy S` between
              the nodes (the collective the strategy's train step runs: TensorFlow's over gRPC
              for mwms, Horovod's for horovod);
              the fastest link (the first of --rates; `none`, the unshaped link, by default):
              one 2-node run, whose step time minus compute and modelled communication is
              the strategy's fixed overhead per step (what taking part in a collective costs
              beyond its bytes: gRPC or Horovod's cycle, waiting for the slower replica);
  tested on   the 2-node runs at the other rates:
              step = t(b) + overhead + 2(N-1) alpha + 2(N-1)/N x gradient bytes / B

and prints `case measured predicted ratio` lines of weak-scaling efficiency (median step on
1 node / median step on 2 nodes, same per-replica batch), then the worst |ratio - 1| over the
tested cases. Every run and `bench comm` is repeated --repeat times, the whole sequence
alternated (a slow spell of the machine hits every case once), and medians are used: the
step times' per case and rate, the collective's times per message size.

    .venv/bin/python benchmarks/predict_check.py
    .venv/bin/python benchmarks/predict_check.py --rates none,1gbit,200mbit,50mbit --repeat 2 --save m.json
    .venv/bin/python benchmarks/predict_check.py --load m.json       # the model again, no runs
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from analysis import predict  # noqa: E402
from bench.emucluster import EmulatedCluster  # noqa: E402
from benchrun import bench_record, run_record, until_stopped  # noqa: E402

WORKLOADS = {"charrnn-gru": {"data": "synthetic", "overrides": {"rnn_units": "256"}},
             "mlp": {"data": "generated"}}
# Per-replica batches that spread each workload's efficiencies across the tested rates (mlp
# 0.17-0.79, charrnn-gru 0.33-0.94). At 64 samples mlp computes for 1.8 ms a step, less than
# one of Horovod's 5 ms cycles and than the gRPC jitter of a 2-node MWMS step (2-node steps
# of 7-10 ms from run to run): its efficiency (0.01-0.28) then measures that jitter. At 4096
# it computes for 25 ms.
BATCHES = {"charrnn-gru": 64, "mlp": 4096}


def srun(nodes: int) -> list[str]:
    return ["srun", f"-N{nodes}", f"-n{nodes}", "-c1", "--mpi=pmix"]


def run(cluster, workload: str, strategy: str, nodes: int, batch: int, args, results: str) -> tuple[float, float]:
    """(median step seconds, gradient bytes)."""
    config = {"workload": workload, "strategy": strategy, "epochs": 2, "steps_per_epoch": args.steps,
              "per_replica_batch_size": batch, "results": results, "verbose": 0, **WORKLOADS[workload]}
    record = run_record(config, f"{workload}/{strategy} on {nodes} node(s)", srun(nodes), cluster.env)
    return record["timing"]["step_time"]["median_s"], 4.0 * record["extra"]["parameters"]


def median_rows(runs: list[list[dict]]) -> list[dict]:
    """One `allreduce` row per message size: the median time over repeated `bench comm` runs."""
    times: dict[float, list[float]] = {}
    for rows in runs:
        for row in rows:
            times.setdefault(float(row["bytes"]), []).append(float(row["time_us"]))
    return [{"bytes": size, "time_us": statistics.median(values)} for size, values in sorted(times.items())]


def medians(samples: dict) -> dict:
    return {key: statistics.median(values) for key, values in samples.items()}


def measure(args) -> dict:
    """Every run's median step and every `bench comm`'s rows, keyed "workload/strategy"
    (1 node) and "workload/strategy@rate" (2 nodes)."""
    rates = args.rates.split(",")
    cases = [(w, s) for w in args.workloads.split(",") for s in args.strategies.split(",")]
    batches = {"/".join(c): args.batch or BATCHES[c[0]] for c in cases}
    data = {"batches": batches, "rates": rates, "cases": ["/".join(c) for c in cases],
            "halves": {}, "ones": {}, "twos": {}, "comms": {}, "gradient": {}}
    with tempfile.TemporaryDirectory() as work:
        results = str(Path(work) / "results")
        with EmulatedCluster(Path(work) / "cluster", nodes=2) as cluster:
            for repeat in range(args.repeat):
                for index in range(2):
                    cluster.shape(index)        # the last round left the slowest rate on
                for case in cases:
                    key = "/".join(case)
                    data["halves"].setdefault(key, []).append(run(cluster, *case, 1, batches[key] // 2, args, results)[0])
                    step, data["gradient"][key] = run(cluster, *case, 1, batches[key], args, results)
                    data["ones"].setdefault(key, []).append(step)
                for rate in rates:
                    for index in range(2):
                        cluster.shape(index, rate=None if rate == "none" else rate)
                    for strategy in sorted({s for _, s in cases}):
                        comm = bench_record(["comm", "--strategy", strategy, "--min-bytes", "4096", "--max-bytes",
                                             str(16 << 20), "--warmup", "2", "--iters", "5", "--results", results],
                                            f"bench comm --strategy {strategy}", srun(2), cluster.env)
                        data["comms"].setdefault(f"{strategy}@{rate}", []).append(comm["metrics"]["allreduce"])
                    for case in cases:
                        key = "/".join(case)
                        step = run(cluster, *case, 2, batches[key], args, results)[0]
                        data["twos"].setdefault(f"{key}@{rate}", []).append(step)
                        print(f"# round {repeat + 1}, {key}@{rate}: 1 node {data['ones'][key][-1] * 1e3:.1f} ms, "
                              f"2 nodes {step * 1e3:.1f} ms", flush=True)
    return data


def evaluate(data: dict) -> float:
    """Prints the table; returns the worst |ratio - 1| over the tested cases."""
    rates = data["rates"]
    batches = data.get("batches") or {case: data["batch"] for case in data["cases"]}   # older --save files
    one_node, two_node = medians(data["ones"]), medians(data["twos"])
    link = {key: median_rows(runs) for key, runs in data["comms"].items()}
    print("case measured predicted ratio")
    worst = 0.0
    for case in data["cases"]:
        strategy, gradient, batch = case.split("/")[1], data["gradient"][case], batches[case]
        t0, c = predict.fit_compute([(batch // 2, statistics.median(data["halves"][case])), (batch, one_node[case])])
        t_compute = t0 + c * batch

        def communication(rate: str) -> float:
            alpha, bandwidth = predict.fit_alpha_beta(link[f"{strategy}@{rate}"], 2, around=gradient)
            return predict.allreduce_s(gradient, 2, alpha, bandwidth)

        overhead = two_node[f"{case}@{rates[0]}"] - t_compute - communication(rates[0])
        for rate in rates:
            predicted_step = predict.step_s(t_compute, overhead, communication(rate))
            measured = one_node[case] / two_node[f"{case}@{rate}"]
            predicted = one_node[case] / predicted_step
            role = "fitted" if rate == rates[0] else "tested"
            if role == "tested":
                worst = max(worst, abs(predicted / measured - 1))
            print(f"{case}@{rate} {measured:.3f} {predicted:.3f} ratio={predicted / measured:.3f} "
                  f"({role}; compute {t_compute * 1e3:.1f} ms, overhead {overhead * 1e3:.1f} ms, "
                  f"communication {communication(rate) * 1e3:.1f} ms)")
    print(f"worst |ratio - 1| over tested cases = {worst:.3f} (goal <= 0.10)")
    return worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="none,1gbit,200mbit,50mbit",
                        help="link rates, the fitted one first (none: unshaped)")
    parser.add_argument("--workloads", default="charrnn-gru,mlp")
    parser.add_argument("--strategies", default="mwms,horovod")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, help="per replica, every workload (and half of it for the compute fit); "
                        f"default: {', '.join(f'{w} {b}' for w, b in BATCHES.items())}")
    parser.add_argument("--repeat", type=int, default=3, help="the whole sequence of runs, alternated; medians")
    parser.add_argument("--save", help="write every measurement to this JSON file")
    parser.add_argument("--load", help="evaluate the model on a --save file instead of measuring")
    args = parser.parse_args()
    unknown = sorted(set(args.workloads.split(",")) - set(WORKLOADS))
    if unknown and not args.load:
        parser.error(f"unknown workload(s) {', '.join(unknown)}: choose from {', '.join(WORKLOADS)}")
    data = json.loads(Path(args.load).read_text()) if args.load else measure(args)
    if args.save:
        Path(args.save).write_text(json.dumps(data, indent=1))
    evaluate(data)
    return 0


if __name__ == "__main__":
    sys.exit(until_stopped(main))
