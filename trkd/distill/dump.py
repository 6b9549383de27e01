"""`trkd dump-logits`: the teacher's outputs on the fixed chunk grid, and the reader students use.

OUT (default EXP_TEACHER/logits) holds `meta.yaml` (what was dumped, how), `chunks`, `spk2id`
(the teacher's class map) and `logits.scp`: per chunk a float16 (R, C) matrix, rows as
`meta.yaml: logit_rows` says (AAM logits with the teacher's final margin, and s·cos θ if asked);
with `--topk K` a float32 (R, 1 + #T + 2K) matrix instead, the teacher known at its top K
(trkd/losses/sparse.py: z_y, the rest's log-sum-exp at each of `meta.yaml: temperatures`, the K
top non-target logits, their classes), which is what VoxCeleb's size allows. With `--embeddings`
also `embedding.scp` (float32 embedding) and `levels.scp` (float32, every level concatenated, dims
in `meta.yaml: level_dims`), which only emb and mlkd read. Parts `TABLE.G.K.{ark,scp}` (G: a hash of the settings in
`dump.G.yaml`) are written atomically, the scps once the arks are whole, so a part whose three
scps exist is finished and skipped on a re-run. The dump is replaced only once every part of the
new settings is finished; `logits.scp` is written last of all and marks a finished dump.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import yaml

from trkd import checkpoint as ckpt
from trkd.data.chunks import write_spk2id
from trkd.data.kaldi_dir import iter_table
from trkd.data.split import split_list
from trkd.distill.datasets import GridDataset, read_chunks
from trkd.distill.dump_rows import DumpRows
from trkd.distill.dump_teacher import teacher_fields
from trkd.distill.teacher import Teacher, load_teacher
from trkd.errors import InputError
from trkd.jobs import Context, run_all
from trkd.utils.ark import ark_scp_writer
from trkd.utils.atomic import remove_stale, write_lines_atomic, write_text_atomic
from trkd.utils.lock import folder_lock
from trkd.utils.stamp import generation, stamp_text, write_stamp
from trkd.utils.precision import autocast
from trkd.losses.sparse import from_dense, pack

LOGIT_CHOICES = {"both": ["margin", "cosine"], "margin": ["margin"], "cosine": ["cosine"]}
TABLES = ("logits", "embedding", "levels")
EMBEDDING_TABLES = ("embedding", "levels")
# The temperatures of a sparse dump's rest masses: T = 4 (kd, dkd, trkd) and 1 (enskd).
TEMPERATURES = (1.0, 4.0)
DEFAULT_DIR = "logits"
log = logging.getLogger(__name__)


def _part(out: Path, gen: str, table: str, k: int, ext: str) -> Path:
    return out / f"{table}.{gen}.{k}.{ext}"


def _part_done(out: Path, gen: str, k: int, ids: List[str], tables: Sequence[str]) -> bool:
    if not all(_part(out, gen, t, k, "scp").is_file() for t in tables):
        return False
    return [f[0] for _, f in iter_table(_part(out, gen, "logits", k, "scp"))] == ids


def _load(model_dir: str, checkpoint: str, data_dir: str, device="cpu") -> Tuple[Teacher, GridDataset]:
    """The teacher and the chunk grid of DATA under its class map (once per worker)."""
    from trkd.model_fbank import check_data_fbank

    check_data_fbank(model_dir, data_dir)
    teacher = load_teacher(model_dir, checkpoint, device)
    teacher.require_head("trkd dump-logits")
    ds = GridDataset(data_dir, teacher.num_frms, 0, teacher.spk2id, teacher.spk2id_path)
    if ds.feat_dim != teacher.model.feat_dim:
        raise InputError(ds.scp_path, f"features have {ds.feat_dim} dims, the teacher expects {teacher.model.feat_dim}")
    return teacher, ds


def logit_rows(logits: Sequence[torch.Tensor], target: torch.Tensor, topk: int, temperatures) -> np.ndarray:
    """(B, R, ·) rows of the logits table: float16 full rows, or float32 top-K rows (`topk` > 0)."""
    if not topk:
        return torch.stack(logits, 1).float().cpu().numpy().astype(np.float16)
    return torch.stack([pack(from_dense(z.float(), target, topk, temperatures)) for z in logits], 1).cpu().numpy()


def _run_part(ctx: Context, rows: Sequence[int], kinds: List[str], out: Path, gen: str, k: int,
              batch_size: int, device, precision: str, tables: Sequence[str], topk: int,
              temperatures: Sequence[float]) -> None:
    """Teacher outputs of grid rows `rows` into the part-K arks; all the scps once all arks are whole."""
    teacher, ds = ctx.state
    ids = ds.chunk_ids()
    with contextlib.ExitStack() as stack:
        write = {t: stack.enter_context(ark_scp_writer(_part(out, gen, t, k, "ark"), _part(out, gen, t, k, "scp"),
                                                       "numpy" if t == "logits" else None)) for t in tables}
        for b in range(0, len(rows), batch_size):
            batch = rows[b:b + batch_size]
            feats = torch.from_numpy(np.stack([ds.chunk_feats(r) for r in batch])).to(device)
            target = torch.from_numpy(ds.targets[[ds.grid[r][0] for r in batch]]).to(device)
            with autocast(torch.device(device), precision):
                levels, logits = teacher.logits(feats, target, kinds)
            if not all(bool(torch.isfinite(z).all()) for z in logits):  # (a top-K row's empty rest is −inf)
                raise InputError(ds.scp_path, f"non-finite teacher logits on chunk {ids[batch[0]]}…")
            mats = {"logits": logit_rows(logits, target, topk, temperatures),
                    "embedding": levels[-1].float().cpu().numpy(),
                    "levels": torch.cat(levels, 1).float().cpu().numpy()}
            for i, r in enumerate(batch):
                for table in tables:
                    write[table](ids[r], mats[table][i])
            ctx.tick(len(batch))
    log.info("part %d: %d chunks", k, len(rows))


def dump_logits(model_dir, data_dir, out=None, nj: int = 1, logits: str = "margin",
                checkpoint: str = ckpt.AVG_NAME, device: Optional[str] = None, batch_size: int = 64,
                precision: Optional[str] = None, topk: int = 0, temperatures: Sequence[float] = TEMPERATURES,
                embeddings: bool = False) -> Path:
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
    teacher, ds = _load(str(model_dir), checkpoint, str(data_dir))
    kinds = LOGIT_CHOICES[logits]
    ids = ds.chunk_ids()
    nj = min(nj, len(ids))
    if topk > len(teacher.spk2id) - 1:   # a recipe's K on a corpus of fewer classes: every non-target
        log.info("--topk %d: the teacher has %d classes, keeping all %d non-targets", topk, len(teacher.spk2id),
                 len(teacher.spk2id) - 1)
        topk = len(teacher.spk2id) - 1
    meta = {"teacher": str(model_dir.resolve()), "checkpoint": checkpoint,
            **teacher_fields(model_dir, checkpoint, teacher.spk2id), "data": str(Path(data_dir).resolve()),
            "num_frms": teacher.num_frms, "num_chunks": len(ids), "num_classes": len(teacher.spk2id),
            "logit_rows": kinds, "margin": teacher.margin, "scale": teacher.head.scale,
            "level_dims": list(teacher.model.level_dims), "nj": nj,
            "tables": ["logits", *(EMBEDDING_TABLES if embeddings else ())], "topk": topk,
            "temperatures": [float(t) for t in temperatures] if topk else None}
    if topk < 0 or (topk and not temperatures):
        raise InputError(None, f"--topk {topk}: give 0 (full rows) or K > 0 with at least one temperature")
    # Parts of another teacher, data, grid or split have other names: neither skipped nor merged.
    gen = generation(meta)
    with folder_lock(out, "trkd dump-logits"):
        return _dump(out, gen, meta, ids, nj, model_dir, checkpoint, data_dir, dev, teacher, ds, kinds, batch_size,
                     precision, topk, temperatures)


def _dump(out: Path, gen: str, meta: Dict, ids: List[str], nj: int, model_dir: Path, checkpoint: str, data_dir,
          dev, teacher: Teacher, ds: GridDataset, kinds: List[str], batch_size: int, precision: str, topk: int,
          temperatures: Sequence[float]) -> Path:
    """`dump_logits`' writing, once its inputs are checked and OUT is locked."""
    tables = meta["tables"]
    write_stamp(out / f"dump.{gen}.yaml", meta)
    blocks = split_list(list(range(len(ids))), nj)
    todo = [k for k in range(1, nj + 1) if not _part_done(out, gen, k, [ids[r] for r in blocks[k - 1]], tables)]
    for k in todo:  # left by a killed run of this part
        for t in tables:
            remove_stale(_part(out, gen, t, k, "ark"))
            remove_stale(_part(out, gen, t, k, "scp"))
    parallel = dev.type == "cpu" and len(todo) > 1
    setup = (_load, (str(model_dir), checkpoint, str(data_dir))) if parallel else (lambda: (teacher.to(dev), ds), ())
    run_all("dump-logits", _run_part, [(blocks[k - 1], kinds, out, gen, k, batch_size, "cpu" if parallel else dev,
                                        precision, tables, topk, temperatures) for k in todo], len(todo) if parallel else 1, out / "log", jobs=todo,
            setup=setup, total=sum(len(blocks[k - 1]) for k in todo), desc=f"dump-logits {data_dir}",
            unit="chunk", auto_tick=False)
    _switch(out, gen, nj, meta, ds, teacher)
    return out / "logits.scp"


