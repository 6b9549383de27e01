"""A teacher known only at its top (trkd/losses/sparse.py) against the full logits, in float64."""

import pytest
import torch

from trkd.losses import dkd_loss, kd_loss
from trkd.distill.methods.trkd import reference_partition
from trkd.losses import confusion_mask
from trkd.losses.sparse import from_dense, pack, reduce, row_length, unpack

T = 4.0


def aam_like(b: int, c: int, seed: int, confusable: int = 6):
    """s·cos θ logits of a trained AAM head: target ≈ 0.6 − margin, a few confusable ≈ 0.4, rest ≈ 0."""
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, c, (b,), generator=g)
    cos = torch.randn(b, c, generator=g, dtype=torch.float64) * 0.08
    for i in range(b):
        close = torch.randperm(c, generator=g)[:confusable]
        cos[i, close] = 0.4 + 0.05 * torch.randn(confusable, generator=g, dtype=torch.float64)
        cos[i, target[i]] = 0.6 - 0.2
    return 32.0 * cos, target


def lumped_kl(student, teacher, target, index, temperature):
    """KL over {y} ∪ K ∪ {R} straight from the full softmaxes: R's probabilities summed."""
    ps = torch.softmax(student / temperature, 1)
    pt = torch.softmax(teacher / temperature, 1)
    keep = torch.cat([target.unsqueeze(1), index], 1)
    rest_s = 1 - ps.gather(1, keep).sum(1, keepdim=True)
    rest_t = 1 - pt.gather(1, keep).sum(1, keepdim=True)
    qs, qt = ps.gather(1, keep), pt.gather(1, keep)
    if keep.shape[1] < student.shape[1]:
        qs, qt = torch.cat([qs, rest_s], 1), torch.cat([qt, rest_t], 1)
    return temperature ** 2 * (qt * (qt.log() - qs.log())).sum(1).mean()


def test_pack_unpack_round_trip_and_row_length():
    teacher, target = aam_like(8, 300, 0)
    sp = from_dense(teacher, target, 16, (1.0, 4.0))
    rows = pack(sp)
    assert rows.dtype == torch.float32 and rows.shape == (8, row_length(16, (1.0, 4.0))) == (8, 35)
    back = unpack(rows, target, 16, (1.0, 4.0), 300)
    assert torch.equal(back.index, sp.index)
    assert torch.allclose(back.values.double(), sp.values, rtol=1e-6)
    with pytest.raises(ValueError, match="expected 35"):
        unpack(rows[:, :-1], target, 16, (1.0, 4.0), 300)


