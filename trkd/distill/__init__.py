"""Distillation: the teacher-output dump, the student's chunk-grid dataset, the method registry
and the method-agnostic objective that `trkd distill` plugs into the shared trainer."""
