#!/usr/bin/env bash
# Reproduces the shipped segmentation weights weights/pac_fcn8s_vgg16_crf.*, the default of
# `densepac segment` when no --model or --weights is given: an FCN-8s at small VGG16 widths on
# the 6-class procedural scenes (the classes of datasets/samples/seg_scene.png), trained from
# scratch, then hot-swapped (its recipe's convolutions become PAC layers keeping their
# weights) and fine-tuned with a PAC-CRF, as in the PAC paper's second stage.
# About 25 minutes on a 2-core CPU (stage 1 of 1500 steps, stage 2 of 500).
#
#   bash scripts/train_segmentation.sh
#
# Environment: DEVICE (cpu), RUNS (runs), OUT (weights), DENSEPAC (densepac).
set -euo pipefail
DEVICE=${DEVICE:-cpu}
RUNS=${RUNS:-runs}
OUT=${OUT:-weights}
DENSEPAC=${DENSEPAC:-densepac}
read -r -a CMD <<< "$DENSEPAC"
COMMON=(--model fcn8s_vgg16 --arg 'widths=[16,32,64,128,128]' --arg fc_channels=256 --num-classes 6
  --data synthetic --train-size 2000 --val-size 30 --batch-size 8 --crop 128 --scene-size 160
  --seed 0 --device "$DEVICE")

"${CMD[@]}" finetune "${COMMON[@]}" --epochs 6 --lr 1e-3 --out "$RUNS/seg_fcn"
"${CMD[@]}" finetune "${COMMON[@]}" --epochs 2 --lr 1e-4 --crf-lr 1e-3 \
  --weights "$RUNS/seg_fcn" --hot-swap --crf --out "$RUNS/seg_fcn_pac" --export "$OUT"
# Mark it as the default of `densepac segment`.
python - "$OUT/pac_fcn8s_vgg16_crf.json" <<'PY'
import json
import sys

card = json.load(open(sys.argv[1]))
card["default"] = True
open(sys.argv[1], "w").write(json.dumps(card, indent=2, sort_keys=True) + "\n")
PY
