"""Option spellings shared by the commands: one name per concept, old names kept as hidden aliases.

`--model DIR` is a model dir a command reads (`--exp DIR` the one `trkd train`/`distill` write);
`--out FILE` is always a file (or a Kaldi wspecifier), `--out-dir DIR` always a folder. A flag
takes the recipes' `true`/`false` too (`--asnorm true`, `--mean-sub false`).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple, TypeVar

from trkd.errors import InputError

T = TypeVar("T")


def either(value: Optional[T], old_value: Optional[T], name: str, old: str, required: bool = True) -> Optional[T]:
    """The value given as `name` or as its old spelling `old` (both at once is an error)."""
    if value is not None and old_value is not None:
        raise InputError(None, f"give {name} only ({old} is its old spelling)")
    chosen = value if value is not None else old_value
    if chosen is None and required:
        raise InputError(None, f"missing option {name}")
    return chosen


BOOL_WORDS = {"true": True, "false": False}


def _command_at(group, args: List[str]) -> Tuple[object, int]:
    """The (sub)command that `args` invoke and where its own arguments start."""
    cmd, i = group, 0
    while hasattr(cmd, "commands") and i < len(args):
        if args[i] in cmd.commands:
            cmd, i = cmd.commands[args[i]], i + 1
            continue
        takes_value = any(args[i] in p.opts and not getattr(p, "is_flag", False) for p in cmd.params)
        i += 2 if takes_value else 1
    return cmd, i


def flag_words(app, args: List[str]) -> List[str]:
    """`--flag true|false` or `--flag=true|false` (how run.sh and Kaldi's parse_options.sh write a
    boolean) in the flag form the command parses: `--asnorm true` is `--asnorm`, `--mean-sub false`
    is `--no-mean-sub`, `--asnorm false` (the default) is dropped. `app`: the Typer app."""
    if not any(a in BOOL_WORDS or a.endswith(("=true", "=false")) for a in args):
        return args
    from typer.main import get_command  # the click tree, built only when a flag may take a word

    cmd, i = _command_at(get_command(app), args)
    flags = [p for p in getattr(cmd, "params", []) if getattr(p, "is_bool_flag", False)]
    out = list(args[:i])
    while i < len(args):
        if args[i] == "--":  # what follows is positional
            return out + args[i:]
        token, joined, word = args[i].partition("=")
        if not joined:
            word = args[i + 1] if i + 1 < len(args) else ""
        param = next((p for p in flags if token in p.opts + p.secondary_opts), None)
        if param is None or word not in BOOL_WORDS:
            out.append(args[i])
            i += 1
            continue
        if (token in param.opts) == BOOL_WORDS[word]:
            out.append(param.opts[0])
        elif param.secondary_opts:
            out.append(param.secondary_opts[0])
        elif param.default:
            raise InputError(None, f"{token} {word}: {token} has no off form")
        i += 1 if joined else 2
    return out


def parse_sets(sets: Sequence[str]) -> Dict[str, Any]:
    """`--set block.key=VALUE` items (VALUE read as yaml: 0.05, [1, 2], {tm: 1, cf: 8})."""
    import yaml  # imported by the commands that take --set only: start-up stays quick

    from trkd.utils.typed_yaml import load_yaml

    out = {}
    for item in sets:
        key, eq, value = item.partition("=")
        if not eq or "." not in key or not key.strip():
            raise InputError(None, f"--set {item!r}: expected BLOCK.KEY=VALUE, e.g. kd.trkd.tau1=0.1")
        try:
            out[key.strip()] = load_yaml(value)
        except yaml.YAMLError as err:
            raise InputError(None, f"--set {item!r}: value is not valid yaml ({err})") from None
    return out
