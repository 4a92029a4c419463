"""The launch path's pure parts: run configs as data, Slurm host lists, the record lifecycle,
the compat module's version guard, and what each backend's launch says (fast tier)."""

import json
import os
import signal
import subprocess
import sys

import pytest

from bench.core import config, hostlist
from bench.core.config import RUN_CONFIG_ENV, RunConfig
from bench.core.errors import UsageError
from bench.core.record import RunRecord, read_record
from bench.run.lifecycle import Lifecycle
from conftest import ROOT, error_lines
import strategies
from strategies import compat
from strategies.base import Placement


# --- RunConfig -----------------------------------------------------------------------

def test_run_config_round_trips_through_json_and_toml(tmp_path):
    cfg = RunConfig(workload="mlp", strategy="mwms", epochs=3, overrides={"n_neurons": "64"},
                    sample_interval_s=0.5, verbose=0, local_workers=2)
    assert config.from_json(RunConfig, cfg.to_json(), "x") == cfg
    assert config.from_json(RunConfig, cfg.to_json(changed_only=True), "x") == cfg
    toml = tmp_path / "run.toml"
    toml.write_text('workload = "mlp"\nstrategy = "mwms"\nepochs = 3\nsample_interval_s = 0.5\nverbose = 0\n'
                    'local_workers = 2\n[overrides]\nn_neurons = "64"\n')
    assert config.load(RunConfig, toml) == cfg


def test_changed_only_json_holds_what_differs_from_the_defaults():
    assert json.loads(RunConfig(workload="mlp", epochs=2).to_json(changed_only=True)) == {"workload": "mlp", "epochs": 2}


@pytest.mark.parametrize("data, message", [
    ({"workload": "mlp", "epoch": 2}, "unknown key 'epoch' (valid: workload, strategy, epochs,"),
    ({"strategy": "mwms"}, "'workload' is required"),
    ({"workload": "mlp", "epochs": "2"}, "epochs = '2': expected int"),
    ({"workload": "mlp", "epochs": True}, "epochs = True: expected int"),
    ({"workload": "mlp", "batch_size": 1.5}, "batch_size = 1.5: expected int or null"),
    ({"workload": "mlp", "overrides": {"n": [1]}}, "overrides = {'n': [1]}: expected"),
    (["mlp"], "expected a table of settings, got list"),
])
def test_bad_config_data_is_one_usage_error_naming_the_key(data, message):
    with pytest.raises(UsageError, match="^where: ") as caught:
        config.from_dict(RunConfig, data, "where")
    assert message in str(caught.value)


def test_a_worker_config_launches_no_further():
    worker = RunConfig(workload="mlp", strategy="mwms", local_workers=4).worker("run-1")
    assert worker.local_workers is None and worker.run_id == "run-1" and worker.strategy == "mwms"


def run_cli(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd or ROOT, env={**os.environ, **(env or {})})


def test_an_abbreviated_option_is_refused_and_starts_no_worker(tmp_path):
    """argparse used to read --local-work as --local-workers, and the workers' argv kept it:
    every worker launched workers of its own."""
    done = run_cli("run", "-w", "mlp", "-s", "mwms", "--local-work", "2", "--synthetic", "--results", str(tmp_path))
    assert done.returncode == 2
    lines = error_lines(done.stderr)
    assert len(lines) == 1 and "unrecognized arguments: --local-work 2" in lines[0], done.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_worker_handed_an_unknown_option_ends_in_one_line(tmp_path):
    handed = json.dumps({"workload": "mlp", "results": str(tmp_path), "local_work": 2})
    done = run_cli("run", env={RUN_CONFIG_ENV: handed})
    assert done.returncode == 2
    lines = error_lines(done.stderr)
    assert len(lines) == 1 and f"{RUN_CONFIG_ENV}: unknown key 'local_work' (valid: workload," in lines[0], done.stderr
    done = run_cli("run", "-w", "mlp", env={RUN_CONFIG_ENV: handed})
    assert done.returncode == 2 and "this is a launched worker): give no run options" in done.stderr


def test_a_config_file_is_checked_like_flags(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"workload": "mlp", "epochs": 0}))
    done = run_cli("run", "--config", str(path))
    assert done.returncode == 2 and error_lines(done.stderr) == ["bench: error: --epochs 0: must be >= 1"]
    path.write_text("{not json")
    done = run_cli("run", "--config", str(path))
    assert done.returncode == 2 and f"{path}: not valid JSON" in done.stderr


# --- Slurm host lists ----------------------------------------------------------------

