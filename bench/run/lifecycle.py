"""One record lifecycle for runs, studies, trials and `bench comm`:

    with Lifecycle(results, record) as life:      # writes the record with status "running"
        ...                                       # SIGTERM / SIGINT noted (life.signals)
        life.ok()  |  life.interrupted(signum)    # or an exception: failed, with one error line
    life.exit_code                                # 0 ok, 1 failed, 128 + signal interrupted

On the way out the record gets its status, error line, finish time and wall time, then one
atomic write, whatever happened inside. A first SIGTERM (Slurm's time limit, scancel) or
SIGINT (Ctrl-C) is only noted, so that the work can stop at an agreed point; a second one
raises KeyboardInterrupt; once interrupted, later signals are absorbed until the process
has written its record and exits.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from bench.core import history
from bench.core.errors import UsageError
from bench.core.record import (STATUS_FAILED, STATUS_INTERRUPTED, STATUS_NO_TIMED_STEPS, STATUS_OK, STATUS_RUNNING,
                               RunRecord, run_dir, utc_now, write_record)

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Signals:
    """SIGTERM and SIGINT noted in `received`; `on_first(signum)` is called on the first one
    (e.g. to pass it on to Ray Tune), a second raises KeyboardInterrupt."""

    def __init__(self, on_first: Callable[[int], None] | None = None) -> None:
        self.received: int | None = None
        self.on_first = on_first
        self._previous: dict[int, Any] = {}

    def install(self, on_first: Callable[[int], None] | None = None) -> None:
        """Bind (again: a library may have installed handlers of its own since) the handlers."""
        if on_first is not None:
            self.on_first = on_first
        for signum in SIGNALS:
            previous = signal.signal(signum, self._handle)
            self._previous.setdefault(signum, previous)

    def restore(self) -> None:
        if self.received is not None:
            # interrupted: the record and the exit code are still to come, and launchers or
            # Slurm may send more signals: absorb them instead of dying mid-write
            for signum in self._previous:
                signal.signal(signum, lambda *args: None)
            return
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum
        if self.on_first is not None:
            self.on_first(signum)


def exit_code(status: str, signum: int | None = None) -> int:
    if status == STATUS_OK:
        return 0
    if status == STATUS_INTERRUPTED:
        return 128 + (signum or signal.SIGINT)
    return 1


ERROR_LIMIT = 400


def one_line(text: str, limit: int = ERROR_LIMIT) -> str:
    """A record's error line: whitespace folded, at most `limit` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def error_line(exc: BaseException, limit: int = ERROR_LIMIT) -> str:
    """`Type: message` in one line: TensorFlow's errors can hold whole tensors and traces."""
    return one_line(f"{type(exc).__name__}: {_reason(exc)}", limit)


def _reason(exc: BaseException) -> str:
    """TensorFlow op errors put the cause after a trace of where the op was defined
    ("Detected at node ... defined at ..."); keep the cause."""
    text = str(exc)
    if "Detected at node" in text:
        lines = [line.strip() for line in text.splitlines()]
        tail = [line for line in lines[lines.index("") if "" in lines else 0:] if line]
        causes = [line for line in tail if not line.startswith(("File ", "[[", "Detected at node"))]
        return " ".join(causes[-4:]) if causes else text
    return text


def finish(results: str | Path, record: RunRecord) -> Path:
    """The final, atomic write of a record whose status is decided, then its row in the
    results database (`bench.core.history`; a database that cannot be written is a warning)."""
    record.finished_at = record.finished_at or utc_now()
    path = write_record(results, record)
    history.index_written(record.to_dict(), path, results)
    return path


class Watchdog:
    """A run blocked in a collective whose peer is gone (a dead node, a cut link) cannot
    stop at the next step: its main thread never returns to Python, and Slurm's SIGKILL
    follows its SIGTERM after KillWait seconds, leaving the record "running". After a first
    signal, this thread (woken by the signal itself through the wakeup fd, which works while
    the main thread is blocked in C++) waits for a step to end; when none ends within
    max(grace, 2 x the longest step), it writes the record as failed and ends the process.
    `progress()` gives (when a step last ended, the longest step), in perf_counter seconds."""

    def __init__(self, progress: Callable[[], tuple[float, float]],
                 grace_s: float = float(os.environ.get("DISTBENCH_STOP_GRACE", "3"))) -> None:
        self.progress, self.grace_s = progress, grace_s
        self.done = threading.Event()
        self._read = self._write = -1
        self._previous_fd = -1

    def start(self, life: "Lifecycle") -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self._previous_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        threading.Thread(target=self._watch, args=(life,), name="distbench-watchdog", daemon=True).start()

    def stop(self) -> None:
        self.done.set()
        if self._write >= 0:
            signal.set_wakeup_fd(self._previous_fd)
            os.write(self._write, b"\0")        # wake the thread, which then leaves

    def _watch(self, life: "Lifecycle") -> None:
        select.select([self._read], [], [])
        if self.done.is_set():
            return
        signum = os.read(self._read, 1)[0] or signal.SIGTERM
        signalled = time.perf_counter()
        while not self.done.wait(0.2):
            last_step_end, longest = self.progress()
            waited = time.perf_counter() - max(last_step_end, signalled)
            if waited > max(self.grace_s, 2 * longest):
                life.abandon(signum, f"stopped by {signal.Signals(signum).name} with no step ending for "
                                     f"{waited:.0f} s (a collective waits for a peer that is gone)")


