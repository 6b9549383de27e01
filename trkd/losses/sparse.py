"""A teacher known only at its top: the target, its K highest non-targets, and the rest's mass.

At VoxCeleb size a full logit row per chunk is petabytes (README, "VoxCeleb2 at scale"), so a sparse
dump keeps, per chunk, the teacher's logit at the target y, the K highest non-target logits with
their class indices, and for each temperature T the log-sum-exp of z/T over the rest R (the
non-targets outside the top K). The rest's own log-sum-exp rather than the log-partition: the
partition is then log(e^{z_y/T} + Σ_K e^{z_i/T} + e^{lse_R}), exact, whereas 1 − p_y − Σ_K p_i
would cancel to noise when R's mass is tiny.

Every logit loss then runs on a REDUCED problem of K + 2 columns for both networks: the K classes
(ascending class index, so that ties still resolve by ascending index), y, and R as one lumped
class whose logit is T·lse_R(z/T) (the loss divides by T again). Consequences:
- kd, dkd, enskd see the distributions over {y} ∪ K ∪ {R}: the first term of the KL chain rule
  over the partition (K's classes, R). It drops P_R · KL(R's conditionals), so it is never larger
  than the full loss and equal to it when the teacher's P_R = 0.
- trkd at τ < 1: F is ranked among the K columns only (R is never a candidate). When the K
  masses reach τ, F ⊆ K and TM, CF and BG's mass are exact; otherwise F is cut to K, R joins the
  background, and the row counts as cut.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Tuple

import torch

from trkd.losses.common import NEG_INF, masked_logsumexp, target_mask

# Class indices ride in the float32 rows of the dump: exact below 2**24 classes.
MAX_CLASSES = 2 ** 24


class SparseTeacher(NamedTuple):
    """A batch of sparse teacher rows. `rest_lse[:, j]` is log Σ_{i∈R} exp(z_i / temperatures[j])
    (−inf where R is empty, K = C − 1)."""

    target_logit: torch.Tensor   # (B,)
    values: torch.Tensor         # (B, K) the top non-target logits, descending
    index: torch.Tensor          # (B, K) long, their classes
    rest_lse: torch.Tensor       # (B, len(temperatures))
    temperatures: Tuple[float, ...]
    num_classes: int

    @property
    def k(self) -> int:
        return self.values.shape[1]

    def rest_at(self, temperature: float) -> torch.Tensor:
        for j, t in enumerate(self.temperatures):
            if abs(t - temperature) < 1e-9:
                return self.rest_lse[:, j]
        raise ValueError(f"the sparse teacher holds the rest's mass at T = {', '.join(map(str, self.temperatures))}, "
                         f"not at T = {temperature}: dump again with that temperature (--temperatures)")


def from_dense(teacher_logits: torch.Tensor, target: torch.Tensor, k: int,
               temperatures: Sequence[float]) -> SparseTeacher:
    """The sparse rows of full teacher logits (B, C): what `trkd dump-logits --topk K` stores."""
    num_classes = teacher_logits.shape[1]
    if not 1 <= k <= num_classes - 1:
        raise ValueError(f"top-k must lie in [1, {num_classes - 1}] for {num_classes} classes, got {k}")
    z = teacher_logits.detach().double()
    targets = target_mask(target, num_classes)
    values, index = z.masked_fill(targets, NEG_INF).topk(k, dim=1, sorted=True)
    rest = ~targets.scatter(1, index, True)
    rest_lse = torch.stack([masked_logsumexp(z / t, rest) for t in temperatures], dim=1)
    return SparseTeacher(z.gather(1, target.long().unsqueeze(1)).squeeze(1), values, index, rest_lse,
                         tuple(float(t) for t in temperatures), num_classes)


def row_length(k: int, temperatures: Sequence[float]) -> int:
    """Floats per chunk in the dump: [z_y, lse_R at each T, K values, K class indices]."""
    return 1 + len(temperatures) + 2 * k


def pack(sparse: SparseTeacher) -> torch.Tensor:
    """(B, row_length) float32 rows in the dump's layout."""
    if sparse.num_classes > MAX_CLASSES:
        raise ValueError(f"{sparse.num_classes} classes: indices above 2**24 are not exact in float32")
    return torch.cat([sparse.target_logit.unsqueeze(1), sparse.rest_lse, sparse.values,
                      sparse.index.to(sparse.values.dtype)], dim=1).float()