def _switch(out: Path, gen: str, nj: int, meta: Dict, ds: GridDataset, teacher: Teacher) -> None:
    """Replace the dump by the finished parts of `gen`, then delete the parts of other settings.

    `logits.scp` marks a finished dump: it goes first and comes back last, so a crash in between
    leaves a dump that `trkd distill` refuses rather than one that mixes two teachers.
    """
    (out / "logits.scp").unlink(missing_ok=True)
    ds.write_chunks(out / "chunks")
    write_spk2id(out / "spk2id", teacher.spk2id)
    for table in reversed(meta["tables"]):
        lines = [line for k in range(1, nj + 1) for line in _part(out, gen, table, k, "scp").read_text().splitlines()]
        if table == "logits":
            write_text_atomic(out / "meta.yaml", stamp_text(meta))
        write_lines_atomic(out / f"{table}.scp", lines)
    for stamp in out.glob("dump.*.yaml"):
        old = stamp.name.split(".")[1]
        if old != gen:
            for path in out.glob(f"*.{old}.*"):
                path.unlink(missing_ok=True)


def has_dump(dump_dir) -> bool:
    d = Path(dump_dir)
    return (d / "logits.scp").is_file() and (d / "meta.yaml").is_file()


def find_dump(dump_dir) -> bool:
    """Whether the student reads the teacher from `dump_dir`: True for a finished dump, False (said in
    the log) when there is no dump at all; a started or broken dump is an error, never a silent switch
    to the online teacher."""
    d = Path(dump_dir)
    if has_dump(d):
        return True
    if d.is_dir() and any(p.suffix in (".scp", ".yaml") for p in d.iterdir()):
        raise InputError(d / "logits.scp", "no such file: the teacher dump in this folder is unfinished; "
                         "finish it with `trkd dump-logits` (same options) or pass --online")
    log.info("no teacher dump in %s: the teacher runs online on each batch", d)
    return False


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
        held = self.meta.get("tables", TABLES)
        absent = [t for t in need if t not in held]
        if absent:
            raise InputError(self.dir / "meta.yaml", f"the dump holds no {'/'.join(absent)} (the method needs "
                             f"them): dump with --embeddings, or use --online")
        topk = int(self.meta.get("topk") or 0)
        # (K, temperatures, classes) of a top-K dump, for `DumpedTeacher` to unpack its rows
        self.sparse = (topk, tuple(self.meta["temperatures"]), int(self.meta["num_classes"])) if topk else None
        if "logits" in need:
            if logits not in self.meta["logit_rows"]:
                raise InputError(self.dir / "meta.yaml", f"the dump holds {'/'.join(self.meta['logit_rows'])} "
                                 f"logits, not {logits} (kd.logits): dump with --logits both, or use --online")
            self.row = self.meta["logit_rows"].index(logits)
        self.rows = DumpRows(self.dir, self.meta, need, self.ids, self.sparse)

    def check_grid(self, ids: List[str]) -> None:
        """The student's grid must be the dumped one (same data, same num_frms)."""
        if ids != self.ids:
            first = next((a for a, b in zip(ids, self.ids) if a != b), None) or f"{len(ids)} vs {len(self.ids)} chunks"
            raise InputError(self.dir / "chunks", f"does not match the chunk grid of the training data "
                             f"(first difference: {first}); dumped from {self.meta.get('data')}: re-run dump-logits")

    def item(self, row: int) -> Dict[str, torch.Tensor]:
        return self.rows.item(row, self.row)
