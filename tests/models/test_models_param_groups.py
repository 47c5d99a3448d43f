"""Every model declares its classifier and last-stage parameters; the virtual step's
``virtual_params`` selects from what the model declares, never from names of its own."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mfm.config import load_config
from mfm.meta.bilevel import VIRTUAL_PARAMS, select_virtual
from mfm.methods import create_method
from mfm.models import (
    PARAM_GROUPS,
    UndeclaredParams,
    classifier_module,
    create_model,
    declared_params,
    list_models,
)


@pytest.mark.parametrize("classifier", ["linear", "cosine"])
@pytest.mark.parametrize("name", list_models())
def test_every_model_declares_groups_that_exist(name, classifier):
    model = create_model(name, num_classes=5, in_channels=1, classifier=classifier)
    params = dict(model.named_parameters())
    for group, attr in PARAM_GROUPS.items():
        paths = getattr(model, attr)
        assert paths, f"{name} declares no {attr}"
        for path in paths:  # each declared path is a submodule holding parameters
            assert any(True for _ in model.get_submodule(path).parameters()), (name, path)
        names = declared_params(model, group)
        assert names and set(names) <= set(params), (name, group)
        assert names == [n for n in params if n in set(names)]  # named_parameters order
    assert set(declared_params(model, "classifier")).isdisjoint(
        declared_params(model, "last_stage"))
    head = classifier_module(model)
    assert {id(p) for p in head.parameters()} == {
        id(params[n]) for n in declared_params(model, "classifier")}
    assert head(torch.randn(2, model.feature_dim)).shape == (2, 5)


@pytest.mark.parametrize("classifier", ["linear", "cosine"])
@pytest.mark.parametrize("name", list_models())
def test_resnet_selections_are_todays(name, classifier):
    """The names select_virtual gave before the models declared them: ``layer3.`` and
    ``classifier.`` prefixes, spelled here as they were in mfm.meta.bilevel."""
    model = create_model(name, num_classes=5, in_channels=3, classifier=classifier)
    names = [n for n, _ in model.named_parameters()]
    todays = {"all": names,
              "last_stage": [n for n in names if n.startswith(("layer3.", "classifier."))],
              "fc": [n for n in names if n.startswith("classifier.")]}
    for which in VIRTUAL_PARAMS:
        got = select_virtual(model, which)
        assert got == todays[which], (name, which)
        assert got, (name, which)
    assert len(todays["fc"]) < len(todays["last_stage"]) < len(names)


class Undeclared(nn.Module):
    """A model that declares no parameter groups."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(4, 4)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.body(x)))


class DeclaresNothingReal(Undeclared):
    classifier_params = ("fc",)  # no such module
    last_stage_params = ("body",)


@pytest.mark.parametrize("which", ["fc", "last_stage"])
def test_a_model_without_declarations_is_refused_naming_the_setting(which):
    model = Undeclared()
    assert select_virtual(model, "all") == [n for n, _ in model.named_parameters()]
    with pytest.raises(ValueError) as e:
        select_virtual(model, which)
    text = str(e.value)
    assert f"mfm.virtual_params={which}" in text and "all | last_stage | fc" in text
    assert "Undeclared declares no" in text and "\n" not in text
    with pytest.raises(UndeclaredParams, match="classifier_params"):
        classifier_module(model)


def test_declared_paths_without_parameters_are_refused():
    model = DeclaresNothingReal()
    assert declared_params(model, "last_stage") == ["body.weight", "body.bias"]
    with pytest.raises(UndeclaredParams, match=r"classifier_params = \('fc',\), which hold no "
                                                r"parameter"):
        declared_params(model, "classifier")
    with pytest.raises(ValueError, match="mfm.virtual_params=fc needs the model's classifier"):
        select_virtual(model, "fc")
    with pytest.raises(ValueError, match="parameter group must be one of classifier | "):
        declared_params(model, "head")


def test_an_unknown_choice_names_the_setting_and_the_choices():
    with pytest.raises(ValueError, match=r"^mwnet.virtual_params must be one of all \| "
                                         r"last_stage \| fc \(got 'head'\)$"):
        select_virtual(create_model("resnet_tiny", num_classes=3), "head",
                       key="mwnet.virtual_params")


def test_a_meta_method_names_its_own_section():
    """Meta-Weight-Net on a model without declarations: the error names mwnet's key."""
    cfg = load_config(None, ["method.name=mwnet", "mwnet.virtual_params=fc"])
    method = create_method(cfg, [5, 3, 2])
    with pytest.raises(ValueError, match=r"^mwnet.virtual_params=fc needs the model's "
                                         r"classifier parameters, but Undeclared declares no"):
        method.attach(model=Undeclared(), meta_x=torch.randn(3, 4),
                      meta_y=torch.tensor([0, 1, 2]), device=torch.device("cpu"))
