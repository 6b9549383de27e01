"""Augmented copies without WAV files: `trkd augment-wav --gen G DIR COPY |` entries of wav.scp.

`trkd augment` (without --write-wavs) gives each copy such an entry: a command that writes the
copy's WAV on stdout, so that Kaldi tools and sox-style readers read the data dir as it is. trkd's
own readers parse the entry and make the copy in-process (`open_entry`; see `trkd.data.tables` for
why no shell runs), from what `trkd augment` recorded in DIR: `conf/augment.yaml` (the settings,
the list dirs, a fingerprint of the RIR and noise lists; G is its hash) and `conf/source/` (the
clean sources' data dir, so that DIR does not depend on the input dir staying as it was). Every
random choice of a copy comes from a stream keyed by (seed, kind, id), and the copy is rounded to
16 bits exactly as a WAV is written, so it equals the --write-wavs WAV bit for bit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import shlex
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

from trkd.data.audio import encode_wav, load_utt
from trkd.data.kaldi_dir import DataDir, PathLike, line_of, read_data_dir, write_data_dir
from trkd.data.sampler import CLEAN, Origin
from trkd.errors import InputError
from trkd.utils.stamp import generation, read_stamp

STAMP = "conf/augment.yaml"
SOURCES = "conf/source"


def entry(out: Path, utt: str, gen: str) -> str:
    """The wav.scp value of copy `utt` of the augmented dir `out` (absolute) made with settings `gen`."""
    return f"trkd augment-wav --gen {gen} {shlex.quote(str(out))} {shlex.quote(utt)} |"


def lists_fingerprint(*banks) -> str:
    """A hash of every item (pool, id, path, length) of the RIR and noise lists: the copies depend on them."""
    items = [sorted((kind, k, b.paths[k], b.frames[k]) for kind, pool in b.pools.items() for k in pool)
             for b in banks if b is not None]
    return hashlib.sha1(repr(items).encode()).hexdigest()[:12]


def settings_of(cfg, seed: int, speed_perturb: bool, rir_dir, noise_dir, lists: str) -> Dict:
    """What makes the copies, as stamped in DIR/conf/augment.yaml; the list dirs are absolute since
    readers anywhere make the copies again from them."""
    where = lambda p: None if p is None else str(Path(p).resolve())  # noqa: E731
    return {"seed": seed, "speed_perturb": speed_perturb, "rir_dir": where(rir_dir), "noise_dir": where(noise_dir),
            **dataclasses.asdict(cfg), "lists": lists}


def write_sources(out: Path, data: DataDir) -> None:
    """DIR/conf/source/: the clean sources' data dir, as the input dir gives it now."""
    (out / SOURCES / "segments").unlink(missing_ok=True)  # from an input that had segments
    write_data_dir(out / SOURCES, data)


