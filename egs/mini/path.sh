# Sourced by run.sh (from this recipe's folder): the project's venv, where `pip install -e .` put
# the `trkd` command; C locale, so that sorting matches Kaldi's; unbuffered Python, so that logs
# of parallel jobs appear as they happen.
if [ ! -f ../../tools/venv/bin/activate ]; then
  echo "path.sh: ../../tools/venv is missing: run tools/install.sh first" >&2
  return 1
fi
. ../../tools/venv/bin/activate
export LC_ALL=C
export PYTHONUNBUFFERED=1
# OpenMP threads that wait by sleeping, not spinning: when another process shares the cores (a
# second job, a test run), spinning threads made torch training 16x slower on 2 cores (measured:
# 100 vs 6 ms per chunk of the mini student, 2 threads, next to another 2-thread training).
export OMP_WAIT_POLICY=PASSIVE
