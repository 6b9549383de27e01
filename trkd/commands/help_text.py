"""`--help` texts from docstrings, re-flowed (the terminal wraps paragraphs, not the source's line
breaks), and boolean options shown in their flag form."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import re

import typer
from typer.core import TyperCommand, TyperGroup


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


class _FlagHelp:
    """`--help` shown as the flag it is (the framework labels it `<bool>`)."""

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option


class FlagCommand(_FlagHelp, TyperCommand):
    pass


class FlagGroup(_FlagHelp, TyperGroup):
    pass


def flag_form(callback) -> None:
    """Boolean options of `callback` shown as the flags they are: `--asnorm`, not `--asnorm <bool>`."""
    for param in inspect.signature(callback).parameters.values():
        info = param.default
        if isinstance(info, typer.models.OptionInfo) and param.annotation in (bool, "bool") and info.metavar is None:
            info.metavar = ""


def rewrap_help(app: typer.Typer) -> None:
    """Re-flow the help of every command of `app` and of its sub-apps, and show flags as flags, in place."""
    app.info.cls = FlagGroup
    if app.registered_callback is not None and app.registered_callback.callback is not None:
        flag_form(app.registered_callback.callback)
    for command in app.registered_commands:
        doc = command.help or (command.callback.__doc__ if command.callback else None)
        if doc:
            command.help = reflow(doc)
        if command.callback is not None:
            flag_form(command.callback)
        if command.cls in (None, TyperCommand):
            command.cls = FlagCommand
    for group in app.registered_groups:
        if group.typer_instance is not None:
            rewrap_help(group.typer_instance)
