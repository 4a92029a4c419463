"""Pure functions: hyperparameters, statistics, provenance, GPU probing without a GPU."""

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.core import gpu, provenance, startup, stats
from bench.core.errors import UsageError
from bench.core.hparams import HParam, for_workload, parse_set_options, resolve

SPACE = {"n_hidden": HParam(2, 0, 8), "learning_rate": HParam(1e-3, 1e-6, 1.0),
         "optimizer": HParam("adam", choices=("sgd", "adam")), "stateful": HParam(True),
         "rho": HParam(0.9, 0.0, 1.0)}


def test_set_values_are_parsed_to_the_default_type():
    hp = resolve(SPACE, {"n_hidden": "4", "learning_rate": "0.01", "optimizer": "sgd", "stateful": "false"}, "mlp")
    assert hp == {"n_hidden": 4, "learning_rate": 0.01, "optimizer": "sgd", "stateful": False, "rho": 0.9}


@pytest.mark.parametrize("overrides, message", [
    ({"depth": "3"}, "unknown hyperparameter 'depth' for mlp; valid:"),
    ({"n_hidden": "three"}, "expected int"),
    ({"n_hidden": "9"}, "must be <= 8"),
    ({"optimizer": "lamb"}, "must be one of sgd, adam"),
    ({"stateful": "maybe"}, "expected bool"),
])
def test_bad_set_values_are_usage_errors(overrides, message):
    with pytest.raises(UsageError, match=message):
        resolve(SPACE, overrides, "mlp")


def test_clamp_keeps_mutated_values_valid():
    assert SPACE["rho"].clamp(1.08) == 1.0
    assert SPACE["n_hidden"].clamp(-3) == 0
    assert SPACE["optimizer"].clamp("lamb") == "adam"


def test_set_options_and_workload_scoping():
    parsed = parse_set_options(["rnn_units=64", "mlp.n_hidden=3", "charrnn-gru.seq_length=50"])
    known = {"mlp", "charrnn-gru"}
    assert for_workload(parsed, "mlp", known) == {"rnn_units": "64", "n_hidden": "3"}
    assert for_workload(parsed, "charrnn-gru", known) == {"rnn_units": "64", "seq_length": "50"}
    with pytest.raises(UsageError, match="expected key=value"):
        parse_set_options(["oops"])
    with pytest.raises(UsageError, match="unknown workload 'gpt'"):
        for_workload({"gpt.layers": "2"}, "mlp", known)


def test_percentiles_and_step_summary():
    values = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert stats.percentile(values, 50) == 3.0
    assert stats.percentile(values, 90) == pytest.approx(4.6)
    summary = stats.step_time_summary(values)
    assert summary["median_s"] == 3.0 and summary["count"] == 5 and summary["total_s"] == 15.0
    assert stats.step_time_summary([]) == {"count": 0}


def test_throughput_counts_samples_tokens_and_devices():
    result = stats.throughput([0.5, 0.5], samples_per_step=64, devices=2, tokens_per_sample=100)
    assert result["samples_per_s"] == 128.0
    assert result["samples_per_s_per_device"] == 64.0
    assert result["tokens_per_s"] == 12800.0
    assert stats.throughput([], 64, 1) == {}


def test_nvml_absence_is_reported_not_raised():
    state = gpu.probe()
    if state.available:            # on a GPU node the same call lists the GPUs
        assert state.gpus and all(g["name"] for g in state.gpus)
    else:
        assert state.reason and "NVML" in state.reason


