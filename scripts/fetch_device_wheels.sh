#!/usr/bin/env bash
# Wheels of this project's requirements for a GPU machine that has Python 3.12, torch and the
# common scientific stack (numpy, pandas, peft, safetensors, tensorboard, ...) but not the rest,
# and no package index (scripts/device_check.sh installs them with WHEELS=DEST).
#
#   bash scripts/fetch_device_wheels.sh [DEST]        # default .whl (git-ignored)
#
# The list is what importing the harness, every method, both backbone families and Avalanche's
# templates pulls in beyond such a stack (found by blocking imports one by one, then checked by a
# CPU dry run of device_check.sh in a Python 3.11 venv holding only torch and such a stack):
# segment-anything, sam2 with hydra and iopath; avalanche-lib and what it imports at load time,
# wandb included (Avalanche's confusion-matrix metric imports it unconditionally); pysodmetrics for
# the streams that declare the domains' own metrics. Versions are the ones installed in PY's
# environment (the ones the tests ran with). Pure-Python packages are built or fetched as
# py3-none-any wheels here; the two compiled ones are fetched for CPython 3.12 on x86-64 Linux
# (PYVER to change that). 32 wheels, about 26 MB.
set -euo pipefail
DEST=${1:-.whl}
PY=${PY:-.venv/bin/python}
PYVER=${PYVER:-3.12}
PURE="segment-anything sam2 hydra-core omegaconf antlr4-python3-runtime iopath avalanche-lib dill gputil
pytorchcv qpsolvers gdown beautifulsoup4 soupsieve pydantic annotated-types typing-inspection pysodmetrics
platformdirs httpx2 httpcore2 truststore opentelemetry-api opentelemetry-sdk opentelemetry-proto
opentelemetry-semantic-conventions opentelemetry-exporter-otlp-proto-http
opentelemetry-exporter-otlp-proto-common opentelemetry-exporter-otlp-common
opentelemetry-exporter-http-transport"
BINARY="wandb pydantic-core"

pins() {  # NAME... -> NAME==VERSION... as installed in PY's environment
  "$PY" - "$@" <<'EOF'
import importlib.metadata as md, sys
missing = [n for n in sys.argv[1:] if not any(True for _ in md.distributions(name=n))]
if missing:
    sys.exit(f"error: not installed in this environment: {', '.join(missing)}")
print(" ".join(f"{n}=={md.version(n)}" for n in sys.argv[1:]))
EOF
}

mkdir -p "$DEST"
# shellcheck disable=SC2086
SAM2_BUILD_CUDA=0 "$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$DEST" $(pins $PURE)
# shellcheck disable=SC2086
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$DEST" $(pins $BINARY)
echo "$(ls "$DEST"/*.whl | wc -l) wheels, $(du -sh "$DEST" | cut -f1) in $DEST"
