#!/usr/bin/env bash
# Create (or reuse) a virtual environment and install the harness into it.
#   bash scripts/install.sh [VENV_DIR]      (default: .venv)
# torch/torchvision are pinned to the builds this project is tested with;
# sam2 is built without its optional CUDA extension and without build
# isolation (an isolated build would download a second torch).
set -euo pipefail
VENV="${1:-.venv}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
cd "$(dirname "$0")/.."
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip setuptools wheel
"$VENV/bin/python" -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
SAM2_BUILD_CUDA=0 "$VENV/bin/python" -m pip install -q --no-build-isolation -e ".[test]"
echo "installed into $VENV"
