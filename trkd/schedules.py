"""Per-iteration schedules: τ curriculum, KD warm-up weight, learning rate, AAM margin.

Every schedule is a pure function of the 0-based global iteration `it` and the number of
iterations per epoch `n`; epochs in arguments are 1-based, as in the configs and the paper.
Nothing here reads a global epoch counter.
"""

from __future__ import annotations

import math

# τ values of the curriculum 1 → 0.05 at which |F| and TRKD's cost are reported (trkd
# confusion-sizes, bench/losses.py's sweep).
TAU_GRID = (0.9, 0.7, 0.5, 0.3, 0.2, 0.1, 0.05)


def _epoch_start(epoch: int, n: int) -> int:
    """First 0-based iteration of 1-based `epoch`."""
    return (epoch - 1) * n


def tau_at(iteration: int, iters_per_epoch: int, tau0: float, tau1: float, gamma: float,
           start_epoch: int, stop_epoch: int) -> float:
    """TRKD's confusion cutoff τ (spec: "The τ curriculum"; defaults: `TRKDSettings`).

    τ = τ0 before epoch `start_epoch`, τ1 from epoch `stop_epoch`, and in between
    τ0 + (τ1 − τ0)(1 − γ^f) with f the elapsed fraction: a fast early drop that slows, so the
    student sees the hard non-targets focused on gradually. τ0 = τ1 expresses a fixed τ.
    """
    return tau_between(iteration, _epoch_start(start_epoch, iters_per_epoch),
                       _epoch_start(stop_epoch, iters_per_epoch), tau0, tau1, gamma)


def tau_between(iteration: int, t_s: int, t_e: int, tau0: float, tau1: float, gamma: float) -> float:
    """The curriculum with its ramp between 0-based iterations `t_s` and `t_e` (`tau_at` places
    them at epoch starts; a share of the run places them anywhere)."""
    if iteration < t_s:
        return float(tau0)
    if iteration >= t_e:
        return float(tau1)
    f = (iteration - t_s) / (t_e - t_s)
    return tau0 + (tau1 - tau0) * (1.0 - gamma ** f)


def share_start(share: float, iters_per_epoch: int, epochs: int) -> int:
    """The 0-based iteration after `share` (0–1) of a run of `epochs` epochs."""
    return int(round(share * iters_per_epoch * epochs))


def kd_warmup_weight(epoch: int, warmup_epochs: int) -> float:
    """w(e) = min(e / W, 1) for 1-based epoch e; W = 0 disables the warm-up (weight 1)."""
    if warmup_epochs <= 0:
        return 1.0
    return min(epoch / warmup_epochs, 1.0)


def lr_at(iteration: int, iters_per_epoch: int, epochs: int, lr: float = 0.1,
          final_lr: float = 5e-5, warmup_epochs: float = 6) -> float:
    """Linear warm-up 0 → `lr` over `warmup_epochs`, then exponential decay reaching `final_lr`
    at the last iteration (WeSpeaker's schedule for ECAPA/ResNet on VoxCeleb)."""
    total = max(epochs * iters_per_epoch, 1)
    warm = int(round(warmup_epochs * iters_per_epoch))
    if iteration < warm:
        return lr * (iteration + 1) / warm
    frac = (iteration - warm) / max(total - warm - 1, 1)
    return lr * math.exp(math.log(final_lr / lr) * min(frac, 1.0))


# WeSpeaker's exponential margin ramp: the fraction 1 − γ^f of the margin at fraction f of the ramp
MARGIN_GAMMA = 1e-3
MARGIN_RAMPS = ("linear", "exp")


def margin_at(iteration: int, iters_per_epoch: int, margin: float = 0.2,
              start_epoch: int = 20, stop_epoch: int = 40, ramp: str = "linear") -> float:
    """AAM margin: 0 before `start_epoch`, growing to `margin` at `stop_epoch`, then constant.

    A margin from the first step keeps a randomly initialised network from separating classes
    at all. With f the elapsed fraction of the ramp (per iteration):
    `linear`: m·f (trkd's default);
    `exp`: m·(1 − γ^f) / (1 − γ), γ = 1e-3 — WeSpeaker's exponential ramp m·(1 − γ^f), rescaled
    so that it reaches m at f = 1 instead of stepping from 0.999·m (the two differ by at most
    m·γ = 0.0002 for m = 0.2). It rises fast and then flattens: at f = 1/4 it is already
    0.823·m (linear: 0.25·m), 0.115 above linear for m = 0.2; at f = 1/2, 0.969·m.
    """
    if ramp not in MARGIN_RAMPS:
        raise ValueError(f"unknown margin ramp {ramp!r}; valid: {', '.join(MARGIN_RAMPS)}")
    t_s, t_e = _epoch_start(start_epoch, iters_per_epoch), _epoch_start(stop_epoch, iters_per_epoch)
    if iteration < t_s:
        return 0.0
    if iteration >= t_e or t_e <= t_s:
        return float(margin)
    f = (iteration - t_s) / (t_e - t_s)
    if ramp == "exp":
        return margin * (1.0 - MARGIN_GAMMA ** f) / (1.0 - MARGIN_GAMMA)
    return margin * f
