"""Keras callbacks of the harness: step timing, interruption, time-to-accuracy, checkpoints."""

from __future__ import annotations

import re
import statistics
import time
from pathlib import Path
from typing import NamedTuple

import keras

from bench.core.record import checkpoint_name


class StepRow(NamedTuple):
    epoch: int
    step: int
    seconds: float
    warmup: bool


class StepTimer(keras.callbacks.Callback):
    """Times every training step with perf_counter; the first `warmup_steps` are kept
    apart (tracing, autotuning) and excluded from the statistics.

    A step is timed from its `on_train_batch_begin` to the next one (or, for an epoch's
    last step, to the start of validation or the epoch's end), all on the training thread.
    No `on_train_batch_end` hook: defining one turns off Keras' asynchronous callback
    dispatch, which costs ~13% per step on a GRU 1024 here (measured). At each epoch's end
    Keras waits for every step's outputs, so epoch times are exact also on GPUs, where
    kernels run asynchronously.
    """

    def __init__(self, warmup_steps: int) -> None:
        super().__init__()
        self.warmup_steps = warmup_steps
        self.rows: list[StepRow] = []
        self.epoch_times: list[float] = []         # whole epochs, validation included
        self.epoch_train_times: list[float] = []   # the epochs' training steps alone
        self.train_start = 0.0
        self.last_step_end = 0.0                   # perf_counter when a step last ended (or training began)
        self.longest_step = 0.0
        self.timed_start: float | None = None      # perf_counter when the first timed step began
        self._epoch = 0
        self._in_steps = False
        self._open: tuple[int, float] | None = None           # (step, start) of the running step
        self._t_epoch = 0.0

    def on_train_begin(self, logs=None):
        self.train_start = self.last_step_end = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._t_epoch = time.perf_counter()
        self._in_steps = True

    def on_train_batch_begin(self, batch, logs=None):
        now = time.perf_counter()
        self._close(now)
        self._open = (batch, now)
        if self.timed_start is None and len(self.rows) >= self.warmup_steps:
            self.timed_start = now

    def on_test_begin(self, logs=None):
        self._end_steps(time.perf_counter())

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        self._end_steps(now)
        self.epoch_times.append(now - self._t_epoch)

    def _end_steps(self, now: float) -> None:
        """The epoch's training steps are over (validation starts, or the epoch ends)."""
        self._close(now)
        if self._in_steps:
            self.epoch_train_times.append(now - self._t_epoch)
            self._in_steps = False

    def on_train_end(self, logs=None):
        self._close(time.perf_counter())

    def _close(self, now: float) -> None:
        if self._open is not None:
            step, start = self._open
            self.rows.append(StepRow(self._epoch, step, now - start, len(self.rows) < self.warmup_steps))
            self.last_step_end, self.longest_step = now, max(self.longest_step, now - start)
            self._open = None

    @property
    def timed(self) -> list[float]:
        return [row.seconds for row in self.rows if not row.warmup]


class StopOnSignal(keras.callbacks.Callback):
    """Ends training after the current step once `flag()` is true (SIGTERM/SIGINT).
    Checked when a step begins: Keras ends the loop once that step is done.

    With several workers (`agree` given), they must stop after the same step, or one of
    them waits in an allreduce for a peer that left: every `every` steps all workers
    combine their flags in one small collective and stop together."""

    def __init__(self, flag, agree=None, every: int = 10) -> None:
        super().__init__()
        self.flag, self.agree, self.every = flag, agree, every
        self._steps = 0

    def on_train_batch_begin(self, batch, logs=None):
        self._steps += 1
        if self.agree is None:
            stop = self.flag()
        elif self._steps % self.every == 0:
            stop = self.agree(self.flag())
        else:
            return
        if stop:
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


class ProgressLines(keras.callbacks.Callback):
    """For job logs (`verbose: "log"`), where Keras' bar is one unreadable line: a line at each
    epoch's end and, in a long epoch, at least every `every_s` seconds: the step, samples/s over
    the timed steps so far, and the time left at that rate. Hooks step begins only (see StepTimer)."""

    def __init__(self, timer: StepTimer, epochs: int, steps: int, global_batch: int, initial_epoch: int = 0,
                 every_s: float = 30.0) -> None:
        super().__init__()
        self.timer, self.epochs, self.steps, self.global_batch, self.every_s = timer, epochs, steps, global_batch, every_s
        self._epoch, self._last = initial_epoch, time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if batch and time.perf_counter() - self._last >= self.every_s:
            self._line(self._epoch, batch)

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        self._line(epoch, self.steps, f", loss {loss:.4g}" if loss is not None else "")

    def _line(self, epoch: int, step: int, extra: str = "") -> None:
        self._last = time.perf_counter()
        timed = self.timer.timed
        step_s = statistics.median(timed) if timed else None
        left = ((self.epochs - epoch - 1) * self.steps + self.steps - step) * step_s if step_s else None
        rate = f"{self.global_batch / step_s:,.0f} samples/s" if step_s else "warming up"
        eta = f", {int(left // 60)} min {int(left % 60):02d} s left" if left is not None else ""
        print(f"epoch {epoch + 1}/{self.epochs} step {step}/{self.steps}: {rate}{eta}{extra}",
              flush=True)
