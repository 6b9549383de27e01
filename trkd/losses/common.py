"""Numerical building blocks shared by every logit-level loss.

Rules (spec/losses.md): compute in float32 or float64, never in half precision; every mass and
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


def target_mask(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """One-hot bool (B, C) of the target classes."""
    if target.dim() != 1:
        raise ValueError(f"target must have shape (B,), got {tuple(target.shape)}")
    mask = torch.zeros(target.shape[0], num_classes, dtype=torch.bool, device=target.device)
    return mask.scatter_(1, target.long().unsqueeze(1), True)


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


def conditional_kl(zs: torch.Tensor, zt: torch.Tensor, mask: torch.Tensor | None,
                   lse_s: torch.Tensor, lse_t: torch.Tensor) -> torch.Tensor:
    """Per-row KL(p̃ᵀ ‖ p̃ˢ) of the softmaxes of `zt`, `zs` restricted to `mask` (None: all classes).

    `lse_*` are the log-sum-exps of the logits over the same set. Written as
    Σ p̃ᵀ_i (zt_i − zs_i) − (lse_t − lse_s), which equals Σ p̃ᵀ (log p̃ᵀ − log p̃ˢ) because Σ p̃ᵀ = 1,
    so the student enters through one dot product. A row whose set is empty gives 0.
    """
    log_pt = zt - lse_t.unsqueeze(-1)
    if mask is not None:
        log_pt = log_pt.masked_fill(~mask, NEG_INF)
    pt = log_pt.exp()
    # 0 · log 0 = 0: a zero-probability class must not turn an infinite logit into NaN.
    zt_safe = torch.where(pt > 0, zt, 0.0)
    cross = (pt * zt_safe).sum(-1) - (pt * zs).sum(-1)
    nonempty = lse_t > NEG_INF
    return cross - torch.where(nonempty, lse_t - torch.where(nonempty, lse_s, 0.0), 0.0)


def mass_kl(log_mt: torch.Tensor, log_ms: torch.Tensor) -> torch.Tensor:
    """Per-row KL between categorical distributions given as log-masses (B, K); 0 · log 0 = 0."""
    pt = log_mt.exp()
    keep = pt > 0
    diff = torch.where(keep, log_mt - torch.where(keep, log_ms, 0.0), 0.0)
    return (pt * diff).sum(-1)
