"""WeSpeaker's model folders read as trkd networks: the architecture, the key map, the classifier
and the front end that its `config.yaml` describes.

A WeSpeaker model folder (a released one, or a training's exp dir) holds `config.yaml`, the
training config WeSpeaker writes (`model`, `model_args`, `projection_args`, `margin_update`,
`dataset_args`), and `avg_model.pt`, a flat state dict: the network, and `projection.weight`, the
AAM classifier (absent where it was stripped). The supported families map onto trkd's with the
options that reproduce WeSpeaker's computation (see each model's docstring):

- ResNet18 … ResNet293 (TSTP pooling): `resnet` with `pool_std: unbiased`, no BN after the
  embedding layer;
- ECAPA_TDNN[_GLOB]_c512/_c1024 (ASTP pooling): `ecapa` with each block fed the previous one's
  output, the last Res2 group passed through, no BN after the aggregation, a tanh-only attention,
  `pool_std: unbiased`, and BN after the embedding only where `emb_bn` was set;
- CAMPPlus (TSTP pooling): `campplus` with `pool_std: unbiased`; its bias-free embedding layer and
  affine-free BN are trkd's with the bias 0 and the BN scale 1, shift 0.

WeSpeaker numbers the speakers of its training utt2spk in sorted order and, with speed
perturbation, adds the 0.9x copies as classes N … 2N−1 and the 1.1x copies as 2N … 3N−1, which
`trkd augment --speed-perturb` names `sp0.9-<spk>` and `sp1.1-<spk>`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from trkd.errors import InputError
from trkd.features import FbankOptions
from trkd.teachers.keymap import KeyMap
from trkd.utils.typed_yaml import read_yaml

PROJECTION = "projection.weight"
SPEED_PREFIXES = ("sp0.9-", "sp1.1-")   # classes N… and 2N… in WeSpeaker's speed perturbation
RESNET_DEPTHS = {f"ResNet{d}": d for d in (18, 34, 50, 101, 152, 221, 293)}
ECAPA = re.compile(r"ECAPA_TDNN(_GLOB)?_c(512|1024)")
FAMILIES = "ResNet18/34/50/101/152/221/293, ECAPA_TDNN[_GLOB]_c512/_c1024, CAMPPlus"


@dataclass
class WeSpeakerModel:
    """What a WeSpeaker config.yaml says, in trkd's terms."""

    name: str                   # WeSpeaker's model name
    block: Dict[str, Any]       # trkd's `model:` block
    keymap: KeyMap
    aam: bool                   # the projection is an AAM (arc_margin) classifier
    num_classes: Optional[int]  # projection_args.num_class, when recorded
    scale: float
    margin: float               # the final margin of its schedule
    speed_perturb: bool
    num_frms: int
    epochs: int
    fbank: FbankOptions         # for embedding (dither 0)


def _block_key(prefix: str, idx: int) -> str:
    """A residual body's Sequential index as WeSpeaker's block names it: conv1 bn1 (relu) conv2 bn2 …"""
    return f"{prefix}{'conv' if idx % 3 == 0 else 'bn'}{idx // 3 + 1}."


def resnet_keymap() -> KeyMap:
    return KeyMap([
        (r"^stem\.0\.", "conv1."), (r"^stem\.1\.", "bn1."),
        (r"^stages\.(\d+)\.(\d+)\.body\.(\d+)\.", lambda m: _block_key(f"layer{int(m[1]) + 1}.{m[2]}.", int(m[3]))),
        (r"^stages\.(\d+)\.(\d+)\.shortcut\.", lambda m: f"layer{int(m[1]) + 1}.{m[2]}.shortcut."),
        (r"^fc\.", "seg_1."),
    ])


def ecapa_keymap() -> KeyMap:
    def block(m: re.Match) -> str:
        return f"layer{int(m[1]) + 2}.se_res2block."
    return KeyMap([
        (r"^stem\.0\.", "layer1.conv."), (r"^stem\.2\.", "layer1.bn."),
        (r"^blocks\.(\d+)\.body\.([02])\.([02])\.", lambda m: f"{block(m)}{m[2]}.{'conv' if m[3] == '0' else 'bn'}."),
        (r"^blocks\.(\d+)\.body\.1\.convs\.(\d+)\.([02])\.",
         lambda m: f"{block(m)}1.{'convs' if m[3] == '0' else 'bns'}.{m[2]}."),
        (r"^blocks\.(\d+)\.body\.3\.gate\.([02])\.", lambda m: f"{block(m)}3.linear{int(m[2]) // 2 + 1}."),
        (r"^mfa\.0\.", "conv."),
        (r"^pool\.attention\.0\.", "pool.linear1."), (r"^pool\.attention\.2\.", "pool.linear2."),
        (r"^pool_bn\.", "bn."), (r"^fc\.", "linear."), (r"^fc_bn\.", "bn2."),
    ])


