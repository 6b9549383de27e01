"""What storing features compressed costs in accuracy: a trained model's EER on a test set whose
float32 features are stored again with each of Kaldi's compressed formats (kaldiio), and the
decoding error of those values against the float32 ones.

    tools/venv/bin/python bench/compression.py --model egs/mini/exp/seed0/ecapa_teacher \
        --data egs/mini/data/test

The loader's speed on each format is bench/loader.py's; this is the other side of the choice.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import kaldiio
import numpy as np

from machine import describe

# name: kaldiio compression_method (None: float32, the reference).
FORMATS = {"float32": None, "CM (method 1, fbank --compress's default)": 1, "CM2 (method 3, 2 B a value)": 3,
           "CM3 (method 5, 1 B, global range)": 5}


def stored_copy(src: Path, dst: Path, method) -> np.ndarray:
    """`src`'s data dir with its features written again as `method`; every value's |error|."""
    dst.mkdir(parents=True)
    for name in ("utt2spk", "spk2utt", "trials", "utt2num_frames"):
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
    errors = []
    with kaldiio.WriteHelper(f"ark,scp:{dst}/feats.ark,{dst}/feats.scp", compression_method=method) as w:
        for utt, mat in kaldiio.load_scp_sequential(str(src / "feats.scp")):
            w(utt, mat)
    for (utt, a), (_, b) in zip(kaldiio.load_scp_sequential(str(src / "feats.scp")),
                                kaldiio.load_scp_sequential(str(dst / "feats.scp"))):
        errors.append(np.abs(a.astype(np.float64) - b).ravel())
    return np.concatenate(errors)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True, help="A trained model dir (trkd train / distill).")
    p.add_argument("--data", type=Path, required=True, help="A test data dir with float32 feats.scp and trials.")
    p.add_argument("--nj", type=int, default=2)
    args = p.parse_args()
    from trkd.extract import extract
    from trkd.scoring.evaluate import score_embeddings

    print(f"machine: {describe()}")
    print(f"model {args.model}, data {args.data}")
    print(f"{'storage':42s} {'EER %':>7s} {'minDCF 0.01':>11s} {'max |error|':>11s} {'mean |error|':>12s}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, method in FORMATS.items():
            d = Path(tmp) / f"m{method}"
            err = stored_copy(args.data, d, method)
            scp = extract(args.model, d, d / "emb", args.nj, device="cpu")
            (result,) = score_embeddings([d / "trials"], scp=scp, out_dir=d / "scores")
            m = result.metrics
            print(f"{name:42s} {100 * m['eer']:7.3f} {m['mindcf_p0_01']:11.4f} {err.max():11.3g} {err.mean():12.3g}")
    print(f"machine at the end: {describe()}")


if __name__ == "__main__":
    main()
