"""τ curriculum and KD warm-up weight against the shared vectors and the spec's formula."""

from __future__ import annotations

import pytest

from trkd.distill.methods.trkd import TRKDSettings
from trkd.schedules import kd_warmup_weight, tau_at

KEYS = ("iters_per_epoch", "tau0", "tau1", "gamma", "start_epoch", "stop_epoch")


def test_tau_reproduces_every_shared_vector(vectors):
    assert vectors["tau"], "no tau entries in the shared vectors"
    for entry in vectors["tau"]:
        got = tau_at(entry["iteration"], **{k: entry[k] for k in KEYS})
        assert got == pytest.approx(entry["tau"], rel=1e-6, abs=0), entry


def test_tau_is_constant_outside_the_ramp_and_decreasing_inside():
    n, tau_at = 10, TRKDSettings().tau   # the paper's defaults: 1 → 0.05 over epochs 10–60, γ = 0.001
    assert tau_at(0, n) == 1.0 and tau_at(9 * n - 1, n) == 1.0
    assert tau_at(59 * n, n) == 0.05 and tau_at(10**6, n) == 0.05
    ramp = [tau_at(it, n) for it in range(9 * n, 59 * n)]
    assert all(a > b for a, b in zip(ramp, ramp[1:]))
    # γ^f with γ = 0.001: 1 − γ^0.5 ≈ 0.968 of the way after half the ramp (the fast early drop).
    assert tau_at(34 * n, n) == pytest.approx(1.0 - 0.95 * (1 - 0.001 ** 0.5))


def test_fixed_tau_is_expressible():
    fixed = TRKDSettings(tau0=0.05, tau1=0.05)
    assert {fixed.tau(it, 7) for it in range(0, 1000, 13)} == {0.05}


def test_kd_warmup_weight():
    assert [kd_warmup_weight(e, 4) for e in (1, 2, 4, 5, 100)] == [0.25, 0.5, 1.0, 1.0, 1.0]
    assert kd_warmup_weight(1, 0) == 1.0
