"""PBT with and without reusing Ray's worker processes, in one run: wall time and worker
processes of the same study both ways (an exploit or a resume in a new process imports
TensorFlow again: ~4 s here).

    python benchmarks/pbt_reuse.py [--iterations 20] [--steps 20] [--data generated]

Ray schedules actors by itself, so the number of processes saved varies between runs;
both studies use the same seed. Prints ratio=<wall with reuse / wall without>.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from bench.study.tune import StudyConfig, iteration_log, run_study


def study(results: Path, reuse: bool, args) -> tuple[float, int, int]:
    cfg = StudyConfig("memnn", scheduler="pbt", samples=2, epochs=args.iterations,
                      steps_per_epoch=args.steps, synch=True, data=args.data, num_cpus=2,
                      results=str(results), reuse_workers=reuse)
    result = run_study(cfg)
    if result.exit_code != 0:
        raise SystemExit(f"study failed: {result.record.error}")
    rows = [json.loads(line) for trial in result.trials
            for line in iteration_log(cfg.results, result.record.run_id, trial.extra["trial_id"])
            .read_text().splitlines()]
    return result.record.timing["wall_s"], result.record.metrics.get("perturbations", 0), len({r["pid"] for r in rows})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--steps", type=int, default=20, help="training steps per iteration")
    parser.add_argument("--data", default="generated")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="distbench-pbt-reuse-"))
    try:
        walls = {}
        for reuse in (True, False):
            wall, perturbations, processes = study(root / str(reuse), reuse, args)
            walls[reuse] = wall
            print(f"reuse_workers={reuse}: {wall:.1f} s, {perturbations} perturbations, "
                  f"{processes} worker processes")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"ratio={walls[True] / walls[False]:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
