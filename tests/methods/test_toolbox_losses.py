"""The long-tail toolbox's losses and steps against hand computations: logit adjustment (as a
loss and post hoc), class re-weighting (cb, drw) for any loss, SAM and ImbSAM's two passes,
MaxNorm's projection."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mfm.config import load_config
from mfm.methods import create_method
from mfm.models import create_model
from mfm.optim.maxnorm import MaxNorm
from mfm.optim.steps import ImbSamStep, SamStep, tail_classes

COUNTS = [40, 10, 2]
PRIOR = [n / sum(COUNTS) for n in COUNTS]


def method(*overrides, epochs=10):
    cfg = load_config(None, [f"train.epochs={epochs}", *overrides])
    return create_method(cfg, COUNTS)


def batch(seed=0, n=6):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=g, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 2, 1])


def hand_ce(z, y):
    """-log softmax(z)_y, per sample, written out."""
    return torch.stack([torch.logsumexp(z[i], 0) - z[i, y[i]] for i in range(len(y))])


def test_la_with_tau_one_is_balanced_softmax_term_for_term():
    z, y = batch()
    la = method("method.name=la", "method.la_tau=1.0")
    bs = method("method.name=balanced_softmax")
    assert torch.allclose(la.terms(z, y, epoch=0), bs.terms(z, y, epoch=0), rtol=0, atol=1e-15)


def test_la_loss_by_hand():
    z, y = batch(1)
    tau = 0.7
    la = method("method.name=la", f"method.la_tau={tau}")
    adjusted = z + tau * torch.log(torch.tensor(PRIOR, dtype=torch.float64))
    assert torch.allclose(la.loss(z, y, epoch=0), hand_ce(adjusted, y).mean(), atol=1e-12)
    assert torch.equal(la.eval_logits(z), z)  # as a loss, prediction is plain


def test_la_posthoc_trains_plain_ce_and_predicts_with_the_prior_removed():
    z, y = batch(2)
    tau = 1.5
    la = method("method.name=la", "method.la_mode=posthoc", f"method.la_tau={tau}")
    assert torch.allclose(la.loss(z, y, epoch=0), hand_ce(z, y).mean(), atol=1e-12)
    logp = torch.log(torch.tensor(PRIOR, dtype=torch.float64))
    assert torch.equal(la.eval_logits(z).argmax(1), (z - tau * logp).argmax(1))
    # the prior removed changes the prediction towards the rare classes
    z = torch.tensor([[1.0, 0.9, 0.5]], dtype=torch.float64)
    assert la.eval_logits(z).argmax(1).item() == 2


def cb_weights(beta):
    raw = [(1 - beta) / (1 - beta ** n) for n in COUNTS]
    return torch.tensor([w * len(raw) / sum(raw) for w in raw], dtype=torch.float64)


@pytest.mark.parametrize("name", ["ce", "focal", "balanced_softmax", "la"])
def test_reweight_cb_is_the_weighted_mean_of_any_loss(name):
    z, y = batch(3)
    plain = method(f"method.name={name}")
    weighted = method(f"method.name={name}", "method.reweight=cb", "method.cb_beta=0.9")
    per = plain.per_sample(z, y, epoch=0)
    w = cb_weights(0.9)[y]
    assert torch.allclose(weighted.loss(z, y, epoch=0), (w * per).sum() / w.sum(), atol=1e-12)
    assert torch.allclose(plain.loss(z, y, epoch=0), per.mean(), atol=1e-12)


def test_drw_weights_only_from_drw_start():
    z, y = batch(4)
    m = method("method.name=ce", "method.reweight=drw", "method.drw_start=0.6", epochs=10)
    per = hand_ce(z, y)
    assert torch.allclose(m.loss(z, y, epoch=5), per.mean(), atol=1e-12)  # before epoch 6
    w = cb_weights(0.9999)[y]
    assert torch.allclose(m.loss(z, y, epoch=6), (w * per).sum() / w.sum(), atol=1e-12)


def test_cb_keeps_cuis_per_sample_mean():
    z, y = batch(5)
    m = method("method.name=cb", "method.cb_beta=0.9")
    w = cb_weights(0.9)[y]
    assert torch.allclose(m.loss(z, y, epoch=0), (w * hand_ce(z, y)).mean(), atol=1e-12)


def test_mfm_on_la_adds_tau_log_prior():
    z, y = batch(6)
    m = method("method.name=mfm", "mfm.base_loss=la", "method.la_tau=0.5")
    adjusted = z + 0.5 * torch.log(torch.tensor(PRIOR, dtype=torch.float64))
    assert torch.allclose(m.loss(z, y, epoch=0), hand_ce(adjusted, y).mean(), atol=1e-12)


# -- SAM and ImbSAM -------------------------------------------------------------------------------
class Tiny(nn.Module):
    """Two layers, no BatchNorm: a forward depends on the weights only."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 5)
        self.b = nn.Linear(5, 3)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


