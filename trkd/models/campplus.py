"""CAM++ (Wang et al., Interspeech 2023): a 2-D convolutional front module, then a densely
connected TDNN whose layers are gated by context-aware masks."""

from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from trkd.models.pooling import check_std, mean_std
from trkd.models.resnet import BasicBlock, _halved


def _bn_relu(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm1d(channels), nn.ReLU())


class FrontModule(nn.Module):
    """FCM: a 3x3 conv, two stages of two residual blocks and a last conv, each halving the
    frequency axis only (time keeps its resolution); the map is flattened to C·F/8 channels."""

    def __init__(self, feat_dim: int, channels: int):
        super().__init__()
        def halving(in_ch):
            return [BasicBlock(in_ch, channels, (2, 1)), BasicBlock(channels, channels, 1)]
        self.body = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(),
            *halving(channels), *halving(channels),
            nn.Conv2d(channels, channels, 3, stride=(2, 1), padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(),
        )
        self.out_dim = channels * _halved(feat_dim, 3)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.body(feats.transpose(1, 2).unsqueeze(1)).flatten(1, 2)


def segment_means(x: torch.Tensor, seg: int) -> torch.Tensor:
    """Each frame replaced by the mean of its `seg`-frame segment (the last one may be shorter)."""
    pooled = F.avg_pool1d(x, seg, seg, ceil_mode=True)
    return pooled.unsqueeze(-1).expand(-1, -1, -1, seg).flatten(2)[..., :x.shape[-1]]


class CAMLayer(nn.Module):
    """A dilated TDNN conv whose output is multiplied by a mask predicted from the utterance mean
    plus the segment mean of its own input: context picks the frames of the target speaker."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, dilation: int, segment: int, reduction: int = 2):
        super().__init__()
        self.local = nn.Conv1d(in_ch, out_ch, kernel, dilation=dilation, padding=dilation * (kernel - 1) // 2, bias=False)
        self.mask = nn.Sequential(nn.Conv1d(in_ch, in_ch // reduction, 1), nn.ReLU(),
                                  nn.Conv1d(in_ch // reduction, out_ch, 1), nn.Sigmoid())
        self.segment = segment

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context = x.mean(dim=-1, keepdim=True) + segment_means(x, self.segment)
        return self.local(x) * self.mask(context)


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 bottleneck, BN-ReLU, CAM layer; its `growth` outputs join the input (dense)."""

    def __init__(self, in_ch: int, growth: int, bottleneck: int, kernel: int, dilation: int, segment: int):
        super().__init__()
        self.body = nn.Sequential(_bn_relu(in_ch), nn.Conv1d(in_ch, bottleneck, 1, bias=False), _bn_relu(bottleneck),
                                  CAMLayer(bottleneck, growth, kernel, dilation, segment))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], dim=1)


class CAMPPlus(nn.Module):
    """FCM, a TDNN layer (kernel 5, stride 2 in time), three dense blocks of `layers` CAM layers
    (growth rate `growth`, bottleneck `bn_size`·growth, dilations `dilations`) each followed by a
    transition that halves the channels, BN-ReLU, statistics pooling, linear + BN embedding.

    Defaults are the paper's: 12/24/16 layers, growth 32, 128-channel TDNN, 32-channel FCM,
    segments of 100 frames (after the stride, 2 s of audio). Levels for multi-level KD: mean+std
    of each dense block's transition output, and the embedding. `pool_std`: how the standard
    deviation is pooled (trkd.models.pooling.STD_STYLES).
    """

    def __init__(self, feat_dim: int = 80, embed_dim: int = 192, fcm_channels: int = 32,
                 channels: int = 128, growth: int = 32, bn_size: int = 4, layers: Sequence[int] = (12, 24, 16),
                 dilations: Sequence[int] = (1, 2, 2), kernel_size: int = 3, segment: int = 100,
                 pool_std: str = "clamped"):
        super().__init__()
        self.pool_std = check_std(pool_std)
        if len(layers) != len(dilations):
            raise ValueError(f"layers {list(layers)} and dilations {list(dilations)} differ in length")
        self.feat_dim, self.embed_dim = feat_dim, embed_dim
        self.front = FrontModule(feat_dim, fcm_channels)
        self.tdnn = nn.Sequential(nn.Conv1d(self.front.out_dim, channels, 5, stride=2, padding=2, bias=False),
                                  _bn_relu(channels))
        blocks, dims, ch = [], [], channels
        for n, d in zip(layers, dilations):
            block = [DenseLayer(ch + i * growth, growth, bn_size * growth, kernel_size, d, segment) for i in range(n)]
            ch += n * growth
            block += [_bn_relu(ch), nn.Conv1d(ch, ch // 2, 1, bias=False)]
            ch //= 2
            blocks.append(nn.Sequential(*block))
            dims.append(2 * ch)
        self.blocks = nn.ModuleList(blocks)
        self.out = _bn_relu(ch)
        self.fc = nn.Linear(2 * ch, embed_dim)
        self.fc_bn = nn.BatchNorm1d(embed_dim)
        self.level_dims = dims + [embed_dim]

    def _blocks(self, feats: torch.Tensor) -> List[torch.Tensor]:
        x = self.tdnn(self.front(feats))
        outs = []
        for block in self.blocks:
            x = block(x)
            outs.append(x)
        return outs

    def _embed(self, last: torch.Tensor) -> torch.Tensor:
        return self.fc_bn(self.fc(mean_std(self.out(last), std=self.pool_std)))

    def forward_levels(self, feats: torch.Tensor) -> List[torch.Tensor]:
        outs = self._blocks(feats)
        return [mean_std(o) for o in outs] + [self._embed(outs[-1])]

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self._embed(self._blocks(feats)[-1])
