"""GPU telemetry through NVML (`import pynvml`, from nvidia-ml-py).

The same code runs on a GPU node and on a host without one: when NVML or the
GPUs are absent, callers get ``available=False`` and the reason, never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class NvmlState:
    available: bool
    reason: str | None = None
    driver_version: str | None = None
    gpus: list[dict[str, Any]] = field(default_factory=list)


class Nvml:
    """An NVML session: open() once, sample() many times, close()."""

    def __init__(self) -> None:
        self._pynvml = None
        self._handles: list[Any] = []
        self.state = NvmlState(available=False, reason="NVML not initialised")

    def open(self) -> NvmlState:
        try:
            import pynvml
        except ImportError as exc:
            self.state = NvmlState(False, f"nvidia-ml-py not installed ({exc})")
            return self.state
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            self.state = NvmlState(False, f"NVML unavailable: {exc} (no NVIDIA driver on this host?)")
            return self.state
        try:
            count = pynvml.nvmlDeviceGetCount()
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            gpus = [_describe(pynvml, i, h) for i, h in enumerate(self._handles)]
            driver = _text(pynvml.nvmlSystemGetDriverVersion())
        except pynvml.NVMLError as exc:
            pynvml.nvmlShutdown()
            self.state = NvmlState(False, f"NVML query failed: {exc}")
            return self.state
        self._pynvml = pynvml
        if not gpus:
            self.state = NvmlState(False, "NVML reports 0 GPUs", driver_version=driver)
        else:
            self.state = NvmlState(True, None, driver_version=driver, gpus=gpus)
        return self.state

    def sample(self) -> list[dict[str, float | None]]:
        """One row per GPU: utilisation %, memory used MiB, power W (None where unsupported)."""
        if self._pynvml is None:
            return []
        nv = self._pynvml
        rows = []
        for index, handle in enumerate(self._handles):
            rows.append({
                "gpu": index,
                "util_pct": _query(nv, lambda: nv.nvmlDeviceGetUtilizationRates(handle).gpu),
                "mem_used_mib": _query(nv, lambda: nv.nvmlDeviceGetMemoryInfo(handle).used / 2**20),
                "power_w": _query(nv, lambda: nv.nvmlDeviceGetPowerUsage(handle) / 1000.0),
            })
        return rows

    def close(self) -> None:
        if self._pynvml is not None:
            try:
                self._pynvml.nvmlShutdown()
            except self._pynvml.NVMLError:
                pass
            self._pynvml = None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _query(nv: Any, read: Any) -> float | None:
    try:
        return float(read())
    except nv.NVMLError:
        return None


def _describe(nv: Any, index: int, handle: Any) -> dict[str, Any]:
    memory = nv.nvmlDeviceGetMemoryInfo(handle)
    return {
        "index": index,
        "name": _text(nv.nvmlDeviceGetName(handle)),
        "uuid": _text(nv.nvmlDeviceGetUUID(handle)),
        "memory_total_mib": memory.total / 2**20,
    }


def probe() -> NvmlState:
    """The NVML state of this host, for `bench env` and provenance."""
    session = Nvml()
    state = session.open()
    session.close()
    return state
