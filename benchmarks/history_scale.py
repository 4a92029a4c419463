"""The results database at scale (issue 28), in one run:

  import   10,000 records written as runs write them (record.json files) into a fresh database
           with `bench history import` (goal < 30 s);
  query    a filtered query (one case, 30 days, a tag) over 100,000 rows (goal < 1 s; the
           median of 5).

    .venv/bin/python benchmarks/history_scale.py
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.core import history  # noqa: E402
from bench.core.record import RunRecord, write_record  # noqa: E402

WORKLOADS = ("mlp", "memnn", "charrnn-gru", "charrnn-lstm")
STRATEGIES = ("default", "mirrored", "mwms", "horovod")


def records(count: int, seed: int = 0):
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for i in range(count):
        replicas = rng.choice((1, 2, 4, 8, 16, 32, 64))
        mean = rng.uniform(0.05, 1.0)
        yield RunRecord(
            run_id=f"run-{i:06d}", workload=rng.choice(WORKLOADS), strategy=rng.choice(STRATEGIES), status="ok",
            num_replicas=replicas, world_size=replicas, ranks_per_node=min(2, replicas),
            global_batch_size=64 * replicas, per_replica_batch_size=64,
            started_at=(start + timedelta(minutes=50 * i)).isoformat(timespec="seconds"),
            config={"results": f"study-{i // 100:04d}", "precision": "float32", "per_replica_batch_size": 64,
                    "tags": {"driver": rng.choice(("550", "555"))}},
            throughput={"samples_per_s": 64 * replicas / mean},
            timing={"step_time": {"median_s": mean, "mean_s": mean, "std_s": mean / 10, "count": 100, "p90_s": mean * 1.2}},
            provenance={"git": {"sha": "%040x" % rng.getrandbits(160), "dirty": False},
                        "packages": {"tensorflow": "2.21.0"}, "hostname": f"c{rng.randrange(100):03d}",
                        "slurm": {"SLURM_JOB_ID": str(100000 + i)}})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=10_000, help="written and imported")
    parser.add_argument("--rows", type=int, default=100_000, help="in the database queried")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        results = Path(work) / "results"
        for record in records(args.records):
            write_record(results, record)
        db_path = Path(work) / "import.db"
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "bench", "history", "import", str(results), "--db", str(db_path)],
                              capture_output=True, text=True)
        imported_s = time.perf_counter() - started
        if done.returncode:
            print(done.stdout + done.stderr)
            return 1
        print(f"import: {done.stdout.strip()}: {imported_s:.2f} s (goal < 30 s)")

        big = history.connect(Path(work) / "query.db")
        history.add(big, (history.row(r.to_dict(), results / r.run_id / "record.json") for r in records(args.rows, 1)))
        newest = max(r[0] for r in big.execute("SELECT started_at FROM records"))
        query = history.Query({"workload": "mlp", "strategy": "mwms", "replicas": 8},
                              since=history.parse_time("30d", "--since", now=datetime.fromisoformat(newest)),
                              tags={"driver": "550"})
        times, found = [], 0
        for _ in range(5):
            started = time.perf_counter()
            found = len(list(history.select(big, query)))
            times.append(time.perf_counter() - started)
        big.close()
        print(f"query: {found} of {args.rows:,} rows (mlp/mwms/8, last 30 days, driver=550): "
              f"median {statistics.median(times) * 1e3:.1f} ms of 5 (goal < 1 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
