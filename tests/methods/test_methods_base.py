"""Method base class, registry and the default training step."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mfm.config import META_METHODS, METHOD_NAMES, Config, MethodConfig, TrainConfig
from mfm.methods import Method, create_method, list_methods, register_method
from mfm.methods import registry as reg
from mfm.models import create_model


def config(name: str, epochs: int = 4) -> Config:
    return Config(method=MethodConfig(name=name), train=TrainConfig(epochs=epochs))


def test_registry_names_match_config():
    assert list_methods() == list(METHOD_NAMES)


def test_meta_methods_read_their_own_section_of_the_config():
    for name in META_METHODS:
        cfg = config(name)
        m = create_method(cfg, [5, 3, 1])
        assert m.name == name and m.num_classes == 3 and m.epochs == 4
        assert m.config is cfg and m.opts is getattr(cfg, name)


def test_create_each():
    for name in (n for n in METHOD_NAMES if n not in META_METHODS):
        m = create_method(config(name), [5, 3, 1])
        assert isinstance(m, Method) and m.name == name
        assert m.classifier == ("cosine" if name == "ldam_drw" else "linear")
        assert m.num_classes == 3 and m.class_counts == (5, 3, 1) and m.epochs == 4
        assert m.state_dict() == {}
        m.load_state_dict({})
        z = torch.randn(2, 3)
        if name != "tau_norm":  # prediction through the parent's classifier, after attach
            assert torch.equal(m.eval_logits(z), z)


def test_unknown_method_lists_names():
    with pytest.raises(ValueError) as e:
        create_method(config("nope", 3), [1, 2])
    for name in METHOD_NAMES:
        assert name in str(e.value)


def test_register_method_decorator():
    try:
        @register_method("_test_dummy")
        class Dummy(Method):
            def loss(self, logits, targets, *, epoch):
                return logits.sum() * 0

        assert Dummy.name == "_test_dummy"
        assert isinstance(create_method(config("_test_dummy", 1), [1]), Dummy)
        with pytest.raises(ValueError, match="already registered"):
            register_method("ce")(Dummy)
        with pytest.raises(TypeError):
            register_method("_x")(object)
    finally:
        reg._METHODS.pop("_test_dummy", None)


@pytest.mark.parametrize("counts", [[5, 0, 2], [], [3, 1.5], [3, -1]])
def test_bad_counts(counts):
    with pytest.raises(ValueError, match="class_counts"):
        create_method(config("ce", 3), counts)


def test_bad_epochs():
    with pytest.raises(ValueError, match="epochs"):
        create_method(config("ce", 0), [1, 2])


def test_stateless_rejects_state():
    with pytest.raises(ValueError):
        create_method(config("ce", 3), [1, 2]).load_state_dict({"x": 1})


@pytest.mark.parametrize("name", [n for n in METHOD_NAMES
                                  if n not in META_METHODS and n != "tau_norm"])
def test_training_step_reduces_loss(name):
    torch.manual_seed(0)
    counts = [12, 6, 2]
    y = torch.tensor(sum(([c] * n for c, n in enumerate(counts)), []))
    x = torch.randn(len(y), 1, 8, 8) + y.view(-1, 1, 1, 1).float()  # separable by brightness
    method = create_method(config(name, 10), counts)
    model = create_model("resnet_tiny", num_classes=3, in_channels=1,
                         classifier=method.classifier)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for step in range(8):
        out = method.training_step(model, opt, x, y, epoch=9, step=step)  # epoch 9: DRW on
        assert set(out) == {"loss"}
        assert out["loss"].dim() == 0 and not out["loss"].requires_grad
        losses.append(out["loss"].item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.8 * losses[0], losses


def test_hooks_the_engine_calls_are_no_ops_on_the_base():
    m = create_method(config("ce"), [1, 2])
    m.attach(model=None, meta_x=None, meta_y=None, device=torch.device("cpu"))
    m.on_fit_end(None)


@pytest.mark.slow  # a real subprocess
def test_transfer_and_atomic_writes_load_no_torch():
    """Queueing a transfer reads mfm.methods.transfer; mfm.atomic is shared by the engine and
    the methods: neither may load torch (nor may the engine's callbacks)."""
    code = ("import sys, mfm.methods.transfer, mfm.atomic, mfm.engine.callbacks; "
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120,
                   cwd=Path(__file__).resolve().parents[2])
