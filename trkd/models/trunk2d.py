"""Shared frame of the 2-D (image-like) models: fbank as a 1-channel image, a stem, stages, and
levels pooled from each stage. Subclasses set `stem`, `stages`, and define `_embed`."""

from __future__ import annotations

from typing import List

import torch
from torch import nn

from trkd.models.pooling import mean_std


class Trunk2d(nn.Module):
    """Runs `stem` then each of `stages` on `(B, 1, F, T)`; `_embed(last_stage_output)` gives the
    embedding. Levels for multi-level KD: each stage's output averaged over frequency, mean+std
    over time; then the embedding."""

    stem: nn.Module
    stages: nn.ModuleList

    def _stages(self, feats: torch.Tensor) -> List[torch.Tensor]:
        # (B, T, F) -> (B, 1, F, T): frequency is the image height, time the width.
        x = self.stem(feats.transpose(1, 2).unsqueeze(1))
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs

    def _embed(self, last: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_levels(self, feats: torch.Tensor) -> List[torch.Tensor]:
        outs = self._stages(feats)
        return [mean_std(o.mean(dim=2)) for o in outs] + [self._embed(outs[-1])]

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self._embed(self._stages(feats)[-1])
