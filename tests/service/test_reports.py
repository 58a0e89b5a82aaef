"""The live preview and the audit report of a job run by a real worker: ``preview.png`` appears
while the job runs, ``report.html`` and ``report.pdf`` say the finding (before and after scoring),
the fingerprints, the recipe and provenance, and another team gets 404; a failed job's report
and page say its error and nothing else. The finding's wording is checked on its own. The last PDF is kept under ``out/reports/`` to look at."""

from __future__ import annotations

import hashlib
import io
import re
from html import unescape

import pytest

from service.reports.finding import finding_for
from tests.service.browser import ROOT
from tests.service.helpers import final, submit, tiny_target, wait_job

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def worker(workers):  # noqa: ANN001, ANN201
    return workers.start("reports", SIMUDY_PREVIEW_SECONDS="0.2")


def _pdf_text(data: bytes) -> str:
    from pypdf import PdfReader

    return " ".join(" ".join(p.extract_text() for p in PdfReader(io.BytesIO(data)).pages).split())


def test_preview_then_report_before_and_after_scoring(app_client, teams, worker):
    a, b = teams["a"], teams["b"]
    job = submit(app_client, a, iterations=400, progress_every=5)
    wait_job(app_client, a, job["id"], lambda j: j["progress"]["iteration"] > 0 or final(j), timeout=120)
    preview = app_client.get(f"/v1/jobs/{job['id']}/preview.png", headers=a)
    assert preview.status_code == 200 and preview.content.startswith(PNG_MAGIC)
    assert app_client.get(f"/v1/jobs/{job['id']}/preview.png", headers=b).status_code == 404
    job = wait_job(app_client, a, job["id"], final, timeout=180)
    assert job["status"] == "succeeded", job

    t0, tf, truth = tiny_target()
    html = app_client.get(f"/v1/jobs/{job['id']}/report.html", headers=a)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in html.headers["content-security-policy"]
    for needle in ("Not scored yet", hashlib.sha256(t0).hexdigest(), hashlib.sha256(tf).hexdigest(),
                   '"architecture": "mlp"', "Loss curve", "Unknown-N ranking", "simudy 0.1.0", "commit"):
        assert needle in unescape(html.text), needle

    scored = app_client.post(f"/v1/jobs/{job['id']}/truth", headers=a,
                             files={"file": ("truth.npz", truth)}).json()["metrics"]
    headline = finding_for(status="succeeded", metrics=scored, summary=job["summary"]).headline
    html = unescape(app_client.get(f"/v1/jobs/{job['id']}/report.html", headers=a).text)
    assert headline in html and "Best pairs" in html and "Not scored yet" not in html
    pdf = app_client.get(f"/v1/jobs/{job['id']}/report.pdf", headers=a)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-")
    text = _pdf_text(pdf.content)
    assert headline in text and hashlib.sha256(tf).hexdigest() in text
    out = ROOT / "out" / "reports"
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.pdf").write_bytes(pdf.content)
    (out / "report.html").write_text(html)

    for path in ("report.html", "report.pdf", "loss.svg"):
        assert app_client.get(f"/v1/jobs/{job['id']}/{path}", headers=b).status_code == 404
    svg = app_client.get(f"/v1/jobs/{job['id']}/loss.svg", headers=a)
    assert svg.status_code == 200 and b"<svg" in svg.content
    trail = app_client.get("/v1/audit", headers=a, params={"action": "download"}).json()["data"]
    assert {"report.html", "report.pdf"} <= {e["detail"]["file"] for e in trail if e["object_id"] == job["id"]}


def test_a_run_shorter_than_progress_every_is_charted_from_every_recorded_step(app_client, teams, worker):
    """Only one point is sampled (at the last step) when iterations < progress_every; the charts
    of the finished job draw loss.csv's rows, one per step."""
    a = teams["a"]
    job = submit(app_client, a, iterations=5, progress_every=10)
    job = wait_job(app_client, a, job["id"], final, timeout=120)
    assert job["status"] == "succeeded", job
    assert len(app_client.get(f"/v1/jobs/{job['id']}/loss.csv", headers=a).text.splitlines()) == 6
    html = unescape(app_client.get(f"/v1/jobs/{job['id']}/report.html", headers=a).text)
    assert "Metric curves over 5 recorded points; at iteration 5" in html
    svg = app_client.get(f"/v1/jobs/{job['id']}/loss.svg", headers=a).text
    assert max(len(re.findall(r"\bL ", d)) for d in re.findall(r'<path d="([^"]*)"', svg)) == 4  # 5 points


