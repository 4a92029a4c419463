"""Keras callbacks of the harness: step timing, interruption, time-to-accuracy, checkpoints."""

from __future__ import annotations

import re
import time
from pathlib import Path

import keras


class StepTimer(keras.callbacks.Callback):
    """Times every training step with perf_counter; the first `warmup_steps` are kept
    apart (tracing, autotuning) and excluded from the statistics."""

    def __init__(self, warmup_steps: int) -> None:
        super().__init__()
        self.warmup_steps = warmup_steps
        self.rows: list[tuple[int, int, float, bool]] = []   # epoch, step, seconds, warm-up
        self.epoch_times: list[float] = []
        self.train_start = 0.0
        self._epoch = 0
        self._t_step = 0.0
        self._t_epoch = 0.0

    def on_train_begin(self, logs=None):
        self.train_start = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._t_epoch = time.perf_counter()

    def on_train_batch_begin(self, batch, logs=None):
        self._t_step = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        # Keras hands callbacks logs already converted to Python numbers, so the step's
        # computation has finished here (also on GPUs, where kernels run asynchronously).
        elapsed = time.perf_counter() - self._t_step
        self.rows.append((self._epoch, batch, elapsed, len(self.rows) < self.warmup_steps))

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_times.append(time.perf_counter() - self._t_epoch)

    @property
    def timed(self) -> list[float]:
        return [row[2] for row in self.rows if not row[3]]


class StopOnSignal(keras.callbacks.Callback):
    """Ends training after the current step once `flag()` is true (SIGTERM/SIGINT)."""

    def __init__(self, flag) -> None:
        super().__init__()
        self.flag = flag

    def on_train_batch_end(self, batch, logs=None):
        if self.flag():
            self.model.stop_training = True


class TimeToTarget(keras.callbacks.Callback):
    """Wall time from the start of training until `metric` first reaches `target`
    (checked at epoch ends, where validation metrics exist)."""

    def __init__(self, metric: str, target: float, clock_start, stop: bool = False) -> None:
        super().__init__()
        self.metric, self.target, self.clock_start, self.stop = metric, target, clock_start, stop
        self.seconds: float | None = None
        self.epoch: int | None = None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.metric)
        if self.seconds is None and value is not None and value >= self.target:
            self.seconds = time.perf_counter() - self.clock_start()
            self.epoch = epoch + 1
            if self.stop:
                self.model.stop_training = True


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves model and optimizer state every `every` epochs as `epoch-NNNN.weights.h5`."""

    def __init__(self, directory: Path, every: int) -> None:
        super().__init__()
        self.directory, self.every = Path(directory), every
        self.saved: list[str] = []

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every == 0:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / checkpoint_name(epoch + 1)
            tmp = path.with_name(".tmp-" + path.name)
            self.model.save_weights(tmp)
            tmp.replace(path)
            self.saved.append(str(path))


def checkpoint_name(epoch: int) -> str:
    return f"epoch-{epoch:04d}.weights.h5"


def checkpoint_epoch(path: Path) -> int:
    match = re.fullmatch(r"epoch-(\d+)\.weights\.h5", Path(path).name)
    if not match:
        raise ValueError(f"{path}: not a distbench checkpoint (epoch-NNNN.weights.h5)")
    return int(match.group(1))


def latest_checkpoint(directory: Path) -> Path | None:
    found = sorted(Path(directory).glob("epoch-*.weights.h5"), key=checkpoint_epoch)
    return found[-1] if found else None
