"""Bad input: one clear error line, exit 2, nothing written that looks like a success."""

import json

import pytest

from conftest import error_lines, read_json, record_paths

pytestmark = pytest.mark.stack


@pytest.mark.parametrize("args, message", [
    (["run", "-w", "resnet"], "unknown workload 'resnet'; valid: mlp, memnn, charrnn-gru, charrnn-lstm"),
    (["run", "-w", "mlp", "-s", "deepspeed"], "unknown strategy 'deepspeed'; valid: default, mirrored"),
    (["run", "-w", "mlp", "--set", "depth=3"], "unknown hyperparameter 'depth' for mlp"),
    (["run", "-w", "mlp", "--set", "n_hidden=lots"], "--set n_hidden='lots': expected int"),
    (["run", "-w", "mlp", "--batch-size", "-4"], "--batch-size -4: must be >= 1"),
    (["run", "-w", "mlp", "--epochs", "0"], "--epochs 0: must be >= 1"),
    (["run", "-w", "mlp", "--data-dir", "/nonexistent/data"], "--data-dir /nonexistent/data: no such directory"),
    (["run", "-w", "mlp", "--epochs", "two"], "invalid int value: 'two'"),
    (["run", "-w", "mlp", "--strategy", "default", "--devices", "2"], "needs --strategy mirrored"),
    (["run", "-w", "mlp", "--data", "generated", "--strategy", "mirrored", "--devices", "3", "--batch-size", "32"],
     "global batch 32 does not split over 3 replicas"),
    (["run", "-w", "memnn"], "babi not found (looked in"),
    (["run", "-w", "memnn", "--set", "hops=3"], "hops: applies with architecture=memn2n only (here architecture=course)"),
    (["run", "-w", "memnn", "--set", "architecture=memn2n", "--set", "story_layout=statements"],
     "story_layout: applies with architecture=course only (here architecture=memn2n)"),
    (["run", "-w", "mlp", "--resume", "/nonexistent.weights.h5"], "--resume /nonexistent.weights.h5: no such file"),
    (["bogus"], "invalid choice: 'bogus'"),
    (["run", "-w", "charrnn-gru", "--target-accuracy", "0.9"], "workload 'charrnn-gru' reports no accuracy"),
    (["run", "-w", "mlp", "--data", "generated", "--export"], "workload 'mlp' has no exportable generator"),
    (["run", "-w", "charrnn-gru", "--synthetic", "--export"], "synthetic data has no vocabulary"),
    (["run", "-w", "mlp", "--stop-at-target"], "--stop-at-target needs --target-accuracy"),
    (["run", "-w", "mlp", "-s", "ray"], "strategy 'ray' runs studies of trials, not one run: use 'bench tune pbt"),
    (["tune", "search", "mlp", "--space", "learning_rate=loguniform(0.01, 0.0001)"],
     "space learning_rate='loguniform(0.01, 0.0001)': lower 0.01 > upper 0.0001"),
    (["tune", "search", "mlp", "--space", "depth=randint(1, 4)"], "space: unknown hyperparameter 'depth' for mlp"),
    (["tune", "search", "mlp", "--space", "n_hidden=normal(1, 4)"], "space n_hidden='normal(1, 4)': expected one of"),
    (["tune", "search", "mlp", "--space", "n_hidden=randint(0, 12)"], "n_hidden=12: must be <= 8"),
    (["tune", "pbt", "memnn", "--space", "lstm_units=grid(32, 64)"],
     "mutation lstm_units: memnn's trained weights do not survive a change of it"),
    (["tune", "pbt", "charrnn-gru"], "pbt: charrnn-gru reports no accuracy to rank trials by"),
    (["tune", "pbt", "memnn", "--samples", "0"], "--samples 0: must be >= 1"),
    (["tune", "search", "memnn", "--space", "hops=randint(1, 3)"], "hops: applies with architecture=memn2n only"),
    (["tune", "search", "mlp", "--data-dir", "/nonexistent"], "--data-dir /nonexistent: no such directory"),
    (["tune", "pbt", "memnn"], "babi not found (looked in"),
    (["cluster", "check", "--rate", "fast"], "link rate 'fast': a number and one of"),
    (["cluster", "up", "--rate", "300mbps"], "link rate '300mbps'"),
])
def test_bad_input_is_one_line_and_exit_2(bench, tmp_path, args, message):
    with_results = args[0] in ("run", "tune")
    done = bench(*args, "--results", str(tmp_path / "results")) if with_results else bench(*args)
    assert done.returncode == 2, done.stderr
    lines = error_lines(done.stderr)
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    assert not record_paths(tmp_path / "results")


