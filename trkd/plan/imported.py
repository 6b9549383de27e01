"""Stage 3 of a recipe whose teacher is imported (`trkd import-teacher`), not trained: its row costs
a copy of the weights, and says what training it here would have cost."""

from __future__ import annotations

from pathlib import Path

from trkd.plan.sizes import FLOAT, Plan, human_bytes, human_count
from trkd.plan.stages import Network, training_row

SOURCES = ("wespeaker",)


def imported_teacher(plan: Plan, source_dir, num_classes: int, sources: int, stored: float, hours: float) -> Network:
    """The teacher of a WeSpeaker model folder (its config.yaml only: nothing is imported), its
    row added to `plan`; the classes are the folder's where its config records them."""
    from trkd.teachers.importer import trkd_config
    from trkd.teachers.wespeaker import read_config

    source_dir = Path(source_dir)
    src = read_config(source_dir / "config.yaml")
    classes = src.num_classes or num_classes
    net = Network.from_config(source_dir.name, trkd_config(src, classes, ""), classes)
    trained = Plan()
    training_row(trained, "3", "", net, sources, stored, hours)
    saved = trained.rows[0]
    plan.add("3", f"teacher {net.name} ({classes} classes): imported from WeSpeaker, not trained", 1,
             FLOAT * (net.params + net.buffers), hours, macs=0.0,
             note=f"saves {human_count(saved.macs)} MACs and {human_bytes(saved.bytes)} of checkpoints, what "
                  f"training it here takes ({saved.note.split(';')[0]})")
    return net
