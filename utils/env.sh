# The environment of a recipe, sourced by its path.sh once TRKD_ROOT (the trkd checkout) is known:
# the checkout's venv, where `pip install -e .` put the `trkd` command; the C locale, so that
# sorting matches Kaldi's; unbuffered Python, so that logs of parallel jobs appear as they happen.
if [ -f "$TRKD_ROOT/tools/venv/bin/activate" ]; then
  . "$TRKD_ROOT/tools/venv/bin/activate"
elif ! command -v trkd >/dev/null; then
  echo "path.sh: $TRKD_ROOT/tools/venv is missing and no trkd is on PATH: run $TRKD_ROOT/tools/install.sh" >&2
  return 1
fi
# A recipe copied out of the repository (what Kaldi users do to start a new one) keeps a `utils`
# link to ../../utils that points nowhere there: point it at this checkout's.
if [ ! -d utils ]; then
  ln -sfn "$TRKD_ROOT/utils" utils
  echo "path.sh: $PWD/utils now links to $TRKD_ROOT/utils" >&2
fi
export TRKD_ROOT
export LC_ALL=C
export PYTHONUNBUFFERED=1
# OpenMP threads that wait by sleeping, not spinning: when another process shares the cores (a
# second job, a test run), spinning threads made torch training 16x slower on 2 cores (measured:
# 100 vs 6 ms per chunk of the mini student, 2 threads, next to another 2-thread training).
export OMP_WAIT_POLICY=PASSIVE
