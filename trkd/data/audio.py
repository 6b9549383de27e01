"""Reading the audio of a data dir: one `wav.scp` entry, or one segment of it, as float32 samples.

Errors name the `wav.scp` file and line of the entry, so that a person can find the bad recording.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import Optional

import numpy as np
import soundfile as sf

from trkd.data.kaldi_dir import DataDir, PathLike, line_of
from trkd.data.pipes import check_command, is_command, own_entry, run_command
from trkd.errors import InputError
from trkd.utils.atomic import write_bytes_atomic


def wav_truncation(path: PathLike) -> Optional[str]:
    """Why a RIFF/WAVE file is truncated, or None.

    libsndfile silently shortens a WAV whose data chunk is cut off, so the header's declared size
    is compared with the bytes actually present. Streamed WAVs (size 0 or 0xFFFFFFFF) are trusted.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        pos = 12
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return "truncated WAV: no data chunk"
            cid, n = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            pos += 8
            if cid == b"data":
                if n in (0, 0xFFFFFFFF) or pos + n <= size:
                    return None
                return f"truncated WAV: header declares {n} bytes of audio, file has {size - pos}"
            pos += n + (n & 1)
            f.seek(pos)


def audio_info(path: str, scp: PathLike, key: str, rate: Optional[int] = None):
    """Header of the audio behind `wav.scp` entry `key`; checks readability, truncation, rate, mono."""
    try:
        info = sf.info(_source(path, scp, key))
        why = None if is_command(path) else wav_truncation(path)
    except (OSError, RuntimeError) as err:  # soundfile raises LibsndfileError (a RuntimeError)
        raise InputError(scp, f"{key}: cannot read audio {path!r}: {_short(err)}", line_of(scp, key)) from None
    if why:
        raise InputError(scp, f"{key}: {path!r}: {why}", line_of(scp, key))
    if rate is not None and info.samplerate != rate:
        raise InputError(scp, f"{key}: {path!r} has sample rate {info.samplerate}, expected {rate}", line_of(scp, key))
    if info.channels != 1:
        raise InputError(scp, f"{key}: {path!r} has {info.channels} channels, expected 1", line_of(scp, key))
    return info


def read_samples(path: str, scp: PathLike, key: str, start: int = 0, stop: Optional[int] = None) -> np.ndarray:
    """Samples `[start, stop)` of a `wav.scp` entry as float32 in [-1, 1); a short read is an error."""
    try:
        wave, _ = sf.read(_source(path, scp, key), start=start, stop=stop, dtype="float32", always_2d=False)
    except (OSError, RuntimeError) as err:
        raise InputError(scp, f"{key}: cannot read audio {path!r}: {_short(err)}", line_of(scp, key)) from None
    if stop is not None and len(wave) != stop - start:
        raise InputError(scp, f"{key}: {path!r}: read {len(wave)} samples, expected {stop - start}", line_of(scp, key))
    return wave


def load_utt(d: PathLike, data: DataDir, utt: str, rate: Optional[int] = None) -> np.ndarray:
    """The samples of utterance `utt` of data dir `d` (its recording, or its segment of one).

    A segment end past the recording is clipped to it, as Kaldi's extract-segments tolerates;
    a segment that starts past the end is an error naming the `segments` line.
    """
    d = Path(d)
    scp = d / "wav.scp"
    rec, span = utt, None
    if data.segments:
        rec, t0, t1 = data.segments[utt]
        span = (t0, t1)
    path = data.wav_scp[rec]
    info = audio_info(path, scp, rec, rate)
    if span is None:
        return read_samples(path, scp, rec, 0, info.frames)
    start = int(round(span[0] * info.samplerate))
    stop = min(int(round(span[1] * info.samplerate)), info.frames)
    if start >= stop:
        seg = d / "segments"
        raise InputError(seg, f"{utt}: segment {span[0]:g}-{span[1]:g} s lies outside recording {rec!r} "
                              f"({info.frames / info.samplerate:.3f} s)", line_of(seg, utt))
    return read_samples(path, scp, rec, start, stop)


def write_wav(path: PathLike, wave: np.ndarray, rate: int) -> None:
    """Write 16-bit PCM atomically (the toolkit's one WAV writer): int16 samples as they are, floats
    in [-1, 1) with a signal that would clip scaled down to a peak of 0.99."""
    # Encoded in memory: libsndfile syncs a real file to disk on close, which costs more than
    # making a short utterance.
    write_bytes_atomic(path, encode_wav(wave, rate))


def encode_wav(wave: np.ndarray, rate: int) -> bytes:
    """The bytes `write_wav` writes (also what `trkd augment-wav` prints and its readers decode)."""
    if wave.dtype.kind == "f" and len(wave):
        peak = float(np.max(np.abs(wave)))
        if peak > 32767 / 32768:
            wave = wave * (0.99 / peak)
    buf = io.BytesIO()
    sf.write(buf, wave, rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()


def _source(path: str, scp: PathLike, key: str):
    """The file, a `trkd augment-wav` copy made in-process, or the output of an allowed `cmd |` entry
    (the pipe policy of `trkd.data.pipes`)."""
    if "|" in path:
        check_command(path, scp, line_of(scp, key), key)
    if not is_command(path):
        return path
    args = own_entry(path)
    if args is not None:
        from trkd.data.virtual import open_entry  # it imports this module

        return open_entry(args, path, scp, key)
    return run_command(path, scp, line_of(scp, key), key)


def _short(err: Exception) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__
