"""Model registry and import rules."""

import subprocess
import sys
from pathlib import Path

import pytest
from torch import nn

from mfm.config import MODEL_NAMES
from mfm.models import create_model, list_models, register_model


def test_registry_names_match_config():
    assert list_models() == list(MODEL_NAMES)


def test_unknown_model_lists_names():
    with pytest.raises(ValueError) as e:
        create_model("resnet18", num_classes=10)
    for name in MODEL_NAMES:
        assert name in str(e.value)


def test_duplicate_registration_rejected():
    with pytest.raises(ValueError, match="already registered"):
        register_model("resnet32")(lambda **kw: nn.Identity())


@pytest.mark.slow  # a real subprocess
def test_imports_no_app_libraries():
    """mfm.models and mfm.methods (with every method module loaded) pull in no app libraries."""
    code = ("import sys, mfm.models, mfm.methods; mfm.methods.list_methods(); "
            "bad = [m for m in ('sqlalchemy', 'textual', 'click') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120,
                   cwd=Path(__file__).resolve().parents[2])
