#!/usr/bin/env bash
# utils/run.sh's interface on Slurm: the N jobs become one job array, and this script waits for it.
#
#   utils/slurm.sh [options] [JOB=1:N] LOG command [args...]
#
# Options:
#   --max-jobs-run N     at most N array tasks at once (sbatch --array=1-N%M)
#   --partition P, --time T, --mem M, --cpus-per-task C, --nodes K, --gpus-per-node G
#                        passed to sbatch
#   --nproc-per-node N   processes per node under --torchrun without asking for GPUs (CPU DDP)
#   --torchrun           run the command under torchrun on every node of the allocation, one
#                        launcher per node (srun), G processes each, rendezvous on the first node
# The job script is written next to the logs, in q/, so a failed job can be rerun by hand; the
# environment (path.sh's venv) is exported to the jobs, as sbatch does by default.
set -u

max_jobs=0
torchrun=false
gpus=1
nodes=1
sbatch_opts=()
while [ $# -gt 0 ]; do
  case $1 in
    --max-jobs-run) max_jobs=$2; shift 2 ;;
    --torchrun) torchrun=true; shift ;;
    --gpus-per-node) gpus=$2; sbatch_opts+=("--gpus-per-node=$2"); shift 2 ;;
    --nproc-per-node) gpus=$2; shift 2 ;;
    --nodes) nodes=$2; sbatch_opts+=("--nodes=$2"); shift 2 ;;
    --partition|--time|--mem|--cpus-per-task) sbatch_opts+=("$1=$2"); shift 2 ;;
    --*) echo "$0: unknown option $1" >&2; exit 1 ;;
    *) break ;;
  esac
done
if [ "$nodes" != 1 ] && ! $torchrun; then
  echo "$0: --nodes $nodes needs --torchrun (a plain command runs on one node)" >&2
  exit 1
fi

var=JOB; first=1; last=1
if [[ ${1:-} =~ ^([A-Z_]+)=([0-9]+):([0-9]+)$ ]]; then
  var=${BASH_REMATCH[1]}; first=${BASH_REMATCH[2]}; last=${BASH_REMATCH[3]}; shift
elif [[ ${1:-} =~ ^([A-Z_]+)=([0-9]+)$ ]]; then
  var=${BASH_REMATCH[1]}; first=${BASH_REMATCH[2]}; last=$first; shift
fi
if [ $# -lt 2 ]; then
  echo "usage: $0 [options] [JOB=1:N] LOG command [args...]" >&2
  exit 1
fi
log=$1; shift

name=$(basename "$log"); name=${name//.$var/}; name=${name%.log}
qdir=$(dirname "$log")/q
mkdir -p "$qdir"
script=$qdir/$name.sh
{
  echo '#!/usr/bin/env bash'
  printf 'cd %q\n' "$PWD"
  echo 'j=$SLURM_ARRAY_TASK_ID'
  printf 'args=('; printf ' %q' "$@"; printf ' )\n'
  printf 'args=("${args[@]//%s/$j}")\n' "$var"
  printf 'log=%q; log=${log//%s/$j}\n' "$log" "$var"
  if $torchrun; then
    echo 'head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)'
    echo 'args=(srun --nodes="$SLURM_NNODES" --ntasks-per-node=1 torchrun --no-python \'
    printf '  --nnodes="$SLURM_NNODES" --nproc-per-node=%q --rdzv-id="$SLURM_JOB_ID" \\\n' "$gpus"
    echo '  --rdzv-backend=c10d --rdzv-endpoint="$head:29500" "${args[@]}")'
  fi
  echo 'mkdir -p "$(dirname "$log")"'
  echo 'start=$(date +%s)'
  echo '{'
  echo '  printf "#"; printf " %q" "${args[@]}"; printf "\n"'
  echo '  echo "# Started at $(date) on $(hostname), Slurm job ${SLURM_ARRAY_JOB_ID:-?}_$j"'
  echo '  "${args[@]}"; rc=$?'
  echo '  echo "# Accounting: time=$(( $(date +%s) - start )) threads=1"'
  echo '  echo "# Ended (code $rc) at $(date)"'
  echo '  exit $rc'
  echo '} > "$log" 2>&1'
} > "$script"
chmod +x "$script"

array=$first-$last
[ "$max_jobs" -gt 0 ] && array=$array%$max_jobs
# --wait blocks until every task ends; its own status is not trusted, the logs are.
sbatch --wait --job-name="$name" --array="$array" --output="$qdir/$name.%a.out" \
  "${sbatch_opts[@]}" "$script" > /dev/null

failed=()
for (( j = first; j <= last; j++ )); do
  grep -q '^# Ended (code 0)' "${log//$var/$j}" 2>/dev/null || failed+=("$j")
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "$0: ${#failed[@]} of $(( last - first + 1 )) jobs failed (${failed[*]}), see ${log//$var/${failed[0]}} and $qdir/$name.${failed[0]}.out" >&2
  exit 1
fi
exit 0
