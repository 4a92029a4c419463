"""Precision switches (--precision, --tf32) on CPU, where the same code runs as on A100s:
mixed_bfloat16 under every strategy, mixed_float16 with its loss scaling, checkpoints and
exports of mixed-precision models, and the RNN layers' eligibility for cuDNN's kernels."""

import math

import pytest

from bench.core.record import read_record
from conftest import DATA, SMALL

pytestmark = pytest.mark.stack

STRATEGIES = {
    "default": [],
    "mirrored": ["--devices", "2"],
    "mwms": ["--local-workers", "2"],
    "horovod": ["--local-workers", "2"],
}


def run(bench, tmp_path, workload, strategy, precision, *extra):
    results = tmp_path / "results"
    done = bench("run", "-w", workload, "-s", strategy, *STRATEGIES[strategy], "--precision", precision,
                 "--epochs", "1", "--steps-per-epoch", "4", "--warmup-steps", "1", "--data", DATA[workload],
                 "-q", "--results", str(results), *SMALL[workload], *extra)
    assert done.returncode == 0, done.stderr[-3000:]
    return read_record(done.stdout.strip().splitlines()[-1])


# the other workloads run mixed_bfloat16 under every strategy in test_equivalence.py (numerics
# checked there too)
@pytest.mark.parametrize("strategy", list(STRATEGIES))
@pytest.mark.parametrize("workload", ["charrnn-lstm"])
def test_mixed_bfloat16_runs_the_stateful_charrnn_under_every_strategy(bench, tmp_path, workload, strategy):
    record = run(bench, tmp_path, workload, strategy, "mixed_bfloat16")
    numerics = record.extra["numerics"]
    assert record.status == "ok" and record.config["precision"] == "mixed_bfloat16"
    assert (numerics["compute_dtype"], numerics["variable_dtype"]) == ("bfloat16", "float32")
    assert numerics["loss_scaling"] == "none"
    assert numerics["tf32"] is True and numerics["tf32_applies"] is False      # no GPU here
    assert math.isfinite(record.metrics["final_loss"])


@pytest.mark.parametrize("workload,strategy", [("mlp", "default"), ("memnn", "default"),
                                               ("charrnn-lstm", "default"), ("charrnn-gru", "mirrored"),
                                               ("charrnn-gru", "mwms"), ("charrnn-gru", "horovod")])
def test_mixed_float16_scales_the_loss(bench, tmp_path, workload, strategy):
    record = run(bench, tmp_path, workload, strategy, "mixed_float16", "--tf32", "off")
    assert record.status == "ok"
    assert record.extra["numerics"]["compute_dtype"] == "float16"
    assert record.extra["numerics"]["loss_scaling"].startswith("dynamic")
    assert record.extra["numerics"]["tf32"] is False
    assert math.isfinite(record.metrics["final_loss"])


def test_mixed_precision_checkpoints_resume_and_export(bench, tmp_path):
    first = run(bench, tmp_path, "charrnn-gru", "default", "mixed_bfloat16", "--checkpoint-every", "1", "--export")
    export = first.artifacts["export"]
    resumed = run(bench, tmp_path, "charrnn-gru", "default", "mixed_bfloat16", "--resume",
                  first.artifacts["last_checkpoint"], "--epochs", "2")
    assert resumed.extra["initial_epoch"] == 1 and resumed.status == "ok"
    text = bench("generate", export, "--start", "ROMEO:", "--length", "20")
    assert text.returncode == 0 and text.stdout.startswith("ROMEO:"), text.stderr[-2000:]


def test_unknown_precision_is_one_line(bench, tmp_path):
    done = bench("run", "-w", "mlp", "--precision", "float8", "--results", str(tmp_path))
    assert done.returncode == 2 and "--precision" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.rglob("record.json"))


def _rnn_layers(layer):
    import keras
    if isinstance(layer, (keras.layers.GRU, keras.layers.LSTM)):
        yield layer
    for child in getattr(layer, "_layers", None) or getattr(layer, "layers", None) or []:
        yield from _rnn_layers(child)


CUDNN_CONFIGS = [{}, {"rnn_units": 64, "embedding_dim": 8}, {"lstm_units": 16, "dropout": 0.3},
                 {"architecture": "memn2n"}]


@pytest.mark.parametrize("workload", ["charrnn-gru", "charrnn-lstm", "memnn"])
def test_rnn_layers_keep_the_cudnn_kernel_arguments(workload):
    """TensorFlow runs an RNN on cuDNN only with these arguments; one hyperparameter that
    breaks them would silently cost a large factor on the A100s."""
    from bench import workloads
    from bench.core.hparams import resolve
    plugin = workloads.get(workload)
    checked = 0
    for settings in CUDNN_CONFIGS:
        settings = {k: v for k, v in settings.items() if k in plugin.space}
        hp = resolve(plugin.space, settings, workload)
        data = plugin.load("synthetic", None, hp, 0)
        model = plugin.build(data, hp, 4)
        for layer in _rnn_layers(model):
            config = layer.get_config()
            assert config["activation"] == "tanh" and config["recurrent_activation"] == "sigmoid", config
            assert config["recurrent_dropout"] == 0 and config["unroll"] is False and config["use_bias"] is True
            assert config.get("use_cudnn", "auto") in ("auto", True)
            if isinstance(layer, __import__("keras").layers.GRU):
                assert config["reset_after"] is True
            checked += 1
    assert checked > 0, f"{workload}: no RNN layer found"


AGREEMENT = """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from bench.core.gradients import _agreed_finite
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])

def step():
    replica = tf.distribute.get_replica_context().replica_id_in_sync_group
    gradient = tf.where(replica == 1, float("inf"), 1.0) * tf.ones([3])    # only replica 1 overflowed
    return _agreed_finite([gradient, None])[0]

results = strategy.experimental_local_results(strategy.run(tf.function(step)))
print([bool(tf.reduce_all(tf.math.is_finite(r))) for r in results])
"""


def test_an_overflow_on_one_replica_makes_every_replica_skip():
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-c", AGREEMENT], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[False, False]"
