#!/usr/bin/env bash
# Is there a converged regime (a teacher worth distilling)? Trains a teacher and the no-KD student of the
# given configs, with schedules stretched by --set overrides, scores every epoch checkpoint on
# $data/test (trkd score-epochs: $x/epochs_eer.jsonl and .png) and prints the regime's tests
# (trkd check-regime): the teacher's EER moves < 0.2 points over its last 3 epochs, the student's
# < 5 % relative over its last 2, and the student's EER is >= 1.3x the teacher's.
# Runs go to $exp/$tag/seed$seed/{$teacher,${student}_none}. Resumable stage by stage: a rerun
# continues an interrupted training (--resume) and scores only new epochs, so it can run in the
# background (nohup ./local/converge.sh ... &) and be rerun to look at the curves so far. Changing
# the --set values of a finished run is refused by --resume: give a new --tag (or --force true).
#   ./local/converge.sh --tag t20 --teacher-sets "train.epochs=20 head.margin_start_epoch=12 \
#     head.margin_stop_epoch=15 train.avg_last=3" --student-sets "train.epochs=20 \
#     head.margin_start_epoch=12 head.margin_stop_epoch=15 kd.warmup_epochs=0"
# Another student against a teacher trained already: --tag NEW --teacher-dir $exp/OLD/seed0/$teacher.
# Needs the features of ./run.sh --stop-stage 2 (same --data, --quick).
set -euo pipefail

teacher=ecapa_teacher               # teacher config: conf/$teacher.yaml
student=ecapa_student               # student config: conf/$student.yaml (trained with method none)
teacher_sets=""                     # KEY=VALUE overrides of the teacher config (trkd train --set), space-separated
student_sets=""                     # KEY=VALUE overrides of the student config (trkd distill --set)
tag=converge                        # runs go to $exp/$tag/seed$seed
teacher_dir=""                      # a teacher trained already (e.g. another tag's) instead of training one
seed=0                              # training seed of both runs
every=1                             # score every K-th epoch and the last 3 (trkd score-epochs --every)
nj=2                                # parallel jobs (dump, extraction)
topk=0                              # the teacher dump's K top non-targets (0: full rows, as run.sh's default)
quick=false                         # the --quick data and exp folders, 2-epoch schedules (a smoke run)
force=false                         # start both trainings again (the old runs go to .old/)
data=data                           # as in run.sh
exp=exp                             # as in run.sh

. ./path.sh
. ./cmd.sh
. utils/parse_options.sh
. utils/stages.sh

quick_flag=""
if $quick; then quick_flag="--quick"; data=${data}_quick; exp=${exp}_quick; fi
for f in $data/train_aug/feats.scp $data/test/feats.scp $data/test/trials; do
  [ -f $f ] || { echo "$0: no $f: run ./run.sh --stop-stage 2 $quick_flag first" >&2; exit 1; }
done
dir=$exp/$tag/seed$seed
t=${teacher_dir:-$dir/$teacher}
if [ -n "$teacher_dir" ] && [ ! -f $t/models/avg_model.pt ]; then
  echo "$0: no $t/models/avg_model.pt: --teacher-dir needs a trained teacher" >&2
  exit 1
fi
s=$dir/${student}_none
sets() { local x; for x in $1; do printf -- '--set %s ' "$x"; done; }

log "teacher $t (log: $t/log/train.log)"
if [ -z "$teacher_dir" ] && ! skip_done $t/models/avg_model.pt $t; then
  say_resume $t
  $study_train_cmd $t/log/train.log trkd train --config conf/$teacher.yaml --data $data/train_aug --exp $t \
    --seed $seed --resume $quick_flag $(sets "$teacher_sets")
fi
trkd score-epochs --model $t --data $data/test --nj $nj --every $every

dump_teacher $t $data/train_aug none   # the chunk grid the student trains on, as in run.sh
log "no-KD student $s (log: $s/log/train.log)"
if ! skip_done $s/models/avg_model.pt $s; then
  say_resume $s
  $study_train_cmd $s/log/train.log trkd distill --teacher $t --config conf/$student.yaml --method none \
    --data $data/train_aug --exp $s --seed $seed --resume $quick_flag $(sets "$student_sets")
fi
trkd score-epochs --model $s --data $data/test --nj $nj --every $every

log "the regime's tests (per-epoch curves: $t/epochs_eer.png, $s/epochs_eer.png)"
trkd check-regime --teacher $t --student $s
