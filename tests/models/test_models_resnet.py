"""CIFAR ResNets: shapes, parameter counts, init, classifiers."""

import pytest
import torch
from torch import nn

from mfm.models import CifarResNet, NormedLinear, create_model
from mfm.models.resnet import ShortcutA

DEPTH_BLOCKS = {"resnet8": 1, "resnet20": 3, "resnet32": 5, "resnet44": 7, "resnet56": 9}


def _n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("name", ["resnet_tiny", "resnet8"])
@pytest.mark.parametrize("in_ch,size", [(1, 8), (1, 28), (3, 32)])
def test_output_shape_small_models(name, in_ch, size):
    m = create_model(name, num_classes=7, in_channels=in_ch)
    x = torch.randn(3, in_ch, size, size)
    assert m(x).shape == (3, 7)
    assert m.forward_features(x).shape == (3, m.feature_dim)


@pytest.mark.parametrize("name", ["resnet20", "resnet32", "resnet44", "resnet56"])
@pytest.mark.parametrize("in_ch", [1, 3])
def test_output_shape_deep_models(name, in_ch):
    m = create_model(name, num_classes=4, in_channels=in_ch)
    assert m(torch.randn(2, in_ch, 8, 8)).shape == (2, 4)
    assert m.feature_dim == 64


def test_odd_spatial_size():
    m = create_model("resnet_tiny", num_classes=3, in_channels=1)
    assert m(torch.randn(2, 1, 9, 11)).shape == (2, 3)


def _expected_params(blocks: int, widths, in_ch: int, classes: int) -> int:
    """Option-A CIFAR ResNet by hand: 3x3 convs without bias, BN (weight+bias), linear."""
    conv = lambda cin, cout: cin * cout * 9  # noqa: E731
    bn = lambda c: 2 * c  # noqa: E731
    total = conv(in_ch, widths[0]) + bn(widths[0])
    cin = widths[0]
    for w in widths:
        for _ in range(blocks):
            total += conv(cin, w) + bn(w) + conv(w, w) + bn(w)  # shortcut: no parameters
            cin = w
    return total + widths[-1] * classes + classes


def test_resnet32_parameter_count():
    m = create_model("resnet32", num_classes=10)
    assert _n_params(m) == _expected_params(5, (16, 32, 64), 3, 10) == 464_154


@pytest.mark.parametrize("name", sorted(DEPTH_BLOCKS))
def test_parameter_count_formula(name):
    m = create_model(name, num_classes=100, in_channels=1)
    assert _n_params(m) == _expected_params(DEPTH_BLOCKS[name], (16, 32, 64), 1, 100)
    depth = 2 + 2 * 3 * DEPTH_BLOCKS[name]
    assert name == f"resnet{depth}"
    assert sum(isinstance(x, nn.Conv2d) for x in m.modules()) + 1 == depth  # convs + fc


def test_tiny_parameter_count():
    m = create_model("resnet_tiny", num_classes=10, in_channels=1)
    assert _n_params(m) == _expected_params(1, (4, 8, 16), 1, 10)


def test_option_a_shortcut():
    sc = ShortcutA(16, 32, 2)
    assert _n_params(sc) == 0
    x = torch.randn(2, 16, 8, 8)
    y = sc(x)
    assert y.shape == (2, 32, 4, 4)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2])  # planes // 4 zeros on each side
    assert torch.count_nonzero(y[:, :8]) == 0 and torch.count_nonzero(y[:, 24:]) == 0
    m = create_model("resnet32", num_classes=10)
    shortcuts = [x for x in m.modules() if isinstance(x, ShortcutA)]
    assert len(shortcuts) == 2 and all(_n_params(s) == 0 for s in shortcuts)


def test_init():
    m = create_model("resnet_tiny", num_classes=5)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            assert torch.all(mod.weight == 1) and torch.all(mod.bias == 0)
    # kaiming_normal_ (fan_in, gain sqrt(2)): the std of a big conv's weight is sqrt(2 / fan_in).
    conv = create_model("resnet32", num_classes=5).layer3[1].conv1.weight
    assert conv.std().item() == pytest.approx((2 / (64 * 9)) ** 0.5, rel=0.05)
    assert conv.mean().abs().item() < 0.01


def test_deterministic_init():
    torch.manual_seed(3)
    a = create_model("resnet8", num_classes=5, classifier="cosine").state_dict()
    torch.manual_seed(3)
    b = create_model("resnet8", num_classes=5, classifier="cosine").state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    torch.manual_seed(4)
    c = create_model("resnet8", num_classes=5, classifier="cosine").state_dict()
    assert not torch.equal(a["conv1.weight"], c["conv1.weight"])


def test_cosine_classifier():
    torch.manual_seed(0)
    m = create_model("resnet_tiny", num_classes=6, classifier="cosine")
    assert isinstance(m.classifier, NormedLinear)
    assert m.classifier.weight.shape == (m.feature_dim, 6)
    assert _n_params(m.classifier) == m.feature_dim * 6  # no bias
    out = m(torch.randn(4, 3, 8, 8) * 50)
    assert out.shape == (4, 6)
    assert out.abs().max().item() <= 1 + 1e-6
    f = m.forward_features(torch.randn(4, 3, 8, 8))
    w = m.classifier.weight
    want = (f / f.norm(dim=1, keepdim=True)) @ (w / w.norm(dim=0, keepdim=True))
    torch.testing.assert_close(m.classifier(f), want)


def test_linear_classifier():
    m = create_model("resnet_tiny", num_classes=6)
    assert isinstance(m.classifier, nn.Linear)
    assert (m.classifier.in_features, m.classifier.out_features) == (m.feature_dim, 6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="classifier"):
        create_model("resnet8", num_classes=3, classifier="auto")
    with pytest.raises(ValueError, match="num_classes"):
        CifarResNet(1, num_classes=0)
