"""`mirrored`: tf.distribute.MirroredStrategy over the local GPUs.

On a host without GPUs, `--devices N` splits the CPU into N logical devices so that the
same code path (replicas, all-reduce, per-replica batches) runs on a laptop or in CI.
"""

from __future__ import annotations

import contextlib
import dataclasses

from strategies.base import (Backend, BackendOptions, Placement, Topology, build_compiled_state,
                             distribute_from_function, require_positive)
from bench.core.errors import UsageError


class MirroredBackend(Backend):
    name = "mirrored"
    description = "tf.distribute.MirroredStrategy over local GPUs (or N logical CPU devices)"
    # NCCL across GPUs; on CPU devices one process reduces to one device (copies in memory),
    # modelled as a ring inside the node
    allreduce = {"cpu": "ring", "gpu": "nccl"}
    multi_device = True

    def setup(self, options: BackendOptions) -> Topology:
        require_positive(options.devices)
        import tensorflow as tf
        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            count = options.devices or len(gpus)
            if count > len(gpus):
                raise UsageError(f"--devices {count}: this host has {len(gpus)} GPU(s)")
            devices = [f"/gpu:{i}" for i in range(count)]
        else:
            count = options.devices or 1
            _split_cpu(tf, count)
            devices = [d.name for d in tf.config.list_logical_devices("CPU")][:count]
        self.strategy = tf.distribute.MirroredStrategy(devices=devices)
        self.topology = Topology(num_replicas=self.strategy.num_replicas_in_sync, local_devices=devices)
        return self.topology

    def scope(self) -> contextlib.AbstractContextManager:
        return self.strategy.scope()

    def distribute(self, make, global_batch, training=True):
        dataset, spec = distribute_from_function(self.strategy, make, global_batch)
        if training:
            self.train_spec = spec
        return dataset

    def fit(self, model, dataset, **kwargs):
        build_compiled_state(model, self.strategy, self.train_spec)
        return model.fit(dataset, **kwargs)

    @classmethod
    def launch_problem(cls, placement: Placement, cfg) -> str | None:
        return "mirrored runs on one node" if placement.nodes != 1 else None

    @classmethod
    def job_config(cls, placement: Placement, cfg):
        # on nodes without GPUs, the job's "GPUs" are logical CPU devices
        return cfg if placement.gpu_nodes else dataclasses.replace(cfg, devices=placement.gpus)


def _split_cpu(tf, count: int) -> None:
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current and len(current) == count:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError as exc:   # the runtime was initialised before setup()
        raise RuntimeError(f"cannot split the CPU into {count} devices after TensorFlow started: {exc}") from None
