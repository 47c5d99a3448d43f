"""Meta-Weight-Net's four choices where the official class-imbalance code differs from ours
(mwnet.meta_optimizer, virtual_weighting, detach_virtual_loss, lr_lead_epochs) and
mwnet.preset=official: validation, resolution, and what each does to the step."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from tiny import COUNTS, fit_tiny, tiny_problem

from mfm.config import (
    MWNET_OFFICIAL,
    ConfigError,
    config_from_dict,
    config_to_dict,
    load_config,
)
from mfm.engine.schedule import make_scheduler
from mfm.meta.bilevel import buffer_copies, functional_forward, virtual_step
from mfm.methods import create_method
from mfm.methods.mwnet import MetaWeightNet, normalise
from mfm.schedule import milestone_epochs
from mfm.store.hashing import config_hash

LR = 0.1
OFFICIAL = {f"mwnet.{k}": v for k, v in MWNET_OFFICIAL.items()}


def mwnet(*overrides: str):
    return load_config(None, ["method.name=mwnet", *overrides])


def make(overrides, name="mwnet", dtype=torch.float64, seed=0):
    return tiny_problem(name, overrides, dtype=dtype, seed=seed, perturbed=True)


def hyper_objective(method, model, x, y, xm, ym, train_loss=None):
    closures = method.closures(model, x, y, xm, ym)
    params = dict(model.named_parameters())
    updated, _, _ = virtual_step(params, buffer_copies(model), train_loss or closures[0], LR,
                                 method.virtual_names)
    return closures[1](updated, buffer_copies(model))


def meta_grad(method, model, x, y, xm, ym, train_loss=None):
    loss = hyper_objective(method, model, x, y, xm, ym, train_loss)
    grads = torch.autograd.grad(loss, method.meta_params, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)
                      for p, g in zip(method.meta_params, grads)])


def by_hand_weights(vnet, cost):
    """V(ℓ) written out from the MLP's weights: sigmoid(W2 relu(W1 ℓ + b1) + b2)."""
    lin1, lin2 = vnet.net[0], vnet.net[2]
    h = torch.relu(cost[:, None] @ lin1.weight.T + lin1.bias)
    return torch.sigmoid(h @ lin2.weight.T + lin2.bias).squeeze(1)


# -- config ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("override, key, text", [
    ("mwnet.meta_optimizer=rmsprop", "mwnet.meta_optimizer", "adam | sgd"),
    ("mwnet.virtual_weighting=sum", "mwnet.virtual_weighting", "mean | normalized"),
    ("mwnet.detach_virtual_loss=maybe", "mwnet.detach_virtual_loss", "expected bool"),
    ("mwnet.lr_lead_epochs=-1", "mwnet.lr_lead_epochs", ">= 0"),
    ("mwnet.lr_lead_epochs=0.5", "mwnet.lr_lead_epochs", "expected int"),
    ("mwnet.meta_momentum=1", "mwnet.meta_momentum", "< 1"),
    ("mwnet.meta_momentum=-0.1", "mwnet.meta_momentum", ">= 0"),
    ("mwnet.meta_nesterov=2", "mwnet.meta_nesterov", "expected bool"),
    ("mwnet.preset=paper", "mwnet.preset", "ours | official"),
])
def test_each_key_validates(override, key, text):
    with pytest.raises(ConfigError) as e:
        mwnet(override)
    assert e.value.key == key and text in str(e.value) and "\n" not in str(e.value)


def test_nesterov_needs_momentum_with_sgd():
    with pytest.raises(ConfigError) as e:
        mwnet("mwnet.meta_optimizer=sgd", "mwnet.meta_momentum=0")
    assert e.value.key == "mwnet.meta_nesterov"
    cfg = mwnet("mwnet.meta_optimizer=sgd", "mwnet.meta_momentum=0", "mwnet.meta_nesterov=false")
    assert cfg.mwnet.meta_momentum == 0.0
    mwnet("mwnet.meta_momentum=0")  # adam: momentum and nesterov mean nothing


