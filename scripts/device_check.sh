#!/usr/bin/env bash
# The GPU checks of docs/scaling.md in one go (about 5 minutes on one GPU):
#   1. the full-size path end to end on the sample fixtures (each sample domain's test images,
#      repeated REPEAT times under new names by python -m scenarios.repeat, also used for training):
#      SAM ViT-B and SAM2.1 Hiera-T at 1024 px with random weights, fp32 and bf16, SAM ViT-B with
#      each attention path (official, sdpa; SAM2's own attention is already SDPA), then images per
#      second of training and evaluation (run_benchmark.py throughput on OUT_DIR/records_<path>:
#      the attention path is not part of the run id, so each path's records get their own folder);
#   2. the CUDA tests: bf16 / channels-last records against fp32, SAM2.1 at 1024 in bf16 +
#      channels-last, torchrun with nccl, a run with each attention path;
#   3. SAMCL at 1024 px (SAM ViT-B, random weights): training step and routed prediction,
#      fp32 / bf16 / bf16 + channels-last at batch 1, bf16 at batch 8 (scripts/bench_samcl_speed.py),
#      each with the official and the sdpa attention; one ViT-B block, official vs sdpa attention,
#      fp32 and bf16 (scripts/bench_attention.py).
#
#   bash scripts/device_check.sh OUT_DIR [SAMPLES_DIR]
#
# SAMPLES_DIR holds Kvasir/test and ISIC/test in the folder format (default
# ../shared/fixtures/samcl_samples). PY (default python3) must import the project's requirements;
# where they are missing and pip cannot reach an index, make wheels with
# scripts/fetch_device_wheels.sh, carry .whl/ and set WHEELS=.whl. DEVICE (default cuda),
# BACKBONES (default "sam_vit_b sam2.1_hiera_t"), EPOCHS (default 5), REPEAT (default 8) and
# SKIP_SPEED=1 (step 3 times SAM ViT-B, minutes on a CPU) exist for dry runs on a CPU
# (DEVICE=cpu BACKBONES=sam_small REPEAT=1 SKIP_SPEED=1 ...). Each step's output goes to
# OUT_DIR/<step>.log; a failing step does not stop the others, and the exit status is the number
# of failed steps.
set -uo pipefail
BACKBONES=${BACKBONES:-sam_vit_b sam2.1_hiera_t}
EPOCHS=${EPOCHS:-5}
source "$(dirname "$0")/device_common.sh"

failed=0
step() {  # step NAME COMMAND...: run, log to $OUT/NAME.log, report status and seconds
  local name=$1; shift
  local t0=$SECONDS
  echo "== $name: $*"
  "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$OUT/$name.log"
  echo "== $name: exit $rc in $((SECONDS - t0)) s"
  [ $rc -eq 0 ] || failed=$((failed + 1))
}

step env bash -c "nvidia-smi -L 2>/dev/null; $PY -c 'import sys, torch, segment_anything, sam2, avalanche, peft; \
print(sys.version.split()[0], \"torch\", torch.__version__, \"cuda\", torch.version.cuda, \
torch.cuda.get_device_name(0) if torch.cuda.is_available() else \"no GPU\")'"

attention_paths_of() {  # attention_paths_of BACKBONE: the paths to time (SAM2 has only its own, SDPA)
  case "$1" in sam2*) echo sdpa ;; *) echo official sdpa ;; esac
}
for BACKBONE in $BACKBONES; do
  SIZE=$(image_size_of "$BACKBONE")
  for attention in $(attention_paths_of "$BACKBONE"); do
    for precision in fp32 bf16; do
      step "full_${BACKBONE}_${precision}_$attention" "$PY" run_benchmark.py --stream "$STREAM" \
          --backbone "$BACKBONE" --set stream_overrides.image_size="$SIZE" \
          --checkpoint none --device "$DEVICE" --methods samcl,lora,finetune_decoder \
          --output "$OUT/records_$attention" --set cache_dir="$OUT/cache" --set hparams.epochs="$EPOCHS" \
          --set hparams.batch_size=4 --set precision=$precision --set attention=$attention \
          --no-progress --no-report
    done
  done
done
for attention in official sdpa; do
  [ -d "$OUT/records_$attention" ] && step "throughput_$attention" "$PY" run_benchmark.py throughput \
      "$OUT/records_$attention" --markdown
done

marks=(); [ "$DEVICE" = cpu ] && marks=(-m "not slow")  # a CPU dry run leaves the slow ones out
step tests "$PY" -m pytest -q -p no:cacheprovider tests/e2e/test_precision_runs.py tests/e2e/test_torchrun.py \
    -k "cuda or sam2 or nccl or sdpa" "${marks[@]}"

for opts in "" "--precision bf16" "--precision bf16 --channels-last" "--precision bf16 --batch-size 8"; do
  [ -z "${SKIP_SPEED:-}" ] || break
  for attention in official sdpa; do
    tag=$(echo "speed $opts $attention" | tr -s ' -' '_' | sed 's/_$//')
    step "$tag" "$PY" scripts/bench_samcl_speed.py --device "$DEVICE" --iters 20 --attention $attention $opts
  done
done
for dtype in fp32 bf16; do
  [ -z "${SKIP_SPEED:-}" ] || break
  step "attention_$dtype" "$PY" scripts/bench_attention.py --device "$DEVICE" --iters 20 --warmup 3 --dtype $dtype
done
rm -rf "$OUT/cache" "$SAMPLE_COPY"
echo "== $failed step(s) failed; logs in $OUT"
exit $failed
