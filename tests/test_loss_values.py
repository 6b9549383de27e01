"""Every loss against the values the pre-refactor code gave on fixed float64 batches (1e-6).

The values below were computed once from the code before the distillation wing was split into
one file per method: the refactor must not change any loss, part or gradient.
"""

from __future__ import annotations

import pytest
import torch

from trkd.losses import (dkd_loss, emb_loss, enskd_loss, imlkd_objective, kd_loss, terms_loss,
                         mlkd_loss, trkd_loss)

EXACT = dict(rel=1e-6, abs=1e-12)


def _batch(seed, b=12, c=300):
    """AAM-like float64 logits: target cosine 0.6 with margin 0.2, four confusable classes."""
    g = torch.Generator().manual_seed(seed)
    cos = torch.randn(b, c, generator=g, dtype=torch.float64) * 0.08
    y = torch.randint(0, c, (b,), generator=g)
    conf = torch.randint(0, c, (b, 4), generator=g)
    cos.scatter_(1, conf, 0.4 + 0.05 * torch.randn(b, 4, generator=g, dtype=torch.float64))
    cos.scatter_(1, y[:, None], 0.6)
    t = 32 * cos
    t.scatter_(1, y[:, None], 32 * (0.6 - 0.2))
    s = t + torch.randn(b, c, generator=g, dtype=torch.float64) * 1.5
    return s, t, y


def _trkd(tau, **kw):
    return lambda s, t, y: trkd_loss(s, t, y, tau, **kw)


CASES = {
    "kd": lambda s, t, y: kd_loss(s, t, y),
    "kd_T1": lambda s, t, y: kd_loss(s, t, y, 1.0),
    "dkd": lambda s, t, y: dkd_loss(s, t, y),
    "dkd_a2b5": lambda s, t, y: dkd_loss(s, t, y, 2.0, 2.0, 5.0),
    "enskd": lambda s, t, y: enskd_loss(s, t, y),
    **{f"trkd_{tau}": _trkd(tau, lambda_b=1.0) for tau in (1.0, 0.9, 0.5, 0.2, 0.05)},
    "trkd_joint_0.3": _trkd(0.3, cutoff="joint", lambda_b=0.5),
    "trkd_topk_7": _trkd(None, topk=7, lambda_b=1.0),
    "terms_tm_nckd": lambda s, t, y: terms_loss(s, t, y, {"tm": 1, "nckd": 8}, 4.0, tau=0.3),
    "terms_tckd_cf": lambda s, t, y: terms_loss(s, t, y, {"tckd": 1, "cf": 8}, 4.0, tau=0.3),
}

