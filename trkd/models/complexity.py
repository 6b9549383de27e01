"""Model size and compute: parameters and multiply-accumulates per second of audio."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    """Number of parameters (buffers such as batch-norm statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


def macs_per_second(model: nn.Module, feat_dim: int = 80, frames_per_second: int = 100) -> int:
    """MACs of one forward pass on one second of audio (`frames_per_second` frames of a 10-ms
    shift), counted by torch's FlopCounterMode (matrix products and convolutions), MACs = FLOPs/2.

    Element-wise operations (norms, activations, pooling) are not counted, as is customary.
    """
    was_training = model.training
    model.eval()
    param = next(model.parameters(), None)
    feats = torch.zeros(1, frames_per_second, feat_dim,
                        device=param.device if param is not None else None)
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(feats)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def human(n: float, units=(("G", 1e9), ("M", 1e6), ("k", 1e3))) -> str:
    """`2.65e9 -> '2.65 G'`, `3.1e7 -> '31.00 M'`."""
    for suffix, scale in units:
        if n >= scale:
            return f"{n / scale:.2f} {suffix}"
    return f"{n:.0f} "


def describe(model: nn.Module) -> str:
    """Two lines: parameters (M) and MACs per second of audio, as `trkd info` prints them."""
    macs = macs_per_second(model, getattr(model, "feat_dim", 80))
    return f"parameters: {count_params(model) / 1e6:.3f} M\nMACs: {human(macs)} per second of audio"
