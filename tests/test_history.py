"""The results database (bench.core.history): real SQLite files, records written as runs write
them, 32 writers at once, bad databases (fast tier: no TensorFlow)."""

import json
import multiprocessing
import sqlite3

import pytest

from bench import cli
from bench.core import history
from bench.core.errors import UsageError
from bench.core.record import RunRecord, write_record
from bench.run.lifecycle import Lifecycle, finish


def record(run_id: str, results, workload="mlp", strategy="mwms", replicas=2, started="2026-11-02T10:00:00+00:00",
           tags=None, samples_per_s=1000.0, status="ok") -> RunRecord:
    return RunRecord(run_id=run_id, workload=workload, strategy=strategy, status=status, num_replicas=replicas,
                     world_size=replicas, ranks_per_node=1, global_batch_size=64 * replicas,
                     per_replica_batch_size=64, started_at=started,
                     config={"results": str(results), "precision": "float32", "tags": tags or {},
                             "per_replica_batch_size": 64},
                     throughput={"samples_per_s": samples_per_s},
                     timing={"step_time": {"median_s": 0.128, "mean_s": 0.128, "std_s": 0.01, "count": 25,
                                           "p90_s": 0.14}},
                     provenance={"git": {"sha": "a" * 40, "dirty": False}, "packages": {"tensorflow-cpu": "2.21.0"},
                                 "hostname": "node1", "slurm": {"SLURM_JOB_ID": "77"}})


def study(results, n=3, **fields):
    return [write_record(results, record(f"run-{i}", results, **fields)) for i in range(n)]


def rows_of(path, **equal):
    db = history.connect(path, create=False)
    try:
        return list(history.select(db, history.Query(equal)))
    finally:
        db.close()


def test_a_finished_record_is_indexed_beside_its_results_and_importing_again_adds_nothing(tmp_path):
    results = tmp_path / "ft3-march"
    finish(results, record("run-a", results, tags={"driver": "550"}))
    (row,) = rows_of(results / "distbench.db")
    assert (row["study"], row["workload"], row["strategy"], row["replicas"], row["status"]) == \
        ("ft3-march", "mlp", "mwms", 2, "ok")
    assert row["samples_per_s"] == 1000.0 and row["samples_per_s_low"] < 1000 < row["samples_per_s_high"]
    assert (row["git_sha"], row["git_dirty"], row["tensorflow"], row["slurm_job"]) == ("a" * 40, 0, "2.21.0", "77")
    assert json.loads(row["tags"]) == {"driver": "550"} and row["path"].endswith("run-a/record.json")
    study(results, 3)
    db = history.connect(results / "distbench.db")
    first = history.import_dirs(db, [results])
    again = history.import_dirs(db, [results])
    db.close()
    assert (first.added, first.seen, again.added, again.seen) == (3, 4, 0, 4)


def test_filters_select_by_case_time_and_tag(tmp_path):
    results = tmp_path / "r"
    write_record(results, record("old", results, started="2026-10-01T00:00:00+00:00"))
    write_record(results, record("new", results, started="2026-11-20T00:00:00+00:00", tags={"driver": "555"}))
    write_record(results, record("one", results, replicas=1, strategy="default"))
    db = history.connect(tmp_path / "h.db")
    history.import_dirs(db, [results])

    def ids(query):
        return [r["run_id"] for r in history.select(db, query)]
    assert ids(history.Query({"replicas": 2})) == ["old", "new"]
    assert ids(history.Query({"strategy": "default"})) == ["one"]
    assert ids(history.Query({}, since=history.parse_time("2026-11-01", "--since"))) == ["one", "new"]
    assert ids(history.Query({}, until="2026-10-15T00:00:00+00:00")) == ["old"]
    assert ids(history.Query({}, tags={"driver": "555"})) == ["new"]
    with pytest.raises(UsageError, match="unknown filter 'color'"):
        ids(history.Query({"color": "red"}))
    db.close()


def _write_one(args):
    results, i = args
    finish(results, record(f"run-{i:02d}", results))


