"""The compute of making the augmented copies, which `trkd fbank` pays at every run when the copies
are `trkd augment-wav` entries rather than WAVs (`trkd.data.virtual`).

Counted as multiply-accumulates of the signal arithmetic only (reading and 16-bit rounding are
not): speed changes as torchaudio's polyphase sinc resampler (a kernel of 2·width + orig taps per
output sample), reverberation as three real FFTs of the full convolution's length (2·L·log2 L each)
and the spectrum product, additive copies as the power sums, scaling and adding of each summed item.
"""

from __future__ import annotations

import math

import numpy as np

# The RIR length assumed for reverberation (RIRS_NOISES' simulated RIRs are about this long).
RIR_SECONDS = 1.0


def resample_macs_per_sample(orig: int, new: int, lowpass_filter_width: int = 6, rolloff: float = 0.99) -> float:
    """Multiply-accumulates per output sample of torchaudio's `resample(orig → new)`."""
    g = math.gcd(orig, new)
    o, n = orig // g, new // g
    width = math.ceil(lowpass_filter_width * o / (min(o, n) * rolloff))
    return float(2 * width + o)


def reverb_macs(samples: np.ndarray, rate: int) -> np.ndarray:
    length = samples + int(RIR_SECONDS * rate) - 1
    return 3 * 2 * length * np.log2(length) + 2 * length


def copy_macs(aug, speed_perturb: bool, durations: np.ndarray) -> float:
    """Expected multiply-accumulates of making every copy of every source once."""
    rate = aug.rate
    speeds = list(aug.speed_factors) if speed_perturb else []
    total = 0.0
    for f in [1.0] + speeds:
        samples = np.round(durations * rate / f)
        # every copy of a speed starts from the source: the speed change is paid by each
        resample = 0.0 if f == 1.0 else resample_macs_per_sample(int(round(rate * f)), rate) * float(samples.sum())
        if f != 1.0:
            total += resample
        if f != 1.0 and not aug.augment_speed:
            continue
        for kind in aug.copies:
            if kind == "reverb":
                work = float(reverb_macs(samples, rate).sum())
            else:
                items = sum(aug.babble_count) / 2 if kind == "babble" else 1
                work = (2 + 2 * items) * float(samples.sum())
            total += aug.prob * (work + resample)
    return total
