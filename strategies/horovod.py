"""`horovod`: one process per GPU (or per CPU worker), gradients averaged with Horovod's
allreduce (Gloo or MPI), initial state broadcast from rank 0.

Horovod's Keras integration (`horovod.tensorflow.keras`) targets tf.keras (Keras 2), and its
`DistributedGradientTape` fails on Keras 3 variables ('Variable' object has no attribute
'ref'). So the model keeps Keras 3's own fit loop and gets a `train_step` that averages the
gradients (and the loss it reports) with `hvd.grouped_allreduce` inside the compiled step,
and `hvd.broadcast_variables` on the underlying tf.Variables.

Launch: `--local-workers N` (horovodrun over Gloo, or `--launcher mpi` for mpirun), or
`srun`/`mpirun`/`horovodrun` directly on a cluster.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shlex
import socket
import sys
import types
from pathlib import Path

from bench.core.config import RUN_CONFIG_ENV
from bench.core.errors import UsageError
from bench.core.gradients import densify
from bench.core.procs import MPIRUN_AS_ROOT_ENV, bench_command, mpirun
from bench.core.sharding import Shard
from strategies.base import (Backend, BackendOptions, LocalProcess, Placement, Topology, require_positive,
                             time_calls, timed_collective, unavailable)


class HorovodBackend(Backend):
    name = "horovod"
    description = "Horovod allreduce, one process per device (Gloo or MPI)"
    multi_process = True
    allreduce = {"cpu": "halving_doubling", "gpu": "nccl"}     # MPI's; setup() says which it runs
    open_mpi_allreduce = True

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """Installed with its TensorFlow extension, seen without importing either (`bench list`
        answers at once); its controllers are checked when it starts, and by `bench doctor`."""
        spec = importlib.util.find_spec("horovod")
        if spec is None or not spec.submodule_search_locations:
            return False, "horovod not installed; run scripts/build-horovod.sh"
        if not any((Path(spec.submodule_search_locations[0]) / "tensorflow").glob("mpi_lib*.so")):
            return False, "horovod built without TensorFlow; run scripts/build-horovod.sh"
        return True, ""

    @classmethod
    def node_check(cls) -> tuple[str, str]:
        try:
            import horovod.tensorflow as hvd
        except ImportError as exc:
            return "warning", f"not importable ({exc}); scripts/build-horovod.sh builds it"
        parts = [("TensorFlow", True), ("NCCL", hvd.nccl_built()), ("MPI", hvd.mpi_built()), ("Gloo", hvd.gloo_built())]
        text = ", ".join(f"{name} {'yes' if ok else 'no'}" for name, ok in parts)
        version = importlib.metadata.version("horovod")
        if not (hvd.mpi_built() or hvd.gloo_built()):
            return "error", f"{version}: {text}: no controller; rebuild with scripts/build-horovod.sh"
        return "ok", f"{version}: {text}"

    def setup(self, options: BackendOptions) -> Topology:
        require_positive(options.devices)
        ok, reason = self.available()
        if not ok:
            raise unavailable(self.name, reason)
        import horovod.tensorflow as hvd
        import tensorflow as tf
        if not (hvd.gloo_built() or hvd.mpi_built()):
            raise unavailable(self.name, "horovod built without Gloo or MPI; run scripts/build-horovod.sh")
        _check_launched()
        self.settings = _few_core_settings()
        hvd.init()
        self.hvd = hvd
        # Gloo's controller reduces CPU tensors with its chunked ring; MPI's with MPI_Allreduce,
        # which Open MPI 4.1's coll/tuned runs as Rabenseifner's for gradients at 4 ranks and more
        # (>= 8 KiB at 4-7: coll_tuned_decision_fixed.c; measured: 1 MiB at 4 nodes took what the
        # forced Rabenseifner takes, at 2 nodes what the forced ring takes, benchmarks/predict_check.py
        # AT_FOUR); GPU tensors go through NCCL
        self.allreduce = {"cpu": "ring" if hvd.gloo_enabled() else "halving_doubling", "gpu": "nccl"}
        self.open_mpi_allreduce = not hvd.gloo_enabled()
        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            gpu = gpus[hvd.local_rank() % len(gpus)]
            tf.config.set_visible_devices(gpu, "GPU")
            tf.config.experimental.set_memory_growth(gpu, True)
            device = f"/gpu:{hvd.local_rank() % len(gpus)}"
        else:
            device = "/cpu:0"
        self.scale_lr = options.scale_lr
        self.dense_gradients = options.dense_gradients
        self.topology = Topology(world_size=hvd.size(), rank=hvd.rank(), num_replicas=hvd.size(),
                                 local_devices=[device], ranks_per_node=hvd.local_size(),
                                 hosts=list(hvd.allgather_object(socket.gethostname())))
        return self.topology

    def distribute(self, make, global_batch, training=True):
        """Each rank builds its own rows of every global batch (training, validation and
        test alike); `evaluate` and `callbacks` reduce the evaluation metrics over ranks."""
        return make(Shard(self.topology.rank, self.topology.world_size))

    def callbacks(self) -> list:
        return [_global_validation_metrics(self)] if self.topology.world_size > 1 else []

    def evaluate(self, model, dataset) -> dict[str, float]:
        model.evaluate(dataset, verbose=0)
        return self.global_metrics(model)

    def global_metrics(self, model) -> dict[str, float]:
        """The compiled metrics over every rank's evaluation: their states (sums of values and
        of weights: Keras' Mean and MeanMetricWrapper, the loss tracker) summed over ranks,
        then read; exact whatever the share of the last partial batch each rank had."""
        import tensorflow as tf
        states = [v for metric in model.metrics for v in metric.variables]
        if self.topology.world_size > 1 and states:
            summed = self.hvd.grouped_allreduce([tf.cast(v.value, tf.float32) for v in states], op=self.hvd.Sum)
            for state, total in zip(states, summed):
                state.assign(tf.cast(total, state.dtype))
        return {k: float(v) for k, v in model.get_metrics_result().items()}

    def fit(self, model, dataset, **kwargs):
        hvd = self.hvd
        if self.scale_lr:
            model.optimizer.learning_rate.assign(model.optimizer.learning_rate * hvd.size())
        model.optimizer.build(model.trainable_variables)
        hvd.broadcast_variables([v.value for v in model.variables], root_rank=0)
        hvd.broadcast_variables([v.value for v in model.optimizer.variables], root_rank=0)
        model.train_step = types.MethodType(_allreduce_train_step(hvd, self.dense_gradients), model)
        return model.fit(dataset, **kwargs)

    def communication(self, model, step_seconds: list[float]) -> dict | None:
        """The train step's grouped allreduce timed on its own, after training (tracing it
        during the timed steps, as Horovod's timeline does, cost them 17-30%)."""
        import tensorflow as tf
        hvd = self.hvd
        shapes = [(v.shape, v.dtype) for v in model.trainable_variables]
        zeros = [tf.zeros(s, d) for s, d in shapes]
        # the tensors are arguments, not constants: Grappler folds a collective of constants
        # away (the first version of this timed 1.7 MB between two nodes at 0.13 ms)
        grouped = tf.function(lambda tensors: hvd.grouped_allreduce(tensors, op=hvd.Average))
        return timed_collective(lambda: grouped(zeros), shapes, step_seconds,
                                "hvd.grouped_allreduce (the train step's)")

    def allreduce_seconds(self, nbytes: int, warmup: int, iters: int) -> float:
        import tensorflow as tf
        hvd = self.hvd
        tensor = tf.ones([nbytes // 4], tf.float32)
        reduce = tf.function(lambda t: hvd.allreduce(t, op=hvd.Sum))
        seconds = time_calls(lambda: reduce(tensor).numpy(), warmup, iters)
        return max(v[0] for v in self.gather([seconds]))

    def gather(self, values: list[float]) -> list[list[float]]:
        if os.environ.get("OMPI_COMM_WORLD_SIZE") and self.hvd.mpi_enabled():
            from mpi4py import MPI          # launched by MPI: gather over MPI itself
            gathered = MPI.COMM_WORLD.allgather(list(values))
        else:
            gathered = self.hvd.allgather_object(list(values))
        return [list(v) for v in gathered]

    def any_rank(self, flag: bool) -> bool:
        import tensorflow as tf
        return float(self.hvd.allreduce(tf.constant(1.0 if flag else 0.0), op=self.hvd.Max)) > 0

    def teardown(self) -> None:
        if hasattr(self, "hvd"):
            self.hvd.shutdown()

    @classmethod
    def local_processes(cls, workers: int, config_json: str, launcher: str) -> list[LocalProcess]:
        """One launcher process: horovodrun over Gloo, or mpirun; it starts the ranks."""
        worker = bench_command("run")
        if launcher == "mpi":
            command = mpirun(workers, worker, [RUN_CONFIG_ENV, "DISTBENCH_LAUNCHED"])
        else:
            command = [*HOROVODRUN, "-np", str(workers), "-H", f"localhost:{workers}", "--gloo", *worker]
        return [LocalProcess(command, {RUN_CONFIG_ENV: config_json, **MPIRUN_AS_ROOT_ENV})]

    @classmethod
    def srun_options(cls, placement: Placement) -> list[str]:
        return [*super().srun_options(placement), *shlex.split(placement.mpi)]


# horovodrun's own entry point, after TensorFlow's import without its native start-up lines
# (horovodrun imports TensorFlow to check its build: two more absl lines per launch otherwise)
HOROVODRUN = [sys.executable, "-c", "import sys; from bench.core.startup import import_tensorflow; "
              "import_tensorflow(); from horovod.runner.launch import run_commandline; sys.exit(run_commandline())"]


def _global_validation_metrics(backend: HorovodBackend):
    """A callback: after fit()'s validation pass (whose states the compiled metrics still
    hold at the epoch's end), the `val_` logs become the metrics over every rank's share.
    First in the callback list, so that History, checkpoints and time-to-target see them."""
    import keras

    class GlobalValidationMetrics(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if logs is not None and any(key.startswith("val_") for key in logs):
                logs.update({f"val_{k}": v for k, v in backend.global_metrics(self.model).items()})
    return GlobalValidationMetrics()


def _few_core_settings() -> dict[str, str]:
    """On a replica of one or two cores, Horovod's background loop (every HOROVOD_CYCLE_TIME
    ms) and MPI's busy-waiting in collectives take the cores from TensorFlow's compute: on
    the emulated nodes (1 core each) they cut charrnn-gru's 2-node weak-scaling efficiency
    from 0.91 to 0.65. Polling less often and yielding while waiting costs little latency.
    Set before hvd.init() (MPI reads its MCA variables there); a user's own values win."""
    if len(os.sched_getaffinity(0)) > 2:
        return {}
    wanted = {"HOROVOD_CYCLE_TIME": "5", "OMPI_MCA_mpi_yield_when_idle": "1"}
    return {name: os.environ.setdefault(name, value) for name, value in wanted.items()}


def _check_launched() -> None:
    launched = any(os.environ.get(v) for v in ("HOROVOD_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID"))
    if not launched:
        return      # a single process: Horovod runs with size 1
    if os.environ.get("SLURM_JOB_ID") and not os.environ.get("OMPI_COMM_WORLD_RANK") \
            and not os.environ.get("HOROVOD_RANK") and os.environ.get("SLURM_STEP_NUM_TASKS") is None:
        raise UsageError("strategy 'horovod' under Slurm: launch the ranks with srun (SLURM_STEP_NUM_TASKS not set)")


def _allreduce_train_step(hvd, dense_gradients: bool):
    """Keras 3's TensorFlow train_step with the gradients, the reported loss and the training
    metrics' states averaged over all ranks in one grouped allreduce. The states are sums
    over equal slices updated in lockstep, so their average gives the global batch's metric
    (Keras reports epoch metrics from these states, not from what the step returns).

    Under mixed_float16 the loss is scaled before differentiation and the gradients are
    unscaled after the allreduce, by the LossScaleOptimizer's apply: every rank then checks
    the same averaged gradients for inf/NaN, so all ranks skip an overflowed step and change
    the loss scale together (unscaling before the allreduce would let ranks disagree, and a
    rank that skips would leave the others waiting in the next collective). The gradients
    are float32 (the variables' dtype), so the allreduce is float32 either way."""
    import keras
    import tensorflow as tf
    from strategies import compat

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            y_pred = compat.call_for_training(self, x)
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
            scaled = self.optimizer.scale_loss(loss)
        weights = self.trainable_weights
        gradients = tape.gradient(scaled, weights)
        if dense_gradients:
            gradients = densify(gradients)
        self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
        tracker = compat.loss_tracker(self)
        states = [v for metric in self.metrics if metric is not tracker for v in metric.variables]
        reduced = _grouped_average(hvd, [*gradients, loss, *(tf.cast(v.value, tf.float32) for v in states)])
        gradients, mean_loss = reduced[:len(weights)], reduced[len(weights)]
        for state, mean in zip(states, reduced[len(weights) + 1:]):
            state.assign(tf.cast(mean, state.dtype))
        tracker.update_state(
            compat.unscale_loss_for_distribution(mean_loss),
            sample_weight=tf.shape(next(i for i in keras.tree.flatten(x) if i is not None))[0])
        self.optimizer.apply_gradients(zip(gradients, weights))
        return self.get_metrics_result()

    return train_step


def _grouped_average(hvd, tensors: list) -> list:
    """`hvd.grouped_allreduce(tensors, op=Average)` with the sparse gradients (embeddings'
    IndexedSlices) passed first and the results put back in order: Horovod 0.28.1 rebuilds
    the k-th sparse result with the dense_shape of the k-th *input* (horovod/horovod#3994),
    which fails when a dense tensor comes first (the memory network's temporal encoding)
    and would give the wrong shape when sparse and dense gradients interleave."""
    import tensorflow as tf
    if hvd.size() == 1:
        return tensors      # nothing to average: skip Horovod's background cycle (up to 5 ms a step)
    order = sorted(range(len(tensors)), key=lambda i: not isinstance(tensors[i], tf.IndexedSlices))
    reduced = hvd.grouped_allreduce([tensors[i] for i in order], op=hvd.Average)
    in_place = [None] * len(tensors)
    for position, index in enumerate(order):
        in_place[index] = reduced[position]
    return in_place
