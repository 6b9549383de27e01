"""A teacher dump's rows as the student reads them, each checked where it is read and named by
its scp line and chunk: its shape is the one `meta.yaml` gives, and its numbers are finite (the
table reader's policy), save the −inf of an empty rest in a top-K row, which the layout's own
check allows (`trkd.losses.sparse.row_problem`)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from trkd.data.tables import load_matrix, read_scp
from trkd.errors import InputError
from trkd.losses.sparse import row_length, row_problem


class DumpRows:
    """The scp entries of the tables `need` for chunks `ids`, and the checked reading of one."""

    def __init__(self, dump_dir: Path, meta: Dict, need: Sequence[str], ids: List[str],
                 sparse: Optional[Tuple[int, Tuple[float, ...], int]]):
        self.sources = {t: Path(dump_dir) / f"{t}.scp" for t in need}
        self.entries = {}
        for table, path in self.sources.items():
            entries = {e.key: e for e in read_scp(path)}
            missing = next((cid for cid in ids if cid not in entries), None)
            if missing is not None:
                raise InputError(path, f"no entry for chunk {missing!r} of {Path(dump_dir) / 'chunks'}")
            self.entries[table] = [entries[cid] for cid in ids]
        self.sparse = sparse
        dims = [int(d) for d in meta["level_dims"]]
        width = row_length(sparse[0], sparse[1]) if sparse else int(meta["num_classes"])
        self.shapes = {"logits": (len(meta["logit_rows"]), width), "embedding": (dims[-1],), "levels": (sum(dims),)}

    def read(self, table: str, row: int) -> np.ndarray:
        """The value of grid row `row` in `table`, or an error naming its scp line."""
        entry, source = self.entries[table][row], self.sources[table]
        sparse = self.sparse if table == "logits" else None
        value = load_matrix(entry.rx, source, entry.line, entry.key, finite=sparse is None)
        if value.shape != self.shapes[table]:
            problem = f"a value of shape {value.shape}; meta.yaml says {self.shapes[table]}"
        else:
            problem = row_problem(value, *sparse) if sparse else None
        if problem:
            raise InputError(source, f"{entry.key}: {entry.rx.strip()!r} holds {problem}", entry.line)
        return value

    def item(self, row: int, logits_row: int) -> Dict[str, torch.Tensor]:
        """The batch entries of one chunk's teacher outputs (logits kept as stored: float16 full rows)."""
        out = {}
        if "logits" in self.entries:
            out["teacher_logits"] = torch.from_numpy(self.read("logits", row)[logits_row].copy())
        for key in ("embedding", "levels"):
            if key in self.entries:
                out[f"teacher_{key}"] = torch.from_numpy(self.read(key, row).astype(np.float32))
        return out