@pytest.mark.parametrize("k", [4, 32, 299])
def test_kd_from_the_top_is_the_lumped_kd(k):
    teacher, target = aam_like(16, 300, 1)
    student = torch.randn(16, 300, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * 3
    sp = from_dense(teacher, target, k, (T,))
    red = reduce(student, sp, target, T)
    got, _ = kd_loss(red.student, red.teacher, red.target, temperature=T)
    want = lumped_kl(student, teacher, target, sp.index, T)
    assert float(got) == pytest.approx(float(want), rel=1e-9)
    full, _ = kd_loss(student, teacher, target, temperature=T)
    assert float(got) <= float(full) + 1e-12
    if k == 299:  # R empty: the reduced problem is the full one, reordered
        assert float(got) == pytest.approx(float(full), rel=1e-12)


def test_dkd_from_the_top_equals_full_when_the_rest_has_no_mass():
    teacher, target = aam_like(8, 200, 3)
    teacher = teacher.clone()
    sp = from_dense(teacher, target, 20, (T,))
    rest = torch.ones_like(teacher, dtype=torch.bool)
    rest.scatter_(1, sp.index, False).scatter_(1, target.unsqueeze(1), False)
    teacher[rest] = float("-inf")   # P_R = 0 exactly
    sp = from_dense(teacher, target, 20, (T,))
    student = torch.randn(8, 200, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    red = reduce(student, sp, target, T)
    got, _ = dkd_loss(red.student, red.teacher, red.target, temperature=T)
    want, _ = dkd_loss(student, teacher, target, temperature=T)
    assert float(got) == pytest.approx(float(want), rel=1e-9)


@pytest.mark.parametrize("tau,cutoff", [(0.05, "conditional"), (0.3, "conditional"), (0.1, "joint")])
def test_confusion_set_from_the_top_is_the_full_one_unless_cut(tau, cutoff):
    teacher, target = aam_like(32, 500, 5)
    full = confusion_mask(teacher, target, tau, temperature=T, cutoff=cutoff)
    sp = from_dense(teacher, target, 64, (T,))
    red = reduce(torch.zeros_like(teacher), sp, target, T)
    f, cut = reference_partition(red, tau, T, cutoff)
    order = sp.index.sort(1).values
    mapped = torch.zeros_like(full).scatter(1, order, f[:, :64])
    assert not f[:, 64:].any()
    for b in range(32):
        if not cut[b]:
            assert torch.equal(mapped[b], full[b]), b
        else:
            assert int(full[b].sum()) > 64
    assert (~cut).any()


def test_rows_cut_when_the_top_is_too_small():
    teacher, target = aam_like(16, 500, 6)
    sp = from_dense(teacher, target, 2, (T,))
    f, cut = reference_partition(reduce(torch.zeros_like(teacher), sp, target, T), 0.9, T)
    full = confusion_mask(teacher, target, 0.9, temperature=T)
    assert torch.equal(cut, full.sum(1) > 2)
    assert cut.all()


def _trkd_method(tau: float, confusion: str = "cutoff", cutoff: str = "conditional", lambda_b: float = 0.0):
    from types import SimpleNamespace as NS

    from trkd.distill.methods.trkd import TRKD, TRKDSettings
    from trkd.student import Step

    # The paper's reading (λ_B = 0): a top-K teacher knows B only on its kept columns, so BG from
    # the top is the background's kept part, not the full term (see test_..._background_... below)
    settings = TRKDSettings(tau0=tau, tau1=tau, start_epoch=1, stop_epoch=1, confusion=confusion, cutoff=cutoff,
                            lambda_b=lambda_b)
    return TRKD(settings, NS(kd=NS(logits="margin"))), Step(1, 0, 10, 0.1, 0.2, 1)


def _loss_and_grad(method, step, student, target, teacher_logits):
    from types import SimpleNamespace as NS

    from trkd.distill.teacher import TeacherOutput

    s = student.clone().requires_grad_(True)
    loss, parts = method({"target": target}, NS(margin_logits=s), TeacherOutput(teacher_logits), step)
    loss.backward()
    return float(loss.detach()), s.grad, parts


@pytest.mark.parametrize("tau,cutoff,confusion", [(0.05, "conditional", "cutoff"), (0.02, "joint", "cutoff"),
                                                  (1.0, "conditional", "topk:8")])
def test_trkd_from_the_top_equals_full_trkd_when_f_fits(tau, cutoff, confusion):
    teacher, target = aam_like(32, 2000, 7)
    student = torch.randn(32, 2000, dtype=torch.float64, generator=torch.Generator().manual_seed(8)) * 4
    method, step = _trkd_method(tau, confusion, cutoff)
    full, g_full, p_full = _loss_and_grad(method, step, student, target, teacher)
    top, g_top, p_top = _loss_and_grad(method, step, student, target, from_dense(teacher, target, 64, (T,)))
    assert float(p_top["cut"]) == 0.0
    assert top == pytest.approx(full, rel=1e-6)
    assert torch.allclose(g_top, g_full, rtol=1e-6, atol=1e-12)
    assert float(p_top["f_size"]) == pytest.approx(float(p_full["f_size"]))


def test_trkd_default_background_term_from_the_top_is_finite_and_differs_from_the_full_one():
    teacher, target = aam_like(32, 2000, 7)
    student = torch.randn(32, 2000, dtype=torch.float64, generator=torch.Generator().manual_seed(8)) * 4
    method, step = _trkd_method(0.05, lambda_b=8.0)
    full, _, p_full = _loss_and_grad(method, step, student, target, teacher)
    top, g_top, p_top = _loss_and_grad(method, step, student, target, from_dense(teacher, target, 64, (T,)))
    assert torch.isfinite(g_top).all() and float(p_full["bg"]) > 0 and float(p_top["bg"]) > 0
    assert float(p_top["tm"]) == pytest.approx(float(p_full["tm"]), rel=1e-6)   # masses: the cut is known
    assert float(p_top["cf"]) == pytest.approx(float(p_full["cf"]), rel=1e-6)
    assert float(p_top["bg"]) != pytest.approx(float(p_full["bg"]), rel=1e-3)   # the tail's shape is not


def test_trkd_from_a_too_small_top_counts_the_cut_rows_and_stays_finite():
    teacher, target = aam_like(16, 2000, 9)
    student = torch.randn(16, 2000, dtype=torch.float64, generator=torch.Generator().manual_seed(10))
    method, step = _trkd_method(0.9)
    loss, grad, parts = _loss_and_grad(method, step, student, target, from_dense(teacher, target, 4, (T,)))
    full = confusion_mask(teacher, target, 0.9, temperature=T)
    assert float(parts["cut"]) == pytest.approx(float((full.sum(1) > 4).double().mean()))
    assert float(parts["cut"]) > 0.5 and torch.isfinite(grad).all() and loss == loss
    assert float(parts["f_size"]) <= 4
