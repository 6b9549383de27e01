"""egs/voxceleb: the paper's settings in conf/, and every stage of run.sh on a tiny tree in the
official VoxCeleb1/2, MUSAN and RIRS_NOISES layouts (tests/voxceleb_tree.py), with tiny models."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import yaml

from voxceleb_tree import VOX2_DEV, make_voxceleb_tree
from trkd.config import load_config
from trkd.distill.kd_config import load_distill_config
from trkd.data.kaldi_dir import read_data_dir, read_kv
from trkd.data.validate import validate_data_dir
from trkd.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "egs" / "voxceleb"
TEACHERS = ("ecapa_c1024", "resnet152", "resnet34")
STUDENTS = ("ecapa_c400", "mobilenetv2")
TRIALS = {"vox1_O": "veri_test2.txt", "vox1_E": "list_test_all2.txt", "vox1_H": "list_test_hard2.txt"}
TINY = {  # 2 epochs of these take seconds on one core
    "tiny_teacher": {"model": {"name": "ecapa", "channels": 32, "mfa_channels": 96, "se_channels": 16,
                               "attention_channels": 16, "embed_dim": 32}},
    "tiny_student": {"model": {"name": "ecapa", "channels": 16, "mfa_channels": 48, "se_channels": 8,
                               "attention_channels": 8, "embed_dim": 32}},
}
METHODS = ("none", "trkd")


@pytest.mark.parametrize("name", TEACHERS + STUDENTS)
def test_confs_hold_the_paper_settings(name):
    cfg = (load_distill_config if name in STUDENTS else load_config)(RECIPE / "conf" / f"{name}.yaml")
    assert (cfg.head.scale, cfg.head.margin, cfg.head.margin_start_epoch, cfg.head.margin_stop_epoch) == (32, 0.2, 20, 40)
    assert (cfg.data.num_frms, cfg.data.batch_size) == (200, 512)
    o = cfg.optim
    assert (o.lr, o.final_lr, o.warmup_epochs, o.momentum, o.nesterov, o.weight_decay) == (0.1, 5e-5, 6, 0.9, True, 1e-4)
    assert (cfg.train.epochs, cfg.train.avg_last) == (150, 10)
    if name in STUDENTS:
        kd = cfg.kd
        assert kd.kd.temperature == kd.dkd.temperature == kd.trkd.temperature == 4
        assert (kd.dkd.alpha, kd.dkd.beta) == (1, 8)
        t = kd.trkd
        assert (t.lambda_m, t.lambda_f, t.tau0, t.tau1, t.gamma, t.start_epoch, t.stop_epoch) == (1, 8, 1, 0.05, 0.001, 10, 60)


def test_pairs_of_the_paper():
    channels = {n: load_config(RECIPE / "conf" / f"{n}.yaml").model for n in ("ecapa_c1024", "ecapa_c400")}
    assert channels["ecapa_c1024"]["channels"] == 1024 and channels["ecapa_c400"]["channels"] == 400
    assert load_config(RECIPE / "conf" / "mobilenetv2.yaml").model["name"] == "mobilenetv2"
    assert load_config(RECIPE / "conf" / "resnet152.yaml").model["depth"] == 152
    aug = yaml.safe_load((RECIPE / "conf" / "aug.yaml").read_text())
    assert aug["prob"] == 0.6 and aug["speed_factors"] == [0.9, 1.1]


def test_model_yamls_share_one_settings_file(tmp_path):
    """The training settings are written once (conf/common/train.yaml), the kd: block once
    (conf/common/kd.yaml); a model yaml names its model and what it changes."""
    conf = tmp_path / "conf"
    shutil.copytree(RECIPE / "conf", conf)
    for name in TEACHERS + STUDENTS:
        own = yaml.safe_load((conf / f"{name}.yaml").read_text())
        assert set(own) == {"extends", "model"}, name
    common = conf / "common" / "train.yaml"
    common.write_text(common.read_text().replace("lr: 0.1\n", "lr: 0.2\n"))
    kd = conf / "common" / "kd.yaml"
    kd.write_text(kd.read_text().replace("beta: 8.0", "beta: 6.0"))
    for name in TEACHERS + STUDENTS:
        cfg = load_distill_config(conf / f"{name}.yaml")
        assert cfg.optim.lr == 0.2 and cfg.train.epochs == 150
        assert (cfg.kd.dkd.beta == 6.0) == (name in STUDENTS)


def test_extends_merges_block_by_block_and_names_the_file(tmp_path):
    (tmp_path / "base.yaml").write_text("optim: {lr: 0.1, momentum: 0.5}\ntrain: {epochs: 9}\n")
    (tmp_path / "m.yaml").write_text("# a model\nextends: base.yaml\nmodel: {name: ecapa}\noptim: {lr: 0.3}\n")
    cfg = load_config(tmp_path / "m.yaml", {"train.seed": 4})
    assert (cfg.optim.lr, cfg.optim.momentum, cfg.train.epochs, cfg.train.seed) == (0.3, 0.5, 9, 4)
    (tmp_path / "base.yaml").write_text("optim: {lrr: 0.1}\n")  # a typo in the base: reported at `extends:`
    with pytest.raises(InputError, match=r"m\.yaml:2: unknown key 'optim\.lrr'"):
        load_config(tmp_path / "m.yaml")
    (tmp_path / "base.yaml").write_text("extends: m.yaml\n")
    with pytest.raises(InputError, match=r"m\.yaml: extends itself \(through .*m\.yaml -> .*base\.yaml\)"):
        load_config(tmp_path / "m.yaml")
    (tmp_path / "m.yaml").write_text("extends: nowhere.yaml\n")
    with pytest.raises(InputError, match=r"nowhere\.yaml: no such config file"):
        load_config(tmp_path / "m.yaml")
    (tmp_path / "m.yaml").write_text("extends: {a: 1}\n")
    with pytest.raises(InputError, match=r"m\.yaml:1: 'extends' must be a file name or a list of them"):
        load_config(tmp_path / "m.yaml")


def recipe_copy(tmp_path: Path) -> Path:
    """The recipe in the repository's relative layout (path.sh finds ../../tools/venv), tiny yamls added."""
    top = tmp_path / "trkd"
    (top / "egs").mkdir(parents=True)
    (top / "tools").symlink_to(ROOT / "tools")
    (top / "utils").symlink_to(ROOT / "utils")
    egs = top / "egs" / "voxceleb"
    shutil.copytree(RECIPE / "conf", egs / "conf")
    for name in ("run.sh", "path.sh", "cmd.sh"):
        shutil.copy2(RECIPE / name, egs / name)
    (egs / "utils").symlink_to(os.readlink(RECIPE / "utils"))
    for name, cfg in TINY.items():
        # batch 4: a teacher epoch draws one chunk per source utterance, and the tree has 12
        cfg = {**cfg, "data": {"num_frms": 40, "batch_size": 4, "num_workers": 0}}
        (egs / "conf" / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    return egs


def run_recipe(egs: Path, db: Path, *args: str) -> str:
    corpora = ["--vox1", db / "voxceleb1", "--vox2", db / "voxceleb2", "--musan", db / "musan",
               "--rirs", db / "RIRS_NOISES"]
    # One thread per job, as Kaldi does: the test's jobs share the cores.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(["./run.sh", *map(str, corpora), "--nj", "2", "--quick", "true", "--teacher", "tiny_teacher",
                          "--student", "tiny_student", "--methods", " ".join(METHODS), *args],
                         cwd=egs, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout


