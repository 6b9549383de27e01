"""Check before write, for the commands that train, extract and distill, through the real `trkd`
in a subprocess: a refused `--resume` leaves the model dir as it was (its fbank.yaml above all), a
refused run on a new folder leaves no folder, a log planted as a link is refused without touching
its target, another run's lock is named, and a teacher dump that is not of the teacher given (or
not usable by the student) is one line before the student's folder exists."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from cli_helpers import error_line, ok, trkd
from distill_helpers import student_config, teacher
from security_helpers import digest, held_lock
from train_helpers import make_feats_dir, write_config


def fbank_yaml(data: Path, **opts) -> Path:
    """The options file `trkd fbank` leaves beside the arks (here DATA itself holds them)."""
    (data / "fbank.yaml").write_text(yaml.safe_dump({"num_mel_bins": 20, "frame_shift": 10.0, **opts}))
    return data


def moved_copy(src: Path, dst: Path) -> Path:
    """A copy of a data dir whose feats.scp points at its own ark."""
    shutil.copytree(src, dst)
    (dst / "feats.scp").write_text((dst / "feats.scp").read_text().replace(str(src.resolve()), str(dst.resolve())))
    return dst


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(tmp, data, config, exp): one `trkd train` whose yaml says `lr: 1e-3` and whose command line
    sets `optim.final_lr=1e-4` (numbers YAML 1.1 reads as strings)."""
    tmp = tmp_path_factory.mktemp("trained")
    data = fbank_yaml(make_feats_dir(tmp / "data"))
    conf = write_config(tmp / "c.yaml", train={"epochs": 1, "avg_last": 1, "log_interval": 100, "seed": 3})
    conf.write_text(conf.read_text().replace("  lr: 0.05\n", "  lr: 1e-3\n"))
    exp = tmp / "exp"
    ok(trkd("train", "--config", conf, "--data", data, "--exp", exp, "--device", "cpu", "--set", "optim.final_lr=1e-4"))
    return tmp, data, conf, exp


def train(conf, data, exp, *extra):
    return trkd("train", "--config", conf, "--data", data, "--exp", exp, "--device", "cpu",
                "--set", "optim.final_lr=1e-4", *extra)


def test_1e_3_is_a_number_in_yaml_and_in_set(trained):
    _, _, _, exp = trained
    optim = yaml.safe_load((exp / "config.yaml").read_text())["optim"]
    assert optim["lr"] == 0.001 and optim["final_lr"] == 0.0001


def test_resume_on_features_of_other_settings_changes_nothing(trained):
    tmp, data, conf, exp = trained
    other = fbank_yaml(moved_copy(data, tmp / "other"), frame_shift=12.0)
    before = digest(exp)
    err = error_line(train(conf, other, exp, "--resume"))
    assert err == (f"{exp / 'fbank.yaml'}: --resume on data of other settings: frame_shift changed since this "
                   "file was written; train into a new --exp")
    assert digest(exp) == before


def test_resume_on_features_of_other_dims_keeps_the_model_dirs_fbank_yaml(trained):
    tmp, _, conf, exp = trained
    wide = fbank_yaml(make_feats_dir(tmp / "wide", feat_dim=24), num_mel_bins=24)
    before = digest(exp)
    err = error_line(train(conf, wide, exp, "--resume"))
    assert err == f"{exp / 'config.yaml'}: --resume with a different config: model.feat_dim changed: 20 in the run being resumed, 24 now"
    assert digest(exp) == before


def test_a_refused_train_on_a_new_folder_leaves_no_folder(trained):
    tmp, data, conf, _ = trained
    exp = tmp / "new" / "exp"
    err = error_line(train(conf, data, exp, "--set", "head.num_classes=99"))
    assert err.endswith("head.num_classes is 99, but training has 4 classes (the data's speakers; a student's are "
                        "its teacher's); remove the key or make it 4")
    assert not (tmp / "new").exists()


def test_a_train_log_planted_as_a_link_is_refused_and_its_target_kept(trained):
    tmp, data, conf, _ = trained
    victim = tmp / "victim.txt"
    victim.write_text("precious\n")
    exp = tmp / "linked"
    exp.mkdir()
    (exp / "train.log").symlink_to(victim)
    before = digest(exp)
    err = error_line(train(conf, data, exp))
    assert err == f"{exp / 'train.log'}: is a symbolic link: trkd writes no log through a link; remove it"
    assert victim.read_text() == "precious\n" and digest(exp) == before


