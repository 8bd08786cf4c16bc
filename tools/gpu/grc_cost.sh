#!/usr/bin/env bash
# The cost of GRC alone on GPU: cached PVT-S vs the same backbone with no GRC
# layer (cache_stages=[], same SDPA kernels), batch 2 and 8, fp16.
OUT_DIR=${1:?out dir}; mkdir -p "$OUT_DIR"
C=configs/cached_pvt/mask-rcnn_cached-pvt-s_fpn_1x_coco.py
B() { timeout 150 python3 tools/analysis_tools/benchmark.py $C --plain-sdpa "$@" --device cuda \
  --shape 800 1333 --warmup 3 --reps 8 --out-dir /tmp/b 2>&1 | grep -B1 -A4 "^part" | grep -v "^--"; \
  python3 -c "import json;print(json.dumps(json.load(open('/tmp/b/benchmark.json'))))" >> "$OUT_DIR/bench_sdpa.jsonl"; }
B --dtype fp16 --batch 2 --parts backbone-train detector-infer detector-train
B --dtype fp16 --batch 8 --parts backbone-train detector-train
B --dtype fp32 --batch 2 --parts backbone-train