@pytest.mark.parametrize("text, hosts", [
    ("node1", ["node1"]),
    ("n[1-3,5]", ["n1", "n2", "n3", "n5"]),
    ("n[1-3,5],gpu[01-02]", ["n1", "n2", "n3", "n5", "gpu01", "gpu02"]),
    ("c7-[8-10]", ["c7-8", "c7-9", "c7-10"]),
    ("gpu[098-101]", ["gpu098", "gpu099", "gpu100", "gpu101"]),
    ("a,b[1-2],c", ["a", "b1", "b2", "c"]),
    ("r[1-2]n[1-2]", ["r1n1", "r1n2", "r2n1", "r2n2"]),
    ("dbnode-a,dbnode-b", ["dbnode-a", "dbnode-b"]),
])
def test_hostlists_expand_as_slurm_does(text, hosts):
    assert hostlist.expand(text) == hosts


@pytest.mark.parametrize("text", ["", "n[1-3", "n1-3]", "n[3-1]", "n[a-b]", "n[[1]]", "a,,b", "n[1-]"])
def test_malformed_hostlists_are_value_errors(text):
    with pytest.raises(ValueError):
        hostlist.expand(text)


@pytest.mark.parametrize("text, counts", [("2", [2]), ("2(x3),1", [2, 2, 2, 1]), ("1,4(x2)", [1, 4, 4])])
def test_task_counts_expand(text, counts):
    assert hostlist.expand_counts(text) == counts


@pytest.mark.parametrize("text", ["", "2(x)", "x2", "2(3)"])
def test_malformed_task_counts_are_value_errors(text):
    with pytest.raises(ValueError):
        hostlist.expand_counts(text)


# --- the record lifecycle ------------------------------------------------------------

def record(tmp_path):
    return RunRecord(run_id="r", workload="mlp", strategy="default")


def test_lifecycle_writes_running_then_ok(tmp_path):
    rec = record(tmp_path)
    with Lifecycle(tmp_path, rec) as life:
        assert read_record(tmp_path / "r" / "record.json").status == "running"
        life.ok()
    final = read_record(life.path)
    assert final.status == "ok" and final.finished_at and final.timing["wall_s"] >= 0 and life.exit_code == 0


def test_lifecycle_records_a_failure_in_one_line_and_swallows_it(tmp_path):
    with Lifecycle(tmp_path, record(tmp_path), before_write=lambda r: r.metrics.update(seen=1)) as life:
        raise ValueError("bad\nthings")
    final = read_record(life.path)
    assert (final.status, final.error, final.metrics, life.exit_code) == ("failed", "ValueError: bad things", {"seen": 1}, 1)
    assert "Traceback" in final.extra["traceback"]


def test_lifecycle_bad_input_is_raised_and_discarded_or_recorded(tmp_path):
    with pytest.raises(UsageError):
        with Lifecycle(tmp_path / "a", record(tmp_path), discard_bad_input=True):
            raise UsageError("nope")
    assert not (tmp_path / "a" / "r").exists()
    with pytest.raises(UsageError):
        with Lifecycle(tmp_path / "b", record(tmp_path)):
            raise UsageError("nope")
    assert read_record(tmp_path / "b" / "r" / "record.json").error == "bad input: nope"


def test_lifecycle_notes_a_signal_and_a_second_one_interrupts(tmp_path):
    with Lifecycle(tmp_path, record(tmp_path)) as life:
        os.kill(os.getpid(), signal.SIGTERM)
        assert life.signals.received == signal.SIGTERM
        os.kill(os.getpid(), signal.SIGINT)        # a second signal: KeyboardInterrupt, recorded
    final = read_record(life.path)
    assert final.status == "interrupted" and final.error == "interrupted by a second signal"
    assert life.exit_code == 128 + signal.SIGTERM
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def test_a_non_writer_writes_nothing(tmp_path):
    with Lifecycle(tmp_path, record(tmp_path), writer=False) as life:
        life.ok()
    assert list(tmp_path.iterdir()) == [] and life.exit_code == 0


# --- compat --------------------------------------------------------------------------

def test_installed_keras_and_tensorflow_are_the_versions_compat_was_checked_against():
    problems = compat.version_problems()
    assert not problems, "; ".join(problems)


def test_a_version_outside_the_checked_range_is_named():
    problems = compat.version_problems({"keras": "3.16.0", "tensorflow": "2.21.1"})
    assert problems == ["keras 3.16.0 is outside 3.15-3.15, the versions strategies/compat.py was checked "
                        "against: re-check its private calls"]


def test_a_missing_private_name_is_one_naming_error():
    with pytest.raises(compat.CompatError, match="the reported loss: object._loss_tracker is gone"):
        compat.loss_tracker(object())


# --- each backend's launch -----------------------------------------------------------

CPU_NODES = Placement(gpus=4, nodes=2, gpu_nodes=False, cpus_per_gpu=1, mpi="--mpi=pmix")


