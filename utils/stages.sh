# What egs/*/run.sh share, sourced after utils/parse_options.sh: the log line, the skip rule of
# every stage, stages 3-5 (teacher, its logit dump, one student per method) and stage 6's
# embeddings and scores, so that the recipes cannot drift apart. Reads the recipe's `force`, `seed`, `nj`, `topk`, `teacher`, `student`, `methods` and `quick_flag`, and
# cmd.sh's `train_cmd` and `gpu_cmd`.

log() { echo "$(date '+%Y-%m-%d %H:%M:%S') $(basename "$0"): $*"; }

# skip_done OUTPUT [DIR]: succeeds, saying so, when OUTPUT exists and --force is false. With --force
# true it fails (the caller reruns the step) after moving DIR, the step's own folder, if given and
# present, to .old/ beside it: a training resumes whatever it finds, so a rerun must start from an
# empty folder, and an explicit rerun should not destroy what it replaces. A script without
# --force sets force=false and says how it reruns in `rerun`.
skip_done() {
  local out=$1 dir=${2:-} old
  if ! $force; then
    [ -e "$out" ] && log "$out exists: skipping; ${rerun:---force true reruns}" && return 0
    return 1
  fi
  if [ -n "$dir" ] && [ -e "$dir" ]; then
    old=$(dirname "$dir")/.old/$(basename "$dir").$(date +%Y%m%d-%H%M%S)
    mkdir -p "$(dirname "$old")"
    mv "$dir" "$old"
    log "--force true: moved $dir to $old (delete it once no longer needed)"
  fi
  return 1
}

# skip_data OUTPUT: the data stages (1-2) skip what exists, whatever --force says: their tools
# redo only what is missing or made with other settings, so remaking means deleting.
skip_data() {
  [ -e "$1" ] || return 1
  log "$1 exists: skipping (delete it to remake it)"
}

# An interrupted training (checkpoints, no average) is continued by the caller's --resume.
say_resume() {  # EXP
  local last
  last=$(ls "$1"/models/model_*.pt 2>/dev/null | sed 's/.*model_\([0-9]*\)\.pt/\1/' | sort -n | tail -1) || true
  [ -z "$last" ] || log "$1 has checkpoints up to epoch $last but no average: continuing (--resume)"
}

# plan_stages SOURCE-OPTIONS...: `trkd plan` of this recipe's settings (--plan true), before anything
# is written: items, bytes (also per hour of audio), steps per epoch and compute of every stage.
# A recipe's --teacher-from/--teacher-dir (an imported teacher) plan its folder instead of a yaml.
plan_stages() {
  local teacher_opts=(--teacher conf/$teacher.yaml)
  [ -z "${teacher_from:-}" ] || teacher_opts=(--teacher "$teacher_dir" --teacher-from "$teacher_from")
  trkd plan "$@" --aug conf/aug.yaml --fbank conf/fbank.yaml "${teacher_opts[@]}" \
    --student conf/$student.yaml --methods "$methods" --topk $topk $quick_flag
}

# run_training LOG COMMAND...: COMMAND under $train_cmd with its job log LOG, and the training's
# progress (a line per log interval, each epoch's end, errors) also on the console: the job writes
# only its log, and a stage of many minutes should not look hung. The log is read as it grows, so
# this works for any launcher that writes LOG on a shared disk (utils/run.sh, utils/slurm.sh).
run_training() {
  local log=$1 job follower rc=0
  rm -f "$log"  # a previous run's job log: the launcher rewrites it, the follower must not echo it
  $train_cmd "$@" &
  job=$!
  tail -s 0.5 -n +1 -F --pid=$job "$log" 2>/dev/null | sed -un -E \
    -e 's/^([0-9-]+ [0-9:]+) \([a-z_0-9]+:[0-9]+\) INFO: ((epoch [0-9]+ (iter |done:)|resumed |averaged ).*)$/\1   \2/p' \
    -e 's/^([0-9-]+ [0-9:]+) \([a-z_0-9]+:[0-9]+\) ERROR: (.*)$/\1   error: \2/p' -e '/^trkd: error: /p' |
    awk '$0 != last { print; fflush() } { last = $0 }' &  # every DDP process prints the same error
  follower=$!
  wait $job || rc=$?
  wait $follower || true
  return $rc
}

