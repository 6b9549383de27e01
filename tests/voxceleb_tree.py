"""A tiny corpus tree in the OFFICIAL VoxCeleb1/2, MUSAN and RIRS_NOISES layouts, for data-prep tests.

Real (short) 16 kHz WAV files through soundfile. VoxCeleb2's `dev/aac` holds real m4a files
(`vox2_audio="m4a"`, needs ffmpeg), WAVs in the m4a layout (`"wav"`, no ffmpeg needed), or WAV
bytes under an .m4a name (`"m4a-bytes"`: for a stand-in ffmpeg, or for the missing-ffmpeg error).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import List

import numpy as np
import soundfile as sf

VOX1_DEV = ["id10001", "id10002"]
VOX1_TEST = ["id10270", "id10271", "id10272"]
VOX2_DEV = ["id00012", "id00015", "id00017"]
RATE = 16000


@dataclass
class Tree:
    vox1: Path
    vox2: Path
    musan: Path
    rirs: Path
    vox1_utts: List[str]  # relative paths id/video/n.wav
    vox2_utts: List[str]  # relative paths id/video/n.<ext>


def _wav(path: Path, rng: np.random.Generator, seconds: float = 0.1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), (0.1 * rng.standard_normal(int(RATE * seconds))).astype(np.float32), RATE, subtype="PCM_16")


def _speaker_files(root: Path, speakers: List[str], ext: str, rng, seconds: float) -> List[str]:
    rels = []
    for i, spk in enumerate(speakers):
        for v in range(2):
            video = f"v{i}{v}Ab-c_{v}"  # YouTube ids hold '-' and '_' too
            for n in range(1, 3):
                rels.append(f"{spk}/{video}/{n:05d}.{ext}")
    for rel in rels:
        _wav(root / rel, rng, seconds)
    return sorted(rels)


def _to_m4a(aac: Path, rels: List[str]) -> None:
    for rel in rels:
        wav = aac / rel
        m4a = wav.with_suffix(".m4a")
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(wav), "-c:a", "aac", str(m4a)],
                       check=True)
        wav.unlink()


def write_trials(path: Path, rels: List[str]) -> None:
    """Every ordered pair of distinct files, label 1 when the speakers match (official form)."""
    lines = []
    for a in rels:
        for b in rels:
            if a < b:
                lines.append(f"{int(a.split('/')[0] == b.split('/')[0])} {a} {b}")
    path.write_text("".join(line + "\n" for line in lines))


def make_voxceleb_tree(root: Path, vox2_audio: str = "wav", seed: int = 0, seconds: float = 0.1) -> Tree:
    """The tree under ROOT; speech files last SECONDS (a recipe test trains on them)."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    vox1, vox2, musan, rirs = root / "voxceleb1", root / "voxceleb2", root / "musan", root / "RIRS_NOISES"

    vox1_utts = _speaker_files(vox1 / "wav", VOX1_DEV + VOX1_TEST, "wav", rng, seconds)
    test = [r for r in vox1_utts if r.split("/")[0] in VOX1_TEST]
    write_trials(vox1 / "veri_test2.txt", test)
    write_trials(vox1 / "list_test_all2.txt", vox1_utts)
    write_trials(vox1 / "list_test_hard2.txt", [r for r in vox1_utts if r.split("/")[0] in VOX1_TEST[:2] + VOX1_DEV[:1]])

    aac = vox2 / "dev" / "aac"
    wavs = _speaker_files(aac, VOX2_DEV, "wav", rng, seconds)
    if vox2_audio == "m4a":
        if shutil.which("ffmpeg") is None:
            raise RuntimeError("vox2_audio='m4a' needs ffmpeg")
        _to_m4a(aac, wavs)
    elif vox2_audio == "m4a-bytes":
        for rel in wavs:
            (aac / rel).rename((aac / rel).with_suffix(".m4a"))
    elif vox2_audio != "wav":
        raise ValueError(f"vox2_audio must be wav, m4a or m4a-bytes, not {vox2_audio!r}")
    ext = "wav" if vox2_audio == "wav" else "m4a"
    vox2_utts = [r[: -len("wav")] + ext for r in wavs]

    for folder, sources in (("music", ["fma", "jamendo"]), ("noise", ["free-sound"]), ("speech", ["librivox"])):
        for src in sources:
            for k in range(2):
                _wav(musan / folder / src / f"{folder}-{src}-{k:04d}.wav", rng)

    for room in ("smallroom", "mediumroom", "largeroom"):
        lines = []
        for r in range(1, 3):
            for k in range(1, 3):
                rel = f"RIRS_NOISES/simulated_rirs/{room}/Room{r:03d}/Room{r:03d}-{k:05d}.wav"
                _wav(root / rel, rng, seconds=0.05)
                lines.append(f"--rir-id {room}-Room{r:03d}-{k:05d} --room-id {room}-Room{r:03d} {rel}\n")
        (rirs / "simulated_rirs" / room / "rir_list").write_text("".join(lines))

    return Tree(vox1, vox2, musan, rirs, vox1_utts, vox2_utts)