def test_multi_process_backends_launch_one_task_per_replica_and_hand_over_the_config():
    cfg = RunConfig(workload="mlp", verbose=0)
    for name in ("mwms", "horovod"):
        backend = strategies.get_class(name)
        shape = backend.sbatch_shape(CPU_NODES)
        assert (shape.tasks_per_node, shape.cpus_per_task) == (2, 1)
        export, srun = backend.sbatch_lines(CPU_NODES, cfg)
        assert export == f"export {RUN_CONFIG_ENV}='{{\"verbose\":0,\"workload\":\"mlp\"}}'"
        assert srun.startswith("srun --nodes 2 --ntasks-per-node 2") and srun.endswith(" bench run")
        assert ("--mpi=pmix" in srun) == (name == "horovod")


def test_local_workers_get_the_config_and_their_place_in_the_cluster():
    mwms = strategies.get_class("mwms").local_processes(2, '{"workload": "mlp"}', "gloo")
    assert len(mwms) == 2 and all(p.env[RUN_CONFIG_ENV] == '{"workload": "mlp"}' for p in mwms)
    assert [json.loads(p.env["TF_CONFIG"])["task"]["index"] for p in mwms] == [0, 1]
    (mpirun,) = strategies.get_class("horovod").local_processes(3, "{}", "mpi")
    assert mpirun.command[:3] == ["mpirun", "-np", "3"] and RUN_CONFIG_ENV in mpirun.command
    with pytest.raises(UsageError, match="strategy 'default' runs in one process"):
        strategies.get_class("default").local_processes(2, "{}", "gloo")


def test_backends_say_which_placements_they_cannot_run():
    cfg = RunConfig(workload="mlp", batch_size=30)
    assert strategies.get_class("default").launch_problem(CPU_NODES, cfg) == "default runs on one GPU"
    assert strategies.get_class("mirrored").launch_problem(CPU_NODES, cfg) == "mirrored runs on one node"
    assert strategies.get_class("ray").launch_problem(CPU_NODES, cfg) == "the global batch 30 does not split over 4 trials"
    assert strategies.get_class("mwms").launch_problem(CPU_NODES, cfg) is None


# --- per-replica binding -------------------------------------------------------------

from bench.run import binding  # noqa: E402


@pytest.mark.parametrize("text, cores", [("0", [0]), ("0-2,5", [0, 1, 2, 5]), ("3,1", [1, 3]), ("", [])])
def test_core_lists_parse_and_format_as_taskset_writes_them(text, cores):
    assert binding.parse_cores(text) == cores
    assert binding.parse_cores(binding.format_cores(cores)) == cores


def test_local_workers_get_disjoint_core_sets():
    assert binding.split([0, 1, 2, 3], 2) == [[0, 1], [2, 3]]
    assert binding.split([0, 1, 2, 3], 2, 1) == [[0], [1]]
    with pytest.raises(UsageError, match="3 replicas x 2 cores do not fit the 4 cores"):
        binding.split([0, 1, 2, 3], 3, 2)


def test_where_the_cores_come_from():
    first = binding.available_cores()[0]
    assert binding.resolve(env={"DISTBENCH_CORES": "0"}).cores == (0,)
    launched = binding.resolve(env={"DISTBENCH_CORE_SETS": "0;1", "OMPI_COMM_WORLD_LOCAL_RANK": "1"})
    assert (launched.cores, launched.source) == ((1,), "launcher")
    own = binding.resolve(cpus_per_replica=1, env={})
    assert (own.cores, own.source, own.intra_op_threads, own.inter_op_threads) == ((first,), "cpus_per_replica", 1, 1)
    slurm = binding.resolve(env={"SLURM_JOB_ID": "7", "SLURM_CPUS_PER_TASK": "1", "SLURM_LOCALID": "0"})
    assert (len(slurm.cores), slurm.source) == (1, "slurm")
    assert binding.resolve(env={}).source == "unbound"
    more = len(binding.available_cores()) + 1          # srun (>= 22.05) gave the task fewer cores than the job asked
    with pytest.raises(UsageError, match=f"may run on {more - 1} of the {more} cores its job asked for .*"
                                         f"srun --cpus-per-task={more}, or export SRUN_CPUS_PER_TASK={more}"):
        binding.resolve(env={"SLURM_JOB_ID": "7", "SLURM_CPUS_PER_TASK": str(more)})
    with pytest.raises(UsageError, match="malformed SLURM_CPUS_PER_TASK='two'"):
        binding.resolve(env={"SLURM_JOB_ID": "7", "SLURM_CPUS_PER_TASK": "two"})
    with pytest.raises(UsageError, match="local rank 3 has no set"):
        binding.resolve(env={"DISTBENCH_CORE_SETS": "0;1", "SLURM_LOCALID": "3"})


def test_a_study_config_reaches_its_trials_as_data():
    from bench.study.tune import StudyConfig
    study = StudyConfig(workload="mlp", overrides={"n_neurons": 32, "optimizer": "sgd"}, space={"dropout": "uniform(0, 1)"})
    assert config.from_dict(StudyConfig, study.to_dict(), "study") == study
