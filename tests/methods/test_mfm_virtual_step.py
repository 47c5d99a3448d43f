"""mfm.virtual_step=mirror: the virtual step is the real optimiser's SGD step (momentum from its
current buffers, nesterov, weight decay), differentiable in the gradient; sgd is unchanged."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from tiny import tiny_problem

from mfm.config import ConfigError, config_to_dict, load_config
from mfm.engine.training import build_optimizer
from mfm.meta.bilevel import buffer_copies, virtual_step

LR = 0.1


def make(overrides: list[str], dtype=torch.float64):
    cfg, method, model, x, y, xm, ym = tiny_problem("mfm", [f"optim.lr={LR}", *overrides],
                                                    dtype=dtype, perturbed=True)
    return cfg, method, model, build_optimizer(cfg, model), x, y, xm, ym


def warm_up(model, optimizer, x, y, steps=2):
    """Real optimiser steps on a plain loss, so that momentum buffers exist."""
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def virtual(method, model, optimizer, x, y, xm, ym):
    """ŵ as the method's training step computes it (φ as it is), and L_meta(ŵ)."""
    train_loss, meta_loss, _, _ = method.closures(model, x, y, xm, ym, epoch=0)
    wd, momentum, nesterov, bufs = method.virtual_sgd(model, optimizer)
    updated, _, grads = virtual_step(dict(model.named_parameters()), buffer_copies(model),
                                     train_loss, optimizer.param_groups[0]["lr"],
                                     method.virtual_names, wd, momentum=momentum,
                                     nesterov=nesterov, momentum_buffers=bufs)
    return updated, dict(zip(method.virtual_names, grads)), meta_loss(updated,
                                                                      buffer_copies(model))


def test_default_is_sgd_and_mirror_is_a_choice():
    cfg = load_config(None, ["method.name=mfm"])
    assert cfg.mfm.virtual_step == "sgd"
    mirror = load_config(None, ["method.name=mfm", "mfm.virtual_step=mirror"])
    assert "virtual_weight_decay" not in config_to_dict(mirror)["mfm"]
    assert "virtual_weight_decay" in config_to_dict(cfg)["mfm"]
    # mirror always takes the optimiser's weight decay: the key means nothing there
    with pytest.raises(ConfigError, match="mfm.virtual_weight_decay: applies only to "
                                          "mfm.virtual_step=sgd"):
        load_config(None, ["method.name=mfm", "mfm.virtual_step=mirror",
                           "mfm.virtual_weight_decay=true"])
    with pytest.raises(ConfigError, match="mfm.virtual_step"):
        load_config(None, ["method.name=mfm", "mfm.virtual_step=adam"])


@pytest.mark.parametrize("momentum", ["0", "0.9"])
def test_mirror_without_buffers_equals_sgd_with_weight_decay(momentum):
    """No momentum (or no buffer yet, nesterov off: torch's first step is buf = g): plain SGD
    with the optimiser's weight decay, bit for bit."""
    over = [f"optim.momentum={momentum}", "optim.nesterov=false"]
    *_, method, model, optimizer, x, y, xm, ym = make([*over, "mfm.virtual_step=mirror"])
    assert method.virtual_sgd(model, optimizer)[3] in (None, {})
    mirrored, _, mloss = virtual(method, model, optimizer, x, y, xm, ym)
    _, method2, model2, optimizer2, *_ = make([*over, "mfm.virtual_weight_decay=true"])
    plain, _, ploss = virtual(method2, model2, optimizer2, x, y, xm, ym)
    for n in method.virtual_names:
        assert torch.equal(mirrored[n], plain[n]), n
    assert torch.equal(mloss, ploss)