class Lifecycle:
    """See the module's docstring. `writer=False` (a non-chief rank) writes nothing;
    `before_write(record)` adds measurements just before the final write, also after a
    failure; a UsageError raised inside (bad input found late) removes what was written
    when `discard_bad_input`, else records it as failed, and is raised again."""

    def __init__(self, results: str | Path, record: RunRecord, writer: bool = True,
                 before_write: Callable[[RunRecord], None] | None = None, discard_bad_input: bool = False,
                 on_first_signal: Callable[[int], None] | None = None, watchdog: Watchdog | None = None) -> None:
        self.results, self.record, self.writer = results, record, writer
        self.watchdog = watchdog
        self._finish_lock = threading.Lock()
        self.before_write = before_write
        self.discard_bad_input = discard_bad_input
        self.signals = Signals(on_first_signal)
        self.exit_code = 1
        self.path = run_dir(results, record.run_id) / "record.json"
        self._started = 0.0

    def __enter__(self) -> "Lifecycle":
        self.record.status = STATUS_RUNNING
        if self.writer:
            self.path = write_record(self.results, self.record)     # a killed job leaves a trace
        self._started = time.perf_counter()
        self.signals.install()
        if self.watchdog is not None:
            self.watchdog.start(self)
        return self

    def abandon(self, signum: int, error: str) -> None:
        """From the watchdog's thread: the record says failed, and the process ends now."""
        with self._finish_lock:
            self.failed(error)
            self._close()
            os._exit(128 + signum)

    def ok(self) -> None:
        self._set(STATUS_OK, None)

    def interrupted(self, signum: int | None = None, why: str | None = None) -> None:
        signum = signum or self.signals.received or signal.SIGTERM
        self._set(STATUS_INTERRUPTED, why or f"interrupted by {signal.Signals(signum).name}", signum)

    def failed(self, error: str) -> None:
        self._set(STATUS_FAILED, error)

    def no_timed_steps(self, steps: int, warmup: int) -> None:
        """Trained, but every step was warm-up: exit 1, and the one line says what to change."""
        self._set(STATUS_NO_TIMED_STEPS, f"all {steps} steps were warm-up (--warmup-steps {warmup}): "
                                         f"lower it below {steps}, or run more steps")

    def _set(self, status: str, error: str | None, signum: int | None = None) -> None:
        self.record.status, self.record.error = status, error
        self.exit_code = exit_code(status, signum)

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self.watchdog is not None:
            self.watchdog.stop()
        with self._finish_lock:         # the watchdog, if it fired, has written the record
            self.signals.restore()
            return self._conclude(exc_type, exc, tb)

    def _conclude(self, exc_type, exc, tb) -> bool:
        """Status from how the body ended, then the final write; True swallows the exception."""
        swallow = True
        if exc_type is None:
            if self.record.status == STATUS_RUNNING:
                self.failed("ended without a status")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.interrupted(self.signals.received or signal.SIGINT,
                             "interrupted by a second signal" if self.signals.received else None)
        elif issubclass(exc_type, UsageError):
            swallow = False
            if self.discard_bad_input:
                if self.writer:
                    shutil.rmtree(self.path.parent, ignore_errors=True)
                return False
            self.failed(f"bad input: {exc}")
        elif issubclass(exc_type, Exception):
            self.failed(error_line(exc))
            self.record.extra["traceback"] = "".join(traceback.format_exception(exc_type, exc, tb, limit=-25))
        else:
            swallow = False         # SystemExit and the like: record and pass on
            self.failed(f"{exc_type.__name__}")
        self._close()
        return swallow

    def _close(self) -> None:
        self.record.finished_at = utc_now()
        self.record.timing["wall_s"] = time.perf_counter() - self._started
        if self.before_write is not None:
            try:
                self.before_write(self.record)
            except Exception as exc:        # measurements must not cost the record
                self.record.extra["measurement_error"] = error_line(exc)
        if self.writer:
            self.path = finish(self.results, self.record)
