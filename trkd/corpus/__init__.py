"""The embedded synthetic speaker-verification corpus (`trkd synth-corpus`); see README.md here."""

from trkd.corpus.build import synth_corpus

__all__ = ["synth_corpus"]
