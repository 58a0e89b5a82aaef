"""The SimuDy loop: it learns, stops on request, resumes exactly, searches the lr, ranks; and
the pipeline that drives every method the same way."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

from core.errors import RecipeError, ReconstructionFailed
from core.execution import Execution
from core.lr_search import best_index
from core.methods import parse_settings
from core.methods.base import MethodInputs, balanced_labels
from core.pipeline import Pipeline
from core.ranking import split_significant
from core.state_io import state_from_bytes, state_to_bytes

from .conftest import EXECUTION, TEST_DEVICE, make_simudy, simudy_settings


def test_balanced_labels():
    labels = balanced_labels(25, 10, torch.Generator().manual_seed(0))
    counts = torch.bincount(labels, minlength=10)
    assert counts.tolist() == [3] * 5 + [2] * 5
    assert not torch.equal(labels, torch.arange(25) % 10)  # shuffled once


def test_loss_decreases_and_progress_is_reported(mlp_case):
    recipe, theta0, thetaf, _, _ = mlp_case
    recon = make_simudy(recipe, theta0, thetaf, iterations=30, image_lr=0.05, progress_every=10)
    seen = []
    assert recon.run(on_progress=seen.append)
    assert [p.iteration for p in seen] == [10, 20, 30]
    assert seen[-1].fraction == 1.0 and seen[-1].eta_seconds == 0
    assert set(seen[-1].metrics) == {"loss", "cosine", "tv"}
    losses = [h["loss"] for h in recon.history_rows()]
    assert len(losses) == 30  # every step is recorded, though synced every 10
    assert losses[-1] < losses[0] - 0.05
    assert 0 <= recon.history_rows()[-1]["cosine"] <= 1


def test_preview_images_are_the_current_images_in_unit_range(mlp_case):
    recipe, theta0, thetaf, _, _ = mlp_case
    recon = make_simudy(recipe, theta0, thetaf, iterations=3, image_lr=0.05, progress_every=1)
    before = recon.preview_images()
    recon.run()
    after = recon.preview_images()
    assert before.shape == after.shape == (recon.settings.num_images, *recipe.image_shape)
    assert after.device.type == "cpu" and 0 <= after.min() and after.max() <= 1
    assert not torch.equal(before, after)  # it follows the optimisation
    assert torch.equal(after, recon.result().images)  # unranked, the same pixels as the result


def test_resumed_run_equals_uninterrupted_run(mlp_case):
    recipe, theta0, thetaf, _, _ = mlp_case
    kw = dict(iterations=8, clipping={"until_iteration": 4}, cosine_t_max=3)
    straight = make_simudy(recipe, theta0, thetaf, **kw)
    straight.run()

    first = make_simudy(recipe, theta0, thetaf, **kw)
    calls = iter(range(100))
    assert not first.run(should_stop=lambda: next(calls) >= 5)
    assert first.iteration == 5
    blob = state_to_bytes(first.state_dict())
    del first
    resumed = make_simudy(recipe, theta0, thetaf, **kw)
    resumed.load_state_dict(state_from_bytes(blob))
    assert resumed.run()
    torch.testing.assert_close(resumed.images, straight.images, rtol=0, atol=0)
    assert resumed.history_rows() == straight.history_rows()


def test_state_of_other_shape_is_refused(mlp_case):
    recipe, theta0, thetaf, _, _ = mlp_case
    a = make_simudy(recipe, theta0, thetaf, num_images=10)
    b = make_simudy(recipe, theta0, thetaf, num_images=12)
    with pytest.raises(RecipeError, match="does not match num_images"):
        b.load_state_dict(a.state_dict())


def test_non_finite_loss_is_a_readable_failure(mlp_case):
    recipe, theta0, thetaf, _, _ = mlp_case
    recon = make_simudy(recipe, theta0, thetaf, image_lr=1e3, init_std=1e3, cosine_t_max=100,
                        clipping={"enabled": False})
    with pytest.raises(ReconstructionFailed, match="non-finite at iteration"):
        recon.run()


def test_bf16_runs_close_to_fp32(mlp_case):
    """bf16 is a precision a job may ask for; it runs on the GPU and on the CPU (autocast,
    fp32 accumulation), and its loss stays within 0.02 of fp32's over a few updates on this
    tiny MLP."""
    recipe, theta0, thetaf, _, _ = mlp_case
    fp32 = make_simudy(recipe, theta0, thetaf, iterations=4)
    bf16 = make_simudy(recipe, theta0, thetaf, iterations=4, precision="bf16")
    assert bf16.precision == "bf16" and fp32.precision == "fp32"
    fp32.run(), bf16.run()
    for a, b in zip(fp32.history_rows(), bf16.history_rows()):
        assert abs(a["loss"] - b["loss"]) < 0.02


def test_execution_default_precision_applies_unless_the_job_asks(mlp_case):
    recipe, theta0, thetaf, _, _ = mlp_case
    executor = Execution(device=TEST_DEVICE.type, precision="bf16")
    assert make_simudy(recipe, theta0, thetaf, executor).precision == "bf16"
    assert make_simudy(recipe, theta0, thetaf, executor, precision="fp32").precision == "fp32"


def test_settings_errors_name_the_field():
    with pytest.raises(RecipeError, match="num_images"):
        parse_settings({"iterations": 3})
    with pytest.raises(RecipeError, match="unknown method 'nope'"):
        parse_settings({"num_images": 2, "method": "nope"})
    with pytest.raises(RecipeError, match="adam_betas"):
        parse_settings({"num_images": 2, "adam_betas": [2, -1]})
    with pytest.raises(RecipeError, match="seed"):
        parse_settings({"num_images": 2, "seed": 10**30})
    with pytest.raises(RecipeError, match="candidates"):
        parse_settings({"num_images": 2, "lr_search": {"candidates": [-0.1]}})
    with pytest.raises(RecipeError, match="not valid JSON"):
        parse_settings('{"num_images": 2, "image_lr": NaN}')
    with pytest.raises(RecipeError, match="device"):  # execution is not a job setting
        parse_settings({"num_images": 2, "device": "cuda"})


def test_a_boolean_is_never_a_number_nor_a_number_a_boolean():
    """Lax pydantic takes JSON true for the integer 1 (and 1 for true): every user model is
    strict about these three types, field by field, nested ones and the recipe included."""
    from core.methods import method_names, settings_model
    from core.recipe import parse_recipe

    for name in method_names():
        base = {"method": name, "num_images": 2, "iterations": 3}
        for field, prop in settings_model(name).model_json_schema()["properties"].items():
            types = {prop.get("type")} | {p.get("type") for p in prop.get("anyOf", [])}
            wrong = True if types & {"integer", "number"} else 1 if "boolean" in types else None
            if wrong is not None:
                with pytest.raises(RecipeError, match=f"^invalid settings: {field}: Input should be a valid"):
                    parse_settings({**base, field: wrong})
    for nested, where in [({"clipping": {"enabled": 1}}, "clipping.enabled"),
                          ({"adam_betas": [True, 0.9]}, "adam_betas.0"),
                          ({"lr_search": {"updates": True}}, "lr_search.updates")]:
        with pytest.raises(RecipeError, match=f"^invalid settings: {where}: Input should be a valid"):
            parse_settings({"num_images": 2, **nested})
    recipe = {"architecture": "mlp", "image_shape": [3, 8, 8]}
    for extra, where in [({"epochs": True}, "epochs"), ({"shuffle": 1}, "shuffle"),
                         ({"optimizer": {"nesterov": 0}}, "optimizer.nesterov"),
                         ({"image_shape": [3, True, 8]}, "image_shape.1"),
                         ({"lr_schedule": {"name": "step", "step_size": True}}, "lr_schedule.step.step_size")]:
        with pytest.raises(RecipeError, match=f"^invalid recipe: {where}: Input should be a valid"):
            parse_recipe({**recipe, **extra})
    # what strictness must not refuse: JSON arrays for tuples, integers for floats
    s = parse_settings({"num_images": 2, "adam_betas": [0, 0.5], "image_lr": 1})
    assert s.adam_betas == (0.0, 0.5) and s.image_lr == 1.0
    r = parse_recipe({**recipe, "optimizer": {"lr": 1, "nesterov": True}})
    assert r.image_shape == (3, 8, 8) and r.optimizer.lr == 1.0


def test_lr_search_scores_every_candidate_and_picks_the_lowest(mlp_case):
    recipe, theta0, thetaf, _, _ = mlp_case
    s = simudy_settings(lr_search={"candidates": [0.05, 0.5, 0.0005], "updates": 4, "score_window": 2})
    pipeline = Pipeline(MethodInputs(recipe, thetaf, theta0), s, EXECUTION)
    best = pipeline.search_lr()
    scores = pipeline.lr_scores
    assert [c["lr"] for c in scores] == [0.05, 0.5, 0.0005]
    assert all(len(c["losses"]) == 4 for c in scores)
    assert best == min(scores, key=lambda c: c["score"])["lr"]
    # the winner's full run starts from the same images as its candidate run
    winner = pipeline.score_candidate(best)
    full = pipeline.start(lr=best)
    full.run(until=4)
    assert [h["loss"] for h in full.history_rows()] == winner["losses"]
    assert full.settings.simulated_lr == best and full.settings.lr_search is None
    assert best_index([0.3, 0.1, None, 0.1]) == 1 and best_index([None]) is None


def test_pipeline_resumes_exactly_and_keeps_the_lr_scores(mlp_case):
    recipe, theta0, thetaf, _, _ = mlp_case
    inputs = MethodInputs(recipe, thetaf, theta0)
    s = simudy_settings(iterations=6, lr_search={"candidates": [0.05, 0.01], "updates": 2})
    straight = Pipeline(inputs, s, EXECUTION)
    straight.start(lr=straight.search_lr())
    straight.run()

    first = Pipeline(inputs, s, EXECUTION)
    first.start(lr=first.search_lr())

    class StopAt3:
        def on_progress(self, p): pass
        def should_stop(self): return first.method.iteration >= 3

    assert not first.run(StopAt3())
    blob = first.state_bytes()
    again = Pipeline(inputs, s, EXECUTION)
    again.start(state=blob)
    assert again.run()
    a, b = straight.finalize(), again.finalize()
    assert a.loss_csv == b.loss_csv
    assert b.summary["lr_search"] == a.summary["lr_search"] and b.summary["simulated_lr"] == a.summary["simulated_lr"]


def test_split_significant_separates_small_norms():
    norms = np.array([1.5, 1.2, 1.9, 0.3, 1.4, 0.5, 1.6, 0.2])
    assert split_significant(norms).tolist() == [True, True, True, False, True, False, True, False]
    assert split_significant(np.array([1.0, 1.1, 0.9, 1.2])).all()


def test_finalize_writes_images_labels_and_ranking(mlp_case, tmp_path):
    recipe, theta0, thetaf, _, _ = mlp_case
    pipeline = Pipeline(MethodInputs(recipe, thetaf, theta0), simudy_settings(iterations=3), EXECUTION)
    method = pipeline.start()
    pipeline.run()
    out = pipeline.finalize()
    with np.load(io.BytesIO(out.npz_bytes)) as z:
        assert z["x"].dtype == np.uint8 and z["x"].shape == (10, 8, 8, 3)
        assert z["y"].tolist() == method.labels.tolist()
        assert z["gradient_norm"].shape == (10,) and (z["gradient_norm"] > 0).all()
    assert out.grid_png.startswith(b"\x89PNG")
    assert out.loss_csv.splitlines()[0] == "iteration,loss,cosine,tv"
    assert len(out.loss_csv.splitlines()) == 4
    assert out.summary["ranking"]["estimated_num_images"] <= 10
    out.write(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png", "loss.csv", "reconstruction.npz",
                                                          "summary.json"]
    assert json.loads((tmp_path / "summary.json").read_text())["settings"]["iterations"] == 3
