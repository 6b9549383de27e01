#!/usr/bin/env bash
# VoxCeleb recipe of the seed paper: train a teacher on VoxCeleb2-dev (MUSAN + RIR augmentation,
# speed perturbation), distil it into one student per method, evaluate on Vox1-O/E/H.
#   ./run.sh --vox1 /db/voxceleb1 --vox2 /db/voxceleb2 --musan /db/musan --rirs /db/RIRS_NOISES
# Stages 3-5 need GPUs (cmd.sh: several GPUs, Slurm, torchrun). The paper's other pairs:
#   ./run.sh --teacher resnet152 --student mobilenetv2      (or --teacher resnet34)
#   ./run.sh --teacher simam_resnet50 --student res2net34
#   ./run.sh --teacher redimnet_b5 --student redimnet_b2    (or --student resnet34; campplus with any)
# Any model yaml in conf/ is a --teacher or --student (conf/common/: the settings they share; --help
# lists them); a public teacher instead of stage 3: --teacher-from wespeaker --teacher-dir
# voxceleb_resnet34/ (a downloaded WeSpeaker folder, imported after stage 1; the features are then
# made as its own were);
# --quick true: 2 epochs, a smoke test. Finished steps are skipped, each with a line saying so; an
# interrupted training is continued; --force true reruns stages 3-6 (e.g. --stage 3 --force true).
set -euo pipefail

stage=1                             # first stage to run
stop_stage=100                      # last stage to run
nj=16                               # parallel CPU jobs (m4a conversion, augmentation, fbank, dump, extraction)
seed=42                             # seed of augmentation, dither and training
teacher=ecapa_c1024                 # teacher config conf/$teacher.yaml (any model config, listed above)
student=ecapa_c400                  # student config conf/$student.yaml (any model config; kd: from conf/common/kd.yaml)
teacher_from=                       # import the teacher instead of training it (stage 3): wespeaker
teacher_dir=                        # with --teacher-from: its model folder (config.yaml + avg_model.pt)
methods="none kd dkd trkd"          # one student per method: none kd dkd enskd trkd emb mlkd imlkd, trkd+emb
topk=256                            # teacher dump: K top non-target logits per chunk (RESULTS.md: why 256)
quick=false                         # smoke test: 2 epochs, results meaningless; systems go to ${exp}_quick
force=false                         # rerun stages 3-6 where their outputs exist (the old ones go to .old/)
plan=false                          # print what each stage writes and computes (trkd plan), then stop
aug_wavs=false                      # write the augmented copies as WAVs (default: wav.scp entries that make them on read)
compression=5                       # Kaldi compression method of the training fbank: 5 writes CM3 (as small as
                                    # Kaldi's CM, 1, and read twice as fast: RESULTS.md), "" float32
score_norm=none                     # none, mean (subtract the cohort mean) or asnorm (and adaptive s-norm)
cohort=vox2_dev                     # data set whose speaker means are the score-normalisation cohort
asnorm_top_n=300                    # cohort scores kept per side by AS-norm
vox1=/db/voxceleb1                  # VoxCeleb1: wav/ and veri_test2.txt, list_test_{all2,hard2}.txt
vox2=/db/voxceleb2                  # VoxCeleb2: dev/aac/
musan=/db/musan                     # MUSAN: music/, noise/, speech/
rirs=/db/RIRS_NOISES                # RIRS_NOISES: simulated_rirs/
vox2_wav=                           # VoxCeleb2's m4a converted to wav here, once (ffmpeg; default $data/wav/vox2_dev)
data=data                           # Kaldi data dirs, augmented copies and features
exp=exp                             # experiment folder: one dir per system, RESULTS.md

# Read from conf/ at each call, so that the list is the recipe's own.
help_message="Model configs (--teacher, --student): $(grep -l '^model:' conf/*.yaml | sed 's|conf/||; s|\.yaml$||' | paste -sd ' ')"

. ./path.sh
. ./cmd.sh
. utils/parse_options.sh
. utils/stages.sh

quick_flag=""
aug_wavs_flag=""; if $aug_wavs; then aug_wavs_flag="--write-wavs"; fi
if $quick; then quick_flag="--quick"; exp=${exp}_quick; fi
fbank_conf=conf/fbank.yaml
if [ -n "$teacher_from" ]; then   # the imported teacher's name, and its front end for every feature set
  [ -n "$teacher_dir" ] || { echo "$0: --teacher-from $teacher_from needs --teacher-dir" >&2; exit 1; }
  teacher=${teacher_from}_$(basename "$teacher_dir")
  fbank_conf=$exp/$teacher/fbank.yaml
fi
plan_compress=${compression:+--compress $compression}
fbank_compress=${compression:+--compress --compression-method $compression}
if $plan; then   # from the data dirs once stage 1 made them, else from the official counts
  if [ -f $data/vox2_dev/wav.scp ]; then plan_stages --data $data/vox2_dev --test-data $data/vox1 --speed-perturb $plan_compress $aug_wavs_flag
  else   # VoxCeleb2-dev: 1 092 009 utterances, 5 994 speakers, 2 360 h; VoxCeleb1: 153 516, 352 h
    plan_stages --utts 1092009 --hours 2360 --speakers 5994 --test-utts 153516 --test-hours 352 --speed-perturb \
      $plan_compress $aug_wavs_flag
  fi
  exit 0