def test_the_finding_says_what_was_recovered_and_what_that_means():
    metrics = {"num_originals": 20, "recovered_above_0.3": 12, "recovered_above_0.5": 5, "ssim_paper_mean": 0.41}
    high = finding_for(status="succeeded", metrics=metrics, summary={})
    assert high.level == "high"
    assert high.headline == ("5 of 20 training images were recovered from the weights with similarity "
                             "above 0.5 (12 above 0.3).")
    assert "not proof that nothing was memorised" in high.caveat
    some = finding_for(status="succeeded", metrics={**metrics, "recovered_above_0.5": 0}, summary={})
    assert some.level == "some" and some.headline.startswith("12 of 20 training images were partly")
    none = finding_for(status="succeeded", metrics={**metrics, "recovered_above_0.3": 0,
                                                    "recovered_above_0.5": 0}, summary={})
    assert none.level == "none" and "None of the 20" in none.headline
    unscored = finding_for(status="succeeded", metrics=None, summary={
        "num_images": 40, "ranking": {"estimated_num_images": 22}})
    assert unscored.level == "unscored" and "22 of them as significant" in unscored.detail
    assert "rank" not in unscored.detail and "rank" not in high.detail
    spanned = finding_for(status="succeeded", metrics=metrics, summary={"input_span_rank": 20})
    assert spanned.detail == ("Mean similarity over all 20 training images: 0.410. The first layer's "
                              "weight change has rank 20: the network was trained on at least 20 "
                              "linearly independent images, and the reconstructions were kept in the "
                              "space they span.")
    failed = finding_for(status="failed", metrics=None, summary=None, error="thetaf: tensor 'w' contains NaN or Inf")
    assert failed.level == "failed" and failed.headline == "The job failed: no reconstruction was made."
    assert failed.detail == "Error: thetaf: tensor 'w' contains NaN or Inf"
    cancelled = finding_for(status="cancelled", metrics=None, summary=None)
    assert cancelled.level == "cancelled" and "cancelled" in cancelled.headline and not cancelled.detail
    for stopped in (failed, cancelled):
        assert "grid" not in stopped.caveat and "upload" not in stopped.caveat
    assert finding_for(status="running", metrics=None, summary=None).level == "not-finished"


def test_a_failed_job_is_reported_with_its_error_and_nothing_to_look_at(app_client, teams, worker,
                                                                         monkeypatch):
    """The report and the job page of a failed job state the failure and its error, and point to
    no grid, scoring or empty chart."""
    from fastapi.testclient import TestClient
    from safetensors.torch import load as load_st
    from safetensors.torch import save as save_st

    from api.main import create_app
    from api.routes import checkpoints
    from core.checkpoints import read_manifest
    from tests.service.helpers import RECIPE, final, settings, upload, wait_job

    t0, tf, _ = tiny_target()
    poisoned = load_st(tf)
    poisoned["layers.1.weight"][0, 0] = float("nan")
    a = teams["a"]
    # a checkpoint stored before uploads were scanned for NaN: the worker refuses it, the job fails
    monkeypatch.setattr(checkpoints, "read_upload", read_manifest)
    ids = [upload(app_client, a, data).json()["id"] for data in (t0, save_st(poisoned))]
    monkeypatch.undo()
    r = app_client.post("/v1/jobs", headers=a, json={"theta0": ids[0], "thetaf": ids[1],
                                                     "recipe": RECIPE, "settings": settings()})
    job = wait_job(app_client, a, r.json()["id"], final, timeout=60)
    assert job["status"] == "failed", job
    error = "thetaf: tensor 'layers.1.weight' contains NaN or Inf"
    html = unescape(app_client.get(f"/v1/jobs/{job['id']}/report.html", headers=a).text)
    text = _pdf_text(app_client.get(f"/v1/jobs/{job['id']}/report.pdf", headers=a).content)
    for doc in (html, text):
        assert "The job failed: no reconstruction was made." in doc and error in doc
        for wrong in ("No finding", "reconstruction grid", "upload the training images", "Loss curve"):
            assert wrong not in doc, wrong

    with TestClient(create_app(sweep=False), follow_redirects=False) as browser:
        form = browser.get("/signin")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
        browser.post("/signin", data={"api_key": teams["a_key"], "csrf_token": token, "next": "/jobs"})
        page = unescape(browser.get(f"/jobs/{job['id']}").text)
    assert "The job failed: no reconstruction was made." in page and error in page
    assert "No images yet" not in page and 'id="loss-chart"' not in page
    assert "No loss was recorded: the job failed" in page
