"""`bench predict`: a study's strategies at GPU counts it did not run (analysis/whatif.py), with
known answers from a model whose terms are set by hand."""

import re
import subprocess
import sys

import pytest

from analysis import stepmodel, whatif
from analysis.collectives import Level
from bench.core.record import RunRecord, write_record
from jobs.spec import Links, load_profile

INSIDE, BETWEEN = Level(5e-6, 100e9), Level(10e-6, 10e9)
TRUE = stepmodel.StepModel(compute_s=0.050, sigma_s=0.0, launch_s=0.002, exposed=0.5, gradient_bytes=4e7,
                           algorithm="nccl")
PROFILE_LINKS = Links(5.0, 100.0, "a datasheet", 10.0, 10.0, "another datasheet")


def run(run_id, strategy, gpus, per_node, step_s):
    return RunRecord(run_id=run_id, workload="mlp", strategy=strategy, status="ok", num_replicas=gpus,
                     ranks_per_node=per_node, global_batch_size=64 * gpus, per_replica_batch_size=64,
                     config={"per_replica_batch_size": 64},
                     extra={"parameters": 1e7, **({"allreduce": {"cpu": "ring", "gpu": "nccl"}} if gpus > 1 else {})},
                     throughput={"samples_per_s": 64 * gpus / step_s},
                     timing={"step_time": {"median_s": step_s, "p90_s": step_s}})


@pytest.fixture
def study(tmp_path):
    levels = stepmodel.Levels(INSIDE, BETWEEN)
    for gpus, (nodes, per_node) in {1: (1, 1), 2: (1, 2), 4: (2, 2)}.items():
        write_record(tmp_path, run(f"h{gpus}", "horovod", gpus, per_node, TRUE.step_s(nodes, per_node, levels)))
    write_record(tmp_path, run("d1", "default", 1, 1, 0.045))
    mirrored = run("m1", "mirrored", 1, 1, 0.050)
    mirrored.extra["one_node"] = True
    write_record(tmp_path, mirrored)
    return tmp_path


def test_counts_fill_nodes_of_the_profiles_gpus_in_turn():
    assert whatif.shape(1, 2) == (1, 1) and whatif.shape(2, 2) == (1, 2)
    assert whatif.shape(8, 2) == (4, 2) and whatif.shape(64, 2) == (32, 2) and whatif.shape(6, 4) == (2, 4)


def test_what_if_recovers_the_model_and_extends_it_with_the_profiles_links(study, tmp_path):
    profile = tmp_path / "gpu-cluster.toml"
    profile.write_text('name = "gpu-cluster"\ngpus_per_node = 2\ngres = "gpu:a100:{gpus}"\n[links]\n'
                       'inside_alpha_us = 5\ninside_GBps = 100\ninside_source = "a datasheet"\n'
                       'between_alpha_us = 10\nbetween_GBps = 10\nbetween_source = "another datasheet"\n')
    prediction, inputs = whatif.from_results([str(study)], str(profile), [8, 64])
    rows = prediction.set_index(["strategy", "gpus"])
    levels = stepmodel.Levels(INSIDE, BETWEEN)
    for gpus, (nodes, per_node) in {2: (1, 2), 4: (2, 2), 8: (4, 2), 64: (32, 2)}.items():
        assert rows.loc[("horovod", gpus), "step_s"] == pytest.approx(TRUE.step_s(nodes, per_node, levels), rel=1e-6)
        assert rows.loc[("horovod", gpus), "efficiency"] == pytest.approx(
            0.050 / TRUE.step_s(nodes, per_node, levels), rel=1e-6)
    assert rows.loc[("horovod", 64), "measured"] == False and rows.loc[("horovod", 4), "measured"] == True  # noqa: E712
    assert rows.loc[("horovod", 64), "low"] == pytest.approx(rows.loc[("horovod", 64), "samples_per_s"]
                                                           * (1 - whatif.VALIDATED_ERROR))
    # one device for default; mirrored stays inside one node
    assert sorted(prediction[prediction.strategy == "default"]["gpus"]) == [1]
    assert sorted(prediction[prediction.strategy == "mirrored"]["gpus"]) == [1]
    said = "\n".join(inputs)
    assert "inside: profile, a datasheet" in said and "between: profile, another datasheet" in said
    assert "launch 2.00 ms and overlap 0.50 fitted on 1x2, 2x2" in said


def test_a_measured_bench_comm_overrides_the_profile(study):
    write_record(study, RunRecord(run_id="comm-h", workload="allreduce", strategy="horovod", kind="comm",
                                  status="ok", num_replicas=2, world_size=2, ranks_per_node=1,
                                  metrics={"allreduce": [{"bytes": 2e7, "time_us": 2020.0},
                                                         {"bytes": 4e7, "time_us": 4020.0},
                                                         {"bytes": 8e7, "time_us": 8020.0}]}))
    _, inputs = whatif.from_results([str(study)], "ft3", [8])
    said = "\n".join(inputs)
    assert "between: measured, `bench comm` comm-h (horovod, 2 ranks, between nodes)" in said
    assert "inside: profile, A100 with NVLink bridge" in said


