#!/usr/bin/env bash
# Backbone fwd+bwd of cached vs plain PVT-S under GRC_COMPILE / GRC_SDPA_* variants (one run).
set -e
OUT_DIR=${1:?out dir}; mkdir -p "$OUT_DIR"
C=configs/cached_pvt/mask-rcnn_cached-pvt-s_fpn_1x_coco.py
run() { # label, env...
  local label=$1; shift
  echo "### $label ($*)"
  env "$@" python3 tools/analysis_tools/benchmark.py $C --device cuda --dtype ${DT:-fp16} \
    --shape 800 1333 --batch 2 --warmup 3 --reps ${REPS:-6} --parts backbone-train \
    --out-dir /tmp/v_$label 2>&1 | grep -A3 "^part" | tail -2
  cp /tmp/v_$label/benchmark.json "$OUT_DIR/$label.json" 2>/dev/null || true
}
run base X=1
run cache_math GRC_SDPA_CACHE=math
run cache_eff GRC_SDPA_CACHE=efficient
run self_flash GRC_SDPA_SELF=flash
run compile GRC_COMPILE=1
run compile_cmath_sflash GRC_COMPILE=1 GRC_SDPA_CACHE=math GRC_SDPA_SELF=flash
