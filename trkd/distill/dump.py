"""`trkd dump-logits`: the teacher's outputs on the fixed chunk grid, and the reader students use.

OUT (default EXP_TEACHER/logits) holds `meta.yaml` (what was dumped, how), `chunks`, `spk2id`
(the teacher's class map), `logits.scp` (per chunk a float16 (R, C) matrix, rows as
`meta.yaml: logit_rows` says: AAM logits with the teacher's final margin and/or s·cos θ),
`embedding.scp` (float32 embedding) and `levels.scp` (float32, every level concatenated, dims in
`meta.yaml: level_dims`). Parts `*.K.{ark,scp}` are written atomically, the scps after the arks,
so a part whose three scps exist is finished and skipped on a re-run; `logits.scp` is written
last of all and marks a finished dump.
"""

from __future__ import annotations

import multiprocessing as mp
import queue as queue_mod
import traceback
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import kaldiio
import numpy as np
import torch
import yaml
from tqdm import tqdm

from trkd import checkpoint as ckpt
from trkd.data.chunks import write_spk2id
from trkd.data.kaldi_dir import iter_table, read_kv
from trkd.data.split import split_list
from trkd.distill.datasets import GridDataset, read_chunks, teacher_item
from trkd.distill.teacher import Teacher, load_teacher
from trkd.errors import InputError
from trkd.utils.atomic import atomic_path, write_lines_atomic, write_text_atomic
from trkd.utils.precision import autocast

LOGIT_CHOICES = {"both": ["margin", "cosine"], "margin": ["margin"], "cosine": ["cosine"]}
TABLES = ("logits", "embedding", "levels")
DEFAULT_DIR = "logits"


def _part(out: Path, table: str, k: int, ext: str) -> Path:
    return out / f"{table}.{k}.{ext}"


def _part_done(out: Path, k: int, ids: List[str]) -> bool:
    if not all(_part(out, t, k, "scp").is_file() for t in TABLES):
        return False
    return [f[0] for _, f in iter_table(_part(out, "logits", k, "scp"))] == ids


def _run_part(teacher: Teacher, ds: GridDataset, rows: Sequence[int], kinds: List[str], out: Path,
              k: int, batch_size: int, device, tick, precision: str = "fp32") -> None:
    """Teacher outputs of grid rows `rows` into the part-K arks; scps after the arks."""
    ids = ds.chunk_ids()
    entries: Dict[str, List[str]] = {t: [] for t in TABLES}
    with atomic_path(_part(out, "logits", k, "ark").resolve()) as t_log, \
            atomic_path(_part(out, "embedding", k, "ark").resolve()) as t_emb, \
            atomic_path(_part(out, "levels", k, "ark").resolve()) as t_lev, \
            open(t_log, "wb") as f_log, open(t_emb, "wb") as f_emb, open(t_lev, "wb") as f_lev:
        files = {"logits": f_log, "embedding": f_emb, "levels": f_lev}
        for b in range(0, len(rows), batch_size):
            batch = rows[b:b + batch_size]
            feats = torch.from_numpy(np.stack([ds.chunk_feats(r) for r in batch])).to(device)
            target = torch.from_numpy(ds.targets[[ds.grid[r][0] for r in batch]]).to(device)
            with autocast(torch.device(device), precision):
                levels, logits = teacher.logits(feats, target, kinds)
            mats = {"logits": torch.stack(logits, 1).cpu().numpy().astype(np.float16),
                    "embedding": levels[-1].float().cpu().numpy(),
                    "levels": torch.cat(levels, 1).float().cpu().numpy()}
            if not np.isfinite(mats["logits"]).all():
                raise InputError(ds.scp_path, f"non-finite teacher logits on chunk {ids[batch[0]]}…")
            for i, r in enumerate(batch):
                for table, f in files.items():
                    # A Kaldi scp offset points just past "key " in the ark.
                    name = _part(out, table, k, "ark").resolve()
                    entries[table].append(f"{ids[r]} {name}:{f.tell() + len(ids[r].encode()) + 1}")
                    kaldiio.save_ark(f, {ids[r]: mats[table][i]},
                                     write_function="numpy" if table == "logits" else None)
            tick(len(batch))
    for table in TABLES:
        write_lines_atomic(_part(out, table, k, "scp"), entries[table])


