#!/usr/bin/env bash
# The GPU checks of docs/scaling.md in one call, the most wanted first, so that a call cut short by
# its time limit still leaves the first tables (each step's output goes to OUT_DIR/<step>.log as it
# runs; the device tool brings OUT_DIR back even after a timeout):
#   1. env: the GPU, torch and the packages;
#   2. attention: one SAM ViT-B block on 64x64 tokens, official vs sdpa vs folded, fp32 and bf16
#      (scripts/bench_attention.py);
#   3. the harness on SAM ViT-B at 1024 px (random weights) over the sample images, each repeated
#      REPEAT times (python -m scenarios.repeat; each domain's test images also its training set):
#      samcl, lora and finetune_decoder the old way (attention official, fp32, float32 cache, batch
#      4) and the new way (attention folded, bf16, bfloat16 cache, prefetch 2, batch BATCH,
#      evaluation batch 2 x BATCH); one `run_benchmark.py throughput` table over both (images/s,
#      paper-protocol minutes);
#   4. SAMCL against the reference's way in one run (scripts/bench_samcl_speed.py
#      --reference-as-released: the reference's training from the image and its routed prediction
#      in fp32 with the official attention, one image at a time, against ours from the block-6
#      cache), ours new (folded, bf16, batch BATCH) and old (official, fp32, batch 1);
#   5. the harness on SAM2.1 Hiera-T at 1024 px, old and new as in 3 (its attention is SDPA already);
#   6. compile: lora and samcl on SAM ViT-B the new way with compile=true, one process each
#      (compilation takes minutes, hence late), and the SAM ViT-B table again with them;
#   7. the CUDA tests: prefetching on a side stream, bf16 / channels-last records against fp32, SAM2.1
#      at 1024, torchrun with nccl, the attention paths in whole runs.
#
#   bash scripts/device_check.sh OUT_DIR [SAMPLES_DIR]
#
# SAMPLES_DIR holds Kvasir/test and ISIC/test in the folder format (default
# ../shared/fixtures/samcl_samples). PY (default python3) must import the project's requirements;
# where they are missing and pip cannot reach an index, make wheels with
# scripts/fetch_device_wheels.sh, carry .whl/ and set WHEELS=.whl. DEVICE (default cuda), EPOCHS
# (default 3), REPEAT (default 8), BATCH (default 16), STEPS (default "env attention vit_b speed
# hiera_t compile tests": the steps to run) and VIT_B / HIERA_T (the backbones of steps 3 and 5) exist for
# dry runs on a CPU (DEVICE=cpu VIT_B=sam_small HIERA_T=sam_small REPEAT=1 STEPS="env vit_b" ...).
# BUDGET (seconds, default 0 = none) bounds the whole script: a step is stopped when the budget runs
# out and the later ones are skipped, so that a command after the script (packing OUT_DIR) still runs
# inside the device tool's time limit. A failing step does not stop the others; the exit status is
# the number of failed steps (a stopped one counts as failed).
set -uo pipefail
EPOCHS=${EPOCHS:-3}
BATCH=${BATCH:-16}
STEPS=${STEPS:-env attention vit_b speed hiera_t compile tests}
BUDGET=${BUDGET:-0}
VIT_B=${VIT_B:-sam_vit_b}
HIERA_T=${HIERA_T:-sam2.1_hiera_t}
source "$(dirname "$0")/device_common.sh"

failed=0 skipped=0
step() {  # step NAME COMMAND...: run within what is left of BUDGET, log to $OUT/NAME.log, report
  local name=$1; shift
  local t0=$SECONDS left=$((BUDGET > 0 ? BUDGET - SECONDS : 86400))
  if [ $left -lt 15 ]; then
    echo "== $name: skipped, the budget of $BUDGET s is spent"; skipped=$((skipped + 1)); return
  fi
  echo "== $name: $*"
  timeout -k 10 $left "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 30 "$OUT/$name.log"
  [ $rc -eq 124 ] && echo "== $name: stopped at the budget of $BUDGET s"
  echo "== $name: exit $rc in $((SECONDS - t0)) s"
  [ $rc -eq 0 ] || failed=$((failed + 1))
}
wanted() { [[ " $STEPS " == *" $1 "* ]]; }

