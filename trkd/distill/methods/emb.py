"""emb: embedding-level KD.

    L_emb = λ_emb · mean_b (1 − cos(P eˢ_b, eᵀ_b))     (`distance: mse`: ‖P eˢ − eᵀ‖² on unit vectors)

P is a learned bias-free linear map when the embedding sizes differ, the identity otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

from trkd.distill.heads import projection
from trkd.errors import InputError
from trkd.losses.emb import DISTANCES, emb_loss


@dataclass
class EmbSettings:
    weight: float = 1.0
    distance: str = "cosine"

    def check(self, source, prefix: str, lines, given) -> None:
        if self.distance not in DISTANCES:
            raise InputError(source, f"'{prefix}.distance' must be one of {', '.join(DISTANCES)}",
                             lines.get(f"{prefix}.distance"))


class Emb:
    Settings = EmbSettings
    level, warm, needs, online_only = "embedding", False, ("embedding",), False

    def __init__(self, settings: EmbSettings, ctx):
        self.settings = settings
        self.proj = projection(ctx.student_dim, ctx.level_dims[-1])

    def __call__(self, batch, out, teacher, step):
        loss = emb_loss(out.embedding, teacher.embedding.float(), self.proj, self.settings.distance)
        return self.settings.weight * loss, {"emb": loss.detach()}

    def modules(self):
        return {} if self.proj is None else {"emb_proj": self.proj}

    def describe(self, logs) -> str:
        return ""