def tiny_setup(seed=0):
    torch.manual_seed(seed)
    model = Tiny().double()
    x = torch.randn(8, 4, dtype=torch.float64)
    y = torch.tensor([0, 0, 0, 1, 1, 2, 0, 2])
    return model, x, y


def per_sample_terms(model, x, y):
    return F.cross_entropy(model(x), y, reduction="none") / len(y)


def reference_sam(model, x, y, rho, lr, mask=None):
    """SAM (mask None) or ImbSAM (mask: the tail samples) by hand, on a copy: returns the
    weights after one SGD step (no momentum)."""
    m = copy.deepcopy(model)
    params = list(m.parameters())
    terms = per_sample_terms(m, x, y)
    if mask is None:
        g = torch.autograd.grad(terms.sum(), params)
        g_head = [torch.zeros_like(p) for p in params]
    else:
        g = torch.autograd.grad(terms[mask].sum(), params, retain_graph=True)
        g_head = torch.autograd.grad(terms[~mask].sum(), params)
    norm = math.sqrt(sum(float((gi ** 2).sum()) for gi in g))
    e = [gi * rho / (norm + 1e-16) for gi in g]
    with torch.no_grad():
        for p, ei in zip(params, e):
            p.add_(ei)
    terms2 = per_sample_terms(m, x, y)
    g2 = torch.autograd.grad((terms2 if mask is None else terms2[mask]).sum(), params)
    with torch.no_grad():
        for p, ei in zip(params, e):
            p.sub_(ei)  # restored
        for p, a, b in zip(params, g2, g_head):
            p.sub_(lr * (a + b))
    return [p.detach() for p in params], e


def test_one_sam_step_equals_the_two_pass_reference():
    model, x, y = tiny_setup()
    want, moves = reference_sam(model, x, y, rho=0.3, lr=0.1)
    assert all(float(e.abs().max()) > 0 for e in moves)  # the perturbation was not nothing
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    calls = []

    def closure():
        calls.append([p.detach().clone() for p in model.parameters()])
        return per_sample_terms(model, x, y)

    SamStep(0.3)(model, opt, closure, y)
    assert len(calls) == 2
    # the second pass saw w + e, and the weights were restored before the step
    for w0, w1, e in zip(calls[0], calls[1], moves):
        assert torch.allclose(w1, w0 + e, atol=1e-15)
    for got, exp in zip(model.parameters(), want):
        assert torch.allclose(got, exp, atol=1e-14)


