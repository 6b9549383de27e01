"""`trkd import-teacher --from wespeaker`: fake WeSpeaker folders whose state dicts have the released
checkpoints' key layout with every tensor random, imported through the real CLI, then used by
extract, embed, dump-logits and distill; the embeddings equal an independent forward of
WeSpeaker's architecture (tests/wespeaker_reference.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import torch
import torchaudio.compliance.kaldi as kaldi
import yaml

import wespeaker_reference as ref
from cli_helpers import error_line, ok, trkd
from data_helpers import voice, write_wav
from distill_helpers import student_config
from train_helpers import make_feats_dir

SPEAKERS = ["id00012", "id00015", "id00016", "id00018"]   # WeSpeaker's sorted order
CLASSES = SPEAKERS + [f"{p}{s}" for p in ("sp0.9-", "sp1.1-") for s in SPEAKERS]   # speed perturbation: 3N
ARCHS = {  # WeSpeaker model name: (model_args, its state-dict layout, its forward)
    "ResNet34": ({"embed_dim": 256, "two_emb_layer": False}, lambda: ref.resnet_layout("ResNet34"),
                 lambda sd, x: ref.resnet_forward(sd, x, "ResNet34")),
    "ECAPA_TDNN_GLOB_c1024": ({"embed_dim": 192}, lambda: ref.ecapa_layout(1024), ref.ecapa_forward),
    "ECAPA_TDNN_GLOB_c512": ({"embed_dim": 192}, lambda: ref.ecapa_layout(512), ref.ecapa_forward),
    "CAMPPlus": ({"embed_dim": 512}, ref.campplus_layout, ref.campplus_forward),
    "ResNet221": ({"embed_dim": 256, "two_emb_layer": False}, lambda: ref.resnet_layout("ResNet221"),
                  lambda sd, x: ref.resnet_forward(sd, x, "ResNet221")),
}
_states = {}


def state_of(name: str, projection: bool = True):
    if name not in _states:
        _states[name] = ref.random_state(ARCHS[name][1](), seed=len(_states) + 1)
    sd = dict(_states[name])
    if projection:
        sd["projection.weight"] = torch.randn(len(CLASSES), ARCHS[name][0]["embed_dim"],
                                              generator=torch.Generator().manual_seed(7))
    return sd


def wespeaker_folder(root: Path, name: str, projection: bool = True, state=None) -> Path:
    return ref.write_folder(root / f"ws_{name}", name, ARCHS[name][0], state or state_of(name, projection),
                            len(CLASSES), "ASTP" if name.startswith("ECAPA") else "TSTP")


def speaker_list(root: Path) -> Path:
    path = root / "wespeaker_spk2id"
    path.write_text("".join(f"{s} {i}\n" for i, s in enumerate(SPEAKERS)))
    return path


def imported(tmp: Path, name: str, projection: bool = True) -> Path:
    args = ["import-teacher", "--from", "wespeaker", wespeaker_folder(tmp, name, projection), "--out", tmp / name]
    out = ok(trkd(*args, *(["--spk2id", speaker_list(tmp)] if projection else [])))
    assert out.startswith(f"imported {name} (")
    return tmp / name


def feats_dir(root: Path, speakers=CLASSES, fbank_window=None) -> Path:
    """80-dim features, one utterance per speaker (named as the teacher's classes), and, with
    `fbank_window`, the fbank record `trkd fbank` leaves beside the ark."""
    d = make_feats_dir(root, num_spk=len(speakers), utts_per_spk=1, feat_dim=80, min_len=110, max_len=150)
    lines = (d / "utt2spk").read_text().splitlines()
    (d / "utt2spk").write_text("".join(f"{ln.split()[0]} {speakers[int(ln.split()[1][3:])]}\n" for ln in lines))
    if fbank_window is not None:
        opts = {"num_mel_bins": 80, "frame_length": 25.0, "frame_shift": 10.0, "window_type": fbank_window}
        (d / "fbank.yaml").write_text(yaml.safe_dump(opts))
    return d


@pytest.mark.parametrize("name", ["ResNet34", "ECAPA_TDNN_GLOB_c1024", "CAMPPlus",
                                  pytest.param("ResNet221", marks=pytest.mark.slow)])
def test_embeddings_equal_the_original_architecture(tmp_path, name):
    exp = imported(tmp_path, name)
    assert (exp / "spk2id").read_text().splitlines() == [f"{s} {i}" for i, s in enumerate(CLASSES)]
    fbank = yaml.safe_load((exp / "fbank.yaml").read_text())
    assert (fbank["num_mel_bins"], fbank["frame_length"], fbank["frame_shift"], fbank["window_type"],
            fbank["dither"]) == (80, 25.0, 10.0, "hamming", 0.0)
    head = yaml.safe_load((exp / "config.yaml").read_text())["head"]
    assert (head["num_classes"], head["scale"], head["margin"], head["margin_fallback"]) == (12, 32.0, 0.2, "wespeaker")

    data = make_feats_dir(tmp_path / "data", num_spk=1, utts_per_spk=2, feat_dim=80, min_len=110, max_len=150)
    ok(trkd("extract", "--model", exp, "--data", data, "--out-dir", tmp_path / "emb", "--device", "cpu"))
    sd, forward = state_of(name), ARCHS[name][2]
    got = dict(kaldiio.load_scp(str(tmp_path / "emb" / "xvector.scp")))
    for utt, mat in kaldiio.load_scp(str(data / "feats.scp")).items():
        x = torch.from_numpy(mat - mat.mean(axis=0, keepdims=True)).unsqueeze(0)   # WeSpeaker's CMN
        with torch.no_grad():
            want = forward(sd, x)[0].numpy()
        assert np.abs(got[utt] - want).max() <= 1e-5, (utt, np.abs(got[utt] - want).max())
        assert np.abs(want).max() > 0.1   # a real embedding, not a vanishing one


def test_embed_from_audio_uses_the_teachers_fbank(tmp_path):
    """`trkd embed` computes the teacher's own front end (hamming window, as WeSpeaker's
    compute_fbank), then the network, from the recorded fbank.yaml."""
    exp = imported(tmp_path, "ResNet34")
    wave = voice(3, 1.3, 150.0)
    wav = write_wav(tmp_path / "a.wav", wave)
    ok(trkd("embed", "--model", exp, "--out", f"ark,scp:{tmp_path}/e.ark,{tmp_path}/e.scp", "--device", "cpu", wav))
    (got,) = kaldiio.load_scp(str(tmp_path / "e.scp")).values()   # one file: its key is trkd embed's safe name
    samples = torch.from_numpy(np.asarray(__import__("soundfile").read(wav, dtype="float32")[0])).unsqueeze(0)
    feats = kaldi.fbank(samples * (1 << 15), num_mel_bins=80, frame_length=25, frame_shift=10, dither=0.0,
                        sample_frequency=16000, window_type="hamming", use_energy=False)
    with torch.no_grad():
        want = ref.resnet_forward(state_of("ResNet34"), (feats - feats.mean(dim=0)).unsqueeze(0), "ResNet34")[0]
    assert np.abs(got - want.numpy()).max() <= 1e-4


@pytest.mark.parametrize("fault", ["missing", "extra", "misshapen", "projection"])
def test_a_bad_key_is_one_line_naming_it(tmp_path, fault):
    sd = state_of("ECAPA_TDNN_GLOB_c512")
    if fault == "missing":
        del sd["layer3.se_res2block.1.bns.6.running_var"]
        key = "layer3.se_res2block.1.bns.6.running_var"
    elif fault == "extra":
        sd["layer5.conv.weight"] = torch.zeros(3)
        key = "layer5.conv.weight"
    elif fault == "misshapen":
        sd["pool.linear1.weight"] = torch.zeros(128, 1536, 1)   # no global context: not the GLOB model
        key = "pool.linear1.weight"
    else:
        sd["projection.weight"] = torch.zeros(len(CLASSES), 256)
        key = "projection.weight"
    folder = wespeaker_folder(tmp_path, "ECAPA_TDNN_GLOB_c512", state=sd)
    line = error_line(trkd("import-teacher", "--from", "wespeaker", folder, "--out", tmp_path / "t"))
    assert line.startswith(f"{folder / 'avg_model.pt'}: ") and f"key {key!r}" in line, line
    assert not (tmp_path / "t").exists()


def test_a_config_trkd_cannot_reproduce_is_refused(tmp_path):
    folder = wespeaker_folder(tmp_path, "ECAPA_TDNN_GLOB_c512")
    cfg = (folder / "config.yaml").read_text()
    (folder / "config.yaml").write_text(cfg.replace("pooling_func: ASTP", "pooling_func: MQMHASTP"))
    line = error_line(trkd("import-teacher", "--from", "wespeaker", folder, "--out", tmp_path / "t"))
    line_no = cfg.splitlines().index("  pooling_func: ASTP") + 1
    assert line == (f"{folder / 'config.yaml'}:{line_no}: model_args.pooling_func: 'MQMHASTP'; trkd imports "
                    f"ECAPA_TDNN_GLOB_c512 with 'ASTP' only")
    (folder / "config.yaml").write_text(cfg.replace("model: ECAPA_TDNN_GLOB_c512", "model: ERes2Net34"))
    line = error_line(trkd("import-teacher", "--from", "wespeaker", folder, "--out", tmp_path / "t"))
    assert "model 'ERes2Net34' is not one trkd imports (ResNet18" in line
    assert not (tmp_path / "t").exists()


def test_class_list_errors_and_an_existing_out(tmp_path):
    folder = wespeaker_folder(tmp_path, "ECAPA_TDNN_GLOB_c512")
    bad = tmp_path / "five"
    bad.write_text("".join(f"s{i}\n" for i in range(5)))
    line = error_line(trkd("import-teacher", "--from", "wespeaker", folder, "--out", tmp_path / "t", "--spk2id", bad))
    assert line == f"{bad}: 5 speakers, the classifier has 12 classes (neither N nor 3N, WeSpeaker's speed perturbation)"
    assert not (tmp_path / "t").exists()
    ok(trkd("import-teacher", "--from", "wespeaker", folder, "--out", tmp_path / "t"))
    line = error_line(trkd("import-teacher", "--from", "wespeaker", folder, "--out", tmp_path / "t"))
    assert line == f"{tmp_path / 't'}: already exists: import into a new --out (nothing was written)"


def student(tmp: Path) -> Path:
    return student_config(tmp / "student.yaml", epochs=1, data={"num_frms": 200, "batch_size": 6})


@pytest.mark.slow
def test_without_a_classifier_only_embedding_methods(tmp_path):
    exp = imported(tmp_path, "ECAPA_TDNN_GLOB_c512", projection=False)
    assert not (exp / "spk2id").exists()
    data = feats_dir(tmp_path / "data", speakers=SPEAKERS * 3)
    conf = student(tmp_path)
    line = error_line(trkd("distill", "--teacher", exp, "--config", conf, "--method", "trkd", "--data", data,
                           "--exp", tmp_path / "s_trkd", "--device", "cpu"))
    assert line == (f"{exp}: --method trkd: trkd distils the teacher's logits, and "
                    f"{tmp_path / 'ws_ECAPA_TDNN_GLOB_c512' / 'avg_model.pt'} holds no classifier ('projection.weight'); "
                    f"emb and mlkd (embedding level) need no classifier")
    line = error_line(trkd("dump-logits", "--model", exp, "--data", data, "--device", "cpu"))
    assert line.startswith(f"{exp}: trkd dump-logits needs the teacher's classifier, and ") and "holds no" in line
    ok(trkd("distill", "--teacher", exp, "--config", conf, "--method", "emb", "--data", data,
            "--exp", tmp_path / "s_emb", "--device", "cpu"))
    assert (tmp_path / "s_emb" / "spk2id").read_text().splitlines() == [f"{s} {i}" for i, s in enumerate(sorted(SPEAKERS))]


@pytest.mark.slow
def test_logit_methods_need_the_teachers_classes_and_fbank(tmp_path):
    exp = imported(tmp_path, "ECAPA_TDNN_GLOB_c512")
    conf = student(tmp_path)

    def distill(data, name):
        return trkd("distill", "--teacher", exp, "--config", conf, "--method", "kd", "--data", data,
                    "--exp", tmp_path / name, "--device", "cpu")

    line = error_line(distill(feats_dir(tmp_path / "no_speed", speakers=SPEAKERS * 3), "s1"))
    assert line.startswith(f"{exp / 'spk2id'}: class 'sp0.9-id00012' of the teacher has no utterance"), line
    line = error_line(distill(feats_dir(tmp_path / "povey", fbank_window="povey"), "s2"))
    assert line == (f"{tmp_path / 'povey' / 'fbank.yaml'}: fbank window_type is 'povey', the model {exp} expects "
                    f"'hamming' ({exp / 'fbank.yaml'}): make DATA's features with `trkd fbank --config "
                    f"{exp / 'fbank.yaml'}`")
    assert not (tmp_path / "s1").exists() and not (tmp_path / "s2").exists()
    data = feats_dir(tmp_path / "hamming", fbank_window="hamming")
    ok(trkd("dump-logits", "--model", exp, "--data", data, "--device", "cpu", "--topk", "4"))
    ok(distill(data, "s_kd"))
    assert (tmp_path / "s_kd" / "spk2id").read_text() == (exp / "spk2id").read_text()
    shutil.rmtree(tmp_path / "s_kd")


@pytest.mark.parametrize("name", ["ResNet34", "ECAPA_TDNN_GLOB_c1024"])
def test_export_with_fbank_of_an_imported_teacher(tmp_path, name):
    """The device graph of a public teacher, its own fbank front end included, passes the export's
    parity check on speech-like audio."""
    exp = imported(tmp_path, name)
    out = tmp_path / "teacher.onnx"
    ok(trkd("export", "--model", exp, "--out", out, "--with-fbank"))
    assert out.stat().st_size > 0