def unpack(rows: torch.Tensor, target: torch.Tensor, k: int, temperatures: Sequence[float],
           num_classes: int) -> SparseTeacher:
    """The inverse of `pack` for a batch of rows (B, row_length)."""
    n_t = len(temperatures)
    if rows.shape[1] != row_length(k, temperatures):
        raise ValueError(f"sparse rows have {rows.shape[1]} values, expected {row_length(k, temperatures)} "
                         f"(K = {k}, {n_t} temperatures)")
    return SparseTeacher(rows[:, 0], rows[:, 1 + n_t:1 + n_t + k], rows[:, 1 + n_t + k:].round().long(),
                         rows[:, 1:1 + n_t], tuple(float(t) for t in temperatures), num_classes)


class Reduced(NamedTuple):
    """Both networks on the K + 2 (or K + 1 without R) reduced columns, in logit units."""

    student: torch.Tensor    # (B, K + 2)
    teacher: torch.Tensor    # (B, K + 2)
    target: torch.Tensor     # (B,) the column of y: K
    candidate: torch.Tensor  # (B, K + 2) bool: the columns that may enter TRKD's F (the K classes)


def reduce(student_logits: torch.Tensor, sparse: SparseTeacher, target: torch.Tensor,
           temperature: float) -> Reduced:
    """Both networks' logits over (K classes by ascending index, y, R) at `temperature`."""
    b, c = student_logits.shape
    if c != sparse.num_classes:
        raise ValueError(f"the student has {c} classes, the sparse teacher {sparse.num_classes}")
    dtype = student_logits.dtype if student_logits.dtype == torch.float64 else torch.float32
    zs = student_logits.to(dtype)
    order = sparse.index.argsort(dim=1)
    index = sparse.index.gather(1, order)
    t_top = sparse.values.to(dtype).gather(1, order)
    y = target.long().unsqueeze(1)
    s_cols = [zs.gather(1, index), zs.gather(1, y)]
    t_cols = [t_top, sparse.target_logit.to(dtype).unsqueeze(1)]
    k = sparse.k
    if k < c - 1:
        rest = ~target_mask(target, c).scatter(1, index, True)
        s_cols.append(temperature * masked_logsumexp(zs / temperature, rest).unsqueeze(1))
        t_cols.append(temperature * sparse.rest_at(temperature).to(dtype).unsqueeze(1))
    student, teacher = torch.cat(s_cols, dim=1), torch.cat(t_cols, dim=1)
    candidate = torch.zeros_like(student, dtype=torch.bool)
    candidate[:, :k] = True
    return Reduced(student, teacher, torch.full((b,), k, dtype=torch.long, device=zs.device), candidate)


def confusion_in_top(reduced: Reduced, tau: Optional[float], temperature: float,
                     cutoff: str = "conditional", topk: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """TRKD's F over the reduced columns (bool (B, K + 2)) and which rows were cut by K (bool (B,)).

    Ranking by teacher probability descending, ties by ascending class index (the columns are in
    that order and the sort is stable); F = {π_r : S_<r < τ}, S over the conditional (p/(1 − p_y))
    or joint masses, which are exact from the reduced row since it holds the whole partition.
    With `topk` = k, F is the k first of the ranking (cut where k > K).
    """
    zt = reduced.teacher.double() / temperature
    k = int(reduced.candidate[0].sum())
    log_p = zt - torch.logsumexp(zt, dim=1, keepdim=True)
    if cutoff == "conditional":
        nontarget = ~target_mask(reduced.target, zt.shape[1])
        log_p = log_p - masked_logsumexp(log_p, nontarget).unsqueeze(1)
    elif cutoff != "joint":
        raise ValueError(f"unknown cutoff {cutoff!r}; valid: conditional, joint")
    mass, order = log_p[:, :k].exp().sort(dim=1, descending=True, stable=True)
    if topk is not None:
        in_f = torch.arange(k, device=mass.device).unsqueeze(0).expand_as(mass) < topk
        cut = torch.full((mass.shape[0],), topk > k, dtype=torch.bool, device=mass.device)
    else:
        inclusive = mass.cumsum(1)
        # Without a rest column (K = C − 1) nothing lies below the top: no row can be cut, even
        # where the float sum of all the masses stays just under τ = 1.
        in_f, cut = (inclusive - mass) < tau, (inclusive[:, -1] < tau) & (zt.shape[1] == k + 2)
    f = torch.zeros_like(reduced.candidate)
    f[:, :k] = torch.zeros_like(in_f).scatter(1, order, in_f)
    return f, cut
