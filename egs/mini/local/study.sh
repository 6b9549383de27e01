#!/usr/bin/env bash
# Distillation studies on the embedded corpus, one student per (row, seed), mean ± spread over seeds:
#   local/study.sh --study ablation   the TRKD paper's ablation (DKD -> TMKD -> CFKD -> TRKD)
#   local/study.sh --study sweeps     settings the paper did not try (τ_final, γ, λ_F, cutoff, top-K,
#                                     the curriculum's timing)
#   local/study.sh --study regime     none, kd, enskd and the ablation's rows, for a converged regime:
#                                     --teacher-dir a converged teacher (local/converge.sh),
#                                     --student-sets the student's architecture and schedule, --tag
#   local/study.sh --study settle     TRKD's readings (CF weighted by the teacher's mass, a background
#                                     term, a wider final τ) beside none, dkd and the published TRKD
# Every student is distilled from the same teacher and logit dump (run.sh's stages 1-4 for
# --teacher-seed, made here if missing, or --teacher-dir's); only the student's --seed changes
# between seeds. Outputs: $exp/study/<study>[_<tag>]/seed<S>/<row>/ and the table RESULTS.md
# (+ .png) beside them.
# A row whose training diverges (the trainer's NaN guard) is kept in the table as "diverged at
# epoch E"; the rest of the study goes on. Finished rows are skipped on a rerun.
set -euo pipefail

stage=1                             # 1: teacher and dump, 2: students, 3: embeddings and scores, 4: table
stop_stage=100                      # last stage to run
study=ablation                      # ablation, sweeps or regime
rows=""                             # the study's rows to run (default: all of them)
seeds="0 1 2"                       # student seeds: every row is trained once per seed
teacher_seed=0                      # the teacher and dump of run.sh --seed N, shared by every student
teacher_dir=""                      # another teacher with its logit dump (e.g. local/converge.sh's) instead
student_sets=""                     # KEY=VALUE overrides of conf/$student.yaml for every row, space-separated
tag=""                              # the study's folder gets the suffix _$tag (one per regime)
nj=2                                # parallel jobs (run.sh's stages, extraction)
teacher=ecapa_teacher               # teacher config: conf/$teacher.yaml
student=ecapa_student               # student config: conf/$student.yaml (its kd: block is the base)
topk=10                             # sweeps: K of the static confusion set topk:K (about the mean |F| at τ_final)
wide_tau1=0.3                       # settle: τ_1 of the row with a wider final set, trkd_tau1_<τ_1> (the τ_1
                                    # whose mean |F| is about 40 in trkd confusion-sizes of the teacher's dump)
quick=false                         # run.sh's tiny corpus and 2 epochs (folders get the suffix _quick)
data=data                           # as in run.sh
exp=exp                             # as in run.sh
trials="test/trials"                # trial lists under $data scored in stage 3, each on its own folder's
                                    # feats.scp; their file names (distinct) head the table's columns

. ./path.sh
. ./cmd.sh
. utils/parse_options.sh
force=false rerun="delete it to redo it"   # stage 3 keeps what exists (utils/stages.sh's skip rule)
. utils/stages.sh
# `terms` replaces the named weights λ_M, λ_F, λ_B, which a student yaml may spell out: unset them.
unnamed="kd.trkd.lambda_m=null kd.trkd.lambda_f=null kd.trkd.lambda_b=null"
# The paper's TRKD, which these studies take apart: without the background term that trkd keeps by default.
paper="kd.trkd.lambda_b=0"

# One line per row: name, --method, --set overrides of conf/$student.yaml.
ablation_rows() {
  row dkd             dkd
  row tmkd_fixed_tau  trkd 'kd.trkd.terms={tm: 1, nckd: 8}' $unnamed kd.trkd.tau0=0.05 kd.trkd.tau1=0.05
  row tmkd_curriculum trkd 'kd.trkd.terms={tm: 1, nckd: 8}' $unnamed
  row cfkd            trkd 'kd.trkd.terms={tckd: 1, cf: 8}' $unnamed
  row trkd            trkd $paper
}
sweeps_rows() {
  row trkd            trkd $paper
  row tau1_0.01       trkd $paper kd.trkd.tau1=0.01
  row tau1_0.2        trkd $paper kd.trkd.tau1=0.2
  row gamma_0.1       trkd $paper kd.trkd.gamma=0.1
  row lambda_f_2      trkd $paper kd.trkd.lambda_f=2
  row lambda_f_16     trkd $paper kd.trkd.lambda_f=16
  row cutoff_joint    trkd $paper kd.trkd.cutoff=joint
  row topk_$topk      trkd $paper kd.trkd.confusion=topk:$topk
  row tau_epoch1      trkd $paper kd.trkd.start_epoch=1 kd.trkd.stop_epoch=2   # the paper's schedule squeezed pro rata
}
# TRKD's readings against the published one (the τ ramp after the paper's share of training at τ = 1).
share="kd.trkd.start_fraction=0.06 kd.trkd.stop_fraction=0.393"
settle_rows() {
  row none            none
  row dkd             dkd
  row trkd            trkd $paper $share
  row trkd_cfw        trkd $paper $share kd.trkd.mass_weight=conditional
  row cfwkd           trkd 'kd.trkd.terms={tckd: 1, cf: 8}' $unnamed $share kd.trkd.mass_weight=conditional
  row trkd_bg8        trkd $share kd.trkd.lambda_b=8
  row trkd_tau1_$wide_tau1 trkd $paper $share kd.trkd.tau1=$wide_tau1
}
regime_rows() {   # the ablation's rows beside no KD and the other methods, for a converged regime
  row none            none
  row kd              kd
  row enskd           enskd
  ablation_rows
}
case $study in
  ablation) curves="tmkd_fixed_tau tmkd_curriculum" ;;
  sweeps) curves="trkd tau1_0.01 tau1_0.2" ;;
  regime) curves="none dkd trkd" ;;
  settle) curves="none dkd trkd trkd_cfw" ;;
  *) echo "$0: --study $study: valid: ablation, sweeps, regime, settle" >&2; exit 1 ;;
