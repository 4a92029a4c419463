import json
import os
import stat
import subprocess
import sys
import textwrap

import pytest

from bench.core.record import (SCHEMA_VERSION, RunRecord, atomic_write_text, new_run_id, read_record,
                          write_record)
from conftest import record_paths


def test_record_round_trips_through_json():
    record = RunRecord(run_id=new_run_id(), workload="mlp", strategy="mirrored", num_replicas=2,
                       config={"epochs": 3}, timing={"step_time": {"median_s": 0.01}},
                       gpu={"available": False, "reason": "no NVML"})
    again = RunRecord.from_json(record.to_json())
    assert again == record
    assert json.loads(record.to_json())["schema_version"] == SCHEMA_VERSION


def test_unknown_schema_version_and_fields_are_rejected():
    data = RunRecord(run_id="r", workload="mlp", strategy="default").to_dict()
    with pytest.raises(ValueError, match="schema_version"):
        RunRecord.from_dict({**data, "schema_version": SCHEMA_VERSION + 1})
    with pytest.raises(ValueError, match="unknown record fields"):
        RunRecord.from_dict({**data, "surprise": 1})


def test_run_ids_are_unique():
    assert len({new_run_id() for _ in range(1000)}) == 1000


def test_atomic_write_leaves_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "record.json"
    atomic_write_text(target, "old")

    class Boom(str):
        pass
    with pytest.raises(TypeError):
        atomic_write_text(target, 42)  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


WRITER = textwrap.dedent("""
    import sys
    from bench.core.record import RunRecord, new_run_id, write_record
    record = RunRecord(run_id=new_run_id(), workload="mlp", strategy="default")
    for i in range(25):   # rewrite the same record: readers must never see a torn file
        record.timing = {"rewrite": i, "payload": list(range(5000))}
        write_record(sys.argv[1], record)
""")


def test_32_concurrent_writers_give_32_valid_records(tmp_path):
    results = tmp_path / "results"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(results)]) for _ in range(32)]
    torn = 0
    while any(p.poll() is None for p in procs):      # read while they write
        for path in record_paths(results):
            try:
                read_record(path)
            except (ValueError, FileNotFoundError):
                torn += 1
    assert all(p.wait() == 0 for p in procs)
    paths = record_paths(results)
    assert len(paths) == 32
    assert all(read_record(p).timing["rewrite"] == 24 for p in paths)
    assert torn == 0
    assert not [p for p in results.rglob("*") if p.name.endswith(".tmp")]


def test_write_record_layout(tmp_path):
    record = RunRecord(run_id="run-x", workload="mlp", strategy="default")
    path = write_record(tmp_path, record)
    assert path == tmp_path / "run-x" / "record.json"


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_result_files_honour_the_umask(tmp_path, mask, mode):
    """Written atomically (through a temporary file, which mkstemp makes 0600) and then as
    readable as the umask lets a new file be: a group's shared results tree stays readable."""
    previous = os.umask(mask)
    try:
        atomic_write_text(tmp_path / "a" / "config.json", "{}")
        write_record(tmp_path, RunRecord(run_id="r1", workload="mlp", strategy="default"))
    finally:
        os.umask(previous)
    for path in (tmp_path / "a" / "config.json", tmp_path / "r1" / "record.json"):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path
