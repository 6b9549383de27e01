"""ReDimNet (Yakovlev et al., Interspeech 2024): 2-D and 1-D blocks on one feature volume, reshaped
between (C, F, T) and (C·F, T), with the outputs of all stages aggregated by learnt weights."""

from __future__ import annotations

import math
from typing import List, Optional, Sequence

import torch
from torch import nn

from trkd.models.pooling import AttentiveStatsPool, mean_std

# Frequency strides of the six stages for 80 mel bins: F = 80, 40, 20, 10, 5, 5 while the channels
# grow as C, 2C, 4C, 8C, 16C, 16C, so that C·F stays 80·C (the paper uses 72 bins and strides
# 1, 2, 3, 2, 2, 1, which 80 does not divide).
STRIDES = (1, 2, 2, 2, 2, 1)

# size -> (C, 2-D blocks per stage, 1-D hidden width, 2-D expansion, attention heads per 1-D block).
# The paper publishes parameter counts, not these widths: they are ours, chosen so that the
# sizes land near the published counts (README, Models).
SIZES = {
    "b0": (8, (1, 1, 1, 1, 1, 1), 32, 2, 0),
    "b1": (12, (1, 2, 2, 2, 1, 1), 80, 2, 0),
    "b2": (16, (1, 2, 3, 3, 2, 1), 128, 2, 4),
    "b3": (12, (2, 3, 4, 4, 3, 2), 80, 2, 4),
    "b4": (24, (1, 2, 2, 2, 2, 1), 96, 2, 4),
    "b5": (32, (1, 2, 3, 3, 2, 1), 128, 1, 4),
    "b6": (40, (2, 2, 3, 3, 2, 2), 160, 1, 8),
}


