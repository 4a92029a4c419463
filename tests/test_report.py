"""Analysis: known-answer aggregation, speedup and efficiency; the rendered report."""

import pytest

from analysis import report, scaling, summary
from bench.record import RunRecord, write_record


def record(run_id, workload, strategy, gpus, throughput, status="ok", global_batch=64):
    return RunRecord(run_id=run_id, workload=workload, strategy=strategy, status=status, num_replicas=gpus,
                     global_batch_size=global_batch, per_replica_batch_size=global_batch // gpus,
                     throughput={"samples_per_s": throughput}, timing={"step_time": {"median_s": 0.1}},
                     error=None if status == "ok" else "boom")


@pytest.fixture
def results(tmp_path):
    runs = [("a1", "mlp", "default", 1, 100.0), ("a2", "mlp", "default", 1, 110.0), ("a3", "mlp", "default", 1, 90.0),
            ("b1", "mlp", "mwms", 1, 80.0), ("b2", "mlp", "mwms", 2, 150.0), ("b3", "mlp", "mwms", 4, 240.0),
            ("c1", "mlp", "horovod", 2, 190.0)]
    for run_id, workload, strategy, gpus, tput in runs:
        write_record(tmp_path, record(run_id, workload, strategy, gpus, tput))
    write_record(tmp_path, record("f1", "mlp", "mwms", 4, 0.0, status="failed"))
    (tmp_path / "torn").mkdir()
    (tmp_path / "torn" / "record.json").write_text('{"schema_version": 1, "run_')
    return tmp_path


def test_known_speedups_and_efficiencies(results):
    table = scaling.speedup(scaling.aggregate(summary.load([results])))
    row = lambda s, g: table[(table.strategy == s) & (table.num_replicas == g)].iloc[0]
    assert row("default", 1)["samples_per_s"] == 100.0 and row("default", 1)["runs"] == 3
    assert row("mwms", 2)["speedup"] == pytest.approx(150 / 80)
    assert row("mwms", 4)["efficiency"] == pytest.approx(240 / 80 / 4)
    assert row("mwms", 4)["baseline"] == "mwms x1"
    assert row("mwms", 4)["speedup_vs_best"] == pytest.approx(240 / 100)          # best 1-GPU: default
    assert row("mwms", 4)["efficiency_vs_best"] == pytest.approx(240 / 100 / 4)
    assert row("horovod", 2)["efficiency"] == pytest.approx(1.0)                   # its own smallest count
    assert row("horovod", 2)["efficiency_vs_best"] == pytest.approx(190 / 100 / 2)
    low, high = row("default", 1)["ci_low"], row("default", 1)["ci_high"]
    assert 90 <= low <= 100 <= high <= 110


def test_report_lists_failed_and_torn_records_and_embeds_plots(results, tmp_path):
    path = report.build([str(results)], tmp_path / "report")
    markdown = path.read_text()
    assert "| mlp" in markdown and "mwms x1" in markdown and "![throughput-mlp](throughput-mlp.png)" in markdown
    assert "failed:" in markdown and "boom" in markdown and "corrupt:" in markdown
    page = (tmp_path / "report" / "report.html").read_text()
    assert "<table" in page and page.count("data:image/png;base64,") == 1
    assert (tmp_path / "report" / "scaling.csv").read_text().startswith("workload,strategy,num_replicas")


def test_report_of_empty_directory_is_exit_2(bench, tmp_path):
    done = bench("report", str(tmp_path), "-o", str(tmp_path / "out"))
    assert done.returncode == 2 and "no records under" in done.stderr
