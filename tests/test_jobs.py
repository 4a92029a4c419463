"""Study specs -> plans and sbatch scripts (pure functions of spec and profile)."""

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest

from bench.core.config import StudyConfig, from_dict
from bench.core.errors import UsageError
from jobs import sbatch, spec
from conftest import ROOT, error_lines

GOLDEN = Path(__file__).parent / "golden"
EXAMPLE = ROOT / "examples" / "ft3-charrnn.toml"


def write_spec(tmp_path, text: str) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(text)
    return path


BASE = """
[study]
name = "s"
profile = "{profile}"
results = "{results}"
steps_per_epoch = 5
scaling = "{scaling}"
batch_size = 32

[matrix]
strategies = ["default", "mirrored", "mwms", "horovod", "ray"]
gpus = [1, 2, 4]

[[workloads]]
name = "mlp"
data = "generated"
set = {{ n_neurons = 64 }}
"""


def test_plan_counts_jobs_and_gpu_hours_and_writes_nothing(bench, tmp_path):
    done = bench("jobs", "plan", str(EXAMPLE))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == ("45 jobs, at most 73.5 GPU-hours and 36.75 node-hours "
                                                    "(time limit 00:30:00 each)")   # 2 GPUs a node: a 1-GPU job is half of one
    assert "skipped charrnn-gru mirrored gpus=4 nodes=2: mirrored runs on one node" in done.stdout
    assert list(tmp_path.iterdir()) == []


def test_precision_and_tf32_are_matrix_axes(tmp_path):
    text = BASE.format(profile="ft3", results="r", scaling="weak").replace(
        "gpus = [1, 2, 4]", 'gpus = [1, 2, 4]\nprecision = ["float32", "mixed_bfloat16"]\ntf32 = ["off"]')
    study = spec.load(write_spec(tmp_path, text))
    jobs = study.jobs()
    assert len(jobs) == 2 * (1 + 2 + 3 + 3 + 3)
    names = {j.name for j in jobs}
    assert "s-mlp-horovod-bf16-notf32-g4-n2-r0" in names and "s-mlp-horovod-notf32-g4-n2-r0" in names
    script = sbatch.render(next(j for j in jobs if j.name == "s-mlp-mwms-bf16-notf32-g2-n1-r0"), study)
    assert '"precision":"mixed_bfloat16"' in script and '"tf32":"off"' in script
    example = spec.load(EXAMPLE)
    assert {j.precision for j in example.jobs()} == {"mixed_float16"} and example.jit_compile == "auto"


def handed_config(script: str) -> dict:
    """The config a job script hands its workers (a run's or, for ray, a study's)."""
    [line] = [line for line in script.splitlines()
              if line.startswith(("export DISTBENCH_RUN_CONFIG=", "export DISTBENCH_STUDY_CONFIG="))]
    return json.loads(shlex.split(line.split("=", 1)[1])[0])


def test_every_job_of_every_backend_carries_the_matrix_settings(tmp_path):
    """precision, TF32, JIT, data and --set reach every job, ray's included (its scripts once
    ran float32 under a name that said fp16)."""
    text = BASE.format(profile="ft3", results="r", scaling="weak").replace(
        "gpus = [1, 2, 4]", 'gpus = [1, 2, 4]\nprecision = ["mixed_bfloat16"]\ntf32 = ["off"]').replace(
        "batch_size = 32", 'batch_size = 32\njit_compile = "true"')
    study = spec.load(write_spec(tmp_path, text))
    strategies = set()
    for job in study.jobs():
        config = handed_config(sbatch.render(job, study))
        strategies.add(job.strategy)
        assert (config["precision"], config["tf32"], config["jit_compile"], config["data"],
                config["overrides"]) == ("mixed_bfloat16", "off", "true", "generated", {"n_neurons": "64"}), job.name
        if job.strategy == "ray":       # what `bench tune` will read: a valid study
            assert from_dict(StudyConfig, config, job.name).samples == job.gpus
    assert strategies == {"default", "mirrored", "mwms", "horovod", "ray"}


