"""The embedded synthetic speaker-verification corpus (`trkd synth-corpus`); see README.md here."""

__all__ = ["synth_corpus"]


def __getattr__(name: str):
    # The build pulls in the whole generator; `trkd.corpus.config` (the CLI's defaults) does not need it.
    if name == "synth_corpus":
        from trkd.corpus.build import synth_corpus

        return synth_corpus
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
