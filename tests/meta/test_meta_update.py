"""One meta update through the methods' real training step moves φ by exactly −meta_lr × the
hypergradient (plain SGD as the meta optimiser), with the hypergradient written out here by
hand: the network through ``torch.func.functional_call``, the weighting net / modulation from
their definitions, and ``torch.autograd.grad`` (float64, resnet_tiny)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tiny import tiny_problem
from torch.func import functional_call

from mfm.models import set_modulation

META_LR = 0.5  # large, so that the step is far above the 1e-10 tolerance


def buffers(model):
    return {n: b.clone() for n, b in model.named_buffers()}


def one_step_hypergradient(model, train_loss, xm, ym, lr, phi):
    """∇_φ L_meta(ŵ(φ)) with ŵ = w − lr ∇_w L_tr(w; φ) over every parameter of the network."""
    params = dict(model.named_parameters())
    grads = torch.autograd.grad(train_loss(params), list(params.values()), create_graph=True)
    updated = {n: p - lr * g for (n, p), g in zip(params.items(), grads)}
    meta = F.cross_entropy(functional_call(model, (updated, buffers(model)), (xm,)), ym)
    return [torch.zeros_like(p) if g is None else g
            for p, g in zip(phi, torch.autograd.grad(meta, phi, allow_unused=True))]


def mwnet_hypergradient(method, model, x, y, xm, ym, lr):
    """Meta-Weight-Net: L_tr = mean_i V(ℓ_i) ℓ_i, V(ℓ) = sigmoid(W2 relu(W1 ℓ + b1) + b2) on the
    detached loss (the defaults: virtual_weighting=mean, detach_virtual_loss=true)."""
    lin1, lin2 = method.meta_module.net[0], method.meta_module.net[2]

    def train_loss(params):
        cost = F.cross_entropy(functional_call(model, (params, buffers(model)), (x,)), y,
                               reduction="none")
        h = torch.relu(cost.detach()[:, None] @ lin1.weight.T + lin1.bias)
        v = torch.sigmoid(h @ lin2.weight.T + lin2.bias).squeeze(1)
        return (v * cost).mean()

    phi = [lin1.weight, lin1.bias, lin2.weight, lin2.bias]
    return phi, one_step_hypergradient(model, train_loss, xm, ym, lr, phi)


def mfm_hypergradient(method, model, x, y, xm, ym, lr):
    """MFM, free scale at the penultimate site: h̃ = exp(bound · tanh(u)) ⊙ h on the training
    forward, a plain meta forward (apply=train), cross-entropy both (base_loss=ce)."""
    (u,) = method.meta_params
    bound = method.opts.bound

    def scale(site, h):
        return h * torch.exp(bound * torch.tanh(u)) if site.kind == "penultimate" else h

    def train_loss(params):
        set_modulation(model, scale)
        try:
            return F.cross_entropy(functional_call(model, (params, buffers(model)), (x,)), y)
        finally:
            set_modulation(model, None)

    try:
        return [u], one_step_hypergradient(model, train_loss, xm, ym, lr, [u])
    finally:
        set_modulation(model, method._modulate)  # give the sites back to the method


CASES = {
    # plain SGD: no momentum, no Nesterov, no weight decay
    "mwnet": ("mwnet", mwnet_hypergradient,
              ["mwnet.meta_optimizer=sgd", f"mwnet.meta_lr={META_LR}", "mwnet.meta_momentum=0",
               "mwnet.meta_nesterov=false", "mwnet.meta_weight_decay=0"]),
    # mfm's SGD has momentum 0.9 (no Nesterov, no weight decay): its first step is plain SGD's
    "mfm": ("mfm", mfm_hypergradient,
            ["mfm.meta_optimizer=sgd", f"mfm.meta_lr={META_LR}", "mfm.modulator=free",
             "mfm.sites=penultimate", "mfm.form=scale", "mfm.base_loss=ce",
             "mfm.virtual_params=all", "mfm.meta_interval=1"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_meta_step_moves_phi_by_minus_lr_times_the_hypergradient(case):
    name, hypergradient, overrides = CASES[case]
    cfg, method, model, x, y, xm, ym = tiny_problem(name, overrides, perturbed=True)
    assert type(method.meta_optimizer) is torch.optim.SGD
    lr = cfg.optim.lr
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    phi, g = hypergradient(method, model, x, y, xm, ym, lr)
    assert [id(p) for p in phi] == [id(p) for p in method.meta_params]
    assert max(float(t.abs().max()) for t in g) * META_LR > 1e-4  # a step worth measuring
    before = [p.detach().clone() for p in phi]
    out = method.training_step(model, optimizer, x, y, epoch=0, step=0)
    assert "meta_loss" in out  # this step was a meta step
    for p, b, grad in zip(phi, before, g):
        torch.testing.assert_close(p.detach() - b, -META_LR * grad, rtol=0, atol=1e-10)