def test_provenance_has_versions_host_and_slurm(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    info = provenance.collect()
    assert info["slurm"]["SLURM_JOB_ID"] == "4242"
    assert info["packages"]["distbench"]
    assert info["hostname"] and info["cpu_model"] and info["python"]
    assert "sha" in info["git"]


def test_sampler_records_host_rows():
    from bench.run.sampler import ResourceSampler
    import time
    with ResourceSampler(0.05) as sampler:
        time.sleep(0.3)
    assert len(sampler.host_rows) >= 3
    assert sampler.host_summary()["rss_mib_max"] > 0
    assert sampler.gpu_summary()["available"] in (True, False)
    assert not math.isnan(sampler.host_summary()["cpu_pct_mean"])
    assert 0 <= sampler.host_summary()["steal_pct_mean"] <= 100     # a hypervisor's share (0 on bare metal)
    assert len(sampler.host_rows[0]) == len(sampler.HOST_COLUMNS)


def test_a_summary_read_within_the_first_interval_has_a_sample():
    """A Ray trial reports its telemetry after each iteration, which may end before the first
    interval: the report samples once itself (CI saw a trial with no host samples)."""
    from bench.run.sampler import ResourceSampler
    sampler = ResourceSampler(60.0)
    sampler.start()
    try:
        sampler.sample_now()
        summary = sampler.host_summary()
    finally:
        sampler.stop()
    assert summary["samples"] == 1 and summary["proc_cpu_pct_mean"] is not None


def test_sampler_sees_another_process_on_the_runs_cores():
    """A process spinning on the run's one core shows as the others' share of that core."""
    import subprocess
    import sys
    pin = "import os, time\nos.sched_setaffinity(0, {0})\n"
    spinner = subprocess.Popen([sys.executable, "-c", pin + "end = time.time() + 4\nwhile time.time() < end: pass"])
    try:
        run = pin + ("time.sleep(0.5)\nfrom bench.run.sampler import ResourceSampler\n"
                     "with ResourceSampler(0.1) as s: time.sleep(1.5)\n"
                     "print(s.host_summary()['others_cpu_pct_mean'], s.host_summary()['cores'])")
        done = subprocess.run([sys.executable, "-c", run], capture_output=True, text=True, timeout=60)
    finally:
        spinner.kill()
    assert done.returncode == 0, done.stderr
    others, cores = done.stdout.split()
    assert float(others) > 30 and cores == "1"


@pytest.mark.parametrize("rate, bits", [("300mbit", 3e8), ("1gbit", 1e9), ("500kbit", 5e5), ("2.5Gbit", 2.5e9)])
def test_link_rates_are_read_as_tc_writes_them(rate, bits):
    from bench.tools.emucluster import rate_bits
    assert rate_bits(rate) == bits


@pytest.mark.parametrize("rate", ["300", "fast", "mbit", "300mbps"])
def test_a_malformed_link_rate_is_one_usage_error_before_anything_starts(rate, tmp_path):
    from bench.tools.emucluster import EmulatedCluster
    with pytest.raises(UsageError, match="link rate"):
        EmulatedCluster(tmp_path, nodes=1, rate=rate)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("items, share, cores, expected", [
    (4, 0.5, [0, 1], [[0], [0], [1], [1]]),
    (2, 1, [0, 1], [[0], [1]]),
    (1, 2, [0, 1], [[0, 1]]),
    (3, 0.25, [4, 5], [[4], [4], [4]]),
])
def test_nodes_and_replicas_of_a_share_fit_on_cores_in_order(items, share, cores, expected):
    from bench.run.cgroups import fit
    assert fit(items, share, cores) == expected


@pytest.mark.parametrize("items, share, message", [
    (5, 0.5, "do not fit"), (3, 1, "do not fit"), (2, 0.3, "divide a core"), (1, 1.5, "whole number"), (1, 0, "> 0"),
])
def test_a_share_that_cannot_be_made_is_one_usage_error(items, share, message):
    from bench.run.cgroups import fit
    with pytest.raises(UsageError, match=message):
        fit(items, share, [0, 1])


@pytest.mark.parametrize("share, workers, message", [
    (0.3, 2, "divides one"), (1.5, 2, "whole number"), (0, 2, "whole number"), (0.5, None, "needs --local-workers"),
])
def test_cpus_per_replica_is_checked_before_anything_starts(share, workers, message, monkeypatch):
    from bench.core.config import RunConfig
    monkeypatch.delenv("DISTBENCH_CPU_SHARES", raising=False)
    with pytest.raises(UsageError, match=message):
        RunConfig(workload="mlp", cpus_per_replica=share, local_workers=workers).validate()


@pytest.mark.parametrize("count", [1, 2, 3, 4, 8, 64])
@pytest.mark.parametrize("rows", [0, 1, 7, 64, 4096])
def test_shards_partition_every_batch_in_order(count, rows):
    from bench.core.sharding import Shard
    bounds = [Shard(i, count).bounds(rows) for i in range(count)]
    assert bounds[0][0] == 0 and bounds[-1][1] == rows
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    assert max(b - a for a, b in bounds) - min(b - a for a, b in bounds) <= 1


def test_cluster_clean_of_a_malformed_owner_file_is_one_usage_error(tmp_path, capsys):
    from bench.cli import main
    (tmp_path / "owner.json").write_text("{not json")
    assert main(["cluster", "clean", "--dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().endswith("not a cluster's owner file (malformed JSON); remove it by hand")
    assert (tmp_path / "owner.json").exists()


@pytest.mark.parametrize("period, quota", [(None, "50000"), ("10000", "5000")])
def test_a_half_core_is_its_quota_over_the_period(period, quota, tmp_path, monkeypatch):
    from bench.run import cgroups
    for controller in ("cpu", "cpuset"):
        (tmp_path / controller).mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1")
    (tmp_path / "cpuset" / "cpuset.cpus").write_text("0-1")
    (tmp_path / "cpuset" / "cpuset.mems").write_text("0")
    monkeypatch.setattr(cgroups, "ROOT", tmp_path)
    monkeypatch.setattr(cgroups.os, "geteuid", lambda: 0)
    if period:
        monkeypatch.setenv(cgroups.PERIOD_ENV, period)
    cpu, _ = cgroups.create("half", [1], 0.5)
    assert (Path(cpu) / "cpu.cfs_quota_us").read_text() == quota
    assert (Path(cpu) / "cpu.cfs_period_us").read_text() == (period or "100000")


@pytest.mark.parametrize("period", ["100", "10ms", "2000000"])
def test_a_malformed_cfs_period_is_one_usage_error(period, monkeypatch):
    from bench.run import cgroups
    monkeypatch.setenv(cgroups.PERIOD_ENV, period)
    with pytest.raises(UsageError, match=cgroups.PERIOD_ENV):
        cgroups.period_us()


@pytest.mark.parametrize("tty, verbose, shown", [(True, "auto", 1), (False, "auto", "log"), (True, 0, 0),
                                                 (False, 2, 2), (True, "log", "log")])
def test_progress_is_the_bar_on_a_terminal_and_lines_elsewhere(tty, verbose, shown, monkeypatch):
    from bench.run import runner
    monkeypatch.setattr(runner.sys.stdout, "isatty", lambda: tty, raising=False)
    assert runner.progress_of(verbose) == shown


def test_a_run_says_its_outcome_in_one_line():
    from bench.core.record import RunRecord
    ok = RunRecord("r", "mlp", "mwms", status="ok", num_replicas=2, throughput={"samples_per_s": 1234.5},
                   timing={"step_time": {"median_s": 0.0125}})
    assert ok.outcome_line() == "mlp / mwms x2: 1,234.5 samples/s, median step 12.5 ms"
    assert RunRecord("r", "mlp", "mwms", status="failed", error="boom").outcome_line() == "bench: run failed: boom"
    assert RunRecord("r", "mlp", "mwms", status="running").outcome_line() == "bench: run running"
    assert RunRecord("r", "mlp", "mwms", status="ok").outcome_line() is None


STARTUP = """WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1796388513.997413   27435 port.cc:153] oneDNN custom operations are on. You may see ...
I0000 00:00:1796388514.058407   27435 cpu_feature_guard.cc:227] This TensorFlow binary is optimized ...
To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow ...
W0000 00:00:1796388514.100000   27435 gpu_device.cc:2341] Cannot dlopen some GPU libraries.
/x/site-packages/keras/src/export.py:4: UserWarning: something a user should see
E0000 00:00:1796388514.200000   27435 cuda_dnn.cc:8579] Unable to register cuDNN factory
"""


@pytest.mark.parametrize("level, kept", [
    (2, ["/x/site-packages/keras/src/export.py:4: UserWarning", "E0000"]),
    (1, ["W0000", "/x/site-packages/keras/src/export.py:4: UserWarning", "E0000"]),
])
def test_tensorflows_native_start_up_lines_below_the_log_level_are_dropped(level, kept):
    """absl's lines obey TF_CPP_MIN_LOG_LEVEL as TensorFlow's own did (tensorflow#100442); a
    message's continuation goes with its header; anything else is kept."""
    lines = startup.kept_lines(STARTUP, level)
    assert [line.split(" ")[0] for line in lines] == [k.split(" ")[0] for k in kept], lines


def test_tensorflow_imports_without_its_start_up_lines_at_level_2():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    code = "from bench.core import startup; tf = startup.import_tensorflow(); print(tf.constant(3).numpy())"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "3" and done.stderr == "", done.stderr
