"""bf16 autocast for whole MMDet detectors.

mmcv 2.1.0's ``nms`` and ``RoIAlign`` kernels (CPU and CUDA) have no bfloat16
version ("expected scalar type Float but found BFloat16"), so a two-stage
detector fails under ``torch.autocast(dtype=torch.bfloat16)``. These wrappers
run exactly those two ops in float32 when they get bfloat16 inputs and return
results in the input dtype (RoIAlign) or float32 (nms, whose scores are
post-processed in float32 anyway). float32 and float16 inputs take the
original path unchanged. Installed by ``import grc_mmdet``.
"""
import functools
import importlib

import torch

_BF16 = torch.bfloat16


def _nms_fp32(nms):
    @functools.wraps(nms)
    def wrapper(boxes, scores, *args, **kwargs):
        if torch.is_tensor(boxes) and (boxes.dtype == _BF16 or scores.dtype == _BF16):
            boxes, scores = boxes.float(), scores.float()
        return nms(boxes, scores, *args, **kwargs)
    wrapper._grc_bf16 = True
    return wrapper


def _roi_align_forward_fp32(forward):
    @functools.wraps(forward)
    def wrapper(self, input, rois):
        if input.dtype == _BF16 or rois.dtype == _BF16:
            with torch.autocast(device_type=input.device.type, enabled=False):
                return forward(self, input.float(), rois.float()).to(input.dtype)
        return forward(self, input, rois)
    wrapper._grc_bf16 = True
    return wrapper


def install() -> None:
    """Idempotent."""
    nms_mod = importlib.import_module('mmcv.ops.nms')
    ops = importlib.import_module('mmcv.ops')
    roi_mod = importlib.import_module('mmcv.ops.roi_align')
    if not getattr(nms_mod.nms, '_grc_bf16', False):
        nms_mod.nms = _nms_fp32(nms_mod.nms)
        ops.nms = nms_mod.nms
    if not getattr(roi_mod.RoIAlign.forward, '_grc_bf16', False):
        roi_mod.RoIAlign.forward = _roi_align_forward_fp32(roi_mod.RoIAlign.forward)
