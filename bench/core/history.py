"""Every record in an embedded database: an index over the JSON records, for history, trends
and regressions across studies (`bench history`, `bench compare --baseline last:5`).

The JSON records stay the source of truth: the database holds a row per record (the fields a
comparison needs, and the record's path) and `rebuild` recreates it from them. Python's own
`sqlite3`, no ORM: one table, its schema version in `PRAGMA user_version`. Rows are keyed by the
record's path, so indexing a record again replaces its row (a run's end after its start) and
importing a directory twice adds nothing.

Many writers at once (a job array's 32 ranks finishing together) wait for each other through
SQLite's busy timeout. The journal is SQLite's default rollback journal, not WAL: WAL needs
memory shared between the writers' hosts, which a cluster's network filesystem does not give
(ReFrame's docs warn that its database hangs on filesystems without locking; point
`DISTBENCH_DB` at a local disk there). A database that cannot be written is one warning line:
the record is written all the same and the run's exit code does not change.

No TensorFlow here: a login node lists, filters and compares history.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import sqlite3
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

from bench.core.errors import UsageError
from bench.core.record import iter_record_paths, nodes_of, overrides_text, scaling_of, tensorflow_version

SCHEMA_VERSION = 1
DB_ENV = "DISTBENCH_DB"
DB_FILE = "distbench.db"
BUSY_TIMEOUT_S = 60.0

# name -> SQL type; the order is the table's
COLUMNS = {
    "path": "TEXT PRIMARY KEY", "run_id": "TEXT", "kind": "TEXT", "study": "TEXT", "status": "TEXT",
    "workload": "TEXT", "strategy": "TEXT", "precision": "TEXT", "tf32": "TEXT", "jit": "TEXT",
    "data_source": "TEXT", "overrides": "TEXT", "scaling": "TEXT",
    "replicas": "INTEGER", "nodes": "INTEGER", "ranks_per_node": "INTEGER", "gpus": "INTEGER", "gpu_model": "TEXT",
    "per_replica_batch": "INTEGER", "global_batch": "INTEGER",
    "samples_per_s": "REAL", "samples_per_s_low": "REAL", "samples_per_s_high": "REAL",
    "step_median_s": "REAL", "step_p90_s": "REAL", "step_mean_s": "REAL", "step_std_s": "REAL",
    "timed_steps": "INTEGER", "hostname": "TEXT", "cluster": "TEXT", "slurm_job": "TEXT",
    "tensorflow": "TEXT", "keras": "TEXT", "horovod": "TEXT", "ray": "TEXT", "python": "TEXT",
    "git_sha": "TEXT", "git_dirty": "INTEGER", "started_at": "TEXT", "finished_at": "TEXT", "tags": "TEXT",
}
# the frameworks whose versions a row holds (a column each), as the record's packages name them
FRAMEWORKS = ("tensorflow", "keras", "horovod", "ray")
# what `bench history` filters on, and the column each reads
FILTERS = ("workload", "strategy", "replicas", "study", "status", "kind")


class HistoryError(UsageError):
    """A database that cannot be used as one: not SQLite, of a newer schema, unreadable."""


def location(results: str | Path | None = None, explicit: str | Path | None = None) -> Path:
    """Where the database is: `--db PATH`, else $DISTBENCH_DB (a group's shared one), else the
    first `distbench.db` in the results directory or above it (as git finds its repository:
    studies under `results/` share `results/distbench.db` once it exists), else a new one
    beside the results (`<results>/distbench.db`)."""
    chosen = explicit or os.environ.get(DB_ENV)
    if chosen:
        return Path(chosen)
    results = Path(results if results is not None else os.environ.get("DISTBENCH_RESULTS", "results"))
    start = results.resolve()
    for folder in (start, *start.parents):
        if (folder / DB_FILE).is_file():
            return folder / DB_FILE
    return results / DB_FILE


def connect(path: str | Path, create: bool = True) -> sqlite3.Connection:
    """The database at `path`, its table created if new; a file that is not a database of a
    schema this version reads is one HistoryError."""
    path = Path(path)
    if not path.exists() and not create:
        raise HistoryError(f"{path}: no results database (create it with: bench history import RESULTS)")
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            db.close()
            raise HistoryError(f"{path}: results database of schema {version}, newer than this distbench's "
                               f"{SCHEMA_VERSION}: upgrade distbench, or use another --db")
        if version < SCHEMA_VERSION:
            _create(db)
    except sqlite3.DatabaseError as exc:
        raise HistoryError(f"{path}: not a usable results database ({exc}); recreate it with: "
                           f"bench history rebuild RESULTS --db {path}") from None
    return db


@contextlib.contextmanager
def opened(path: str | Path, create: bool = True) -> Iterator[sqlite3.Connection]:
    """`connect`, closed on the way out."""
    db = connect(path, create)
    try:
        yield db
    finally:
        db.close()


def _create(db: sqlite3.Connection) -> None:
    db.execute("BEGIN IMMEDIATE")
    try:
        if db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:     # not created meanwhile
            db.execute(f"CREATE TABLE IF NOT EXISTS records ({', '.join(f'{n} {t}' for n, t in COLUMNS.items())})")
            db.execute("CREATE INDEX IF NOT EXISTS records_case ON records (workload, strategy, replicas, started_at)")
            db.execute("CREATE INDEX IF NOT EXISTS records_time ON records (started_at)")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


# --- rows ------------------------------------------------------------------------------

def row(record: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """A record (as its JSON holds it) as the database's row."""
    config = record.get("config") or {}
    timing = record.get("timing") or {}
    step = timing.get("step_time") or {}
    provenance = record.get("provenance") or {}
    packages = provenance.get("packages") or {}
    git = provenance.get("git") or {}
    slurm = provenance.get("slurm") or {}
    replicas = record.get("num_replicas") or 1
    ranks_per_node = record.get("ranks_per_node") or 1
    gpu_models = provenance.get("gpu_models") or []
    low, high = _interval(record.get("global_batch_size"), step)
    results = config.get("results")
    return {
        "path": str(Path(path).resolve()), "run_id": record.get("run_id"), "kind": record.get("kind", "run"),
        "study": Path(results).name if isinstance(results, str) and results else Path(path).parent.parent.name,
        "status": record.get("status"), "workload": record.get("workload"), "strategy": record.get("strategy"),
        "precision": config.get("precision"), "tf32": config.get("tf32"),
        "jit": None if config.get("jit_compile") is None else str(config.get("jit_compile")).lower(),
        "data_source": record.get("data_source"),
        "overrides": overrides_text(config) or None, "scaling": scaling_of(config),
        "replicas": replicas, "nodes": nodes_of(record.get("world_size"), ranks_per_node),
        "ranks_per_node": ranks_per_node, "gpus": len(gpu_models) and replicas,
        "gpu_model": gpu_models[0] if gpu_models else None,
        "per_replica_batch": record.get("per_replica_batch_size"), "global_batch": record.get("global_batch_size"),
        "samples_per_s": (record.get("throughput") or {}).get("samples_per_s"),
        "samples_per_s_low": low, "samples_per_s_high": high,
        "step_median_s": step.get("median_s"), "step_p90_s": step.get("p90_s"), "step_mean_s": step.get("mean_s"),
        "step_std_s": step.get("std_s"), "timed_steps": step.get("count"),
        "hostname": provenance.get("hostname"), "cluster": slurm.get("SLURM_CLUSTER_NAME"),
        "slurm_job": slurm.get("SLURM_JOB_ID"),
        "tensorflow": tensorflow_version(packages), "keras": packages.get("keras"),
        "horovod": packages.get("horovod"), "ray": packages.get("ray"), "python": provenance.get("python"),
        "git_sha": git.get("sha"), "git_dirty": None if git.get("dirty") is None else int(bool(git["dirty"])),
        "started_at": record.get("started_at"), "finished_at": record.get("finished_at"),
        "tags": json.dumps(config.get("tags") or {}, sort_keys=True),
    }


def _interval(global_batch: int | None, step: dict[str, Any]) -> tuple[float | None, float | None]:
    """The run's throughput range from its mean step's 95% interval (normal approximation):
    global batch / (mean -+ 1.96 std / sqrt(n))."""
    mean, std, count = step.get("mean_s"), step.get("std_s"), step.get("count")
    if not (global_batch and mean and count and std is not None):
        return None, None
    half = 1.96 * std / math.sqrt(count)
    return global_batch / (mean + half), (global_batch / (mean - half) if mean > half else None)


# --- writing ---------------------------------------------------------------------------

def add(db: sqlite3.Connection, rows: Iterable[dict[str, Any]]) -> int:
    """Insert or replace `rows` in one transaction; the number of rows that were new."""
    rows = list(rows)
    if not rows:
        return 0
    names = list(COLUMNS)
    db.execute("BEGIN IMMEDIATE")
    try:
        before = db.execute("SELECT COUNT(*) FROM records").fetchone()[0]
        db.executemany(f"INSERT OR REPLACE INTO records ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                       [tuple(r.get(n) for n in names) for r in rows])
        after = db.execute("SELECT COUNT(*) FROM records").fetchone()[0]
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return after - before


def index_written(record: dict[str, Any], path: str | Path, results: str | Path) -> None:
    """The hook of every final record write: its row added to the results' database. Never
    raises: a database that cannot be written is one warning line on stderr."""
    where = location(results)
    try:
        with opened(where) as db:
            add(db, [row(record, path)])
    except (HistoryError, sqlite3.Error, OSError) as exc:
        print(f"bench: warning: {path} not added to the results database {where} "
              f"({exc}); the record is written (add it later: bench history import)", file=sys.stderr)


def index_quietly(results: str | Path) -> None:
    """Every record under `results` added to its database (`bench jobs collect`, the report
    job: the records of jobs that died before their end, written by nobody else). Never raises."""
    where = location(results)
    try:
        with opened(where) as db:
            imported = import_dirs(db, [results])
    except (HistoryError, sqlite3.Error, OSError) as exc:
        print(f"bench: warning: {results}: records not added to the results database {where} ({exc})",
              file=sys.stderr)
        return
    if imported.unreadable:
        print(f"bench: warning: {len(imported.unreadable)} unreadable record(s) under {results} not in {where}",
              file=sys.stderr)


@dataclass
class Imported:
    added: int
    seen: int
    unreadable: list[str]


def import_dirs(db: sqlite3.Connection, directories: Iterable[str | Path], batch: int = 2000) -> Imported:
    """Every record under `directories`, in transactions of `batch` rows; files that are not
    readable records are listed, not fatal."""
    added = seen = 0
    unreadable: list[str] = []
    pending: list[dict[str, Any]] = []
    for directory in directories:
        if not Path(directory).is_dir():
            raise UsageError(f"{directory}: no such results directory")
        for path in iter_record_paths(directory):
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
                if not isinstance(record, dict) or "run_id" not in record:
                    raise ValueError("not a record")
                pending.append(row(record, path))
            except (ValueError, OSError) as exc:
                unreadable.append(f"{path}: {exc}")
                continue
            seen += 1
            if len(pending) >= batch:
                added += add(db, pending)
                pending = []
    return Imported(added + add(db, pending), seen, unreadable)


def rebuild(path: str | Path, directories: Iterable[str | Path]) -> Imported:
    """The database recreated from the records (a corrupt or outdated file is replaced)."""
    path = Path(path)
    directories = list(directories)
    for directory in directories:
        if not Path(directory).is_dir():
            raise UsageError(f"{directory}: no such results directory")
    fresh = path.with_name(f".{path.name}.rebuild-{os.getpid()}")
    fresh.unlink(missing_ok=True)
    with opened(fresh) as db:
        imported = import_dirs(db, directories)
    fresh.replace(path)
    return imported


# --- reading ---------------------------------------------------------------------------

PERIOD = re.compile(r"^(\d+)([hdw])$")
UNITS = {"h": "hours", "d": "days", "w": "weeks"}


def parse_time(text: str, flag: str, now: datetime | None = None, inclusive_day: bool = False) -> str:
    """'30d', '12h', '2w' (ago), or a date/time ('2026-11-01', '2026-11-01T12:00') -> an ISO
    timestamp comparable with the records' `started_at`; with `inclusive_day`, a bare date is
    the end of that day."""
    now = now or datetime.now(timezone.utc)
    match = PERIOD.match(text.strip())
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        moment = now - timedelta(**{UNITS[unit]: amount})
    else:
        try:
            moment = datetime.fromisoformat(text.strip())
        except ValueError:
            raise UsageError(f"{flag} {text!r}: a period such as 30d, 12h or 2w, or a date such as 2026-11-01") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        if inclusive_day and len(text.strip()) == 10:
            moment += timedelta(days=1, seconds=-1)
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Query:
    """What `bench history` selects: equalities on FILTERS' columns, a time window, tags."""
    equal: dict[str, Any]
    since: str | None = None
    until: str | None = None
    tags: dict[str, str] | None = None

    def sql(self) -> tuple[str, list[Any]]:
        clauses, values = [], []
        for name, value in self.equal.items():
            if name not in FILTERS:
                raise UsageError(f"unknown filter {name!r}; valid: {', '.join(FILTERS)}")
            clauses.append(f"{name} = ?")
            values.append(value)
        if self.since:
            clauses.append("started_at >= ?")
            values.append(self.since)
        if self.until:
            clauses.append("started_at <= ?")
            values.append(self.until)
        for key, value in (self.tags or {}).items():
            clauses.append("json_extract(tags, ?) = ?")
            values += [f'$."{key}"', value]
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        return f"SELECT * FROM records{where} ORDER BY started_at, path", values


def select(db: sqlite3.Connection, query: Query) -> list[dict[str, Any]]:
    return _rows(db, *query.sql())


BASELINES = "last:N (the last N studies), FROM:TO (dates, e.g. 2026-11-01:2026-11-30) or study:NAME"


def baseline(db: sqlite3.Connection, spec: str, current: Iterable[str | Path]) -> tuple[str, list[str]]:
    """The record paths of a `bench compare --baseline SPEC`: ok runs of the current study's cases
    (workload, strategy, replicas) that are not the current study's own records (last:N: the
    N studies last before the current one's first run); and what was selected, in words."""
    inside = [str(Path(d).resolve()) for d in current]
    mine = [r for r in _rows(db, "SELECT workload, strategy, replicas, path, started_at FROM records", [])
            if any(r["path"].startswith(d + os.sep) for d in inside)]
    cases = {(r["workload"], r["strategy"], r["replicas"]) for r in mine}
    first = min((r["started_at"] for r in mine if r["started_at"]), default=None)
    rows = [r for r in _rows(db, "SELECT path, study, started_at, workload, strategy, replicas FROM records "
                                 "WHERE status = 'ok' AND kind = 'run' ORDER BY started_at", [])
            if not any(r["path"].startswith(d + os.sep) for d in inside)
            and (not cases or (r["workload"], r["strategy"], r["replicas"]) in cases)]
    kind, _, value = spec.partition(":")
    if kind == "last" and value.isdigit() and int(value) > 0:
        latest: dict[str, str] = {}
        for r in rows if first is None else [r for r in rows if (r["started_at"] or "") < first]:
            latest[r["study"]] = max(latest.get(r["study"], ""), r["started_at"] or "")
        studies = sorted(latest, key=latest.get)[-int(value):]
        chosen = [r for r in rows if r["study"] in studies]
        words = f"the last {len(studies)} studies ({', '.join(studies) or 'none'})"
    elif kind == "study" and value:
        chosen = [r for r in rows if r["study"] == value]
        words = f"study {value}"
    elif value and kind != "last":
        start = parse_time(kind, "--baseline")
        end = parse_time(value, "--baseline", inclusive_day=True)
        chosen = [r for r in rows if start <= (r["started_at"] or "") <= end]
        words = f"runs from {kind} to {value}"
    else:
        raise UsageError(f"--baseline {spec!r}: expected {BASELINES}")
    return words, [r["path"] for r in chosen]


def _rows(db: sqlite3.Connection, text: str, values: list[Any]) -> list[dict[str, Any]]:
    cursor = db.execute(text, values)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row_)) for row_ in cursor]


