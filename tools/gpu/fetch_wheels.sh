#!/usr/bin/env bash
# Download, on a machine with PyPI, what tools/gpu/device_env.sh installs on an
# offline cp312 GPU machine: pure-Python/cp312 wheels and the mmcv 2.1.0 sdist.
set -e
DEST=${1:-.gpu_wheels}
mkdir -p "$DEST"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any -d "$DEST" \
  mmengine==0.10.7 mmdet==3.3.0 pycocotools==2.0.11 shapely==2.2.0 addict==2.4.0 yapf==0.43.0 \
  terminaltables==3.1.10 termcolor==3.3.0 platformdirs rich markdown-it-py mdurl pygments \
  pyyaml six setuptools==80.9.0
url=$(curl -s https://pypi.org/simple/mmcv/ | grep -o 'https://[^"#]*mmcv-2.1.0.tar.gz' | head -1)
curl -sSL -o "$DEST/mmcv-2.1.0.tar.gz" "$url"
ls "$DEST"
