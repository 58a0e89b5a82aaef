"""The side-by-side harness patches the authors' code minimally and refuses anything else; the
report renders side-by-side and quality results; the quality variants resolve."""

from __future__ import annotations

import json

import pytest

from bench.authors import AuthorsCodeError, prepare_checkout
from bench.quality import variant_settings
from bench.report import render
from core.errors import SimudyError


def _fake_checkout(root, stty=True, cuda=True):
    root.mkdir()
    (root / "utils.py").write_text("import os\n" + (
        "_, term_width = os.popen('stty size', 'r').read().split()\n" if stty else "term_width = 80\n"))
    (root / "recons.py").write_text("device = 'cpu'\nx = [p.data.to(\"cuda\").reshape(-1) for p in []]\n"
                                    if cuda else "x = 1\n")
    (root / "models").mkdir()
    (root / "models" / "pretrained.pth").write_bytes(b"big")
    return root


def test_authors_checkout_gets_exactly_the_two_headless_edits(tmp_path):
    dest = prepare_checkout(_fake_checkout(tmp_path / "src"), tmp_path / "work")
    utils = (dest / "utils.py").read_text()
    assert "or ['24', '80']" in utils and "stty size" in utils
    assert 'p.data.to(device)' in (dest / "recons.py").read_text()
    assert not (dest / "models" / "pretrained.pth").exists()  # weights are not copied
    src = (tmp_path / "src" / "recons.py").read_text()
    assert '"cuda"' in src  # the original is untouched


@pytest.mark.parametrize("kw", [dict(stty=False), dict(cuda=False)])
def test_an_unknown_version_of_the_authors_code_is_refused(tmp_path, kw):
    with pytest.raises(AuthorsCodeError):
        prepare_checkout(_fake_checkout(tmp_path / "src", **kw), tmp_path / "work")
    with pytest.raises(AuthorsCodeError):
        prepare_checkout(tmp_path / "nowhere", tmp_path / "work2")


def test_report_renders_side_by_side_and_quality(tmp_path):
    row = {"seconds_per_update": 0.25, "min_seconds": 0.2, "max_seconds": 0.3, "timed_updates": 3,
           "peak_memory_bytes": 2**30, "baseline_memory_bytes": 2**29, "engine": "low-rank MLP",
           "threads": 1, "speedup_vs_authors": 4.0, "speedup_per_round": [3.9, 4.1],
           "memory_ratio_vs_authors": 0.5}
    authors = {**row, "seconds_per_update": 1.0, "engine": "authors", "speedup_vs_authors": 1.0,
               "speedup_per_round": [1.0, 1.0], "peak_memory_bytes": 2**31, "memory_ratio_vs_authors": 1.0}
    (tmp_path / "side-by-side-mlp-20-cpu.json").write_text(json.dumps({
        "case": "side-by-side", "commit": "abcdef0123", "dirty": False, "rounds": 2, "updates_per_round": 3,
        "created": "now", "command": "simudy bench side-by-side --authors PATH",
        "results": [{"case": "mlp-20", "threads": 1, "num_images": 20, "unrolled_steps": 20,
                     "rows": {"authors": authors, "simudy": row}}]}))
    (tmp_path / "quality-mlp-20-600.json").write_text(json.dumps({
        "case": "quality", "commit": "0123456789", "dirty": True, "command": "simudy bench quality", "rows": [
            {"target": "mlp-20", "variant": "default", "updates": 600, "seeds": [0, 1], "ssim": [0.6, 0.62],
             "mean": 0.61, "spread": 0.02, "seconds_per_update": 0.3}]}))
    text = render(tmp_path, tmp_path / "BENCHMARKS.md")
    assert "| mlp-20 | 20 | 1 | simudy | low-rank MLP | 0.250 |" in text and "3.90 4.10" in text
    assert "| mlp-20 | default | 600 | 0, 1 | 0.600, 0.620 | 0.610 | 0.020 | 0.300 | 01234567+dirty |" in text
    assert "No results yet." in text  # no case rows: side-by-side and quality are not cases


def test_quality_variants_resolve_the_budget():
    assert variant_settings("lr0.03-one-cosine", 600) == {"image_lr": 0.03, "cosine_t_max": 600}
    assert variant_settings("default", 600) == {}
    with pytest.raises(SimudyError):
        variant_settings("nope", 600)
    assert variant_settings("lr0.03-one-cosine-truncated5", 200)["gradient"] == "truncated"
    assert variant_settings("sgd-surrogate-half", 600) == {"sgd_surrogate_updates": 300}
