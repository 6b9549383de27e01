"""Kaldi data dirs from the official VoxCeleb, MUSAN and RIRS_NOISES layouts.

VoxCeleb1: `wav/idXXXXX/<video>/<n>.wav` and the cleaned trial lists; VoxCeleb2 dev:
`dev/aac/idXXXXX/<video>/<n>.m4a`, converted once to 16 kHz mono WAV with ffmpeg (as WeSpeaker
does), because libsndfile cannot read AAC; MUSAN: `{music,noise,speech}/<source>/*.wav`;
RIRS_NOISES: `simulated_rirs/<room size>/rir_list`.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from tqdm import tqdm

from trkd.data.kaldi_dir import DataDir, iter_table, write_data_dir, write_kv
from trkd.data.trials import Trials, read_trials, voxceleb_utt_id, write_trials
from trkd.errors import InputError
from trkd.utils import PathLike
from trkd.utils.atomic import atomic_path

log = logging.getLogger(__name__)

# Official trial file -> Kaldi trial list name (the cleaned "2" versions of Vox1-O/E/H).
VOX1_TRIALS = {"veri_test2.txt": "vox1_O", "list_test_all2.txt": "vox1_E", "list_test_hard2.txt": "vox1_H"}
# MUSAN folder -> augmentation type; MUSAN's read speech is mixed in as babble.
MUSAN_TYPES = {"music": "music", "noise": "noise", "speech": "babble"}
RIR_ROOMS = ("smallroom", "mediumroom", "largeroom")


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise InputError(path, f"no such directory ({what})")
    return path


def find_voxceleb_audio(root: Path, exts: Tuple[str, ...]) -> Dict[str, Path]:
    """utt id -> file for every `idXXXXX/<video>/<n>.<ext>` under `root`; a .wav wins over an .m4a."""
    found: Dict[str, Path] = {}
    for path in sorted(p for ext in exts for p in root.rglob(f"*.{ext}")):
        rel = path.relative_to(root)
        if len(rel.parts) != 3:
            raise InputError(path, f"not in the VoxCeleb layout idXXXXX/<video>/<n>.{path.suffix[1:]} under {root}")
        utt = voxceleb_utt_id(rel.with_suffix(".wav").as_posix())
        if utt not in found or path.suffix == ".wav":
            found[utt] = path
    if not found:
        raise InputError(root, f"no .{' or .'.join(exts)} files in the VoxCeleb layout idXXXXX/<video>/<n>")
    return found


def voxceleb_data_dir(audio: Dict[str, Path]) -> DataDir:
    """The speaker is the VoxCeleb id, the first component of the utterance id."""
    return DataDir({u: str(p.resolve()) for u, p in audio.items()}, {u: u.split("-", 1)[0] for u in audio})


def m4a_to_wav(jobs: List[Tuple[Path, Path]], nj: int) -> None:
    """`ffmpeg -i x.m4a -ar 16000 -ac 1 y.wav` for each (src, dst) whose dst is missing, nj at a time."""
    todo = [(s, d) for s, d in jobs if not d.is_file()]
    if not todo:
        return
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise InputError(todo[0][0], f"ffmpeg not found on PATH: it is needed to convert {len(todo)} VoxCeleb2 "
                         ".m4a files to .wav (install ffmpeg, or convert them beforehand into --wav-dir)")
    log.info("converting %d of %d m4a files with %s (%d jobs)", len(todo), len(jobs), ffmpeg, nj)

    def one(job: Tuple[Path, Path]) -> None:
        src, dst = job
        # ffmpeg writes to a temporary name, so an interrupted run never leaves a half WAV behind.
        with atomic_path(dst) as tmp:
            res = subprocess.run([ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-i", str(src),
                                  "-ar", "16000", "-ac", "1", str(tmp)], capture_output=True, text=True)
            if res.returncode != 0:
                why = (res.stderr.strip().splitlines() or [f"exit status {res.returncode}"])[-1]
                raise InputError(src, f"ffmpeg could not convert it: {why}")

    with ThreadPoolExecutor(max(1, nj)) as pool:
        for _ in tqdm(pool.map(one, todo), total=len(todo), desc="m4a -> wav", unit="file"):
            pass


def prepare_vox2_dev(vox2: Path, out: Path, wav_dir: Path, convert: bool, nj: int) -> DataDir:
    aac = _require_dir(vox2 / "dev" / "aac", "expected VoxCeleb2's dev/aac/idXXXXX/<video>/<n>.m4a")
    audio = find_voxceleb_audio(aac, ("m4a", "wav"))
    m4a = {u: p for u, p in audio.items() if p.suffix == ".m4a"}
    targets = {u: wav_dir / p.relative_to(aac).with_suffix(".wav") for u, p in m4a.items()}
    if convert:
        m4a_to_wav([(m4a[u], targets[u]) for u in sorted(m4a)], nj)
    else:
        missing = [u for u in sorted(m4a) if not targets[u].is_file()]
        if missing:
            raise InputError(targets[missing[0]], f"no converted WAV for {m4a[missing[0]]} ({len(missing)} missing); "
                             "run with --convert-m4a")
    audio.update(targets)
    data = voxceleb_data_dir(audio)
    write_data_dir(out / "vox2_dev", data)
    return data


def convert_trials(src: Path, dst: Path, known: Dict[str, str]) -> Trials:
    """An official VoxCeleb trial file (`1 id/video/n.wav id/video/n.wav`) -> Kaldi form; every
    utterance must exist in VoxCeleb1."""
    trials = read_trials(src)
    numbered = iter_table(src, min_fields=3, max_fields=None)  # same lines, same order: for line numbers
    for e, t, (n, _) in zip(trials.enroll, trials.test, numbered):
        for utt in (e, t):
            if voxceleb_utt_id(utt) not in known:
                raise InputError(src, f"utterance {utt} is not in VoxCeleb1's wav/ folder", n)
    trials = trials.kaldi_form()
    write_trials(dst, trials)
    return trials


def prepare_vox1(vox1: Path, out: Path) -> DataDir:
    """`data/vox1` (all of VoxCeleb1), its trial lists, and `data/vox1_dev` (the non-test speakers)."""
    wav = _require_dir(vox1 / "wav", "expected VoxCeleb1's wav/idXXXXX/<video>/<n>.wav")
    for name in VOX1_TRIALS:
        if not (vox1 / name).is_file():
            raise InputError(vox1 / name, "no such file (official VoxCeleb1 trial list, expected beside wav/)")
    data = voxceleb_data_dir(find_voxceleb_audio(wav, ("wav",)))
    write_data_dir(out / "vox1", data)
    test_speakers = set()
    for name, kaldi_name in VOX1_TRIALS.items():
        trials = convert_trials(vox1 / name, out / "vox1" / "trials" / kaldi_name, data.utt2spk)
        if kaldi_name == "vox1_O":
            test_speakers = {data.utt2spk[u] for u in trials.enroll + trials.test}
    dev = [u for u, s in data.utt2spk.items() if s not in test_speakers]
    write_data_dir(out / "vox1_dev", DataDir({u: data.wav_scp[u] for u in dev}, {u: data.utt2spk[u] for u in dev}))
    return data


def prepare_musan(musan: Path, out: Path) -> DataDir:
    """`data/musan`: wav.scp, utt2type (noise, music, babble); each file is its own 'speaker'."""
    wav: Dict[str, str] = {}
    utt2type: Dict[str, str] = {}
    for folder, kind in MUSAN_TYPES.items():
        files = sorted(_require_dir(musan / folder, "expected MUSAN's music/, noise/, speech/").rglob("*.wav"))
        if not files:
            raise InputError(musan / folder, "no .wav files")
        for path in files:
            utt = path.stem  # MUSAN names are already unique: music-fma-0000, noise-free-sound-0000, ...
            if utt in wav:
                raise InputError(path, f"duplicate MUSAN file name {utt} (also {wav[utt]})")
            wav[utt] = str(path.resolve())
            utt2type[utt] = kind
    data = DataDir(wav, {u: u for u in wav})
    write_data_dir(out / "musan", data)
    write_kv(out / "musan" / "utt2type", utt2type)
    return data


def prepare_rirs(rirs: Path, out: Path) -> DataDir:
    """`data/rirs`: the simulated RIRs listed in each room size's official `rir_list`."""
    wav: Dict[str, str] = {}
    for room in RIR_ROOMS:
        rir_list = rirs / "simulated_rirs" / room / "rir_list"
        # Lines: --rir-id ID --room-id ROOM RIRS_NOISES/simulated_rirs/<room>/RoomN/x.wav
        for n, fields in iter_table(rir_list, min_fields=5, max_fields=None):
            if fields[0] != "--rir-id" or fields[2] != "--room-id":
                raise InputError(rir_list, f"expected '--rir-id ID --room-id ROOM FILE', got {' '.join(fields)!r}", n)
            path = rirs.parent / fields[-1]
            if not path.is_file():
                raise InputError(rir_list, f"no such file {path}", n)
            wav[fields[1]] = str(path.resolve())
    data = DataDir(wav, {u: u for u in wav})
    write_data_dir(out / "rirs", data)
    return data


