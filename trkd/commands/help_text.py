"""`--help` texts from docstrings, re-flowed: the terminal wraps paragraphs, not the source's line breaks."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import re

import typer


def reflow(doc: str) -> str:
    """Each paragraph (blank-line separated) of a docstring as one line."""
    paragraphs = re.split(r"\n\s*\n", inspect.cleandoc(doc))
    return "\n\n".join(" ".join(p.split()) for p in paragraphs if p.strip())


def docstring(module: str, function: str) -> str:
    """The docstring of `module.function`, read from its source without importing the module (and
    its imports), so that a command's help costs no start-up time."""
    spec = importlib.util.find_spec(module)
    with open(spec.origin, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == function:
            return ast.get_docstring(node, clean=False) or ""
    raise LookupError(f"{module}.{function} not found")


def rewrap_help(app: typer.Typer) -> None:
    """Re-flow the help of every command of `app` and of its sub-apps, in place."""
    for command in app.registered_commands:
        doc = command.help or (command.callback.__doc__ if command.callback else None)
        if doc:
            command.help = reflow(doc)
    for group in app.registered_groups:
        if group.typer_instance is not None:
            rewrap_help(group.typer_instance)