def campplus_keymap(layers) -> KeyMap:
    def front(m: re.Match) -> str:   # front.body.3-6: WeSpeaker's head.layer1.0/1, head.layer2.0/1
        i = int(m[1]) - 3
        return f"head.layer{i // 2 + 1}.{i % 2}."

    def dense(m: re.Match) -> str:
        b, i, rest = int(m[1]), int(m[2]), m[3]
        if i == layers[b]:
            return f"xvector.transit{b + 1}.nonlinear.batchnorm."
        if i == layers[b] + 1:
            return f"xvector.transit{b + 1}.linear."
        part = {"body.0.0": "nonlinear1.batchnorm", "body.1": "linear1", "body.2.0": "nonlinear2.batchnorm",
                "body.3.local": "cam_layer.linear_local", "body.3.mask.0": "cam_layer.linear1",
                "body.3.mask.2": "cam_layer.linear2"}[rest]
        return f"xvector.block{b + 1}.tdnnd{i + 1}.{part}."
    return KeyMap([
        (r"^front\.body\.0\.", "head.conv1."), (r"^front\.body\.1\.", "head.bn1."),
        (r"^front\.body\.([3-6])\.body\.(\d+)\.", lambda m: _block_key(front(m), int(m[2]))),
        (r"^front\.body\.([3-6])\.shortcut\.", lambda m: front(m) + "shortcut."),
        (r"^front\.body\.7\.", "head.conv2."), (r"^front\.body\.8\.", "head.bn2."),
        (r"^tdnn\.0\.", "xvector.tdnn.linear."), (r"^tdnn\.1\.0\.", "xvector.tdnn.nonlinear.batchnorm."),
        (r"^blocks\.(\d+)\.(\d+)\.(?:(.*)\.)?(?=[a-z_]+$)", dense),
        (r"^out\.0\.", "xvector.out_nonlinear.batchnorm."),
        (r"^fc\.", "xvector.dense.linear."), (r"^fc_bn\.", "xvector.dense.nonlinear.batchnorm."),
    ], constant={"fc.bias": 0.0, "fc_bn.weight": 1.0, "fc_bn.bias": 0.0}, kernel_axis=("fc.weight",))


def _args(args: Dict[str, Any], accepted: Dict[str, Any], name: str, source, lines) -> Dict[str, Any]:
    """model_args with every key known and every fixed one at the value trkd reproduces."""
    for key, value in args.items():
        if key not in accepted:
            raise InputError(source, f"model_args.{key}: not an argument of {name} that trkd imports "
                             f"(known: {', '.join(accepted)})", lines.get(f"model_args.{key}"))
        want = accepted[key]
        if want is not None and value != want:
            raise InputError(source, f"model_args.{key}: {value!r}; trkd imports {name} with {want!r} only",
                             lines.get(f"model_args.{key}"))
    return {**{k: v for k, v in accepted.items() if v is not None}, **args}


def _architecture(name: str, args: Dict[str, Any], source, lines) -> Tuple[Dict[str, Any], Callable[[], KeyMap]]:
    """trkd's model block and key map of WeSpeaker model NAME built with ARGS."""
    dims = {"feat_dim": None, "embed_dim": None}
    if name in RESNET_DEPTHS:
        a = _args(args, {**dims, "pooling_func": "TSTP", "two_emb_layer": False}, name, source, lines)
        return ({"name": "resnet", "feat_dim": a["feat_dim"], "embed_dim": a["embed_dim"],
                 "depth": RESNET_DEPTHS[name], "width": 32, "pool_std": "unbiased", "embed_bn": False},
                resnet_keymap)
    match = ECAPA.fullmatch(name)
    if match:
        a = _args(args, {**dims, "pooling_func": "ASTP", "emb_bn": None}, name, source, lines)
        return ({"name": "ecapa", "feat_dim": a["feat_dim"], "embed_dim": a["embed_dim"],
                 "channels": int(match[2]), "mfa_channels": 1536, "global_context": bool(match[1]),
                 "sum_block_inputs": False, "res2_passthrough": "last", "mfa_bn": False, "attention_bn": False,
                 "pool_std": "unbiased", "embed_bn": bool(a.get("emb_bn", False))}, ecapa_keymap)
    if name == "CAMPPlus":
        a = _args(args, {**dims, "pooling_func": "TSTP", "growth_rate": None, "bn_size": None,
                         "init_channels": None, "config_str": "batchnorm-relu"}, name, source, lines)
        layers = [12, 24, 16]
        return ({"name": "campplus", "feat_dim": a["feat_dim"], "embed_dim": a["embed_dim"],
                 "channels": a.get("init_channels", 128), "growth": a.get("growth_rate", 32),
                 "bn_size": a.get("bn_size", 4), "layers": layers, "pool_std": "unbiased"},
                lambda: campplus_keymap(layers))
    raise InputError(source, f"model {name!r} is not one trkd imports ({FAMILIES})", lines.get("model"))


