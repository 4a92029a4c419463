"""Horovod timeline (Chrome trace events) -> time spent in collectives.

Each tensor is a `pid` with nested B/E spans: NEGOTIATE_ALLREDUCE (waiting until every
rank has the tensor), then ALLREDUCE (fusion-buffer copies and the reduction itself).
Spans of different tensors overlap (fusion, background thread), so the time is the union
of intervals, not their sum."""

from __future__ import annotations

import json
from pathlib import Path


def read_events(path: Path) -> list[dict]:
    """Horovod leaves the JSON array unterminated while running; accept both forms."""
    text = Path(path).read_text().strip().rstrip(",")
    if not text:
        return []
    if not text.endswith("]"):
        text += "]"
    return json.loads(text)


def spans(events: list[dict], name: str) -> list[tuple[float, float]]:
    """(begin, end) in seconds of every top-level span called `name`."""
    stacks: dict[int, list[tuple[str, float]]] = {}
    found = []
    for event in events:
        phase, pid = event.get("ph"), event.get("pid")
        if phase == "B":
            stacks.setdefault(pid, []).append((event.get("name"), event["ts"] / 1e6))
        elif phase == "E" and stacks.get(pid):
            opened, start = stacks[pid].pop()
            if opened == name:
                found.append((start, event["ts"] / 1e6))
    return found


def union_seconds(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total


def summary(path: Path, step_seconds: float) -> dict:
    events = read_events(path)
    allreduce = union_seconds(spans(events, "ALLREDUCE"))
    negotiate = union_seconds(spans(events, "NEGOTIATE_ALLREDUCE"))
    return {
        "method": "Horovod timeline on rank 0: union of ALLREDUCE spans / training step time",
        "allreduce_s": allreduce,
        "negotiate_s": negotiate,
        "step_s": step_seconds,
        "allreduce_share": allreduce / step_seconds if step_seconds > 0 else None,
        "negotiate_share": negotiate / step_seconds if step_seconds > 0 else None,
    }
