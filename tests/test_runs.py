"""Real training runs (TensorFlow on CPU, small shapes): every workload under every strategy,
records, checkpoints and resume, generation and export, interruption by signals."""

import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.core.record import read_record
from conftest import DATA, SMALL, error_lines, record_paths

pytestmark = pytest.mark.stack



@pytest.mark.parametrize("strategy", ["default", "mirrored"])
@pytest.mark.parametrize("workload", list(SMALL))
def test_every_workload_runs_under_every_strategy(bench, tmp_path, workload, strategy):
    results = tmp_path / "results"
    devices = ["--devices", "2"] if strategy == "mirrored" else []
    done = bench("run", "-w", workload, "-s", strategy, *devices, "--epochs", "2", "--steps-per-epoch", "6",
                 "--warmup-steps", "2", "--data", DATA[workload], "-q", "--results", str(results),
                 *SMALL[workload])
    assert done.returncode == 0, done.stderr
    record = read_record(done.stdout.strip().splitlines()[-1])
    replicas = 2 if strategy == "mirrored" else 1
    assert record.status == "ok" and record.num_replicas == replicas and len(record.devices) == replicas
    assert record.global_batch_size == record.per_replica_batch_size * replicas
    assert record.data_source == DATA[workload]
    assert record.timing["steps"] == 12 and record.timing["warmup_steps"] == 2
    assert record.timing["step_time"]["count"] == 10 and len(record.timing["epoch_times_s"]) == 2
    assert record.throughput["samples_per_s"] > 0
    assert math.isclose(record.throughput["samples_per_s_per_device"] * replicas, record.throughput["samples_per_s"])
    if workload.startswith("charrnn"):
        assert record.throughput["tokens_per_s"] == pytest.approx(100 * record.throughput["samples_per_s"])
    assert math.isfinite(record.metrics["final_loss"])
    assert record.gpu["available"] or record.gpu["reason"]
    assert record.host["rss_mib_max"] > 0 and record.provenance["packages"]["keras"].startswith("3.")
    out = Path(done.stdout.strip().splitlines()[-1]).parent
    assert len((out / "steps.csv").read_text().splitlines()) == 13


def test_synthetic_mode_needs_no_data_files_and_a_run_of_warm_up_steps_alone_says_so(bench, tmp_path):
    """5 steps, all of them warm-up (the default 5): trained, nothing timed, status no_timed_steps,
    exit 1 and one line saying what to lower."""
    done = bench("run", "-w", "memnn", "--synthetic", "--steps-per-epoch", "5", "-q",
                 "--results", str(tmp_path), env={"DISTBENCH_DATA_DIR": str(tmp_path / "none")})
    assert done.returncode == 1
    assert error_lines(done.stderr) == ["bench: run no_timed_steps: all 5 steps were warm-up (--warmup-steps 5): "
                                        "lower it below 5, or run more steps"]
    record = read_record(done.stdout.strip().splitlines()[-1])
    assert record.data_source == "synthetic" and record.timing["steps"] == 5 and record.status == "no_timed_steps"


def test_time_to_target_accuracy_is_recorded(bench, tmp_path):
    done = bench("run", "-w", "mlp", "--data", "generated", "--epochs", "3", "--steps-per-epoch", "250",
                 "--target-accuracy", "0.5", "-q", "--results", str(tmp_path))
    assert done.returncode == 0, done.stderr
    metrics = read_record(done.stdout.strip().splitlines()[-1]).metrics
    assert metrics["target_metric"] == "val_accuracy"
    assert metrics["time_to_target_s"] > 0 and 1 <= metrics["epochs_to_target"] <= 3
    assert metrics["test_accuracy"] > 0.5


def test_charrnn_initial_loss_is_log_vocab():
    """Before training, an untrained char-RNN predicts ~uniformly: loss ~ ln(vocab size)."""
    import keras
    from bench import workloads
    from bench.core.hparams import resolve
    keras.utils.set_random_seed(0)
    workload = workloads.get("charrnn-gru")
    hp = resolve(workload.space, {"rnn_units": "64"}, workload.name)
    data = workload.load("real", None, hp, seed=0)
    assert data.info["vocab_size"] == 66 and data.info["vocab"][0] == "[UNK]"
    model = workload.build(data, hp, per_replica_batch=64)
    loss = model.evaluate(workload.dataset(data, "train", 64, hp, 0, training=True).take(3), verbose=0)
    assert abs(loss - math.log(66)) < 0.05


