"""The configuration of one run: plain data, validated before anything runs or is written."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import UsageError
from bench.workloads.base import DATA_SOURCES

JIT_CHOICES = ("auto", "true", "false")


@dataclass
class RunConfig:
    workload: str
    strategy: str = "default"
    epochs: int = 1
    steps_per_epoch: int | None = None      # None: one pass over the training data
    batch_size: int | None = None           # global batch; None: per-replica x replicas or the workload's
    per_replica_batch_size: int | None = None
    devices: int | None = None
    seed: int = 0
    data: str = "real"
    data_dir: str | None = None
    results: str = "results"
    overrides: dict[str, str] = field(default_factory=dict)   # --set key=value
    warmup_steps: int = 5
    sample_interval_s: float = 1.0
    target_accuracy: float | None = None
    stop_at_target: bool = False            # train-to-accuracy: end once the target is reached
    jit_compile: str = "auto"               # Keras' default: XLA on GPUs, not on CPU
    checkpoint_every: int = 0               # epochs; 0 = no checkpoints
    resume: str | None = None               # checkpoint file or a run directory
    export: bool = False                    # char-RNNs: a SavedModel text generator
    scale_lr: bool = False                  # multi-worker: learning rate x number of workers
    merge_validation: bool = False          # train on training + validation data (retraining a best config)
    verbose: int | str = "auto"             # Keras progress output
    run_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        for name in ("epochs", "steps_per_epoch", "batch_size", "per_replica_batch_size", "devices"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UsageError(f"--{name.replace('_', '-')} {value}: must be >= 1")
        if self.warmup_steps < 0:
            raise UsageError(f"--warmup-steps {self.warmup_steps}: must be >= 0")
        if self.checkpoint_every < 0:
            raise UsageError(f"--checkpoint-every {self.checkpoint_every}: must be >= 0")
        if self.sample_interval_s <= 0:
            raise UsageError(f"--sample-interval {self.sample_interval_s}: must be > 0")
        if self.data not in DATA_SOURCES:
            raise UsageError(f"--data {self.data!r}: must be one of {', '.join(DATA_SOURCES)}")
        if self.jit_compile not in JIT_CHOICES:
            raise UsageError(f"--jit-compile {self.jit_compile!r}: must be one of {', '.join(JIT_CHOICES)}")
        if self.target_accuracy is not None and not 0 < self.target_accuracy <= 1:
            raise UsageError(f"--target-accuracy {self.target_accuracy}: must be in (0, 1]")
        if self.stop_at_target and self.target_accuracy is None:
            raise UsageError("--stop-at-target needs --target-accuracy")
        if self.batch_size and self.per_replica_batch_size:
            raise UsageError("give --batch-size (global) or --per-replica-batch-size, not both")
        if self.data_dir is not None and not Path(self.data_dir).is_dir():
            raise UsageError(f"--data-dir {self.data_dir}: no such directory")
        if self.resume is not None and not Path(self.resume).exists():
            raise UsageError(f"--resume {self.resume}: no such file or directory")
        results = Path(self.results)
        if results.exists() and not results.is_dir():
            raise UsageError(f"--results {self.results}: exists and is not a directory")

    @property
    def jit(self) -> bool | str:
        return {"auto": "auto", "true": True, "false": False}[self.jit_compile]
