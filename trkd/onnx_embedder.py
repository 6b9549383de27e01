"""An exported embedding extractor run by onnxruntime, called like the torch model it came from.

`OnnxEmbedder(path)(feats)` takes mean-normalised fbank `(B, T, F)` and returns `(B, D)`, as a
torch tensor for a torch input and a numpy array otherwise, so code written for the torch model
(`trkd.extract.embed_utterance`) runs on it unchanged. A graph of `trkd export --with-fbank` takes
a waveform `(samples,)` instead (`takes_wave`); `run` then maps one waveform to `(1, D)`. Both
kinds carry the fbank options they expect in their metadata (`METADATA_KEY`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from trkd.errors import InputError
from trkd.utils import PathLike

METADATA_KEY = "trkd.fbank"  # json of FbankOptions, written by trkd export
WAVE_INPUT = "wave"


class OnnxEmbedder:
    """onnxruntime CPU session over an exported model; `num_threads=1` gives a single-thread runtime."""

    def __init__(self, path: PathLike, num_threads: Optional[int] = None):
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise InputError(path, "no such ONNX file")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if num_threads is not None:
            # inter-op threads too: one thread means one core, whatever the graph's parallelism
            opts.intra_op_num_threads = num_threads
            opts.inter_op_num_threads = num_threads
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for a bad graph
            raise InputError(path, f"not a loadable ONNX model ({type(err).__name__}: {err})") from None
        inp, out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        self.input_name, self.output_name = inp.name, out.name
        # the static last axes; the batch and frame axes are symbolic names
        self.takes_wave = inp.name == WAVE_INPUT
        self.feat_dim = inp.shape[-1] if isinstance(inp.shape[-1], int) and not self.takes_wave else None
        self.embed_dim = out.shape[-1] if isinstance(out.shape[-1], int) else None
        self.path = path

    def fbank_options(self):
        """The FbankOptions recorded at export; an InputError for a file without them."""
        import json

        from trkd.features import FbankOptions

        recorded = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if recorded is None:
            raise InputError(self.path, "records no fbank options (exported by an older trkd): export it again")
        return FbankOptions(**json.loads(recorded))

    def run(self, feats: np.ndarray) -> np.ndarray:
        """`(B, T, F)` float32 array in (a waveform `(samples,)` if `takes_wave`), `(B, D)` float32 out."""
        feats = np.ascontiguousarray(feats, dtype=np.float32)
        return self.session.run([self.output_name], {self.input_name: feats})[0]

    def __call__(self, feats):
        if hasattr(feats, "detach"):  # a torch tensor: answer in kind, on its device
            import torch

            return torch.from_numpy(self.run(feats.detach().cpu().numpy())).to(feats.device)
        return self.run(feats)

    def eval(self) -> "OnnxEmbedder":
        """Already inference-only; kept so it drops in where a torch model is put in eval mode."""
        return self
