"""`mwms`: tf.distribute.MultiWorkerMirroredStrategy, one process per node (or per GPU).

The cluster comes from, in order: an existing TF_CONFIG (set by `--local-workers N`, or
by the user), or Slurm's `srun` environment through SlurmClusterResolver (as the CESGA
course launches `srun python ...` over N nodes x tasks per node).
"""

from __future__ import annotations

import contextlib
import json
import os

from bench.core.config import RUN_CONFIG_ENV
from bench.core.errors import UsageError
from bench.core.procs import bench_command, free_ports
from strategies.base import (Backend, BackendOptions, LocalProcess, Topology, build_compiled_state,
                             distribute_from_function, require_positive, time_calls, timed_collective)
from strategies import cluster, compat

COLLECTIVE_TIMEOUT_ENV = "DISTBENCH_COLLECTIVE_TIMEOUT"
BYTES_PER_PACK_ENV = "DISTBENCH_MWMS_BYTES_PER_PACK"


class MultiWorkerMirroredBackend(Backend):
    name = "mwms"
    description = "tf.distribute.MultiWorkerMirroredStrategy (TF_CONFIG, srun, or --local-workers N)"
    # CommunicationImplementation.AUTO: TensorFlow's ring over gRPC without GPUs, NCCL with them
    allreduce = {"cpu": "ring", "gpu": "nccl"}
    multi_process = True

    def setup(self, options: BackendOptions) -> Topology:
        require_positive(options.devices)
        resolver = _resolver()
        hosts, task = _hosts(resolver)
        import tensorflow as tf
        timeout = float(os.environ.get(COLLECTIVE_TIMEOUT_ENV, "300"))
        # gradients packed into few all-reduces: one collective per variable (the default,
        # bytes_per_pack=0) paid its latency ~10 times a step on the emulated nodes
        pack = int(os.environ.get(BYTES_PER_PACK_ENV, str(64 << 20)))
        communication = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout, bytes_per_pack=pack)
        self.settings = {"bytes_per_pack": str(pack), "collective_timeout_s": str(timeout)}
        self.strategy = tf.distribute.MultiWorkerMirroredStrategy(
            cluster_resolver=resolver, communication_options=communication)
        workers = len(hosts)
        me = hosts[task]
        local = [d.name for d in tf.config.list_logical_devices("GPU")] or ["/cpu:0"]
        self.topology = Topology(world_size=workers, rank=task,
                                 num_replicas=self.strategy.num_replicas_in_sync,
                                 local_devices=local, ranks_per_node=hosts.count(me), hosts=hosts)
        return self.topology

    def scope(self) -> contextlib.AbstractContextManager:
        return self.strategy.scope()

    def distribute(self, make, global_batch, training=True):
        """Each worker builds its own replicas' rows of every global batch
        (distribute_datasets_from_function), not every row to drop the others' (auto-sharding
        by data, before)."""
        dataset, spec = distribute_from_function(self.strategy, make, global_batch)
        if training:
            self.train_spec = spec
        return dataset

    def fit(self, model, dataset, **kwargs):
        build_compiled_state(model, self.strategy, self.train_spec)
        compat.average_scalar_logs_over_workers()
        return model.fit(dataset, **kwargs)

    def communication(self, model, step_seconds: list[float]) -> dict | None:
        """The gradients' all-reduce (batched, as the optimizer does it) timed on its own."""
        import tensorflow as tf
        shapes = [(v.shape, v.dtype) for v in model.trainable_variables]

        @tf.function
        def reduce():       # collective ops are stateful: Grappler does not fold them away
            return self.strategy.run(lambda: tf.distribute.get_replica_context().all_reduce(
                "MEAN", [tf.zeros(s, d) for s, d in shapes]))
        return timed_collective(reduce, shapes, step_seconds, "replica_context.all_reduce (batched)")

    @classmethod
    def comm_problem(cls, local_workers: int | None) -> str | None:
        if local_workers:
            return "bench comm --strategy mwms runs under srun (or with TF_CONFIG): not with --local-workers"
        return None

    def allreduce_seconds(self, nbytes: int, warmup: int, iters: int) -> float:
        import tensorflow as tf
        # every size traces reduce and the gather anew, on purpose (`bench comm` only): TensorFlow's
        # "N out of the last N calls ... triggered tf.function retracing" warnings say nothing here
        tf.get_logger().setLevel("ERROR")
        tensor = tf.ones([nbytes // 4], tf.float32)

        @tf.function
        def reduce():
            return self.strategy.run(lambda: tf.distribute.get_replica_context().all_reduce("SUM", tensor))
        seconds = time_calls(lambda: self.strategy.experimental_local_results(reduce())[0].numpy(), warmup, iters)
        return max(v[0] for v in self.gather([seconds]))

    def gather(self, values: list[float]) -> list[list[float]]:
        return cluster.gather_floats(self.strategy, values, self.topology.world_size)

    def any_rank(self, flag: bool) -> bool:
        import tensorflow as tf
        value = tf.constant(1.0 if flag else 0.0)
        distributed = self.strategy.experimental_distribute_values_from_function(lambda ctx: value)
        return float(self.strategy.reduce("SUM", distributed, axis=None)) > 0   # no MAX in tf.distribute

    @classmethod
    def local_processes(cls, workers: int, config_json: str, launcher: str) -> list[LocalProcess]:
        """One `bench run` per worker, each told the cluster by its TF_CONFIG."""
        addresses = [f"127.0.0.1:{port}" for port in free_ports(workers)]
        return [LocalProcess(bench_command("run"), {
                    RUN_CONFIG_ENV: config_json, "DISTBENCH_LOCAL_RANK": str(rank),
                    "TF_CONFIG": json.dumps({"cluster": {"worker": addresses},
                                             "task": {"type": "worker", "index": rank}})})
                for rank in range(workers)]


def _resolver():
    """The cluster resolver for this process; UsageError when there is no cluster."""
    import tensorflow as tf
    if os.environ.get("TF_CONFIG"):
        try:
            config = json.loads(os.environ["TF_CONFIG"])
            workers = config["cluster"]["worker"]
            index = int(config["task"]["index"])
            if config["task"]["type"] not in ("worker", "chief") or not 0 <= index < len(workers):
                raise ValueError("task does not name one of the cluster's workers")
        except (ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"TF_CONFIG is malformed: {exc}") from None
        return tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if os.environ.get("SLURM_JOB_ID"):
        step = cluster.slurm_step()
        from bench.core import gpu
        state = gpu.probe()      # before TensorFlow starts: the resolver sets CUDA_VISIBLE_DEVICES
        if state.available:
            return tf.distribute.cluster_resolver.SlurmClusterResolver(
                port_base=cluster.port_base(), gpus_per_node=len(state.gpus))
        return _cpu_slurm_resolver(max(step.tasks_per_node))
    raise UsageError("strategy 'mwms' needs a cluster: launch with srun under Slurm, set TF_CONFIG, "
                     "or add --local-workers N")


def _hosts(resolver) -> tuple[list[str], int]:
    """Every task's host in task order (the resolver's own order), and this task's index."""
    spec = resolver.cluster_spec().as_dict()
    addresses = spec.get("chief", []) + spec.get("worker", [])
    task = (resolver.task_id or 0) + (1 if spec.get("chief") and resolver.task_type == "worker" else 0)
    return [address.rsplit(":", 1)[0] for address in addresses], task


def _cpu_slurm_resolver(max_tasks_per_node: int):
    """SlurmClusterResolver on nodes without GPUs. Its GPU allocation steps through the GPUs
    gpus_per_task at a time, and gpus_per_task is 0 there ("range() arg 3 must not be zero"):
    give it one notional slot per task, never let it set CUDA_VISIBLE_DEVICES, and report no
    accelerators, so that the strategy uses the CPU."""
    import tensorflow as tf

    class CpuSlurmClusterResolver(tf.distribute.cluster_resolver.SlurmClusterResolver):
        def num_accelerators(self, task_type=None, task_id=None, config_proto=None):
            return {"GPU": 0}

    return CpuSlurmClusterResolver(port_base=cluster.port_base(), gpus_per_node=max_tasks_per_node,
                                   gpus_per_task=1, auto_set_gpu=False)