def _worker(args, queue) -> None:
    teacher, ds, rows, kinds, out, k, batch_size, precision = args
    torch.set_num_threads(1)  # nj processes share the cores
    try:
        _run_part(teacher, ds, rows, kinds, out, k, batch_size, "cpu", lambda n: queue.put(("tick", n)), precision)
        queue.put(("done", None))
    except InputError as err:
        queue.put(("done", ("input", err.path, err.message, err.line)))
    except BaseException:  # reported to the parent, which raises it
        queue.put(("done", ("other", traceback.format_exc())))


def _run_parallel(jobs: List[tuple], bar: tqdm) -> None:
    """One forked process per part; the first failure is raised once every part has stopped."""
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(job, queue), daemon=True) for job in jobs]
    for p in procs:
        p.start()
    errors, running = [], len(procs)
    while running:
        try:
            kind, value = queue.get(timeout=1.0)
        except queue_mod.Empty:
            if not any(p.is_alive() for p in procs):  # died without a word
                errors.append(("other", "a dump worker died: " + str([p.exitcode for p in procs])))
                break
            continue
        if kind == "tick":
            bar.update(value)
        else:
            running -= 1
            if value:
                errors.append(value)
    for p in procs:
        p.join()
    if errors:
        if errors[0][0] == "input":
            raise InputError(*errors[0][1:])
        raise RuntimeError(errors[0][1])


def dump_logits(model_dir, data_dir, out=None, nj: int = 1, logits: str = "both",
                checkpoint: str = ckpt.AVG_NAME, device: Optional[str] = None, batch_size: int = 64,
                precision: Optional[str] = None) -> Path:
    """Dump the teacher's outputs on every chunk of the fixed grid of DATA (see the module doc).

    The teacher is the averaged model in eval mode without gradients; chunks are mean-normalised
    as in training and a short utterance is one chunk repeated to length. Returns OUT/logits.scp.
    """
    from trkd.utils.device import choose_device
    from trkd.utils.precision import resolve_precision

    if logits not in LOGIT_CHOICES:
        raise InputError(None, f"--logits {logits!r}: valid choices are {', '.join(LOGIT_CHOICES)}")
    if nj < 1:
        raise InputError(None, f"--nj must be >= 1, got {nj}")
    model_dir = Path(model_dir)
    out = Path(out) if out is not None else model_dir / DEFAULT_DIR
    dev = choose_device(device)
    precision = resolve_precision(precision, dev)
    teacher = load_teacher(model_dir, checkpoint, "cpu")
    ds = GridDataset(data_dir, teacher.num_frms, 0, teacher.spk2id, teacher.spk2id_path)
    if ds.feat_dim != teacher.model.feat_dim:
        raise InputError(ds.scp_path, f"features have {ds.feat_dim} dims, the teacher expects {teacher.model.feat_dim}")
    kinds = LOGIT_CHOICES[logits]
    ids = ds.chunk_ids()
    nj = min(nj, len(ids))
    meta = {"teacher": str(model_dir.resolve()), "checkpoint": checkpoint, "data": str(Path(data_dir).resolve()),
            "num_frms": teacher.num_frms, "num_chunks": len(ids), "num_classes": len(teacher.spk2id),
            "logit_rows": kinds, "margin": teacher.margin, "scale": teacher.head.scale,
            "level_dims": list(teacher.model.level_dims), "nj": nj}
    settings = yaml.safe_dump(meta, sort_keys=False)
    out.mkdir(parents=True, exist_ok=True)
    if not ((out / "meta.yaml").is_file() and (out / "meta.yaml").read_text() == settings):
        # Parts of another teacher, data, grid or split must be neither skipped nor merged.
        for old in [out / "logits.scp", *out.glob("*.*.scp")]:
            old.unlink(missing_ok=True)
        write_text_atomic(out / "meta.yaml", settings)
    blocks = split_list(list(range(len(ids))), nj)
    todo = [k for k in range(1, nj + 1) if not _part_done(out, k, [ids[r] for r in blocks[k - 1]])]
    with tqdm(total=sum(len(blocks[k - 1]) for k in todo), desc=f"dump-logits {data_dir}", unit="chunk",
              disable=None) as bar:
        if len(todo) > 1 and dev.type == "cpu":
            _run_parallel([(teacher, ds, blocks[k - 1], kinds, out, k, batch_size, precision) for k in todo], bar)
        else:
            teacher.to(dev)
            for k in todo:
                _run_part(teacher, ds, blocks[k - 1], kinds, out, k, batch_size, dev, bar.update, precision)
    ds.write_chunks(out / "chunks")
    write_spk2id(out / "spk2id", teacher.spk2id)
    for table in reversed(TABLES):  # logits.scp, the marker of a finished dump, last
        lines = [line for k in range(1, nj + 1) for line in _part(out, table, k, "scp").read_text().splitlines()]
        write_lines_atomic(out / f"{table}.scp", lines)
    return out / "logits.scp"