def test_a_bench_comm_at_2_nodes_x_2_gives_the_between_level_without_its_inside_part(tmp_path):
    """Both levels in one `bench comm` (4 ranks, 2 a node) of Horovod on CPUs (Open MPI's
    halving-doubling): with the inside level known, the what-if reads back the between level the
    4-rank times were made of (a 4-rank ring's fit would take B_b 1.5 times too high)."""
    from analysis.collectives import allreduce_s
    model = stepmodel.StepModel(0.050, 0.0, 0.002, 0.5, 4e7, "halving_doubling")
    levels = stepmodel.Levels(INSIDE, BETWEEN)
    for gpus, (nodes, per_node) in {1: (1, 1), 2: (1, 2), 4: (2, 2)}.items():
        record = run(f"h{gpus}", "horovod", gpus, per_node, model.step_s(nodes, per_node, levels))
        record.extra["allreduce"] = {"cpu": "halving_doubling"} if gpus > 1 else {}
        write_record(tmp_path, record)
    rows = [{"bytes": size, "time_us": allreduce_s("halving_doubling", size, 2, 2, INSIDE, BETWEEN) * 1e6}
            for size in (1e7, 2e7, 4e7, 8e7)]
    write_record(tmp_path, RunRecord(run_id="comm-22", workload="allreduce", strategy="horovod", kind="comm",
                                     status="ok", num_replicas=4, world_size=4, ranks_per_node=2,
                                     metrics={"allreduce": rows}))
    profile = tmp_path / "cpu-cluster.toml"
    profile.write_text('name = "cpu-cluster"\ngpus_per_node = 2\n[links]\n'
                       'inside_alpha_us = 5\ninside_GBps = 100\ninside_source = "a datasheet"\n'
                       'between_alpha_us = 1\nbetween_GBps = 1\nbetween_source = "wrong on purpose"\n')
    prediction, inputs = whatif.from_results([str(tmp_path)], str(profile), [64])
    assert "between: measured, `bench comm` comm-22 (horovod, 4 ranks, between nodes, 2 a node)" in "\n".join(inputs)
    row = prediction.set_index(["strategy", "gpus"]).loc[("horovod", 64)]
    assert row["algorithm"] == "halving_doubling"
    assert row["step_s"] == pytest.approx(model.step_s(32, 2, levels), rel=1e-6)


def test_no_links_anywhere_is_said_not_guessed(study):
    _, inputs = whatif.from_results([str(study)], "emulated-ft3", [8])
    assert any("horovod: no prediction, inside: no `bench comm` record and no [links] in the profile" in line
               for line in inputs)


def test_cli_prints_the_table_and_rejects_bad_input(study, tmp_path):
    done = subprocess.run([sys.executable, "-m", "bench", "predict", str(study), "--profile", "ft3", "--gpus",
                           "8,64", "-o", str(tmp_path / "p.csv")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "what-if" in done.stdout and "32x2" in done.stdout and (tmp_path / "p.csv").is_file()
    for bad, message in ((["--gpus", "eight"], "--gpus 'eight'"), (["--gpus", "0"], "counts must be >= 1"),
                         (["--gpus", "8", "--profile", "nowhere"], "neither a profile")):
        args = [sys.executable, "-m", "bench", "predict", str(study), "--profile", "ft3", "--gpus", "8"]
        args[args.index("--gpus"):args.index("--gpus") + 2] = []
        if "--profile" in bad:
            args[args.index("--profile"):args.index("--profile") + 2] = []
        done = subprocess.run(args + bad, capture_output=True, text=True)
        assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_profile_links_are_checked(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\ngpus_per_node = 2\n[links]\ninside_alpha_us = 5\ninside_GBps = -1\n')
    with pytest.raises(Exception, match="links.between_GBps|links.inside_GBps"):
        load_profile(str(bad), tmp_path / "x.toml")
    bad.write_text('name = "bad"\ngpus_per_node = 2\n[links]\nspeed = 5\n')
    with pytest.raises(Exception, match="links.speed: unknown key"):
        load_profile(str(bad), tmp_path / "x.toml")


def test_the_report_shows_the_what_if_as_a_table_and_a_plot(study, tmp_path):
    from analysis import report
    built = report.build([str(study)], tmp_path / "report", report.Options(profile="ft3", what_if_gpus=[8, 64]))
    markdown = built.markdown.read_text()
    assert "## What-if: 8, 64 GPUs on ft3" in markdown
    assert re.search(r"\| horovod +\| +64 \| 32x2 +\| what-if +\|", markdown)
    assert "![whatif-mlp-weak](whatif-mlp-weak.png)" in markdown
    assert (tmp_path / "report" / "whatif-mlp-weak.png").stat().st_size > 1000
    assert (tmp_path / "report" / "whatif.csv").is_file()