# --- output ----------------------------------------------------------------------------

# what the table shows of a row (csv and json carry every column)
SHOWN = ("started_at", "study", "workload", "strategy", "replicas", "nodes", "samples_per_s", "status", "git_sha",
         "tensorflow", "tags")


def render(rows: list[dict[str, Any]], form: str = "table") -> str:
    if form == "json":
        return json.dumps(rows, indent=1)
    if form == "csv":
        import csv
        import io
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(COLUMNS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue().rstrip("\n")
    if not rows:
        return "(no records match)"
    cells = [[_cell(name, r.get(name), r) for name in SHOWN] for r in rows]
    widths = [max(len(name), *(len(c[i]) for c in cells)) for i, name in enumerate(SHOWN)]
    lines = ["  ".join(name.ljust(w) for name, w in zip(SHOWN, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(cell, widths)).rstrip() for cell in cells]
    return "\n".join(lines + [f"{len(rows)} record(s)"])


def _cell(name: str, value: Any, row: dict[str, Any]) -> str:
    if value is None:
        return "-"
    if name == "samples_per_s":
        low, high = row.get("samples_per_s_low"), row.get("samples_per_s_high")
        band = f" [{low:,.1f}, {high:,.1f}]" if low is not None and high is not None else ""
        return f"{value:,.1f}{band}"
    if name == "git_sha":
        return value[:8] + ("+" if row.get("git_dirty") else "")
    if name == "tags":
        return " ".join(f"{k}={v}" for k, v in json.loads(value).items()) or "-"
    if name == "started_at":
        return value[:16].replace("T", " ")
    return str(value)
