"""The result record: plain data shared by every layer, one JSON file per run.

Layout: ``<results>/<run_id>/record.json`` plus timeseries CSVs beside it.
Writes are atomic (temp file in the same directory, fsync, rename), so many
concurrent jobs writing into one results directory never tear a record.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
import os
import re
import socket
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

SCHEMA_VERSION = 1
RECORD_FILE = "record.json"

STATUS_RUNNING = "running"
STATUS_OK = "ok"
STATUS_FAILED = "failed"
STATUS_INTERRUPTED = "interrupted"
STATUS_NO_TIMED_STEPS = "no_timed_steps"     # trained, but every step was warm-up: nothing measured
STATUSES = (STATUS_RUNNING, STATUS_OK, STATUS_FAILED, STATUS_INTERRUPTED, STATUS_NO_TIMED_STEPS)


def new_run_id(kind: str = "run") -> str:
    """Unique across concurrent jobs and hosts: UTC time, host, pid and random bits."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    host = socket.gethostname().split(".")[0].replace("_", "-") or "host"
    return f"{kind}-{stamp}-{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


# What every table of records (analysis.summary, bench.core.history) derives from a record alike

def scaling_of(config: dict[str, Any]) -> str:
    """A fixed per-replica batch is weak scaling; a fixed global batch strong scaling."""
    return "weak" if config.get("per_replica_batch_size") else "strong"


def nodes_of(world_size: int | None, ranks_per_node: int | None) -> int:
    return max(1, (world_size or 1) // max(1, ranks_per_node or 1))


def overrides_text(config: dict[str, Any]) -> str:
    """The run's `--set` overrides as one sorted "k=v k=v" string ("" for none)."""
    return " ".join(f"{k}={v}" for k, v in sorted((config.get("overrides") or {}).items()))


def tensorflow_version(packages: dict[str, str]) -> str | None:
    return packages.get("tensorflow") or packages.get("tensorflow-cpu")


@dataclass
class RunRecord:
    run_id: str
    workload: str
    strategy: str
    kind: str = "run"
    schema_version: int = SCHEMA_VERSION
    status: str = STATUS_RUNNING
    error: str | None = None
    started_at: str = field(default_factory=utc_now)
    finished_at: str | None = None
    data_source: str | None = None
    data_location: str | None = None
    world_size: int = 1            # processes
    num_replicas: int = 1          # devices training in sync
    ranks_per_node: int = 1
    devices: list[str] = field(default_factory=list)
    global_batch_size: int | None = None
    per_replica_batch_size: int | None = None
    config: dict[str, Any] = field(default_factory=dict)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, Any] = field(default_factory=dict)
    throughput: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    history: dict[str, list[float]] = field(default_factory=dict)
    gpu: dict[str, Any] = field(default_factory=dict)
    host: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def outcome_line(self) -> str | None:
        """What a run says at its end: its throughput and median step, or why it did not end ok."""
        if self.status != "ok":
            return f"bench: run {self.status}" + (f": {self.error}" if self.error else "")
        samples_per_s = self.throughput.get("samples_per_s")
        step_s = self.timing.get("step_time", {}).get("median_s")
        if not (samples_per_s and step_s):
            return None
        return (f"{self.workload} / {self.strategy} x{self.num_replicas}: {samples_per_s:,.1f} samples/s, "
                f"median step {step_s * 1e3:.1f} ms")

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=_jsonable)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunRecord":
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(f"unsupported schema_version {version!r} (this distbench reads {SCHEMA_VERSION})")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown record fields: {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> "RunRecord":
        return cls.from_dict(json.loads(text))


def _jsonable(value: Any) -> Any:
    """numpy scalars and paths reach records from measurement code."""
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def atomic_write_text(path: Path, text: str) -> None:
    """Write so that readers see either the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~umask())      # mkstemp makes 0600: a group's results stay readable
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def umask() -> int:
    """The process's umask, read without changing it (os.umask sets while it reads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def run_dir(results: Path | str, run_id: str) -> Path:
    return Path(results) / run_id


def write_record(results: Path | str, record: RunRecord) -> Path:
    path = run_dir(results, record.run_id) / RECORD_FILE
    atomic_write_text(path, record.to_json())
    return path


def read_record(path: Path | str) -> RunRecord:
    return RunRecord.from_json(Path(path).read_text(encoding="utf-8"))


def write_csv(path: Path | str, header: list[str], rows: Iterable[Iterable[Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_text(Path(path), buffer.getvalue())


def iter_record_paths(results: Path | str) -> Iterable[Path]:
    yield from sorted(Path(results).rglob(RECORD_FILE))


# --- checkpoints of a run (bench run --checkpoint-every): epoch-NNNN.weights.h5 ---------

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