def mtimes(paths):
    return {p: p.stat().st_mtime_ns for p in paths}


def test_help_and_bad_option(tmp_path):
    egs = recipe_copy(tmp_path)
    res = subprocess.run(["./run.sh", "--help"], cwd=egs, capture_output=True, text=True)
    assert res.returncode == 0
    for opt in ("--vox1", "--vox2", "--musan", "--rirs", "--teacher", "--student", "--methods", "--quick", "--nj",
                "--score-norm", "--cohort", "--force"):
        assert f"  {opt} " in res.stdout
    # the model configs the recipe can name, read from its conf/ (tiny ones added by recipe_copy included)
    listed = re.search(r"^Model configs \(--teacher, --student\): (.*)$", res.stdout, re.M).group(1).split()
    assert listed == sorted(p.stem for p in (egs / "conf").glob("*.yaml") if "model" in yaml.safe_load(p.read_text()))
    assert {"ecapa_c1024", "simam_resnet50", "redimnet_b5", "resnet152", "tiny_teacher"} <= set(listed)
    assert "aug" not in listed and "fbank" not in listed
    res = subprocess.run(["./run.sh", "--score-norm", "znorm"], cwd=egs, capture_output=True, text=True)
    assert res.returncode == 1 and "--score-norm znorm: valid values are none, mean, asnorm" in res.stderr


