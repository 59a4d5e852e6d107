#!/usr/bin/env bash
# Data-loading workers on a GPU: SAMCL and LoRA through the harness at 1024 px (random weights) on
# the sample fixtures (each image repeated 8 times; the test images double as training images),
# with num_workers 0 (loading inline, between steps) and 4 (worker processes), in fp32, then 4 in
# bf16; images per second of training and evaluation from run_benchmark.py throughput.
#
#   bash scripts/bench_loader_workers.sh OUT_DIR [SAMPLES_DIR]
#
# BACKBONE (default sam_vit_b) and EPOCHS (default 3); PY, DEVICE, REPEAT and WHEELS as in
# scripts/device_check.sh (scripts/device_common.sh); DEVICE=cpu BACKBONE=sam_small for a dry run.
set -euo pipefail
BACKBONE=${BACKBONE:-sam_vit_b}
EPOCHS=${EPOCHS:-3}
source "$(dirname "$0")/device_common.sh"
SIZE=$(image_size_of "$BACKBONE")
for case in "fp32 0" "fp32 4" "bf16 4"; do
  set -- $case
  echo "== precision $1, num_workers $2"
  "$PY" run_benchmark.py --stream "$STREAM" --set stream_overrides.image_size="$SIZE" \
      --backbone "$BACKBONE" --checkpoint none \
      --device "$DEVICE" --methods samcl,lora --output "$OUT/records_$1_workers_$2" \
      --set cache_dir="$OUT/cache" --set hparams.epochs="$EPOCHS" --set hparams.batch_size=4 \
      --set precision="$1" --set num_workers="$2" --no-progress --no-report
  "$PY" run_benchmark.py throughput "$OUT/records_$1_workers_$2" --markdown
done
rm -rf "$OUT/cache" "$SAMPLE_COPY"