TODAY = {'dkd/0': [9.18358467295564, 9.613192723222259, {'nckd': 1.1367559952630184, 'tckd': 0.08953671085149288}],
 'dkd/1': [8.719971791027584, 9.328656913451134, {'nckd': 1.0803301060307804, 'tckd': 0.07733094278134224}],
 'dkd_a2b5/0': [4.776129174743329,
                5.231467294486892,
                {'nckd': 0.8846650493371534, 'tckd': 0.1764019640287813}],
 'dkd_a2b5/1': [4.48313820519019, 5.13806792303938, {'nckd': 0.7894755222269941, 'tckd': 0.267880297027609}],
 'emb_cos': 1.0316681444865758,
 'emb_mse': 2.063336288973152,
 'enskd/0': [1.1291393318200014, 1.20088358747096, {'nckd': 0.49914095736978153, 'tckd': 0.1308574170804383}],
 'enskd/1': [1.2091122061886346,
             1.476183572640895,
             {'nckd': 0.4454163861871589, 'tckd': 0.31827943381431684}],
 'imlkd': [0.051670819800667935, 0.051622176868138824, 2.3310603275549997e-05, 2.5332329253555878e-05],
 'kd/0': [1.1678842952088875, 1.2183405678265191, {'kl': 1.1678842952088875}],
 'kd/1': [1.10318813390629, 1.1769839292844462, {'kl': 1.10318813390629}],
 'kd_T1/0': [0.5165842601097592, 0.5562806703540416, {'kl': 0.5165842601097592}],
 'kd_T1/1': [0.6685644286529214, 0.7561774486706495, {'kl': 0.6685644286529214}],
 'mlkd': 0.8888365626335144,
 'terms_tckd_cf/0': [8.611490699727533,
                     9.375234220484435,
                     {'cf': 1.065244248609505, 'f_size': 14.666666666666666, 'tckd': 0.08953671085149288}],
 'terms_tckd_cf/1': [6.932575966250522,
                     8.153326319525428,
                     {'cf': 0.8569056279336474, 'f_size': 13.916666666666666, 'tckd': 0.07733094278134224}],
 'terms_tm_nckd/0': [9.228153729085085,
                     9.64383241703792,
                     {'f_size': 14.666666666666666, 'nckd': 1.1367559952630184, 'tm': 0.13410576698093898}],
 'terms_tm_nckd/1': [8.740743202050089,
                     9.354756218864186,
                     {'f_size': 13.916666666666666, 'nckd': 1.0803301060307804, 'tm': 0.0981023538038468}],
 'trkd_0.05/0': [2.340281489456228,
                 2.4622102526688368,
                 {'bg': 1.054877879792522,
                  'cf': 0.13111679697527764,
                  'f_size': 1.0833333333333333,
                  'tm': 0.2364692338614851}],
 'trkd_0.05/1': [1.2862655797678355,
                 1.5714074560681541,
                 {'bg': 1.0840937569639744,
                  'cf': 0.005975366153074517,
                  'f_size': 1.0833333333333333,
                  'tm': 0.1543688935792649}],
 'trkd_0.2/0': [8.01711380328812,
                9.483932414828761,
                {'bg': 1.114819135976976,
                 'cf': 0.8420777704560591,
                 'f_size': 4.75,
                 'tm': 0.16567250366267208}],
 'trkd_0.2/1': [7.551341012877738,
                8.929087036026218,
                {'bg': 1.1231164936814704,
                 'cf': 0.7900996385224831,
                 'f_size': 4.666666666666667,
                 'tm': 0.10742741101640225}],
 'trkd_0.5/0': [10.235646063156329,
                10.770569885594696,
                {'bg': 1.0888729168907496,
                 'cf': 1.1288279347576724,
                 'f_size': 53.5,
                 'tm': 0.11614966820419892}],
 'trkd_0.5/1': [9.128442311680201,
                9.986916143559714,
                {'bg': 1.1389136541955702,
                 'cf': 0.9869148844445679,
                 'f_size': 53.0,
                 'tm': 0.09420958192808805}],
 'trkd_0.9/0': [10.270446979438738,
                10.781696971980669,
                {'bg': 1.0678188637392814,
                 'cf': 1.1385036858092101,
                 'f_size': 209.41666666666666,
                 'tm': 0.09459862922577554}],
 'trkd_0.9/1': [9.772708652282146,
                10.466308044662899,
                {'bg': 1.079869180963805,
                 'cf': 1.076523422502542,
                 'f_size': 209.16666666666666,
                 'tm': 0.08065209129800421}],
 'trkd_1.0/0': [9.18358467295564,
                9.613192723222259,
                {'bg': 0.0, 'cf': 1.1367559952630184, 'f_size': 299.0, 'tm': 0.08953671085149288}],
 'trkd_1.0/1': [8.719971791027584,
                9.328656913451134,
                {'bg': 0.0, 'cf': 1.0803301060307804, 'f_size': 299.0, 'tm': 0.07733094278134224}],
 'trkd_joint_0.3/0': [9.463854497034069,
                      10.038743651476013,
                      {'bg': 1.0952454405430068,
                       'cf': 1.0984520383546241,
                       'f_size': 16.916666666666668,
                       'tm': 0.12861546992557174}],
 'trkd_joint_0.3/1': [7.6413298743800055,
                      8.79896366929054,
                      {'bg': 1.1450114708356418,
                       'cf': 0.8712555453128615,
                       'f_size': 16.416666666666668,
                       'tm': 0.09877977645929244}],
 'trkd_topk_7/0': [9.503869661725728,
                   10.171407283612265,
                   {'bg': 1.0992384862499658,
                    'cf': 1.033282941263927,
                    'f_size': 7.0,
                    'tm': 0.1383676453643437}],
 'trkd_topk_7/1': [8.04475319079352,
                   9.272885699615998,
                   {'bg': 1.1491858580850522,
                    'cf': 0.8496096243333605,
                    'f_size': 7.0,
                    'tm': 0.09869033804158332}]}


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", list(CASES))
def test_logit_loss_parts_and_gradient_equal_todays(name, seed):
    want_loss, want_grad, want_parts = TODAY[f"{name}/{seed}"]
    s, t, y = _batch(seed)
    x = s.clone().requires_grad_(True)
    loss, parts = CASES[name](x, t, y)
    loss.backward()
    parts = parts._asdict() if hasattr(parts, "_asdict") else dict(parts)
    assert float(loss.detach()) == pytest.approx(want_loss, **EXACT)
    assert float(x.grad.abs().sum()) == pytest.approx(want_grad, **EXACT)
    assert {k: float(v) for k, v in parts.items()} == pytest.approx(want_parts, **EXACT)


def test_embedding_losses_and_imlkd_equal_todays():
    g = torch.Generator().manual_seed(5)
    es = torch.randn(6, 8, generator=g, dtype=torch.float64)
    et = torch.randn(6, 12, generator=g, dtype=torch.float64)
    w = torch.randn(12, 8, generator=g, dtype=torch.float64)
    levels = [torch.randn(6, 5, generator=g, dtype=torch.float64), et]
    wl = torch.randn(17, 8, generator=g, dtype=torch.float64)
    assert float(emb_loss(es, et, lambda e: e @ w.T)) == pytest.approx(TODAY["emb_cos"], **EXACT)
    assert float(emb_loss(es, et, lambda e: e @ w.T, "mse")) == pytest.approx(TODAY["emb_mse"], **EXACT)
    assert float(mlkd_loss(es, levels, lambda e: (e @ wl.T).float())) == pytest.approx(TODAY["mlkd"], **EXACT)
    s, t, _ = _batch(2, b=6, c=40)
    loss, parts = imlkd_objective(s / 8, t / 8)
    assert [float(loss)] + [float(p) for p in parts] == pytest.approx(TODAY["imlkd"], **EXACT)