def test_a_handed_study_takes_no_options_and_must_be_the_named_one(bench, tmp_path):
    handed = {"DISTBENCH_STUDY_CONFIG": json.dumps({"workload": "mlp", "scheduler": "search", "data": "generated"})}
    done = bench("tune", "search", "mlp", "--samples", "3", env=handed)
    assert error_lines(done.stderr) == ["bench: error: DISTBENCH_STUDY_CONFIG is set (a job's study): give no tune "
                                 "options (got --samples)"] and done.returncode == 2
    done = bench("tune", "pbt", "mlp", env=handed)
    assert error_lines(done.stderr) == ["bench: error: DISTBENCH_STUDY_CONFIG is a search study of mlp, not pbt mlp"]
    # no options: the handed study itself is checked (before Ray starts)
    done = bench("tune", "search", "mlp", env={"DISTBENCH_STUDY_CONFIG": json.dumps(
        {"workload": "mlp", "scheduler": "search", "quantile_fraction": 0.9})})
    assert error_lines(done.stderr) == ["bench: error: --quantile-fraction 0.9: must be in (0, 0.5]"]
    done = bench("tune", "search", "mlp", env={"DISTBENCH_STUDY_CONFIG": '{"workload": "mlp", "sample": 2}'})
    assert error_lines(done.stderr)[0].startswith("bench: error: DISTBENCH_STUDY_CONFIG: unknown key 'sample'")


@pytest.mark.parametrize("profile", ["ft3", "local"])
@pytest.mark.parametrize("scaling", ["strong", "weak"])
def test_scripts_match_golden_files(tmp_path, profile, scaling):
    study = spec.load(write_spec(tmp_path, BASE.format(profile=profile, results="/scratch/results/s", scaling=scaling)))
    jobs = {(j.strategy, j.gpus): j for j in study.jobs()}
    for strategy, gpus in [("default", 1), ("mirrored", 2), ("mwms", 4), ("horovod", 4), ("ray", 4)]:
        text = sbatch.render(jobs[(strategy, gpus)], study)
        golden = GOLDEN / f"{profile}-{scaling}-{strategy}.sbatch"
        if os.environ.get("DISTBENCH_UPDATE_GOLDEN"):
            golden.write_text(text)
        assert text == golden.read_text(), f"{golden.name} differs (DISTBENCH_UPDATE_GOLDEN=1 to accept)"


def test_write_makes_one_script_per_job_and_a_report(tmp_path):
    study = spec.load(write_spec(tmp_path, BASE.format(profile="local", results="r", scaling="strong")))
    paths = sbatch.write(study, tmp_path / "out")
    # default: 1 GPU; mirrored: 1, 2 (one node); mwms, horovod, ray: 1, 2, 4 (2 nodes of 2)
    assert len(paths) == len(study.jobs()) == 1 + 2 + 3 + 3 + 3
    assert (tmp_path / "out" / "report.sbatch").is_file() and (tmp_path / "out" / "logs").is_dir()


def test_the_report_job_runs_the_studys_what_if_on_its_profile(tmp_path):
    text = BASE.format(profile="ft3", results="r", scaling="weak").replace(
        'batch_size = 32', 'batch_size = 32\nwhat_if_gpus = [8, 16, 64]')
    study = spec.load(write_spec(tmp_path, text))
    line = sbatch.render_report(study).splitlines()[-1]
    profile = (spec.PROFILES / "ft3.toml").resolve()
    assert line.endswith(f"/r/report --jobs . --profile {profile} --gpus 8,16,64"), line   # the scripts' directory
    plain = spec.load(write_spec(tmp_path, BASE.format(profile="ft3", results="r", scaling="weak")))
    assert "--gpus" not in sbatch.render_report(plain)


