"""ResNet on log-mel fbank (He et al. 2016, as used for speakers by r-vectors / VoxCeleb systems)."""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence

import torch
from torch import nn

from trkd.models.pooling import check_std, mean_std
from trkd.models.trunk2d import Trunk2d

# depth -> (block type, blocks per stage); 221 and 293 are the deep VoxCeleb variants.
DEPTHS = {
    10: ("basic", (1, 1, 1, 1)),
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    221: ("bottleneck", (6, 16, 48, 3)),
    293: ("bottleneck", (10, 20, 64, 3)),
}


def _shortcut(in_ch: int, out_ch: int, stride: int) -> nn.Module:
    if stride == 1 and in_ch == out_ch:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch))


class _Residual(nn.Module):
    """relu(body(x) + shortcut(x)); `attention` (a parameter-free module such as SimAM, or None)
    reweighs the residual branch before the sum."""

    def __init__(self, body: List[nn.Module], shortcut: nn.Module, attention: Optional[Callable[[], nn.Module]]):
        super().__init__()
        self.body = nn.Sequential(*body, *([attention()] if attention is not None else []))
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class BasicBlock(_Residual):
    """Two 3x3 convolutions."""

    expansion = 1

    def __init__(self, in_ch: int, ch: int, stride, attention: Optional[Callable[[], nn.Module]] = None):
        super().__init__([
            nn.Conv2d(in_ch, ch, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(ch), nn.ReLU(),
            nn.Conv2d(ch, ch, 3, padding=1, bias=False), nn.BatchNorm2d(ch),
        ], _shortcut(in_ch, ch, stride), attention)


class Bottleneck(_Residual):
    """1x1 reduce, 3x3, 1x1 expand (x4)."""

    expansion = 4

    def __init__(self, in_ch: int, ch: int, stride, attention: Optional[Callable[[], nn.Module]] = None):
        out_ch = ch * self.expansion
        super().__init__([
            nn.Conv2d(in_ch, ch, 1, bias=False), nn.BatchNorm2d(ch), nn.ReLU(),
            nn.Conv2d(ch, ch, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(ch), nn.ReLU(),
            nn.Conv2d(ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch),
        ], _shortcut(in_ch, out_ch, stride), attention)


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


def _halved(n: int, times: int) -> int:
    """Size after `times` stride-2 convolutions with kernel 3 and padding 1: ceil(n / 2) each."""
    for _ in range(times):
        n = (n + 1) // 2
    return n


class ResNet(Trunk2d):
    """3x3 stem, four residual stages (channels w, 2w, 4w, 8w; stride 2 in frequency and time
    from the second stage), temporal statistics pooling of the flattened channel × frequency map,
    then a linear + BN embedding.

    `depth` picks the block type and counts (see DEPTHS); `width` is the stem's channel count w
    (32 gives the usual 6.6 M-parameter ResNet-34 for speakers). Levels for multi-level KD: each
    stage's output averaged over frequency, then mean+std over time; and the embedding.
    Variants (Res2Net, SimAM-ResNet) reuse this frame through `_build` with their own blocks.
    `pool_std` picks how the standard deviation is pooled (trkd.models.pooling.STD_STYLES) and
    `embed_bn` false leaves the embedding at the linear layer's output, as published ResNets
    trained elsewhere (WeSpeaker's) have them.
    """

    def __init__(self, feat_dim: int = 80, embed_dim: int = 256, depth: int = 34, width: int = 32,
                 pool_std: str = "clamped", embed_bn: bool = True):
        super().__init__()
        kind, counts = _lookup("resnet", DEPTHS, depth)
        self._build(feat_dim, embed_dim, width, counts, BLOCKS[kind], pool_std=pool_std, embed_bn=embed_bn)

    def _build(self, feat_dim: int, embed_dim: int, width: int, counts: Sequence[int],
               block: Callable[..., nn.Module], expansion: Optional[int] = None, pool_std: str = "clamped",
               embed_bn: bool = True) -> None:
        """Stem, stages of `block(in_ch, ch, stride)`, pooling and embedding; `expansion` defaults
        to the block class's."""
        expansion = expansion or block.expansion
        self.feat_dim, self.embed_dim, self.pool_std = feat_dim, embed_dim, check_std(pool_std)
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        stages, in_ch = [], width
        for i, n in enumerate(counts):
            ch = width * 2 ** i
            layers = []
            for j in range(n):
                layers.append(block(in_ch, ch, 2 if (i > 0 and j == 0) else 1))
                in_ch = ch * expansion
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        pooled_dim = 2 * in_ch * _halved(feat_dim, len(counts) - 1)
        self.fc = nn.Linear(pooled_dim, embed_dim)
        self.fc_bn = nn.BatchNorm1d(embed_dim) if embed_bn else nn.Identity()
        self.level_dims = [2 * width * 2 ** i * expansion for i in range(len(counts))] + [embed_dim]

    def _embed(self, last: torch.Tensor) -> torch.Tensor:
        return self.fc_bn(self.fc(mean_std(last.flatten(1, 2), std=self.pool_std)))


def _lookup(family: str, depths: dict, depth: int):
    if depth not in depths:
        raise ValueError(f"{family} depth {depth} not supported; valid: {sorted(depths)}")
    return depths[depth]
