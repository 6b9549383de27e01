"""TRKD's readings beyond the published one, each against a plain float64 reference: CF and BG
weighted by the teacher's conditional mass of their set, and the τ ramp placed as a share of the run."""

from __future__ import annotations

import pytest
import torch

from trkd.distill.methods.trkd import TRKDSettings, trkd_loss
from trkd.errors import InputError
from trkd.losses import LogitStats, confusion_mask, dkd_loss, term_values


def _random(b=10, c=60, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(b, c, generator=g, dtype=torch.float64) * scale
    t = torch.randn(b, c, generator=g, dtype=torch.float64) * scale
    return s, t, torch.randint(0, c, (b,), generator=g)


def _reference(s, t, y, tau, temperature):
    """(P̂ᵀ_F, KL over F, P̂ᵀ_B, KL over B) per example, with plain masked softmaxes."""
    f = confusion_mask(t, y, tau, temperature)
    b = ~f.scatter(1, y[:, None], True)
    pt = torch.softmax(t / temperature, -1)
    nt = pt.sum(-1) - pt.gather(1, y[:, None]).squeeze(1)

    def conditional(mask):
        lt = torch.log_softmax((t / temperature).masked_fill(~mask, -torch.inf), -1)
        ls = torch.log_softmax((s / temperature).masked_fill(~mask, -torch.inf), -1)
        kl = torch.where(mask, lt.exp() * (lt - ls), 0.0).sum(-1)
        return torch.where(mask.any(-1), kl, 0.0) * temperature ** 2
    return (pt * f).sum(-1) / nt, conditional(f), (pt * b).sum(-1) / nt, conditional(b)


@pytest.mark.parametrize("tau", [0.05, 0.3, 0.7])
def test_mass_weighted_terms_match_a_plain_reference(tau):
    s, t, y = _random(seed=int(tau * 100), scale=0.7)   # flat: F holds several classes at every τ
    v = term_values(LogitStats(s, t, y, 4.0, tau), ["cfw", "bgw", "cf", "bg"])
    w_f, cf, w_b, bg = _reference(s, t, y, tau, 4.0)
    torch.testing.assert_close(v["cf"], cf, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(v["cfw"], w_f * cf, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(v["bgw"], w_b * bg, rtol=1e-10, atol=1e-12)
    assert float((w_f * cf - cf).abs().max()) > 1e-3   # the weight changes the term


@pytest.mark.parametrize("tau", [0.05, 0.5])
def test_weighted_cf_and_bg_with_the_split_give_nckd(tau):
    # KL chain rule on the non-targets: NCKD = P̂_F·CF + P̂_B·BG + T²·KL([P̂_F, P̂_B]ᵀ ‖ [P̂_F, P̂_B]ˢ).
    s, t, y = _random(seed=7)
    temperature = 2.0
    v = term_values(LogitStats(s, t, y, temperature, tau), ["nckd", "cfw", "bgw"])
    f = confusion_mask(t, y, tau, temperature)
    nontarget = ~torch.zeros_like(f).scatter(1, y[:, None], True)

    def split(z):
        p = torch.softmax((z / temperature).masked_fill(~nontarget, -torch.inf), -1)
        return (p * f).sum(-1), (p * (nontarget & ~f)).sum(-1)
    (ft, bt), (fs, bs) = split(t), split(s)
    split_kl = temperature ** 2 * (ft * (ft / fs).log() + torch.where(bt > 0, bt * (bt / bs).log(), 0.0))
    torch.testing.assert_close(v["nckd"], v["cfw"] + v["bgw"] + split_kl, rtol=1e-10, atol=1e-12)


def test_conditional_mass_weight_keeps_trkd_equal_to_dkd_at_tau_one():
    s, t, y = _random(seed=3)
    loss, parts = trkd_loss(s, t, y, 1.0, 4.0, 1.0, 8.0, mass_weight="conditional")
    dkd, dparts = dkd_loss(s, t, y, 4.0, alpha=1.0, beta=8.0)
    torch.testing.assert_close(loss, dkd, rtol=1e-12, atol=0)
    torch.testing.assert_close(parts.cf, dparts.nckd, rtol=1e-12, atol=0)


def test_mass_weight_swaps_the_terms_of_the_named_weights_and_of_terms():
    assert TRKDSettings(mass_weight="conditional", lambda_b=8.0).weights() == {"tm": 1.0, "cfw": 8.0, "bgw": 8.0}
    ablation = TRKDSettings(terms={"tckd": 1, "cf": 8}, mass_weight="conditional")
    assert ablation.weights() == {"tckd": 1.0, "cfw": 8.0}
    assert TRKDSettings().weights() == {"tm": 1.0, "cf": 8.0, "bg": 8.0}     # the background term kept
    assert TRKDSettings(lambda_b=0.0).weights() == {"tm": 1.0, "cf": 8.0, "bg": 0.0}   # the paper's


def test_ramp_as_a_share_of_the_run():
    n, epochs = 10, 20   # 200 iterations: the ramp from iteration 12 (6 %) to 80 (40 %)
    s = TRKDSettings(start_fraction=0.06, stop_fraction=0.4)
    assert s.tau(11, n, epochs) == 1.0 and s.tau(12, n, epochs) == 1.0
    assert s.tau(13, n, epochs) < 1.0
    assert s.tau(80, n, epochs) == 0.05 and s.tau(79, n, epochs) > 0.05
    mid = s.tau(46, n, epochs)
    assert mid == pytest.approx(1.0 - 0.95 * (1 - 0.001 ** 0.5))
    # The same shares in a 150-epoch run put the ramp where the paper's epochs 10 and 60 do.
    paper = TRKDSettings(start_fraction=9 / 150, stop_fraction=59 / 150)
    assert [paper.tau(it, n, 150) for it in (89, 90, 300, 589, 590)] == \
        [TRKDSettings().tau(it, n) for it in (89, 90, 300, 589, 590)]
    with pytest.raises(ValueError, match="number of epochs"):
        s.tau(5, n)


@pytest.mark.parametrize("values, message", [
    ({"start_fraction": 0.1}, "go together"),
    ({"start_fraction": 0.5, "stop_fraction": 0.2}, "start_fraction < stop_fraction"),
    ({"mass_weight": "joint"}, "must be one of none, conditional"),
])
def test_bad_readings_are_one_line(values, message):
    s = TRKDSettings(**values)
    with pytest.raises(InputError, match=message):
        s.check("conf/x.yaml", "kd.trkd", {}, values)
