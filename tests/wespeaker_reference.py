"""Fake WeSpeaker model folders and an independent forward of WeSpeaker's architectures.

Written for these tests from WeSpeaker's published model structure (wespeaker/models/resnet.py,
ecapa_tdnn.py, campplus.py, pooling_layers.py): the state-dict LAYOUTS list every key and shape
a released `avg_model.pt` has; the FORWARDS compute the embedding from such a dict with plain
torch functions, in the order WeSpeaker's modules apply them. Neither uses trkd's models, so an
import that maps a key wrongly or changes an operation makes the embeddings differ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
import yaml

Layout = List[Tuple[str, Tuple[int, ...]]]
RESNETS = {"ResNet34": ("basic", (3, 4, 6, 3)), "ResNet221": ("bottleneck", (6, 16, 48, 3))}


def bn_keys(prefix: str, c: int, affine: bool = True) -> Layout:
    params = [(prefix + "weight", (c,)), (prefix + "bias", (c,))] if affine else []
    return params + [(prefix + "running_mean", (c,)), (prefix + "running_var", (c,)),
                     (prefix + "num_batches_tracked", ())]


def resnet_layout(name: str, feat_dim: int = 80, embed_dim: int = 256, m: int = 32) -> Layout:
    kind, counts = RESNETS[name]
    keys = [("conv1.weight", (m, 1, 3, 3))] + bn_keys("bn1.", m)
    in_planes = m
    for i, n in enumerate(counts):
        planes = m * 2 ** i
        for j in range(n):
            p, stride = f"layer{i + 1}.{j}.", 2 if i > 0 and j == 0 else 1
            if kind == "basic":
                out = planes
                keys += [(p + "conv1.weight", (planes, in_planes, 3, 3))] + bn_keys(p + "bn1.", planes)
                keys += [(p + "conv2.weight", (planes, planes, 3, 3))] + bn_keys(p + "bn2.", planes)
            else:
                out = 4 * planes
                keys += [(p + "conv1.weight", (planes, in_planes, 1, 1))] + bn_keys(p + "bn1.", planes)
                keys += [(p + "conv2.weight", (planes, planes, 3, 3))] + bn_keys(p + "bn2.", planes)
                keys += [(p + "conv3.weight", (out, planes, 1, 1))] + bn_keys(p + "bn3.", out)
            if stride != 1 or in_planes != out:
                keys += [(p + "shortcut.0.weight", (out, in_planes, 1, 1))] + bn_keys(p + "shortcut.1.", out)
            in_planes = out
    stats = 2 * (feat_dim // 8) * in_planes
    return keys + [("seg_1.weight", (embed_dim, stats)), ("seg_1.bias", (embed_dim,))]


def ecapa_layout(channels: int = 1024, feat_dim: int = 80, embed_dim: int = 192, glob: bool = True,
                 emb_bn: bool = False) -> Layout:
    def conv_bn(p, cin, cout, k):
        return [(p + "conv.weight", (cout, cin, k)), (p + "conv.bias", (cout,))] + bn_keys(p + "bn.", cout)
    keys = conv_bn("layer1.", feat_dim, channels, 5)
    width = channels // 8
    for b in (2, 3, 4):
        p = f"layer{b}.se_res2block."
        keys += conv_bn(p + "0.", channels, channels, 1)
        for i in range(7):
            keys += [(f"{p}1.convs.{i}.weight", (width, width, 3)), (f"{p}1.convs.{i}.bias", (width,))]
        for i in range(7):
            keys += bn_keys(f"{p}1.bns.{i}.", width)
        keys += conv_bn(p + "2.", channels, channels, 1)
        keys += [(p + "3.linear1.weight", (128, channels)), (p + "3.linear1.bias", (128,)),
                 (p + "3.linear2.weight", (channels, 128)), (p + "3.linear2.bias", (channels,))]
    keys += [("conv.weight", (1536, 3 * channels, 1)), ("conv.bias", (1536,)),
             ("pool.linear1.weight", (128, 1536 * (3 if glob else 1), 1)), ("pool.linear1.bias", (128,)),
             ("pool.linear2.weight", (1536, 128, 1)), ("pool.linear2.bias", (1536,))]
    keys += bn_keys("bn.", 3072) + [("linear.weight", (embed_dim, 3072)), ("linear.bias", (embed_dim,))]
    return keys + (bn_keys("bn2.", embed_dim) if emb_bn else [])


def random_state(layout: Layout, seed: int) -> Dict[str, torch.Tensor]:
    """Every tensor random: weights scaled by their fan-in, BN scales, shifts and running
    statistics drawn around a trained network's, counters random integers."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in layout:
        if key.endswith("num_batches_tracked"):
            out[key] = torch.randint(1, 10**6, (), generator=g, dtype=torch.int64)
        elif key.endswith("running_var"):
            out[key] = 0.5 + torch.rand(shape, generator=g)
        elif key.endswith("running_mean") or key.endswith("bias"):
            out[key] = 0.1 * torch.randn(shape, generator=g)
        elif len(shape) == 1:   # a BN scale
            out[key] = 0.5 + 0.5 * torch.rand(shape, generator=g)
        else:
            fan_in = int(torch.tensor(shape[1:]).prod())
            out[key] = torch.randn(shape, generator=g) / fan_in ** 0.5
    return out


