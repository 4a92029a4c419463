"""Weak-scaling efficiency in one run:

    efficiency = samples/s (N replicas) / (N x samples/s (1 replica)), same strategy, same
                 per-replica batch and share of a core, same steps; medians of --repeat
                 alternated runs

`--where nodes` (default): 1 -> 2 replicas on the emulated 2-node cluster, one core a node.
`--where four`: 1 -> 4 replicas at half a core each, in both of FinisTerrae III's shapes on
emulated nodes: 4 nodes x 1 (nodes of half a core, a cgroup's quota) and 2 nodes x 2 (nodes of
one core declaring 2 Slurm CPUs); printed beside the emulation's own figures, measured in the
same run: one 0.5-core replica against one 1-core replica (expected 0.5) and, in each shape, four
0.5-core replicas running at once against one alone (the ceiling: what 4 replicas could reach
with no communication at all; expected >= 0.95). `--where nodes` prints the 2-node ceiling
likewise. Goal (issue 25): charrnn-gru (GRU 256, 64 per
replica, unshaped) >= 0.85 of the ceiling for mwms and horovod in both shapes.
`--where local`: 1 -> 2 bound local workers on this host.

    .venv/bin/python benchmarks/weak_scaling.py                         # 2 nodes; GRU 256, mlp, memnn
    .venv/bin/python benchmarks/weak_scaling.py --where four --workloads charrnn-gru
    .venv/bin/python benchmarks/weak_scaling.py --where local --workloads charrnn-gru
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.tools.emucluster import EmulatedCluster  # noqa: E402
from benchrun import at_once, samples_per_s, until_stopped  # noqa: E402

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
                ones, twos, together = [], [], []
                for _ in range(args.repeat):        # alternated: a slow spell of the machine hits both
                    ones.append(measure(cfg, 1))
                    twos.append(measure(cfg, 2))
                    if cluster and strategy == args.strategies.split(",")[0]:
                        together.append(statistics.mean(at_once(config(workload, "default", cfg["results"], args),
                                                                cluster.hostnames, cluster.env)))
                one, two = statistics.median(ones), statistics.median(twos)
                print(f"{workload} {strategy} {one:.1f} {two:.1f} ratio={two / (2 * one):.3f} "
                      f"(each ratio: {' '.join(f'{b / (2 * a):.3f}' for a, b in zip(ones, twos))})", flush=True)
                if together:
                    alone = statistics.median(ones)
                    print(f"{workload}: emulation: 2 one-core default runs at once, one per node / {strategy} x1 "
                          f"alone = ceiling {statistics.median(together) / alone:.3f} (expected >= 0.95)", flush=True)
    finally:
        if cluster:
            cluster.stop()


def four_replicas(args, work: str) -> None:
    """1 -> 4 replicas at half a core each, 4 nodes x 1 and 2 nodes x 2, beside the emulation's
    own figures, all in alternated rounds: a replica of half a core against one of a whole core
    (two Slurm CPUs of a 2-slot node), and each shape's ceiling, 4 independent replicas at once
    (one a node, or two) against one alone."""
    with EmulatedCluster(Path(work) / "four", nodes=4, cores_per_node=0.5, rate=args.rate) as four, \
            EmulatedCluster(Path(work) / "pairs", nodes=2, cores_per_node=1, slots_per_node=2, rate=args.rate,
                            name="pair") as pairs:
        results = str(Path(work) / "results")
        shapes = {"4x1": (four, 4, 1), "2x2": (pairs, 2, 2)}
        for workload in args.workloads.split(","):
            base = config(workload, "default", results, args)
            halves, wholes = [], []
            together = {shape: [] for shape in shapes}
            cases = {(s, shape): [] for s in args.strategies.split(",") for shape in shapes}
            ones = {s: [] for s in args.strategies.split(",")}
            for round_ in range(args.repeat):
                halves += at_once(base, pairs.hostnames[:1], pairs.env)
                wholes += at_once(base, pairs.hostnames[:1], pairs.env, cpus=2)
                for shape, (cluster, nodes, per_node) in shapes.items():
                    hosts = [host for host in cluster.hostnames for _ in range(per_node)]
                    together[shape].append(statistics.mean(at_once(base, hosts, cluster.env)))
                for strategy in ones:
                    cfg = config(workload, strategy, results, args)
                    ones[strategy].append(samples_per_s(cfg, f"{strategy} x1", srun_line(strategy, 1, 1), four.env))
                    for shape, (cluster, nodes, per_node) in shapes.items():
                        cases[(strategy, shape)].append(samples_per_s(cfg, f"{strategy} {shape}",
                                                                      srun_line(strategy, nodes, per_node), cluster.env))
                print(f"# round {round_ + 1} done", flush=True)
            half, whole = statistics.median(halves), statistics.median(wholes)
            ceilings = {shape: statistics.median(rates) / half for shape, rates in together.items()}
            print(f"{workload}: emulation: half a core / one core = {half / whole:.3f} (expected 0.5); "
                  + "; ".join(f"{shape}: 4 half-core replicas at once / one alone = ceiling {c:.3f}"
                              for shape, c in ceilings.items()) + " (expected >= 0.95)")
            print("workload strategy shape one_replica four_replicas efficiency of_ceiling")
            for (strategy, shape), rates in cases.items():
                one, four_ = statistics.median(ones[strategy]), statistics.median(rates)
                efficiency = four_ / (4 * one)
                print(f"{workload} {strategy} {shape} {one:.1f} {four_:.1f} ratio={efficiency:.3f} "
                      f"of_ceiling={efficiency / ceilings[shape]:.3f}", flush=True)


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
