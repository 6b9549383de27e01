"""SimAM-ResNet (Yang et al., ICML 2021 for SimAM; Qin et al., 2022 for speakers): the ResNet frame
with the parameter-free SimAM attention on the residual branch of every block."""

from __future__ import annotations

import functools

import torch
from torch import nn

from trkd.models.resnet import BLOCKS, ResNet, _lookup

# depth -> (block type, blocks per stage); 100 is the deep speaker layout of the SimAM-ResNet100.
DEPTHS = {
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    100: ("basic", (6, 16, 24, 3)),
}


class SimAM(nn.Module):
    """Weights each activation by sigmoid(1 / e*), e* its minimal energy within its channel:
    1 / e* = (x − μ)² / (4 (σ² + λ)) + 1/2, with μ, σ² the channel's mean and variance over the
    (frequency × time) map, σ² normalised by n − 1 for n positions. No parameters.

    `lam` (λ = 1e-4 in the paper) keeps a constant channel from dividing by zero.
    """

    def __init__(self, lam: float = 1e-4):
        super().__init__()
        self.lam = lam

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = (x - x.mean(dim=(2, 3), keepdim=True)).pow(2)
        # n counted from a tensor, not a Python int, so the ONNX graph keeps the time axis dynamic
        n = torch.ones_like(x[:1, :1]).sum()
        var = d.sum(dim=(2, 3), keepdim=True) / (n - 1)
        return x * torch.sigmoid(d / (4 * (var + self.lam)) + 0.5)

    def extra_repr(self) -> str:
        return f"lam={self.lam}"


class SimAMResNet(ResNet):
    """ResNet stem, stages, pooling and embedding (see ResNet) with SimAM in each block.

    `width` is the stem's channel count: the published SimAM-ResNet34/100 use 64.
    """

    def __init__(self, feat_dim: int = 80, embed_dim: int = 256, depth: int = 34, width: int = 64):
        nn.Module.__init__(self)  # not ResNet.__init__, which would build plain blocks
        kind, counts = _lookup("simam_resnet", DEPTHS, depth)
        self._build(feat_dim, embed_dim, width, counts, functools.partial(BLOCKS[kind], attention=SimAM),
                    BLOCKS[kind].expansion)
