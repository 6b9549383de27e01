"""Speaker-embedding models and the registry that builds them from a config's `model:` block.

Every model maps mean-normalised fbank `(B, T, F)` to an embedding `(B, embed_dim)`, exposes
`forward_levels(feats)` (pooled intermediate levels, the embedding last) with matching
`level_dims`, and has no data-dependent control flow (ONNX export with a dynamic time axis).
"""

from __future__ import annotations

import inspect
from typing import Dict, List, Optional

from torch import nn

from trkd.models.campplus import CAMPPlus
from trkd.models.ecapa import ECAPATDNN
from trkd.models.mobilenetv2 import MobileNetV2
from trkd.models.redimnet import ReDimNet
from trkd.models.res2net import Res2Net
from trkd.models.resnet import ResNet
from trkd.models.simam import SimAMResNet
from trkd.models.xvector import XVector

MODELS: Dict[str, type] = {
    "xvector": XVector,
    "ecapa": ECAPATDNN,
    "resnet": ResNet,
    "mobilenetv2": MobileNetV2,
    "res2net": Res2Net,
    "simam_resnet": SimAMResNet,
    "campplus": CAMPPlus,
    "redimnet": ReDimNet,
}


class ModelConfigError(ValueError):
    """A bad `model:` block; `key` names the offending key (None when the name is missing)."""

    def __init__(self, message: str, key: Optional[str] = None):
        super().__init__(message)
        self.key = key


def accepted_keys(name: str) -> List[str]:
    """The keyword arguments of model `name`'s constructor, i.e. the keys its config may hold."""
    return list(inspect.signature(MODELS[name].__init__).parameters)[1:]


def build_model(cfg: dict) -> nn.Module:
    """Build the model described by a `model:` block, e.g. `{"name": "ecapa", "channels": 512}`.

    Missing keys take the constructor's defaults; an unknown name or key is a ModelConfigError
    (a ValueError) that lists the valid choices.
    """
    cfg = dict(cfg)
    name = cfg.pop("name", None)
    if name not in MODELS:
        raise ModelConfigError(f"unknown model name {name!r}; valid names: {', '.join(MODELS)}", "name")
    accepted = accepted_keys(name)
    for key in cfg:
        if key not in accepted:
            raise ModelConfigError(
                f"unknown key {key!r} for model {name!r}; accepted keys: name, {', '.join(accepted)}", key)
    return MODELS[name](**cfg)


__all__ = ["MODELS", "ModelConfigError", "accepted_keys", "build_model"]
