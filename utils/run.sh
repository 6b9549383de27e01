#!/usr/bin/env bash
# Run a command as N local jobs in parallel, one log per job (Kaldi's run.pl, our own version).
#
#   utils/run.sh [options] [JOB=1:N] LOG command [args...]
#
# Every "JOB" in LOG and in the arguments becomes the job number (any upper-case name works:
# TASK=1:8 ... TASK). The command runs without a shell, so arguments keep their spaces; write a
# pipeline as `bash -c '...'`. Each log starts with the command line and ends with its exit code;
# the runner fails if any job failed and names the logs to read.
#
# Options (the same interface as utils/slurm.sh, so cmd.sh only swaps the script):
#   --max-jobs-run N     at most N jobs at once (default: all)
#   --torchrun           start the command under `torchrun --no-python --standalone`
#   --gpus-per-node N    processes per node under --torchrun (default 1)
#   --nproc-per-node N   the same, for processes without a GPU (DDP on CPU cores: gloo)
#   --nodes N            must be 1 locally
#   --partition, --time, --mem, --cpus-per-task X   cluster settings, ignored here
set -u

max_jobs=0
torchrun=false
gpus=1
while [ $# -gt 0 ]; do
  case $1 in
    --max-jobs-run) max_jobs=$2; shift 2 ;;
    --torchrun) torchrun=true; shift ;;
    --gpus-per-node|--nproc-per-node) gpus=$2; shift 2 ;;
    --nodes) [ "$2" = 1 ] || { echo "$0: --nodes $2: local jobs run on one node (use utils/slurm.sh)" >&2; exit 1; }; shift 2 ;;
    --partition|--time|--mem|--cpus-per-task) shift 2 ;;
    --*) echo "$0: unknown option $1" >&2; exit 1 ;;
    *) break ;;
  esac
done

var=JOB; first=1; last=1; ranged=false
if [[ ${1:-} =~ ^([A-Z_]+)=([0-9]+):([0-9]+)$ ]]; then
  var=${BASH_REMATCH[1]}; first=${BASH_REMATCH[2]}; last=${BASH_REMATCH[3]}; ranged=true; shift
elif [[ ${1:-} =~ ^([A-Z_]+)=([0-9]+)$ ]]; then
  var=${BASH_REMATCH[1]}; first=${BASH_REMATCH[2]}; last=$first; ranged=true; shift
fi
if [ $# -lt 2 ]; then
  echo "usage: $0 [options] [JOB=1:N] LOG command [args...]" >&2
  exit 1
fi
log=$1; shift
if ! $ranged && [[ $log == *$var* ]]; then
  echo "$0: the log name $log holds $var but no $var=a:b range was given" >&2
  exit 1
fi
if $torchrun; then
  set -- torchrun --no-python --standalone --nproc-per-node "$gpus" "$@"
fi

run_one() {  # job-number
  local j=$1 jlog=${log//$var/$1} start rc
  local args=("${@:2}")
  args=("${args[@]//$var/$j}")
  mkdir -p "$(dirname "$jlog")"
  start=$(date +%s)
  {
    printf '#'; printf ' %q' "${args[@]}"; printf '\n'
    echo "# Started at $(date)"
    "${args[@]}"
    rc=$?
    echo "# Accounting: time=$(( $(date +%s) - start )) threads=1"
    echo "# Ended (code $rc) at $(date)"
    exit $rc
  } > "$jlog" 2>&1
}

pids=(); jobs_of=()
for (( j = first; j <= last; j++ )); do
  if [ "$max_jobs" -gt 0 ]; then
    while [ "$(jobs -rp | wc -l)" -ge "$max_jobs" ]; do wait -n; done
  fi
  run_one "$j" "$@" &
  pids+=($!); jobs_of+=("$j")
done

failed=()
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || failed+=("${jobs_of[$i]}")
done
if [ ${#failed[@]} -gt 0 ]; then
  n=$(( last - first + 1 ))
  if [ ${#failed[@]} -eq 1 ]; then
    echo "$0: job ${failed[0]} of $n failed, see ${log//$var/${failed[0]}}" >&2
  else
    echo "$0: ${#failed[@]} of $n jobs failed (${failed[*]}), see ${log//$var/${failed[0]}} and the others" >&2
  fi
  exit 1
fi
exit 0
