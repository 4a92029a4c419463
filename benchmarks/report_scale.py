"""Time `bench report` and `bench predict` on 10,000 synthetic records in the real schema
(goal: each < 10 s here).

    python benchmarks/report_scale.py [--records 10000]

Records: 4 workloads x 4 strategies x GPU counts 1-32 x repeats, with step-time and
throughput summaries and provenance as real runs write them (no steps.csv: the report reads
those for a few runs per case only). Prints the figure measured in this one run.
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from pathlib import Path

from bench.core.record import RunRecord, write_record

WORKLOADS = ("mlp", "memnn", "charrnn-gru", "charrnn-lstm")
STRATEGIES = ("default", "mirrored", "mwms", "horovod")
GPUS = (1, 2, 4, 8, 16, 32)


def synthetic_records(count: int, seed: int = 0):
    rng = random.Random(seed)
    for i in range(count):
        workload, strategy = WORKLOADS[i % 4], STRATEGIES[(i // 4) % 4]
        gpus = 1 if strategy == "default" else GPUS[(i // 16) % len(GPUS)]
        step = 0.1 * (1 + 0.1 * rng.random()) * (1 + 0.05 * gpus)
        yield RunRecord(
            run_id=f"run-{i:06d}", workload=workload, strategy=strategy, status="ok", num_replicas=gpus,
            world_size=gpus, ranks_per_node=min(gpus, 2), global_batch_size=64 * gpus, per_replica_batch_size=64,
            config={"per_replica_batch_size": 64, "epochs": 1},
            timing={"steps": 100, "warmup_steps": 5,
                    "step_time": {"count": 95, "median_s": step, "p90_s": step * 1.1, "mean_s": step}},
            throughput={"samples_per_s": 64 * gpus / step, "samples_per_s_per_device": 64 / step},
            metrics={"final_loss": rng.random()},
            extra={"parameters": 4_000_000, **({} if strategy == "default" else {"allreduce": {"cpu": "ring", "gpu": "nccl"}})},
            provenance={"hostname": f"c{i % 64:03d}", "packages": {"tensorflow": "2.21.0"},
                        "slurm": {"SLURM_JOB_ID": str(100000 + i)}, "git": {"sha": "0" * 40}, "gpu_models": []})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    args = parser.parse_args()
    from analysis import report
    root = Path(tempfile.mkdtemp(prefix="distbench-report-scale-"))
    try:
        for record in synthetic_records(args.records):
            write_record(root / "results", record)
        start = time.perf_counter()
        built = report.build([str(root / "results")], root / "report", report.Options(bandwidth_GBps=100.0))
        seconds = time.perf_counter() - start
        sizes = f"report.html {built.html.stat().st_size / 1e6:.2f} MB, report.md {built.markdown.stat().st_size / 1e3:.0f} kB"
        from analysis import whatif
        start = time.perf_counter()
        prediction, _ = whatif.from_results([str(root / "results")], "ft3", [8, 16, 32, 64])
        predict_seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"bench report on {args.records} records: {seconds:.2f} s (goal < 10 s); ratio goal/measured={10 / seconds:.2f}; "
          f"{sizes}")
    print(f"bench predict --profile ft3 --gpus 8,16,32,64 on {args.records} records: {predict_seconds:.2f} s "
          f"(goal < 10 s; {len(prediction)} rows); ratio goal/measured={10 / predict_seconds:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
