"""Submit, watch, collect and cancel the jobs of a written study directory. A manifest
(manifest.json, written atomically after every submission) records what was submitted, so
re-running `submit` never submits a job twice. Files and Slurm commands only."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

from bench.core.errors import UsageError
from bench.core.record import RunRecord, atomic_write_text, iter_record_paths, utc_now

MANIFEST = "manifest.json"
PLAN = "jobs.json"      # written by `bench jobs write`: every job's workload, strategy, GPUs and nodes
REPORT = "report.sbatch"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise UsageError(f"{name} not found: run this on a Slurm login node (or install Slurm)")
    return path


def _directory(out: str | Path) -> Path:
    out = Path(out)
    if not out.is_dir() or not any(out.glob("*.sbatch")):
        raise UsageError(f"{out}: no sbatch scripts here; write them with `bench jobs write SPEC -o {out}`")
    return out


def read_manifest(out: Path) -> dict:
    path = out / MANIFEST
    if not path.is_file():
        return {"jobs": {}}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}: corrupt manifest ({exc})") from None


def _save(out: Path, manifest: dict) -> None:
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))


def _sbatch(out: Path, script: Path, *options: str) -> str:
    done = subprocess.run([_tool("sbatch"), "--parsable", f"--chdir={out.resolve()}", *options, script.name],
                          capture_output=True, text=True, cwd=out)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise SubmissionError(f"sbatch rejected {script.name}: {reason}")
    return done.stdout.strip().split(";")[0]


class SubmissionError(Exception):
    pass


def submit(out: str | Path) -> tuple[int, int]:
    """Submit every script not yet in the manifest, then the report job after all of them.
    Returns (submitted now, already submitted)."""
    out = _directory(out)
    manifest = read_manifest(out)
    jobs = manifest.setdefault("jobs", {})
    # the largest jobs first (first-fit decreasing): in a first-in first-out queue a job of all
    # the nodes behind small ones waits for them to drain and holds back every job after it
    plan = _plan(out)
    scripts = sorted((p for p in out.glob("*.sbatch") if p.name != REPORT),
                     key=lambda p: (-plan.get(p.name, {}).get("gpus", 0), p.name))
    fresh, rejected = 0, []
    for script in scripts:
        if script.name in jobs:
            continue
        try:
            job_id = _sbatch(out, script)
        except SubmissionError as exc:     # the others still go in; a re-run retries this one
            rejected.append(str(exc))
            continue
        jobs[script.name] = {"job_id": job_id, "submitted_at": utc_now()}
        _save(out, manifest)            # after each: the manifest always matches what Slurm has
        fresh += 1
    if rejected:
        more = f" (and {len(rejected) - 1} more)" if len(rejected) > 1 else ""
        raise SubmissionError(f"{rejected[0]}{more}; {fresh} others submitted, the report job held back")
    if (out / REPORT).is_file() and "report" not in manifest:
        ids = ":".join(entry["job_id"] for entry in jobs.values())
        manifest["report"] = {"job_id": _sbatch(out, out / REPORT, f"--dependency=afterany:{ids}"),
                              "submitted_at": utc_now()}
        _save(out, manifest)
    return fresh, len(scripts) - fresh


def states(out: str | Path) -> dict[str, str]:
    """script -> Slurm state (PENDING, RUNNING, COMPLETED, FAILED, ...), or 'not submitted'."""
    out = _directory(out)
    manifest = read_manifest(out)
    entries = {**manifest.get("jobs", {}), **({REPORT: manifest["report"]} if "report" in manifest else {})}
    result = {p.name: "not submitted" for p in out.glob("*.sbatch")}
    for script, entry in entries.items():
        result[script] = _state(entry["job_id"])
    return result


def _state(job_id: str) -> str:
    """squeue while queued or running; then scontrol (no accounting database needed)."""
    done = subprocess.run([_tool("squeue"), "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True)
    if done.returncode == 0 and done.stdout.strip():
        return done.stdout.strip().splitlines()[0]
    done = subprocess.run([_tool("scontrol"), "show", "job", job_id, "-o"], capture_output=True, text=True)
    for field in done.stdout.split():
        if field.startswith("JobState="):
            return field.split("=", 1)[1]
    return "FINISHED (state no longer known to Slurm; see `bench jobs collect`)"


ACTIVE = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED")


def wait(out: str | Path, timeout_s: float, poll_s: float = 5, report=print) -> bool:
    """Until every submitted job (the report job too) has left the queue; `report(line)`
    whenever the counts per state change. False when `timeout_s` passed first."""
    deadline, shown = time.monotonic() + timeout_s, None
    while True:
        current = states(out)
        counts = ", ".join(f"{n} {s.split()[0].lower()}" for s, n in sorted(Counter(current.values()).items()))
        if counts != shown:
            report(f"jobs: {counts}")
            shown = counts
        if not any(state in ACTIVE for state in current.values()):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(poll_s)


def collect(out: str | Path, results: str | Path) -> list[dict]:
    """Per submitted job: its record(s) by Slurm job id, or the tail of its stderr, or 'never started'."""
    out = _directory(out)
    manifest = read_manifest(out)
    by_job: dict[str, list[RunRecord]] = {}
    if Path(results).is_dir():
        for path in iter_record_paths(results):
            try:
                record = RunRecord.from_json(path.read_text())
            except (ValueError, TypeError, json.JSONDecodeError):
                continue
            job = record.provenance.get("slurm", {}).get("SLURM_JOB_ID")
            if job:
                by_job.setdefault(job, []).append(record)
    planned = _plan(out)
    rows = []
    submitted = manifest.get("jobs", {})
    for script in sorted(set(submitted) | set(planned)):
        entry = submitted.get(script, {"job_id": "-"})
        name = script[: -len(".sbatch")]
        records = by_job.get(entry["job_id"], [])
        err = out / "logs" / f"{name}.err"
        row = {"script": script, "job_id": entry["job_id"], "records": [r.run_id for r in records],
               **planned.get(script, {})}
        if script not in submitted:
            row["status"] = "never submitted"
            rows.append(row)
            continue
        if records:
            row["status"] = ",".join(sorted({r.status for r in records}))
            row["errors"] = [r.error for r in records if r.status != "ok" and r.error]
        elif err.is_file() or (out / "logs" / f"{name}.out").is_file():
            row["status"] = "no record"
            row["stderr_tail"] = err.read_text(errors="replace").strip().splitlines()[-5:] if err.is_file() else []
        else:
            row["status"] = "never started"
        rows.append(row)
    return rows


def _plan(out: Path) -> dict[str, dict]:
    """The study's jobs as `bench jobs write` planned them (script -> workload, strategy, GPUs, nodes)."""
    path = out / PLAN
    try:
        return json.loads(path.read_text())["jobs"] if path.is_file() else {}
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UsageError(f"{path}: corrupt job plan ({exc}); write the scripts again") from None


def outcome_line(row: dict) -> str:
    """Why a job has no ok record, in one line: its record's error, its stderr's last line, or its state."""
    lines = [line.strip() for line in row.get("errors") or row.get("stderr_tail") or [] if line.strip()]
    said = [line for line in lines if line.startswith("bench:")] or lines      # ours, before srun's own
    return f"{row['status']}: {said[-1]}" if said else row["status"]


def cancel(out: str | Path) -> int:
    out = _directory(out)
    manifest = read_manifest(out)
    ids = [e["job_id"] for e in manifest.get("jobs", {}).values()]
    if "report" in manifest:
        ids.append(manifest["report"]["job_id"])
    if ids:
        subprocess.run([_tool("scancel"), *ids], check=False)
    return len(ids)