@pytest.mark.parametrize("text, message", [
    ('[study]\nname = "s"\nwhat_if_gpus = [8, 0]\n[matrix]\nstrategies=["default"]\ngpus=[1]\n[[workloads]]\nname="mlp"\n',
     "study.what_if_gpus[1]: 0: must be a positive integer"),
    ('[study]\nname = "s"\n[matrix]\nstrategies=["default"]\ngpus=[1]\nprecision=["fp8"]\n[[workloads]]\nname="mlp"\n',
     "matrix.precision[0]: 'fp8' is not one of float32, mixed_float16, mixed_bfloat16"),
    ('[study]\nname = "s"\njit_compile = "yes"\n[matrix]\nstrategies=["default"]\ngpus=[1]\n[[workloads]]\nname="mlp"\n',
     "study.jit_compile: 'yes' is not auto, true, false"),
    ('[study]\nname = "s"\nfoo = 1\n[matrix]\nstrategies=["default"]\ngpus=[1]\n[[workloads]]\nname="mlp"\n',
     "study.foo: unknown key"),
    ('[study]\nname = "$(touch pwned)"\n[matrix]\nstrategies=["default"]\ngpus=[1]\n[[workloads]]\nname="mlp"\n',
     "study.name: '$(touch pwned)': use letters"),
    ('[study]\nname = "s"\n[matrix]\nstrategies=["default"]\ngpus=[1]\n[[workloads]]\nname="mlp"\nset={n="`id`"}\n',
     "workloads[0].set.n: '`id`' is not a plain name/number"),
    ('[study]\nname = "s"\n[matrix]\nstrategies=["ray2"]\ngpus=[1]\n[[workloads]]\nname="mlp"\n',
     "matrix.strategies[0]: unknown strategy 'ray2'"),
    ('[study]\nname = "s"\n[matrix]\nstrategies=["default"]\ngpus=[0]\n[[workloads]]\nname="mlp"\n',
     "matrix.gpus[0]: 0: must be a positive integer"),
    ('[study]\nname = "s"\ntime_limit="30 minutes"\n[matrix]\nstrategies=["default"]\ngpus=[1]\n[[workloads]]\nname="mlp"\n',
     "study.time_limit"),
    ('[study\n', "not valid TOML"),
    ('[study]\nname = "s"\ntune="bayes"\n[matrix]\nstrategies=["ray"]\ngpus=[1]\n[[workloads]]\nname="mlp"\n',
     "study.tune: 'bayes' is not pbt or search"),
])
def test_bad_specs_name_file_and_key(bench, tmp_path, text, message):
    path = write_spec(tmp_path, text)
    done = bench("jobs", "plan", str(path))
    assert done.returncode == 2
    lines = error_lines(done.stderr)
    assert len(lines) == 1 and str(path) in lines[0] and message in lines[0], done.stderr


