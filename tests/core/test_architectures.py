"""Architectures by name, with the documented state-dict layouts."""

from __future__ import annotations

import pytest
import torch

from core.architectures import build_model
from core.errors import RecipeError


def test_resnet18_has_the_pytorch_cifar_layout():
    model = build_model("resnet18", {}, 10, (3, 32, 32))
    keys = list(model.state_dict())
    for k in ("conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight", "layer2.0.shortcut.0.weight",
              "layer2.0.shortcut.1.weight", "layer4.1.bn2.bias", "linear.weight", "linear.bias"):
        assert k in keys
    assert sum(p.numel() for p in model.parameters()) == 11_173_962
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_resnet50_uses_bottlenecks():
    model = build_model("resnet50", {}, 100, (3, 32, 32))
    assert "layer1.0.conv3.weight" in model.state_dict()
    assert model.linear.out_features == 100


def test_mlp_bias_on_first_layer_only():
    model = build_model("mlp", {"hidden": [1000, 1000]}, 10, (3, 32, 32))
    assert list(model.state_dict()) == ["layers.0.weight", "layers.0.bias", "layers.1.weight",
                                        "layers.2.weight"]
    assert model.state_dict()["layers.0.weight"].shape == (1000, 3072)


def test_torchvision_model_with_replaced_head():
    model = build_model("torchvision/resnet18", {}, 7, (3, 32, 32))
    assert "fc.weight" in model.state_dict() and model.fc.out_features == 7


@pytest.mark.parametrize("name, options, message", [
    ("nope", {}, "unknown architecture 'nope'"),
    ("torchvision/nope", {}, "unknown torchvision"),
    ("mlp", {"widht": 3}, "bad arch_options for mlp"),
])
def test_unknown_names_are_clear_errors(name, options, message):
    with pytest.raises(RecipeError, match=message):
        build_model(name, options, 10, (3, 32, 32))