def _number(d: Dict[str, Any], key: str, default, source, lines, prefix: str):
    value = d.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(source, f"{prefix}{key}: expected a number, got {value!r}", lines.get(prefix + key))
    return value


def read_config(path: Path) -> WeSpeakerModel:
    """A WeSpeaker config.yaml in trkd's terms; what trkd cannot reproduce is an InputError naming
    the key and its line."""
    data, lines = read_yaml(path)
    name = data.get("model")
    if not isinstance(name, str):
        raise InputError(path, "no 'model:' name: not a WeSpeaker training config", lines.get("model"))
    args = data.get("model_args") or {}
    block, keymap = _architecture(name, args, path, lines)
    for key in ("feat_dim", "embed_dim"):
        if not isinstance(block[key], int) or isinstance(block[key], bool):
            raise InputError(path, f"model_args.{key}: expected an integer, got {block[key]!r}",
                             lines.get(f"model_args.{key}", lines.get("model_args")))
    dataset = data.get("dataset_args") or {}
    if dataset.get("frontend", "fbank") != "fbank":
        raise InputError(path, f"dataset_args.frontend: {dataset['frontend']!r}; trkd imports fbank models only",
                         lines.get("dataset_args.frontend"))
    fb = dataset.get("fbank_args") or {}
    fbank = FbankOptions(num_mel_bins=int(_number(fb, "num_mel_bins", 80, path, lines, "dataset_args.fbank_args.")),
                         frame_length=float(_number(fb, "frame_length", 25, path, lines, "dataset_args.fbank_args.")),
                         frame_shift=float(_number(fb, "frame_shift", 10, path, lines, "dataset_args.fbank_args.")),
                         dither=0.0, sample_frequency=int(_number(dataset, "resample_rate", 16000, path, lines,
                                                                  "dataset_args.")),
                         energy_floor=1.0, window_type="hamming", use_energy=False)
    if fbank.num_mel_bins != block["feat_dim"]:
        raise InputError(path, f"dataset_args.fbank_args.num_mel_bins {fbank.num_mel_bins} differs from "
                         f"model_args.feat_dim {block['feat_dim']}", lines.get("dataset_args.fbank_args.num_mel_bins"))
    proj = data.get("projection_args") or {}
    margin = data.get("margin_update") or {}
    num_class = proj.get("num_class")
    return WeSpeakerModel(
        name, block, keymap(), proj.get("project_type", "arc_margin") == "arc_margin" and not proj.get("easy_margin"),
        int(num_class) if isinstance(num_class, int) else None,
        float(_number(proj, "scale", 32.0, path, lines, "projection_args.")),
        float(_number(margin, "final_margin", 0.2, path, lines, "margin_update.")),
        bool(dataset.get("speed_perturb", False)),
        int(_number(dataset, "num_frms", 200, path, lines, "dataset_args.")),
        int(_number(data, "num_epochs", 150, path, lines, "")), fbank)


def class_names(path: Path, num_classes: int) -> Dict[str, int]:
    """trkd's spk2id of a classifier with `num_classes` classes from WeSpeaker's speaker list
    (PATH: `SPK` or `SPK INDEX` per line, indices 0 … N−1): the N speakers, then, where the
    classifier has 3N classes (speed perturbation), their 0.9x and 1.1x copies."""
    from trkd.data.kaldi_dir import iter_table

    rows: List[Tuple[int, str, int]] = []
    for n, fields in iter_table(path, min_fields=1, max_fields=2):
        if len(fields) == 2 and not fields[1].isdigit():
            raise InputError(path, f"class index is not an integer: {fields[1]!r}", n)
        rows.append((int(fields[1]) if len(fields) == 2 else len(rows), fields[0], n))
    rows.sort()
    for i, (index, spk, n) in enumerate(rows):
        if index != i:
            raise InputError(path, f"speaker {spk!r} has index {index}; the indices must run 0 … {len(rows) - 1}", n)
    speakers = [spk for _, spk, _ in rows]
    if len(set(speakers)) != len(speakers):
        raise InputError(path, "a speaker is listed twice")
    if num_classes == len(speakers):
        names = speakers
    elif num_classes == 3 * len(speakers):
        names = speakers + [p + s for p in SPEED_PREFIXES for s in speakers]
    else:
        raise InputError(path, f"{len(speakers)} speakers, the classifier has {num_classes} classes (neither N nor "
                         f"3N, WeSpeaker's speed perturbation)")
    return {s: i for i, s in enumerate(names)}
