"""`bench doctor`: is this node set up right? One line per check, ok / warning / error, with
the fix; an error makes the command exit non-zero.

    ok       tensorflow 2.21.0 (CPU build)
    warning  GPUs: none visible to TensorFlow (a login node, or a CPU partition?)
    error    results: /scratch/r is not writable (--results or $DISTBENCH_RESULTS)

GPU checks are errors only where GPUs are expected: Slurm allocated some (SLURM_GPUS*,
SLURM_JOB_GPUS) or `--gpus N` was given.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.core import startup

OK, WARNING, ERROR = "ok", "warning", "error"


@dataclass
class Check:
    status: str
    name: str
    text: str

    def line(self) -> str:
        return f"{self.status:<8} {self.name}: {self.text}"


def expected_gpus(env=os.environ, given: int | None = None) -> int | None:
    """GPUs this node should show: --gpus, else what Slurm allocated (None: no expectation)."""
    if given is not None:
        return given
    for name in ("SLURM_GPUS_ON_NODE", "SLURM_GPUS_PER_NODE", "SLURM_GPUS"):
        value = env.get(name, "").split(":")[-1]
        if value.isdigit():
            return int(value)
    if env.get("SLURM_JOB_GPUS"):
        return len(env["SLURM_JOB_GPUS"].split(","))
    return None


def run_checks(data_dir: str | None, results: str, gpus: int | None = None) -> list[Check]:
    expected = expected_gpus(given=gpus)
    checks = [_tensorflow(expected), _nvml(expected), _visible_devices(expected), _mpi(), *_backends(),
              _slurm(), _data(data_dir), _results(results)]
    from strategies import compat
    problems = compat.version_problems()
    checks.append(Check(WARNING, "compat", "; ".join(problems)) if problems else
                  Check(OK, "compat", "keras and tensorflow within the versions strategies/compat.py was checked against"))
    return checks


def _tensorflow(expected: int | None) -> Check:
    try:
        tf = startup.import_tensorflow()
    except ImportError as exc:
        return Check(ERROR, "tensorflow", f"not importable ({exc}); run ./install.sh (EXTRAS=cuda,mpi,ray on GPU nodes)")
    build = tf.sysconfig.get_build_info()
    gpus = tf.config.list_physical_devices("GPU")
    if build.get("is_cuda_build"):
        text = f"{tf.__version__}, CUDA {build.get('cuda_version')}, cuDNN {build.get('cudnn_version')}, {len(gpus)} GPU(s) seen"
    else:
        text = f"{tf.__version__} (CPU build: no CUDA), {len(gpus)} GPU(s) seen"
    if expected and not build.get("is_cuda_build"):
        return Check(ERROR, "tensorflow", f"{text}; {expected} GPU(s) expected: install the CUDA build "
                                          "(EXTRAS=cuda,mpi,ray ./install.sh)")
    if expected and len(gpus) != expected:
        return Check(ERROR, "tensorflow", f"{text}; {expected} expected (check CUDA_VISIBLE_DEVICES and the driver)")
    if not gpus:
        return Check(WARNING, "tensorflow", f"{text}; no GPU: runs use the CPU (a login node or CPU partition?)")
    return Check(OK, "tensorflow", text)


def _nvml(expected: int | None) -> Check:
    from bench.core import gpu
    state = gpu.probe()
    if not state.available:
        return Check(ERROR if expected else WARNING, "nvml", f"{state.reason}; GPU telemetry off (records say so)")
    names = ", ".join(sorted({g["name"] for g in state.gpus}))
    status = ERROR if expected and len(state.gpus) < expected else OK
    return Check(status, "nvml", f"driver {state.driver_version}, {len(state.gpus)} GPU(s): {names}")


def _visible_devices(expected: int | None) -> Check:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return Check(OK, "CUDA_VISIBLE_DEVICES", "not set (every GPU of the node is visible)")
    count = len([d for d in visible.split(",") if d.strip()])
    if expected is not None and count != expected:
        return Check(ERROR, "CUDA_VISIBLE_DEVICES", f"{visible!r} shows {count} GPU(s), Slurm allocated {expected}")
    return Check(OK, "CUDA_VISIBLE_DEVICES", f"{visible!r} ({count} GPU(s))")


def _backends() -> list[Check]:
    """Each backend's own check of what it needs here (strategies/*: `node_check`)."""
    import strategies
    checks = []
    for name in strategies.names():
        found = strategies.get_class(name).node_check()
        if found:
            checks.append(Check(found[0], name, found[1]))
    return checks


def _mpi() -> Check:
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        return Check(WARNING, "mpi", "no mpirun on PATH (module load openmpi, or Debian's openmpi-bin)")
    try:
        from mpi4py import MPI
        library = MPI.Get_library_version().splitlines()[0].split(",")[0]
    except ImportError as exc:
        return Check(WARNING, "mpi", f"mpirun found, mpi4py not importable ({exc})")
    srun = shutil.which("srun")
    plugins = ""
    if srun:
        done = subprocess.run([srun, "--mpi=list"], capture_output=True, text=True, timeout=30)
        found = [p for p in ("pmix", "pmi2") if p in done.stdout + done.stderr]
        if done.returncode != 0:
            plugins = "; srun cannot list its MPI plugins here (no slurm.conf?)"
        else:
            plugins = f"; srun --mpi: {', '.join(found) or 'no pmix/pmi2 (Horovod under srun needs one)'}"
    return Check(OK, "mpi", f"{library}{plugins}")


def _slurm() -> Check:
    if not os.environ.get("SLURM_JOB_ID"):
        return Check(OK, "slurm", "not inside a job (a login node, or a local run)")
    from bench.core import hostlist
    try:
        nodes = hostlist.expand(os.environ.get("SLURM_JOB_NODELIST", ""))
        cpus = int(os.environ.get("SLURM_CPUS_PER_TASK", "1"))
    except ValueError as exc:
        return Check(ERROR, "slurm", f"malformed Slurm variables: {exc}")
    return Check(OK, "slurm", f"job {os.environ['SLURM_JOB_ID']}, {len(nodes)} node(s), {cpus} CPU(s) per task")


def _data(data_dir: str | None) -> Check:
    from bench.data import catalog
    where = data_dir or os.environ.get("DISTBENCH_DATA_DIR")
    try:
        missing = catalog.missing(where)
    except Exception as exc:  # the check itself must not stop the others
        return Check(WARNING, "data", f"cannot check ({exc})")
    if missing:
        return Check(WARNING, "data", f"missing {', '.join(missing)} in {where or 'the cache'}: bench data fetch "
                                      "--data-dir DIR on a node with internet, or --data generated")
    return Check(OK, "data", f"every dataset present ({where or 'the cache'})")


def _results(results: str) -> Check:
    path = Path(results)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path):
            pass
    except OSError as exc:
        return Check(ERROR, "results", f"{path} is not writable ({exc.strerror}): --results or $DISTBENCH_RESULTS")
    return Check(OK, "results", f"{path.resolve()} writable")