def test_stateful_batches_are_contiguous_and_states_reset_each_epoch():
    import numpy as np
    from bench.workloads.charrnn import CharRNNLSTM, contiguous_batches
    from bench.workloads.layers import ResetStates
    ids = np.arange(1000)
    x, y = contiguous_batches(ids, batch=4, seq=10)
    assert x.shape == (24, 4, 10)
    assert (x[1, :, 0] == x[0, :, -1] + 1).all()          # row i of batch j+1 continues row i of batch j
    assert (y == x + 1).all()

    import keras
    from bench.core.hparams import resolve
    from bench.workloads.base import Data
    workload = CharRNNLSTM()
    hp = resolve(workload.space, {"rnn_units": "8", "embedding_dim": "4"}, workload.name)
    model = workload.build(Data("synthetic", "", info={"vocab_size": 66}), hp, per_replica_batch=4)
    model.predict(np.ones((4, 10), np.int32), verbose=0)
    lstm = model.get_layer("lstm_0")
    assert np.abs(keras.ops.convert_to_numpy(lstm.states[0])).sum() > 0
    callback = ResetStates()
    callback.set_model(model)
    callback.on_epoch_begin(1)
    assert np.abs(keras.ops.convert_to_numpy(lstm.states[0])).sum() == 0


def test_memory_network_layers_ignore_padding_and_survive_a_keras_file(tmp_path):
    import keras
    import numpy as np
    from bench.workloads.layers import BagOfWords, position_encoding
    # the paper's l_kj = (1 - j/J) - (k/d)(1 - 2j/J) for J = d = 2 (rows j, columns k)
    assert position_encoding(2, 2).tolist() == [[0.5, 0.5], [0.5, 1.0]]
    bag = BagOfWords(vocab_size=5, dim=2)
    words = np.array([[3, 1, 0, 0]])
    table = np.arange(10, dtype="float32").reshape(5, 2)
    bag.build(words.shape)
    bag.embedding.embeddings.assign(table)
    expected = (table[[3, 1]] * position_encoding(4, 2)[:2]).sum(0)
    assert np.allclose(keras.ops.convert_to_numpy(bag(words)), expected)   # padding rows add nothing

    from bench import workloads
    from bench.core.hparams import resolve
    memnn = workloads.get("memnn")
    hp = resolve(memnn.space, {"architecture": "memn2n", "hops": "2"}, "memnn")
    data = memnn.load("synthetic", None, hp, seed=0)
    model = memnn.build(data, hp, per_replica_batch=4)
    (story, question), _ = next(iter(memnn.dataset(data, "train", 4, hp, 0, training=True)))
    model.save(tmp_path / "memn2n.keras")
    loaded = keras.saving.load_model(tmp_path / "memn2n.keras", compile=False)
    assert np.allclose(model.predict([story, question], verbose=0), loaded.predict([story, question], verbose=0))


def test_checkpoints_resume_and_generate(bench, tmp_path):
    first = bench("run", "-w", "charrnn-gru", "--epochs", "2", "--steps-per-epoch", "15", "--checkpoint-every", "1",
                  "--export", "-q", "--results", str(tmp_path), *SMALL["charrnn-gru"])
    assert first.returncode == 0, first.stderr
    run = Path(first.stdout.strip().splitlines()[-1]).parent
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch-0001.weights.h5", "epoch-0002.weights.h5"]
    before = read_record(run / "record.json")

    resumed = bench("run", "-w", "charrnn-gru", "--epochs", "3", "--steps-per-epoch", "15", "--resume", str(run),
                    "-q", "--results", str(tmp_path), *SMALL["charrnn-gru"])
    assert resumed.returncode == 0, resumed.stderr
    after = read_record(resumed.stdout.strip().splitlines()[-1])
    assert after.extra["initial_epoch"] == 2 and len(after.history["loss"]) == 1
    # optimizer and weights came back: the loss continues instead of starting over at ~ln(66)
    assert after.history["loss"][0] < before.history["loss"][0]
    assert after.history["loss"][0] < math.log(66) - 0.3

    for source in (run / "export", run):
        done = bench("generate", str(source), "--start", "ROMEO:", "--length", "40", "--num", "3",
                     "--temperature", "0.7", "--seed", "1")
        assert done.returncode == 0, done.stderr
        texts = [t for t in done.stdout.split("-" * 40 + "\n") if t.strip()]
        assert len(texts) == 3
        assert all(t.startswith("ROMEO:") and len(t.rstrip("\n")) == 46 and "[UNK]" not in t for t in texts)
    outputs = [bench("generate", str(s), "--length", "30", "--seed", "5").stdout for s in (run / "export", run)]
    assert outputs[0] == outputs[1] != ""      # checkpoint 2 is the exported model: same sample


