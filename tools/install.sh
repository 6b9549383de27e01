#!/usr/bin/env bash
# Create tools/venv and install the pinned packages and trkd (editable). Idempotent: when the
# venv already holds what setup.cfg asks for, it returns in seconds.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=$root/tools/venv
py=${PYTHON:-python3}

command -v "$py" >/dev/null 2>&1 || { echo "install.sh: $py not found; install Python >= 3.9" >&2; exit 1; }
"$py" -c 'import venv, ensurepip' 2>/dev/null || {
  echo "install.sh: $py lacks the venv/ensurepip modules (Debian: apt-get install python3-venv)" >&2; exit 1; }

# The stamp records the inputs of the last complete install; same inputs, nothing to do.
stamp=$venv/.trkd-install-stamp
want=$(cat "$root/setup.cfg" "$root/pyproject.toml" "$0" | sha256sum | cut -d' ' -f1)
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
   && "$venv/bin/python" -c 'import torch, torchaudio, trkd' 2>/dev/null; then
  exit 0
fi

[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install -q --upgrade pip setuptools wheel
# torch first and alone: torchaudio's resolver must see the exact torch build already in place.
"${pip[@]}" install -q torch==2.9.1
"${pip[@]}" install -q torch==2.9.1 torchaudio==2.9.1
# compat: the checkout's root goes on sys.path (a .pth), so that a folder named trkd in the current
# directory (a clone's parent) is not imported in place of the package, as it is with an import hook.
"${pip[@]}" install -q -e "$root[dev,bench]" --config-settings editable_mode=compat
echo "$want" > "$stamp"
echo "install.sh: tools/venv ready ($("$venv/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
