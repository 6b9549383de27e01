"""`--help` texts from docstrings, re-flowed: the terminal wraps paragraphs, not the source's line breaks."""

from __future__ import annotations

import inspect
import re

import typer


def reflow(doc: str) -> str:
    """Each paragraph (blank-line separated) of a docstring as one line."""
    paragraphs = re.split(r"\n\s*\n", inspect.cleandoc(doc))
    return "\n\n".join(" ".join(p.split()) for p in paragraphs if p.strip())


def rewrap_help(app: typer.Typer) -> None:
    """Re-flow the help of every command of `app` and of its sub-apps, in place."""
    for command in app.registered_commands:
        doc = command.help or (command.callback.__doc__ if command.callback else None)
        if doc:
            command.help = reflow(doc)
    for group in app.registered_groups:
        if group.typer_instance is not None:
            rewrap_help(group.typer_instance)