# Stage 3: train_teacher CONF DATA EXP
train_teacher() {
  skip_done "$3/models/avg_model.pt" "$3" && return 0
  say_resume "$3"
  run_training "$3/log/train.log" trkd train --config "$1" --data "$2" --exp "$3" --seed $seed --resume $quick_flag
}

# Stage 4: dump_teacher TEACHER DATA "METHODS": the top-$topk logits (0: full rows), embeddings
# only when a method reads them (dump-logits asks the method registry).
dump_teacher() {
  skip_done "$1/logits/logits.scp" "$1/logits" && return 0
  $gpu_cmd "$1/log/dump_logits.log" trkd dump-logits --model "$1" --data "$2" --nj $nj --topk $topk \
    --methods "$3"
}

# Stage 5: distill_students TEACHER CONF DATA "METHODS" PREFIX: the student of METHOD goes to
# PREFIX_METHOD.
distill_students() {
  local m x
  for m in $4; do
    x=$5_$m
    log "stage 5: student $2, method $m (log: $x/log/train.log)"
    skip_done "$x/models/avg_model.pt" "$x" && continue
    say_resume "$x"
    run_training "$x/log/train.log" trkd distill --teacher "$1" --config "$2" --method $m --data "$3" \
      --exp "$x" --seed $seed --resume $quick_flag
  done
}

# Stage 6: extract_set MODEL DATA: MODEL's embeddings of DATA in MODEL/embeddings/<DATA's name>/
# (log: MODEL/log/extract_<name>.log), skipped as skip_done says.
extract_set() {
  local name
  name=$(basename "$2")
  skip_done "$1/embeddings/$name/xvector.scp" && return 0
  $gpu_cmd "$1/log/extract_$name.log" trkd extract --model "$1" --data "$2" --out-dir "$1/embeddings/$name" --nj $nj
}

# Stage 6: eval_models DATA "TRIALS" MODEL...: extract_set and score_set of each MODEL, two at a
# time (on a small test set each is mostly the start-up of its processes), each model's lines
# printed together in the order given once it is done (also in MODEL/log/eval.log).
eval_models() {
  local data=$1 trials=$2
  shift 2
  while [ $# -gt 0 ]; do
    _eval_pair "$data" "$trials" "${@:1:2}"
    shift $(( $# < 2 ? $# : 2 ))
  done
}

_eval_pair() {
  local data=$1 trials=$2 m pids=() rc=0 i
  shift 2
  for m in "$@"; do
    mkdir -p "$m/log"
    ( log "stage 6: $(basename "$m"): embeddings of $data, cosine scores of $trials"
      extract_set "$m" "$data" && score_set "$m" "$data" "$trials" ) > "$m/log/eval.log" 2>&1 &
    pids+=($!)
  done
  for i in "${!pids[@]}"; do
    wait ${pids[$i]} || rc=1
    cat "${@:i+1:1}/log/eval.log"
  done
  return $rc
}

# Stage 6: score_set MODEL DATA "TRIALS" [SCORE-OPTIONS...]: cosine scores of MODEL's embeddings of
# DATA (extract_set's) on each trial list of TRIALS (files, space-separated) in MODEL/scores/,
# skipped as skip_done says; with rescore=true always redone (seconds: another score
# normalisation takes effect without new embeddings).
score_set() {
  local model=$1 data=$2 lists=$3 t
  shift 3
  if ! ${rescore:-false} && skip_done "$model/scores/$(basename ${lists%% *}).metrics.json"; then return 0; fi
  trkd score --scp "$model/embeddings/$(basename "$data")/xvector.scp" \
    $(for t in $lists; do printf -- '--trials %s ' "$t"; done) "$@" --out-dir "$model/scores"
}