def test_export_generates_with_tensorflow_alone(bench, tmp_path):
    done = bench("run", "-w", "charrnn-lstm", "--steps-per-epoch", "5", "--warmup-steps", "1", "--export", "-q",
                 "--results", str(tmp_path), *SMALL["charrnn-lstm"])
    assert done.returncode == 0, done.stderr
    export = Path(done.stdout.strip().splitlines()[-1]).parent / "export"
    script = ("import sys, tensorflow as tf\n"
              "assert not [m for m in sys.modules if m.startswith('bench')]\n"
              f"g = tf.saved_model.load({str(export)!r})\n"
              "out = g.generate(start='To be', length=25, temperature=0.5, num=2, seed=0)\n"
              "print([t.decode() for t in out.numpy()])\n")
    shown = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.count("To be") == 2


def test_resume_from_a_checkpoint_of_another_model_is_a_usage_error(bench, tmp_path):
    first = bench("run", "-w", "charrnn-gru", "--steps-per-epoch", "3", "--warmup-steps", "1", "--checkpoint-every", "1", "-q",
                  "--results", str(tmp_path / "a"), *SMALL["charrnn-gru"])
    assert first.returncode == 0, first.stderr
    run = Path(first.stdout.strip().splitlines()[-1]).parent
    done = bench("run", "-w", "charrnn-gru", "--epochs", "2", "--steps-per-epoch", "3", "--resume", str(run),
                 "-q", "--results", str(tmp_path / "b"), "--set", "rnn_units=48", "--set", "embedding_dim=16",
                 "--batch-size", "16")
    assert done.returncode == 2
    assert "does not fit this model" in error_lines(done.stderr)[0]
    assert not record_paths(tmp_path / "b")     # no stale "running" record left behind


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_run_writes_an_interrupted_record(tmp_path, signum):
    results = tmp_path / "results"
    proc = subprocess.Popen([sys.executable, "-m", "bench", "run", "-w", "charrnn-gru", "--epochs", "3",
                             "--steps-per-epoch", "100000", "-q", "--results", str(results),
                             *SMALL["charrnn-gru"]], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:     # the "running" record appears just before training starts
        if record_paths(results):
            break
        time.sleep(0.2)
    assert record_paths(results), "the run never started"
    time.sleep(4)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum
    assert any(f"run interrupted: interrupted by {signal.Signals(signum).name}" in l for l in error_lines(stderr))
    record = read_record(record_paths(results)[0])
    assert record.status == "interrupted" and record.timing["steps"] > 0
    assert record.timing["step_time"]["count"] > 0 and record.finished_at


def test_memnn_learns_generated_qa1_10k(bench, tmp_path):
    """The course's Memory Network learns the generated QA1 10k stories (chance is ~0.17):
    trained until the held-out validation accuracy reaches 0.85, it answers >= 0.83 of the
    separate test questions. It stays below 0.95 (README); the paper's model, next, does not."""
    done = bench("run", "-w", "memnn", "--data", "generated", "--epochs", "60", "--set", "lstm_units=128",
                 "--target-accuracy", "0.85", "--stop-at-target", "-q", "--results", str(tmp_path), timeout=900)
    assert done.returncode == 0, done.stderr
    metrics = read_record(done.stdout.strip().splitlines()[-1]).metrics
    assert metrics["epochs_to_target"] is not None, "validation accuracy never reached 0.85"
    assert metrics["test_accuracy"] >= 0.83


def test_memory_network_paper_model_reaches_0_95_on_generated_qa1_10k(bench, tmp_path):
    """The issue's bar: >= 0.95 of the 1,000 test questions of generated QA1 10k, with the
    End-To-End Memory Network (measured 0.997 after 20 epochs; chance is ~0.17)."""
    done = bench("run", "-w", "memnn", "--data", "generated", "--epochs", "20", "--set", "architecture=memn2n",
                 "-q", "--results", str(tmp_path), timeout=900)
    assert done.returncode == 0, done.stderr
    metrics = read_record(done.stdout.strip().splitlines()[-1]).metrics
    assert metrics["test_accuracy"] >= 0.95
