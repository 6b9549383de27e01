"""MobileNetV2 on log-mel fbank (Sandler et al., CVPR 2018): the on-device student."""

from __future__ import annotations

from typing import List

import torch
from torch import nn

from trkd.models.pooling import mean_std
from trkd.models.trunk2d import Trunk2d

# (expansion t, channels c, repeats n, stride s) of the paper's Table 2, except that the 160-channel
# stage keeps stride 1: an 80-bin fbank is far smaller than a 224-pixel image, and a total stride
# of 16 keeps 5 frequency bins and at least 2 frames of a 20-frame input.
SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 1),
    (6, 320, 1, 1),
)


def _divisible(v: float, divisor: int = 8) -> int:
    """Round channels to a multiple of 8 (the paper's width rounding), never below 90 % of v."""
    rounded = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * v else rounded


def _conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True) -> List[nn.Module]:
    layers = [nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
              nn.BatchNorm2d(out_ch)]
    return layers + [nn.ReLU6()] if act else layers


class InvertedResidual(nn.Module):
    """1x1 expansion, 3x3 depthwise, linear 1x1 projection; residual when shapes agree."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expansion: int):
        super().__init__()
        hidden = in_ch * expansion
        layers = _conv_bn(in_ch, hidden, 1) if expansion != 1 else []
        layers += _conv_bn(hidden, hidden, 3, stride, groups=hidden)
        layers += _conv_bn(hidden, out_ch, 1, act=False)
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


class MobileNetV2(Trunk2d):
    """Stride-2 3x3 stem, the inverted-residual stages of SETTINGS scaled by `width_mult`, a 1x1
    conv to `last_channels` (× width_mult when above 1, as in the paper), frequency average, mean +
    std over time, linear + BN embedding.

    Levels for multi-level KD: each stage's output averaged over frequency, then mean+std over
    time; and the embedding.
    """

    def __init__(self, feat_dim: int = 80, embed_dim: int = 256, width_mult: float = 1.0,
                 last_channels: int = 1280):
        super().__init__()
        self.feat_dim, self.embed_dim = feat_dim, embed_dim
        in_ch = _divisible(32 * width_mult)
        self.stem = nn.Sequential(*_conv_bn(1, in_ch, 3, stride=2))
        stages, stage_dims = [], []
        for t, c, n, s in SETTINGS:
            out_ch = _divisible(c * width_mult)
            blocks = []
            for i in range(n):
                blocks.append(InvertedResidual(in_ch, out_ch, s if i == 0 else 1, t))
                in_ch = out_ch
            stages.append(nn.Sequential(*blocks))
            stage_dims.append(2 * out_ch)
        self.stages = nn.ModuleList(stages)
        last = _divisible(last_channels * max(1.0, width_mult))
        self.head = nn.Sequential(*_conv_bn(in_ch, last, 1))
        self.fc = nn.Linear(2 * last, embed_dim)
        self.fc_bn = nn.BatchNorm1d(embed_dim)
        self.level_dims = stage_dims + [embed_dim]

    def _embed(self, last: torch.Tensor) -> torch.Tensor:
        return self.fc_bn(self.fc(mean_std(self.head(last).mean(dim=2))))
