"""TDNN x-vector (Snyder et al., ICASSP 2018)."""

from __future__ import annotations

from typing import List

import torch
from torch import nn

from trkd.models.pooling import StatsPool


def _tdnn(in_dim: int, out_dim: int, context: int, dilation: int) -> nn.Sequential:
    """One frame-level layer: a dilated 1-D convolution, ReLU, batch norm (Kaldi's order)."""
    return nn.Sequential(nn.Conv1d(in_dim, out_dim, context, dilation=dilation), nn.ReLU(), nn.BatchNorm1d(out_dim))


class XVector(nn.Module):
    """Five frame-level TDNN layers (contexts [t-2,t+2], {t-2,t,t+2}, {t-3,t,t+3}, {t}, {t}),
    statistics pooling, then segment6 and segment7.

    The segment layers are trained with an AAM head, so the embedding is segment7 (affine + batch
    norm, no ReLU) and segment6 is an intermediate level. The frame layers use no padding, as in
    Kaldi: the time axis shrinks by 14 frames, which any input of 20 frames or more affords.
    Levels for multi-level KD: pooled statistics, segment6, segment7 (= the embedding).
    """

    def __init__(self, feat_dim: int = 80, embed_dim: int = 512, channels: int = 512,
                 stats_channels: int = 1500, segment_dim: int = 512):
        super().__init__()
        self.feat_dim, self.embed_dim = feat_dim, embed_dim
        self.frame = nn.Sequential(
            _tdnn(feat_dim, channels, 5, 1),
            _tdnn(channels, channels, 3, 2),
            _tdnn(channels, channels, 3, 3),
            _tdnn(channels, channels, 1, 1),
            _tdnn(channels, stats_channels, 1, 1),
        )
        self.pool = StatsPool()
        self.segment6 = nn.Sequential(nn.Linear(2 * stats_channels, segment_dim), nn.ReLU(), nn.BatchNorm1d(segment_dim))
        self.segment7 = nn.Sequential(nn.Linear(segment_dim, embed_dim), nn.BatchNorm1d(embed_dim))
        self.level_dims = [2 * stats_channels, segment_dim, embed_dim]

    def forward_levels(self, feats: torch.Tensor) -> List[torch.Tensor]:
        stats = self.pool(self.frame(feats.transpose(1, 2)))
        seg6 = self.segment6(stats)
        return [stats, seg6, self.segment7(seg6)]

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.forward_levels(feats)[-1]