esac

run_opts=(--nj $nj --seed $teacher_seed --teacher $teacher --quick $quick --data $data --exp $exp)
quick_flag=""
if $quick; then quick_flag="--quick"; data=${data}_quick; exp=${exp}_quick; fi
tdir=${teacher_dir:-$exp/seed$teacher_seed/$teacher}
root=$exp/study/$study${tag:+_$tag}

# The study's rows in its order, as $root/rows.tsv (name, method, overrides) for the table: always
# every row (a row not run yet is "not run" there), so that runs of other --rows side by side write
# the same file; this run's own rows ($mine) are kept apart from it.
all=$(row() { echo "$1"; }; ${study}_rows)
for r in $rows; do
  grep -qx -- "$r" <<< "$all" || { echo "$0: --rows: no row '$r' in $study (valid: $(echo $all))" >&2; exit 1; }
done
names=$(for t in $trials; do basename $t; done)
if [ -n "$(sort <<< "$names" | uniq -d)" ]; then
  echo "$0: --trials \"$trials\": two lists share a file name, and the name heads the table's column" >&2
  exit 1
fi
if [ -n "$teacher_dir" ] && [ ! -f $tdir/logits/logits.scp ]; then
  echo "$0: no $tdir/logits/logits.scp: --teacher-dir needs a teacher with its logit dump" \
    "(local/converge.sh makes one)" >&2
  exit 1
fi
mkdir -p $root
row() { printf '%s\t%s' "$1" "$2"; printf '\t%s' "${@:3}"; echo; }
${study}_rows > $root/rows.tsv.$$
mine=$(awk -F'\t' -v want=" $(echo $rows) " 'want == "  " || index(want, " " $1 " ")' $root/rows.tsv.$$)
mv $root/rows.tsv.$$ $root/rows.tsv

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  log "stage 1: teacher $tdir and its logit dump (run.sh stages 1-4 if missing)"
  [ -f $tdir/logits/logits.scp ] || ./run.sh --stop-stage 4 "${run_opts[@]}"
fi

diverged() { grep -qs "training diverged" $1/train.log; }
if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  for s in $seeds; do
    while IFS=$'\t' read -r name method overrides; do
      d=$root/seed$s/$name
      if [ -f $d/models/avg_model.pt ] || diverged $d; then continue; fi
      sets=()
      for x in $student_sets; do sets+=(--set "$x"); done
      if [ -n "$overrides" ]; then
        IFS=$'\t' read -ra items <<< "$overrides"
        for x in "${items[@]}"; do sets+=(--set "$x"); done
      fi
      log "stage 2: seed $s, row $name: --method $method ${sets[*]} (log: $d/log/train.log)"
      if ! $study_train_cmd $d/log/train.log trkd distill --teacher $tdir --config conf/$student.yaml \
          --method $method --data $data/train_aug --exp $d --seed $s --resume $quick_flag "${sets[@]}"; then
        diverged $d || exit 1
        log "stage 2: seed $s, row $name: $(grep -o 'training diverged: the loss is [^,]* at epoch [0-9]*' $d/train.log | tail -1)"
      fi
    done <<< "$mine"
  done
fi

# Embeddings of every trial list's folder and the list's scores, in MODEL/embeddings/<folder>/ and
# MODEL/scores/<list>.*, as run.sh's stage 6; what exists is kept.
evaluate() {
  local t
  for t in $trials; do
    extract_set $1 $data/$(dirname $t)
    score_set $1 $data/$(dirname $t) $data/$t
  done
}
if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  log "stage 3: teacher: embeddings and scores of $trials (as run.sh's stage 6)"
  evaluate $tdir
  for s in $seeds; do
    for name in $(cut -f1 <<< "$mine"); do
      d=$root/seed$s/$name
      [ -f $d/models/avg_model.pt ] || continue
      log "stage 3: seed $s, row $name: embeddings and scores of $trials"
      evaluate $d
    done
  done
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  log "stage 4: table $root/RESULTS.md (+ .png, curves_${curves// /_}.png)"
  python local/study_report.py --rows $root/rows.tsv --teacher $tdir --curves "$curves" \
    --common "$student_sets" --out $root/RESULTS.md $(for s in $seeds; do echo $root/seed$s; done)
fi
log "done"
