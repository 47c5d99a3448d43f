"""Modulation sites: names, kinds, identity by default, functional_call."""

import pytest
import torch
from torch.func import functional_call

from mfm.models import ModulationSite, create_model


def test_resnet32_sites():
    m = create_model("resnet32", num_classes=10)
    sites = m.sites()
    names = list(sites)
    bn = [n for n, (k, _) in sites.items() if k == "bn"]
    assert len(sites) == 34 and len(bn) == 30
    expected_bn = [f"layer{s}.{b}.bn{i}" for s in (1, 2, 3) for b in range(5) for i in (1, 2)]
    assert bn == expected_bn
    for s, w in zip((1, 2, 3), (16, 32, 64)):
        assert all(sites[f"layer{s}.{b}.bn{i}"] == ("bn", w) for b in range(5) for i in (1, 2))
        assert sites[f"stage{s}"] == ("stage", w)
    assert sites["penultimate"] == ("penultimate", 64)
    # Forward order: a stage's block sites, then the stage site; the penultimate site last.
    assert names.index("stage1") == 10 and names.index("stage2") == 21
    assert names.index("stage3") == 32 and names[-1] == "penultimate"
    assert "bn1" not in names and not any(n.startswith("conv") for n in names)  # no stem site


def test_sites_are_called_in_forward_order():
    m = create_model("resnet8", num_classes=3)
    seen = []

    def record(site, x):
        seen.append((site.name, site.kind, tuple(x.shape)))
        assert x.shape[1] == site.channels
        return x

    m.set_modulation(record)
    m(torch.randn(2, 3, 16, 16))
    assert [s[0] for s in seen] == list(m.sites())
    shapes = dict((n, s) for n, _, s in seen)
    assert shapes["layer1.0.bn1"] == (2, 16, 16, 16)
    assert shapes["stage2"] == (2, 32, 8, 8)
    assert shapes["layer3.0.bn2"] == (2, 64, 4, 4)
    assert shapes["penultimate"] == (2, 64)


def test_identity_by_default_and_with_identity_fn():
    torch.manual_seed(0)
    m = create_model("resnet_tiny", num_classes=4).eval()
    x = torch.randn(3, 3, 8, 8)
    plain = m(x)
    m.set_modulation(lambda site, h: h)
    assert torch.equal(m(x), plain)
    m.set_modulation(None)
    assert torch.equal(m(x), plain)


def test_fn_is_not_state():
    m = create_model("resnet_tiny", num_classes=4)
    keys = set(m.state_dict())
    n = sum(1 for _ in m.parameters())
    gate = torch.nn.Linear(4, 4)  # an nn.Module as fn must not become a submodule
    m.set_modulation(lambda site, h: h)
    site = next(s for s in m.modules() if isinstance(s, ModulationSite))
    site.set_fn(gate)
    assert set(m.state_dict()) == keys and sum(1 for _ in m.parameters()) == n
    with pytest.raises(TypeError):
        site.set_fn(3)


def test_penultimate_scale_doubles_linear_logits():
    torch.manual_seed(0)
    m = create_model("resnet_tiny", num_classes=5).eval()
    x = torch.randn(4, 3, 8, 8)
    f = m.forward_features(x)
    m.set_modulation(lambda site, h: 2 * h if site.kind == "penultimate" else h)
    W, b = m.classifier.weight, m.classifier.bias
    torch.testing.assert_close(m.forward_features(x), 2 * f)
    torch.testing.assert_close(m(x), 2 * f @ W.T + b)


def test_bn_site_modulation_changes_output():
    torch.manual_seed(0)
    m = create_model("resnet_tiny", num_classes=5).eval()
    x = torch.randn(4, 3, 8, 8)
    plain = m(x)
    m.set_modulation(lambda site, h: h * 0.5 + 0.1 if site.name == "layer2.0.bn1" else h)
    assert not torch.allclose(m(x), plain)


@pytest.mark.parametrize("train", [False, True])
def test_functional_call_matches_module(train):
    torch.manual_seed(0)
    m = create_model("resnet_tiny", num_classes=5).train(train)
    x = torch.randn(4, 3, 8, 8)
    params = {k: v.detach().clone() for k, v in m.named_parameters()}
    buffers = {k: v.detach().clone() for k, v in m.named_buffers()}
    before = {k: v.clone() for k, v in m.named_buffers()}
    out_f = functional_call(m, {**params, **buffers}, (x,))
    # The functional call updated only the copied buffers, never the model's own.
    assert all(torch.equal(before[k], v) for k, v in m.named_buffers())
    if train:
        assert not torch.equal(buffers["bn1.running_mean"], before["bn1.running_mean"])
    out_m = m(x)
    torch.testing.assert_close(out_f, out_m, rtol=0, atol=0)


def test_functional_call_with_modulation_is_differentiable():
    torch.manual_seed(0)
    m = create_model("resnet_tiny", num_classes=5).double()
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    gamma = torch.ones(8, dtype=torch.float64, requires_grad=True)

    def scale(site, h):
        return h * gamma.view(1, -1, 1, 1) if site.name == "stage2" else h

    m.set_modulation(scale)
    params = {k: v.detach().clone().requires_grad_() for k, v in m.named_parameters()}
    buffers = {k: v.detach().clone() for k, v in m.named_buffers()}
    out = functional_call(m, {**params, **buffers}, (x,))
    torch.testing.assert_close(out, m(x))
    out.sum().backward()
    assert gamma.grad is not None and torch.isfinite(gamma.grad).all()
    assert gamma.grad.abs().sum() > 0
