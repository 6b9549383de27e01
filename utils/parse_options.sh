#!/usr/bin/env bash
# Command-line options for recipes, with Kaldi's contract (this file is our own implementation).
#
# Usage, in a recipe:    stage=1        # first stage to run
#                        nj=4           # parallel jobs
#                        . utils/parse_options.sh
#
# `--foo-bar VALUE` (or `--foo-bar=VALUE`) sets the variable foo_bar, which the script must declare
# (`foo_bar=...` at the start of a line above the line sourcing this file): any other name is a
# typo or an environment variable (`--PATH /x`, `--home /y`), so it is an error. A variable whose default is true/false
# only takes true/false. Values are assigned verbatim (spaces kept, never evaluated as shell).
# `--help` prints $help_message (if set) and every variable declared above the line that sources
# this file, with its current value and the comment on its line. Parsing stops at `--` or at the
# first argument that is not an option; the positional arguments stay in "$@".
# Unlike Kaldi's parser, `--config FILE` is not special: nothing is ever sourced from an option.

_po_script=${BASH_SOURCE[1]:-$0}

# The declarations: `name<TAB>comment` for each top-level `name=value` line above the line
# sourcing this file.
_po_declared() {
  local line
  while IFS= read -r line; do
    case $line in *parse_options.sh*) break ;; esac
    [[ $line =~ ^([a-z_][a-z0-9_]*)= ]] || continue
    [ "${BASH_REMATCH[1]}" = help_message ] && continue
    printf '%s\t' "${BASH_REMATCH[1]}"
    [[ $line =~ \#[[:space:]]*(.*)$ ]] && printf '%s' "${BASH_REMATCH[1]}"
    echo
  done < "$_po_script"
}

_po_help() {
  [ -n "${help_message:-}" ] && printf '%s\n\n' "$help_message"
  echo "Options (current values):"
  local name comment dashed
  while IFS=$'\t' read -r name comment; do
    dashed=${name//_/-}
    if [ -n "$comment" ]; then
      printf '  --%-22s %-24s %s\n' "$dashed" "'${!name}'" "$comment"
    else
      printf '  --%-22s %s\n' "$dashed" "'${!name}'"
    fi
  done < <(_po_declared)
}

_po_names=" $(_po_declared | cut -f1 | tr '\n' ' ')"
while [ $# -gt 0 ]; do
  case $1 in
    --help|-h)
      _po_help
      exit 0 ;;
    --)
      shift
      break ;;
    --*=*)
      _po_name=${1%%=*}; _po_value=${1#*=}; shift ;;
    --?*)
      if [ $# -lt 2 ]; then
        echo "$0: option $1 needs a value" >&2
        exit 1
      fi
      _po_name=$1; _po_value=$2; shift 2 ;;
    *)
      break ;;
  esac
  _po_var=${_po_name#--}
  _po_var=${_po_var//-/_}
  if ! [[ $_po_var =~ ^[a-z_][a-z0-9_]*$ ]] || [[ $_po_names != *" $_po_var "* ]]; then
    echo "$0: unknown option $_po_name (run with --help for the options)" >&2
    exit 1
  fi
  case ${!_po_var} in
    true|false)
      case $_po_value in
        true|false) ;;
        *) echo "$0: option $_po_name takes true or false, not '$_po_value'" >&2; exit 1 ;;
      esac ;;
  esac
  printf -v "$_po_var" '%s' "$_po_value"
done

unset _po_name _po_value _po_var _po_script _po_names
unset -f _po_help _po_declared
true