@pytest.mark.parametrize("override", ["mwnet.preset=official", "mwnet.lr_lead_epochs=1",
                                      "mwnet.virtual_weighting=normalized"])
def test_the_section_applies_only_to_mwnet(override):
    with pytest.raises(ConfigError) as e:
        load_config(None, ["method.name=ce", override])
    assert e.value.key == override.partition("=")[0] and "applies only" in str(e.value)
    assert "mwnet" not in config_to_dict(load_config(None, ["method.name=ce"]))


def test_defaults_are_ours():
    w = mwnet().mwnet
    assert (w.preset, w.meta_optimizer, w.meta_lr, w.meta_weight_decay, w.virtual_weighting,
            w.detach_virtual_loss, w.lr_lead_epochs) == ("ours", "adam", 1e-3, 1e-4, "mean",
                                                          True, 0)
    assert (w.meta_momentum, w.meta_nesterov) == (0.9, True)
    assert mwnet("mwnet.preset=ours") == mwnet()


def test_official_preset_resolves_to_the_official_values():
    cfg = mwnet("mwnet.preset=official")
    w = cfg.mwnet
    assert {k: getattr(w, k) for k in MWNET_OFFICIAL} == MWNET_OFFICIAL
    assert MWNET_OFFICIAL == {"meta_optimizer": "sgd", "meta_lr": 1e-5, "meta_momentum": 0.9,
                              "meta_nesterov": True, "meta_weight_decay": 5e-4,
                              "virtual_weighting": "normalized", "detach_virtual_loss": False,
                              "lr_lead_epochs": 1}
    # keys the official code has no opinion on keep ours
    assert (w.hidden, w.meta_interval, w.virtual_params) == (100, 1, "all")
    # the recorded (resolved) config holds the values trained with
    d = config_to_dict(cfg)["mwnet"]
    assert d["preset"] == "official" and {k: d[k] for k in MWNET_OFFICIAL} == MWNET_OFFICIAL


def test_an_explicit_key_wins_over_the_preset():
    cfg = mwnet("mwnet.preset=official", "mwnet.detach_virtual_loss=true", "mwnet.meta_lr=1e-4")
    assert cfg.mwnet.detach_virtual_loss is True and cfg.mwnet.meta_lr == 1e-4
    assert cfg.mwnet.virtual_weighting == "normalized" and cfg.mwnet.lr_lead_epochs == 1
    # the same from a TOML-shaped dict, and with the override given before the preset
    d = config_from_dict({"method": {"name": "mwnet"},
                          "mwnet": {"lr_lead_epochs": 0, "preset": "official"}})
    assert d.mwnet.lr_lead_epochs == 0 and d.mwnet.meta_optimizer == "sgd"
    o = mwnet("mwnet.meta_optimizer=adam", "mwnet.preset=official")
    assert o.mwnet.meta_optimizer == "adam" and o.mwnet.meta_lr == 1e-5


@pytest.mark.parametrize("overrides", [
    [], ["mwnet.preset=official"], ["mwnet.preset=official", "mwnet.detach_virtual_loss=true"],
    ["mwnet.preset=ours", "mwnet.lr_lead_epochs=2"],
])
def test_resolving_a_resolved_config_changes_nothing(overrides):
    cfg = mwnet(*overrides)
    d = config_to_dict(cfg)
    again = config_from_dict(d)
    assert again == cfg and config_to_dict(again) == d
    assert config_hash(config_to_dict(again)) == config_hash(d)


# -- the meta optimiser ----------------------------------------------------------------------------
def test_adam_is_the_default_meta_optimiser():
    _, method, *_ = make([])
    opt = method.meta_optimizer
    assert type(opt) is torch.optim.Adam
    g = opt.param_groups[0]
    assert (g["lr"], g["weight_decay"]) == (1e-3, 1e-4)


