"""Res2Net (Gao et al., TPAMI 2021) on log-mel fbank: the ResNet frame with Res2Net bottlenecks."""

from __future__ import annotations

import functools

import torch
from torch import nn

from trkd.models.resnet import ResNet, _lookup, _shortcut

# depth -> (blocks per stage, expansion). 34 keeps ResNet-34's stage counts with a light
# expansion of 2 (the speaker-verification Res2Net-34); 50 and 101 are the paper's ImageNet layouts.
DEPTHS = {
    34: ((3, 4, 6, 3), 2),
    50: ((3, 4, 6, 3), 4),
    101: ((3, 4, 23, 3), 4),
}


class Res2Bottleneck(nn.Module):
    """1x1 conv to `scale` groups of `group` channels, hierarchical 3x3 convolutions (group i
    also sees the output of group i − 1, so the receptive field grows within the block), 1x1 conv
    to `ch · expansion`, residual sum.

    In a block that downsamples, the groups cannot be chained (their input is the full-size map),
    so each group is convolved on its own and the first is average-pooled, as in the paper.
    """

    def __init__(self, in_ch: int, ch: int, stride: int, scale: int, base_width: int, expansion: int):
        super().__init__()
        if scale < 2:
            raise ValueError(f"res2net scale must be at least 2, got {scale}")
        group = max(ch * base_width // 64, 1)
        out_ch = ch * expansion
        self.scale, self.chained = scale, stride == 1
        self.reduce = nn.Sequential(nn.Conv2d(in_ch, group * scale, 1, bias=False),
                                    nn.BatchNorm2d(group * scale), nn.ReLU())
        self.convs = nn.ModuleList(
            nn.Sequential(nn.Conv2d(group, group, 3, stride=stride, padding=1, bias=False),
                          nn.BatchNorm2d(group), nn.ReLU())
            for _ in range(scale - 1))
        self.first = nn.Identity() if self.chained else nn.AvgPool2d(3, stride=stride, padding=1)
        self.expand = nn.Sequential(nn.Conv2d(group * scale, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch))
        self.shortcut = _shortcut(in_ch, out_ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups = self.reduce(x).chunk(self.scale, dim=1)
        out = [self.first(groups[0])]
        y = None
        for conv, g in zip(self.convs, groups[1:]):
            y = conv(g if (y is None or not self.chained) else g + y)
            out.append(y)
        return torch.relu(self.expand(torch.cat(out, dim=1)) + self.shortcut(x))


class Res2Net(ResNet):
    """ResNet stem, stages, pooling and embedding (see ResNet) with Res2Net bottleneck blocks.

    `scale` is the number of channel groups s, `base_width` the group width w at 64 channels
    (a stage of c channels has groups of c·w/64): the paper's 26w×4s is `base_width: 26, scale: 4`.
    `width` is the stem's channel count, as in ResNet.
    """

    def __init__(self, feat_dim: int = 80, embed_dim: int = 256, depth: int = 34, width: int = 32,
                 scale: int = 4, base_width: int = 26):
        nn.Module.__init__(self)  # not ResNet.__init__, which would build plain blocks
        counts, expansion = _lookup("res2net", DEPTHS, depth)
        block = functools.partial(Res2Bottleneck, scale=scale, base_width=base_width, expansion=expansion)
        self._build(feat_dim, embed_dim, width, counts, block, expansion)
