"""The first layer's change spans the training images (core/input_span.py), and SimuDy keeps
its images inside that span unless asked not to."""

from __future__ import annotations

import pytest
import torch

from core.architectures import model_for_recipe
from core.errors import RecipeError
from core.input_span import InputSpan, input_span_basis
from core.sgd_step import split_state_dict

from tests.core.conftest import make_recipe, make_simudy, trained_pair


def basis_for(recipe, theta0, thetaf):
    model = model_for_recipe(recipe)
    params0, _ = split_state_dict(model, theta0)
    paramsf, _ = split_state_dict(model, thetaf)
    return input_span_basis(model, recipe, params0, paramsf)


@pytest.mark.parametrize("overrides", [
    {},
    {"optimizer": {"lr": 0.05, "momentum": 0.9, "nesterov": True}},
    {"clip_grad_norm": 0.5, "batch_size": 3, "shuffle": True},
    {"arch_options": {"hidden": [24], "bias": "all"}, "loss": "logistic", "num_classes": 2},
], ids=["sgd", "nesterov", "clipped-minibatches", "logistic-all-biases"])
def test_the_training_images_lie_in_the_span_and_its_rank_counts_them(overrides):
    recipe = make_recipe(**overrides)
    theta0, thetaf, x, _ = trained_pair(recipe, n=10)
    basis = basis_for(recipe, theta0, thetaf)
    assert basis.shape == (10, 3 * 8 * 8)
    span = InputSpan(basis)
    assert torch.allclose(span.project(x), x, atol=1e-4 * x.abs().max())
    noise = torch.randn(5, *recipe.image_shape)  # almost all of a random image lies outside it
    assert span.project(noise).norm() < 0.5 * noise.norm()


def test_weight_decay_or_a_convolutional_first_layer_leaves_no_span():
    decayed = make_recipe(optimizer={"lr": 0.05, "weight_decay": 0.01})
    assert basis_for(decayed, *trained_pair(decayed)[:2]) is None
    conv = make_recipe(architecture="convnet", arch_options={"width": 4})
    assert basis_for(conv, *trained_pair(conv)[:2]) is None
    with pytest.raises(RecipeError, match="input_span needs"):
        make_simudy(decayed, *trained_pair(decayed)[:2], input_span=True)


def test_simudy_keeps_its_images_in_the_span_by_default(mlp_case):
    recipe, theta0, thetaf, x, _ = mlp_case
    method = make_simudy(recipe, theta0, thetaf, iterations=4)
    method.run()
    images = method.images.detach()
    span = InputSpan(basis_for(recipe, theta0, thetaf))
    assert torch.allclose(span.project(images), images, atol=1e-5)
    assert method.result().summary["input_span_rank"] == 10

    free = make_simudy(recipe, theta0, thetaf, iterations=4, input_span=False)
    free.run()
    assert free.result().summary["input_span_rank"] is None
    assert (span.project(free.images.detach()) - free.images.detach()).norm() > 1.0
