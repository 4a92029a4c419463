"""`default`: one device, TensorFlow's default strategy (plain model.fit)."""

from __future__ import annotations

from strategies.base import Backend, BackendOptions, Placement, Topology, require_positive


class DefaultBackend(Backend):
    name = "default"
    description = "one device (GPU 0 if present, else the CPU)"

    def setup(self, options: BackendOptions) -> Topology:
        require_positive(options.devices)
        import tensorflow as tf
        gpus = tf.config.list_logical_devices("GPU")
        device = gpus[0].name if gpus else tf.config.list_logical_devices("CPU")[0].name
        self.topology = Topology(local_devices=[device])
        return self.topology

    @classmethod
    def launch_problem(cls, placement: Placement, cfg) -> str | None:
        return "default runs on one GPU" if placement.gpus != 1 else None
