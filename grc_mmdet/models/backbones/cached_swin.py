"""Cached Swin: MMDet's SwinTransformer with GRC-Attention."""
import torch
import torch.nn.functional as F
from mmdet.models.backbones.swin import ShiftWindowMSA, SwinTransformer
from mmdet.registry import MODELS

from ..grc import GatedRecurrentCache, sdpa
from .cached_base import CachedBackboneMixin


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

    @classmethod
    def upgrade(cls, attn: ShiftWindowMSA, grc: GatedRecurrentCache) -> None:
        """Turn a built plain attention into this class in place (weights kept)."""
        attn.__class__ = cls
        attn.grc = grc

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
        o = sdpa(
            q, k, v, 'self', attn_mask=bias.to(q.dtype), scale=msa.scale,
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
        windows = self.window_partition(x).view(-1, ws * ws, C)
        out = self._window_heads(windows, mask).view(-1, ws, ws, C)
        out = self.window_reverse(out, H_pad, W_pad)
        if ss > 0:
            out = torch.roll(out, shifts=(ss, ss), dims=(1, 2))
        out = out[:, :H, :W, :].reshape(B, H * W, C)
        if getattr(self, 'grc', None) is not None:
            out = self.grc(query, hw_shape, out)
        out = self.w_msa.proj_drop(self.w_msa.proj(out))
        return self.drop(out)


@MODELS.register_module()
class CachedSwinTransformer(CachedBackboneMixin, SwinTransformer):
    """Swin Transformer with GRC-Attention (tiny/small/base by depths/heads).

    Every argument of :class:`mmdet.models.backbones.SwinTransformer` works
    unchanged (``embed_dims``, ``depths``, ``num_heads``, ``window_size``,
    ``with_cp``, ``frozen_stages``, ``convert_weights``, ``init_cfg`` ...).
    Official ImageNet Swin checkpoints load through ``init_cfg`` as for the
    plain model; GRC parameters keep their init and caches start at zero.

    Cache arguments:
        cache_ratio (float): r, cache channels D_m = r * D. Default 0.5 (paper).
        cache_lambda_init (float): initial lambda per head. Default 0 (paper).
        cache_grids (list | int | tuple | None): cache grid (h_m, w_m) per
            stage. None: each stage's token grid at ``pretrain_img_size``
            (224 -> 56x56, 28x28, 14x14, 7x7).
        cache_stages (Sequence[int] | None): stages with GRC. None: all (paper).
        cache_blocks (Sequence[Sequence[int]] | None): per stage, block
            indices with GRC. None: all blocks.
        cache_kv_grids ('auto' | list | None): grid the cache is
            average-pooled to for the cached keys/values. 'auto': a
            window-sized grid (window_size x window_size, or the cache grid if
            smaller), so a query sees as many cache tokens as window tokens.
            None: no reduction. The cached branch is global in every case.
    """

    def __init__(self, **kwargs):
        cache_args = self._pop_cache_args(kwargs)
        super().__init__(**kwargs)
        size = kwargs.get('pretrain_img_size', 224)
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        window = kwargs.get('window_size', 7)
        grids, kv_grids = [], []
        for stride in kwargs.get('strides', (4, 2, 2, 2)):
            h, w = h // stride, w // stride
            grids.append((h, w))
            kv_grids.append((min(window, h), min(window, w)))
        attns = [[block.attn for block in stage.blocks] for stage in self.stages]
        heads = kwargs.get('num_heads', (3, 6, 12, 24))
        self._attach_caches(attns, self.num_features, heads, grids, kv_grids,
                            CachedShiftWindowMSA.upgrade,
                            in_channels=kwargs.get('in_channels', 3), **cache_args)

    def init_weights(self):
        """As the parent; a checkpoint with no usable key is a clear error
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

    def train(self, mode: bool = True):
        """As the parent (frozen stages stay frozen), but returns self like nn.Module."""
        super().train(mode)
        return self

    def forward(self, x):
        self._before_forward(x)
        return super().forward(x)