fi
trials="vox1_O vox1_E vox1_H"
systems="$teacher $(for m in $methods; do printf '%s ' ${student}_$m; done)"
case $score_norm in
  none) norm_opts=() ;;
  mean) norm_opts=(--cohort-spk2utt $data/$cohort/spk2utt) ;;
  asnorm) norm_opts=(--cohort-spk2utt $data/$cohort/spk2utt --asnorm --asnorm-top-n $asnorm_top_n) ;;
  *) echo "$0: --score-norm $score_norm: valid values are none, mean, asnorm" >&2; exit 1 ;;
esac

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  log "stage 1: data dirs $data/{vox2_dev,vox1,musan,rirs}, trials $data/vox1/trials/{${trials// /,}}"
  for d in vox2_dev vox1 musan rirs; do
    skip_data $data/$d/spk2utt || { trkd prepare voxceleb --vox1 "$vox1" --vox2 "$vox2" --musan "$musan" \
      --rirs "$rirs" --wav-dir "${vox2_wav:-$data/wav/vox2_dev}" --out $data --nj $nj; break; }
  done
  for d in vox2_dev vox1; do trkd validate-data $data/$d; done
fi

if [ -n "$teacher_from" ] && [ $stage -le 3 ] && [ $stop_stage -ge 2 ]; then
  log "stage 3 (before 2, whose features it sets): teacher $teacher imported from $teacher_from $teacher_dir"
  # its classes: the sorted speakers of the training data (speed copies sp0.9-/sp1.1- after them)
  skip_done $exp/$teacher/models/avg_model.pt $exp/$teacher || { mkdir -p $exp;
    cut -d' ' -f2 $data/vox2_dev/utt2spk | LC_ALL=C sort -u > $exp/$teacher.speakers
    trkd import-teacher --from $teacher_from "$teacher_dir" --out $exp/$teacher --spk2id $exp/$teacher.speakers; }
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  log "stage 2: augmented copies of $data/vox2_dev (conf/aug.yaml, speed 0.9/1.1 as new speakers), fbank"
  skip_data $data/train_aug/spk2utt || trkd augment $data/vox2_dev $data/train_aug --config conf/aug.yaml \
    --rir-dir $data/rirs --noise-dir $data/musan --speed-perturb --seed $seed --nj $nj $aug_wavs_flag
  # One job per split (a job array under Slurm); the last job to finish merges the feats.scp.
  skip_data $data/train_aug/feats.scp || $cpu_cmd JOB=1:$nj $data/train_aug/log/fbank.JOB.log \
    trkd fbank $data/train_aug --config $fbank_conf --split JOB/$nj --dither 1.0 --seed $seed $fbank_compress
  skip_data $data/vox1/feats.scp || $cpu_cmd JOB=1:$nj $data/vox1/log/fbank.JOB.log \
    trkd fbank $data/vox1 --config $fbank_conf --split JOB/$nj --dither 0
  trkd validate-data $data/train_aug --no-audio
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  if [ -n "$teacher_from" ]; then log "stage 3: teacher $teacher imported, not trained"
  else
    log "stage 3: teacher $teacher (log: $exp/$teacher/log/train.log)"
    train_teacher conf/$teacher.yaml $data/train_aug $exp/$teacher
  fi
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  log "stage 4: teacher logits on the fixed chunk grid of $data/train_aug"
  dump_teacher $exp/$teacher $data/train_aug "$methods"
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  distill_students $exp/$teacher conf/$student.yaml $data/train_aug "$methods" $exp/$student
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  if [ $score_norm != none ] && [ ! -f $data/$cohort/feats.scp ]; then
    log "stage 6: fbank of the cohort $data/$cohort"
    $cpu_cmd JOB=1:$nj $data/$cohort/log/fbank.JOB.log \
      trkd fbank $data/$cohort --config $fbank_conf --split JOB/$nj --dither 0
  fi
  for x in $systems; do
    log "stage 6: $x: embeddings of $data/vox1, scores of $trials (norm: $score_norm)"
    extract_set $exp/$x $data/vox1
    cohort_opts=()
    if [ $score_norm != none ]; then
      extract_set $exp/$x $data/$cohort
      cohort_opts=(--cohort-scp $exp/$x/embeddings/$cohort/xvector.scp "${norm_opts[@]}")
    fi
    # Always rescored (seconds), so that another --score-norm takes effect.
    rescore=true score_set $exp/$x $data/vox1 "$(for t in $trials; do printf '%s ' $data/vox1/trials/$t; done)" \
      "${cohort_opts[@]}"
  done
  log "stage 6: results table $exp/RESULTS.md (and .png)"
  trkd results $exp --out $exp/RESULTS.md
fi
log "done"