class Copies:
    """Makes the copies of one augmented dir again: loaded once per process (`_copies`), since it
    opens every RIR and noise header and the sources' table."""

    def __init__(self, d: Path):
        from trkd.data.augment import AugmentConfig, Augmenter, open_lists  # that module imports this one

        self.dir, stamp = d, d / STAMP
        if not stamp.is_file():
            raise InputError(stamp, "no such file: not a dir made by `trkd augment`")
        settings = read_stamp(stamp)
        self.gen = generation(settings)
        names = {f.name for f in dataclasses.fields(AugmentConfig)}
        try:
            cfg = AugmentConfig(**{k: v for k, v in settings.items() if k in names}).check(str(stamp))
            rirs, noises = open_lists(cfg, settings["rir_dir"], settings["noise_dir"])
            self.aug = Augmenter(cfg, settings["seed"], rirs, noises, settings["speed_perturb"])
        except (KeyError, TypeError) as err:
            raise InputError(stamp, f"not the settings `trkd augment` writes ({type(err).__name__}: {err})") from None
        if lists_fingerprint(rirs, noises) != settings.get("lists"):
            raise InputError(stamp, "the RIR or noise lists changed since `trkd augment` made this dir "
                                    "(items added, removed or of other lengths): rerun `trkd augment`")
        self.sources = read_data_dir(d / SOURCES)
        self.ids = set(self.sources.utt2spk)

    def origin(self, utt: str) -> Origin:
        """Which copy `utt` is: the one reading of `[sp<f>-]<source>[-<kind>]` that these settings make."""
        cfg = self.aug.cfg
        tags = [("", 1.0)] + [(f"sp{f:g}-", f) for f in (cfg.speed_factors if self.aug.speed_perturb else [])]
        found = []
        for tag, f in tags:
            if not utt.startswith(tag):
                continue
            rest = utt[len(tag):]
            for kind in [CLEAN] + list(cfg.copies):
                source = rest if kind == CLEAN else rest[:-len(kind) - 1] if rest.endswith("-" + kind) else None
                o = Origin(source, f, kind)
                if source in self.ids and (f != 1.0 or kind != CLEAN) and o in self.aug.origins(source):
                    found.append(o)
        if len(found) != 1:
            why = "no source of" if not found else f"{len(found)} sources of"
            raise InputError(self.dir / SOURCES / "wav.scp", f"{utt!r}: {why} this table makes it with the "
                                                            f"settings of {self.dir / STAMP}")
        return found[0]

    def wav(self, utt: str) -> bytes:
        import torch

        o = self.origin(utt)
        rate = self.aug.cfg.rate
        clean = torch.from_numpy(load_utt(self.dir / SOURCES, self.sources, o.source, rate))
        return encode_wav(self.aug.make(clean, o).numpy(), rate)


_LOADED: Dict[Path, Copies] = {}


def _copies(d: Path, gen: Optional[str]) -> Copies:
    """The loaded dir; loaded again when an entry names other settings (`trkd augment` ran again)."""
    if d not in _LOADED or gen not in (None, _LOADED[d].gen):
        _LOADED[d] = Copies(d)
    return _LOADED[d]


_MAKING: Set[Tuple[Path, str]] = set()  # copies being made in this process, to catch a source that loops back


class SourceLoop(InputError):
    """A copy whose source is (through other entries) the copy itself: reported once, not per level."""


@lru_cache(maxsize=4)  # a reader opens an entry twice (header, then samples): made once
def copy_wav(d: Path, utt: str, gen: Optional[str]) -> bytes:
    """The WAV bytes of copy `utt` of augmented dir `d`; `gen`, when given, must be its settings' hash."""
    if (d, utt) in _MAKING:
        raise SourceLoop(d / SOURCES / "wav.scp", f"the source of copy {utt!r} of {d} is made from that copy "
                                                  "itself (a loop of `trkd augment-wav` entries): point the "
                                                  "source at audio")
    c = _copies(d, gen)
    if gen is not None and gen != c.gen:
        raise InputError(d / STAMP, f"settings changed since this entry was written (entry: --gen {gen}, "
                                    f"now {c.gen}): rerun `trkd augment`")
    _MAKING.add((d, utt))
    try:
        return c.wav(utt)
    finally:
        _MAKING.discard((d, utt))


def parse_args(args: List[str]) -> Tuple[Path, str, Optional[str]]:
    """(DIR, COPY, G) of `[--gen G] DIR COPY`."""
    gen = None
    if len(args) >= 2 and args[0] == "--gen":
        gen, args = args[1], args[2:]
    if len(args) != 2:
        raise InputError(None, "expected `trkd augment-wav [--gen G] DIR COPY |`")
    return Path(args[0]).resolve(), args[1], gen


def open_entry(args: List[str], rx: str, scp: PathLike, key: str) -> io.BytesIO:
    """The copy an entry of `scp` names, as an in-memory WAV; any failure is one line naming `scp`'s line."""
    try:
        return io.BytesIO(copy_wav(*parse_args(args)))
    except SourceLoop:
        raise
    except InputError as err:
        raise InputError(scp, f"{key}: cannot make {rx.strip()!r}: {err}", line_of(scp, key)) from None
