#!/usr/bin/env bash
# VoxCeleb recipe of the seed paper: train on VoxCeleb2-dev (MUSAN + RIR augmentation, speed
# perturbation), distil the teacher into a student with each method, evaluate on Vox1-O/E/H.
#   ./run.sh --vox1 /db/voxceleb1 --vox2 /db/voxceleb2 --musan /db/musan --rirs /db/RIRS_NOISES
# Needs GPUs for stages 3-5 (see cmd.sh for Slurm and torchrun). Same stages as egs/mini.
# SKELETON: the flags of the planned subcommands may still change.
set -euo pipefail

stage=1                             # first stage to run
stop_stage=100                      # last stage to run
nj=16                               # parallel jobs (m4a conversion, features, extraction)
seed=42                             # seed of augmentation and training
teacher=ecapa_c1024                 # teacher config: conf/$teacher.yaml (or resnet34, resnet152)
student=ecapa_c400                  # student config: conf/$student.yaml (or mobilenetv2)
methods="none kd dkd trkd"          # one student per distillation method
quick=false                         # smoke test: a few epochs (results meaningless)
vox1=/db/voxceleb1                  # VoxCeleb1: wav/ and veri_test2.txt, list_test_{all2,hard2}.txt
vox2=/db/voxceleb2                  # VoxCeleb2: dev/aac/
musan=/db/musan                     # MUSAN: music/, noise/, speech/
rirs=/db/RIRS_NOISES                # RIRS_NOISES: simulated_rirs/
vox2_wav=data/wav/vox2_dev          # VoxCeleb2 m4a converted to wav here, once

. ./path.sh
. ./cmd.sh
. utils/parse_options.sh

log() { echo "$(date '+%Y-%m-%d %H:%M:%S') run.sh: $*"; }
quick_flag=""; $quick && quick_flag="--quick"
trials="vox1_O vox1_E vox1_H"

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  log "stage 1: data dirs data/{vox2_dev,vox1,musan,rirs} and trials data/vox1/trials/{$trials}"
  [ -f data/rirs/wav.scp ] || trkd prepare voxceleb --vox1 "$vox1" --vox2 "$vox2" --musan "$musan" \
    --rirs "$rirs" --wav-dir "$vox2_wav" --out data --nj $nj
  for d in vox2_dev vox1; do trkd validate-data data/$d; done
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  log "stage 2: augmentation (reverb, noise, music, babble, speed 0.9/1.1) and fbank"
  [ -f data/train_aug/wav.scp ] || trkd augment data/vox2_dev data/train_aug --config conf/aug.yaml \
    --rir-dir data/rirs --noise-dir data/musan --speed-perturb --seed $seed
  [ -f data/train_aug/feats.scp ] || trkd fbank data/train_aug --config conf/fbank.yaml --nj $nj \
    --dither 1.0 --seed $seed
  [ -f data/vox1/feats.scp ] || trkd fbank data/vox1 --config conf/fbank.yaml --nj $nj --dither 0
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  log "stage 3: teacher $teacher"
  [ -f exp/$teacher/models/avg_model.pt ] || $train_cmd exp/$teacher/log/train.log \
    trkd train --config conf/$teacher.yaml --data data/train_aug --exp exp/$teacher --seed $seed $quick_flag
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  log "stage 4: teacher logits on the fixed chunk grid"
  [ -f exp/$teacher/logits/logits.scp ] || $train_cmd exp/$teacher/log/dump_logits.log \
    trkd dump-logits --model exp/$teacher --data data/train_aug
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  for m in $methods; do
    log "stage 5: student $student, method $m"
    [ -f exp/${student}_$m/models/avg_model.pt ] || $train_cmd exp/${student}_$m/log/train.log \
      trkd distill --teacher exp/$teacher --config conf/$student.yaml --method $m \
      --data data/train_aug --exp exp/${student}_$m --seed $seed $quick_flag
  done
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  for x in $teacher $(for m in $methods; do echo ${student}_$m; done); do
    log "stage 6: $x: embeddings of data/vox1, cosine scores on $trials"
    [ -f exp/$x/embeddings/vox1/xvector.scp ] || trkd extract --model exp/$x --data data/vox1 \
      --out exp/$x/embeddings/vox1 --nj $nj
    trkd score --scp exp/$x/embeddings/vox1/xvector.scp \
      $(for t in $trials; do echo --trials data/vox1/trials/$t; done) --out-dir exp/$x/scores
  done
  trkd results exp/ --out exp/RESULTS.md
fi
log "done"