def write_folder(folder: Path, model: str, model_args: dict, state: Dict[str, torch.Tensor],
                 num_class: int = None, pooling: str = "TSTP", num_frms: int = 200) -> Path:
    """A WeSpeaker model folder: config.yaml as WeSpeaker's train.py dumps it, avg_model.pt."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "dataloader_args": {"batch_size": 128, "drop_last": True, "num_workers": 16},
        "dataset_args": {"aug_prob": 0.6, "fbank_args": {"dither": 1.0, "frame_length": 25, "frame_shift": 10,
                                                         "num_mel_bins": 80},
                         "num_frms": num_frms, "resample_rate": 16000, "speed_perturb": True, "spec_aug": False},
        "exp_dir": f"exp/{model}", "gpus": "[0,1]",
        "margin_scheduler": "MarginScheduler",
        "margin_update": {"final_margin": 0.2, "fix_start_epoch": 40, "increase_start_epoch": 20,
                          "increase_type": "exp", "initial_margin": 0.0, "update_margin": True},
        "model": model, "model_args": {"feat_dim": 80, "pooling_func": pooling, **model_args}, "model_init": None,
        "num_avg": 10, "num_epochs": 150,
        "projection_args": {"easy_margin": False, "embed_dim": model_args["embed_dim"], "project_type": "arc_margin",
                            "scale": 32.0, **({"num_class": num_class} if num_class else {})},
        "seed": 42,
    }
    (folder / "config.yaml").write_text(yaml.dump(config))
    torch.save(state, folder / "avg_model.pt")
    return folder


# ---- the forwards: (B, T, F) mean-normalised fbank -> embedding, as WeSpeaker's models compute it

def _bn(x, sd, p):
    return F.batch_norm(x, sd[p + "running_mean"], sd[p + "running_var"], sd.get(p + "weight"), sd.get(p + "bias"),
                        False, 0.0, 1e-5)


def resnet_forward(sd, x, name: str):
    kind, counts = RESNETS[name]
    out = F.relu(_bn(F.conv2d(x.permute(0, 2, 1).unsqueeze(1), sd["conv1.weight"], padding=1), sd, "bn1."))
    for i, n in enumerate(counts):
        for j in range(n):
            p, stride = f"layer{i + 1}.{j}.", 2 if i > 0 and j == 0 else 1
            if kind == "basic":
                y = F.relu(_bn(F.conv2d(out, sd[p + "conv1.weight"], stride=stride, padding=1), sd, p + "bn1."))
                y = _bn(F.conv2d(y, sd[p + "conv2.weight"], padding=1), sd, p + "bn2.")
            else:
                y = F.relu(_bn(F.conv2d(out, sd[p + "conv1.weight"]), sd, p + "bn1."))
                y = F.relu(_bn(F.conv2d(y, sd[p + "conv2.weight"], stride=stride, padding=1), sd, p + "bn2."))
                y = _bn(F.conv2d(y, sd[p + "conv3.weight"]), sd, p + "bn3.")
            if p + "shortcut.0.weight" in sd:
                short = _bn(F.conv2d(out, sd[p + "shortcut.0.weight"], stride=stride), sd, p + "shortcut.1.")
            else:
                short = out
            out = F.relu(y + short)
    # TSTP over the (B, C, F, T) map: mean and sqrt(unbiased var + 1e-7) over time, flattened
    stats = torch.cat([out.mean(dim=-1).flatten(1), torch.sqrt(torch.var(out, dim=-1) + 1e-7).flatten(1)], 1)
    return F.linear(stats, sd["seg_1.weight"], sd["seg_1.bias"])


def ecapa_forward(sd, x, glob: bool = True, emb_bn: bool = False):
    def conv_relu_bn(h, p, **kw):
        return _bn(F.relu(F.conv1d(h, sd[p + "conv.weight"], sd[p + "conv.bias"], **kw)), sd, p + "bn.")

    def block(h, b, dilation):
        p = f"layer{b}.se_res2block."
        y = conv_relu_bn(h, p + "0.")
        parts, sp = torch.split(y, y.shape[1] // 8, 1), None
        outs = []
        for i in range(7):
            sp = parts[i] if i == 0 else sp + parts[i]
            sp = F.conv1d(sp, sd[f"{p}1.convs.{i}.weight"], sd[f"{p}1.convs.{i}.bias"], padding=dilation,
                          dilation=dilation)
            sp = _bn(F.relu(sp), sd, f"{p}1.bns.{i}.")
            outs.append(sp)
        y = conv_relu_bn(torch.cat(outs + [parts[7]], 1), p + "2.")
        s = F.relu(F.linear(y.mean(dim=2), sd[p + "3.linear1.weight"], sd[p + "3.linear1.bias"]))
        s = torch.sigmoid(F.linear(s, sd[p + "3.linear2.weight"], sd[p + "3.linear2.bias"]))
        return h + y * s.unsqueeze(2)

    out1 = conv_relu_bn(x.permute(0, 2, 1), "layer1.", padding=2)
    out2 = block(out1, 2, 2)
    out3 = block(out2, 3, 3)
    out4 = block(out3, 4, 4)
    h = F.relu(F.conv1d(torch.cat([out2, out3, out4], 1), sd["conv.weight"], sd["conv.bias"]))
    # ASTP with global context
    h_in = h
    if glob:
        mean = h.mean(dim=-1, keepdim=True).expand_as(h)
        std = torch.sqrt(torch.var(h, dim=-1, keepdim=True) + 1e-7).expand_as(h)
        h_in = torch.cat([h, mean, std], 1)
    alpha = torch.tanh(F.conv1d(h_in, sd["pool.linear1.weight"], sd["pool.linear1.bias"]))
    alpha = torch.softmax(F.conv1d(alpha, sd["pool.linear2.weight"], sd["pool.linear2.bias"]), dim=2)
    mean = torch.sum(alpha * h, dim=2)
    var = torch.sum(alpha * (h ** 2), dim=2) - mean ** 2
    pooled = _bn(torch.cat([mean, torch.sqrt(var.clamp(min=1e-7))], 1), sd, "bn.")
    emb = F.linear(pooled, sd["linear.weight"], sd["linear.bias"])
    return _bn(emb, sd, "bn2.") if emb_bn else emb


def campplus_layout(feat_dim: int = 80, embed_dim: int = 512, m: int = 32, growth: int = 32, init: int = 128) -> Layout:
    def res_block(p, stride):
        keys = [(p + "conv1.weight", (m, m, 3, 3))] + bn_keys(p + "bn1.", m)
        keys += [(p + "conv2.weight", (m, m, 3, 3))] + bn_keys(p + "bn2.", m)
        if stride != 1:
            keys += [(p + "shortcut.0.weight", (m, m, 1, 1))] + bn_keys(p + "shortcut.1.", m)
        return keys
    keys = [("head.conv1.weight", (m, 1, 3, 3))] + bn_keys("head.bn1.", m)
    for layer in (1, 2):
        keys += res_block(f"head.layer{layer}.0.", 2) + res_block(f"head.layer{layer}.1.", 1)
    keys += [("head.conv2.weight", (m, m, 3, 3))] + bn_keys("head.bn2.", m)
    keys += [("xvector.tdnn.linear.weight", (init, m * (feat_dim // 8), 5))] + bn_keys("xvector.tdnn.nonlinear.batchnorm.", init)
    ch, bn_ch = init, 4 * growth
    for b, n in enumerate((12, 24, 16)):
        for i in range(n):
            p, cin = f"xvector.block{b + 1}.tdnnd{i + 1}.", ch + i * growth
            keys += bn_keys(p + "nonlinear1.batchnorm.", cin) + [(p + "linear1.weight", (bn_ch, cin, 1))]
            keys += bn_keys(p + "nonlinear2.batchnorm.", bn_ch)
            keys += [(p + "cam_layer.linear_local.weight", (growth, bn_ch, 3)),
                     (p + "cam_layer.linear1.weight", (bn_ch // 2, bn_ch, 1)), (p + "cam_layer.linear1.bias", (bn_ch // 2,)),
                     (p + "cam_layer.linear2.weight", (growth, bn_ch // 2, 1)), (p + "cam_layer.linear2.bias", (growth,))]
        ch += n * growth
        keys += bn_keys(f"xvector.transit{b + 1}.nonlinear.batchnorm.", ch)
        keys += [(f"xvector.transit{b + 1}.linear.weight", (ch // 2, ch, 1))]
        ch //= 2
    keys += bn_keys("xvector.out_nonlinear.batchnorm.", ch)
    keys += [("xvector.dense.linear.weight", (embed_dim, 2 * ch, 1))]
    return keys + bn_keys("xvector.dense.nonlinear.batchnorm.", embed_dim, affine=False)


def campplus_forward(sd, x):
    def res_block(h, p, stride):
        y = F.relu(_bn(F.conv2d(h, sd[p + "conv1.weight"], stride=(stride, 1), padding=1), sd, p + "bn1."))
        y = _bn(F.conv2d(y, sd[p + "conv2.weight"], padding=1), sd, p + "bn2.")
        if stride != 1:
            h = _bn(F.conv2d(h, sd[p + "shortcut.0.weight"], stride=(stride, 1)), sd, p + "shortcut.1.")
        return F.relu(y + h)

    def bn_relu(h, p):
        return F.relu(_bn(h, sd, p))

    h = F.relu(_bn(F.conv2d(x.permute(0, 2, 1).unsqueeze(1), sd["head.conv1.weight"], padding=1), sd, "head.bn1."))
    for layer in (1, 2):
        h = res_block(res_block(h, f"head.layer{layer}.0.", 2), f"head.layer{layer}.1.", 1)
    h = F.relu(_bn(F.conv2d(h, sd["head.conv2.weight"], stride=(2, 1), padding=1), sd, "head.bn2."))
    h = h.reshape(h.shape[0], h.shape[1] * h.shape[2], h.shape[3])
    h = bn_relu(F.conv1d(h, sd["xvector.tdnn.linear.weight"], stride=2, padding=2), "xvector.tdnn.nonlinear.batchnorm.")
    for b, (n, d) in enumerate(((12, 1), (24, 2), (16, 2))):
        for i in range(n):
            p = f"xvector.block{b + 1}.tdnnd{i + 1}."
            y = F.conv1d(bn_relu(h, p + "nonlinear1.batchnorm."), sd[p + "linear1.weight"])
            y = bn_relu(y, p + "nonlinear2.batchnorm.")
            local = F.conv1d(y, sd[p + "cam_layer.linear_local.weight"], padding=d, dilation=d)
            seg = F.avg_pool1d(y, 100, 100, ceil_mode=True)
            seg = seg.unsqueeze(-1).expand(*seg.shape, 100).reshape(seg.shape[0], seg.shape[1], -1)[..., :y.shape[-1]]
            context = y.mean(-1, keepdim=True) + seg
            context = F.relu(F.conv1d(context, sd[p + "cam_layer.linear1.weight"], sd[p + "cam_layer.linear1.bias"]))
            mask = torch.sigmoid(F.conv1d(context, sd[p + "cam_layer.linear2.weight"], sd[p + "cam_layer.linear2.bias"]))
            h = torch.cat([h, local * mask], 1)
        h = F.conv1d(bn_relu(h, f"xvector.transit{b + 1}.nonlinear.batchnorm."), sd[f"xvector.transit{b + 1}.linear.weight"])
    h = bn_relu(h, "xvector.out_nonlinear.batchnorm.")
    stats = torch.cat([h.mean(dim=-1), torch.sqrt(torch.var(h, dim=-1) + 1e-7)], 1)
    emb = F.conv1d(stats.unsqueeze(-1), sd["xvector.dense.linear.weight"]).squeeze(-1)
    return _bn(emb, sd, "xvector.dense.nonlinear.batchnorm.")
