#!/usr/bin/env bash
# Build Horovod 0.28.1 from its source distribution against the TensorFlow installed in the
# venv, with TensorFlow, Gloo and MPI (Debian's Open MPI) support, and install it.
#
#   scripts/build-horovod.sh [VENV]        (default .venv; called by install.sh)
#   HOROVOD_GPU_OPERATIONS=NCCL scripts/build-horovod.sh   on GPU nodes with CUDA + NCCL
#
# Why a recipe: Horovod 0.28.1 (2023) does not build out of the box against TensorFlow 2.21.
#  - CMake >= 4 rejects the cmake_minimum_required of Horovod's bundled gloo:
#    CMAKE_POLICY_VERSION_MINIMUM=3.5 lets it configure (harmless with CMake 3.x).
#  - horovod/tensorflow/xla_mpi_ops.cc does not compile against TensorFlow 2.21's headers;
#    the XLA ops are not needed (we do not jit-compile Horovod collectives), so the file is
#    dropped from the build.
#  - pip's build isolation would build against whatever TensorFlow it downloads: the wheel
#    is built with --no-build-isolation against the venv's own TensorFlow.
# The wheel is cached outside the clone, keyed by Horovod, TensorFlow and Python versions;
# a fresh machine builds it (about 3 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-${VENV:-.venv}}
PY="$VENV/bin/python"
VERSION=0.28.1
CACHE=${DISTBENCH_BUILD_CACHE:-$HOME/.cache/distbench/wheels}

tf_version=$("$PY" -c 'import tensorflow as tf; print(tf.__version__)')
py_tag=$("$PY" -c 'import sys; print(f"cp{sys.version_info.major}{sys.version_info.minor}")')
ops=${HOROVOD_GPU_OPERATIONS:-cpu}
wheel_dir="$CACHE/horovod-$VERSION-tf$tf_version-$py_tag-$ops"

if "$PY" -c "import horovod.tensorflow" 2>/dev/null && \
   [ "$("$PY" -c 'import horovod; print(horovod.__version__)')" = "$VERSION" ]; then
    exit 0
fi

need_apt=()
command -v mpicxx >/dev/null || need_apt+=(openmpi-bin libopenmpi-dev)
command -v cmake >/dev/null || need_apt+=(cmake)
command -v g++ >/dev/null || need_apt+=(g++)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "build-horovod: installing ${need_apt[*]} (Debian packages)"
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
    else
        echo "build-horovod: need root to install ${need_apt[*]}; on a cluster: module load OpenMPI CMake" >&2
        exit 1
    fi
fi

if ! ls "$wheel_dir"/horovod-*.whl >/dev/null 2>&1; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    echo "build-horovod: building Horovod $VERSION against TensorFlow $tf_version (a few minutes)"
    start=$(date +%s)
    "$PY" -m pip download --quiet --no-deps --no-binary :all: "horovod==$VERSION" -d "$work"
    tar -xzf "$work/horovod-$VERSION.tar.gz" -C "$work"
    src="$work/horovod-$VERSION"
    # Leave the XLA ops out of the build (see above).
    sed -i '/xla_mpi_ops.cc/d' "$src/horovod/tensorflow/CMakeLists.txt"
    "$PY" -m pip install --quiet "cmake<4" packaging wheel
    export CMAKE_POLICY_VERSION_MINIMUM=3.5
    export HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1
    export HOROVOD_WITH_GLOO=1 HOROVOD_WITH_MPI=1
    export MAKEFLAGS="-j$(nproc)"
    if [ "$ops" != cpu ]; then export HOROVOD_GPU_OPERATIONS="$ops"; fi
    mkdir -p "$wheel_dir"
    PATH="$VENV/bin:$PATH" "$PY" -m pip wheel --quiet --no-build-isolation --no-deps "$src" -w "$wheel_dir"
    echo "build-horovod: built in $(( $(date +%s) - start )) s"
fi
"$PY" -m pip install --quiet --no-deps "$wheel_dir"/horovod-*.whl
# horovod's own runtime dependencies (horovodrun), without letting pip touch TensorFlow
"$PY" -m pip install --quiet cloudpickle psutil pyyaml packaging
"$VENV/bin/horovodrun" --check-build
