#!/usr/bin/env bash
# Sparse teacher dumps against the full one: one student per (dump, method, seed), every student
# distilled from the same teacher (run.sh --seed $teacher_seed), only the dump and the student's
# --seed changing. Dumps go to $dir/$teacher/logits_top<K> (logits: the full one); students to
# $exp/study/topk/seed<S>/<method>_<dump>/; the table, mean ± spread over the seeds, and the bytes
# per chunk of each dump to $exp/study/topk/RESULTS.md. Finished steps are skipped on a rerun.
#   OMP_NUM_THREADS=1 ./local/topk_study.sh --ks "16 64 256" --methods "kd dkd enskd trkd"
set -euo pipefail

ks="16 64 256"                      # the K of each sparse dump (the full dump is always a row)
methods="kd dkd enskd trkd"         # the logit methods compared
seeds="0 1 2"                       # student seeds
teacher_seed=0                      # the teacher of run.sh --seed N
teacher=ecapa_teacher               # teacher config: conf/$teacher.yaml
student=ecapa_student               # student config: conf/$student.yaml
nj=2                                # parallel jobs (dumps, extraction)
data=data                           # as in run.sh
exp=exp                             # as in run.sh

. ./path.sh
. ./cmd.sh
. utils/parse_options.sh
force=false rerun="delete it to redo it"   # finished steps are kept (utils/stages.sh's skip rule)
. utils/stages.sh
t=$exp/seed$teacher_seed/$teacher
out=$exp/study/topk
[ -f $t/models/avg_model.pt ] || { echo "$0: no teacher $t: run ./run.sh --stop-stage 4 --seed $teacher_seed first" >&2; exit 1; }
[ -f $t/logits/logits.scp ] || trkd dump-logits --model $t --data $data/train_aug --nj $nj
for k in $ks; do
  [ -f $t/logits_top$k/logits.scp ] || { log "dump: top $k"; trkd dump-logits --model $t --data $data/train_aug \
    --nj $nj --topk $k --out $t/logits_top$k; }
done

systems=""
for s in $seeds; do
  for m in $methods; do
    for d in logits $(for k in $ks; do printf 'logits_top%s ' $k; done); do
      x=$out/seed$s/${m}_${d#logits_}
      x=${x%_}; [ $d = logits ] && x=$out/seed$s/${m}_full
      systems="$systems $(basename $x)"
      if [ ! -f $x/models/avg_model.pt ]; then
        log "seed $s: $m from $d"
        trkd distill --teacher $t --dump $t/$d --config conf/$student.yaml --method $m --data $data/train_aug \
          --exp $x --seed $s --resume > /dev/null 2>&1 || { echo "$0: $x failed: see $x/train.log" >&2; exit 1; }
      fi
      extract_set $x $data/test > /dev/null
      score_set $x $data/test $data/test/trials > /dev/null
    done
  done
done
systems=$(echo $systems | tr ' ' '\n' | awk '!seen[$0]++' | tr '\n' ' ')
trkd results $(for s in $seeds; do echo $out/seed$s; done) --out $out/RESULTS.md --systems "$systems"
{
  echo; echo "Bytes per chunk of each dump (logits table: ark bytes / chunks):"; echo
  for d in $t/logits $(for k in $ks; do echo $t/logits_top$k; done); do
    n=$(wc -l < $d/chunks); b=$(cat $(sed 's/.* \(.*\):[0-9]*$/\1/' $d/logits.scp | sort -u) | wc -c)
    echo "- $(basename $d): $((b / n)) B per chunk ($n chunks)"
  done
} >> $out/RESULTS.md
log "table: $out/RESULTS.md"
