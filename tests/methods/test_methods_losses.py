"""Every loss against a hand computation in plain Python ``math``."""

import math

import pytest
import torch

from mfm.config import Config, MethodConfig, TrainConfig
from mfm.methods import create_method
from mfm.methods.cb import class_balanced_weights
from mfm.methods.ldam_drw import ldam_margins

LOGITS = [[1.0, 2.0, 0.5], [0.3, -1.0, 2.0], [-0.7, 0.1, 0.2], [2.5, 0.0, -1.5]]
TARGETS = [1, 2, 0, 0]
COUNTS = [100, 10, 1]


def _t(logits=LOGITS, targets=TARGETS):
    return (torch.tensor(logits, dtype=torch.float64), torch.tensor(targets))


def _log_softmax(row, k):
    m = max(row)
    return row[k] - m - math.log(sum(math.exp(v - m) for v in row))


def _ce(row, k):
    return -_log_softmax(row, k)


def _mk(name, counts=COUNTS, epochs=10, **kw):
    cfg = Config(method=MethodConfig(name=name, **kw), train=TrainConfig(epochs=epochs))
    return create_method(cfg, counts)


def _loss(method, epoch=0, logits=LOGITS, targets=TARGETS):
    return method.loss(*_t(logits, targets), epoch=epoch).item()


def test_ce():
    want = sum(_ce(r, k) for r, k in zip(LOGITS, TARGETS)) / len(TARGETS)
    assert _loss(_mk("ce")) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0])
def test_focal(gamma):
    want = 0.0
    for r, k in zip(LOGITS, TARGETS):
        p = math.exp(_log_softmax(r, k))
        want += -((1 - p) ** gamma) * math.log(p)
    want /= len(TARGETS)
    assert _loss(_mk("focal", focal_gamma=gamma)) == pytest.approx(want, rel=1e-12)


def test_focal_gamma0_is_ce():
    assert _loss(_mk("focal", focal_gamma=0.0)) == pytest.approx(_loss(_mk("ce")), rel=1e-15)


