"""Summary statistics of step times and throughput (numpy, no TensorFlow)."""

from __future__ import annotations

import math
import statistics
from typing import Sequence

import numpy as np


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100]."""
    return float(np.percentile(values, q)) if len(values) else math.nan


def step_time_summary(step_times: Sequence[float]) -> dict[str, float | int]:
    if not step_times:
        return {"count": 0}
    return {
        "count": len(step_times),
        "mean_s": statistics.fmean(step_times),
        "median_s": statistics.median(step_times),
        "p90_s": percentile(step_times, 90),
        "min_s": min(step_times),
        "max_s": max(step_times),
        "std_s": statistics.pstdev(step_times),
        "total_s": math.fsum(step_times),
    }


def throughput(step_times: Sequence[float], samples_per_step: int, devices: int,
               tokens_per_sample: int | None = None) -> dict[str, float]:
    """Samples (and tokens) per second over the timed steps, total and per device."""
    total_time = math.fsum(step_times)
    if not step_times or total_time <= 0:
        return {}
    samples_per_s = samples_per_step * len(step_times) / total_time
    result = {
        "samples_per_s": samples_per_s,
        "samples_per_s_per_device": samples_per_s / max(devices, 1),
        "median_step_samples_per_s": samples_per_step / statistics.median(step_times),
    }
    if tokens_per_sample:
        result["tokens_per_s"] = samples_per_s * tokens_per_sample
        result["tokens_per_s_per_device"] = result["tokens_per_s"] / max(devices, 1)
    return result
