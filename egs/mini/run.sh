#!/usr/bin/env bash
# Speaker verification and distillation on the embedded synthetic corpus, on a CPU: ./run.sh
# (--quick: a tiny corpus and few epochs, the test suite's run). Same stages as egs/voxceleb.
# SKELETON: the flags of the planned subcommands may still change.
set -euo pipefail

stage=1                             # first stage to run
stop_stage=100                      # last stage to run
nj=2                                # parallel jobs (corpus, features, extraction)
seed=0                              # seed of the corpus, augmentation and training
teacher=ecapa_teacher               # teacher config: conf/$teacher.yaml
student=ecapa_student               # student config: conf/$student.yaml
methods="none kd dkd enskd trkd"    # one student per distillation method
quick=false                         # tiny corpus and few epochs

. ./path.sh
. ./cmd.sh
. utils/parse_options.sh

log() { echo "$(date '+%Y-%m-%d %H:%M:%S') run.sh: $*"; }
quick_flag=""; $quick && quick_flag="--quick"
test_sets="test"

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  log "stage 1: synthetic corpus: WAVs in corpus/, data dirs data/{train,test,noise,rirs}"
  [ -f data/test/trials ] || trkd synth-corpus corpus --data data --seed $seed --nj $nj $quick_flag
  for d in train $test_sets; do trkd validate-data data/$d; done
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  log "stage 2: augmentation (reverb, noise, music, babble, speed) and fbank"
  [ -f data/train_aug/wav.scp ] || trkd augment data/train data/train_aug \
    --rir-dir data/rirs --noise-dir data/noise --speed-perturb --seed $seed
  [ -f data/train_aug/feats.scp ] || trkd fbank data/train_aug --nj $nj --dither 1.0 --seed $seed
  for d in $test_sets; do
    [ -f data/$d/feats.scp ] || trkd fbank data/$d --nj $nj --dither 0
  done
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  log "stage 3: teacher $teacher"
  [ -f exp/$teacher/models/avg_model.pt ] || $train_cmd exp/$teacher/log/train.log \
    trkd train --config conf/$teacher.yaml --data data/train_aug --exp exp/$teacher --seed $seed
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  log "stage 4: teacher logits on the fixed chunk grid"
  [ -f exp/$teacher/logits/logits.scp ] || trkd dump-logits --model exp/$teacher --data data/train_aug
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  for m in $methods; do
    log "stage 5: student $student, method $m"
    [ -f exp/${student}_$m/models/avg_model.pt ] || $train_cmd exp/${student}_$m/log/train.log \
      trkd distill --teacher exp/$teacher --config conf/$student.yaml --method $m \
      --data data/train_aug --exp exp/${student}_$m --seed $seed
  done
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  for x in $teacher $(for m in $methods; do echo ${student}_$m; done); do
    for d in $test_sets; do
      log "stage 6: $x on $d: embeddings and scores"
      [ -f exp/$x/embeddings/$d/xvector.scp ] || trkd extract --model exp/$x --data data/$d \
        --out exp/$x/embeddings/$d --nj $nj
      trkd score --scp exp/$x/embeddings/$d/xvector.scp --trials data/$d/trials --out-dir exp/$x/scores
    done
  done
  trkd results exp/ --out exp/RESULTS.md
fi
log "done"
