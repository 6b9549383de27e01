"""The confusion set's two routes (by position when F is few, by mask otherwise) against a full sort."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from test_losses import _reference_mask
import trkd.distill.methods.trkd_fast.partition as confusion
from trkd.losses import LogitStats, confusion_mask

TAUS = (1e-9, 0.021, 0.1003, 0.3007, 0.5003, 0.9001, 0.999, 0.99999)   # none a sum of tied masses


def _teachers(c: int, dtype: torch.dtype):
    """Adversarial teacher logits (B = 8): ties at every rank (integers), float16-rounded
    values, a flat teacher (every non-target tied), −0.0 beside +0.0, negative and huge spreads."""
    g = torch.Generator().manual_seed(c)
    flat = torch.randn(8, c, generator=g, dtype=torch.float64) * 0.3
    cases = {
        "integer ties": torch.randint(-3, 3, (8, c), generator=g).double(),
        "float16 ties": (torch.randn(8, c, generator=g) * 2.0).half().double(),
        "all tied": torch.zeros(8, c, dtype=torch.float64),
        "signed zeros": torch.where(torch.rand(8, c, generator=g) < 0.5, -0.0, 0.0).double()
        + torch.randint(0, 2, (8, c), generator=g).double() * -1.0,
        "flat": flat,
        "peaked": torch.randn(8, c, generator=g, dtype=torch.float64) * 12.0,
    }
    target = torch.randint(0, c, (8,), generator=g)
    return {name: (t.to(dtype), target) for name, t in cases.items()}


def _routes(monkeypatch):
    """Record which comparison each call of `_flat_nonzero` made: le = by position, eq = by mask."""
    seen = []
    inner = confusion._flat_nonzero

    def spy(compare, x, value):
        seen.append(compare.__name__)
        return inner(compare, x, value)
    monkeypatch.setattr(confusion, "_flat_nonzero", spy)
    return seen


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("c", [13, 300])
def test_every_route_gives_the_full_sort_set(monkeypatch, dtype, c):
    seen = _routes(monkeypatch)
    for name, (t, y) in _teachers(c, dtype).items():
        for tau in TAUS:
            for cutoff in ("conditional", "joint"):
                got = confusion_mask(t, y, tau, temperature=2.0, cutoff=cutoff)
                want = _reference_mask(t.double(), y, tau, 2.0, cutoff, None)
                assert torch.equal(got, want), (name, tau, cutoff)
                # The training path (e and its shift from LogitStats) gives the same set.
                if cutoff == "conditional":
                    assert torch.equal(LogitStats(t, t, y, 2.0, tau).split.mask, want), (name, tau)
    # Both routes ran, and the by-position one also fell back to a mask (all tied, τ large),
    # and a mask was turned into indices (gt) for a few held classes.
    assert {"le", "eq", "gt"} <= set(seen), set(seen)


def test_by_position_route_falls_back_to_the_mask_when_the_bound_underestimates(monkeypatch):
    # Every non-target tied: nothing lies above the crossing bucket (bound 0), so the by-position
    # route starts, but half the classes are chosen inside the bucket: F must be a mask.
    seen = _routes(monkeypatch)
    t, y = torch.zeros(4, 200), torch.tensor([0, 5, 199, 7])
    stats = LogitStats(t, t, y, 4.0, 0.5)
    assert stats.split.held is not None and seen == ["le"]
    assert torch.equal(stats.split.mask, _reference_mask(t.double(), y, 0.5, 4.0, "conditional", None))
    assert stats.split.size.tolist() == [100] * 4   # the lowest indices win the ties


def test_empty_batch():
    t = torch.zeros(0, 50)
    y = torch.zeros(0, dtype=torch.long)
    assert confusion_mask(t, y, 0.5).shape == (0, 50)


@pytest.mark.parametrize("cols", [1, 7, 8, 13, 64, 1001])
def test_flat_nonzero_is_nonzero_on_the_flat_mask(cols):
    g = torch.Generator().manual_seed(cols)
    for density in (0.0, 0.01, 0.5, 1.0):
        x = (torch.rand(5, cols, generator=g) < density).int()
        got = confusion._flat_nonzero(torch.eq, x, 1)
        assert torch.equal(got, (x.view(-1) == 1).nonzero().squeeze(1)), density


def test_rank_order_is_row_then_key_descending_then_given_order():
    tiny = float(np.finfo(np.float32).smallest_subnormal)
    values = [0.0, -0.0, 1.0, -1.0, tiny, -tiny, 3e38, -3e38, float("-inf"), 1.0, -0.0, 2.5]
    z32 = torch.tensor(values * 3, dtype=torch.float32)
    r = torch.arange(3).repeat_interleave(len(values))
    for z in (z32, z32.double()):
        order = confusion._rank_order(z, r).tolist()
        want = sorted(range(len(z)), key=lambda i: (int(r[i]), -float(z[i]), i))
        assert order == want, z.dtype
