"""Ray Tune studies with a real local Ray: PBT exploits restore another trial's checkpoint,
a search retrains and tests its best configuration, a failing trial does not end the study."""

from pathlib import Path

import pytest

from bench.core.hparams import HParam
from bench.core.record import read_record
from bench.core.space import parse_space
from bench.study.tune import FAULT_ENV, StudyConfig, _Explore, run_study

pytestmark = pytest.mark.stack

MEMNN_SMALL = {"train_questions": "1000"}


def test_pbt_perturbations_are_clamped_to_the_valid_range():
    """Ray's own explore step, as PBT calls it: a dropout of 0.9 scaled by 1.2 is 1.08, no
    valid dropout; the seed's log shows a rho of 1.08 the same way."""
    from ray.tune.schedulers.pbt import _explore
    from strategies.raytune import mutation
    hparams = {"dropout": HParam(0.3, 0.0, 0.95, mutable=True), "rho": HParam(0.9, 0.0, 0.999, mutable=True)}
    dims = parse_space({"dropout": "uniform(0, 0.95)", "rho": "uniform(0.8, 0.99)"}, hparams, "memnn",
                       mutations=True)
    mutations = {name: mutation(d) for name, d in dims.items()}
    config = {"dropout": 0.9, "rho": 0.9}
    raw, _ = _explore(config, mutations, 0.0, (1.2, 1.2), None)
    assert raw["dropout"] == pytest.approx(1.08) and raw["rho"] == pytest.approx(1.08)   # unclamped
    clamped, _ = _explore(config, mutations, 0.0, (1.2, 1.2), _Explore(dims, hparams))
    assert clamped == {"dropout": 0.95, "rho": 0.99}
    low, _ = _explore({"dropout": 0.0, "rho": 0.8}, mutations, 0.0, (0.8, 0.8), _Explore(dims, hparams))
    assert low == {"dropout": 0.0, "rho": 0.8}


def test_pbt_smoke_study_exploits_and_restores_a_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)           # a relative results directory, as `make demo` gives
    ray_temp_before = set(Path("/tmp").glob("distbench-ray-*"))
    result = run_study(StudyConfig(
        "memnn", scheduler="pbt", samples=2, epochs=4, steps_per_epoch=10, synch=True,
        data="generated", overrides=MEMNN_SMALL, num_cpus=2, results=".", sparse_gradients=True))
    assert result.exit_code == 0, result.record.error
    study = read_record(result.path)
    assert study.kind == "study" and study.strategy == "ray" and study.status == "ok"
    assert study.metrics["trials"] == 2 and study.metrics["perturbations"] >= 1
    assert study.metrics["best_trial"] in study.extra["trial_records"]
    trials = [read_record(tmp_path / run_id / "record.json") for run_id in study.extra["trial_records"]]
    assert {t.kind for t in trials} == {"trial"} and all(t.status == "ok" for t in trials)
    assert all(t.provenance["packages"]["ray"] == study.provenance["packages"]["ray"] for t in trials)
    assert all(len(t.history["mean_accuracy"]) == 4 for t in trials)
    assert all(t.history["samples_per_s"] and t.timing["step_time"]["median_s"] > 0 for t in trials)
    # a trial is a run of the runner's (bench.run.runner.Session): it takes the run's settings
    assert all(t.extra["embedding_gradients"] == "sparse" for t in trials), [t.extra for t in trials]
    exploits = [(t, e) for t in trials for e in t.extra["events"] if e["type"] == "exploit"]
    assert exploits, [t.extra["events"] for t in trials]
    trial, event = exploits[0]
    # The checkpoint came from the other trial, at the iteration it was written, and training
    # went on from there with the perturbed hyperparameters.
    assert event["from_trial"] != trial.extra["trial_id"] and event["from_iteration"] == 2
    assert event["new_hyperparameters"] != event["old_hyperparameters"]
    assert trial.extra["config_history"][-1]["hyperparameters"] == event["new_hyperparameters"]
    # every iteration was checkpointed (as .keras); after the study each trial keeps its last
    experiment = Path(study.artifacts["ray_storage"]) / study.run_id
    for trial in trials:
        [last] = sorted((experiment / trial.extra["trial_id"]).glob("checkpoint_*"))
        assert (last / "model.keras").is_file() and (last / "meta.json").is_file()
    assert study.extra["checkpoints_pruned"] >= 4
    # Ray's files: its logs under the study's results, its private temporary directory removed
    assert any(Path(study.artifacts["ray_logs"]).glob("raylet*"))
    assert set(Path("/tmp").glob("distbench-ray-*")) == ray_temp_before