def test_train_into_a_folder_another_run_holds_names_it(trained):
    tmp, data, conf, _ = trained
    exp = tmp / "held"
    with held_lock(exp, "process 77 (trkd train, started 2026-01-01 00:00:00)\n") as lock:
        before = digest(exp)
        err = error_line(train(conf, data, exp))
        assert err == (f"{exp}: is in use: process 77 (trkd train, started 2026-01-01 00:00:00) writes here "
                       f"(lock {lock}); wait for it to finish or write elsewhere")
        assert digest(exp) == before


def test_extract_with_no_jobs_is_refused(trained):
    tmp, data, _, exp = trained
    out = tmp / "xvec0"
    assert error_line(trkd("extract", "--model", exp, "--data", data, "--out-dir", out, "--nj", "0")) \
        == "--nj must be >= 1, got 0"
    assert not out.exists()


def test_an_extract_log_planted_as_a_link_is_refused_and_its_target_kept(trained):
    tmp, data, _, exp = trained
    victim = tmp / "victim2.txt"
    victim.write_text("precious\n")
    out = tmp / "xvec"
    (out / "log").mkdir(parents=True)
    log = out / "log" / "extract.1.log"
    log.symlink_to(victim)
    before = digest(out)
    err = error_line(trkd("extract", "--model", exp, "--data", data, "--out-dir", out, "--device", "cpu"))
    assert err == f"{log}: is a symbolic link: trkd writes no log through a link; remove it"
    assert victim.read_text() == "precious\n" and digest(out) == before


# -- a dump knows its teacher ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dumped(tmp_path_factory):
    data, teacher_dir = teacher(tmp_path_factory)
    tmp = tmp_path_factory.mktemp("dumps")
    return tmp, data, teacher_dir, student_config(tmp / "s.yaml", epochs=1)


def distill(teacher_dir, conf, data, exp, dump, *extra, method="kd"):
    return trkd("distill", "--teacher", teacher_dir, "--config", conf, "--method", method, "--data", data,
                "--exp", exp, "--device", "cpu", "--dump", dump, *extra)


