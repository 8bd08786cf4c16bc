"""Parameters and FLOPs with MMEngine's analyser, including the attention
matmuls inside ``F.scaled_dot_product_attention`` (hook-based counters and
MMEngine's default handles miss them). :func:`install` (run by ``import
grc_mmdet``) adds the SDPA handle to MMEngine's default handles, so every
``FlopAnalyzer``, and MMDetection's stock ``tools/analysis_tools/get_flops.py``
with ``custom_imports``, counts it too.

FLOPs follow MMEngine/fvcore: one multiply-add counts as one FLOP.
"""
from typing import Any, Dict, List

import torch
from mmengine.analysis import FlopAnalyzer, parameter_count
from mmengine.analysis.jit_handles import get_shape

SDPA_OPS = ('aten::scaled_dot_product_attention',
            'aten::_scaled_dot_product_flash_attention_for_cpu',
            'aten::_scaled_dot_product_efficient_attention',
            'aten::_scaled_dot_product_flash_attention')


def sdpa_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """q (..., L, E), k (..., S, E), v (..., S, Ev): L*S*E for q k^T plus
    L*S*Ev for the weighted sum, per batch x head."""
    q, k, v = (get_shape(t) for t in inputs[:3])
    batch = 1
    for d in q[:-2]:
        batch *= d
    L, E = q[-2], q[-1]
    S, Ev = k[-2], v[-1]
    return batch * L * S * (E + Ev)


def install() -> None:
    """Add :func:`sdpa_flop_jit` to MMEngine's default FLOP handles, and the
    output size as SDPA's activation count (what ``get_model_complexity_info``
    also reports); idempotent, a handle registered by someone else is kept."""
    from mmengine.analysis import complexity_analysis
    from mmengine.analysis.jit_handles import generic_activation_jit
    for op in SDPA_OPS:
        complexity_analysis._DEFAULT_SUPPORTED_FLOP_OPS.setdefault(op, sdpa_flop_jit)
        complexity_analysis._DEFAULT_SUPPORTED_ACT_OPS.setdefault(op, generic_activation_jit())


def count_complexity(model: torch.nn.Module, inputs) -> Dict[str, int]:
    """{'flops': ..., 'params': ...} of ``model(*inputs)`` (eval, no grad)."""
    if not isinstance(inputs, tuple):
        inputs = (inputs, )
    analyzer = FlopAnalyzer(model, inputs)
    for op in SDPA_OPS:
        analyzer.set_op_handle(op, sdpa_flop_jit)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    with torch.no_grad():
        flops = analyzer.total()
    return dict(flops=int(flops), params=int(parameter_count(model)['']))
