#!/usr/bin/env bash
# Speaker verification and distillation on the embedded synthetic corpus, on a CPU: ./run.sh
# makes the corpus, trains a teacher, distils it into one student per method and prints the
# comparison table (about 17 minutes on 2 cores; see RESULTS.md). --quick true: a tiny corpus and
# 2 epochs in under 2 minutes, a smoke test whose numbers mean nothing (folders get "_quick").
# Another --seed trains again in exp/seed<N> (same corpus and features); once two seeds are scored,
# stage 6 also writes exp/RESULTS.md: mean ± spread over the seeds and the differences beyond it.
# Finished steps are skipped, each with a line saying so; an interrupted training is continued.
# Retrain and rescore on existing features: ./run.sh --stage 3 --stop-stage 6 --force true
set -euo pipefail

stage=1                             # first stage to run
stop_stage=100                      # last stage to run
nj=2                                # parallel jobs (corpus, augmentation, features, extraction)
seed=0                              # training seed: systems go to $exp/seed$seed
corpus_seed=0                       # seed of the synthetic corpus and its augmentation
train_speakers=""                   # corpus size (empty: trkd synth-corpus's default, 1 000; 40 with --quick)
test_speakers=""                    # test speakers (empty: the default, 120; 10 with --quick)
utts_per_speaker=""                 # utterances per speaker (empty: the default, 8; 6 with --quick)
teacher=ecapa_teacher               # teacher config: conf/$teacher.yaml
student=ecapa_student               # student config: conf/$student.yaml (kd: block per method)
methods="none kd dkd enskd trkd"    # one student per method (none: no distillation)
topk=0                              # teacher dump: K top non-target logits per chunk (0: full rows; 1 000 classes are small)
quick=false                         # tiny corpus, 2 epochs; folders get the suffix _quick
force=false                         # rerun stages 3-6 where their outputs exist (the old ones go to .old/)
plan=false                          # print what each stage writes and computes (trkd plan), then stop
aug_wavs=false                      # write the augmented copies as WAVs (default: wav.scp entries that make them on read)
data=data                           # corpus WAVs and Kaldi data dirs, augmented copies, features
exp=exp                             # experiment folder

. ./path.sh
. ./cmd.sh
. utils/parse_options.sh
. utils/stages.sh

quick_flag=""
corpus_flags="${train_speakers:+--train-speakers $train_speakers} ${test_speakers:+--test-speakers $test_speakers}"
corpus_flags+=" ${utts_per_speaker:+--utts-per-speaker $utts_per_speaker}"
aug_wavs_flag=""; if $aug_wavs; then aug_wavs_flag="--write-wavs"; fi
if $quick; then quick_flag="--quick"; data=${data}_quick; exp=${exp}_quick; fi
if $plan; then   # from the data dirs once stage 1 made them, else from synth-corpus's sizes
  if [ -f $data/train/wav.scp ]; then plan_stages --data $data/train --test-data $data/test $aug_wavs_flag
  elif [ -n "${corpus_flags// /}" ]; then
    echo "$0: --plan true with another corpus size: run --stop-stage 1 first (the plan reads its data dirs)" >&2
    exit 1
  else plan_stages --synthetic $aug_wavs_flag; fi
  exit 0
fi
dir=$exp/seed$seed
systems="$teacher $(for m in $methods; do printf '%s ' ${student}_$m; done)"

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  log "stage 1: synthetic corpus: $data/{train,test,noise,rir}, trials $data/test/trials"
  skip_data $data/corpus.yaml || trkd synth-corpus $data --seed $corpus_seed --nj $nj \
    --difficulty conf/corpus.yaml $quick_flag $corpus_flags
  for d in train test; do trkd validate-data $data/$d --no-audio; done
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  log "stage 2: augmented copies of $data/train (conf/aug.yaml) and fbank"
  skip_data $data/train_aug/wav.scp || trkd augment $data/train $data/train_aug --config conf/aug.yaml \
    --rir-dir $data/rir --noise-dir $data/noise --seed $corpus_seed --nj $nj $aug_wavs_flag
  skip_data $data/train_aug/feats.scp || trkd fbank $data/train_aug --config conf/fbank.yaml --nj $nj \
    --dither 1.0 --seed $corpus_seed
  skip_data $data/test/feats.scp || trkd fbank $data/test --config conf/fbank.yaml --nj $nj --dither 0
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  log "stage 3: teacher $teacher (log: $dir/$teacher/log/train.log)"
  train_teacher conf/$teacher.yaml $data/train_aug $dir/$teacher
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  log "stage 4: teacher logits on the fixed chunk grid of $data/train_aug"
  dump_teacher $dir/$teacher $data/train_aug "$methods"
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  distill_students $dir/$teacher conf/$student.yaml $data/train_aug "$methods" $dir/$student
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  eval_models $data/test $data/test/trials $(for x in $systems; do printf '%s ' $dir/$x; done)
  log "stage 6: results table $dir/RESULTS.md (and .png)"
  trkd results $dir --out $dir/RESULTS.md --systems "$systems"
  # Every seed scored so far (run.sh --seed N): mean ± spread, and which differences exceed it.
  seeds_done=$(for d in $exp/seed*; do [ -f $d/$teacher/scores/trials.metrics.json ] && echo $d; done)
  if [ $(echo $seeds_done | wc -w) -gt 1 ]; then
    log "stage 6: table over the seeds $(echo $seeds_done): $exp/RESULTS.md (and .png)"
    trkd results $seeds_done --out $exp/RESULTS.md --systems "$systems"
  fi
fi
log "done"