def test_32_processes_finishing_at_once_lose_no_row(tmp_path):
    results = tmp_path / "array"
    with multiprocessing.get_context("fork").Pool(32) as pool:
        pool.map(_write_one, [(results, i) for i in range(32)])
    assert len(rows_of(results / "distbench.db")) == 32
    db = sqlite3.connect(results / "distbench.db")
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()


def test_a_corrupt_database_costs_a_warning_not_the_record(tmp_path, capsys):
    results = tmp_path / "r"
    results.mkdir()
    (results / "distbench.db").write_text("not a database")
    run = record("run-a", results, status="running")
    with Lifecycle(results, run) as life:
        life.ok()
    assert life.exit_code == 0
    assert json.loads(life.path.read_text())["status"] == "ok"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bench: warning: ") and "not added to the results database" in err[0]
    imported = history.rebuild(results / "distbench.db", [results])        # the records recreate it
    assert (imported.added, len(rows_of(results / "distbench.db"))) == (1, 1)


def test_a_database_of_a_newer_schema_is_refused_in_one_line(tmp_path):
    path = tmp_path / "h.db"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {history.SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(history.HistoryError, match="newer than this distbench's"):
        history.connect(path)


@pytest.mark.parametrize("argv, message", [
    (["history", "--since", "3 weeks"], "--since '3 weeks': a period such as 30d"),
    (["history", "--colour=red"], "unrecognized arguments: --colour=red"),
    (["history", "--tag", "driver"], "--tag 'driver': expected key=value"),
    (["history", "import"], "give the results directories"),
    (["history", "--db", "{tmp}/none.db"], "no results database"),
    (["history", "--db", "{tmp}/bad.db"], "not a usable results database"),
])
def test_bad_history_input_is_one_line_and_exit_2(argv, message, tmp_path, capsys):
    (tmp_path / "bad.db").write_text("garbage")
    assert cli.main([a.format(tmp=tmp_path) for a in argv]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines


def test_history_lists_as_a_table_csv_and_json(tmp_path, capsys):
    results = tmp_path / "r"
    study(results, 2)
    assert cli.main(["history", "import", str(results)]) == 0
    assert capsys.readouterr().out.strip() == f"2 new of 2 records in {results / 'distbench.db'}"
    db = ["--db", str(results / "distbench.db")]
    assert cli.main(["history", *db, "--workload", "mlp"]) == 0
    table = capsys.readouterr().out.strip().splitlines()
    assert table[0].split()[:4] == ["started_at", "study", "workload", "strategy"] and table[-1] == "2 record(s)"
    assert cli.main(["history", *db, "--format", "json", "--replicas", "2"]) == 0
    assert [r["run_id"] for r in json.loads(capsys.readouterr().out)] == ["run-0", "run-1"]
    assert cli.main(["history", *db, "--format", "csv", "--replicas", "1"]) == 0
    assert capsys.readouterr().out.strip().split(",")[:3] == ["path", "run_id", "kind"]


def test_compare_against_the_last_studies_a_named_one_or_dates(tmp_path, capsys):
    db = tmp_path / "group.db"
    days = {"a": "2026-11-01", "b": "2026-11-10", "c": "2026-11-20", "slow": "2026-12-01", "same": "2026-12-02"}
    speeds = {"a": 100.0, "b": 101.0, "c": 99.0, "slow": 90.0, "same": 100.0}
    for name, day in days.items():
        for i, jitter in enumerate((0.0, 1.0, -1.0)):
            write_record(tmp_path / name, record(f"{name}-{i}", tmp_path / name, started=f"{day}T10:0{i}:00+00:00",
                                                 samples_per_s=speeds[name] + jitter))
    assert cli.main(["history", "import", *(str(tmp_path / n) for n in days), "--db", str(db)]) == 0
    capsys.readouterr()

    def compare(current, spec):
        code = cli.main(["compare", str(tmp_path / current), "--baseline", spec, "--db", str(db)])
        return code, capsys.readouterr().out
    code, out = compare("slow", "last:2")
    assert code == 1 and out.startswith("baseline: the last 2 studies (b, c), 6 run(s)") and "REGRESSION" in out
    code, out = compare("slow", "study:a")
    assert code == 1 and out.startswith("baseline: study a, 3 run(s)") and "-10.0%" in out, out
    code, out = compare("slow", "2026-11-01:2026-11-10")
    assert code == 1 and "baseline: runs from 2026-11-01 to 2026-11-10, 6 run(s)" in out
    assert compare("same", "last:3")[0] == 0
    assert cli.main(["compare", str(tmp_path / "slow"), "--baseline", "last:x", "--db", str(db)]) == 2
    assert "--baseline 'last:x': expected last:N" in capsys.readouterr().err


def test_trend_has_a_point_per_study_and_marks_what_changed(tmp_path, capsys):
    db = tmp_path / "group.db"
    for name, day, sha, horovod, speed in (("a", "2026-11-01", "a" * 40, "0.28.1", 100.0),
                                           ("b", "2026-11-10", "a" * 40, "0.28.1", 101.0),
                                           ("c", "2026-11-20", "b" * 40, "0.28.2", 80.0)):
        for i, jitter in enumerate((0.0, 2.0, -2.0)):
            rec = record(f"{name}-{i}", tmp_path / name, started=f"{day}T10:0{i}:00+00:00", samples_per_s=speed + jitter)
            rec.provenance["git"]["sha"] = sha
            rec.provenance["packages"]["horovod"] = horovod
            if name == "b":         # a version one study names and the next does not is no change
                rec.provenance["packages"]["ray"] = "2.60.0"
            write_record(tmp_path / name, rec)
    cli.main(["history", "import", *(str(tmp_path / n) for n in "abc"), "--db", str(db)])
    capsys.readouterr()
    assert cli.main(["history", "trend", "mlp/mwms/2", "--db", str(db), "-o", str(tmp_path / "t.png")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[3] for line in lines[:3]] == ["a", "b", "c"] and "100.0 [98.0, 102.0]" in lines[0]
    assert "changed" not in lines[1] and lines[2].endswith("changed: git aaaaaaaa -> bbbbbbbb, horovod 0.28.1 -> 0.28.2"), lines
    assert lines[3] == f"plot: {tmp_path / 't.png'}" and (tmp_path / "t.png").stat().st_size > 0
    assert cli.main(["history", "trend", "mlp/horovod", "--db", str(db)]) == 1
    assert cli.main(["history", "trend", "mlp", "--db", str(db)]) == 2


def test_the_report_puts_each_case_against_previous_studies(tmp_path, monkeypatch):
    from analysis import report
    monkeypatch.setenv(history.DB_ENV, str(tmp_path / "group.db"))
    for name, day, speed in (("a", "2026-11-01", 100.0), ("b", "2026-11-10", 100.0), ("now", "2026-12-01", 80.0)):
        for i, jitter in enumerate((0.0, 1.0, -1.0)):
            finish(tmp_path / name, record(f"{name}-{i}", tmp_path / name, started=f"{day}T10:0{i}:00+00:00",
                                           samples_per_s=speed + jitter))
    markdown = report.build([str(tmp_path / "now")], tmp_path / "out").markdown.read_text()
    assert "## Against previous runs" in markdown and "the last 2 studies (a, b), 6 run(s)" in markdown
    assert "-20.0%" in markdown and "REGRESSION" in markdown and "vs previous runs" in markdown
    assert "![history-trend](history-trend.png)" in markdown
    first = report.build([str(tmp_path / "a")], tmp_path / "first").markdown.read_text()
    assert "Against previous runs" not in first        # b and now ran after it
    monkeypatch.setenv(history.DB_ENV, str(tmp_path / "none.db"))
    assert "Against previous runs" not in report.build([str(tmp_path / "now")], tmp_path / "o3").markdown.read_text()


def test_studies_under_a_results_tree_share_its_database_once_it_exists(tmp_path):
    root = tmp_path / "results"
    finish(root / "march", record("m", root / "march"))
    assert (root / "march" / "distbench.db").is_file()             # no tree database yet: its own
    assert cli.main(["history", "import", str(root)]) == 0          # the tree's
    finish(root / "april", record("a", root / "april"))
    assert not (root / "april" / "distbench.db").exists()
    assert sorted(r["run_id"] for r in rows_of(root / "distbench.db")) == ["a", "m"]
