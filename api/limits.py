"""The service's limits on a job (settings), checked before anything is queued."""

from __future__ import annotations

import math

from api.settings import Settings
from core.recipe import Recipe
from core.settings import ReconstructionSettings


def limit_violations(recipe: Recipe, rs: ReconstructionSettings, limits: Settings) -> list[str]:
    problems = []
    if rs.num_images > limits.max_images:
        problems.append(f"settings.num_images {rs.num_images} is over the limit of {limits.max_images}")
    if rs.iterations > limits.max_iterations:
        problems.append(f"settings.iterations {rs.iterations} is over the limit of {limits.max_iterations}")
    batch = rs.simulated_batch_size or recipe.batch_size
    epochs = rs.simulated_epochs or recipe.epochs
    steps = math.ceil(rs.num_images / batch) * epochs
    if steps > limits.max_simulated_steps:
        problems.append(f"{steps} simulated training steps (epochs x batches) are over the limit "
                        f"of {limits.max_simulated_steps}")
    pixels = math.prod(recipe.image_shape)
    if pixels > limits.max_image_pixels:
        problems.append(f"recipe.image_shape {list(recipe.image_shape)} has {pixels} values per "
                        f"image, over the limit of {limits.max_image_pixels}")
    if rs.lr_search and len(rs.lr_search.candidates) > limits.max_lr_candidates:
        problems.append(f"{len(rs.lr_search.candidates)} lr candidates are over the limit of "
                        f"{limits.max_lr_candidates}")
    return problems
