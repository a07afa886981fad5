#!/usr/bin/env bash
# Reproduces the shipped depth weights in weights/: the paper's pac_jointupsample and our
# pac_learned_jbu (joint bilateral upsampling with learned kernel features) and
# pac_jointupsample_jbu (refines joint bilateral upsampling) at x4, x8, x16, trained on
# procedural RGB-D scenes, then marks the lowest validation RMSE as the `densepac upsample`
# default for each scale.
#
#   bash scripts/train_depth.sh                 # sequential, CPU or GPU (auto)
#   PARALLEL=1 DEVICE=cuda WORKERS=2 bash scripts/train_depth.sh   # all runs at once on one GPU
#
# Environment: ARCHS ("pac_learned_jbu pac_jointupsample_jbu pac_jointupsample"), LOSS (l1),
# LR (1e-3), EXTRA (more `densepac train` flags, e.g. "--arg radius=3"), DEVICE (auto),
# EPOCHS (12), TRAIN_SIZE (2000 scenes/epoch), BATCH (16),
# CROP (128), VAL_SIZE (50), WORKERS (2), SCALES ("4 8 16"), TIME_LIMIT (seconds per run,
# 0 = none; a stopped run exports its best validated checkpoint), OUT (weights), RUNS
# (runs), DENSEPAC (densepac).
# The shipped weights were made on a 2-core CPU (no GPU was available) with
#   ARCHS="pac_jointupsample_jbu pac_jointupsample" EPOCHS=4 TRAIN_SIZE=800 BATCH=8 CROP=96 \
#     VAL_SIZE=30 WORKERS=0 SCALES="8 4 16" DEVICE=cpu
# and, for pac_learned_jbu, with 7x7 neighbouring samples (which beat 5x5 on validation at
# every scale), runs side by side (OMP_NUM_THREADS=1 each):
#   ARCHS=pac_learned_jbu LOSS=l2 LR=2e-3 EPOCHS=12 TRAIN_SIZE=2000 BATCH=8 CROP=96 VAL_SIZE=30 \
#     WORKERS=0 SCALES=4 EXTRA="--arg radius=3" DEVICE=cpu          (and SCALES=8)
#   ARCHS=pac_learned_jbu LOSS=l2 LR=2e-3 EPOCHS=8 TRAIN_SIZE=2000 BATCH=8 CROP=128 VAL_SIZE=30 \
#     WORKERS=0 SCALES=16 EXTRA="--arg radius=3" DEVICE=cpu
# Each model card's "command" field holds the exact command of its run.
set -euo pipefail
ARCHS=${ARCHS:-pac_learned_jbu pac_jointupsample_jbu pac_jointupsample}
LOSS=${LOSS:-l1}
LR=${LR:-1e-3}
read -r -a EXTRA_ARGS <<< "${EXTRA:-}"
DEVICE=${DEVICE:-auto}
EPOCHS=${EPOCHS:-12}
TRAIN_SIZE=${TRAIN_SIZE:-2000}
BATCH=${BATCH:-16}
CROP=${CROP:-128}
VAL_SIZE=${VAL_SIZE:-50}
SCALES=${SCALES:-4 8 16}
WORKERS=${WORKERS:-2}
TIME_LIMIT=${TIME_LIMIT:-0}
OUT=${OUT:-weights}
RUNS=${RUNS:-runs}
DENSEPAC=${DENSEPAC:-densepac}
read -r -a CMD <<< "$DENSEPAC"

train_one() {
  local name=$1
  local limit=()
  [ "$TIME_LIMIT" != 0 ] && limit=(timeout -s INT "$TIME_LIMIT")
  "${limit[@]}" "${CMD[@]}" train --model "$name" --epochs "$EPOCHS" --train-size "$TRAIN_SIZE" \
    --batch-size "$BATCH" --lr "$LR" --loss "$LOSS" --crop "$CROP" --val-size "$VAL_SIZE" --holes 0.02 --workers "$WORKERS" --seed 0 \
    --device "$DEVICE" --out "$RUNS/$name" --export "$OUT" "${EXTRA_ARGS[@]}" > "$RUNS/$name.log" 2>&1 \
    || { echo "training $name failed, see $RUNS/$name.log" >&2; return 1; }
  echo "trained $name" >&2
}

mkdir -p "$RUNS" "$OUT"
pids=()
for s in $SCALES; do
  for arch in $ARCHS; do
    if [ "${PARALLEL:-0}" = 1 ]; then
      train_one "${arch}_x$s" & pids+=($!)
    else
      train_one "${arch}_x$s"
    fi
  done
done
for pid in "${pids[@]}"; do wait "$pid"; done
python scripts/pick_default_depth.py "$OUT"