def test_missing_real_data_names_the_prestage_route(bench, tmp_path):
    done = bench("run", "-w", "mlp", "--data-dir", str(tmp_path))
    assert done.returncode == 2
    line = error_lines(done.stderr)[0]
    assert "fashion-mnist not found" in line and str(tmp_path) in line and "pre-stage" in line


def test_list_says_what_is_available_and_why_not(bench):
    done = bench("list")
    assert done.returncode == 0
    assert "charrnn-lstm" in done.stdout and "mirrored   available" in done.stdout
    assert "mwms       available" in done.stdout
    horovod = next(line for line in done.stdout.splitlines() if line.strip().startswith("horovod"))
    assert "available" in horovod                         # and, if not, why not
    assert "ray        available" in done.stdout


def test_env_reports_nvml_state(bench):
    done = bench("env")
    assert done.returncode == 0
    import json
    info = json.loads(done.stdout)
    assert info["nvml"]["available"] or "NVML" in info["nvml"]["reason"]
    assert info["packages"]["tensorflow-cpu"].startswith("2.21") or info["packages"].get("tensorflow", "").startswith("2.21")


def test_data_check_reports_present_and_missing(bench, tmp_path):
    done = bench("data", "check", "tinyshakespeare")
    assert done.returncode == 0 and "tinyshakespeare  ok" in done.stdout
    done = bench("data", "check", "babi", "--data-dir", str(tmp_path))
    assert done.returncode == 1 and "babi             missing" in done.stdout and not done.stderr
    done = bench("data", "check", "--data-dir", str(tmp_path), "babi", "tinyshakespeare")    # options first
    assert done.returncode == 1 and "babi             missing" in done.stdout, done.stderr
    assert len(done.stdout.strip().splitlines()) == 2
    done = bench("data", "check", "--data-dir", str(tmp_path), "--nonsense")
    assert done.returncode == 2 and done.stderr.strip() == "bench: error: unrecognized arguments: --nonsense"


def test_run_prints_record_path_last(bench, tmp_path):
    done = bench("run", "-w", "mlp", "--data", "generated", "--steps-per-epoch", "8", "-q",
                 "--set", "n_neurons=16", "--results", str(tmp_path / "r"))
    assert done.returncode == 0, done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert last.endswith("record.json") and read_json(last)["status"] == "ok"
    assert "absl::InitializeLog" not in done.stderr and "oneDNN" not in done.stderr, done.stderr


def test_a_jobs_run_logs_a_progress_line_per_epoch(bench, tmp_path):
    """verbose "log" (what job scripts hand their runs): no Keras bar, a line per epoch with the
    step, samples/s and the time left, then the summary and the record's path."""
    config = {"workload": "mlp", "data": "generated", "epochs": 2, "steps_per_epoch": 6, "warmup_steps": 2,
              "overrides": {"n_neurons": "16"}, "results": str(tmp_path / "r"), "verbose": "log"}
    done = bench("run", env={"DISTBENCH_RUN_CONFIG": json.dumps(config)})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines[:2]] == ["epoch 1/2 step 6/6", "epoch 2/2 step 6/6"], lines
    assert "samples/s, 0 min 00 s left, loss " in lines[1] and "samples/s" in lines[0] and len(lines) == 4


def test_doctor_says_there_is_no_gpu_and_fails_where_gpus_are_expected(bench, tmp_path):
    done = bench("doctor", "--results", str(tmp_path / "r"))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert all(line.split()[0] in ("ok", "warning", "error") for line in lines)
    assert any(line.startswith("warning  tensorflow:") and "no GPU" in line for line in lines)
    assert any(line.startswith("ok       horovod:") for line in lines)
    expecting = bench("doctor", "--gpus", "2", "--results", str(tmp_path / "r"))
    assert expecting.returncode == 1
    assert any(line.startswith("error    tensorflow:") and "2 GPU(s) expected" in line for line in expecting.stdout.splitlines())
    assert error_lines(expecting.stderr) == ["bench: error: 2 check(s) failed"]
