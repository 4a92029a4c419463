"""Parsing Horovod timelines: nested spans per tensor, overlapping tensors counted once."""

import json

import pytest

from strategies import timeline

EVENTS = [
    {"name": "process_name", "ph": "M", "pid": 0, "args": {}},
    {"ph": "B", "name": "NEGOTIATE_ALLREDUCE", "ts": 0, "pid": 1}, {"ph": "E", "ts": 100, "pid": 1},
    {"ph": "B", "name": "ALLREDUCE", "ts": 100, "pid": 1},
    {"ph": "B", "name": "MEMCPY_IN_FUSION_BUFFER", "ts": 100, "pid": 1}, {"ph": "E", "ts": 150, "pid": 1},
    {"ph": "B", "name": "ALLREDUCE", "ts": 150, "pid": 2},                       # overlaps pid 1
    {"ph": "E", "ts": 300, "pid": 1},                                            # pid 1: 100..300
    {"ph": "E", "ts": 400, "pid": 2},                                            # pid 2: 150..400
    {"ph": "B", "name": "ALLREDUCE", "ts": 1000, "pid": 1}, {"ph": "E", "ts": 1100, "pid": 1},
]


def test_union_of_top_level_allreduce_spans(tmp_path):
    path = tmp_path / "timeline.json"
    path.write_text("[\n" + ",\n".join(json.dumps(e) for e in EVENTS) + ",\n")   # unterminated, as Horovod leaves it
    summary = timeline.summary(path, step_seconds=0.01)
    assert summary["allreduce_s"] == pytest.approx((400 - 100 + 100) / 1e6)
    assert summary["negotiate_s"] == pytest.approx(100 / 1e6)
    assert summary["allreduce_share"] == pytest.approx(0.04)


def test_union_seconds():
    assert timeline.union_seconds([(0, 2), (1, 3), (5, 6), (5.5, 5.7)]) == pytest.approx(4.0)
    assert timeline.union_seconds([]) == 0.0