@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("which", ["all", "fc"])
def test_mirror_steps_like_the_real_optimiser(nesterov, which):
    """With momentum buffers present, ŵ is what torch.optim.SGD.step() makes of the same
    gradient (φ held fixed) from the same state."""
    cfg, method, model, optimizer, x, y, xm, ym = make(
        ["mfm.virtual_step=mirror", f"optim.nesterov={str(nesterov).lower()}",
         "optim.weight_decay=0.01", f"mfm.virtual_params={which}"])
    warm_up(model, optimizer, x, y)
    wd, momentum, nest, bufs = method.virtual_sgd(model, optimizer)
    assert (wd, momentum, nest) == (0.01, cfg.optim.momentum, nesterov)
    assert bufs is not None and sorted(bufs) == sorted(method.virtual_names)
    updated, grads, _ = virtual(method, model, optimizer, x, y, xm, ym)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for n, p in model.named_parameters():
        p.grad = grads[n].detach().clone() if n in grads else torch.zeros_like(p)
    optimizer.step()
    for n, p in model.named_parameters():
        if n in method.virtual_names:
            torch.testing.assert_close(updated[n].detach(), p.detach(), atol=1e-6, rtol=0)
            assert not torch.equal(before[n], p.detach())
        else:  # not stepped virtually: ŵ holds the parameter itself
            assert updated[n] is p


def test_mirror_hypergradient_is_finite_exact_and_not_sgds():
    *_, method, model, optimizer, x, y, xm, ym = make(["mfm.virtual_step=mirror",
                                                        "mfm.modulator=free", "mfm.sites=bn",
                                                        "mfm.form=scale_shift"])
    warm_up(model, optimizer, x, y)
    params = method.meta_params

    def objective():
        return virtual(method, model, optimizer, x, y, xm, ym)[2]

    grads = torch.autograd.grad(objective(), params, allow_unused=True)
    flat = torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)
                      for p, g in zip(params, grads)])
    assert torch.isfinite(flat).all() and flat.abs().max() > 0
    # central differences on the largest coordinates (float64): the buffers are constants
    flat_p = [p for p in params]
    sizes = [p.numel() for p in flat_p]
    for i in torch.topk(flat.abs(), 6).indices.tolist():
        k, j = 0, i
        while j >= sizes[k]:
            j, k = j - sizes[k], k + 1
        p = flat_p[k].view(-1)
        eps = 1e-6
        with torch.no_grad():
            p[j] += eps
        up = float(objective().detach())
        with torch.no_grad():
            p[j] -= 2 * eps
        down = float(objective().detach())
        with torch.no_grad():
            p[j] += eps
        fd = (up - down) / (2 * eps)
        assert abs(fd - float(flat[i])) <= 1e-5 * max(1.0, abs(fd)), (i, fd, float(flat[i]))
    # the same state under the plain virtual step gives another hypergradient
    method.opts = dataclasses.replace(method.opts, virtual_step="sgd")
    sgd = torch.autograd.grad(objective(), params, allow_unused=True)
    flat_sgd = torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)
                          for p, g in zip(params, sgd)])
    assert torch.isfinite(flat_sgd).all()
    assert not torch.allclose(flat, flat_sgd, rtol=1e-3, atol=0)


def test_training_step_passes_the_real_buffers(monkeypatch):
    """The engine's path: training_step hands bilevel_update the optimiser's momentum settings
    and buffers (after the first real step), and only for the virtually stepped names."""
    import mfm.methods.mfm as mfm_module

    *_, method, model, optimizer, x, y, _, _ = make(["mfm.virtual_step=mirror",
                                                      "mfm.virtual_params=last_stage",
                                                      "mfm.meta_interval=1"],
                                                     dtype=torch.float32)
    model.float()
    method.meta_module.float()
    method.meta_x = method.meta_x.float()
    seen = []
    real = mfm_module.bilevel_update

    def spy(*args, **kwargs):
        seen.append({k: kwargs[k] for k in ("momentum", "nesterov", "weight_decay",
                                            "momentum_buffers")})
        return real(*args, **kwargs)

    monkeypatch.setattr(mfm_module, "bilevel_update", spy)
    x = x.float()
    for step in range(2):
        out = method.training_step(model, optimizer, x, y, epoch=0, step=step)
        assert torch.isfinite(out["loss"])
    assert seen[0]["momentum_buffers"] == {}  # the optimiser had not stepped yet
    bufs = seen[1]["momentum_buffers"]
    assert sorted(bufs) == sorted(method.virtual_names)
    assert all(n.startswith(("layer3.", "classifier.")) for n in bufs)
    assert seen[1]["momentum"] == 0.9 and seen[1]["nesterov"] is True
    assert seen[1]["weight_decay"] == 5e-4
