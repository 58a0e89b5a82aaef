"""The first layer's change spans the training images (core/input_span.py), and SimuDy keeps
its images inside that span unless asked not to."""

from __future__ import annotations

import pytest
import torch

from core.architectures import model_for_recipe
from core.errors import RecipeError
from core.input_span import (InputSpan, applies, clearest_coefficient, initial_weight_coefficients,
                              input_span_basis, span_rank)
from core.methods.simudy import SimuDy
from core.parameters import split_state_dict

from tests.core.conftest import make_recipe, make_simudy, simudy_settings, trained_pair


def basis_for(recipe, theta0, thetaf, max_images=10):
    model = model_for_recipe(recipe)
    params0, _ = split_state_dict(model, theta0)
    paramsf, _ = split_state_dict(model, thetaf)
    return input_span_basis(model, recipe, params0, paramsf, max_images)


@pytest.mark.parametrize("overrides,max_images", [
    ({}, 10),
    ({"optimizer": {"lr": 0.05, "momentum": 0.9, "nesterov": True}}, 10),
    ({"clip_grad_norm": 0.5, "batch_size": 3, "shuffle": True}, 10),
    ({"arch_options": {"hidden": [24], "bias": "all"}, "loss": "logistic", "num_classes": 2}, 10),
    ({"optimizer": {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.01}}, 10),
    # weight decay, mini-batches and more dummy images than training images: the number of
    # real steps is not known, and every candidate is tried
    ({"optimizer": {"lr": 0.05, "weight_decay": 0.05}, "batch_size": 3}, 16),
    # the same under an lr schedule counted in steps: the decay of each step follows its lr
    ({"optimizer": {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.05}, "batch_size": 3,
      "lr_schedule": {"name": "cosine", "warmup": 2, "interval": "step"}}, 16),
], ids=["sgd", "nesterov", "clipped-minibatches", "logistic-all-biases", "momentum-weight-decay",
        "weight-decay-unknown-n", "weight-decay-schedule-unknown-n"])
def test_the_training_images_lie_in_the_span_and_its_rank_counts_them(overrides, max_images):
    recipe = make_recipe(**overrides)
    theta0, thetaf, x, _ = trained_pair(recipe, n=10)
    basis = basis_for(recipe, theta0, thetaf, max_images)
    assert basis.shape == (10, 3 * 8 * 8)
    span = InputSpan(basis)
    assert torch.allclose(span.project(x), x, atol=1e-4 * x.abs().max())
    noise = torch.randn(5, *recipe.image_shape)  # almost all of a random image lies outside it
    assert span.project(noise).norm() < 0.5 * noise.norm()


def test_undeclared_weight_decay_augmentation_a_narrow_first_layer_or_a_convolution_leave_no_span():
    decayed = make_recipe(optimizer={"lr": 0.05, "weight_decay": 0.01})
    theta0, thetaf = trained_pair(decayed)[:2]
    assert basis_for(decayed, theta0, thetaf) is not None
    assert basis_for(make_recipe(), theta0, thetaf) is None  # the recipe leaves the decay out
    conv = make_recipe(architecture="convnet", arch_options={"width": 4})
    assert basis_for(conv, *trained_pair(conv)[:2]) is None
    assert not applies(model_for_recipe(make_recipe(augment=True)), make_recipe(augment=True))
    # 8 hidden units, 20 images: the change (8 x 192) has full rank 8 and no cut, and the
    # images do not lie in its row space
    narrow = make_recipe(arch_options={"hidden": [8, 16]})
    theta0, thetaf, x, _ = trained_pair(narrow, n=20)
    assert basis_for(narrow, theta0, thetaf) is None
    with pytest.raises(RecipeError, match="no clear rank"):
        make_simudy(narrow, theta0, thetaf, num_images=20, input_span="on")
    augmented = make_recipe(augment=True)
    with pytest.raises(RecipeError, match="input_span 'on' needs"):
        make_simudy(augmented, *trained_pair(augmented)[:2], input_span="on")
    assert SimuDy.setting_problems(augmented, simudy_settings(input_span="on"))
    assert not SimuDy.setting_problems(augmented, simudy_settings())
    assert not SimuDy.setting_problems(decayed, simudy_settings(input_span="on"))


def test_under_weight_decay_the_real_number_of_steps_is_found_and_simudy_uses_the_span():
    recipe = make_recipe(optimizer={"lr": 0.05, "weight_decay": 0.05}, batch_size=3)
    theta0, thetaf, _, _ = trained_pair(recipe, n=10)  # 3 epochs of 4 batches
    coefs = initial_weight_coefficients(recipe, 16)  # 1 .. 6 batches per epoch
    assert len(coefs) == 6 and coefs == sorted(coefs, reverse=True)
    w0, wf = theta0["layers.0.weight"].double(), thetaf["layers.0.weight"].double()
    assert clearest_coefficient(w0, wf, coefs, 16) == coefs[3]  # 12 steps
    method = make_simudy(recipe, theta0, thetaf, num_images=16, input_span="on")
    assert method.input_span_rank == 10


def test_the_rank_is_read_at_the_largest_drop_of_the_singular_values():
    assert span_rank(torch.tensor([5.0, 1.0, 0.2, 1e-6, 1e-7], dtype=torch.float64)) == 3
    assert span_rank(torch.tensor([5.0, 1.0, 0.2, 0.0], dtype=torch.float64)) == 3
    assert span_rank(torch.tensor([5.0, 1.0, 0.2, 0.05], dtype=torch.float64)) is None  # no cut
    assert span_rank(torch.zeros(4, dtype=torch.float64)) is None


def test_simudy_keeps_its_images_and_adam_moments_in_the_span_by_default(mlp_case):
    recipe, theta0, thetaf, x, _ = mlp_case
    method = make_simudy(recipe, theta0, thetaf, iterations=4)
    method.run()
    images = method.images.detach().cpu()
    span = InputSpan(basis_for(recipe, theta0, thetaf))
    assert torch.allclose(span.project(images), images, atol=1e-5)
    moment = method.optimizer.state[method.images]["exp_avg"].cpu()  # the gradient was projected
    assert torch.allclose(span.project(moment), moment, atol=1e-6 * moment.abs().max())
    assert method.result().summary["input_span_rank"] == 10

    free = make_simudy(recipe, theta0, thetaf, iterations=4, input_span="off")
    free.run()
    assert free.result().summary["input_span_rank"] is None
    free_images = free.images.detach().cpu()
    assert (span.project(free_images) - free_images).norm() > 1.0


def test_a_state_saved_without_the_span_resumes_without_it(mlp_case):
    recipe, theta0, thetaf, x, _ = mlp_case
    free = make_simudy(recipe, theta0, thetaf, iterations=4, input_span="off")
    free.run(until=2)
    state = free.state_dict()
    older = {k: v for k, v in state.items() if k != "input_span_rank"}
    resumed = make_simudy(recipe, theta0, thetaf, iterations=4)  # auto: the span would be on
    resumed.load_state_dict(older)
    assert resumed.span is None
    with pytest.raises(RecipeError, match="input span rank None"):
        make_simudy(recipe, theta0, thetaf, iterations=4).load_state_dict(state)
