"""trkd: speaker-verification training and knowledge distillation, Kaldi-style."""

__version__ = "0.1.0"
