#!/usr/bin/env bash
# Set up a virtual environment for grc-mmdet: torch, mmcv (built from source
# with ops), mmengine, mmdet, pycocotools, pytest, and this project (editable).
#
#   bash tools/setup_env.sh            # creates/updates ./.venv
#   GRC_VENV=/path/to/venv bash tools/setup_env.sh
#
# Torch: if the Python that runs this script already has torch (for example a
# CUDA build on a GPU machine), the venv is created with
# --system-site-packages and that torch is kept. Otherwise torch==2.13.0 is
# installed (on the project's CPU machines a CPU wheel lies on disk).
# Re-running is fast: every step is skipped or satisfied from pip's wheel
# cache, so mmcv is not rebuilt.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${GRC_VENV:-$ROOT/.venv}"
BASE_PY="${PYTHON:-python3}"
TORCH_VERSION="${GRC_TORCH_VERSION:-2.13.0}"
STEP="start"

trap 'rc=$?; if [ $rc -ne 0 ]; then echo "[setup] FAILED at step \"$STEP\" (exit $rc); see the output above for why." >&2; fi' EXIT

step() { STEP="$1"; echo "[setup] $(date +%H:%M:%S) $1"; }

step "check python"
"$BASE_PY" -c 'import sys; assert sys.version_info >= (3, 8), sys.version' \
  || { echo "[setup] Python >= 3.8 is required ($BASE_PY)" >&2; exit 1; }

step "create virtual environment at $VENV"
if [ ! -x "$VENV/bin/python" ]; then
  if "$BASE_PY" -c 'import torch' 2>/dev/null; then
    echo "[setup] $BASE_PY already has torch $("$BASE_PY" -c 'import torch; print(torch.__version__)'); keeping it (--system-site-packages)"
    "$BASE_PY" -m venv --system-site-packages "$VENV"
  else
    "$BASE_PY" -m venv "$VENV"
  fi
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --disable-pip-version-check)

step "install build tools (setuptools>=77,<81, wheel, ninja)"
"${PIP[@]}" -q 'setuptools>=77,<81' wheel 'ninja==1.13.0'

step "install torch"
if "$PY" -c 'import torch' 2>/dev/null; then
  echo "[setup] torch $("$PY" -c 'import torch; print(torch.__version__)') already present"
else
  "${PIP[@]}" -q "torch==$TORCH_VERSION"
fi

step "build mmcv==2.1.0 with ops (first time ~15 min on 2 cores; cached afterwards)"
if "$PY" -c 'import mmcv, mmcv.ops, sys; sys.exit(mmcv.__version__ != "2.1.0")' 2>/dev/null; then
  echo "[setup] mmcv 2.1.0 with ops already installed"
else
  MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" "${PIP[@]}" --no-build-isolation 'mmcv==2.1.0'
fi

step "install mmengine, mmdet, pycocotools, pytest and the project (editable)"
"${PIP[@]}" -q -r "$ROOT/requirements.txt"
step "install MMDetection's stock-tool extras (requirements/optional.txt: psutil, seaborn)"
"${PIP[@]}" -q -r "$ROOT/requirements/optional.txt"
"${PIP[@]}" -q --no-build-isolation --no-deps -e "$ROOT"

step "verify imports"
"$PY" - <<'PYEOF'
import torch, mmcv, mmcv.ops, mmengine, mmdet, pycocotools, grc_mmdet
print(f"[setup] torch {torch.__version__} (cuda={torch.cuda.is_available()}), "
      f"mmcv {mmcv.__version__}, mmengine {mmengine.__version__}, mmdet {mmdet.__version__}, "
      f"grc_mmdet {grc_mmdet.__version__}")
PYEOF
STEP="done"
echo "[setup] ready: $VENV"
