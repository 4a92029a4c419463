#!/usr/bin/env bash
# One idempotent set-up: a virtual environment in .venv with distbench and its extras,
# Open MPI (Debian packages, when root) + mpi4py, and Horovod built from source.
#   ./install.sh                  CPU build of TensorFlow (this machine, CI)
#   EXTRAS=cuda,mpi,ray ./install.sh  CUDA build (GPU nodes)
#   WITH_HOROVOD=0 ./install.sh   skip the Horovod build
#   WITH_SLURM=0 ./install.sh     skip Debian's Slurm (installed as root for the tests)
#   WITH_BROWSER=0 ./install.sh   skip Debian's Chromium (the report's browser test)
# Re-running only installs what changed. Downloads are cached by pip, the Horovod wheel in
# ~/.cache/distbench/wheels, all outside the clone.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
EXTRAS=${EXTRAS:-cpu,mpi,ray}
WITH_HOROVOD=${WITH_HOROVOD:-1}
VENV=${VENV:-.venv}

if [ ! -x "$VENV/bin/python" ]; then
    echo "install: creating $VENV with $("$PYTHON" --version)"
    "$PYTHON" -m venv "$VENV"
fi
debian_packages() {
    # Open MPI for mpi4py and Horovod. On clusters it comes from `module load`.
    command -v mpicc >/dev/null && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "install: Open MPI from Debian packages"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openmpi-bin libopenmpi-dev >/dev/null
    else
        echo "install: no mpicc found; install Open MPI (or module load it) for the mpi extra" >&2
        return 1
    fi
}
case ",$EXTRAS," in *,mpi,*) debian_packages ;; esac

# A real Slurm for the tests and the demo (slurmctld, slurmd, munge), and what the emulated
# multi-node cluster needs (iproute2: ip, tc). Clusters have their own.
if [ "${WITH_SLURM:-1}" = 1 ] && { ! command -v slurmd >/dev/null || ! command -v tc >/dev/null; } \
        && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "install: Slurm, munge and iproute2 from Debian packages (for the tests and the demo)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge iproute2 >/dev/null
fi

# A headless Chromium for the report's browser test (what a reader sees of report.html).
if [ "${WITH_BROWSER:-1}" = 1 ] && ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] \
        && command -v apt-get >/dev/null; then
    echo "install: Chromium from Debian packages (the report's browser test)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

stamp="$VENV/.distbench-installed"
want="$(cat setup.cfg pyproject.toml scripts/build-horovod.sh | sha256sum | cut -d' ' -f1) $EXTRAS $WITH_HOROVOD"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e ".[$EXTRAS,test]"
if [ "$WITH_HOROVOD" = 1 ]; then
    scripts/build-horovod.sh "$VENV"
fi
echo "$want" > "$stamp"
echo "install: done ($("$VENV/bin/python" -c 'import tensorflow as tf, keras; print("tensorflow", tf.__version__, "keras", keras.__version__)' 2>/dev/null | tail -n1))"