def test_stages_3_to_5_are_the_shared_ones(tmp_path):
    """utils/stages.sh: the teacher, its dump and every student with --resume, each skipped once done."""
    egs = recipe_copy(tmp_path)
    with open(egs / "cmd.sh", "a") as f:  # print each job instead of running it
        f.write('export train_cmd="echo LAUNCH" gpu_cmd="echo LAUNCH"\n')
    args = ["./run.sh", "--stage", "3", "--stop-stage", "5", "--methods", "none trkd", "--exp", "e"]
    res = subprocess.run(args, cwd=egs, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    launched = [line.split()[1:] for line in res.stdout.splitlines() if line.startswith("LAUNCH ")]
    assert launched == [
        ["e/ecapa_c1024/log/train.log", "trkd", "train", "--config", "conf/ecapa_c1024.yaml", "--data",
         "data/train_aug", "--exp", "e/ecapa_c1024", "--seed", "42", "--resume"],
        ["e/ecapa_c1024/log/dump_logits.log", "trkd", "dump-logits", "--model", "e/ecapa_c1024", "--data",
         "data/train_aug", "--nj", "16", "--topk", "256", "--methods", "none", "trkd"],
    ] + [[f"e/ecapa_c400_{m}/log/train.log", "trkd", "distill", "--teacher", "e/ecapa_c1024", "--config",
          "conf/ecapa_c400.yaml", "--method", m, "--data", "data/train_aug", "--exp", f"e/ecapa_c400_{m}",
          "--seed", "42", "--resume"] for m in ("none", "trkd")]
    for done in ("ecapa_c1024/models/avg_model.pt", "ecapa_c1024/logits/logits.scp",
                 "ecapa_c400_none/models/avg_model.pt"):
        (egs / "e" / done).parent.mkdir(parents=True, exist_ok=True)
        (egs / "e" / done).write_text("")
    res = subprocess.run(args, cwd=egs, capture_output=True, text=True)
    assert [line.split()[-1] for line in res.stdout.splitlines() if line.startswith("LAUNCH ")] == ["--resume"]
    assert res.stdout.count("exists: skipping; --force true reruns") == 3


@pytest.mark.slow
def test_every_stage_on_a_tiny_voxceleb(tmp_path):
    tree = make_voxceleb_tree(tmp_path / "db", vox2_audio="wav", seconds=0.5)
    egs = recipe_copy(tmp_path)
    run_recipe(egs, tmp_path / "db")
    data, exp = egs / "data", egs / "exp_quick"
    systems = ["tiny_teacher"] + [f"tiny_student_{m}" for m in METHODS]

    # 1: data dirs of every corpus, trial lists converted from the official files
    for d in ("vox2_dev", "vox1"):
        validate_data_dir(data / d, check_audio=True)
    assert sorted(read_data_dir(data / "vox2_dev").speakers) == VOX2_DEV
    vox1 = read_data_dir(data / "vox1")
    assert len(vox1.utts) == len(tree.vox1_utts)
    assert set(read_kv(data / "musan" / "utt2type").values()) == {"noise", "music", "babble"}
    assert len(read_kv(data / "rirs" / "wav.scp")) == 12
    for name, official in TRIALS.items():
        lines = (data / "vox1" / "trials" / name).read_text().splitlines()
        assert len(lines) == len((tree.vox1 / official).read_text().splitlines())
        for line in lines:
            enroll, test, label = line.split()
            same = vox1.utt2spk[enroll] == vox1.utt2spk[test]
            assert label == ("target" if same else "nontarget")

    # 2: augmented copies with the recipe's settings, speed copies as new speakers; fbank of both sets
    aug = yaml.safe_load((data / "train_aug" / "conf" / "augment.yaml").read_text())
    assert aug["prob"] == 0.6 and aug["speed_perturb"] is True
    train = validate_data_dir(data / "train_aug", check_audio=True)
    assert sorted(train.speakers) == sorted(f"{p}{s}" for s in VOX2_DEV for p in ("", "sp0.9-", "sp1.1-"))
    assert len(train.utts) > 3 * 12
    for d in (data / "train_aug", data / "vox1"):
        assert sorted(p.name for p in (d / "log").glob("fbank.*.log")) == ["fbank.1.log", "fbank.2.log"]  # split jobs
        frames = {u: int(n) for u, n in read_kv(d / "utt2num_frames").items()}
        feats = dict(kaldiio.load_scp(str(d / "feats.scp")))
        assert sorted(feats) == sorted(frames) == sorted(read_kv(d / "utt2spk"))
        for utt, mat in feats.items():
            assert mat.shape == (frames[utt], 80) and np.isfinite(mat).all()
        # the training features as the recipe's compression=5 stores them (CM3), the test set float32
        kinds = set()
        for rx in read_kv(d / "feats.scp").values():
            path, offset = rx.rsplit(":", 1)
            with open(d.parent.parent / path, "rb") as f:  # relative to the recipe, or absolute
                f.seek(int(offset))
                kinds.add(f.read(6))
        assert kinds == ({b"\0BCM3 "} if d.name == "train_aug" else {b"\0BFM \x04"})

    # 3: teacher checkpoints of 2 epochs and their average; 4: its logits on the chunk grid
    teacher = exp / "tiny_teacher"
    assert yaml.safe_load((teacher / "config.yaml").read_text())["head"]["num_classes"] == 9
    for ckpt in ("model_1.pt", "model_2.pt", "avg_model.pt"):
        assert (teacher / "models" / ckpt).is_file()
    assert "an epoch: one chunk of each of 12 source utterances" in (teacher / "train.log").read_text()
    chunks = (teacher / "logits" / "chunks").read_text().splitlines()
    logits = dict(kaldiio.load_scp(str(teacher / "logits" / "logits.scp")))
    assert len(logits) == len(chunks) >= len(train.utts)
    # the recipe's top 256 of 9 classes: every non-target, in the sparse layout (z_y, rest at T = 1
    # and 4, 8 values, 8 classes), float32
    assert yaml.safe_load((teacher / "logits" / "meta.yaml").read_text())["topk"] == 8
    assert all(m.shape[-1] == 1 + 2 + 2 * 8 and m.dtype == np.float32 for m in logits.values())

    # 5: one student per method, trained from the dump
    for m in METHODS:
        cfg = yaml.safe_load((exp / f"tiny_student_{m}" / "config.yaml").read_text())
        assert cfg["kd"]["method"] == m and cfg["model"]["channels"] == 16
        assert (exp / f"tiny_student_{m}" / "models" / "avg_model.pt").is_file()

    # 6: embeddings of every Vox1 utterance, scores and metrics per list, the table of every system
    for x in systems:
        assert "Ended (code 0)" in (exp / x / "log" / "extract_vox1.log").read_text()
        emb = dict(kaldiio.load_scp(str(exp / x / "embeddings" / "vox1" / "xvector.scp")))
        assert sorted(emb) == sorted(vox1.utts) and all(v.shape == (32,) for v in emb.values())
        for name in TRIALS:
            scores = (exp / x / "scores" / f"{name}.score").read_text().splitlines()
            trials = (data / "vox1" / "trials" / name).read_text().splitlines()
            assert [s.split()[:2] for s in scores] == [t.split()[:2] for t in trials]
            metrics = json.loads((exp / x / "scores" / f"{name}.metrics.json").read_text())
            assert 0 <= metrics["metrics"]["eer"] <= 1 and metrics["setup"]["cohort"] is None
    table = (exp / "RESULTS.md").read_text()
    rows = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| tiny")]
    assert sorted(rows) == sorted(systems)
    assert all(f"{name} EER %" in table for name in TRIALS)

    # Again, with AS-norm: finished work is skipped, only the cohort and the scores are new.
    done = mtimes([data / "train_aug" / "feats.scp", teacher / "logits" / "logits.scp"]
                  + [exp / x / "models" / "avg_model.pt" for x in systems]
                  + [exp / x / "embeddings" / "vox1" / "xvector.scp" for x in systems])
    run_recipe(egs, tmp_path / "db", "--score-norm", "asnorm", "--asnorm-top-n", "5", "--nj", "1")
    assert mtimes(done) == done
    for x in systems:
        setup = json.loads((exp / x / "scores" / "vox1_O.metrics.json").read_text())["setup"]
        assert setup["cohort"].endswith(f"{x}/embeddings/vox2_dev/xvector.scp")
        assert setup["asnorm_top_n"] == 5 and setup["mean_subtraction"] is True