def edited_dump(src: Path, dst: Path, **meta) -> Path:
    """A copy of a dump (its scps still point at the source's arks) with `meta` set (None: removed)."""
    shutil.copytree(src, dst)
    values = yaml.safe_load((dst / "meta.yaml").read_text())
    for key, value in meta.items():
        if value is None:
            values.pop(key)
        else:
            values[key] = value
    (dst / "meta.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    return dst


def refused(dumped, teacher_dir, dump, *extra, method="kd") -> str:
    """The error line of a distill that must write nothing: no exp, the dump and teacher as they were."""
    tmp, data, _, conf = dumped
    exp = tmp / "exp"
    before = digest(dump), digest(teacher_dir)
    err = error_line(distill(teacher_dir, conf, data, exp, dump, *extra, method=method))
    assert not exp.exists() and (digest(dump), digest(teacher_dir)) == before
    return err


def test_the_dump_records_its_teachers_checkpoint_and_class_map(dumped):
    _, _, teacher_dir, _ = dumped
    meta = yaml.safe_load((teacher_dir / "logits" / "meta.yaml").read_text())
    assert meta["teacher_sha256"] == hashlib.sha256((teacher_dir / "models/avg_model.pt").read_bytes()).hexdigest()
    spk2id = (teacher_dir / "spk2id").read_text()
    assert meta["spk2id_sha256"] == hashlib.sha256(spk2id.encode()).hexdigest()
    assert meta["num_classes"] == len(spk2id.splitlines()) and meta["topk"] == 0


def test_a_dump_of_another_teacher_with_the_same_classes_is_refused(dumped):
    tmp, _, teacher_dir, _ = dumped
    other = tmp / "other_teacher"
    shutil.copytree(teacher_dir, other, ignore=shutil.ignore_patterns("logits"))
    state = torch.load(other / "models/avg_model.pt")
    name = next(iter(state["model"]))
    state["model"][name] = state["model"][name] + 0.001
    torch.save(state, other / "models/avg_model.pt")
    dump = teacher_dir / "logits"
    assert refused(dumped, other, dump) == (
        f"{dump / 'meta.yaml'}: the dump was made from another teacher checkpoint than "
        f"{other / 'models/avg_model.pt'} (teacher_sha256 differs; dumped from {teacher_dir.resolve()}/models/"
        "avg_model.pt): dump this teacher again, or pass the --checkpoint it was dumped from")


def test_a_dump_of_another_class_map_is_refused(dumped):
    tmp, _, teacher_dir, _ = dumped
    other = tmp / "other_map"
    shutil.copytree(teacher_dir, other, ignore=shutil.ignore_patterns("logits"))
    lines = (other / "spk2id").read_text().splitlines()
    (other / "spk2id").write_text(f"{lines[1].split()[0]} 0\n{lines[0].split()[0]} 1\n" + "\n".join(lines[2:]) + "\n")
    dump = teacher_dir / "logits"
    assert refused(dumped, other, dump) == (
        f"{dump / 'meta.yaml'}: the dump was made with another class map than {other / 'spk2id'} (spk2id_sha256 "
        "differs): the dump is of another teacher; dump this teacher again")


@pytest.mark.parametrize("meta,extra,message", [
    ({"num_classes": 5}, [], "the dump has 5 classes, the teacher 4 ({teacher}/spk2id): dump this teacher again"),
    ({"topk": 10}, [], "topk 10 must be an integer in [0, 3] (the classes but the target): dump again"),
    ({"topk": 2, "temperatures": [4.0]}, ["--method", "enskd"],
     "the top-2 dump holds the rest's mass at T = 4, a method needs T = 1 (kd.*.temperature): dump again with "
     "--temperatures including 1"),
])
def test_a_dump_the_student_cannot_use_is_one_line_before_its_folder_exists(dumped, meta, extra, message):
    tmp, _, teacher_dir, _ = dumped
    dump = edited_dump(teacher_dir / "logits", tmp / f"dump_{len(list(tmp.glob('dump_*')))}", **meta)
    method = extra[1] if extra[:1] == ["--method"] else "kd"
    extra = [] if extra[:1] == ["--method"] else extra
    err = refused(dumped, teacher_dir, dump, *extra, method=method)
    assert err == f"{dump / 'meta.yaml'}: " + message.format(teacher=teacher_dir)


def test_a_student_of_another_class_count_is_refused_before_its_folder_exists(dumped):
    _, _, teacher_dir, _ = dumped
    assert refused(dumped, teacher_dir, teacher_dir / "logits", "--set", "head.num_classes=7") == (
        "command line: head.num_classes=7: head.num_classes is 7, but training has 4 classes (the data's speakers; "
        "a student's are its teacher's); remove the key or make it 4")


def test_an_older_dump_without_the_teachers_hash_is_used_with_a_warning(dumped):
    tmp, data, teacher_dir, conf = dumped
    dump = edited_dump(teacher_dir / "logits", tmp / "old_dump", teacher_sha256=None, spk2id_sha256=None)
    exp = tmp / "old_exp"
    proc = distill(teacher_dir, conf, data, exp, dump)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (f"{dump / 'meta.yaml'} records no teacher checkpoint hash (an older trkd wrote it): it cannot be "
            f"checked against {teacher_dir}; run `trkd dump-logits` again to record it") in proc.stderr
    assert (exp / "models/avg_model.pt").is_file()


def test_an_older_dump_of_another_class_map_is_still_refused(dumped):
    tmp, _, teacher_dir, _ = dumped
    dump = edited_dump(teacher_dir / "logits", tmp / "old_other", teacher_sha256=None, spk2id_sha256=None)
    lines = (dump / "spk2id").read_text().splitlines()
    (dump / "spk2id").write_text("\n".join([lines[1].split()[0] + " 0", lines[0].split()[0] + " 1"] + lines[2:]) + "\n")
    assert refused(dumped, teacher_dir, dump) == (
        f"{dump / 'spk2id'}: is not the class map of the teacher ({teacher_dir / 'spk2id'}): the dump is of another "
        "teacher; dump this teacher again")
