"""RunConfig is the one description of a run (fast tier): a field added to it is an option of
`bench run`, `bench tune` and `bench study`, and reaches every job a study spec writes, Ray's
included, with no other line changed. The field is added to a copy of the packages, as a
developer would add it, and the copy is exercised in a fresh interpreter."""

import json
import shutil
import subprocess
import sys

from conftest import ROOT

import strategies

PACKAGES = ("bench", "strategies", "jobs", "analysis")
NEW_FIELD = "    probe_knob: int = 0\n"

EXERCISE = r'''
import json, sys, tempfile
from pathlib import Path
from bench import cli
from bench.core import config
from bench.run import launch
from jobs import local, sbatch, spec

parser = cli.build_parser()
out = {}
run = parser.parse_args(["run", "-w", "mlp", "--probe-knob", "3"])
out["run"] = launch.config_from_command(None, config.given(config.RunConfig, run)).probe_knob
tune = parser.parse_args(["tune", "search", "mlp", "--probe-knob", "3"])
study = cli._study_from_options(tune)
out["tune"] = [study.probe_knob, study.trial_run().probe_knob]
local_study = parser.parse_args(["study", "--workloads", "mlp", "--strategies", "default,mwms", "--probe-knob", "3"])
study = local.LocalStudy(workloads=["mlp"], strategies=["default", "mwms"], counts=[1, 2],
                         run=config.given(config.RunConfig, local_study, skip=local.MATRIX_FIELDS))
out["study"] = [cfg.probe_knob for cfg in local.run_configs(study)]
work = Path(tempfile.mkdtemp())
(work / "s.toml").write_text("""
[study]
name = "s"
profile = "ft3"
[matrix]
strategies = %s
gpus = [1, 2]
[run]
probe_knob = 3
[[workloads]]
name = "mlp"
data = "generated"
""" % json.dumps(sys.argv[1].split(",")))
out["jobs"] = {p.name: p.read_text() for p in sbatch.write(spec.load(work / "s.toml"), work / "jobs")}
print(json.dumps(out))
'''


def test_a_field_added_to_run_config_is_in_every_parser_and_every_job(tmp_path):
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    config = tmp_path / "bench" / "core" / "config.py"
    source = config.read_text()
    anchor = source.index("    def to_dict", source.index("class RunConfig"))
    config.write_text(source[:anchor] + NEW_FIELD + "\n" + source[anchor:])
    backends = ",".join(strategies.names())
    done = subprocess.run([sys.executable, "-c", EXERCISE, backends], capture_output=True, text=True,
                          cwd=tmp_path, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["run"] == 3 and out["tune"] == [3, 3] and out["study"] == [3, 3, 3]
    jobs = {name: text for name, text in out["jobs"].items() if name.endswith(".sbatch") and "report" not in name}
    assert {name.split("-")[2] for name in jobs} == set(strategies.names())
    for name, text in jobs.items():
        assert '"probe_knob":3' in text, f"{name} does not hand its run the new field:\n{text}"
