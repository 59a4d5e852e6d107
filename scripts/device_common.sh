# Sourced by the GPU check scripts (device_check.sh, bench_loader_workers.sh); not run on its own.
# Reads "$@" (OUT_DIR [SAMPLES_DIR]) and the environment: PY (default python3), DEVICE (default
# cuda), REPEAT (default 8), WHEELS (a folder of wheels to install first, see
# scripts/fetch_device_wheels.sh). Sets OUT, SAMPLES, SAMPLE_COPY and STREAM, enters the
# repository's root, and writes the sample fixtures with each image repeated REPEAT times (so that
# an epoch holds enough batches for a rate) plus a stream YAML over them (python -m scenarios.repeat).
OUT=${1:?usage: bash $0 OUT_DIR [SAMPLES_DIR]}
SAMPLES=$(realpath "${2:-../shared/fixtures/samcl_samples}")
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
REPEAT=${REPEAT:-8}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
OUT=$(realpath "$OUT")
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ -n "${WHEELS:-}" ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/device_site "$WHEELS"/*.whl || { echo "error: installing $WHEELS/*.whl failed"; exit 99; }
  export PYTHONPATH=/tmp/device_site${PYTHONPATH:+:$PYTHONPATH}
fi
for d in Kvasir ISIC; do
  [ -d "$SAMPLES/$d/test/images" ] || { echo "error: $SAMPLES/$d/test/images not found"; exit 98; }
done
SAMPLE_COPY="$OUT/samples"
STREAM="$OUT/samples_stream.yaml"
rm -rf "$SAMPLE_COPY"
"$PY" -m scenarios.repeat "$SAMPLES" "$SAMPLE_COPY" "$REPEAT" --stream "$STREAM" || exit 97

image_size_of() {  # image_size_of BACKBONE: the backbone's input size in pixels
  [ "$1" = sam_small ] && echo 256 || echo 1024
}