def test_imbsam_perturbs_with_the_tail_loss_only():
    model, x, y = tiny_setup(1)
    counts = [30, 5, 5]  # threshold 10: class 0 is head, classes 1 and 2 tail
    is_tail = tail_classes(counts, 10)
    assert is_tail == [False, True, True]
    mask = torch.tensor(is_tail)[y]
    want, moves = reference_sam(model, x, y, rho=0.2, lr=0.1, mask=mask)
    sam_want, sam_moves = reference_sam(model, x, y, rho=0.2, lr=0.1)
    # the tail-only perturbation differs from SAM's whole-batch one
    assert not all(torch.allclose(a, b) for a, b in zip(moves, sam_moves))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    calls = []

    def closure():
        calls.append([p.detach().clone() for p in model.parameters()])
        return per_sample_terms(model, x, y)

    ImbSamStep(0.2, is_tail)(model, opt, closure, y)
    for w0, w1, e in zip(calls[0], calls[1], moves):
        assert torch.allclose(w1, w0 + e, atol=1e-15)
    for got, exp in zip(model.parameters(), want):
        assert torch.allclose(got, exp, atol=1e-14)


def test_imbsam_without_tail_samples_is_a_plain_step():
    model, x, y = tiny_setup(2)
    plain = copy.deepcopy(model)
    ImbSamStep(0.2, [False, False, False])(model, torch.optim.SGD(model.parameters(), lr=0.1),
                                           lambda: per_sample_terms(model, x, y), y)
    opt = torch.optim.SGD(plain.parameters(), lr=0.1)
    per_sample_terms(plain, x, y).sum().backward()
    opt.step()
    for a, b in zip(model.parameters(), plain.parameters()):
        assert torch.allclose(a, b, atol=1e-15)


def forwards_in_one_step(name, sam):
    cfg = load_config(None, [f"method.name={name}", f"optim.sam={sam}", "train.epochs=2",
                             "mfm.meta_interval=1" if name == "mfm" else "seed=0"])
    m = create_method(cfg, [6, 3, 2])
    torch.manual_seed(0)
    model = create_model("resnet_tiny", num_classes=3, in_channels=1)
    y = torch.tensor([0] * 6 + [1] * 3 + [2] * 2)
    x = torch.randn(11, 1, 8, 8)
    m.attach(model=model, meta_x=x[:6], meta_y=torch.tensor([0, 0, 1, 1, 2, 2]),
             device=torch.device("cpu"))
    forwards = []
    handle = model.register_forward_hook(lambda *a: forwards.append(1))
    out = m.training_step(model, torch.optim.SGD(model.parameters(), lr=0.05), x, y, epoch=0,
                          step=0)
    handle.remove()
    assert torch.isfinite(out["loss"])
    return len(forwards)


@pytest.mark.parametrize("name", ["ce", "mwnet", "mfm"])
def test_every_method_takes_the_sam_step(name):
    """SAM wraps the real step of plain and meta methods: one more forward per step (the
    second pass at w + e); the meta methods' virtual step is unchanged."""
    assert forwards_in_one_step(name, "sam") == forwards_in_one_step(name, "none") + 1


# -- MaxNorm ------------------------------------------------------------------------------------
def test_maxnorm_rows_never_exceed_the_radius_after_a_step():
    torch.manual_seed(0)
    model = create_model("resnet_tiny", num_classes=5, in_channels=1)
    head = model.classifier
    with torch.no_grad():
        head.weight.mul_(torch.linspace(0.5, 3.0, 5).unsqueeze(1))
    norms0 = torch.linalg.vector_norm(head.weight.detach(), dim=1)
    mn = MaxNorm(model, 0.1)
    radius = float(norms0.min() + 0.1 * (norms0.max() - norms0.min()))
    assert float(mn.radius) == pytest.approx(radius)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 5, (16,))
    for _ in range(5):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        before = head.weight.detach().clone()
        mn.apply()
        norms = torch.linalg.vector_norm(head.weight.detach(), dim=1)
        assert float(norms.max()) <= radius * (1 + 1e-6)
        inside = torch.linalg.vector_norm(before, dim=1) <= radius
        assert torch.equal(head.weight[inside], before[inside])  # inside rows untouched
        # rows outside keep their direction
        out = ~inside
        cos = F.cosine_similarity(head.weight[out], before[out], dim=1)
        assert torch.allclose(cos, torch.ones_like(cos), atol=1e-6)