def has_dump(dump_dir) -> bool:
    d = Path(dump_dir)
    return (d / "logits.scp").is_file() and (d / "meta.yaml").is_file()


def read_meta(dump_dir) -> Dict:
    """A dump's `meta.yaml` (what was dumped: grid size, logit rows, level dims…)."""
    path = Path(dump_dir) / "meta.yaml"
    if not path.is_file():
        raise InputError(path, "no such file (run `trkd dump-logits`)")
    return yaml.safe_load(path.read_text())


class Dump:
    """A finished dump, read by the student's dataset: only the tables it needs are opened."""

    def __init__(self, dump_dir, need: Sequence[str], logits: str = "margin"):
        self.dir = Path(dump_dir)
        if not has_dump(self.dir):
            raise InputError(self.dir / "logits.scp", "no finished teacher dump here (run `trkd dump-logits`)")
        self.meta = read_meta(self.dir)
        self.num_frms, self.level_dims = int(self.meta["num_frms"]), list(self.meta["level_dims"])
        self.ids = [cid for cid, _, _ in read_chunks(self.dir / "chunks")]
        self.row = 0
        if "logits" in need:
            if logits not in self.meta["logit_rows"]:
                raise InputError(self.dir / "meta.yaml", f"the dump holds {'/'.join(self.meta['logit_rows'])} "
                                 f"logits, not {logits} (kd.logits): dump with --logits both, or use --online")
            self.row = self.meta["logit_rows"].index(logits)
        self.sources = {t: self.dir / f"{t}.scp" for t in need}
        tables = {t: read_kv(p) for t, p in self.sources.items()}
        for t, tab in tables.items():
            missing = [cid for cid in self.ids if cid not in tab]
            if missing:
                raise InputError(self.sources[t], f"no entry for chunk {missing[0]!r} of {self.dir / 'chunks'}")
        self.rx = {t: [tab[cid] for cid in self.ids] for t, tab in tables.items()}

    def check_grid(self, ids: List[str]) -> None:
        """The student's grid must be the dumped one (same data, same num_frms)."""
        if ids != self.ids:
            first = next((a for a, b in zip(ids, self.ids) if a != b), None) or f"{len(ids)} vs {len(self.ids)} chunks"
            raise InputError(self.dir / "chunks", f"does not match the chunk grid of the training data "
                             f"(first difference: {first}); dumped from {self.meta.get('data')}: re-run dump-logits")

    def item(self, row: int) -> Dict[str, torch.Tensor]:
        return teacher_item({t: rx[row] for t, rx in self.rx.items()}, self.sources, self.row)
