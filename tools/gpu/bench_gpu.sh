#!/usr/bin/env bash
# Cached-vs-plain GPU benchmarks of docs/benchmarks.md, one JSON + log each in OUT_DIR.
#   bash tools/gpu/bench_gpu.sh OUT_DIR [set]   set: pvts (default) | backbones | all
# Run after `source tools/gpu/device_env.sh`.
set -e
OUT_DIR=${1:?out dir}
SET=${2:-pvts}
REPS=${REPS:-10}
mkdir -p "$OUT_DIR"
bench() { # name config dtype parts...
  local name=$1 cfg=$2 dtype=$3; shift 3
  python3 tools/analysis_tools/benchmark.py "$cfg" --device cuda --dtype "$dtype" \
    --shape 800 1333 --batch 2 --warmup 3 --reps "$REPS" --parts "$@" --out-dir "/tmp/b_$name" \
    2>&1 | grep -v "^\s*$" | tail -8
  cat "/tmp/b_$name/benchmark.json" | python3 -c 'import json,sys;print(json.dumps(json.load(sys.stdin)))' >> "$OUT_DIR/bench_$SET.jsonl"
}
C=configs/cached_pvt
if [ "$SET" = pvts ] || [ "$SET" = all ]; then
  for dt in fp16 fp32; do
    bench "mrcnn-pvt-s-$dt" $C/mask-rcnn_cached-pvt-s_fpn_1x_coco.py $dt \
      backbone-train detector-infer detector-train
  done
fi
if [ "$SET" = backbones ] || [ "$SET" = all ]; then
  for s in t s m; do for dt in fp16 fp32; do
    bench "pvt-$s-$dt" $C/mask-rcnn_cached-pvt-${s}_fpn_1x_coco.py $dt backbone-train
  done; done
fi
