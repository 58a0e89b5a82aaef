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


def test_vit_has_the_documented_layout():
    model = build_model("vit", {}, 10, (3, 32, 32))
    state = model.state_dict()
    assert state["pos_embed"].shape == (1, 65, 192) and state["cls_token"].shape == (1, 1, 192)
    assert state["patch_embed.weight"].shape == (192, 3, 4, 4)
    assert state["blocks.5.attn.qkv.weight"].shape == (576, 192) and "blocks.6.norm1.weight" not in state
    assert state["blocks.0.mlp.0.weight"].shape == (768, 192) and state["blocks.0.mlp.2.weight"].shape == (192, 768)
    assert state["head.weight"].shape == (10, 192)
    # per block 2(192) + (192 + 1)576 + (192 + 1)192 + 2(192) + (192 + 1)768 + (768 + 1)192 = 444,864;
    # 6 blocks + cls 192 + pos 65 x 192 + patch (48 + 1)192 + norm 384 + head (192 + 1)10
    assert sum(p.numel() for p in model.parameters()) == 2_693_578
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    model.eval()  # no dropout: eval and train mode compute the same
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model(x), model.train()(x))


@pytest.mark.parametrize("name, options, message", [
    ("nope", {}, "unknown architecture 'nope'"),
    ("torchvision/nope", {}, "unknown torchvision"),
    ("mlp", {"widht": 3}, "bad arch_options for mlp"),
    ("vit", {"heads": 5}, r"bad arch_options for vit: heads \(5\) must divide dim \(192\)"),
    ("vit", {"patch": 5}, r"height and width \(32, 32\) must be multiples of patch \(5\)"),
    ("vit", {"depth": 0}, "depth must be an integer from 1 to 256"),
    ("vit", {"dropout": 0.1}, r"unknown options \['dropout'\]"),
])
def test_unknown_names_are_clear_errors(name, options, message):
    with pytest.raises(RecipeError, match=message):
        build_model(name, options, 10, (3, 32, 32))
