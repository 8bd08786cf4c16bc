#!/usr/bin/env bash
# Prepare MMDetection on a GPU machine without internet (the `device` tool's
# H100/H200: Python 3.12, torch 2.11+cu130, nvcc). Source it from the repo root:
#
#   source tools/gpu/device_env.sh        # needs .gpu_wheels/ (see tools/gpu/fetch_wheels.sh)
#
# Installs the carried pure-Python/cp312 wheels into /tmp/site, then mmcv 2.1.0
# with CUDA ops: from carried wheel parts (.gpu_wheels/mmcv_part_*) if present,
# else built from the carried sdist for TORCH_CUDA_ARCH_LIST (default 9.0,
# Hopper; ~5 min on 16 cores). With GRC_SAVE_MMCV=DIR the built wheel is split
# into 15 MB parts in DIR, to carry next time.
set -e
WHEELS=${WHEELS:-.gpu_wheels}
SITE=${SITE:-/tmp/site}
python3 -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$WHEELS"/*.whl
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ! python3 -c 'import mmcv.ops' 2>/dev/null; then
  if ls "$WHEELS"/mmcv_part_* >/dev/null 2>&1; then
    cat "$WHEELS"/mmcv_part_* > /tmp/mmcv-2.1.0-cp312-cp312-linux_x86_64.whl
  else
    echo "[device_env] building mmcv 2.1.0 with CUDA ops ($(date +%T))"
    rm -rf /tmp/mmcv-build && mkdir -p /tmp/mmcv-build && tar xzf "$WHEELS"/mmcv-2.1.0.tar.gz -C /tmp/mmcv-build
    (cd /tmp/mmcv-build/mmcv-2.1.0 && MMCV_WITH_OPS=1 FORCE_CUDA=1 \
      TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16} \
      python3 setup.py -q bdist_wheel -d /tmp/mmcv-dist > /tmp/mmcv-build.log 2>&1) \
      || { tail -40 /tmp/mmcv-build.log; echo "[device_env] mmcv build FAILED"; return 1 2>/dev/null || exit 1; }
    cp /tmp/mmcv-dist/mmcv-*.whl /tmp/mmcv-2.1.0-cp312-cp312-linux_x86_64.whl
    echo "[device_env] mmcv built ($(date +%T))"
    if [ -n "$GRC_SAVE_MMCV" ]; then
      mkdir -p "$GRC_SAVE_MMCV" && split -b 15M -d /tmp/mmcv-2.1.0-cp312-cp312-linux_x86_64.whl "$GRC_SAVE_MMCV/mmcv_part_"
    fi
  fi
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$SITE" /tmp/mmcv-2.1.0-cp312-cp312-linux_x86_64.whl
fi
python3 -c 'import torch, mmcv, mmcv.ops, mmdet, grc_mmdet; print("[device_env] torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(), "mmcv", mmcv.__version__, "mmdet", mmdet.__version__)'