def prepare_voxceleb(
    out: PathLike,
    vox1: Optional[PathLike] = None,
    vox2: Optional[PathLike] = None,
    musan: Optional[PathLike] = None,
    rirs: Optional[PathLike] = None,
    convert_m4a: bool = True,
    wav_dir: Optional[PathLike] = None,
    nj: int = 4,
) -> Dict[str, DataDir]:
    """Kaldi data dirs from the official VoxCeleb1/2, MUSAN and RIRS_NOISES folders.

    Writes OUT/vox2_dev (training: VoxCeleb2 dev, m4a converted once to 16 kHz WAV in --wav-dir,
    default OUT/wav/vox2_dev), OUT/vox1 with trials/vox1_{O,E,H} (from veri_test2.txt,
    list_test_all2.txt, list_test_hard2.txt beside VoxCeleb1's wav/), OUT/vox1_dev, OUT/musan
    (wav.scp, utt2type: noise, music, babble) and OUT/rirs (simulated RIRs). Utterance ids are
    the relative paths without extension, '/' -> '-'. Only the corpora given are prepared.
    """
    out = Path(out)
    sources = {"vox1": vox1, "vox2": vox2, "musan": musan, "rirs": rirs}
    if all(v is None for v in sources.values()):
        raise InputError(None, "nothing to prepare: give at least one of --vox1, --vox2, --musan, --rirs")
    for name, root in sources.items():
        if root is not None:
            _require_dir(Path(root), f"--{name}")
    done: Dict[str, DataDir] = {}
    if vox2 is not None:
        wav_dir = Path(wav_dir) if wav_dir is not None else out / "wav" / "vox2_dev"
        done["vox2_dev"] = prepare_vox2_dev(Path(vox2), out, wav_dir, convert_m4a, nj)
    if vox1 is not None:
        done["vox1"] = prepare_vox1(Path(vox1), out)
    if musan is not None:
        done["musan"] = prepare_musan(Path(musan), out)
    if rirs is not None:
        done["rirs"] = prepare_rirs(Path(rirs), out)
    return done
