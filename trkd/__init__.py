"""trkd: speaker-verification training and knowledge distillation, Kaldi-style.

The Python API (`trkd.load_model`, `trkd.load_onnx`, `trkd.score`, `trkd.Embedder`,
`trkd.score_epochs`) lives in `trkd.api` and is imported on first use, so that `import trkd` does
not load torch.
"""

__version__ = "0.1.0"
__all__ = ["Embedder", "load_model", "load_onnx", "score", "score_epochs"]


def __getattr__(name):
    if name in __all__:
        from trkd import api

        return getattr(api, name)
    raise AttributeError(f"module 'trkd' has no attribute {name!r}")