class Block2d(nn.Module):
    """ConvNeXt-like: depthwise 3x3, BN, pointwise expand, GELU, pointwise back; residual."""

    def __init__(self, channels: int, expansion: int):
        super().__init__()
        hidden = channels * expansion
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False), nn.BatchNorm2d(channels),
            nn.Conv2d(channels, hidden, 1), nn.GELU(), nn.Conv2d(hidden, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class TimeAttention(nn.Module):
    """Multi-head self-attention over time on `(B, C, T)`, pre-norm, residual. Written out (not
    nn.MultiheadAttention, whose traced graph fixes the number of frames) so ONNX keeps T dynamic."""

    def __init__(self, channels: int, heads: int):
        super().__init__()
        self.heads, self.scale = heads, 1.0 / math.sqrt(channels // heads)
        self.norm = nn.GroupNorm(1, channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (t.unflatten(1, (self.heads, -1)) for t in self.qkv(self.norm(x)).chunk(3, dim=1))
        scores = torch.matmul(q.transpose(2, 3), k) * self.scale   # (B, H, T, T)
        mixed = torch.matmul(v, torch.softmax(scores, dim=-1).transpose(2, 3))  # (B, H, d, T)
        return x + self.out(mixed.flatten(1, 2))


class Block1d(nn.Module):
    """On the reshaped (C·F, T) signal: 1x1 down to `hidden`, depthwise time convolution, optional
    multi-head self-attention over time, 1x1 back up; residual. Time context for the whole volume
    at the cost of a narrow hidden width."""

    def __init__(self, volume: int, hidden: int, heads: int, kernel: int = 7):
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm1d(volume), nn.Conv1d(volume, hidden, 1), nn.GELU(),
            nn.Conv1d(hidden, hidden, kernel, padding=kernel // 2, groups=hidden),
            TimeAttention(hidden, heads) if heads else nn.Identity(),
            nn.Conv1d(hidden, volume, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Stage(nn.Module):
    """Frequency stride `stride` traded for channels (kernel (s, 1) conv), 2-D blocks, then the
    1-D block on the same volume; returns the (C·F, T) view."""

    def __init__(self, in_ch: int, ch: int, stride: int, blocks: int, expansion: int, hidden: int, heads: int,
                 volume: int):
        super().__init__()
        self.ch = ch
        down = nn.Identity() if (stride == 1 and in_ch == ch) else nn.Sequential(
            nn.Conv2d(in_ch, ch, (stride, 1), stride=(stride, 1), bias=False), nn.BatchNorm2d(ch))
        self.body2d = nn.Sequential(down, *[Block2d(ch, expansion) for _ in range(blocks)])
        self.body1d = Block1d(volume, hidden, heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body1d(self.body2d(x).flatten(1, 2))


class ReDimNet(nn.Module):
    """Stem (3x3 conv to C channels), six stages, attentive statistics pooling, linear + BN.

    Every stage keeps the volume C·F: its input is a learnt softmax-weighted sum of the stem's and
    all earlier stages' outputs (possible because all have the shape (C·F, T)), reshaped to the
    stage's (C_in, F_in, T). The pooled signal is the same kind of weighted sum over all outputs.
    `size` picks a preset of SIZES; `channels`, `blocks`, `hidden`, `expansion`, `heads` override
    it. Levels for multi-level KD: each stage's output as (C, F, T) averaged over frequency (as
    in the 2-D models), then mean+std over time; and the embedding.
    """

    def __init__(self, feat_dim: int = 80, embed_dim: int = 192, size: str = "b2", channels: Optional[int] = None,
                 blocks: Optional[Sequence[int]] = None, hidden: Optional[int] = None,
                 expansion: Optional[int] = None, heads: Optional[int] = None,
                 strides: Sequence[int] = STRIDES, attention_channels: int = 128):
        super().__init__()
        if size not in SIZES:
            raise ValueError(f"redimnet size {size!r} not supported; valid: {', '.join(SIZES)}")
        preset = SIZES[size]
        c, blocks, hidden, expansion, heads = (preset[i] if v is None else v for i, v in
                                               enumerate((channels, blocks, hidden, expansion, heads)))
        if len(blocks) != len(strides):
            raise ValueError(f"redimnet: {len(blocks)} block counts for {len(strides)} strides")
        total = math.prod(strides)
        if feat_dim % total:
            raise ValueError(f"redimnet: feat_dim ({feat_dim}) must be a multiple of the product of strides ({total})")
        if heads and hidden % heads:
            raise ValueError(f"redimnet: hidden ({hidden}) must be a multiple of heads ({heads})")
        self.feat_dim, self.embed_dim = feat_dim, embed_dim
        volume = c * feat_dim
        self.stem = nn.Sequential(nn.Conv2d(1, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
        stages, shapes, ch, freq = [], [], c, feat_dim
        for s, n in zip(strides, blocks):
            shapes.append((ch, freq))
            stages.append(Stage(ch, ch * s, s, n, expansion, hidden, heads, volume))
            ch, freq = ch * s, freq // s
        self.stages = nn.ModuleList(stages)
        self.in_shapes = shapes
        self.out_shapes = shapes[1:] + [(ch, freq)]
        # one weight per earlier output for every stage after the first (whose input is the stem's
        # output alone) and for the pooled sum; zeros start as the plain mean
        self.mix = nn.ParameterList(nn.Parameter(torch.zeros(i + 1)) for i in range(1, len(stages) + 1))
        self.pool = AttentiveStatsPool(volume, attention_channels)
        self.pool_bn = nn.BatchNorm1d(2 * volume)
        self.fc = nn.Linear(2 * volume, embed_dim)
        self.fc_bn = nn.BatchNorm1d(embed_dim)
        self.level_dims = [2 * out_ch for out_ch, _ in self.out_shapes] + [embed_dim]

    def _mixed(self, outs: List[torch.Tensor], i: int) -> torch.Tensor:
        """The input of stage `i` (the pooled signal for i = number of stages)."""
        if i == 0:
            return outs[0]
        w = torch.softmax(self.mix[i - 1], dim=0)
        return sum(w[j] * o for j, o in enumerate(outs))

    def _stages(self, feats: torch.Tensor) -> List[torch.Tensor]:
        outs = [self.stem(feats.transpose(1, 2).unsqueeze(1)).flatten(1, 2)]
        for i, (stage, (ch, freq)) in enumerate(zip(self.stages, self.in_shapes)):
            x = self._mixed(outs, i)
            outs.append(stage(x.unflatten(1, (ch, freq))))
        return outs

    def _embed(self, outs: List[torch.Tensor]) -> torch.Tensor:
        pooled = self.pool_bn(self.pool(self._mixed(outs, len(self.stages))))
        return self.fc_bn(self.fc(pooled))

    def forward_levels(self, feats: torch.Tensor) -> List[torch.Tensor]:
        outs = self._stages(feats)
        levels = [mean_std(o.unflatten(1, shape).mean(dim=2)) for o, shape in zip(outs[1:], self.out_shapes)]
        return levels + [self._embed(outs)]

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self._embed(self._stages(feats))
