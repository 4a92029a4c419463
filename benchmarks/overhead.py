"""Harness overhead: the same model, batch and steps trained by a bare Keras `model.fit` and by
`bench run` (bench.run.runner.run), alternating in one process; prints ratio = bench / bare throughput.

Both are timed the same way: wall time of each epoch's training steps after the first epoch
(which holds tracing; bench's validation pass is left out, the bare loop has none),
so the ratio isolates what the harness adds (step timer, sampler thread, signal handling,
checkpoint/target callbacks). Both apply the embedding gradients the same way, dense as bench
does by default (`--sparse-gradients`: both as Keras' IndexedSlices): bench's dense path alone
made GRU 1024 1.22x faster than a bare fit with IndexedSlices, which is not the harness's
overhead. Goal: >= 0.98.

    .venv/bin/python benchmarks/overhead.py --workload charrnn-gru            # full size
    .venv/bin/python benchmarks/overhead.py --workload mlp --steps 400
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from bench import workloads  # noqa: E402
from bench.core import gradients  # noqa: E402
from bench.core.config import RunConfig  # noqa: E402
from bench.core.errors import UsageError  # noqa: E402
from bench.core.hparams import parse_set_options, resolve  # noqa: E402
from bench.run import runner  # noqa: E402


class EpochClock(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.t0)


def bare_epoch_times(cfg: RunConfig) -> list[float]:
    """What a user would write by hand: build, pipeline, model.fit. No harness."""
    workload = workloads.get(cfg.workload)
    hp = resolve(workload.space, cfg.overrides, workload.name)
    keras.utils.set_random_seed(cfg.seed)
    data = workload.load(cfg.data, cfg.data_dir, hp, cfg.seed)
    batch = cfg.batch_size or workload.default_batch_size
    model = workload.build(data, hp, batch)
    gradients.prepare_apply(model.optimizer, dense=not cfg.sparse_gradients)
    train = workload.dataset(data, "train", batch, hp, cfg.seed, training=True, repeat=True)
    clock = EpochClock()        # one iterator across epochs, as bench keeps it (a new one per epoch refills buffers)
    model.fit(train, epochs=cfg.epochs, steps_per_epoch=cfg.steps_per_epoch, callbacks=[clock, *workload.callbacks(hp)],
              verbose=0, shuffle=False)
    return clock.times[1:]


def bench_epoch_times(cfg: RunConfig) -> list[float]:
    result = runner.run(cfg)
    assert result.record.status == "ok", result.record.error
    return result.record.timing["epoch_train_times_s"][1:]   # bare does not validate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", default="charrnn-gru")
    parser.add_argument("--steps", type=int, default=20, help="steps per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="the first is warm-up")
    parser.add_argument("--trials", type=int, default=3, help="alternating bare/bench pairs")
    parser.add_argument("--data", default="real")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--set", action="append", dest="sets")
    parser.add_argument("--sparse-gradients", action="store_true",
                        help="both apply embedding gradients as IndexedSlices (default: both dense)")
    parser.add_argument("--sample-interval", type=float, default=1.0, help="bench's sampler period (s)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as results:
        cfg = RunConfig(workload=args.workload, epochs=args.epochs, steps_per_epoch=args.steps, data=args.data,
                        batch_size=args.batch_size, overrides=parse_set_options(args.sets), results=results,
                        verbose=0, warmup_steps=0, sample_interval_s=args.sample_interval,
                        sparse_gradients=args.sparse_gradients)
        bare, harness = [], []
        for trial in range(args.trials):
            bare += bare_epoch_times(cfg)
            harness += bench_epoch_times(cfg)
            print(f"trial {trial + 1}: bare {statistics.median(bare):.3f} s/epoch, "
                  f"bench {statistics.median(harness):.3f} s/epoch", flush=True)
    ratio = statistics.median(bare) / statistics.median(harness)
    print(f"workload={args.workload} steps/epoch={args.steps} epochs timed={len(bare)} each, embedding "
          f"gradients {'sparse' if args.sparse_gradients else 'dense'} in both")
    print(f"ratio={ratio:.3f}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UsageError as exc:       # missing data, unknown workload, bad --set: one line
        print(f"overhead.py: {exc}", file=sys.stderr)
        sys.exit(2)