OLD=(--set attention=official --set precision=fp32 --set cache_dtype=float32 --set hparams.batch_size=4)
NEW=(--set attention=folded --set precision=bf16 --set cache_dtype=bfloat16 --set prefetch=2
     --set hparams.batch_size="$BATCH" --set hparams.eval_batch_size=$((2 * BATCH)))
harness() {  # harness NAME BACKBONE METHODS OPTIONS...: one run_benchmark.py call into $OUT/records_BACKBONE
  local name=$1 backbone=$2 methods=$3; shift 3
  step "$name" "$PY" run_benchmark.py --stream "$STREAM" --backbone "$backbone" \
      --set stream_overrides.image_size="$(image_size_of "$backbone")" --checkpoint none \
      --device "$DEVICE" --methods "$methods" --output "$OUT/records_$backbone" \
      --set cache_dir="$OUT/cache" --set hparams.epochs="$EPOCHS" --no-progress --no-report "$@"
}

wanted env && step env bash -c "nvidia-smi -L 2>/dev/null; $PY -c 'import sys, torch, segment_anything, \
sam2, avalanche, peft; print(sys.version.split()[0], \"torch\", torch.__version__, \"cuda\", torch.version.cuda, \
torch.cuda.get_device_name(0) if torch.cuda.is_available() else \"no GPU\")'"
for dtype in bf16 fp32; do
  wanted attention && step "attention_$dtype" "$PY" scripts/bench_attention.py --device "$DEVICE" \
      --iters 20 --warmup 3 --dtype $dtype
done
if wanted vit_b; then
  harness vit_b_old "$VIT_B" samcl,lora,finetune_decoder "${OLD[@]}"
  harness vit_b_new "$VIT_B" samcl,lora,finetune_decoder "${NEW[@]}"
  step vit_b_throughput "$PY" run_benchmark.py throughput "$OUT/records_$VIT_B" --markdown
fi
if wanted speed; then
  step speed_new "$PY" scripts/bench_samcl_speed.py --device "$DEVICE" --iters 10 --attention folded \
      --precision bf16 --batch-size "$BATCH" --reference-as-released
  step speed_old "$PY" scripts/bench_samcl_speed.py --device "$DEVICE" --iters 10 --attention official \
      --reference-as-released
fi
if wanted hiera_t; then
  harness hiera_t_old "$HIERA_T" samcl,lora,finetune_decoder "${OLD[@]}"
  harness hiera_t_new "$HIERA_T" samcl,lora,finetune_decoder "${NEW[@]}"
  step hiera_t_throughput "$PY" run_benchmark.py throughput "$OUT/records_$HIERA_T" --markdown
fi
if wanted compile; then
  for method in lora samcl; do  # one process each: a crash in one compiled run keeps the other's record
    harness "vit_b_compiled_$method" "$VIT_B" $method "${NEW[@]}" --set compile=true
  done
  step vit_b_throughput_compiled "$PY" run_benchmark.py throughput "$OUT/records_$VIT_B" --markdown
fi
marks=(); [ "$DEVICE" = cpu ] && marks=(-m "not slow")  # a CPU dry run leaves the slow ones out
wanted tests && step tests "$PY" -m pytest -q -p no:cacheprovider tests/scenarios/test_prefetch.py \
    tests/e2e/test_determinism.py tests/e2e/test_precision_runs.py tests/e2e/test_torchrun.py \
    -k "cuda or sam2 or nccl or attention_runs" "${marks[@]}"
rm -rf "$OUT/cache" "$SAMPLE_COPY"
echo "== $failed step(s) failed, $skipped skipped; logs in $OUT ($SECONDS s)"
exit $failed
