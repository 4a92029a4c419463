"""Weak-scaling efficiency in one run:

    efficiency = samples/s (N replicas) / (N x samples/s (1 replica)), same strategy, same
                 per-replica batch and share of a core, same steps; medians of --repeat
                 alternated runs

`--where nodes` (default): 1 -> 2 replicas on the emulated 2-node cluster, one core a node.
`--where four`: 1 -> 4 replicas at half a core each, in both of FinisTerrae III's shapes on
emulated nodes: 4 nodes x 1 (nodes of half a core, a cgroup's quota) and 2 nodes x 2 (nodes of
one core declaring 2 Slurm CPUs); printed beside the emulation's own figures, measured in the
same run: one 0.5-core replica against one 1-core replica (expected 0.5) and four 0.5-core
replicas running at once against one alone (the ceiling: what 4 replicas could reach with no
communication at all; expected >= 0.95). Goal (issue 25): charrnn-gru (GRU 256, 64 per
replica, unshaped) >= 0.85 of the ceiling for mwms and horovod in both shapes.
`--where local`: 1 -> 2 bound local workers on this host.

    .venv/bin/python benchmarks/weak_scaling.py                         # 2 nodes; GRU 256, mlp, memnn
    .venv/bin/python benchmarks/weak_scaling.py --where four --workloads charrnn-gru
    .venv/bin/python benchmarks/weak_scaling.py --where local --workloads charrnn-gru
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.emucluster import EmulatedCluster  # noqa: E402
from benchrun import samples_per_s, until_stopped  # noqa: E402

WORKLOADS = {
    "charrnn-gru": {"data": "synthetic", "overrides": {"rnn_units": "256"}},
    "mlp": {"data": "generated"},
    "memnn": {"data": "generated"},
}


def config(workload: str, strategy: str, results: str, args) -> dict:
    return {"workload": workload, "strategy": strategy, "epochs": 2, "steps_per_epoch": args.steps,
            "per_replica_batch_size": args.batch, "results": results, "verbose": 0, "cpus_per_replica": 1,
            **WORKLOADS[workload]}


def srun_line(strategy: str, nodes: int, per_node: int) -> list[str]:
    mpi = ["--mpi=pmix"] if strategy == "horovod" else []
    return ["srun", f"-N{nodes}", "--ntasks-per-node", str(per_node), "-c1", *mpi]


def on_nodes(cluster: EmulatedCluster, cfg: dict, replicas: int) -> float:
    return samples_per_s(cfg, f"srun {cfg['strategy']} x{replicas}", srun_line(cfg["strategy"], replicas, 1),
                         cluster.env)


def local(cfg: dict, replicas: int) -> float:
    return samples_per_s({**cfg, "local_workers": replicas}, f"{cfg['strategy']} x{replicas}")


def at_once(cluster: EmulatedCluster, cfg: dict, count: int) -> list[float]:
    """`count` independent 1-replica runs started together, one per node: each one's samples/s."""
    env = {**os.environ, **cluster.env, "DISTBENCH_RUN_CONFIG": json.dumps(cfg)}
    runs = [subprocess.Popen(["srun", "-N1", "-n1", "-c1", "-w", cluster.hostnames[i], sys.executable, "-m", "bench",
                              "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for i in range(count)]
    rates = []
    for run in runs:
        out, err = run.communicate()
        if run.returncode != 0:
            raise SystemExit(f"{count} runs at once: {err.strip().splitlines()[-3:]}")
        rates.append(json.loads(Path(out.strip().splitlines()[-1]).read_text())["throughput"]["samples_per_s"])
    return rates


def two_replicas(args, work: str) -> None:
    cluster = EmulatedCluster(Path(work) / "cluster", nodes=2, rate=args.rate) if args.where == "nodes" else None
    try:
        if cluster:
            cluster.start()
        print("workload strategy one_replica two_replicas efficiency")
        for workload in args.workloads.split(","):
            for strategy in args.strategies.split(","):
                cfg = config(workload, strategy, str(Path(work) / "results"), args)
                measure = functools.partial(on_nodes, cluster) if cluster else local
                ones, twos = [], []
                for _ in range(args.repeat):        # alternated: a slow spell of the machine hits both
                    ones.append(measure(cfg, 1))
                    twos.append(measure(cfg, 2))
                one, two = statistics.median(ones), statistics.median(twos)
                print(f"{workload} {strategy} {one:.1f} {two:.1f} ratio={two / (2 * one):.3f} "
                      f"(each ratio: {' '.join(f'{b / (2 * a):.3f}' for a, b in zip(ones, twos))})", flush=True)
    finally:
        if cluster:
            cluster.stop()


def four_replicas(args, work: str) -> None:
    """1 -> 4 replicas at half a core each, 4 nodes x 1 and 2 nodes x 2, beside the ceiling."""
    with EmulatedCluster(Path(work) / "four", nodes=4, cores_per_node=0.5, rate=args.rate) as four, \
            EmulatedCluster(Path(work) / "pairs", nodes=2, cores_per_node=1, slots_per_node=2, rate=args.rate,
                            name="pair") as pairs:
        results = str(Path(work) / "results")
        for workload in args.workloads.split(","):
            base = config(workload, "default", results, args)
            halves, wholes, together = [], [], []
            cases = {(s, shape): [] for s in args.strategies.split(",") for shape in ("4x1", "2x2")}
            ones = {s: [] for s in args.strategies.split(",")}
            for round_ in range(args.repeat):
                halves.append(samples_per_s(base, "1 replica, half a core", srun_line("default", 1, 1), four.env))
                wholes.append(samples_per_s(base, "1 replica, one core", srun_line("default", 1, 1), pairs.env))
                together.append(statistics.mean(at_once(four, base, 4)))
                for strategy in ones:
                    cfg = config(workload, strategy, results, args)
                    ones[strategy].append(samples_per_s(cfg, f"{strategy} x1", srun_line(strategy, 1, 1), four.env))
                    cases[(strategy, "4x1")].append(
                        samples_per_s(cfg, f"{strategy} 4x1", srun_line(strategy, 4, 1), four.env))
                    cases[(strategy, "2x2")].append(
                        samples_per_s(cfg, f"{strategy} 2x2", srun_line(strategy, 2, 2), pairs.env))
                print(f"# round {round_ + 1} done", flush=True)
            half, whole, ceiling = (statistics.median(v) for v in (halves, wholes, together))
            print(f"{workload}: emulation: half a core / one core = {half / whole:.3f} (expected 0.5); "
                  f"4 half-core replicas at once / one alone = ceiling {ceiling / half:.3f} (expected >= 0.95)")
            print("workload strategy shape one_replica four_replicas efficiency of_ceiling")
            for (strategy, shape), rates in cases.items():
                one, four_ = statistics.median(ones[strategy]), statistics.median(rates)
                efficiency = four_ / (4 * one)
                print(f"{workload} {strategy} {shape} {one:.1f} {four_:.1f} ratio={efficiency:.3f} "
                      f"of_ceiling={efficiency / (ceiling / half):.3f}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--where", choices=("nodes", "four", "local"), default="nodes")
    parser.add_argument("--workloads", default="charrnn-gru,mlp,memnn")
    parser.add_argument("--strategies", default="mwms,horovod")
    parser.add_argument("--steps", type=int, default=30, help="steps per epoch (2 epochs; 5 warm-up)")
    parser.add_argument("--batch", type=int, default=64, help="per replica")
    parser.add_argument("--rate", help="emulated nodes: the links' rate (tc tbf), e.g. 300mbit")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs alternated this many times; the ratio of their medians")
    args = parser.parse_args()
    unknown = set(args.workloads.split(",")) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(sorted(unknown))}; choose from {', '.join(WORKLOADS)}")
    with tempfile.TemporaryDirectory() as work:
        (four_replicas if args.where == "four" else two_replicas)(args, work)
    return 0


if __name__ == "__main__":
    sys.exit(until_stopped(main))
