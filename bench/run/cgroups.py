"""A share of a core: CPU bandwidth control through cgroups, for emulated nodes and local
replicas smaller than a core (0.5 makes 4 nodes fit 2 cores).

A share is a cgroup whose CPU quota is `share x period` (cgroup v1 `cpu.cfs_quota_us` /
`cpu.cfs_period_us`, v2 `cpu.max`) on a given set of cores (`cpuset.cpus`), whichever the
machine mounts. A process joins it by writing its pid (its children inherit it); `read_share`
reads a process's quota back. Every cgroup is a directory named by its owner, removed with
`remove` (its processes killed first). No TensorFlow here.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from bench.core.errors import UsageError

ROOT = Path(os.environ.get("DISTBENCH_CGROUP_ROOT", "/sys/fs/cgroup"))
SHARES_ENV = "DISTBENCH_CPU_SHARES"     # a local launch's cgroups, one set per local rank: "a,b;c,d"
PERIOD_ENV = "DISTBENCH_CFS_PERIOD_US"
# The period a share is enforced over: over the kernel's default 100 ms a half core runs 50 ms,
# then waits up to 50 ms (what a shorter one changes: benchmarks/cfs_period.py)
PERIOD_US = 100_000


def period_us() -> int:
    value = os.environ.get(PERIOD_ENV, str(PERIOD_US))
    if not value.isdigit() or not 1000 <= int(value) <= 1_000_000:
        raise UsageError(f"{PERIOD_ENV}={value!r}: a CFS period in microseconds, 1000 to 1000000")
    return int(value)


def _v1() -> bool:
    return (ROOT / "cpu" / "cpu.cfs_quota_us").exists()


def unavailable() -> str | None:
    """Why a share of a core cannot be made here (None: it can)."""
    if os.geteuid() != 0:
        return "a share of a core needs root (cgroups)"
    if _v1():
        return None if (ROOT / "cpuset" / "cpuset.cpus").exists() else "cgroup v1 without the cpuset controller"
    controllers = (ROOT / "cgroup.controllers")
    if controllers.exists() and "cpu" in controllers.read_text().split():
        return None
    return "no cgroup CPU controller mounted (v1 cpu + cpuset, or v2 cpu.max)"


def create(name: str, cores: list[int], share: float) -> list[str]:
    """A cgroup `name` limited to `share` of one core's time on `cores`; its directories."""
    why = unavailable()
    if why:
        raise UsageError(why)
    period = period_us()
    quota = str(max(1000, round(share * period)))
    cpus = ",".join(map(str, cores))
    if _v1():
        cpu, cpuset = ROOT / "cpu" / name, ROOT / "cpuset" / name
        for path in (cpu, cpuset):
            path.mkdir(exist_ok=True)
        (cpu / "cpu.cfs_period_us").write_text(str(period))
        (cpu / "cpu.cfs_quota_us").write_text(quota)
        (cpuset / "cpuset.mems").write_text((ROOT / "cpuset" / "cpuset.mems").read_text().strip())
        (cpuset / "cpuset.cpus").write_text(cpus)
        return [str(cpu), str(cpuset)]
    path = ROOT / name
    (ROOT / "cgroup.subtree_control").write_text("+cpu +cpuset")
    path.mkdir(exist_ok=True)
    (path / "cpu.max").write_text(f"{quota} {period}")
    (path / "cpuset.cpus").write_text(cpus)
    return [str(path)]


def join(paths: list[str], pid: int | str = 0) -> None:
    """Move a process (0: this one) into the cgroups; its threads and later children follow."""
    for path in paths:
        (Path(path) / "cgroup.procs").write_text(str(pid or os.getpid()))


def read_share(pid: int | str = "self") -> float | None:
    """The share of a core a process's cgroup allows, read back (None: no limit)."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if _v1() and "cpu" in controllers.split(","):
            quota = int((ROOT / "cpu" / path.lstrip("/") / "cpu.cfs_quota_us").read_text())
            period = int((ROOT / "cpu" / path.lstrip("/") / "cpu.cfs_period_us").read_text())
            return quota / period if quota > 0 else None
        if not _v1() and controllers == "":
            limit = (ROOT / path.lstrip("/") / "cpu.max")
            if limit.exists():
                quota, period = limit.read_text().split()
                return None if quota == "max" else int(quota) / int(period)
    return None


def remove(paths: list[str]) -> list[str]:
    """Remove cgroups (children first, their processes killed): the ones that existed."""
    removed = []
    for path in paths:
        root = Path(path)
        if not root.is_dir():
            continue
        for child in sorted((p for p in root.iterdir() if p.is_dir()), key=str, reverse=True):
            remove([str(child)])
        for _ in range(50):
            try:
                pids = [int(p) for p in (root / "cgroup.procs").read_text().split()]
            except OSError:
                pids = []
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                root.rmdir()
                removed.append(path)
                break
            except OSError:
                time.sleep(0.1)
    return removed


def fit(items: int, share: float, cores: list[int]) -> list[list[int]]:
    """The cores of each of `items` nodes or replicas of `share` cores each: whole cores for
    a share of 1 or more, else 1 // share of them on each core, in order."""
    if share <= 0:
        raise UsageError(f"a share of {share:g} cores: must be > 0")
    if share >= 1:
        if share != int(share):
            raise UsageError(f"{share:g} cores: a share above 1 must be a whole number of cores")
        need = items * int(share)
        per = int(share)
    else:
        if round(1 / share, 6) != int(round(1 / share, 6)):
            raise UsageError(f"{share:g} cores: a share below 1 must divide a core (0.5, 0.25, ...)")
        per_core = int(round(1 / share))
        need = -(-items // per_core)
    if need > len(cores):
        raise UsageError(f"{items} x {share:g} cores do not fit this machine's {len(cores)} cores")
    if share >= 1:
        return [cores[i * per:(i + 1) * per] for i in range(items)]
    return [[cores[i // per_core]] for i in range(items)]