def test_hostile_strings_are_quoted_not_executed(tmp_path):
    """A results path with $(...), backticks, quotes and spaces reaches the script quoted:
    running the script creates that directory literally and executes nothing."""
    hostile = "res $(touch PWNED) `touch PWNED2` it's"
    study = spec.load(write_spec(tmp_path, BASE.format(profile="local", results=hostile, scaling="strong")))
    script = sbatch.render(study.jobs()[0], study)
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 0\n")
    (fake_bin / "srun").chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run(["bash", "-c", script], cwd=work, capture_output=True, text=True,
                          env={**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}"})
    assert done.returncode == 0, done.stderr
    assert not list(work.glob("PWNED*")) and not list(tmp_path.glob("PWNED*"))
    assert (tmp_path / hostile).is_dir()           # relative results: the spec's directory


E2E = """
[study]
name = "e2e"
profile = "local"
results = "results"
steps_per_epoch = 8          # 5 warm-up steps are excluded from timing
time_limit = "00:10:00"
batch_size = 16

[matrix]
strategies = ["default", "mirrored"]
gpus = [1]

[[workloads]]
name = "mlp"
data = "generated"
set = { n_neurons = 16 }

[[workloads]]
name = "charrnn-gru"
data = "real"
set = { rnn_units = 16, embedding_dim = 8 }
"""


def test_study_end_to_end_on_real_slurm(slurm, bench, tmp_path):
    """Write, submit, watch, collect a tiny study on a real single-node Slurm; resubmitting
    submits nothing twice."""
    import sys
    import time
    spec_path = write_spec(tmp_path, E2E)
    env = {**slurm.env, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    assert bench("jobs", "write", str(spec_path), "-o", str(tmp_path / "jobs"), env=env).returncode == 0
    done = bench("jobs", "submit", str(tmp_path / "jobs"), env=env)
    assert done.returncode == 0, done.stderr
    assert "submitted 4 jobs (0 already submitted)" in done.stdout
    again = bench("jobs", "submit", str(tmp_path / "jobs"), env=env)
    assert "submitted 0 jobs (4 already submitted)" in again.stdout
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status = bench("jobs", "status", str(tmp_path / "jobs"), env=env).stdout
        if not any(s in status for s in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING")):
            break
        time.sleep(2)
    assert "COMPLETED" in status or "FINISHED" in status, status
    collected = bench("jobs", "collect", str(tmp_path / "jobs"), "--results", str(tmp_path / "results"), env=env)
    assert collected.returncode == 0, collected.stdout + collected.stderr
    assert collected.stdout.count("ok ") == 4
    assert len(list((tmp_path / "results").rglob("record.json"))) == 4
    report = tmp_path / "results" / "report" / "report.md"     # the report job ran after all others
    while time.monotonic() < deadline and not report.is_file():
        time.sleep(1)
    assert "| charrnn-gru" in report.read_text() and "| mlp" in report.read_text()


def test_submit_without_sbatch_is_one_clear_line(bench, tmp_path):
    study = spec.load(write_spec(tmp_path, E2E))
    sbatch.write(study, tmp_path / "jobs")
    done = bench("jobs", "submit", str(tmp_path / "jobs"), env={"PATH": "/nonexistent"})
    assert done.returncode == 2
    assert "sbatch not found" in error_lines(done.stderr)[0]
    assert not (tmp_path / "jobs" / "manifest.json").exists()


def test_rejected_submission_and_failed_job_on_real_slurm(slurm, bench, tmp_path):
    import sys
    import time
    env = {**slurm.env, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    failing = E2E.replace('name = "e2e"', 'name = "bad"').replace('data = "generated"', 'data = "real"')
    failing = failing.replace('strategies = ["default", "mirrored"]', 'strategies = ["default"]')
    study = spec.load(write_spec(tmp_path, failing))           # mlp on real data: not staged here
    out = tmp_path / "jobs"
    sbatch.write(study, out)
    scripts = sorted(p for p in out.glob("*.sbatch") if p.name != "report.sbatch")
    broken = next(p for p in scripts if "charrnn" in p.name)     # rejected; the mlp job runs and fails
    broken.write_text(broken.read_text().replace("#SBATCH --time=00:10:00", "#SBATCH --time=whenever"))
    done = bench("jobs", "submit", str(out), env={**env, "DISTBENCH_DATA_DIR": str(tmp_path / "none")})
    assert done.returncode == 1
    assert "sbatch rejected" in error_lines(done.stderr)[0] and broken.name in error_lines(done.stderr)[0]
    manifest = spec_manifest(out)
    assert set(manifest["jobs"]) == {p.name for p in scripts if p != broken}   # consistent with Slurm
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = bench("jobs", "status", str(out), env=env).stdout
        if not any(s in status for s in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING")):
            break
        time.sleep(1)
    rows = bench("jobs", "collect", str(out), "--results", str(tmp_path / "results"), env=env)
    assert rows.returncode == 1
    assert "no record" in rows.stdout and "fashion-mnist not found" in rows.stdout   # the job's stderr tail


def test_a_workload_whose_data_the_nodes_lack_is_said_by_collect_and_the_report(slurm, bench, tmp_path):
    """The login node wrote the study (library call: it had the data); the nodes have no
    Fashion-MNIST: mlp's jobs fail at once, charrnn-gru's run. `bench jobs collect` exits 1 and
    says why per job; the report job's first screen says "2 of 2 jobs failed (why)" and mlp
    keeps its section saying so."""
    import sys
    import time
    text = E2E.replace('name = "e2e"', 'name = "lost"').replace('data = "generated"', 'data = "real"', 1)
    text = text.replace('name = "charrnn-gru"\ndata = "real"', 'name = "charrnn-gru"\ndata = "generated"')
    study = spec.load(write_spec(tmp_path, text))
    out = tmp_path / "jobs"
    sbatch.write(study, out)
    env = {**slurm.env, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "DISTBENCH_DATA_DIR": str(tmp_path / "none"), "DISTBENCH_CACHE": str(tmp_path / "cache")}
    assert bench("jobs", "submit", str(out), env=env).returncode == 0
    assert bench("jobs", "wait", str(out), "--timeout", "300", "--poll", "2", env=env).returncode == 0
    collected = bench("jobs", "collect", str(out), "--results", str(tmp_path / "results"), env=env)
    assert collected.returncode == 1
    lines = collected.stdout.splitlines()
    assert sum(line.startswith("ok ") for line in lines) == 2, collected.stdout
    assert collected.stdout.count("fashion-mnist not found") >= 2, collected.stdout
    first_screen = (tmp_path / "results" / "report" / "report.md").read_text().split("## Plots")[0]
    assert "## Jobs that failed" in first_screen and "mlp: 2 of 2 jobs failed (" in first_screen, first_screen
    assert "No result: every one of its 2 jobs failed" in first_screen and "## charrnn-gru" in first_screen


def spec_manifest(out):
    import json
    return json.loads((out / "manifest.json").read_text())


def test_write_stops_or_goes_on_generated_data_when_real_data_is_missing(bench, tmp_path):
    spec_path = write_spec(tmp_path, E2E)                 # charrnn-gru on real data
    empty = {"DISTBENCH_DATA_DIR": str(tmp_path / "none"), "DISTBENCH_CACHE": str(tmp_path / "cache")}
    stop = bench("jobs", "write", str(spec_path), "-o", str(tmp_path / "a"), env=empty)
    assert stop.returncode == 2 and len(stop.stderr.strip().splitlines()) == 1, stop.stderr
    assert "charrnn-gru: its real data is missing" in stop.stderr and "bench data fetch tinyshakespeare" in stop.stderr
    assert not (tmp_path / "a").exists()
    done = bench("jobs", "write", str(spec_path), "-o", str(tmp_path / "b"), "--missing-data", "generated", env=empty)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("charrnn-gru: real data missing (tinyshakespeare")
    scripts = {p.name: p.read_text() for p in (tmp_path / "b").glob("*.sbatch") if p.name != "report.sbatch"}
    assert len(scripts) == 4 and all('"data":"generated"' in text for text in scripts.values())
    plan = json.loads((tmp_path / "b" / "jobs.json").read_text())["jobs"]
    assert sorted(plan) == sorted(scripts) and {job["workload"] for job in plan.values()} == {"mlp", "charrnn-gru"}


def test_failed_jobs_head_the_report_and_fail_collect_and_report(bench, tmp_path):
    """Without Slurm: a written study, its manifest and logs as two finished jobs left them (one
    with an ok record, one that died before its record), one job never submitted."""
    from bench.core.record import RunRecord, write_record
    study = spec.load(write_spec(tmp_path, E2E))
    jobs = tmp_path / "jobs"
    names = sorted(p.name for p in sbatch.write(study, jobs))
    mlp, gru = [n for n in names if "-mlp-default" in n][0], [n for n in names if "-charrnn-gru-default" in n][0]
    (jobs / "manifest.json").write_text(json.dumps({"jobs": {
        mlp: {"job_id": "101"}, gru: {"job_id": "102"},
        **{n: {"job_id": str(200 + i)} for i, n in enumerate(names) if "mirrored" in n and "charrnn" in n}}}))
    (jobs / "logs" / f"{gru[:-7]}.err").write_text(
        "bench: error: tinyshakespeare not found (offline)\nsrun: error: n1: task 0: Exited with exit code 2\n")
    results = tmp_path / "results"
    write_record(results, RunRecord(run_id="r1", workload="mlp", strategy="default", status="ok",
                                    global_batch_size=16, per_replica_batch_size=16, data_source="generated",
                                    throughput={"samples_per_s": 100.0}, timing={"step_time": {"median_s": 0.16}},
                                    provenance={"slurm": {"SLURM_JOB_ID": "101"}}))
    collect = bench("jobs", "collect", str(jobs), "--results", str(results))
    assert collect.returncode == 1
    statuses = {line.split()[-1]: line.split()[0] for line in collect.stdout.splitlines() if line.strip().endswith(".sbatch")}
    assert statuses[mlp] == "ok" and statuses[gru] == "no" and list(statuses.values()).count("never") == 2
    done = bench("report", str(results), "-o", str(tmp_path / "report"), "--jobs", str(jobs))
    assert done.returncode == 1 and "3 of 4 jobs of the study failed" in done.stderr
    first = (tmp_path / "report" / "report.md").read_text().split("## Plots")[0]
    assert "- charrnn-gru: 2 of 2 jobs failed (no record: bench: error: tinyshakespeare not found (offline)" in first
    assert "- mlp: 1 of 2 jobs failed (never submitted)" in first
    assert "## charrnn-gru" in first and "every one of its 2 jobs failed" in first
    assert "Data: generated." in first                    # mlp ran on generated data: said


def test_scripts_activate_the_writers_venv_unless_the_profile_names_one(tmp_path):
    import dataclasses
    study = dataclasses.replace(spec.load(write_spec(tmp_path, BASE.format(profile="ft3", results="r", scaling="weak"))),
                                venv="/opt/distbench/.venv")
    script = sbatch.render(study.jobs()[0], study).splitlines()
    assert script[script.index("module load cesga/2022 gcc/system openmpi/4.1.4_ft3") + 1] == \
        'source "/opt/distbench/.venv/bin/activate"'                  # after the modules
    assert 'source "/opt/distbench/.venv/bin/activate"' in sbatch.render_report(study)
    own = tmp_path / "own.toml"
    own.write_text((spec.PROFILES / "ft3.toml").read_text().replace('name = "ft3"', 'name = "own"\nvenv = "$HOME/env/"'))
    mine = dataclasses.replace(spec.load(write_spec(tmp_path, BASE.format(profile="own.toml", results="r", scaling="weak"))),
                               venv="/opt/distbench/.venv")
    assert 'source "$HOME/env/bin/activate"' in sbatch.render(mine.jobs()[0], mine)
    own.write_text(own.read_text().replace('venv = "$HOME/env/"', 'venv = "$(rm -rf ~)"'))
    with pytest.raises(UsageError, match="venv.*a plain path"):
        spec.load(write_spec(tmp_path, BASE.format(profile="own.toml", results="r", scaling="weak")))


def test_the_demos_study_runs_every_case_twice_so_that_its_figures_carry_intervals():
    """`make demo`'s report stated every figure as '¹ one repeat: no interval' (issue 29)."""
    demo = spec.load(ROOT / "examples" / "emulated-demo.toml")
    runs = {}
    for job in demo.jobs():
        runs.setdefault((job.workload.name, job.strategy, job.gpus, job.nodes), set()).add(job.run.seed)
    assert runs and all(len(seeds) >= 2 for seeds in runs.values()), runs
    assert {workload for workload, *_ in runs} == {"mlp", "memnn", "charrnn-gru", "charrnn-lstm"}
