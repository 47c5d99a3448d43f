"""The bilevel step: exact hypergradients, CE equivalence before meta updates, BN statistics
untouched, gradients from the right losses."""

from __future__ import annotations

import pytest
import torch
from tiny import COUNTS, tiny_problem

from mfm.config import load_config
from mfm.meta.bilevel import bilevel_update, buffer_copies, virtual_step
from mfm.methods import create_method
from mfm.models import create_model

LR = 0.1


def hyper_objective(method, model, x, y, xm, ym, wd=0.0):
    closures = method.closures(model, x, y, xm, ym, **({"epoch": 0} if method.name == "mfm"
                                                        else {}))
    train_loss, meta_loss = closures[0], closures[1]
    reg = closures[2] if len(closures) > 2 else None
    params = dict(model.named_parameters())
    updated, _, _ = virtual_step(params, buffer_copies(model), train_loss, LR,
                                 method.virtual_names, wd)
    loss = meta_loss(updated, buffer_copies(model))
    return loss + reg() if reg is not None else loss


CASES = [
    ("mfm", ["mfm.modulator=free", "mfm.sites=bn", "mfm.form=scale_shift"]),
    ("mfm", ["mfm.modulator=free", "mfm.sites=stage", "mfm.apply=everywhere"]),
    ("mfm", ["mfm.modulator=free", "mfm.sites=bn", "mfm.reg=0.1", "mfm.virtual_params=last_stage",
             "mfm.virtual_weight_decay=true"]),
    ("mfm", ["mfm.modulator=free_per_class"]),
    ("mfm", []),  # network, loss_freq, penultimate scale on balanced softmax: the default
    ("mfm", ["mfm.base_loss=ce"]),
    ("mfm", ["mfm.inputs=features", "mfm.form=scale_shift"]),
    ("mfm", ["mfm.inputs=features", "mfm.virtual_params=fc", "mfm.base_loss=ce"]),
    ("mwnet", []),
]


@pytest.mark.parametrize("name, overrides", CASES, ids=[" ".join(c[1]) or c[0] for c in CASES])
def test_hypergradient_matches_finite_differences(name, overrides):
    cfg, method, model, x, y, xm, ym = tiny_problem(name, overrides, perturbed=True)
    wd = cfg.optim.weight_decay if "mfm.virtual_weight_decay=true" in overrides else 0.0
    params = method.meta_params
    grads = torch.autograd.grad(hyper_objective(method, model, x, y, xm, ym, wd), params,
                                allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
    flat_g = torch.cat([g.reshape(-1) for g in grads])
    assert flat_g.abs().max() > 0, "hypergradient is identically zero"
    # central differences on up to 24 coordinates, chosen where the gradient is largest
    # plus a few random ones
    picks = list(torch.topk(flat_g.abs(), min(16, flat_g.numel())).indices.tolist())
    g = torch.Generator().manual_seed(2)
    picks += torch.randint(0, flat_g.numel(), (8,), generator=g).tolist()
    offsets = [0]
    for p in params:
        offsets.append(offsets[-1] + p.numel())
    eps = 1e-6
    fd, an = [], []
    for i in picks:
        k = max(j for j in range(len(params)) if offsets[j] <= i)
        view = params[k].data.view(-1)
        old = view[i - offsets[k]].item()
        view[i - offsets[k]] = old + eps  # .data: no autograd record of the nudge
        lp = hyper_objective(method, model, x, y, xm, ym, wd).item()
        view[i - offsets[k]] = old - eps
        lm = hyper_objective(method, model, x, y, xm, ym, wd).item()
        view[i - offsets[k]] = old
        fd.append((lp - lm) / (2 * eps))
        an.append(flat_g[i].item())
    fd_t, an_t = torch.tensor(fd, dtype=torch.float64), torch.tensor(an, dtype=torch.float64)
    rel = (fd_t - an_t).norm() / fd_t.norm()
    assert rel < 1e-5, f"relative error {rel:.2e}"


@pytest.mark.parametrize("base, overrides", [
    ("ce", []), ("ce", ["mfm.modulator=free", "mfm.sites=bn", "mfm.form=scale_shift"]),
    ("balanced_softmax", []),
])
def test_mfm_before_meta_start_equals_its_base_loss_exactly(base, overrides):
    def run(name, extra):
        cfg = load_config(None, [f"method.name={name}", "model.name=resnet_tiny", "train.epochs=4",
                                 *extra])
        torch.manual_seed(0)
        method = create_method(cfg, COUNTS)
        model = create_model("resnet_tiny", num_classes=3, in_channels=1)
        if name == "mfm":
            method.attach(model=model, meta_x=torch.randn(6, 1, 8, 8),
                          meta_y=torch.tensor([0, 0, 1, 1, 2, 2]), device=torch.device("cpu"))
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True,
                              weight_decay=5e-4)
        g = torch.Generator().manual_seed(3)
        y = torch.tensor(sum(([c] * n for c, n in enumerate(COUNTS)), []))
        losses = []
        for step in range(3):
            x = torch.randn(len(y), 1, 8, 8, generator=g)
            losses.append(method.training_step(model, opt, x, y, epoch=0, step=step)["loss"])
        return model, losses

    ce_model, ce_losses = run(base, [])
    mfm_model, mfm_losses = run("mfm", ["mfm.meta_start_epoch=2", f"mfm.base_loss={base}",
                                        *overrides])
    assert [float(a) for a in ce_losses] == [float(b) for b in mfm_losses]
    for (n, a), (_, b) in zip(ce_model.state_dict().items(), mfm_model.state_dict().items()):
        assert torch.equal(a, b), n


