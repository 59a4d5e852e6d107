#!/usr/bin/env bash
# Data-loading workers on a GPU: SAMCL and LoRA through the harness at 1024 px (random weights) on
# the sample fixtures (each image repeated 8 times; the test images double as training images),
# with num_workers 0 (loading inline, between steps) and 4 (worker processes), in fp32, then 4 in
# bf16; images per second of training and evaluation from scripts/throughput.py.
#
#   bash scripts/bench_loader_workers.sh OUT_DIR [SAMPLES_DIR]
#
# BACKBONE (default sam_vit_b), DEVICE (default cuda), EPOCHS (default 3), REPEAT (default 8) and
# PY (default python3) as in scripts/device_check.sh; DEVICE=cpu BACKBONE=sam_small for a dry run.
set -euo pipefail
OUT=${1:?usage: bash scripts/bench_loader_workers.sh OUT_DIR [SAMPLES_DIR]}
SAMPLES=$(realpath "${2:-../shared/fixtures/samcl_samples}")
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
BACKBONE=${BACKBONE:-sam_vit_b}
EPOCHS=${EPOCHS:-3}
REPEAT=${REPEAT:-8}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
OUT=$(realpath "$OUT")
cd "$(dirname "$0")/.."

rm -rf "$OUT/samples"
"$PY" scripts/repeat_samples.py "$SAMPLES" "$OUT/samples" "$REPEAT" --stream "$OUT/stream.yaml"
SIZE=$([ "$BACKBONE" = sam_small ] && echo 256 || echo 1024)
for case in "fp32 0" "fp32 4" "bf16 4"; do
  set -- $case
  echo "== precision $1, num_workers $2"
  "$PY" run_benchmark.py --stream "$OUT/stream.yaml" --set stream_overrides.image_size="$SIZE" \
      --backbone "$BACKBONE" --checkpoint none \
      --device "$DEVICE" --methods samcl,lora --output "$OUT/records_$1_workers_$2" \
      --set cache_dir="$OUT/cache" --set hparams.epochs="$EPOCHS" --set hparams.batch_size=4 \
      --set precision="$1" --set num_workers="$2" --no-progress --no-report
  "$PY" scripts/throughput.py "$OUT/records_$1_workers_$2" --markdown
done
rm -rf "$OUT/cache" "$OUT/samples"
