"""The SimuDy loop: it learns, stops on request, resumes exactly, searches the lr, ranks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.errors import RecipeError, ReconstructionFailed
from core.lr_search import pick_best, score_candidate, search, with_lr
from core.outputs import finalize
from core.ranking import split_significant
from core.settings import LrSearch, ReconstructionSettings, parse_settings
from core.simudy import SimuDy, balanced_labels
from core.state_io import state_from_bytes, state_to_bytes


def settings(**kw) -> ReconstructionSettings:
    base = {"num_images": 10, "iterations": 6, "progress_every": 2}
    base.update(kw)
    return ReconstructionSettings.model_validate(base)


def test_balanced_labels():
    labels = balanced_labels(25, 10, torch.Generator().manual_seed(0))
    counts = torch.bincount(labels, minlength=10)
    assert counts.tolist() == [3] * 5 + [2] * 5
    assert not torch.equal(labels, torch.arange(25) % 10)  # shuffled once


def test_loss_decreases_and_progress_is_reported(mlp_case):
    recipe, theta0, thetaf, _, _ = mlp_case
    recon = SimuDy(theta0, thetaf, recipe, settings(iterations=30, image_lr=0.05, progress_every=10))
    seen = []
    assert recon.run(on_progress=seen.append)
    assert [p.iteration for p in seen] == [10, 20, 30]
    assert seen[-1].fraction == 1.0 and seen[-1].eta_seconds == 0
    losses = [h["loss"] for h in recon.history_dicts()]
    assert losses[-1] < losses[0] - 0.05
    assert 0 <= recon.history_dicts()[-1]["cosine"] <= 1


def test_resumed_run_equals_uninterrupted_run(mlp_case):
    recipe, theta0, thetaf, _, _ = mlp_case
    s = settings(iterations=8, clipping={"until_iteration": 4}, cosine_t_max=3)
    straight = SimuDy(theta0, thetaf, recipe, s)
    straight.run()

    first = SimuDy(theta0, thetaf, recipe, s)
    calls = iter(range(100))
    assert not first.run(should_stop=lambda: next(calls) >= 5)
    assert first.iteration == 5
    blob = state_to_bytes(first.state_dict())
    del first
    resumed = SimuDy(theta0, thetaf, recipe, s)
    resumed.load_state_dict(state_from_bytes(blob))
    assert resumed.run()
    torch.testing.assert_close(resumed.images, straight.images, rtol=0, atol=0)
    assert resumed.history_dicts() == straight.history_dicts()


def test_state_of_other_shape_is_refused(mlp_case):
    recipe, theta0, thetaf, _, _ = mlp_case
    a = SimuDy(theta0, thetaf, recipe, settings(num_images=10))
    b = SimuDy(theta0, thetaf, recipe, settings(num_images=12))
    with pytest.raises(RecipeError, match="does not match num_images"):
        b.load_state_dict(a.state_dict())


def test_non_finite_loss_is_a_readable_failure(mlp_case):
    recipe, theta0, thetaf, _, _ = mlp_case
    recon = SimuDy(theta0, thetaf, recipe, settings(image_lr=1e30, clipping={"enabled": False}))
    with pytest.raises(ReconstructionFailed, match="non-finite at iteration"):
        recon.run()


def test_bf16_on_cpu_is_refused(mlp_case):
    recipe, theta0, thetaf, _, _ = mlp_case
    with pytest.raises(RecipeError, match="bf16"):
        SimuDy(theta0, thetaf, recipe, settings(precision="bf16", device="cpu"))


def test_settings_errors_name_the_field():
    with pytest.raises(RecipeError, match="num_images"):
        parse_settings({"iterations": 3})
    with pytest.raises(RecipeError, match="unknown method 'nope'"):
        parse_settings({"num_images": 2, "method": "nope"})


def test_lr_search_scores_every_candidate_and_picks_the_lowest(mlp_case):
    recipe, theta0, thetaf, _, _ = mlp_case
    s = settings(lr_search=LrSearch(candidates=[0.05, 0.5, 0.0005], updates=4, score_window=2).model_dump())
    best, scores = search(theta0, thetaf, recipe, s)
    assert [c["lr"] for c in scores] == [0.05, 0.5, 0.0005]
    assert all(len(c["losses"]) == 4 for c in scores)
    assert best == min(scores, key=lambda c: c["score"])["lr"]
    # the winner's full run starts from the same images as its candidate run
    winner = score_candidate(theta0, thetaf, recipe, s, best)
    full = SimuDy(theta0, thetaf, recipe, with_lr(s, best).model_copy(update={"iterations": 4}))
    full.run()
    assert [h["loss"] for h in full.history_dicts()] == winner["losses"]
    assert pick_best([{"lr": 1, "score": 0.3}, {"lr": 2, "score": 0.1}]) == 2


def test_split_significant_separates_small_norms():
    norms = np.array([1.5, 1.2, 1.9, 0.3, 1.4, 0.5, 1.6, 0.2])
    assert split_significant(norms).tolist() == [True, True, True, False, True, False, True, False]
    assert split_significant(np.array([1.0, 1.1, 0.9, 1.2])).all()


def test_finalize_writes_images_labels_and_ranking(mlp_case):
    recipe, theta0, thetaf, _, _ = mlp_case
    recon = SimuDy(theta0, thetaf, recipe, settings(iterations=3))
    recon.run()
    out = finalize(recon)
    import io

    with np.load(io.BytesIO(out.npz_bytes)) as z:
        assert z["x"].dtype == np.uint8 and z["x"].shape == (10, 8, 8, 3)
        assert z["y"].tolist() == recon.labels.tolist()
        assert z["gradient_norm"].shape == (10,) and (z["gradient_norm"] > 0).all()
    assert out.grid_png.startswith(b"\x89PNG")
    assert out.loss_csv.splitlines()[0] == "iteration,loss,cosine,tv"
    assert len(out.loss_csv.splitlines()) == 4
    assert out.summary["ranking"]["estimated_num_images"] <= 10
