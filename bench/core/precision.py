"""Numerics of a run: the Keras dtype policy (`--precision`) and TensorFloat-32 (`--tf32`).

Set before the model is built, in every process of a run. Under a mixed policy layers
compute in float16 / bfloat16 and keep float32 variables; the workloads' output layers stay
float32 so that their losses (softmax cross-entropy) are computed in float32. Under
`mixed_float16` Keras' `Model.compile` wraps the optimizer in a `LossScaleOptimizer`
(dynamic loss scaling); bfloat16 has float32's exponent range and needs none.

TF32 is TensorFlow's switch for float32 matrix multiplications and convolutions on Ampere
GPUs (A100): on by default, at about 10 bits of mantissa. It changes nothing on a CPU,
which the record says.
"""

from __future__ import annotations

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
TF32_CHOICES = ("on", "off")
SHORT = {"float32": "fp32", "mixed_float16": "fp16", "mixed_bfloat16": "bf16"}


def label(precision: str = "float32", tf32: str = "on") -> str:
    """How the analysis names a run's numerics beside its strategy ('' for the defaults)."""
    parts = [SHORT.get(precision, precision)] if precision != "float32" else []
    if tf32 == "off":
        parts.append("tf32 off")
    return " ".join(parts)


def apply(precision: str, tf32: str) -> dict:
    """Set the global dtype policy and the TF32 switch; what the record states of them."""
    import keras
    import tensorflow as tf
    keras.mixed_precision.set_dtype_policy(precision)
    tf.config.experimental.enable_tensor_float_32_execution(tf32 == "on")
    gpus = tf.config.list_physical_devices("GPU")
    return {
        "precision": precision,
        "compute_dtype": keras.mixed_precision.dtype_policy().compute_dtype,
        "variable_dtype": keras.mixed_precision.dtype_policy().variable_dtype,
        "loss_scaling": "dynamic (keras LossScaleOptimizer)" if precision == "mixed_float16" else "none",
        "tf32": tf.config.experimental.tensor_float_32_execution_enabled(),
        "tf32_applies": bool(gpus),      # TF32 exists only on NVIDIA Ampere and later GPUs
    }


def reset() -> None:
    """Back to float32 (a tuning trial's process may run another trial next)."""
    import keras
    keras.mixed_precision.set_dtype_policy("float32")
