"""A class set's sums per network, Σ_X = Σ_{i∈X} exp(z_i − m) and cross_X · Σ_X of the teacher
(the quantities `sets` builds every set's log-sum-exp and conditional KL from).

The smaller of F and B is summed by a gather on its class indices (`gathered_sums`), or, when it
is a sizeable part of the classes, by dot products with its mask taken with nt's sums
(`dense_sums`: their gradient is one pass); the other as nt minus it (`rest_sums`), except in
rows where it holds under a quarter of nt's sum (the difference would lose digits): those take a
dot product with its mask (`exact_rows`).
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Tuple

import torch

REST_SHARE = 0.25
Rows = Callable[[torch.Tensor], torch.Tensor]   # row indices -> the set's bool mask on those rows


class Net(NamedTuple):
    """One network's scaled logits z, the max m of its non-target logits (detached: lse has the
    same gradient whatever m is), e = exp(z − m) at the non-targets, 0 at the target, and
    `key`, z with the target at −inf (the teacher's ranks the classes for F)."""
    z: torch.Tensor
    m: torch.Tensor
    e: torch.Tensor
    key: torch.Tensor


class Sums(NamedTuple):
    """Σ_X of the student (s) and of the teacher (t), and cross_X · Σ_X of the teacher."""
    s: torch.Tensor
    t: torch.Tensor
    cross: torch.Tensor


def dot_sums(s: Net, t: Net, gap: torch.Tensor, weight: Optional[torch.Tensor] = None,
             rows=slice(None), t_all: Optional[torch.Tensor] = None) -> Sums:
    """Sums over the classes where `weight` (float 0/1, on `rows`) is 1; None: every non-target
    (`t_all`: the teacher's, if summed already). `gap` = eᵗ (zˢ − zᵗ), shared by every set,
    gives cross as −Σ gap: one product per set, not two dot products that cancel."""
    es, et, gap = s.e[rows], t.e[rows], gap[rows]
    if weight is None:
        return Sums(es.sum(-1), et.sum(-1) if t_all is None else t_all, -gap.sum(-1))
    return Sums(torch.linalg.vecdot(es, weight), torch.linalg.vecdot(et, weight),
                -torch.linalg.vecdot(gap, weight))


def _dot(x: torch.Tensor, w: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
    """Σ_i x_i w_i per row, as linalg.vecdot computes it (the product, then its sum), with the
    product written into `scratch`: a fresh (B, C) tensor costs more than the product."""
    return torch.mul(x, w, out=scratch).sum(-1)


class _RowSums(torch.autograd.Function):
    """(Σ_i x_i, Σ_i w_i x_i) per row. Its backward, g_all + g_set · w, makes one tensor
    (autograd's would make g_set · w, then a second adding the broadcast g_all)."""

    @staticmethod
    def forward(ctx, x, w, scratch):
        ctx.save_for_backward(w)
        return x.sum(-1), _dot(x, w, scratch)

    @staticmethod
    def backward(ctx, g_all, g_set):
        (w,) = ctx.saved_tensors
        # Not addcmul: with (B, 1) operands it takes a scalar loop, 4–5× slower than a product
        # and an in-place add (the same numbers: w is 0/1, so g_set · w is exact).
        return (w * g_set.unsqueeze(1)).add_(g_all.unsqueeze(1)), None, None


def dense_sums(s: Net, t: Net, gap: torch.Tensor, weight: torch.Tensor,
               t_all: torch.Tensor) -> Tuple[Sums, Sums]:
    """(sums over every non-target, sums over the set where `weight` (float 0/1) is 1);
    `t_all`: the teacher's sum over every non-target."""
    scratch = torch.empty_like(weight)   # the three products', one after another
    s_all, s_set = _RowSums.apply(s.e, weight, scratch)
    c_all, c_set = _RowSums.apply(gap, weight, scratch)
    return (Sums(s_all, t_all, -c_all),
            Sums(s_set, _dot(t.e, weight, scratch), -c_set))


def gathered_sums(s: Net, t: Net, index: torch.Tensor, valid: torch.Tensor) -> Sums:
    """Sums over a set given by its class indices (B, K), the first |X| of each row `valid`."""
    zs, zt = s.z.gather(1, index), t.z.gather(1, index)
    es = torch.where(valid, (zs - s.m.unsqueeze(1)).exp(), 0.0)
    et = torch.where(valid, (zt - t.m.unsqueeze(1)).exp(), 0.0)
    return Sums(es.sum(-1), et.sum(-1), torch.linalg.vecdot(et, zt) - torch.linalg.vecdot(et, zs))


def rest_sums(nt: Sums, other: Sums) -> Tuple[Sums, torch.Tensor]:
    """Sums over nt minus the `other` set, and the rows where the rest holds under a quarter of
    nt's sum: the difference loses more than two bits there, so the caller sums those exactly
    (`exact_rows`)."""
    rest = Sums(*(a - b for a, b in zip(nt, other)))
    low = (rest.s.detach() < REST_SHARE * nt.s.detach()) | (rest.t < REST_SHARE * nt.t)
    return rest, low.nonzero().squeeze(1)


def exact_rows(s: Net, t: Net, gap: torch.Tensor, sums: Sums, rows: torch.Tensor, mask: torch.Tensor) -> Sums:
    """`sums` with the given rows replaced by dot products with the set's bool `mask` on them."""
    every = rows.numel() == sums.s.numel()
    weight = mask.view(torch.uint8).to(s.e.dtype)   # from bytes: bool's conversion is slower
    exact = dot_sums(s, t, gap, weight, slice(None) if every else rows)
    return Sums(*(a.index_put((rows,), b) for a, b in zip(sums, exact)))
