"""ECAPA-TDNN (Desplanques, Thienpondt, Demuynck, Interspeech 2020)."""

from __future__ import annotations

from typing import List

import torch
from torch import nn

from trkd.models.pooling import AttentiveStatsPool, mean_std


def _conv_relu_bn(in_ch: int, out_ch: int, kernel: int = 1, dilation: int = 1) -> nn.Sequential:
    """Conv1D + ReLU + BN, the paper's basic unit; 'same' padding keeps the time axis."""
    return nn.Sequential(
        nn.Conv1d(in_ch, out_ch, kernel, dilation=dilation, padding=dilation * (kernel - 1) // 2),
        nn.ReLU(),
        nn.BatchNorm1d(out_ch),
    )


class SqueezeExcitation(nn.Module):
    """Channel gates from the utterance mean (global context for every frame)."""

    def __init__(self, channels: int, bottleneck: int):
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(channels, bottleneck), nn.ReLU(), nn.Linear(bottleneck, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x.mean(dim=-1)).unsqueeze(-1)


PASSTHROUGH = ("first", "last")


class Res2Conv(nn.Module):
    """Res2Net dilated convolution: `scale` channel groups, each group's convolution also sees the
    previous group's output, so the receptive field grows within one layer. One group is passed
    through unconvolved: the first (Res2Net's paper) or the last (`passthrough`, as the
    lawlict/WeSpeaker ECAPA-TDNN does); the groups keep their places in the output."""

    def __init__(self, channels: int, kernel: int, dilation: int, scale: int, passthrough: str = "first"):
        super().__init__()
        if channels % scale:
            raise ValueError(f"channels ({channels}) must be a multiple of res2_scale ({scale})")
        if passthrough not in PASSTHROUGH:
            raise ValueError(f"unknown res2_passthrough {passthrough!r}; valid: {', '.join(PASSTHROUGH)}")
        self.scale, self.last = scale, passthrough == "last"
        width = channels // scale
        self.convs = nn.ModuleList(_conv_relu_bn(width, width, kernel, dilation) for _ in range(scale - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups = x.chunk(self.scale, dim=1)
        kept, convolved = (groups[-1], groups[:-1]) if self.last else (groups[0], groups[1:])
        out = []
        y = None
        for conv, g in zip(self.convs, convolved):
            y = conv(g if y is None else g + y)
            out.append(y)
        return torch.cat(out + [kept] if self.last else [kept] + out, dim=1)


class SERes2Block(nn.Module):
    """1x1 conv, Res2 dilated conv, 1x1 conv, squeeze-excitation, residual connection."""

    def __init__(self, channels: int, kernel: int, dilation: int, scale: int, se_channels: int,
                 passthrough: str = "first"):
        super().__init__()
        self.body = nn.Sequential(
            _conv_relu_bn(channels, channels),
            Res2Conv(channels, kernel, dilation, scale, passthrough),
            _conv_relu_bn(channels, channels),
            SqueezeExcitation(channels, se_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ECAPATDNN(nn.Module):
    """Conv1D(k=5) stem, SE-Res2Blocks with dilations 2, 3, 4, multi-layer feature aggregation,
    attentive statistics pooling with global context, FC + BN embedding.

    Each block's input is the sum of the stem's and all previous blocks' outputs (the paper's
    residual summation). The aggregation conv has `mfa_channels` outputs: the paper uses 1536 for
    both C = 512 and C = 1024 (6.2 M and 14.7 M parameters); small models should shrink it with C.
    Levels for multi-level KD: mean+std of each block's output, the attentive-pooled vector,
    and the embedding.

    Variants of the published implementations (defaults: the paper's, as above):
    `sum_block_inputs` false feeds each block the previous block's output alone; `res2_passthrough`
    "last" leaves the last Res2 group unconvolved; `mfa_bn` false ends the aggregation at its ReLU;
    `attention_bn` false drops ReLU-BN from the attention's hidden layer; `pool_std` picks how
    standard deviations are pooled (trkd.models.pooling.STD_STYLES); `embed_bn` false leaves the
    embedding at the FC output.
    """

    def __init__(self, feat_dim: int = 80, embed_dim: int = 192, channels: int = 512,
                 mfa_channels: int = 1536, res2_scale: int = 8, se_channels: int = 128,
                 attention_channels: int = 128, kernel_size: int = 3, dilations=(2, 3, 4),
                 global_context: bool = True, sum_block_inputs: bool = True, res2_passthrough: str = "first",
                 mfa_bn: bool = True, attention_bn: bool = True, pool_std: str = "clamped",
                 embed_bn: bool = True):
        super().__init__()
        self.feat_dim, self.embed_dim = feat_dim, embed_dim
        self.sum_block_inputs = sum_block_inputs
        self.stem = _conv_relu_bn(feat_dim, channels, kernel=5)
        self.blocks = nn.ModuleList(
            SERes2Block(channels, kernel_size, d, res2_scale, se_channels, res2_passthrough) for d in dilations
        )
        mfa = _conv_relu_bn(channels * len(self.blocks), mfa_channels)
        self.mfa = mfa if mfa_bn else mfa[:2]
        self.pool = AttentiveStatsPool(mfa_channels, attention_channels, global_context, attention_bn, pool_std)
        self.pool_bn = nn.BatchNorm1d(2 * mfa_channels)
        self.fc = nn.Linear(2 * mfa_channels, embed_dim)
        self.fc_bn = nn.BatchNorm1d(embed_dim) if embed_bn else nn.Identity()
        self.level_dims = [2 * channels] * len(self.blocks) + [2 * mfa_channels, embed_dim]

    def _blocks(self, feats: torch.Tensor) -> List[torch.Tensor]:
        x = self.stem(feats.transpose(1, 2))
        outs = []
        for block in self.blocks:
            outs.append(block(x))
            x = x + outs[-1] if self.sum_block_inputs else outs[-1]
        return outs

    def _embed(self, block_outs: List[torch.Tensor]):
        pooled = self.pool_bn(self.pool(self.mfa(torch.cat(block_outs, dim=1))))
        return pooled, self.fc_bn(self.fc(pooled))

    def forward_levels(self, feats: torch.Tensor) -> List[torch.Tensor]:
        outs = self._blocks(feats)
        return [mean_std(o) for o in outs] + list(self._embed(outs))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self._embed(self._blocks(feats))[1]
