"""The local study (jobs.local) and the summary table (analysis.summary)."""

import pandas as pd
import pytest

from analysis import summary
from bench.core.errors import UsageError
from bench.core.record import RunRecord, write_record
from conftest import record_paths


@pytest.mark.stack
def test_local_study_runs_the_matrix_and_prints_a_table(bench, tmp_path):
    results = tmp_path / "study"
    done = bench("study", "--workloads", "mlp,charrnn-gru", "--strategies", "default,mirrored",
                 "--steps-per-epoch", "4", "--warmup-steps", "1", "--set", "charrnn-gru.rnn_units=16", "--set", "mlp.n_neurons=16",
                 "--results", str(results))
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(record_paths(results)) == 4
    table = done.stdout.split("\n\n")[-1]
    assert "charrnn-gru" in table and "mirrored" in table and "samples_per_s" in table


@pytest.mark.stack
def test_a_workload_whose_data_is_missing_fails_its_runs_visibly(bench, tmp_path):
    results = tmp_path / "study"
    done = bench("study", "--workloads", "mlp,charrnn-gru", "--strategies", "default", "--devices", "1",
                 "--data", "mlp=real,charrnn-gru=generated", "--steps-per-epoch", "4", "--warmup-steps", "1",
                 "--set", "charrnn-gru.rnn_units=16", "--results", str(results),
                 env={"DISTBENCH_DATA_DIR": str(tmp_path / "none"), "DISTBENCH_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "fashion-mnist not found" in done.stdout and "1 of 2 runs failed" in done.stderr
    assert "charrnn-gru" in done.stdout.split("\n\n")[-1] and len(record_paths(results)) == 1


def test_study_rejects_unknown_names_before_running_anything(bench, tmp_path):
    done = bench("study", "--workloads", "mlp,bert", "--results", str(tmp_path / "s"))
    assert done.returncode == 2 and "unknown workload 'bert'" in done.stderr
    assert not (tmp_path / "s").exists()


def test_summary_lists_failed_and_torn_records(tmp_path):
    ok = RunRecord(run_id="a", workload="mlp", strategy="default", status="ok",
                   throughput={"samples_per_s": 100.0}, timing={"step_time": {"median_s": 0.01}})
    failed = RunRecord(run_id="b", workload="mlp", strategy="mirrored", status="failed", error="OOM")
    write_record(tmp_path, ok)
    write_record(tmp_path, failed)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "record.json").write_text('{"schema_version": 1, "run_id": "c", "work')
    frame = summary.load([tmp_path])
    assert isinstance(frame, pd.DataFrame) and len(frame) == 3
    assert sorted(frame["status"]) == ["corrupt", "failed", "ok"]
    text = summary.table(frame)
    assert "100.00" in text and "failed:" in text and "OOM" in text and "corrupt:" in text


def test_summary_of_missing_directory_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no such results directory"):
        summary.load([tmp_path / "nope"])