def test_search_smoke_study_retrains_the_best_config_and_survives_a_failing_trial(tmp_path, monkeypatch):
    monkeypatch.setenv(FAULT_ENV, "2@1")       # trial 2 raises in its first iteration
    result = run_study(StudyConfig(
        "mlp", scheduler="search", samples=3, epochs=2, steps_per_epoch=20, asha=True,
        data="generated", overrides={"n_neurons": 32}, num_cpus=2, results=str(tmp_path),
        precision="mixed_bfloat16"))
    assert result.exit_code == 0, result.record.error
    study = result.record
    assert study.metrics["trials"] == 3 and study.metrics["trials_failed"] == 1
    failed = [t for t in result.trials if t.status == "failed"]
    assert len(failed) == 1 and "injected failure" in failed[0].error
    assert read_record(tmp_path / failed[0].run_id / "record.json").status == "failed"
    # sampled from the workload's default space (the Keras-Tuner course study)
    ok = [t for t in result.trials if t.status == "ok"]
    assert all(0 <= t.hyperparameters["n_hidden"] <= 8 and t.hyperparameters["optimizer"] in ("sgd", "adam")
               for t in ok)
    retrain = read_record(tmp_path / study.artifacts["retrain_record"] / "record.json")
    assert retrain.status == "ok" and retrain.config["merge_validation"] is True
    assert study.config["precision"] == "mixed_bfloat16" and retrain.extra["numerics"]["compute_dtype"] == "bfloat16"
    assert all(t.extra["numerics"]["compute_dtype"] == "bfloat16" for t in ok)
    # telemetry as a run's: host samples from the trial's process, the GPU's absence said
    assert all(t.host["samples"] >= 1 and t.host["proc_cpu_pct_mean"] is not None for t in ok)
    assert all(t.gpu["available"] is False and t.gpu["reason"] for t in ok)
    import keras
    assert keras.mixed_precision.dtype_policy().name == "float32"      # the retrain left this process as it was
    assert retrain.hyperparameters["learning_rate"] == study.hyperparameters["learning_rate"]
    assert 0 <= study.metrics["retrain_test_accuracy"] == retrain.metrics["test_accuracy"] <= 1


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_a_signal_interrupts_a_study_and_keeps_every_record(tmp_path, signame):
    """Slurm's time limit (SIGTERM) or Ctrl-C (SIGINT): the study stops its trials, writes
    every trial's record, says 'interrupted' and exits 128 + the signal."""
    import os
    import signal
    import subprocess
    import sys
    import time
    results = tmp_path / "results"
    proc = subprocess.Popen([sys.executable, "-m", "bench", "tune", "pbt", "memnn", "--data", "generated",
                             "--set", "train_questions=400", "--steps-per-iteration", "5", "--iterations", "1000",
                             "--num-cpus", "2", "--results", str(results)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not list(results.glob("*/trials/*.jsonl")):
        time.sleep(1)
    time.sleep(3)
    signum = signal.Signals[signame]
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 128 + signum, err[-3000:]
    records = [read_record(p) for p in results.rglob("record.json")]
    [study] = [r for r in records if r.kind == "study"]
    assert study.status == "interrupted" and study.error == f"interrupted by {signame}"
    trials = [r for r in records if r.kind == "trial"]
    assert len(trials) == 2 and {t.status for t in trials} == {"interrupted"}
    assert any(t.history.get("mean_accuracy") for t in trials)
