"""The scaling model against measurement on links of known speed, in one run.

On the emulated 2-node cluster (one core per node), for each workload and strategy:

  fitted on   one node: t(b) = t0 + c x b from runs at two per-replica batches;
              each link rate and strategy: alpha and B of a ring allreduce through the two
              message sizes around the gradient's bytes of a `bench comm --strategy S` between
              the nodes (the collective the strategy's train step runs: TensorFlow's over gRPC
              for mwms, Horovod's for horovod);
              the fastest rate: one 2-node run, whose step time minus compute and modelled
              communication is the strategy's fixed overhead per step;
  tested on   the 2-node runs at the other rates:
              step = t(b) + overhead + 2(N-1) alpha + 2(N-1)/N x gradient bytes / B

and prints `case measured predicted ratio` lines of weak-scaling efficiency (2-node
throughput / 2 x 1-node throughput), then the worst |ratio - 1| over the tested cases.

    .venv/bin/python benchmarks/predict_check.py
    .venv/bin/python benchmarks/predict_check.py --rates 1gbit,200mbit,50mbit --steps 30
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from analysis import predict  # noqa: E402
from bench.emucluster import EmulatedCluster  # noqa: E402

WORKLOADS = {"charrnn-gru": {"data": "synthetic", "overrides": {"rnn_units": "256"}},
             "mlp": {"data": "generated"}}


def srun(cluster, nodes: int, command: list[str], env: dict | None = None) -> dict:
    done = subprocess.run(["srun", f"-N{nodes}", f"-n{nodes}", "-c1", "--mpi=pmix", sys.executable, "-m", "bench",
                           *command], capture_output=True, text=True, env={**os.environ, **cluster.env, **(env or {})})
    if done.returncode != 0:
        raise SystemExit(f"srun {' '.join(command)}: {done.stderr.strip().splitlines()[-3:]}")
    record = json.loads(Path(done.stdout.strip().splitlines()[-1]).read_text())
    if record["status"] != "ok":
        raise SystemExit(f"{record['run_id']}: {record['error']}")
    return record


def run(cluster, workload: str, strategy: str, nodes: int, batch: int, args, results: str) -> tuple[float, float]:
    """(step seconds from the mean throughput, gradient bytes)."""
    config = {"workload": workload, "strategy": strategy, "epochs": 2, "steps_per_epoch": args.steps,
              "per_replica_batch_size": batch, "results": results, "verbose": 0, **WORKLOADS[workload]}
    record = srun(cluster, nodes, ["run"], {"DISTBENCH_RUN_CONFIG": json.dumps(config)})
    return record["global_batch_size"] / record["throughput"]["samples_per_s"], 4.0 * record["extra"]["parameters"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="1gbit,200mbit,50mbit", help="link rates, the fastest first (fitted)")
    parser.add_argument("--workloads", default="charrnn-gru,mlp")
    parser.add_argument("--strategies", default="mwms,horovod")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64, help="per replica (and half of it for the compute fit)")
    args = parser.parse_args()
    rates = args.rates.split(",")
    cases = [(w, s) for w in args.workloads.split(",") for s in args.strategies.split(",")]
    with tempfile.TemporaryDirectory() as work:
        results = str(Path(work) / "results")
        with EmulatedCluster(Path(work) / "cluster", nodes=2) as cluster:
            compute, one_node, gradient = {}, {}, {}
            for case in cases:
                half, _ = run(cluster, *case, 1, args.batch // 2, args, results)
                one_node[case], gradient[case] = run(cluster, *case, 1, args.batch, args, results)
                compute[case] = predict.fit_compute([(args.batch // 2, half), (args.batch, one_node[case])])
            link, two_node = {}, {}
            for rate in rates:
                for index in range(2):
                    cluster.shape(index, rate=rate)
                for strategy in sorted({s for _, s in cases}):
                    comm = srun(cluster, 2, ["comm", "--strategy", strategy, "--min-bytes", "4096", "--max-bytes",
                                             str(16 << 20), "--warmup", "2", "--iters", "5", "--results", results])
                    link[rate, strategy] = comm["metrics"]["allreduce"]
                    alpha, bandwidth = predict.fit_alpha_beta(link[rate, strategy], 2)
                    print(f"# link {rate}, {strategy}'s allreduce: alpha {alpha * 1e6:.0f} us, "
                          f"B {bandwidth / 1e9:.4f} GB/s over all sizes (bench comm --strategy {strategy})",
                          flush=True)
                for case in cases:
                    two_node[case, rate] = run(cluster, *case, 2, args.batch, args, results)[0]
    print("case measured predicted ratio")
    worst = 0.0
    for case in cases:
        t0, c = compute[case]
        t_compute = t0 + c * args.batch
        alpha, bandwidth = predict.fit_alpha_beta(link[rates[0], case[1]], 2, around=gradient[case])
        overhead = two_node[case, rates[0]] - t_compute - predict.allreduce_s(gradient[case], 2, alpha, bandwidth)
        for rate in rates:
            alpha, bandwidth = predict.fit_alpha_beta(link[rate, case[1]], 2, around=gradient[case])
            predicted_step = predict.step_s(t_compute, overhead, predict.allreduce_s(gradient[case], 2, alpha, bandwidth))
            measured = one_node[case] / two_node[case, rate]
            predicted = one_node[case] / predicted_step
            role = "fitted" if rate == rates[0] else "tested"
            if role == "tested":
                worst = max(worst, abs(predicted / measured - 1))
            print(f"{case[0]}/{case[1]}@{rate} {measured:.3f} {predicted:.3f} ratio={predicted / measured:.3f} "
                  f"({role}; overhead {overhead * 1e3:.1f} ms)")
    print(f"worst |ratio - 1| over tested cases = {worst:.3f} (goal <= 0.10)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
