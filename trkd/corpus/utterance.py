"""One corpus utterance from its ids alone: session voice, channel, synthesis, noise, reverb."""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Sequence, Tuple

import numpy as np

from trkd.corpus.config import FS, Difficulty, Sizes
from trkd.corpus.noise import noise_clip, noise_kind, noise_segment
from trkd.corpus.rng import rng_for
from trkd.corpus.session import Session, channel_db, channel_tilt, draw_session, render
from trkd.corpus.synth import FREQ, synthesize
from trkd.corpus.voices import Speaker, population, session_voice

ENV_POOL = "env"


def session_for(seed: int, utt: str, diff: Difficulty, n_noise: int) -> Session:
    """The recording conditions of utterance `utt` (depend on the seed and the id only)."""
    return draw_session(rng_for(seed, "session", utt), diff, n_noise)


def make_utterance(seed: int, spk: Speaker, utt: str, diff: Difficulty, n_noise: int,
                   noise_seconds: float) -> Tuple[np.ndarray, Dict]:
    """The int16 samples of `utt` said by `spk`, and what was drawn for it (for `utt2session`)."""
    rng = rng_for(seed, "utterance", utt)
    lo, hi = diff.duration_s
    n = int(round(np.exp(rng.uniform(np.log(lo), np.log(hi))) * 100)) * (FS // 100)
    voice = session_voice(spk.voice, rng, diff.within_speaker)
    sess = session_for(seed, utt, diff, n_noise)
    eq = 10 ** (channel_db(sess, FREQ) / 20.0)
    speech = synthesize(voice, rng, n, diff.within_speaker, eq)
    if not np.all(np.isfinite(speech)):  # int16 of NaN is arbitrary: a corpus must never hold it silently
        raise ValueError(f"{utt} (speaker {spk.spk}): synthesised samples are not finite")
    noise = noise_segment(noise_clip(seed, ENV_POOL, sess.noise_idx, noise_seconds), n, sess.noise_offset)
    audio = render(speech, sess, noise, rng, diff)
    info = {
        "dur": f"{n / FS:.2f}", "f0": f"{voice.f0_hz:.1f}", "snr": f"{sess.snr_db:.1f}",
        "noise": noise_kind(sess.noise_idx), "reverb": int(sess.reverb), "tilt": f"{channel_tilt(sess):.2f}",
    }
    return audio, info


def speech_waves(seconds: Sequence[float], seed: int = 0) -> List[np.ndarray]:
    """Float32 waveforms in [-1, 1), one per duration: an utterance of a distinct made-up speaker
    each, in a session of its own (channel, noise, level), as `trkd synth-corpus` makes them. For
    checks that need audio with speech's spectrum when no data dir is given (`trkd export`)."""
    diff, sizes = Difficulty(), Sizes.quick()
    waves = []
    for spk, sec in zip(population(seed, "probe", len(seconds), diff, "probe"), seconds):
        audio, _ = make_utterance(seed, spk, f"{spk.spk}-u001", dataclasses.replace(diff, duration_s=(sec, sec)),
                                  sizes.noise_clips, sizes.noise_seconds)
        waves.append(audio.astype(np.float32) / 32768)
    return waves