def test_sgd_meta_optimiser_is_nesterov_sgd_with_the_configured_values():
    _, method, *_ = make(["mwnet.meta_optimizer=sgd", "mwnet.meta_lr=0.01",
                          "mwnet.meta_weight_decay=0.002"])
    opt = method.meta_optimizer
    assert type(opt) is torch.optim.SGD
    g = opt.param_groups[0]
    assert (g["lr"], g["weight_decay"], g["momentum"], g["nesterov"]) == (0.01, 0.002, 0.9, True)
    _, official, *_ = make(["mwnet.preset=official"])
    g = official.meta_optimizer.param_groups[0]
    assert type(official.meta_optimizer) is torch.optim.SGD
    assert (g["lr"], g["weight_decay"], g["momentum"], g["nesterov"]) == (1e-5, 5e-4, 0.9, True)
    _, plain, *_ = make(["mwnet.meta_optimizer=sgd", "mwnet.meta_momentum=0.5",
                         "mwnet.meta_nesterov=false"])
    g = plain.meta_optimizer.param_groups[0]
    assert (g["momentum"], g["nesterov"]) == (0.5, False)


def test_mfm_sgd_meta_optimiser_is_unchanged():
    _, method, *_ = make(["mfm.meta_optimizer=sgd", "mfm.meta_lr=0.02"], name="mfm")
    opt = method.meta_optimizer
    assert type(opt) is torch.optim.SGD
    g = opt.param_groups[0]
    assert (g["lr"], g["weight_decay"], g["momentum"], g["nesterov"]) == (0.02, 0.0, 0.9, False)


# -- virtual_weighting -----------------------------------------------------------------------------
@pytest.mark.parametrize("weighting", ["mean", "normalized"])
def test_virtual_loss_against_a_hand_computation(weighting):
    _, method, model, x, y, xm, ym = make([f"mwnet.virtual_weighting={weighting}"])
    train_loss = method.closures(model, x, y, xm, ym)[0]
    params = dict(model.named_parameters())
    got = train_loss(params, buffer_copies(model))
    twin = copy.deepcopy(model)  # train mode: the same batch statistics as the functional call
    cost = F.cross_entropy(twin(x), y, reduction="none").detach()
    v = by_hand_weights(method.meta_module, cost)
    want = (v * cost).sum() / v.sum() if weighting == "normalized" else (v * cost).mean()
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0)
    # the denominator is part of the graph: ∇_θ of both agree
    g_got = torch.autograd.grad(got, method.meta_params)
    g_want = torch.autograd.grad(want, method.meta_params)
    for a, b in zip(g_got, g_want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-14)


def test_normalise_keeps_weights_whose_sum_is_zero():
    w = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    c = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    out = normalise(w)
    assert torch.equal(out, torch.zeros(4, dtype=torch.float64))
    (g,) = torch.autograd.grad((out * c).sum(), w)
    assert torch.equal(g, c)  # finite: the unnormalised weights, as the official code
    v = torch.tensor([0.5, 1.5], dtype=torch.float64)
    assert torch.equal(normalise(v), v / 2.0)


# -- detach_virtual_loss ---------------------------------------------------------------------------
def test_detached_virtual_loss_reproduces_todays_meta_gradient():
    _, method, model, x, y, xm, ym = make([])
    vnet = method.meta_module

    def todays_train_loss(params, buffers):  # the step as it was before these options
        cost = F.cross_entropy(functional_forward(model, params, buffers, x), y,
                               reduction="none")
        weights = torch.sigmoid(vnet.net(cost.detach().unsqueeze(1))).squeeze(1)
        return (cost * weights).mean()

    now = meta_grad(method, model, x, y, xm, ym)
    before = meta_grad(method, model, x, y, xm, ym, todays_train_loss)
    assert now.abs().max() > 0 and torch.equal(now, before)


