"""TRKD's fast path (trkd_fast/) pinned to the plain reference in trkd.py: the same confusion
set F, and the same terms, on AAM-like and random logits, with ties, at every τ of the
curriculum, both cutoffs and a static top-k set; kd and dkd, which train on the same path,
pinned to their plain formulas in kd.py and dkd.py."""

from __future__ import annotations

import pytest
import torch

from trkd.distill.methods.dkd import dkd_loss, dkd_rows
from trkd.distill.methods.kd import kd_loss, kl_rows
from trkd.distill.methods.trkd import TERMS, reference_partition, reference_terms, term_values
from trkd.distill.methods.trkd_fast.sets import LogitStats
from trkd.distill.teacher import Columns
from trkd.schedules import TAU_GRID


def _aam_like(b=24, c=400, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    cos = torch.randn(b, c, generator=g, dtype=dtype) * 0.08
    y = torch.randint(0, c, (b,), generator=g)
    cos.scatter_(1, torch.randint(0, c, (b, 4), generator=g), 0.4)
    cos.scatter_(1, y[:, None], 0.4)
    t = 32 * cos
    return t + torch.randn(b, c, generator=g, dtype=dtype), t, y


def _ties(b=12, c=40, seed=3):
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(-3, 4, (b, c), generator=g).double()   # many equal logits
    y = torch.randint(0, c, (b,), generator=g)
    return t + torch.randn(b, c, generator=g, dtype=torch.float64), t, y


SETTINGS = [dict(tau=tau) for tau in TAU_GRID if tau < 1] + [
    dict(tau=0.3, cutoff="joint"), dict(tau=0.05, cutoff="joint"), dict(tau=None, topk=1), dict(tau=None, topk=7)]


@pytest.mark.parametrize("batch", [_aam_like, _ties])
@pytest.mark.parametrize("setting", SETTINGS)
def test_fast_partition_is_the_reference_partition(batch, setting):
    s, t, y = batch()
    temperature = 4.0
    stats = LogitStats(s, t, y, temperature, **setting)
    f, cut = reference_partition(Columns(s, t, y, None), setting["tau"], temperature,
                                 setting.get("cutoff", "conditional"), setting.get("topk"))
    assert torch.equal(stats.split.mask, f)
    assert not cut.any()


@pytest.mark.parametrize("setting", SETTINGS)
def test_fast_terms_are_the_reference_terms(setting):
    s, t, y = _aam_like(seed=5)
    temperature = 4.0
    stats = LogitStats(s, t, y, temperature, **setting)
    fast = term_values(stats, list(TERMS))
    ref = reference_terms(s, t, y, stats.split.mask, temperature)
    for name in TERMS:
        torch.testing.assert_close(fast[name], ref[name], rtol=1e-10, atol=1e-12, msg=name)


def test_float32_fast_terms_are_at_least_as_close_to_float64_as_the_plain_reference():
    s, t, y = _aam_like(b=64, c=1000, seed=7)
    f = LogitStats(s, t, y, 4.0, 0.05).split.mask
    exact = reference_terms(s, t, y, f, 4.0)
    fast = term_values(LogitStats(s.float(), t.float(), y, 4.0, confusion=f), list(TERMS))
    plain = reference_terms(s.float(), t.float(), y, f, 4.0)
    for name in ("tm", "cf", "bg", "nckd"):
        err_fast = (fast[name].double() - exact[name]).abs().max()
        err_plain = (plain[name].double() - exact[name]).abs().max()
        assert err_fast <= 4 * err_plain + 1e-9, name


@pytest.mark.parametrize("batch", [_aam_like, _ties])
def test_kd_and_dkd_train_on_the_fast_path_pinned_to_their_plain_formulas(batch):
    """kd_loss and dkd_loss (what training calls) against kl_rows and dkd_rows (the formulas as
    the papers write them): loss and gradient, in float64."""
    s, t, y = batch()
    for temperature in (1.0, 4.0):
        for fast, plain in ((lambda x: kd_loss(x, t, y, temperature)[0],
                             lambda x: kl_rows(x, t, temperature).mean()),
                            (lambda x: dkd_loss(x, t, y, temperature, 1.5, 8.0)[0],
                             lambda x: sum(w * r for w, r in zip((1.5, 8.0), dkd_rows(x, t, y, temperature))).mean())):
            a, b = s.clone().requires_grad_(True), s.clone().requires_grad_(True)
            fa, fb = fast(a), plain(b)
            fa.backward(), fb.backward()
            torch.testing.assert_close(fa, fb, rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-12)
