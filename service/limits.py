"""The service's limits on a job, checked at submit before anything is queued. The method's own
cost estimate (``Method.estimate_cost``) and the model built on the meta device make every
check cheap: nothing here allocates tensors."""

from __future__ import annotations

import math
from typing import Any

from core.architectures import parameter_count
from core.job_settings import JobSettings
from core.methods import get_method
from core.recipe import Recipe
from service.config import ServiceConfig


def published_maxima(limits: ServiceConfig) -> tuple[tuple[str, int], ...]:
    """The settings this deployment bounds below its models' own maxima, with its limits."""
    return (("num_images", limits.max_images), ("iterations", limits.max_iterations))


def publish_limits(settings_schema: dict[str, Any], maxima: tuple[tuple[str, int], ...]) -> dict[str, Any]:
    """A settings JSON schema, in place, with ``published_maxima`` as its maxima: the models'
    own bounds are what the engine takes anywhere, a service takes less (``limit_violations``),
    and a client drawing a form from the catalog or the OpenAPI document must see the lower."""
    for name, limit in maxima:
        prop = settings_schema.get("properties", {}).get(name)
        if prop is not None:
            prop["maximum"] = min(prop.get("maximum", limit), limit)
    return settings_schema


def limit_violations(recipe: Recipe, settings: JobSettings, limits: ServiceConfig) -> list[str]:
    problems = []
    if settings.num_images > limits.max_images:
        problems.append(f"settings.num_images {settings.num_images} is over the limit of {limits.max_images}")
    if settings.iterations > limits.max_iterations:
        problems.append(f"settings.iterations {settings.iterations} is over the limit of {limits.max_iterations}")
    pixels = math.prod(recipe.image_shape)
    if pixels > limits.max_image_pixels:
        problems.append(f"recipe.image_shape {list(recipe.image_shape)} has {pixels} values per "
                        f"image, over the limit of {limits.max_image_pixels}")
    if settings.lr_search and len(settings.lr_search.candidates) > limits.max_lr_candidates:
        problems.append(f"{len(settings.lr_search.candidates)} lr candidates are over the limit of "
                        f"{limits.max_lr_candidates}")
    if recipe.num_classes > limits.max_classes:
        problems.append(f"recipe.num_classes {recipe.num_classes} is over the limit of {limits.max_classes}")
    if problems:  # the model is built only for a job that passed the cheap checks
        return problems
    cost = get_method(settings.method).estimate_cost(recipe, settings)
    if cost.unrolled_steps > limits.max_simulated_steps:
        problems.append(f"{cost.unrolled_steps} simulated training steps (epochs x batches) are over "
                        f"the limit of {limits.max_simulated_steps}")
    work = cost.sample_passes * settings.iterations
    if work > limits.max_sample_passes:
        problems.append(f"the job needs about {work:.3g} image passes ({cost.sample_passes} per "
                        f"iteration), over the limit of {limits.max_sample_passes:.3g}")
    params = parameter_count(recipe)
    if params > limits.max_model_parameters:
        problems.append(f"the recipe's model has {params:,} parameters, over the limit of "
                        f"{limits.max_model_parameters:,}")
    return problems