def test_undetached_virtual_loss_changes_the_meta_gradient():
    _, kept, model, x, y, xm, ym = make(["mwnet.detach_virtual_loss=true"])
    _, flows, model2, *_ = make(["mwnet.detach_virtual_loss=false"])
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)  # the same problem, only the option differs
    g_kept = meta_grad(kept, model, x, y, xm, ym)
    g_flows = meta_grad(flows, model2, x, y, xm, ym)
    assert torch.isfinite(g_kept).all() and torch.isfinite(g_flows).all()
    assert not torch.allclose(g_kept, g_flows, rtol=1e-6, atol=0)


@pytest.mark.parametrize("overrides", [["mwnet.preset=official"],
                                       ["mwnet.detach_virtual_loss=false"],
                                       ["mwnet.virtual_weighting=normalized"]])
def test_hypergradient_matches_finite_differences(overrides):
    _, method, model, x, y, xm, ym = make(overrides)
    flat_g = meta_grad(method, model, x, y, xm, ym)
    picks = torch.topk(flat_g.abs(), 12).indices.tolist()
    picks += torch.randint(0, flat_g.numel(), (6,), generator=torch.Generator().manual_seed(2))\
        .tolist()
    flat_p = [p.data.view(-1) for p in method.meta_params]
    offsets = [0]
    for p in flat_p:
        offsets.append(offsets[-1] + p.numel())
    eps, fd = 1e-6, []
    for i in picks:
        k = max(j for j in range(len(flat_p)) if offsets[j] <= i)
        old = flat_p[k][i - offsets[k]].item()
        values = []
        for nudge in (eps, -eps):
            flat_p[k][i - offsets[k]] = old + nudge
            values.append(hyper_objective(method, model, x, y, xm, ym).item())
        flat_p[k][i - offsets[k]] = old
        fd.append((values[0] - values[1]) / (2 * eps))
    fd_t = torch.tensor(fd, dtype=torch.float64)
    rel = (fd_t - flat_g[picks]).norm() / fd_t.norm()
    assert rel < 1e-5, f"relative error {rel:.2e}"


# -- lr_lead_epochs --------------------------------------------------------------------------------
SCHEDULE = ["train.epochs=10", "optim.warmup_epochs=2", "optim.milestones=0.5,0.8",
            "optim.lr_decay=0.1"]


# The lr of each schedule epoch, worked out by hand (optim.lr 0.1). SCHEDULE: warm-up over
# epochs 0-1 (x 1/2, x 2/2), x 0.1 from epoch 5 (0.5 of 10), x 0.01 from epoch 8 (0.8 of 10);
# past the last epoch the last lr holds. OFFICIAL_3: 3 epochs, milestones 0.34, 0.67 -> epochs
# 1 and 2, no warm-up.
HAND_LRS = [0.05, 0.1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001, 0.001, 0.001]
HAND_LRS_OFFICIAL_3 = [0.1, 0.01, 0.001, 0.001]


def hand_lr(epoch, table=HAND_LRS):
    return pytest.approx(table[epoch], rel=1e-12, abs=0)


def scheduler_for(cfg, method, params):
    opt = torch.optim.SGD(params, lr=cfg.optim.lr, momentum=0.9)
    sched = make_scheduler(opt, epochs=cfg.train.epochs, warmup_epochs=cfg.optim.warmup_epochs,
                           milestones=cfg.optim.milestones, decay=cfg.optim.lr_decay,
                           lead=method.lr_lead_epochs)
    return opt, sched


@pytest.mark.parametrize("lead", [0, 1, 2])
def test_real_lr_leads_the_virtual_lr(lead):
    cfg = mwnet(*SCHEDULE, f"mwnet.lr_lead_epochs={lead}")
    method = create_method(cfg, COUNTS)
    assert isinstance(method, MetaWeightNet) and method.lr_lead_epochs == lead
    opt, sched = scheduler_for(cfg, method, [torch.nn.Parameter(torch.zeros(1))])
    seen = []
    for epoch in range(cfg.train.epochs):
        real = opt.param_groups[0]["lr"]
        assert real == hand_lr(epoch + lead)
        assert method.virtual_lr(opt, epoch) == hand_lr(epoch)
        if lead == 0:
            assert method.virtual_lr(opt, epoch) is real  # the optimiser's lr itself
        seen.append(real)
        opt.step()  # no gradients: moves nothing, keeps torch's step-order check quiet
        sched.step()
    if lead:  # the lead shows: warm-up and decay come earlier
        assert seen[0] == hand_lr(lead) and seen[-1] == hand_lr(9)


