"""egs/voxceleb with a public teacher: `--teacher-from wespeaker --teacher-dir DIR` imports a
WeSpeaker model folder (here a fake one with the released layout) instead of training stage 3,
makes the features as that teacher's were, and distils it; `--plan true` shows the saving."""

from __future__ import annotations

import subprocess
from pathlib import Path

import kaldiio
import pytest
import torch
import yaml

import wespeaker_reference as ref
from test_recipe_voxceleb import METHODS, recipe_copy, run_recipe
from voxceleb_tree import VOX2_DEV, make_voxceleb_tree

CLASSES = len(VOX2_DEV) * 3   # speed perturbation: every speaker at 1.0, 0.9 and 1.1


def wespeaker_teacher(root: Path) -> Path:
    """An ECAPA-TDNN C=512 folder trained on the recipe's tiny tree (chunks as the tiny yamls': 40)."""
    sd = ref.random_state(ref.ecapa_layout(512), seed=3)
    sd["projection.weight"] = torch.randn(CLASSES, 192)
    return ref.write_folder(root / "voxceleb_ECAPA512", "ECAPA_TDNN_GLOB_c512", {"embed_dim": 192}, sd, CLASSES,
                            "ASTP", num_frms=40)


@pytest.mark.slow
def test_stage_3_is_the_import(tmp_path):
    egs = recipe_copy(tmp_path)
    with open(egs / "cmd.sh", "a") as f:  # print each job instead of running it
        f.write('export train_cmd="echo LAUNCH" gpu_cmd="echo LAUNCH"\n')
    (egs / "data" / "vox2_dev").mkdir(parents=True)
    (egs / "data" / "vox2_dev" / "utt2spk").write_text("".join(f"u{i}-{s} {s}\n" for i, s in enumerate(VOX2_DEV[::-1])))
    folder = wespeaker_teacher(tmp_path)
    args = ["./run.sh", "--stage", "3", "--stop-stage", "5", "--methods", "none trkd", "--exp", "e",
            "--teacher-from", "wespeaker", "--teacher-dir", str(folder)]
    res = subprocess.run(args, cwd=egs, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    teacher = "e/wespeaker_voxceleb_ECAPA512"
    assert "stage 3: teacher wespeaker_voxceleb_ECAPA512 imported, not trained" in res.stdout
    launched = [line.split()[1:4] for line in res.stdout.splitlines() if line.startswith("LAUNCH ")]
    assert launched == [[f"{teacher}/log/dump_logits.log", "trkd", "dump-logits"]] + \
        [[f"e/ecapa_c400_{m}/log/train.log", "trkd", "distill"] for m in ("none", "trkd")]
    assert f"--teacher {teacher} " in res.stdout
    spk2id = (egs / teacher / "spk2id").read_text().split()[::2]
    assert spk2id == sorted(VOX2_DEV) + [f"{p}{s}" for p in ("sp0.9-", "sp1.1-") for s in sorted(VOX2_DEV)]
    res = subprocess.run(args, cwd=egs, capture_output=True, text=True)   # done: skipped
    assert f"{teacher}/models/avg_model.pt exists: skipping" in res.stdout


def test_plan_shows_the_saving(tmp_path):
    egs = recipe_copy(tmp_path)
    folder = wespeaker_teacher(tmp_path)
    res = subprocess.run(["./run.sh", "--plan", "true", "--teacher-from", "wespeaker", "--teacher-dir", str(folder)],
                         cwd=egs, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    row = next(line for line in res.stdout.splitlines() if line.startswith("| 3 |"))
    assert f"teacher voxceleb_ECAPA512 ({CLASSES} classes): imported from WeSpeaker, not trained" in row
    assert "| 0 | saves " in row and " MACs and " in row
    res = subprocess.run(["./run.sh", "--teacher-from", "wespeaker"], cwd=egs, capture_output=True, text=True)
    assert res.returncode == 1 and "--teacher-from wespeaker needs --teacher-dir" in res.stderr


@pytest.mark.slow
def test_every_stage_with_a_public_teacher(tmp_path):
    make_voxceleb_tree(tmp_path / "db", vox2_audio="wav", seconds=0.5)
    egs = recipe_copy(tmp_path)
    folder = wespeaker_teacher(tmp_path)
    run_recipe(egs, tmp_path / "db", "--teacher-from", "wespeaker", "--teacher-dir", folder)
    exp, teacher = egs / "exp_quick", egs / "exp_quick" / "wespeaker_voxceleb_ECAPA512"
    assert not list((teacher / "models").glob("model_*.pt"))   # imported, never trained
    for d in ("train_aug", "vox1"):   # the features are the teacher's: WeSpeaker's hamming window
        fbank = next((egs / "data" / d).rglob("fbank*.yaml"))
        assert yaml.safe_load(fbank.read_text())["window_type"] == "hamming"
    assert (teacher / "logits" / "logits.scp").is_file()
    for m in METHODS:
        cfg = yaml.safe_load((exp / f"tiny_student_{m}" / "config.yaml").read_text())
        assert cfg["kd"]["method"] == m and cfg["head"]["num_classes"] == CLASSES
    emb = kaldiio.load_scp(str(teacher / "embeddings" / "vox1" / "xvector.scp"))
    assert all(v.shape == (192,) for v in emb.values())
    table = (exp / "RESULTS.md").read_text()
    assert "wespeaker_voxceleb_ECAPA512" in table and "tiny_student_trkd" in table
