"""Temporal pooling shared by the models: statistics pooling and attentive statistics pooling.

Both reduce `(B, C, T)` frame-level features to one `(B, 2C)` vector per utterance, whatever T,
with no data-dependent control flow so that the models export to ONNX with a dynamic time axis.
"""

from __future__ import annotations

import torch
from torch import nn

# Standard deviations are taken as sqrt(max(var, EPS)): a constant or one-frame input would
# otherwise give sqrt(0), whose gradient is infinite.
EPS = 1e-5


def mean_std(x: torch.Tensor, weights: torch.Tensor = None) -> torch.Tensor:
    """Mean and standard deviation over the last axis, concatenated: `(B, C, T) -> (B, 2C)`.

    With `weights` (same shape, summing to 1 over T) the moments are weighted (attentive pooling).
    """
    if weights is None:
        mean = x.mean(dim=-1)
        var = (x - mean.unsqueeze(-1)).pow(2).mean(dim=-1)
    else:
        mean = (weights * x).sum(dim=-1)
        var = (weights * (x - mean.unsqueeze(-1)).pow(2)).sum(dim=-1)
    return torch.cat([mean, var.clamp(min=EPS).sqrt()], dim=1)


class StatsPool(nn.Module):
    """Statistics pooling (Snyder et al. 2018): mean and standard deviation over time."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mean_std(x)


class AttentiveStatsPool(nn.Module):
    """Channel-dependent attentive statistics pooling with global context (Desplanques et al. 2020).

    The attention of each channel and frame sees the frame itself and the utterance's mean and
    standard deviation, so that it can weigh frames against the whole recording (noise, channel).
    """

    def __init__(self, channels: int, attention_channels: int = 128, global_context: bool = True):
        super().__init__()
        self.global_context = global_context
        in_channels = 3 * channels if global_context else channels
        self.attention = nn.Sequential(
            nn.Conv1d(in_channels, attention_channels, kernel_size=1),
            nn.ReLU(),
            nn.BatchNorm1d(attention_channels),
            nn.Tanh(),
            nn.Conv1d(attention_channels, channels, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if self.global_context:
            mean, std = mean_std(x).chunk(2, dim=1)
            h = torch.cat([x, mean.unsqueeze(-1).expand_as(x), std.unsqueeze(-1).expand_as(x)], dim=1)
        weights = torch.softmax(self.attention(h), dim=-1)
        return mean_std(x, weights)