@pytest.mark.parametrize("name, overrides", [("mfm", ["mfm.modulator=free", "mfm.sites=bn"]),
                                             ("mfm", []), ("mwnet", [])])
def test_virtual_and_meta_pass_leave_network_untouched(name, overrides):
    cfg, method, model, x, y, xm, ym = tiny_problem(name, overrides, dtype=torch.float32,
                                                   perturbed=True)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    phi_before = [p.detach().clone() for p in method.meta_params]
    closures = method.closures(model, x, y, xm, ym, **({"epoch": 0} if name == "mfm" else {}))
    bilevel_update(model, names=method.virtual_names, train_loss=closures[0],
                   meta_loss=closures[1], lr=LR, meta_params=method.meta_params,
                   meta_optimizer=method.meta_optimizer)
    after = model.state_dict()
    for k in before:  # BN running statistics and every weight are unchanged
        assert torch.equal(before[k], after[k]), k
    assert any("running_mean" in k for k in before)
    # nothing from L_meta reached the network's .grad
    assert all(p.grad is None for p in model.parameters())
    # ... and the modulation did move
    assert any(not torch.equal(a, p.detach()) for a, p in zip(phi_before, method.meta_params))


def test_real_step_gradients_come_from_training_loss_only():
    cfg, method, model, x, y, xm, ym = tiny_problem(
        "mfm", ["mfm.modulator=free", "mfm.sites=bn", "mfm.form=scale_shift",
                "mfm.meta_start_epoch=3", "optim.weight_decay=0"], perturbed=True)
    # expected: ∇_w L_tr(w; φ) with φ constant, computed independently of training_step
    train_loss = method.closures(model, x, y, xm, ym, epoch=0)[0]
    params = dict(model.named_parameters())
    expected = torch.autograd.grad(train_loss(params, buffer_copies(model)), list(params.values()))
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    method.training_step(model, opt, x, y, epoch=0, step=0)  # before meta_start: real step only
    for (n, p), e in zip(model.named_parameters(), expected):
        torch.testing.assert_close(p.grad, e, rtol=1e-10, atol=1e-12, msg=n)
    assert all(p.grad is None for p in method.meta_params)  # φ learns nothing from L_tr
