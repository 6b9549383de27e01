"""|F(τ)| of a teacher over its dumped chunk grid: how many non-targets TRKD's confusion set holds
at each τ of the curriculum (where |F| is large, the claim about large class sets is tested),
and the teacher's share of the non-target mass in F. Reads a `trkd dump-logits` dump, full rows or
top-K, and ranks every chunk's classes as the students' loss does (TRKD's fast partition; for a
top-K dump its reference partition over the K columns, where a row whose F does not fit in K is
counted as cut, |F| = K).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from trkd.data.chunks import read_spk2id
from trkd.data.kaldi_dir import read_kv
from trkd.distill.datasets import read_chunks
from trkd.distill.dump import Dump
from trkd.distill.methods.trkd import TRKDSettings, reference_partition
from trkd.distill.methods.trkd_fast.partition import confusion_mask
from trkd.errors import InputError
from trkd.losses.sparse import reduce, unpack
from trkd.schedules import TAU_GRID
from trkd.utils.atomic import write_text_atomic

BATCH = 256


def _targets(dump: Dump, data: Optional[Path]) -> torch.Tensor:
    """Each chunk's class in the dump's class map, through its utterance's speaker."""
    data = Path(data or dump.meta["data"])
    utt2spk = read_kv(data / "utt2spk")
    spk2id = read_spk2id(dump.dir / "spk2id")
    out = []
    for n, (cid, utt, _) in enumerate(read_chunks(dump.dir / "chunks"), start=1):
        spk = utt2spk.get(utt)
        if spk is None or spk not in spk2id:
            raise InputError(dump.dir / "chunks", f"chunk {cid}: utterance {utt!r} has no speaker of the "
                             f"dump's class map in {data / 'utt2spk'}", n)
        out.append(spk2id[spk])
    return torch.tensor(out, dtype=torch.long)


def _nontarget_share(logits: torch.Tensor, target: torch.Tensor, f: torch.Tensor,
                     temperature: float) -> torch.Tensor:
    """P̂ᵀ_F = Σ_F pᵀ / (1 − pᵀ_y) per row: the weight the KL chain rule gives CF inside NCKD
    (the published CF carries λ_F whatever this share is)."""
    z = logits.double() / temperature
    nontarget = ~torch.zeros_like(f).scatter(1, target.long().unsqueeze(1), True)
    lse_nt = torch.logsumexp(z.masked_fill(~nontarget, -math.inf), -1)
    return (torch.logsumexp(z.masked_fill(~f, -math.inf), -1) - lse_nt).exp()


def _sizes(dump: Dump, rows: Sequence[int], target: torch.Tensor, taus: Sequence[float],
           temperature: float, cutoff: str) -> Dict[float, List[torch.Tensor]]:
    """{τ: [|F| per row (float), cut per row (bool), P̂ᵀ_F per row]} of the given grid rows."""
    items = [dump.item(r)["teacher_logits"].float() for r in rows]
    logits = torch.stack(items)
    out = {}
    if dump.sparse is None:
        for tau in taus:
            f = confusion_mask(logits, target, tau, temperature, cutoff)
            out[tau] = [f.sum(-1).float(), torch.zeros(len(rows), dtype=torch.bool),
                        _nontarget_share(logits, target, f, temperature)]
        return out
    sparse = unpack(logits, target, *dump.sparse)
    reduced = reduce(torch.zeros(len(rows), sparse.num_classes), sparse, target, temperature)
    for tau in taus:
        f, cut = reference_partition(reduced, tau, temperature, cutoff)
        out[tau] = [f.sum(-1).float(), cut, _nontarget_share(reduced.teacher, reduced.target, f, temperature)]
    return out


def confusion_sizes(dump_dir, taus: Sequence[float] = TAU_GRID, temperature: Optional[float] = None,
                    cutoff: Optional[str] = None, max_chunks: Optional[int] = None,
                    data: Optional[Path] = None) -> List[Dict]:
    """One record per τ: |F|'s mean, standard deviation, 5/50/95 % quantiles, min and max over
    the chunks (every chunk, or `max_chunks` evenly spaced ones), the rows cut by a top-K dump.
    `temperature` and `cutoff` default to TRKD's settings (`TRKDSettings`)."""
    defaults = TRKDSettings()
    temperature = defaults.temperature if temperature is None else temperature
    cutoff = defaults.cutoff if cutoff is None else cutoff
    dump = Dump(dump_dir, ["logits"])
    target = _targets(dump, data)
    n = len(dump.ids)
    step = max(1, math.ceil(n / max_chunks)) if max_chunks else 1
    rows = list(range(0, n, step))
    parts: Dict[float, List[List[torch.Tensor]]] = {tau: [[], [], []] for tau in taus}
    for i in range(0, len(rows), BATCH):
        chunk = rows[i:i + BATCH]
        for tau, values in _sizes(dump, chunk, target[chunk], taus, temperature, cutoff).items():
            for kept, value in zip(parts[tau], values):
                kept.append(value)
    classes = int(dump.meta.get("num_classes") or dump.item(0)["teacher_logits"].shape[-1])
    records = []
    for tau in taus:
        size, cut, share = torch.cat(parts[tau][0]).double(), torch.cat(parts[tau][1]), torch.cat(parts[tau][2])
        q = torch.quantile(size, torch.tensor([0.05, 0.5, 0.95], dtype=torch.float64)).tolist()
        records.append({"tau": tau, "mean": size.mean().item(), "std": size.std(unbiased=False).item(),
                        "p05": q[0], "median": q[1], "p95": q[2], "min": size.min().item(),
                        "max": size.max().item(), "cut": cut.double().mean().item(),
                        "f_share": share.mean().item(), "chunks": len(rows),
                        "classes": classes,
                        "topk": int(dump.meta.get("topk") or 0), "temperature": temperature, "cutoff": cutoff})
    return records


def table(records: Sequence[Dict]) -> str:
    """The records as aligned text: one line per τ."""
    r0 = records[0]
    head = (f"|F(τ)| over {r0['chunks']} chunks, C = {r0['classes']}, T = {r0['temperature']:g}, "
            f"{r0['cutoff']} cutoff" + (f", top-{r0['topk']} dump" if r0["topk"] else ""))
    lines = [head, f"{'τ':>6} {'mean':>9} {'std':>9} {'p05':>7} {'median':>7} {'p95':>7} {'min':>6} {'max':>6}"
             f" {'P̂_F':>6}" + ("   cut" if r0["topk"] else "")]
    for r in records:
        lines.append(f"{r['tau']:>6g} {r['mean']:>9.1f} {r['std']:>9.1f} {r['p05']:>7.0f} {r['median']:>7.0f} "
                     f"{r['p95']:>7.0f} {r['min']:>6.0f} {r['max']:>6.0f} {r['f_share']:>6.3f}"
                     + (f" {100 * r['cut']:>4.1f}%" if r0["topk"] else ""))
    lines.append("P̂_F: the teacher's mean share of the non-target mass in F, the weight the KL chain rule "
                 "gives CF (kd.trkd.mass_weight=conditional)")
    return "\n".join(lines) + "\n"


def write_records(records: Sequence[Dict], path: Path) -> None:
    """JSON lines, one per τ, written atomically."""
    write_text_atomic(Path(path), "".join(json.dumps(r) + "\n" for r in records))
