"""On-device cost of each teacher and student: parameters, MACs per second of audio, and the
onnxruntime single-thread latency to embed 3 s of audio, with its ratio to the teacher of its pair.

Weights are random (latency does not depend on them). Each model goes through the same export as
`trkd export` (legacy exporter, opset 17, dynamic axes) and runs in an `OnnxEmbedder` with one
intra-op thread on `--frames` frames of 80-dim fbank; the figure is the median of repeated runs
after warm-up. Prints a Markdown table.

    tools/venv/bin/python bench/latency.py [--frames 300] [--min-time 2] [--only mini]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch

from trkd.export import export_onnx
from trkd.models import build_model
from trkd.models.complexity import count_params, human, macs_per_second
from trkd.onnx_embedder import OnnxEmbedder

MINI_TEACHER = {"name": "ecapa", "channels": 128, "mfa_channels": 384, "se_channels": 64,
                "attention_channels": 64, "embed_dim": 192}
MODELS: Dict[str, dict] = {
    "mini teacher ECAPA C=128": MINI_TEACHER,
    "mini student ECAPA C=64": {"name": "ecapa", "channels": 64, "mfa_channels": 192, "se_channels": 32,
                                "attention_channels": 32, "embed_dim": 128},
    "mini student MobileNetV2 x0.25": {"name": "mobilenetv2", "width_mult": 0.25, "last_channels": 256,
                                       "embed_dim": 128},
    "ECAPA-TDNN C=1024": {"name": "ecapa", "channels": 1024},
    "ECAPA-TDNN C=400": {"name": "ecapa", "channels": 400},
    "ResNet-34": {"name": "resnet", "depth": 34},
    "ResNet-152": {"name": "resnet", "depth": 152},
    "MobileNetV2": {"name": "mobilenetv2"},
    "SimAM-ResNet50": {"name": "simam_resnet", "depth": 50},
    "Res2Net-34": {"name": "res2net", "depth": 34},
    "ReDimNet-B5": {"name": "redimnet", "size": "b5"},
    "ReDimNet-B2": {"name": "redimnet", "size": "b2"},
    "CAM++": {"name": "campplus"},
}
# teacher -> its students (the paper's Table 1 pairs, and the mini recipe's)
PAIRS: List[Tuple[str, List[str]]] = [
    ("mini teacher ECAPA C=128", ["mini student ECAPA C=64", "mini student MobileNetV2 x0.25"]),
    ("ECAPA-TDNN C=1024", ["ECAPA-TDNN C=400", "CAM++"]),
    ("ResNet-34", ["MobileNetV2"]),
    ("ResNet-152", ["MobileNetV2"]),
    ("SimAM-ResNet50", ["Res2Net-34"]),
    ("ReDimNet-B5", ["ReDimNet-B2", "ResNet-34"]),
]


def median_latency(embedder: OnnxEmbedder, feats: np.ndarray, min_time: float, warmup: int = 3,
                   min_runs: int = 5, max_runs: int = 100) -> float:
    """Median seconds of one call, over at least `min_runs` runs and `min_time` seconds."""
    for _ in range(warmup):
        embedder(feats)
    times: List[float] = []
    start = time.perf_counter()
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() - start < min_time):
        t0 = time.perf_counter()
        embedder(feats)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(cfg: dict, frames: int, min_time: float, path: Path) -> Dict[str, float]:
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    export_onnx(model, path, model.feat_dim)
    feats = np.random.default_rng(0).standard_normal((1, frames, model.feat_dim)).astype(np.float32)
    return {"params": count_params(model), "macs": macs_per_second(model, model.feat_dim),
            "latency": median_latency(OnnxEmbedder(path, num_threads=1), feats, min_time)}


def table(results: Dict[str, Dict[str, float]], frames: int) -> str:
    head = (f"| model | role | parameters | MACs / s of audio | latency, {frames / 100:g} s of audio (ms) "
            "| × teacher: params | MACs | latency |")
    lines = [head, "|" + "---|" * 8]
    for teacher, students in PAIRS:
        if teacher not in results:
            continue
        ref = results[teacher]
        for name in [teacher] + students:
            if name not in results:
                continue
            r = results[name]
            role = "teacher" if name == teacher else "student"
            lines.append(f"| {name} | {role} | {r['params'] / 1e6:.2f} M | {human(r['macs'])} "
                         f"| {r['latency'] * 1e3:.2f} | {r['params'] / ref['params']:.3f} "
                         f"| {r['macs'] / ref['macs']:.3f} | {r['latency'] / ref['latency']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300, help="fbank frames per call (300 = 3 s)")
    parser.add_argument("--min-time", type=float, default=2.0, help="seconds of timed runs per model")
    parser.add_argument("--only", default="", help="measure only the pairs whose teacher name contains this")
    args = parser.parse_args()
    torch.set_num_threads(1)
    names = {n for t, s in PAIRS if args.only in t for n in [t] + s}
    results: Dict[str, Dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, cfg in MODELS.items():
            if name in names:
                results[name] = measure(cfg, args.frames, args.min_time, Path(tmp) / f"{len(results)}.onnx")
                print(f"{name}: {results[name]['latency'] * 1e3:.1f} ms", flush=True)
    print()
    print(f"onnxruntime, intra_op_num_threads=1, batch 1 x {args.frames} frames x 80 fbank; "
          f"median after 3 warm-up runs")
    print()
    print(table(results, args.frames))


if __name__ == "__main__":
    main()
