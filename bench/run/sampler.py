"""Background sampler: GPUs through NVML and the host through psutil, every `interval` s."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import numpy as np
import psutil

from bench.core.gpu import Nvml


class ResourceSampler:
    # others_pct: how busy the run's cores were with other processes, in % of those cores (their
    # busy time less this process's): a run that shared its cores measured the other work too.
    # steal_pct: the time a virtual machine's hypervisor gave the run's cores to other guests, in %
    # (0 on bare metal): it comes and goes with the host's load, and a run's steps stretch with it
    HOST_COLUMNS = ["t_s", "cpu_pct", "proc_cpu_pct", "rss_mib", "others_pct", "steal_pct"]
    GPU_COLUMNS = ["t_s", "gpu", "util_pct", "mem_used_mib", "power_w"]

    def __init__(self, interval_s: float = 1.0) -> None:
        if interval_s <= 0:
            raise ValueError("sample interval must be > 0")
        self.interval_s = interval_s
        self.host_rows: list[list[float]] = []
        self.gpu_rows: list[list[Any]] = []
        self.nvml = Nvml()
        self._process = psutil.Process(os.getpid())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()      # the loop's samples and sample_now's, one at a time
        self._t0 = 0.0
        self._cores = sorted(os.sched_getaffinity(0))

    def __enter__(self) -> "ResourceSampler":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.nvml.open()
        psutil.cpu_percent(None)          # prime: the first call returns 0.0
        psutil.cpu_percent(None, percpu=True)
        psutil.cpu_times_percent(None, percpu=True)
        self._process.cpu_percent(None)
        self._cores = sorted(os.sched_getaffinity(0))      # as bound when the run starts
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._loop, name="distbench-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=5 * self.interval_s + 1)
        self._thread = None
        self.sample_now()                     # a last row so short runs still have one
        self.nvml.close()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample_now()

    def sample_now(self) -> None:
        """One row now (the loop's every interval; called beside it, a summary read mid-run, as a
        trial's iteration that ends within one interval of the start, covers the time up to it)."""
        with self._lock:
            t = time.perf_counter() - self._t0
            try:
                rss = self._process.memory_info().rss / 2**20
                busy, own = psutil.cpu_percent(None, percpu=True), self._process.cpu_percent(None)
                mine = [busy[c] for c in self._cores if c < len(busy)] or busy
                others = max(0.0, (sum(mine) - own) / len(mine))
                times = psutil.cpu_times_percent(None, percpu=True)
                stolen = [getattr(times[c], "steal", 0.0) for c in self._cores if c < len(times)] or [0.0]
                self.host_rows.append([t, psutil.cpu_percent(None), own, rss, others, sum(stolen) / len(stolen)])
            except psutil.Error:
                pass
            for row in self.nvml.sample():
                self.gpu_rows.append([t, row["gpu"], row["util_pct"], row["mem_used_mib"], row["power_w"]])

    def host_summary(self, since: float | None = None) -> dict[str, Any]:
        """`since` (perf_counter, e.g. the first timed step's start): others' share from then on."""
        later = [r for r in self.host_rows if since is None or self._t0 + r[0] >= since] or self.host_rows
        return {
            "interval_s": self.interval_s,
            "samples": len(self.host_rows),
            "cpu_pct_mean": _mean(r[1] for r in self.host_rows),
            "proc_cpu_pct_mean": _mean(r[2] for r in self.host_rows),
            "rss_mib_max": max((r[3] for r in self.host_rows), default=None),
            "others_cpu_pct_mean": _mean(r[4] for r in later),
            "steal_pct_mean": _mean(r[5] for r in later),
            "cores": len(self._cores),
            "logical_cpus": psutil.cpu_count(),
        }

    def gpu_summary(self) -> dict[str, Any]:
        state = self.nvml.state
        summary: dict[str, Any] = {
            "available": state.available,
            "reason": state.reason,
            "driver_version": state.driver_version,
            "gpus": state.gpus,
            "samples": len(self.gpu_rows),
        }
        per_gpu = {}
        for gpu in {r[1] for r in self.gpu_rows}:
            rows = [r for r in self.gpu_rows if r[1] == gpu]
            per_gpu[str(gpu)] = {
                "util_pct_mean": _mean(r[2] for r in rows),
                "mem_used_mib_max": max((r[3] for r in rows if r[3] is not None), default=None),
                "power_w_mean": _mean(r[4] for r in rows),
                "energy_j": _energy(rows),
            }
        summary["per_gpu"] = per_gpu
        return summary


def _mean(values: Any) -> float | None:
    present = np.array([v for v in values if v is not None], dtype=float)
    return float(np.nanmean(present)) if np.isfinite(present).any() else None


def _energy(rows: list[list[Any]]) -> float | None:
    """Trapezoid integral of power over time (J)."""
    points = np.array([(r[0], r[4]) for r in rows if r[4] is not None], dtype=float)
    if len(points) < 2:
        return None
    return float(np.trapezoid(points[:, 1], points[:, 0]))
