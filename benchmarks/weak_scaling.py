"""Weak-scaling efficiency 1 -> 2 replicas, each replica on its own core, in one run:

    efficiency = samples/s (2 replicas) / (2 x samples/s (1 replica)), same strategy, same
                 per-replica batch, same steps; medians of --repeat alternated runs

on the emulated 2-node cluster (one replica per node, `--where nodes`, the default) or on
this host with bound local workers (`--where local`). The goal (issue 13) is >= 0.90 for
charrnn-gru (GRU 256, batch 64 per replica) under mwms and horovod on an unshaped link.

    .venv/bin/python benchmarks/weak_scaling.py                         # nodes; GRU 256, mlp, memnn
    .venv/bin/python benchmarks/weak_scaling.py --where local --workloads charrnn-gru
    .venv/bin/python benchmarks/weak_scaling.py --rate 300mbit          # a shaped link
"""

from __future__ import annotations

import argparse
import functools
import statistics
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


def on_nodes(cluster: EmulatedCluster, cfg: dict, replicas: int) -> float:
    mpi = ["--mpi=pmix"] if cfg["strategy"] == "horovod" else []
    return samples_per_s(cfg, f"srun {cfg['strategy']} x{replicas}",
                         ["srun", f"-N{replicas}", f"-n{replicas}", "-c1", *mpi], cluster.env)


def local(cfg: dict, replicas: int) -> float:
    return samples_per_s({**cfg, "local_workers": replicas}, f"{cfg['strategy']} x{replicas}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--where", choices=("nodes", "local"), default="nodes")
    parser.add_argument("--workloads", default="charrnn-gru,mlp,memnn")
    parser.add_argument("--strategies", default="mwms,horovod")
    parser.add_argument("--steps", type=int, default=30, help="steps per epoch (2 epochs; 5 warm-up)")
    parser.add_argument("--batch", type=int, default=64, help="per replica")
    parser.add_argument("--rate", help="nodes: the links' rate (tc tbf), e.g. 300mbit")
    parser.add_argument("--repeat", type=int, default=3,
                        help="1- and 2-replica runs alternated this many times; the ratio of their medians")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
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
    return 0


if __name__ == "__main__":
    sys.exit(until_stopped(main))