def test_make_scheduler_without_lead_is_unchanged_and_resumes_with_its_lead():
    cfg = mwnet(*SCHEDULE, "mwnet.lr_lead_epochs=1")
    method = create_method(cfg, COUNTS)
    p = torch.nn.Parameter(torch.zeros(1))
    opt0 = torch.optim.SGD([p], lr=0.1)
    plain = make_scheduler(opt0, epochs=10, warmup_epochs=2, milestones=(0.5, 0.8), decay=0.1)
    opt, sched = scheduler_for(cfg, method, [p])
    full = []
    for _ in range(10):
        full.append(opt.param_groups[0]["lr"])
        assert opt0.param_groups[0]["lr"] == hand_lr(len(full) - 1)
        opt.step()
        opt0.step()
        sched.step()
        plain.step()
    # interrupted after 4 epochs and rebuilt as fit() does on resume
    opt, sched = scheduler_for(cfg, method, [p])
    for _ in range(4):
        opt.step()
        sched.step()
    state = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}
    opt, sched = scheduler_for(cfg, method, [p])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    resumed = []
    for _ in range(6):
        resumed.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert resumed == full[4:]


# -- real training --------------------------------------------------------------------------------
TINY = ["method.name=mwnet"]


def train(overrides, *, ckpt=None, stop_at=None, resume=False):
    return fit_tiny([*TINY, *overrides], ckpt, stop_at=stop_at, resume=resume)


def test_official_preset_trains_with_finite_loss_and_leading_lr(monkeypatch):
    virtual: dict[int, set[float]] = {}
    real = MetaWeightNet.virtual_lr

    def spy(self, optimizer, epoch):
        lr = real(self, optimizer, epoch)
        virtual.setdefault(epoch, set()).add(lr)
        return lr

    monkeypatch.setattr(MetaWeightNet, "virtual_lr", spy)
    overrides = ["mwnet.preset=official", "train.epochs=3", "optim.milestones=0.34,0.67"]
    cfg, rec = mwnet(*overrides), train(overrides)
    assert milestone_epochs(cfg.optim.milestones, 3) == [1, 2]
    assert [e.epoch for e in rec.epochs] == [0, 1, 2]
    for e in rec.epochs:
        assert math.isfinite(e.scalars["train_loss"]), e.scalars
        # the real step runs one epoch ahead of the virtual step's lr
        assert e.scalars["lr"] == hand_lr(e.epoch + 1, HAND_LRS_OFFICIAL_3)
        assert len(virtual[e.epoch]) == 1  # one virtual lr through the epoch
        assert virtual[e.epoch].pop() == hand_lr(e.epoch, HAND_LRS_OFFICIAL_3)
    assert all(math.isfinite(v) for _, _, values in rec.steps if values
               for v in values.values())


def test_resumed_run_with_a_lead_keeps_its_lrs(tmp_path):
    overrides = ["mwnet.preset=official", "train.epochs=4", "optim.milestones=0.5"]

    def scalars(rec):
        return {e.epoch: {k: v for k, v in e.scalars.items() if k != "epoch_seconds"}
                for e in rec.epochs}

    full = train(overrides, ckpt=tmp_path / "full")
    first = train(overrides, ckpt=tmp_path / "cut", stop_at=2)
    second = train(overrides, ckpt=tmp_path / "cut", resume=True)
    assert second.info.start_epoch == 2
    resumed = {**scalars(first), **scalars(second)}
    assert resumed == scalars(full)
    assert [resumed[e]["lr"] for e in range(4)] == [0.1, 0.010000000000000002,
                                                     0.010000000000000002, 0.010000000000000002]
