"""Numerical building blocks shared by every logit-level loss.

Rules: compute in float32 or float64, never in half precision; every mass and
conditional comes from a log-sum-exp over masked logits (never the log of a summed softmax); in a
KL a term whose teacher probability is exactly zero contributes zero (0 · log 0 = 0), never NaN.
"""

from __future__ import annotations

import torch

NEG_INF = float("-inf")


def working_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """float64 when any input is float64, else float32: half precision never reaches a loss."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def as_working(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return x if x.dtype == dtype else x.to(dtype)


def finite(x: torch.Tensor) -> torch.Tensor:
    """−inf logits (probability 0) become the most negative float: 0 · z stays 0, not NaN."""
    return x.clamp_min(torch.finfo(x.dtype).min)


def target_mask(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """One-hot bool (B, C) of the target classes."""
    if target.dim() != 1:
        raise ValueError(f"target must have shape (B,), got {tuple(target.shape)}")
    mask = torch.zeros(target.shape[0], num_classes, dtype=torch.bool, device=target.device)
    return mask.scatter_(1, target.long().unsqueeze(1), True)


def without_target(z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """z with each row's target logit set to −inf (a scatter: masked_fill is ~5× slower on CPU)."""
    return z.clone().scatter_(1, target.long().unsqueeze(1), NEG_INF)


def masked_logsumexp(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log Σ_{i∈mask} exp x_i per row; −inf for an empty row.

    An empty row's backward is NaN inside logsumexp, but masked_fill's backward overwrites every
    masked position with zero, so the gradient that leaves this function is finite.
    """
    return torch.logsumexp(x.masked_fill(~mask, NEG_INF), dim=-1)


def masked_max_sumexp(x: torch.Tensor, mask: torch.Tensor | None):
    """Per-row (m, s): m the max of x over `mask` (None: all), s = Σ_{i∈mask} exp(x_i − m).

    log-sum-exp = m + log s. The pair also gives the masses exp(x_i − m) / s as plain ratios,
    which keeps equal logits at exactly equal, exactly normalised masses (TRKD's cutoff compares
    their running sums with τ). An empty row gives (0, 0).
    """
    if mask is not None:
        x = x.masked_fill(~mask, NEG_INF)
    m = x.amax(-1)
    m = torch.where(m > NEG_INF, m, 0.0)
    return m, (x - m.unsqueeze(-1)).exp().sum(-1)


def masked_kl(zs: torch.Tensor, zt: torch.Tensor, mask: torch.Tensor, lse_s: torch.Tensor,
              lse_t: torch.Tensor) -> torch.Tensor:
    """Per-row KL(p̃ᵀ ‖ p̃ˢ) of the softmaxes restricted to `mask`, given the sets' log-sum-exps;
    each log-probability is formed before weighting, so large logits lose no digits."""
    log_pt = (zt - lse_t.unsqueeze(-1)).masked_fill(~mask, NEG_INF)
    log_ps = zs - lse_s.unsqueeze(-1)
    return mass_kl(log_pt, log_ps)


def mass_kl(log_mt: torch.Tensor, log_ms: torch.Tensor) -> torch.Tensor:
    """Per-row KL between categorical distributions given as log-masses (B, K); 0 · log 0 = 0."""
    pt = log_mt.exp()
    keep = pt > 0
    diff = torch.where(keep, log_mt - torch.where(keep, log_ms, 0.0), 0.0)
    return (pt * diff).sum(-1)
