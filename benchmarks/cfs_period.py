"""What the CFS period of a fractional core does to what the emulated cluster measures.

A half-core node is a cgroup allowed `0.5 x period` of CPU time per period. Over the kernel's
default period (100 ms) it runs 50 ms at full speed and then stands still for up to 50 ms; a
rank waiting on it in a collective stands still with it. Over 10 ms it is closer to a core of
half the speed. For each period, on 2 nodes of half a core each, in one run:

  - a 1-replica charrnn-gru run (GRU 256, 64 x 100): median step and p90 / median;
  - mlp at a per-replica batch of 4096 (a step near one period), 3 runs: their medians;
  - `bench comm` (mwms and horovod) between the two nodes, twice: the time of 1 and 2 MiB and
    how far the two measurements disagree.

Last lines: `spread ratio (10 ms / 100 ms) = X` (p90 / median - 1) and the allreduce ratio.

    .venv/bin/python benchmarks/cfs_period.py          # ~15 min
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.run import cgroups  # noqa: E402
from bench.tools.emucluster import EmulatedCluster  # noqa: E402
from benchrun import bench_record, run_record, until_stopped  # noqa: E402

CHARRNN = {"workload": "charrnn-gru", "strategy": "default", "data": "synthetic", "overrides": {"rnn_units": "256"},
           "epochs": 2, "steps_per_epoch": 15, "per_replica_batch_size": 64, "verbose": 0}
MLP = {"workload": "mlp", "strategy": "default", "data": "generated", "epochs": 2, "steps_per_epoch": 20,
       "per_replica_batch_size": 4096, "verbose": 0}
MLP_RUNS = 3
COMM = ["--min-bytes", str(1 << 20), "--max-bytes", str(2 << 20), "--warmup", "3", "--iters", "20"]
SRUN_ONE = ["srun", "-N1", "-n1", "-c1"]
SRUN_TWO = ["srun", "-N2", "--ntasks-per-node", "1", "-c1", "--mpi=pmix"]


def measure(period_us: int, strategies: list[str], work: Path) -> dict:
    os.environ[cgroups.PERIOD_ENV] = str(period_us)
    results = str(work / f"results{period_us}")
    out = {"comm": {}}
    with EmulatedCluster(work / f"c{period_us}", nodes=2, cores_per_node=0.5, name=f"p{period_us // 1000}") as nodes:
        timing = run_record({**CHARRNN, "results": results}, "charrnn 1x1", SRUN_ONE, nodes.env)["timing"]
        out["median_s"], out["p90_s"] = timing["step_time"]["median_s"], timing["step_time"]["p90_s"]
        # a step near one period long: how far apart the same run's medians land
        out["mlp_s"] = [run_record({**MLP, "results": results}, "mlp 1x1", SRUN_ONE, nodes.env)["timing"]
                        ["step_time"]["median_s"] for _ in range(MLP_RUNS)]
        for strategy in [s for s in strategies if s]:
            out["comm"][strategy] = [
                {row["bytes"]: row["time_us"] for row in bench_record(
                    ["comm", "--strategy", strategy, *COMM, "--results", results], f"comm {strategy}", SRUN_TWO,
                    nodes.env)["metrics"]["allreduce"]}
                for _ in range(2)]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--periods", default="100000,10000", help="CFS periods in us, the kernel default first")
    parser.add_argument("--strategies", default="mwms,horovod", help="'' for no bench comm")
    args = parser.parse_args()
    periods = [int(p) for p in args.periods.split(",")]
    strategies = args.strategies.split(",")
    found = {}
    with tempfile.TemporaryDirectory() as work:
        for period in periods:
            found[period] = measure(period, strategies, Path(work))
            m = found[period]
            print(f"period {period // 1000} ms: charrnn step median {m['median_s'] * 1e3:.0f} ms, "
                  f"p90/median {m['p90_s'] / m['median_s']:.3f}; mlp (batch 4096) medians of {MLP_RUNS} runs "
                  + " / ".join(f"{t * 1e3:.0f}" for t in m["mlp_s"]) + " ms", flush=True)
            for strategy, runs in m["comm"].items():
                sizes = sorted(runs[0])
                print(f"  {strategy} allreduce " + ", ".join(
                    f"{size / 2**20:g} MiB {runs[0][size] / 1e3:.1f} / {runs[1][size] / 1e3:.1f} ms" for size in sizes),
                    flush=True)
    first, last = found[periods[0]], found[periods[-1]]
    spread = (last["p90_s"] / last["median_s"] - 1) / max(first["p90_s"] / first["median_s"] - 1, 1e-9)
    print(f"spread ratio ({periods[-1] // 1000} ms / {periods[0] // 1000} ms) = {spread:.3f}")
    runs = {p: max(found[p]["mlp_s"]) / min(found[p]["mlp_s"]) for p in (periods[0], periods[-1])}
    print(f"mlp max/min of {MLP_RUNS} runs' medians: {runs[periods[0]]:.3f} at {periods[0] // 1000} ms, "
          f"{runs[periods[-1]]:.3f} at {periods[-1] // 1000} ms")
    for strategy in [s for s in strategies if s]:
        def mean(m):
            return sum(t for run in m["comm"][strategy] for t in run.values()) / sum(len(r) for r in m["comm"][strategy])
        print(f"{strategy} allreduce ratio ({periods[-1] // 1000} ms / {periods[0] // 1000} ms) = "
              f"{mean(last) / mean(first):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(until_stopped(main))
