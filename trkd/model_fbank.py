"""The fbank options a model dir was trained on, so that audio is embedded with the same front end.

`trkd fbank` keeps its options beside the arks it writes (`fbank.yaml`); `trkd train` copies them
into the model dir (`EXP/fbank.yaml`). A model dir without that file (trained before it existed, or
a student from `trkd distill`) is traced back to its training data through the command line recorded
in its `config.yaml`. Embedding uses these options with dither 0, as for test sets.
"""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path
from typing import Dict, Optional

import yaml

from trkd.data.kaldi_dir import table_lines
from trkd.errors import InputError
from trkd.features import FbankOptions
from trkd.utils import PathLike
from trkd.utils.typed_yaml import load_yaml

FBANK_FILE = "fbank.yaml"


def data_fbank_file(data_dir: PathLike) -> Optional[Path]:
    """The options file that `trkd fbank` wrote for DATA beside the arks of its feats.scp: the
    `fbank.<generation>.yaml` of `raw_fbank.<generation>.<part>.ark`, or an older `fbank.yaml`."""
    data_dir = Path(data_dir)
    scp = data_dir / "feats.scp"
    candidates = [data_dir / "feats" / FBANK_FILE]
    if scp.is_file():
        first = next((text.split(maxsplit=1) for _, text in table_lines(scp)), [])
        if len(first) == 2:
            ark = Path(first[1].strip().rsplit(":", 1)[0])
            folder = (ark if ark.is_absolute() else data_dir / ark).parent
            candidates.insert(0, folder / FBANK_FILE)
            parts = ark.name.split(".")
            if len(parts) == 4 and parts[0] == "raw_fbank":
                candidates.insert(0, folder / f"fbank.{parts[1]}.yaml")
    return next((c for c in candidates if c.is_file()), None)


def read_fbank_file(path: PathLike) -> FbankOptions:
    """FbankOptions from a `fbank.yaml` (keys that are not options, such as the seed, are ignored)."""
    try:
        values = load_yaml(Path(path).read_text()) or {}
    except yaml.YAMLError as err:
        raise InputError(path, f"not valid yaml: {err}") from None
    names = {f.name for f in dataclasses.fields(FbankOptions)}
    return FbankOptions(**{k: v for k, v in values.items() if k in names})


def fbank_record(data_dir: PathLike) -> Dict[str, str]:
    """`{FBANK_FILE: text}`: DATA's fbank options (dither 0) as `trkd train` records them in its
    model dir, with its config (and compares them on --resume); {} when DATA has none."""
    source = data_fbank_file(data_dir)
    if source is None:
        return {}
    opts = dataclasses.replace(read_fbank_file(source), dither=0.0)
    return {FBANK_FILE: yaml.safe_dump(opts.to_dict(), sort_keys=False)}


def _training_data(model_dir: Path) -> Optional[Path]:
    """The `--data` of the command line in MODEL/config.yaml, as it resolves from here or the recipe."""
    config = model_dir / "config.yaml"
    try:
        command = (yaml.safe_load(config.read_text()) or {}).get("command") or ""
        words = shlex.split(command)
    except (OSError, yaml.YAMLError, ValueError):
        return None
    if "--data" not in words[:-1]:
        return None
    data = Path(words[words.index("--data") + 1])
    # relative to where training ran: here, or a folder above the model dir (the recipe)
    bases = [Path.cwd()] + list(model_dir.resolve().parents)
    return next((b / data for b in bases if (b / data / "feats.scp").is_file()), None)


def model_fbank(model_dir: PathLike) -> FbankOptions:
    """The fbank options to embed audio with for MODEL (dither 0)."""
    model_dir = Path(model_dir)
    recorded = model_dir / FBANK_FILE
    source = recorded if recorded.is_file() else None
    if source is None:
        data = _training_data(model_dir)
        source = data_fbank_file(data) if data is not None else None
    if source is None:
        raise InputError(model_dir, f"no {FBANK_FILE} (the fbank options of its training data), and its "
                         f"config.yaml names no training data made by `trkd fbank`: write MODEL/{FBANK_FILE} "
                         f"with the options (e.g. num_mel_bins: 80)")
    return dataclasses.replace(read_fbank_file(source), dither=0.0)


def check_data_fbank(model_dir: PathLike, data_dir: PathLike) -> None:
    """DATA's features made as MODEL's were (MODEL/fbank.yaml against the options `trkd fbank`
    recorded for DATA), dither aside; nothing to compare where either has no record. A
    difference is an InputError naming DATA's options file, the option and both values."""
    recorded = Path(model_dir) / FBANK_FILE
    source = data_fbank_file(data_dir)
    if not recorded.is_file() or source is None:
        return
    want, have = read_fbank_file(recorded), read_fbank_file(source)
    for f in dataclasses.fields(FbankOptions):
        if f.name == "dither" or (f.name == "energy_floor" and not want.use_energy):
            continue  # dither is per data set; the energy floor acts on the energy only
        if getattr(want, f.name) != getattr(have, f.name):
            raise InputError(source, f"fbank {f.name} is {getattr(have, f.name)!r}, the model {model_dir} expects "
                             f"{getattr(want, f.name)!r} ({recorded}): make DATA's features with "
                             f"`trkd fbank --config {recorded}`")
