# Sourced by run.sh from this recipe's folder: finds the trkd checkout, whose utils/env.sh sets up
# the environment (its venv, C locale, unbuffered logs). The checkout is $TRKD_ROOT if set, else
# the one this folder's `utils` link points into (../../utils inside the repository), else the one
# whose `trkd` is on PATH. A copy of this recipe elsewhere: TRKD_ROOT=/path/to/trkd ./run.sh
if [ -n "${TRKD_ROOT:-}" ]; then
  trkd_found_by="TRKD_ROOT=$TRKD_ROOT has no utils/env.sh"
else
  trkd_found_by="not from utils -> $(readlink utils || echo '(not a link)'), nor from a trkd on PATH"
  # the interpreter of the `trkd` on PATH (its first line), which imports the checkout's package
  trkd_py=$(command -v trkd >/dev/null && sed -n '1s/^#!//p' "$(command -v trkd)") || trkd_py=
  for TRKD_ROOT in "$(readlink -f utils/.. 2>/dev/null)" \
      "$(${trkd_py:-false} -c 'import os, trkd; print(os.path.dirname(os.path.dirname(trkd.__file__)))' 2>/dev/null)"; do
    [ -f "$TRKD_ROOT/utils/env.sh" ] && break
  done
fi
if [ ! -f "$TRKD_ROOT/utils/env.sh" ]; then
  echo "path.sh: cannot find the trkd checkout from $PWD ($trkd_found_by): set TRKD_ROOT=/path/to/trkd" >&2
  return 1
fi
. "$TRKD_ROOT/utils/env.sh"
