"""Cached Swin: MMDet's SwinTransformer with GRC-Attention."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from mmdet.models.backbones.swin import ShiftWindowMSA, SwinTransformer
from mmdet.registry import MODELS

from ..grc import GatedRecurrentCache, sdpa
from .cached_base import CachedBackboneMixin, stage_token_grids


class CachedShiftWindowMSA(ShiftWindowMSA):
    """Swin's (shifted) window attention with a global GRC branch.

    Window attention is the parent's (same ``w_msa`` parameters, relative
    position bias and shift mask), computed with
    ``F.scaled_dot_product_attention``. Windows are merged back to the token
    map *before* ``w_msa.proj``; there :class:`GatedRecurrentCache` mixes in
    attention over the whole cache (the cached branch is global), then the
    projection is applied. Projection and window merge are per token, so
    without ``grc`` this equals the parent.
    """

    grc: Optional[GatedRecurrentCache]

    def grc_dims_heads(self) -> Tuple[int, int]:
        return self.w_msa.embed_dims, self.w_msa.num_heads

    def _shift_mask(self, H_pad: int, W_pad: int, device) -> torch.Tensor:
        """(nW, N, N) additive mask of shifted windows, as in the parent."""
        ws, ss = self.window_size, self.shift_size
        img_mask = torch.zeros((1, H_pad, W_pad, 1), device=device)
        slices = (slice(0, -ws), slice(-ws, -ss), slice(-ss, None))
        for cnt, (h, w) in enumerate((h, w) for h in slices for w in slices):
            img_mask[:, h, w, :] = cnt
        mask_windows = self.window_partition(img_mask).view(-1, ws * ws)
        mask = mask_windows.unsqueeze(1) - mask_windows.unsqueeze(2)
        return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)

    def _window_heads(self, windows: torch.Tensor, mask) -> torch.Tensor:
        """W-MSA of (nW*B, N, C) windows, heads concatenated, before ``proj``."""
        msa = self.w_msa
        Bw, N, C = windows.shape
        Hh = msa.num_heads
        q, k, v = msa.qkv(windows).view(Bw, N, 3, Hh, C // Hh).permute(2, 0, 3, 1, 4)
        bias = msa.relative_position_bias_table[msa.relative_position_index.view(-1)]
        bias = bias.view(N, N, Hh).permute(2, 0, 1).unsqueeze(0)        # 1,H,N,N
        if mask is not None:
            nW = mask.shape[0]
            bias = (bias.unsqueeze(1) + mask.unsqueeze(1).unsqueeze(0))  # 1,nW,H,N,N
            bias = bias.expand(Bw // nW, -1, -1, -1, -1).reshape(Bw, Hh, N, N)
        o = sdpa(q, k, v, attn_mask=bias.to(q.dtype), scale=msa.scale,
                 dropout_p=msa.attn_drop.p if self.training else 0.0)
        return o.transpose(1, 2).reshape(Bw, N, C)

    def forward(self, query, hw_shape):
        B, L, C = query.shape
        H, W = hw_shape
        assert L == H * W, 'input feature has wrong size'
        ws, ss = self.window_size, self.shift_size
        x = query.view(B, H, W, C)
        pad_r, pad_b = (ws - W % ws) % ws, (ws - H % ws) % ws
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        H_pad, W_pad = x.shape[1], x.shape[2]
        mask = None
        if ss > 0:
            x = torch.roll(x, shifts=(-ss, -ss), dims=(1, 2))
            mask = self._shift_mask(H_pad, W_pad, query.device)
        # window partition / reverse by explicit shapes (MMDet's infer the
        # batch with -1, which fails for an empty batch)
        nh, nw = H_pad // ws, W_pad // ws
        windows = x.view(B, nh, ws, nw, ws, C).transpose(2, 3).reshape(B * nh * nw, ws * ws, C)
        out = self._window_heads(windows, mask)
        out = out.view(B, nh, nw, ws, ws, C).transpose(2, 3).reshape(B, H_pad, W_pad, C)
        if ss > 0:
            out = torch.roll(out, shifts=(ss, ss), dims=(1, 2))
        out = out[:, :H, :W, :].reshape(B, H * W, C)
        if self.grc is not None:
            out = self.grc(query, hw_shape, out)
        out = self.w_msa.proj_drop(self.w_msa.proj(out))
        return self.drop(out)


@MODELS.register_module()
class CachedSwinTransformer(CachedBackboneMixin, SwinTransformer):
    """Swin Transformer with GRC-Attention (tiny/small/base by depths/heads).

    Every argument of :class:`mmdet.models.backbones.SwinTransformer` works
    unchanged (``with_cp``, ``frozen_stages``, ``convert_weights``,
    ``init_cfg`` ...). The cache arguments are those of
    :class:`~grc_mmdet.models.backbones.cached_base.CachedBackboneMixin`;
    'auto' key/value grids are window-sized (``window_size`` squared, or the
    cache grid if smaller), so a query sees as many cache tokens as window
    tokens; the cached branch is global. Official ImageNet Swin checkpoints
    load through ``init_cfg`` as for the plain model.
    """

    attention_map = {ShiftWindowMSA: CachedShiftWindowMSA}
    plain_backbone = SwinTransformer

    def grc_attention_modules(self):
        return [[block.attn for block in stage.blocks] for stage in self.stages]

    def grc_grid_rule(self, init_args):
        grids = stage_token_grids(init_args['pretrain_img_size'], init_args['strides'])
        window = init_args['window_size']
        return grids, [(min(window, h), min(window, w)) for h, w in grids]

    def init_weights(self):
        """As the mixin; a checkpoint with no usable key is a clear error
        (MMDet's Swin loader keeps only ``backbone.``-prefixed keys, as its
        converter writes them, and fails with IndexError on none)."""
        try:
            super().init_weights()
        except IndexError as e:
            raise ValueError(
                f'{type(self).__name__}: the pretrained checkpoint '
                f'{self.init_cfg.get("checkpoint")!r} has no key this backbone can load: '
                f'with convert_weights=False its keys must start with "backbone." '
                f'(an MMDet checkpoint); an official Swin checkpoint needs '
                f'convert_weights=True') from e
