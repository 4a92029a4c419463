"""Study specs -> plans and sbatch scripts (pure functions of spec and profile)."""

import os
import subprocess
from pathlib import Path

import pytest

from bench.errors import UsageError
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
strategies = ["default", "mirrored", "mwms", "horovod"]
gpus = [1, 2, 4]

[[workloads]]
name = "mlp"
data = "generated"
set = {{ n_neurons = 64 }}
"""


def test_plan_counts_jobs_and_gpu_hours_and_writes_nothing(bench, tmp_path):
    done = bench("jobs", "plan", str(EXAMPLE))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "33 jobs, at most 51 GPU-hours (time limit 00:30:00 each)"
    assert "skipped charrnn-gru mirrored gpus=4 nodes=2: mirrored runs on one node" in done.stdout
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("profile", ["ft3", "local"])
@pytest.mark.parametrize("scaling", ["strong", "weak"])
def test_scripts_match_golden_files(tmp_path, profile, scaling):
    study = spec.load(write_spec(tmp_path, BASE.format(profile=profile, results="results/s", scaling=scaling)))
    jobs = {(j.strategy, j.gpus): j for j in study.jobs()}
    for strategy, gpus in [("default", 1), ("mirrored", 2), ("mwms", 4), ("horovod", 4)]:
        text = sbatch.render(jobs[(strategy, gpus)], study)
        golden = GOLDEN / f"{profile}-{scaling}-{strategy}.sbatch"
        if os.environ.get("DISTBENCH_UPDATE_GOLDEN"):
            golden.write_text(text)
        assert text == golden.read_text(), f"{golden.name} differs (DISTBENCH_UPDATE_GOLDEN=1 to accept)"


def test_write_makes_one_script_per_job_and_a_report(tmp_path):
    study = spec.load(write_spec(tmp_path, BASE.format(profile="local", results="r", scaling="strong")))
    paths = sbatch.write(study, tmp_path / "out")
    # default: 1 GPU; mirrored: 1, 2 (one node); mwms, horovod: 1, 2, 4 (2 nodes of 2)
    assert len(paths) == len(study.jobs()) == 1 + 2 + 3 + 3
    assert (tmp_path / "out" / "report.sbatch").is_file() and (tmp_path / "out" / "logs").is_dir()


@pytest.mark.parametrize("text, message", [
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
    assert (work / hostile).is_dir()
