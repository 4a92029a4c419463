"""Where a result came from: versions, git sha, host, CPU/GPU model, Slurm variables."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.core.gpu import NvmlState

PACKAGES = ("distbench", "tensorflow", "tensorflow-cpu", "keras", "numpy", "horovod", "ray",
            "mpi4py", "psutil", "nvidia-ml-py", "pandas", "matplotlib")
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_info(root: Path = PROJECT_ROOT) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                                  text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    if sha is None:
        return {"sha": None, "reason": f"{root} is not a git checkout"}
    return {"sha": sha, "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def slurm_variables() -> dict[str, str]:
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith("SLURM_")}


def collect(nvml: NvmlState | None = None) -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "packages": package_versions(),
        "git": git_info(),
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpu_models": [g["name"] for g in nvml.gpus] if nvml and nvml.available else [],
        "slurm": slurm_variables(),
        "argv": sys.argv,
    }
