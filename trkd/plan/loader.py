"""Loader workers per GPU: what one loader worker reads (chunks/s, by how the features are stored)
against what a GPU's training step consumes (chunks/s, from the model's compute)."""

from __future__ import annotations

from typing import Optional

from trkd.utils.compressed import METHOD_FORMATS

# One worker's loader chunks/s (200-frame chunks of 80-bin fbank, batches of 128, normalised and
# collated) per second of its CPU time, i.e. with a core to itself: medians of
# `bench/loader.py --repeats 9` on a 2-core Intel Xeon.
CHUNKS_PER_WORKER = {"float32": 10170, "CM": 5100, "CM2": 8480, "CM3": 9300}
MEASURED_ON = "bench/loader.py, a worker with a Xeon core to itself"
# Sustained multiply-accumulates per second of one GPU on these models, assumed (about a third of an
# A100's bf16 peak) until measured: `bench/gpu.py` prints the measured value as a
# `GPU_MACS_PER_SECOND = …` line to put here (bench/README.md).
GPU_MACS_PER_SECOND = 50e12


def storage(compression: Optional[int]) -> str:
    return "float32" if compression is None else METHOD_FORMATS.get(compression, "CM")


def loader_note(num_frms: int, macs_per_second: float, compression: Optional[int]) -> str:
    """Workers per GPU so that the loader keeps up with the step (forward + backward: 3 x the MACs).
    Per GPU in chunks/s, whatever the batch: the config's batch is global, shared out over GPUs that
    the plan does not know, so a steps/s figure here would be per global batch and misleading."""
    kind = storage(compression)
    per_worker = CHUNKS_PER_WORKER[kind]
    consumed = GPU_MACS_PER_SECOND / (3 * macs_per_second * num_frms / 100)
    workers = max(1, -(-int(consumed) // per_worker))
    return (f"loader: {kind} {per_worker} chunks/s per worker ({MEASURED_ON}); a GPU at "
            f"{GPU_MACS_PER_SECOND / 1e12:g} T MAC/s takes {consumed:.0f} chunks/s: {workers} workers per GPU")