@pytest.mark.parametrize("gamma", [0.5, 1.0])
def test_focal_gradient_finite_when_confident(gamma):
    z = torch.tensor([[60.0, 0.0, 0.0]], requires_grad=True)  # p_t rounds to 1 in float32
    loss = _mk("focal", focal_gamma=gamma).loss(z, torch.tensor([0]), epoch=0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()


def _cb_weights_by_hand(counts, beta):
    eff = [(1 - beta ** n) / (1 - beta) for n in counts]  # effective numbers
    inv = [1 / e for e in eff]
    return [w * len(counts) / sum(inv) for w in inv]


@pytest.mark.parametrize("beta", [0.9, 0.99, 0.9999])
def test_cb_weights(beta):
    w = class_balanced_weights(COUNTS, beta)
    assert w == pytest.approx(_cb_weights_by_hand(COUNTS, beta), rel=1e-12)
    assert sum(w) == pytest.approx(len(COUNTS), rel=1e-12)
    assert w[2] > w[1] > w[0]  # rare classes weigh more


def test_cb_weights_beta0_uniform():
    assert class_balanced_weights(COUNTS, 0.0) == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("beta", [0.9, 0.9999])
def test_cb_ce(beta):
    w = _cb_weights_by_hand(COUNTS, beta)
    # Per-sample mean of w_y * CE (Cui et al.'s formula, averaged over the batch).
    want = sum(w[k] * _ce(r, k) for r, k in zip(LOGITS, TARGETS)) / len(TARGETS)
    assert _loss(_mk("cb", cb_beta=beta)) == pytest.approx(want, rel=1e-12)


def test_cb_focal():
    beta, gamma = 0.99, 2.0
    w = _cb_weights_by_hand(COUNTS, beta)
    want = 0.0
    for r, k in zip(LOGITS, TARGETS):
        p = math.exp(_log_softmax(r, k))
        want += w[k] * -((1 - p) ** gamma) * math.log(p)
    want /= len(TARGETS)
    m = _mk("cb", cb_beta=beta, cb_loss="focal", focal_gamma=gamma)
    assert _loss(m) == pytest.approx(want, rel=1e-12)


def test_cb_beta0_is_ce():
    assert _loss(_mk("cb", cb_beta=0.0)) == pytest.approx(_loss(_mk("ce")), rel=1e-15)


def test_ldam_margins():
    counts = [625, 81, 16, 1]  # n^(1/4) = 5, 3, 2, 1
    m = ldam_margins(counts, 0.5)
    assert m == pytest.approx([0.5 / 5, 0.5 / 3, 0.5 / 2, 0.5], rel=1e-12)
    assert max(m) == pytest.approx(0.5)
    # m_j * n_j^(1/4) is constant: m proportional to n^(-1/4).
    assert [mj * n ** 0.25 for mj, n in zip(m, counts)] == pytest.approx([0.5] * 4)
    assert ldam_margins([10, 10], 0.3) == pytest.approx([0.3, 0.3])


COS = [[0.9, 0.2, -0.3], [0.1, 0.4, 0.35], [-0.5, 0.8, 0.6], [0.0, 0.0, 0.1]]


def _ldam_by_hand(counts, s, max_m, weights):
    raw = [n ** -0.25 for n in counts]
    margins = [r * max_m / max(raw) for r in raw]
    num = den = 0.0
    for row, k in zip(COS, TARGETS):
        z = [s * (v - (margins[k] if j == k else 0.0)) for j, v in enumerate(row)]
        w = 1.0 if weights is None else weights[k]
        num += w * _ce(z, k)
        den += w
    return num / den  # torch's weighted mean: divided by the sum of the sample weights


def test_ldam_drw_loss_and_switch():
    m = _mk("ldam_drw", epochs=200, cb_beta=0.999)  # drw_start 0.8: re-weighting from 160
    assert m.classifier == "cosine" and m.drw_epoch == 160
    before = _ldam_by_hand(COUNTS, 30.0, 0.5, None)
    after = _ldam_by_hand(COUNTS, 30.0, 0.5, _cb_weights_by_hand(COUNTS, 0.999))
    assert before != pytest.approx(after)
    for epoch in (0, 100, 159):
        assert not m.reweighting(epoch)
        assert _loss(m, epoch, COS) == pytest.approx(before, rel=1e-12)
    for epoch in (160, 199):
        assert m.reweighting(epoch)
        assert _loss(m, epoch, COS) == pytest.approx(after, rel=1e-12)


def test_ldam_scale_and_margin_options():
    m = _mk("ldam_drw", epochs=5, ldam_scale=10.0, ldam_max_margin=0.3, drw_start=1.0)
    assert m.drw_epoch == 5 and not m.reweighting(4)  # drw_start 1.0: never
    assert _loss(m, 4, COS) == pytest.approx(_ldam_by_hand(COUNTS, 10.0, 0.3, None), rel=1e-12)
    assert _mk("ldam_drw", epochs=5, drw_start=0.0).reweighting(0)


def test_drw_epoch_rounding():
    # 0.29 * 100 == 28.999999999999996 in floating point; the switch is still at epoch 29.
    assert _mk("ldam_drw", epochs=100, drw_start=0.29).drw_epoch == 29
    assert _mk("ldam_drw", epochs=7, drw_start=0.5).drw_epoch == 3


def test_balanced_softmax():
    total = sum(COUNTS)
    want = 0.0
    for r, k in zip(LOGITS, TARGETS):
        shifted = [v + math.log(n / total) for v, n in zip(r, COUNTS)]
        want += _ce(shifted, k)
    want /= len(TARGETS)
    m = _mk("balanced_softmax")
    assert _loss(m) == pytest.approx(want, rel=1e-12)
    z, _ = _t()
    assert torch.equal(m.eval_logits(z), z)  # prediction uses the plain logits


def test_balanced_softmax_uniform_prior_is_ce():
    m = _mk("balanced_softmax", counts=[7, 7, 7])
    assert _loss(m) == pytest.approx(_loss(_mk("ce")), rel=1e-14)


def test_float32_and_dtype_follow_logits():
    for name in ("ce", "focal", "cb", "ldam_drw", "balanced_softmax"):
        m = _mk(name)
        z32 = torch.tensor(COS, dtype=torch.float32)
        out = m.loss(z32, torch.tensor(TARGETS), epoch=9)
        assert out.dtype == torch.float32 and out.dim() == 0
        out64 = m.loss(z32.double(), torch.tensor(TARGETS), epoch=9)
        assert out64.dtype == torch.float64
        assert out.item() == pytest.approx(out64.item(), rel=1e-5)
