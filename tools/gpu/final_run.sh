#!/usr/bin/env bash
# One device call: (1) 2-GPU NCCL training of the cached nano detector on the
# embedded dataset with bf16 AMP, checking caches agree across ranks; (2) the
# cached-vs-plain benchmark table on GPU 0. Usage: bash tools/gpu/final_run.sh OUT_DIR
OUT_DIR=${1:?out dir}; mkdir -p "$OUT_DIR"
NGPU=$(python3 -c 'import torch; print(torch.cuda.device_count())')
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c 'import torch, mmcv, mmdet, mmengine; print("torch", torch.__version__, "mmcv", mmcv.__version__, "mmdet", mmdet.__version__, "mmengine", mmengine.__version__)'
echo "### 1. training: $NGPU GPU(s), bf16 AMP, GRC Shapes ($(date +%T))"
python3 tools/misc/make_shapes_dataset.py --out /tmp/shapes > /dev/null
C=configs/synthetic/mask-rcnn_cached-pvt-nano_fpn_shapes.py
GRC_SHAPES_ROOT=/tmp/shapes/ PYTHON=python3 timeout 240 bash tools/dist_train.sh $C "$NGPU" \
  --work-dir /tmp/wd --cfg-options optim_wrapper.type=AmpOptimWrapper optim_wrapper.dtype=bfloat16 \
  train_cfg.max_iters=300 train_cfg.val_interval=300 default_hooks.checkpoint.interval=300 \
  param_scheduler.0.end=50 param_scheduler.1.begin=50 param_scheduler.1.end=300 \
  custom_hooks.1.dump_dir=/tmp/wd/caches > "$OUT_DIR/train.log" 2>&1
echo "train exit $?"
grep -E "Iter\(train\)" "$OUT_DIR/train.log" | sed -E 's/.*\[ *([0-9]+)\/300\].* loss: ([0-9.naif]+).*/iter \1 loss \2/' | awk 'NR%3==1'
grep -E "coco/bbox_mAP|segm_mAP" "$OUT_DIR/train.log" | tail -2 | cut -c1-300
python3 - <<'PY'
import glob, torch
import grc_mmdet  # noqa: F401  (safe loading of MMEngine checkpoints)
files = sorted(glob.glob('/tmp/wd/caches/caches_rank*.pth'))
caches = [torch.load(f, weights_only=True) for f in files]
ck = torch.load('/tmp/wd/iter_300.pth', weights_only=True, map_location='cpu')['state_dict']
same = all(torch.equal(c[k].cpu(), caches[0][k].cpu()) for c in caches for k in c)
ckpt = all(torch.equal(ck[k + '.cache'].cpu(), caches[0][k].cpu()) for k in caches[0])
finite = all(torch.isfinite(v).all() for v in ck.values() if v.is_floating_point())
print(f'ranks={len(files)} caches_equal_across_ranks={same} equal_to_checkpoint={ckpt} all_finite={finite}')
PY
echo "### 2. benchmarks ($(date +%T))"
B() { timeout 120 python3 tools/analysis_tools/benchmark.py "$@" --device cuda --shape 800 1333 \
  --warmup 3 --reps 8 --out-dir /tmp/b 2>&1 | grep -B1 -A4 "^part" | grep -v "^--"; \
  python3 -c "import json;print(json.dumps(json.load(open('/tmp/b/benchmark.json'))))" >> "$OUT_DIR/bench.jsonl"; }
CP=configs/cached_pvt
for dt in fp16 fp32 bf16; do
  B $CP/mask-rcnn_cached-pvt-s_fpn_1x_coco.py --dtype $dt --batch 2 --parts backbone-train detector-infer detector-train
done
B $CP/mask-rcnn_cached-pvt-t_fpn_1x_coco.py --dtype fp16 --batch 2 --parts backbone-train
B $CP/mask-rcnn_cached-pvt-m_fpn_1x_coco.py --dtype fp16 --batch 2 --parts backbone-train
B $CP/mask-rcnn_cached-pvt-s_fpn_1x_coco.py --dtype fp16 --batch 8 --parts backbone-train
echo "### done ($(date +%T))"
