"""Distillation losses: the shared reference vectors, the spec's identities, numerics, terms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trkd.losses import (TERMS, LogitStats, confusion_mask, dkd_loss, emb_loss,
                         enskd_loss, imlkd_objective, integrated_gradients, integrated_input,
                         kd_loss, terms_loss, mlkd_loss, term_values, trkd_loss)

EXACT = dict(rel=1e-6, abs=1e-12)


def _tensors(entry):
    def f64(name):
        return torch.tensor(entry[name], dtype=torch.float64)
    return f64("student_logits"), f64("teacher_logits"), torch.tensor(entry["target"])


def _topk(entry):
    confusion = entry["confusion"]
    return int(confusion.split(":")[1]) if confusion.startswith("topk:") else None


def _run(entry):
    """(loss, {part: value}) of the direct function for a vector entry."""
    s, t, y = _tensors(entry)
    method = entry["method"]
    if method == "kd":
        loss, parts = kd_loss(s, t, y, entry["T"])
        return loss, {}
    if method == "dkd":
        loss, parts = dkd_loss(s, t, y, entry["T"], entry["alpha"], entry["beta"])
    else:
        loss, parts = trkd_loss(s, t, y, entry["tau"], entry["T"], entry["lambda_m"],
                                entry["lambda_f"], entry["lambda_b"], entry["cutoff"], _topk(entry))
    return loss, {k: v for k, v in parts._asdict().items() if k != "f_size"}


def test_vectors_cover_every_setting(vectors):
    entries = vectors["losses"]
    assert {e["method"] for e in entries} == {"kd", "dkd", "trkd"}
    trkd = [e for e in entries if e["method"] == "trkd"]
    assert {e["cutoff"] for e in trkd} == {"conditional", "joint"}
    assert any(_topk(e) for e in trkd) and any(e["lambda_b"] for e in trkd)
    assert any(e["method"] == "dkd" and e["T"] == 1.0 and e["beta"] == 2.0 for e in entries)


def test_every_loss_vector(vectors):
    for i, entry in enumerate(vectors["losses"]):
        loss, parts = _run(entry)
        assert loss.dtype == torch.float64
        assert float(loss) == pytest.approx(entry["loss"], **EXACT), (i, "loss")
        for name, value in parts.items():
            assert float(value) == pytest.approx(entry[name], **EXACT), (i, name)


def test_every_confusion_set_vector(vectors):
    for i, entry in enumerate(v for v in vectors["losses"] if v["method"] == "trkd"):
        s, t, y = _tensors(entry)
        mask = confusion_mask(t, y, entry["tau"], entry["T"], entry["cutoff"], _topk(entry))
        assert [row.nonzero().flatten().tolist() for row in mask] == entry["confusion_set"], i
        _, parts = trkd_loss(s, t, y, entry["tau"], entry["T"], cutoff=entry["cutoff"],
                             topk=_topk(entry))
        sizes = [len(c) for c in entry["confusion_set"]]
        assert float(parts.f_size) == pytest.approx(np.mean(sizes))


def test_enskd_preset_matches_its_vectors(vectors):
    for entry in vectors["losses"]:
        if entry["method"] == "dkd" and (entry["T"], entry["alpha"], entry["beta"]) == (1, 1, 2):
            loss, _ = enskd_loss(*_tensors(entry))
            assert float(loss) == pytest.approx(entry["loss"], **EXACT)


def _random(b=6, c=40, seed=0, scale=3.0, dtype=torch.float64, ties=False):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(b, c, generator=g, dtype=torch.float64) * scale
    t = torch.randn(b, c, generator=g, dtype=torch.float64) * scale
    if ties:  # integer teacher logits: many equal probabilities, at every rank
        t = torch.randint(-3, 3, (b, c), generator=g).double()
    return s.to(dtype), t.to(dtype), torch.randint(0, c, (b,), generator=g)


def _reference_mask(t, y, tau, temperature, cutoff, topk):
    """A slow, obvious F(τ): a stable full sort per row in float64 numpy."""
    out = np.zeros(t.shape, dtype=bool)
    for b, (row, target) in enumerate(zip(t.numpy() / temperature, y.tolist())):
        e = np.exp(row - row.max())
        p = e / e.sum()
        others = [i for i in range(len(row)) if i != target]
        order = sorted(others, key=lambda i: (-row[i], i))
        if topk is not None:
            out[b, order[:topk]] = True
            continue
        mass = p[order] / (p[others].sum() if cutoff == "conditional" else 1.0)
        before = 0.0
        for i, m in zip(order, mass):
            if not before < tau:
                break
            out[b, i] = True
            before += m
    return torch.from_numpy(out)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("cutoff", ["conditional", "joint"])
def test_confusion_mask_matches_a_full_sort(ties, cutoff):
    # C = 300 with a flat teacher makes F larger than the first top-k, so k has to grow.
    s, t, y = _random(b=8, c=300, seed=3, scale=0.3, ties=ties)
    for tau in (1e-3, 0.05, 0.3, 0.5, 0.9, 0.999):
        got = confusion_mask(t, y, tau, temperature=2.0, cutoff=cutoff)
        assert torch.equal(got, _reference_mask(t, y, tau, 2.0, cutoff, None)), tau
    for k in (1, 5, 64):
        got = confusion_mask(t, y, None, temperature=2.0, topk=k)
        assert torch.equal(got, _reference_mask(t, y, None, 2.0, cutoff, k)), k


def test_confusion_mask_edge_settings():
    s, t, y = _random(b=4, c=12)
    nontargets = torch.ones(4, 12, dtype=torch.bool).scatter_(1, y[:, None], False)
    assert torch.equal(confusion_mask(t, y, 1.0), nontargets)
    assert torch.equal(confusion_mask(t, y, None, topk=11), nontargets)
    assert (confusion_mask(t, y, 1e-9).sum(-1) == 1).all()  # F always holds the top-1
    # joint cutoff, target mass 1 − 1e-300: the non-targets never reach τ, F is all of them
    saturated = t.scatter(1, y[:, None], 800.0)
    assert torch.equal(confusion_mask(saturated, y, 0.3, 1.0, cutoff="joint"), nontargets)
    assert torch.equal(confusion_mask(saturated.float(), y, 0.3, 1.0, cutoff="joint"), nontargets)
    with pytest.raises(ValueError, match="valid: conditional, joint"):
        confusion_mask(t, y, 0.5, cutoff="marginal")
    with pytest.raises(ValueError, match="tau must be > 0"):
        confusion_mask(t, y, None)


def test_trkd_at_tau_one_is_dkd():
    s, t, y = _random(b=16, c=50, seed=1)
    for lm, lf in ((1.0, 8.0), (0.5, 3.0)):
        trkd, parts = trkd_loss(s, t, y, 1.0, 4.0, lm, lf, lambda_b=2.0)
        dkd, dparts = dkd_loss(s, t, y, 4.0, alpha=lm, beta=lf)
        # Two codes (DKD's plain formula, TRKD's fast path): equal to float64 rounding.
        for a, b in ((trkd, dkd), (parts.tm, dparts.tckd), (parts.cf, dparts.nckd)):
            torch.testing.assert_close(a, b, rtol=1e-13, atol=0)
        assert float(parts.bg) == 0.0 and float(parts.f_size) == 49


@pytest.mark.parametrize("setting", [dict(tau=0.05), dict(tau=0.5), dict(tau=0.3, cutoff="joint"),
                                     dict(tau=None, topk=3), dict(tau=0.7)])
def test_kl_chain_rule_per_example(setting):
    s, t, y = _random(b=12, c=30, seed=2, ties=setting.get("tau") == 0.7)
    temperature = 2.5
    stats = LogitStats(s, t, y, temperature, **setting)
    v = term_values(stats, ["kl", "tm", "cf", "bg"])
    p = torch.softmax(t / temperature, -1)
    f = confusion_mask(t, y, setting["tau"], temperature, setting.get("cutoff", "conditional"),
                       setting.get("topk"))
    background = ~f.scatter(1, y[:, None], True)
    p_f, p_b = (p * f).sum(-1), (p * background).sum(-1)
    rhs = v["tm"] + p_f * v["cf"] + p_b * v["bg"]
    torch.testing.assert_close(v["kl"], rhs, rtol=1e-10, atol=1e-12)
    assert torch.equal(v["f_size"], f.sum(-1))


def test_gradients_match_finite_differences():
    s, t, y = _random(b=3, c=9, seed=4, ties=True)
    s.requires_grad_(True)
    for fn in (lambda x: trkd_loss(x, t, y, 0.4, 2.0, lambda_b=1.0)[0],
               lambda x: dkd_loss(x, t, y)[0], lambda x: kd_loss(x, t, y)[0]):
        assert torch.autograd.gradcheck(fn, (s,))


def test_saturated_logits_give_finite_gradients_in_float32():
    b, c = 8, 100
    t = torch.zeros(b, c)
    y = torch.arange(b)
    t[torch.arange(b), y] = 60.0
    s = torch.zeros(b, c)
    s[torch.arange(b), (y + 1) % c] = 60.0  # the student is confidently wrong
    s.requires_grad_(True)
    calls = [lambda: kd_loss(s, t, y, 1.0), lambda: dkd_loss(s, t, y, 1.0),
             lambda: trkd_loss(s, t, y, 0.05, 1.0, lambda_b=1.0),
             lambda: trkd_loss(s, t, y, 1.0, 1.0, lambda_b=1.0)]
    for call in calls:
        s.grad = None
        loss, parts = call()
        loss.backward()
        assert torch.isfinite(loss) and loss > 0
        assert all(torch.isfinite(p).all() for p in parts)
        assert torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0


def test_zero_teacher_probability_contributes_zero():
    s, t, y = _random(b=4, c=10, seed=5)
    t[:, 7] = float("-inf")
    y[y == 7] = 0
    s.requires_grad_(True)
    for loss, _ in (kd_loss(s, t, y), dkd_loss(s, t, y), trkd_loss(s, t, y, 0.5, lambda_b=1.0)):
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(s.grad).all()
    # torch's kl_div gives NaN for the p^T = 0 class; zeroing it is the 0 · log 0 = 0 convention.
    with torch.no_grad():
        reference = torch.nn.functional.kl_div(torch.log_softmax(s / 4, -1),
                                               torch.softmax(t / 4, -1), reduction="none")
        reference = reference.nan_to_num().sum(-1).mean() * 16
    assert float(kd_loss(s, t, y)[0].detach()) == pytest.approx(float(reference), rel=1e-10)


def test_half_precision_inputs_are_computed_in_float32():
    s, t, y = _random(b=16, c=64, seed=6, dtype=torch.float32)
    s16, t16 = s.half(), t.half()
    for fn in (lambda a, b: kd_loss(a, b, y), lambda a, b: dkd_loss(a, b, y),
               lambda a, b: trkd_loss(a, b, y, 0.3, lambda_b=1.0)):
        ref, _ = fn(s16.float(), t16.float())
        got, parts = fn(s16, t16)
        assert got.dtype == torch.float32 and all(p.dtype == torch.float32 for p in parts)
        assert float(got) == pytest.approx(float(ref), rel=1e-6)
        assert float(fn(s, t)[0]) == pytest.approx(float(got), rel=5e-2)


def test_teacher_gets_no_gradient():
    s, t, y = _random(b=4, c=20, seed=7)
    s.requires_grad_(True)
    t.requires_grad_(True)
    for loss, _ in (kd_loss(s, t, y), dkd_loss(s, t, y), trkd_loss(s, t, y, 0.2, lambda_b=1.0)):
        loss.backward()
    assert t.grad is None and s.grad is not None


def test_ablation_term_sets_are_weighted_sums_of_the_parts():
    s, t, y = _random(b=10, c=25, seed=9)
    for weights in ({"tm": 1, "nckd": 8}, {"tckd": 1, "cf": 8}, {"kl": 1, "cf": 2, "bg": 1},
                    {"tm": 1, "cf": 8, "bg": 8}):
        loss, parts = terms_loss(s, t, y, weights, 4.0, tau=0.2)
        expected = sum(w * parts[n] for n, w in weights.items())
        assert float(loss) == pytest.approx(float(expected), rel=1e-12)
        assert ("f_size" in parts) == bool({"tm", "cf", "bg"} & set(weights))
    with pytest.raises(ValueError, match="valid: " + ", ".join(TERMS)):
        terms_loss(s, t, y, {"tm": 1, "ncdk": 8}, 4.0)


def test_large_class_count_runs():
    s, t, y = _random(b=4, c=17982, seed=10, dtype=torch.float32)
    loss, parts = trkd_loss(s, t, y, 0.05)
    assert torch.isfinite(loss) and 1 <= float(parts.f_size) < 17981


# Embedding-level losses.

def test_emb_loss_zero_for_identical_embeddings_and_head_gets_gradient():
    e = torch.randn(5, 16)
    for distance in ("cosine", "mse"):
        assert float(emb_loss(e, 3 * e, distance=distance)) == pytest.approx(0.0, abs=1e-6)
    proj = torch.nn.Linear(8, 16)
    loss = emb_loss(torch.randn(5, 8), e, proj)
    loss.backward()
    assert proj.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="pass a projection"):
        emb_loss(torch.randn(5, 8), e)
    with pytest.raises(ValueError, match="valid: cosine, mse"):
        emb_loss(e, e, distance="l1")


def test_mlkd_target_is_concat_of_normalised_levels():
    levels = [torch.randn(4, 6), torch.randn(4, 3)]
    target = torch.cat([levels[0] / levels[0].norm(dim=1, keepdim=True),
                        levels[1] / levels[1].norm(dim=1, keepdim=True)], 1)
    head = torch.nn.Linear(5, 9)
    student = torch.randn(4, 5)
    loss = mlkd_loss(student, levels, head)
    expected = 1 - torch.cosine_similarity(head(student), target, dim=1).mean()
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    loss.backward()
    assert head.weight.grad.abs().sum() > 0
    assert float(mlkd_loss(target, levels, torch.nn.Identity())) == pytest.approx(0, abs=1e-6)


def test_integrated_gradients_completeness():
    x = torch.randn(3, 7, 5, dtype=torch.float64)
    y = torch.tensor([0, 2, 1])
    w = torch.randn(4, 35, dtype=torch.float64)
    linear = lambda f: f.flatten(1) @ w.T + 1.0  # noqa: E731
    quadratic = lambda f: (f.flatten(1) @ w.T) ** 2  # noqa: E731 (∇ linear in α: midpoint exact)
    for fn in (linear, quadratic):
        ig = integrated_gradients(fn, x, y, steps=8)
        gap = (fn(x) - fn(torch.zeros_like(x))).gather(1, y[:, None]).squeeze(1)
        torch.testing.assert_close(ig.flatten(1).sum(1), gap)
    x_tilde = integrated_input(x, ig)
    ratio = x_tilde / x
    assert ratio.min() >= 0.5 - 1e-12 and ratio.flatten(1).amax(1).sub(1.5).abs().max() < 1e-12
    assert torch.equal(integrated_input(x, torch.zeros_like(x)), 0.5 * x)


def test_imlkd_objective_levels():
    s, t, _ = _random(b=6, c=11, seed=11)
    loss, parts = imlkd_objective(t.clone(), t)
    assert float(loss) == pytest.approx(0.0, abs=1e-10)
    s.requires_grad_(True)
    t.requires_grad_(True)
    loss, parts = imlkd_objective(s, t)
    ps, pt = torch.softmax(s, -1), torch.softmax(t, -1)
    cls = (pt.T @ pt - ps.T @ ps).pow(2).sum() / 11
    batch = (pt @ pt.T - ps @ ps.T).pow(2).sum() / 6
    instance = sum(kd_loss(s, t, None, temperature)[0] for temperature in (1, 2, 4))
    for got, want in zip(parts, (instance, cls, batch)):
        assert float(got) == pytest.approx(float(want.detach()), rel=1e-9)
    loss.backward()
    assert t.grad is None and torch.isfinite(s.grad).all()


def test_sets_far_below_the_shared_shift_are_summed_exactly():
    # float32 at T = 1: the student's F and the teacher's B sit ~60 below their networks' top
    # non-target, where one shared exponential underflows; the float64 run is the reference.
    b, c = 6, 40
    g = torch.Generator().manual_seed(12)
    t = torch.randn(b, c, generator=g, dtype=torch.float64)
    y = torch.arange(b)
    order = t.scatter(1, y[:, None], float("inf")).argsort(-1, descending=True)
    t.scatter_(1, order[:, 4:], -70.0 + t.gather(1, order[:, 4:]))  # B far below F
    s = torch.randn(b, c, generator=g, dtype=torch.float64)
    s.scatter_(1, order[:, 1:4], -60.0 + s.gather(1, order[:, 1:4]))  # student's F far below
    s64 = s.clone().requires_grad_(True)
    s32 = s.float().requires_grad_(True)
    ref, ref_parts = trkd_loss(s64, t, y, 0.99, 1.0, lambda_b=1.0)
    got, got_parts = trkd_loss(s32, t.float(), y, 0.99, 1.0, lambda_b=1.0)
    assert float(ref_parts.f_size) == 3
    for a, r in zip(got_parts[:3], ref_parts[:3]):
        assert float(a) == pytest.approx(float(r), rel=1e-4)
    ref.backward()
    got.backward()
    torch.testing.assert_close(s32.grad.double(), s64.grad, rtol=1e-3, atol=1e-6)


# (teacher scale, τ) -> how the split holds the smaller set, and whether the other set's sums
# need the exact rows (it holds under a quarter of nt's sum, where a difference would cancel)
REGIMES = {(1.0, 0.05): ("F", "indices", False), (1.0, 0.6): ("F", "mask", False),
           (1.0, 0.995): ("B", "indices", False), (1.0, 0.8): ("B", "mask", False),
           (6.0, 0.8): ("F", "indices", True)}


@pytest.mark.parametrize("scale, tau", list(REGIMES))
def test_set_sums_by_gather_mask_or_difference_keep_their_digits(scale, tau):
    # The smaller of F and B is summed directly (gathered on its indices, or a dot product with
    # its mask when it is a sizeable part of the classes), the other as Σ_nt minus it, except in
    # rows where that would cancel; float32 must match float64 in value and gradient.
    b, c = 64, 300
    g = torch.Generator().manual_seed(3)
    t = torch.randn(b, c, generator=g, dtype=torch.float64) * 3.0 * scale
    y = torch.randint(0, c, (b,), generator=g)
    s = t + torch.randn(b, c, generator=g, dtype=torch.float64)
    stats = LogitStats(s.float(), t.float(), y, 4.0, tau)
    f = stats.split.mask
    for part, mask in ((stats.F, f), (stats.B, ~(stats.targets | f))):
        torch.testing.assert_close(part.sums.s, (stats.s.e * mask).sum(-1), rtol=1e-6, atol=0)
        torch.testing.assert_close(part.sums.t, (stats.t.e * mask).sum(-1), rtol=1e-6, atol=0)
    direct, held, exact_rows = REGIMES[(scale, tau)]
    assert stats.split.gathers_f == (direct == "F")
    assert (stats.split.held is not None) == (held == "mask")
    rest = stats.B if direct == "F" else stats.F
    assert bool((rest.sums.t < 0.25 * stats.nt.sums.t).any()) == exact_rows
    s64, s32 = s.clone().requires_grad_(True), s.float().requires_grad_(True)
    ref, _ = trkd_loss(s64, t, y, tau, lambda_b=1.0)
    got, _ = trkd_loss(s32, t.float(), y, tau, lambda_b=1.0)
    assert float(got.detach()) == pytest.approx(float(ref.detach()), rel=1e-5)
    ref.backward()
    got.backward()
    torch.testing.assert_close(s32.grad.double(), s64.grad, rtol=1e-4, atol=1e-7)
