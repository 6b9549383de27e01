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
# How the standard deviation is formed, a model option (`pool_std`) so that networks trained
# elsewhere pool as they were trained:
#   "clamped": the variance about the mean (over T, or weighted), sqrt(max(var, 1e-5));
#   "unbiased": plain moments sqrt(var · T/(T − 1) + 1e-7); weighted ones
#   sqrt(max(E_w[x²] − E_w[x]², 1e-7)), the form WeSpeaker's statistics pooling layers use.
STD_STYLES = ("clamped", "unbiased")
UNBIASED_EPS = 1e-7


def check_std(std: str) -> str:
    if std not in STD_STYLES:
        raise ValueError(f"unknown pool_std {std!r}; valid: {', '.join(STD_STYLES)}")
    return std


def mean_std(x: torch.Tensor, weights: torch.Tensor = None, std: str = "clamped") -> torch.Tensor:
    """Mean and standard deviation over the last axis, concatenated: `(B, C, T) -> (B, 2C)`.

    With `weights` (same shape, summing to 1 over T) the moments are weighted (attentive pooling);
    `std` is one of STD_STYLES.
    """
    if weights is None:
        mean = x.mean(dim=-1)
        dev = (x - mean.unsqueeze(-1)).pow(2)
        if std == "unbiased":
            # T counted from a tensor, not a Python int, so the ONNX graph keeps the time axis dynamic
            n = torch.ones_like(x[:1, :1]).sum()
            return torch.cat([mean, (dev.sum(dim=-1) / (n - 1) + UNBIASED_EPS).sqrt()], dim=1)
        var = dev.mean(dim=-1)
    else:
        mean = (weights * x).sum(dim=-1)
        if std == "unbiased":
            var = (weights * x.pow(2)).sum(dim=-1) - mean.pow(2)
            return torch.cat([mean, var.clamp(min=UNBIASED_EPS).sqrt()], dim=1)
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
    Its hidden layer is conv-ReLU-BN-tanh, or conv-tanh without `attention_bn`; `std` is how
    both the context and the pooled standard deviations are formed (STD_STYLES).
    """

    def __init__(self, channels: int, attention_channels: int = 128, global_context: bool = True,
                 attention_bn: bool = True, std: str = "clamped"):
        super().__init__()
        self.global_context, self.std = global_context, check_std(std)
        in_channels = 3 * channels if global_context else channels
        hidden = [nn.ReLU(), nn.BatchNorm1d(attention_channels)] if attention_bn else []
        self.attention = nn.Sequential(
            nn.Conv1d(in_channels, attention_channels, kernel_size=1),
            *hidden,
            nn.Tanh(),
            nn.Conv1d(attention_channels, channels, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if self.global_context:
            mean, std = mean_std(x, std=self.std).chunk(2, dim=1)
            h = torch.cat([x, mean.unsqueeze(-1).expand_as(x), std.unsqueeze(-1).expand_as(x)], dim=1)
        weights = torch.softmax(self.attention(h), dim=-1)
        return mean_std(x, weights, self.std)
