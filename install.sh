#!/usr/bin/env bash
# One idempotent set-up: a virtual environment in .venv with distbench and its extras.
#   ./install.sh            CPU build of TensorFlow (this machine, CI)
#   EXTRAS=cuda ./install.sh  CUDA build (GPU nodes)
# Re-running only installs what changed. Downloads are cached by pip outside the clone.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
EXTRAS=${EXTRAS:-cpu}
VENV=${VENV:-.venv}

if [ ! -x "$VENV/bin/python" ]; then
    echo "install: creating $VENV with $("$PYTHON" --version)"
    "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.distbench-installed"
want="$(cat setup.cfg pyproject.toml | sha256sum | cut -d' ' -f1) $EXTRAS"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e ".[$EXTRAS,test]"
echo "$want" > "$stamp"
echo "install: done ($("$VENV/bin/python" -c 'import tensorflow as tf, keras; print("tensorflow", tf.__version__, "keras", keras.__version__)' 2>/dev/null | tail -n1))"
