"""Kaldi fbank as fixed matrix products: the front end of a WAV-in ONNX graph.

`trkd fbank` calls torchaudio's Kaldi fbank, whose `torch.fft.rfft` has no ONNX symbolic in the
legacy exporter of torch 2.9. Every per-frame step before the power spectrum is linear in the
frame's samples (DC removal, pre-emphasis, the window, the zero padding and the real DFT), so they
fold into one `(frame_length, 2·bins)` matrix built once in float64 and stored in float32; the
graph is then a gather (framing), two matmuls, squares and a log. No dither: an exported model
embeds test audio, which `trkd fbank` computes with dither 0.
"""

from __future__ import annotations

import math

import torch
import torchaudio.compliance.kaldi as kaldi
from torch import nn

from trkd.errors import InputError
from trkd.features import INT16_SCALE, FbankOptions

# options the folded graph does not implement, with the value it assumes
_FIXED = {"snip_edges": True, "use_energy": False, "use_log_fbank": True, "use_power": True}
BLACKMAN_COEFF = 0.42  # torchaudio's (and Kaldi's) default; the options do not carry it


def _frame_map(opts: FbankOptions, length: int, padded: int) -> torch.Tensor:
    """float64 `(length, 2·(padded/2 + 1))`: a raw frame (row) to the real and imaginary DFT parts."""
    eye = torch.eye(length, dtype=torch.float64)
    steps = eye
    if opts.remove_dc_offset:
        steps = steps - 1.0 / length  # x - mean(x)
    # pre-emphasis y[i] = x[i] - c·x[i-1], with x[-1] = x[0] as Kaldi does
    shift = torch.diag(torch.ones(length - 1, dtype=torch.float64), -1)
    shift[0, 0] = 1.0
    steps = (eye - opts.preemphasis_coefficient * shift) @ steps
    window = kaldi._feature_window_function(opts.window_type, length, BLACKMAN_COEFF, torch.device("cpu"),
                                            torch.float64)
    steps = window[:, None] * steps  # (length, length): column = input sample, row = output sample
    n = torch.arange(length, dtype=torch.float64)[:, None]
    k = torch.arange(padded // 2 + 1, dtype=torch.float64)[None, :]
    angle = 2 * math.pi * n * k / padded  # zero padding to `padded` adds nothing to the sums
    basis = torch.cat([torch.cos(angle), -torch.sin(angle)], dim=1)
    return steps.T @ basis


class WaveFbank(nn.Module):
    """`(samples,)` float waveform in [-1, 1) → `(frames, num_mel_bins)` log-mel, as `trkd fbank`."""

    def __init__(self, opts: FbankOptions):
        super().__init__()
        for key, value in _FIXED.items():
            if getattr(opts, key) != value:
                raise InputError(None, f"fbank option {key}={getattr(opts, key)} is not supported in an "
                                 f"exported graph (only {key}={value})")
        rate = opts.sample_frequency
        self.length = int(rate * opts.frame_length / 1000)
        self.shift = int(rate * opts.frame_shift / 1000)
        padded = 1 << (self.length - 1).bit_length() if opts.round_to_power_of_two else self.length
        self.bins = padded // 2 + 1
        mel, _ = kaldi.get_mel_banks(opts.num_mel_bins, padded, float(rate), opts.low_freq, opts.high_freq,
                                     100.0, -500.0, 1.0)  # Kaldi's VTLN defaults: warp 1.0 is no warp
        mel = nn.functional.pad(mel, (0, 1))  # the Nyquist bin has no mel weight
        self.register_buffer("frame_map", _frame_map(opts, self.length, padded).float())
        self.register_buffer("mel_t", mel.T.contiguous().float())
        self.register_buffer("eps", torch.tensor(torch.finfo(torch.float32).eps))

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        x = wave.reshape(-1) * INT16_SCALE
        # the frame count from the traced length, so that the graph keeps it dynamic
        frames = (x.shape[0] - self.length) // self.shift + 1
        starts = torch.arange(frames, device=x.device) * self.shift
        index = starts[:, None] + torch.arange(self.length, device=x.device)[None, :]
        spec = x[index] @ self.frame_map
        re, im = spec[:, :self.bins], spec[:, self.bins:]
        return torch.maximum((re * re + im * im) @ self.mel_t, self.eps).log()
