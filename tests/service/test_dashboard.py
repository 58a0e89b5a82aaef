"""The dashboard in a real browser (Debian's Chromium via Playwright) against a live
``simudy serve`` and a Celery worker on Postgres, Redis and S3: sign in, upload checkpoints by
picker and by drag and drop, submit an audit through the schema-drawn form (a server error
placed next to its field), watch it succeed, see the grid, score it with the true images, open
the report and download its PDF, cancel a second job while its preview shows, be refused
another team's objects and cross-site writes, sign out, and be told when the key is revoked;
filter the audit trail by an object and download it as CSV. Every main page passes the accessibility checks and is saved as a screenshot."""

from __future__ import annotations

import base64
import io
import json
import re

import httpx
import pytest

from tests.service.browser import accessibility_problems, launch, screenshot
from tests.service.conftest import LiveServer
from tests.service.helpers import RECIPE, tiny_target, upload_pair

pytestmark = pytest.mark.slow
DROP = """([name, b64, zoneId]) => {
  const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
  const data = new DataTransfer();
  data.items.add(new File([bytes], name));
  const zone = document.getElementById(zoneId);
  for (const type of ['dragenter', 'dragover', 'drop'])
    zone.dispatchEvent(new DragEvent(type, {dataTransfer: data, bubbles: true, cancelable: true}));
}"""


@pytest.fixture(scope="module")
def server(service_env, workers, tmp_root):  # noqa: ANN001, ANN201
    workers.start("dashboard-worker")
    live = LiveServer(service_env, tmp_root, "dashboard", SIMUDY_PREVIEW_SECONDS="0.5")
    yield live.url
    live.stop()


@pytest.fixture(scope="module")
def team(service_env):  # noqa: ANN001, ANN201
    """A team of its own, so the file names it uploads are the ones its pages show."""
    import uuid

    from service.crud.teams import create_key, create_team
    from service.db.session import session_scope

    with session_scope() as s:
        made = create_team(s, name=f"dashboard-{uuid.uuid4().hex[:6]}")
        _, key = create_key(s, team=made)
        return {"key": key, "id": made.id, "headers": {"Authorization": f"Bearer {key}"}}


@pytest.fixture(scope="module")
def browser():  # noqa: ANN201
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        from tests.service.conftest import unavailable

        unavailable("playwright is not installed (the test extra)")
    with sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


def _page(browser, server: str):  # noqa: ANN001, ANN202
    context = browser.new_context(base_url=server, viewport={"width": 1280, "height": 900},
                                  accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    return page


def _sign_in(page, key: str) -> None:  # noqa: ANN001
    page.goto("/signin")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()


def _check_accessible(page, name: str) -> None:  # noqa: ANN001
    screenshot(page, name)
    problems = accessibility_problems(page)
    assert not problems, f"{name}: " + "\n".join(problems)


def _fill_job_form(page, *, name: str, iterations: int, image_lr: str) -> None:  # noqa: ANN001
    page.goto("/jobs/new")
    page.get_by_label("Name of this audit").fill(name)
    for role in ("theta0", "thetaf"):
        value = page.locator(f"#{role} option", has_text=f"{role}.safetensors").first.get_attribute("value")
        page.locator(f"#{role}").select_option(value)
    page.get_by_label("architecture").fill("mlp")
    page.get_by_label("num classes").fill("4")
    page.get_by_label("optimizer: lr").fill("0.1")
    # blank: the optimizer's own default (torch's, 0.01 for adamw); its betas in the JSON box
    assert page.get_by_label("optimizer: weight decay").input_value() == ""
    box = json.loads(page.get_by_label("Other recipe fields (JSON)").input_value())
    assert box["optimizer"] == {"betas": [0.9, 0.999]}
    page.get_by_label("epochs", exact=True).fill("2")
    page.get_by_label("batch size", exact=True).fill("2")
    page.get_by_label("Other recipe fields (JSON)").fill('{"arch_options": {"hidden": [32]}, "image_shape": [3, 8, 8]}')
    page.locator("#method").select_option("simudy")
    page.locator("#s-simudy-num_images").fill("4")
    page.locator("#s-simudy-iterations").fill(str(iterations))
    page.locator("#s-simudy-progress_every").fill("5")
    page.locator("#s-simudy-image_lr").fill(image_lr)


def test_an_audit_from_sign_in_to_pdf_report(server, browser, team, teams, tmp_path):
    t0, tf, truth = tiny_target()
    page = _page(browser, server)

    # sign in: redirected there, a wrong key is refused with a message, the right one gets in
    page.goto("/")
    assert page.url.startswith(f"{server}/signin")
    assert page.title() == "Sign in · simudy"
    _check_accessible(page, "01-signin")
    _sign_in(page, "sdk_000000000000_wrong")
    assert "not valid" in page.get_by_role("alert").inner_text()
    _sign_in(page, team["key"])
    page.wait_for_url(f"{server}/jobs")
    cookie = next(c for c in page.context.cookies() if c["name"] == "simudy_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert team["key"] not in page.content() and team["key"] not in page.url

    # checkpoints: theta0 by the file picker, thetaf by drag and drop, a broken and a too-large
    # file refused with the server's message in place
    page.goto("/checkpoints")
    page.set_input_files("#checkpoint-file", files=[{"name": "theta0.safetensors", "mimeType": "application/octet-stream", "buffer": t0}])
    page.evaluate(DROP, ["thetaf.safetensors", base64.b64encode(tf).decode(), "dropzone"])
    page.set_input_files("#checkpoint-file", files=[{"name": "broken.safetensors", "mimeType": "application/octet-stream", "buffer": b"not a checkpoint" * 10}])
    page.set_input_files("#checkpoint-file", files=[{"name": "huge.pt", "mimeType": "application/octet-stream", "buffer": b"\0" * 300_000}])
    uploads = page.locator("#uploads li")
    page.wait_for_function("() => document.querySelectorAll('#uploads li.done, #uploads li.failed').length === 4")
    texts = {uploads.nth(i).locator(".name").inner_text().split(" ")[0]: uploads.nth(i).locator(".message").inner_text()
             for i in range(4)}
    assert texts["theta0.safetensors"].startswith(("Uploaded", "Already uploaded")), texts
    assert texts["thetaf.safetensors"].startswith(("Uploaded", "Already uploaded")), texts
    assert "(422)" in texts["broken.safetensors"], texts
    assert "(413)" in texts["huge.pt"] and "limit" in texts["huge.pt"], texts
    page.wait_for_selector("#checkpoints-table >> text=thetaf.safetensors")
    _check_accessible(page, "02-checkpoints")
    page.get_by_role("link", name="theta0.safetensors").first.click()
    assert page.locator("table.facts").inner_text().count("sha256") == 1
    assert "layers.0.weight" in page.content()

    # new audit: the form opens on the default method (the others selectable); a recipe.json fills
    # the recipe, and choosing the same file again after an edit reloads it
    page.goto("/jobs/new")
    assert page.locator("#method").input_value() == "simudy"
    assert {"simudy", "kkt", "ntk"} <= set(page.locator("#method option").evaluate_all("os => os.map(o => o.value)"))
    assert page.locator('.method-settings[data-method="simudy"]').is_visible()
    recipe_file = [{"name": "recipe.json", "mimeType": "application/json", "buffer": json.dumps(RECIPE).encode()}]
    loaded = "() => document.getElementById('recipe-json').value.includes('arch_options')"
    for _ in range(2):
        page.set_input_files("#recipe-file", files=recipe_file)
        page.wait_for_function(loaded)
        assert page.get_by_label("architecture").input_value() == "mlp"
        assert page.locator("#recipe-file").input_value() == ""  # else the same file fires no change
        page.get_by_label("Other recipe fields (JSON)").fill("{}")

    # new audit: the server's 422 is placed next to the field it names, then the fixed form submits
    _fill_job_form(page, name="browser audit", iterations=30, image_lr="0")
    page.get_by_role("button", name="Submit audit").click()
    error = page.locator("#s-simudy-image_lr-err")
    error.wait_for(state="visible")
    assert "greater than 0" in error.inner_text()
    assert page.locator("#s-simudy-image_lr").get_attribute("aria-invalid") == "true"
    _check_accessible(page, "03-new-audit-with-error")
    page.locator("#s-simudy-image_lr").fill("0.05")
    page.get_by_role("button", name="Submit audit").click()
    page.wait_for_url(re.compile(r".*/jobs/[0-9a-f]{32}$"))
    job_id = page.url.rsplit("/", 1)[1]

    # the job page follows the run to the end and shows the grid and the loss curve
    page.wait_for_selector("#job-status.status-succeeded", timeout=180_000)
    page.wait_for_load_state("load")
    assert page.locator("#job-images").evaluate("img => img.complete && img.naturalWidth > 0")
    assert page.locator("#loss-chart").evaluate("img => img.complete && img.naturalWidth > 0")
    assert "Not scored yet" in page.get_by_test_id("finding").inner_text()

    # scoring: upload the true images; pairs, per-image table and recovered counts appear
    page.set_input_files("#truth-file", files=[{"name": "train_images.npz", "mimeType": "application/octet-stream", "buffer": truth}])
    page.wait_for_selector("#pairs-table tbody tr")
    page.wait_for_load_state("load")
    assert page.locator("#pairs-table tbody tr").count() == 4
    assert "above 0.5" in page.locator("#recovered-counts").inner_text()
    headline = page.get_by_test_id("finding").inner_text()
    assert "training images" in headline and "Not scored" not in headline
    scores = [float(page.locator("#pairs-table tbody tr").nth(i).locator("td").nth(3).inner_text()) for i in range(4)]
    assert scores == sorted(scores, reverse=True)
    _check_accessible(page, "04-job-scored")

    # the report: HTML with the finding, and the PDF download holds the same finding
    with page.expect_download() as download:
        page.get_by_role("link", name="Audit report (PDF)").click()
    pdf = (tmp_path / "report.pdf")
    download.value.save_as(pdf)
    from pypdf import PdfReader

    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-")
    text = " ".join(p.extract_text() for p in PdfReader(io.BytesIO(data)).pages)
    assert " ".join(headline.split()) in " ".join(text.split())
    report = _page(browser, server)
    report.context.add_cookies(page.context.cookies())
    report.goto(f"/v1/jobs/{job_id}/report.html")
    assert report.get_by_test_id("finding").inner_text() == headline
    assert tiny_sha(t0) in report.content() and tiny_sha(tf) in report.content()
    screenshot(report, "05-report")
    assert not [v for v in accessibility_problems(report) if not v.startswith("Tab order")]
    report.context.close()

    # a second, long job: the preview of its images shows while it runs; then it is cancelled
    _fill_job_form(page, name="to cancel", iterations=5000, image_lr="0.05")
    page.get_by_role("button", name="Submit audit").click()
    page.wait_for_url(re.compile(r".*/jobs/[0-9a-f]{32}$"))
    second = page.url.rsplit("/", 1)[1]
    page.wait_for_selector("#job-status.status-running", timeout=120_000)
    page.wait_for_function("() => { const i = document.getElementById('job-images');"
                           " return !i.hidden && i.src.includes('preview.png') && i.naturalWidth > 0; }",
                           timeout=60_000)
    page.wait_for_function("() => document.getElementById('job-progress').value > 0")
    page.wait_for_function("() => { const i = document.getElementById('loss-chart');"
                           " return i.src.includes('at=') && i.complete && i.naturalWidth > 0; }")
    screenshot(page, "06-job-running")
    page.get_by_role("button", name="Cancel job").click()
    page.wait_for_selector("#job-status.status-cancelled", timeout=60_000)

    # the jobs list, filtered by status; the audit trail
    page.goto("/jobs?status=cancelled")
    rows = page.locator("#jobs-table tbody tr")
    assert rows.count() == 1 and rows.first.get_attribute("data-job") == second
    page.goto("/jobs")
    _check_accessible(page, "07-jobs")
    page.goto("/audit")
    trail = page.locator("#audit-table").inner_text()
    for action in ("sign in", "upload", "submit", "score", "cancel", "download"):
        assert action in trail, action
    page.set_viewport_size({"width": 800, "height": 900})  # a narrow window squeezes the columns
    lines = page.locator("#audit-table tbody time").evaluate_all("ts => ts.map(t => t.getClientRects().length)")
    assert set(lines) == {1}, lines  # each timestamp on one line
    page.set_viewport_size({"width": 1280, "height": 900})
    assert page.title() == "Audit trail · simudy"
    _check_accessible(page, "08-audit")

    # a checkpoint that a job uses cannot be deleted: the 409 is explained
    page.goto("/checkpoints")
    page.get_by_role("link", name="thetaf.safetensors").first.click()
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Delete checkpoint").click()
    message = page.locator("#delete-message")
    message.wait_for(state="visible")
    assert "used by" in message.inner_text() and "delete the jobs first" in message.inner_text()

    # another team's objects are refused, in pages and in /v1 with the cookie
    with httpx.Client(base_url=server, headers=teams["b"]) as b:
        b_theta0, b_thetaf = upload_pair(b, teams["b"])
        b_job = b.post("/v1/jobs", json={"thetaf": b_thetaf, "theta0": b_theta0, "recipe": {
            "architecture": "mlp", "arch_options": {"hidden": [32]}, "num_classes": 4, "image_shape": [3, 8, 8],
            "optimizer": {"name": "sgd", "lr": 0.1}, "epochs": 2, "batch_size": 2},
            "settings": {"num_images": 4, "iterations": 5}}).json()["id"]
    assert page.goto(f"/jobs/{b_job}").status == 404
    assert "no such job" in page.content() and page.title() == "Not found · simudy"
    assert page.goto(f"/checkpoints/{b_thetaf}").status == 404
    assert page.goto(f"/v1/jobs/{b_job}/report.pdf").status == 404

    # a write signed in by the cookie but without the page's CSRF token is refused
    status = page.evaluate(f"async () => (await fetch('/v1/jobs/{job_id}/cancel', {{method: 'POST'}})).status")
    assert status == 403
    status = page.evaluate(f"async () => (await fetch('/v1/jobs/{job_id}', {{method: 'DELETE'}})).status")
    assert status == 403
    assert httpx.get(f"{server}/v1/jobs/{job_id}", headers=team["headers"]).status_code == 200

    # sign out: back to the sign-in page, and the old cookie no longer works
    old_cookies = page.context.cookies()
    page.goto("/jobs")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r".*/signin\?reason=signed-out"))
    assert "You signed out" in page.content()
    stale = httpx.get(f"{server}/v1/jobs", cookies={c["name"]: c["value"] for c in old_cookies})
    assert stale.status_code == 401
    page.context.close()


def tiny_sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_the_audit_trail_filtered_by_an_object_downloads_as_csv(server, browser, tmp_path):
    import csv
    import uuid

    from service.crud.teams import create_key, create_team
    from service.db.session import session_scope

    with session_scope() as s:
        _, key = create_key(s, team=create_team(s, name=f"trail-{uuid.uuid4().hex[:6]}"))
    with httpx.Client(base_url=server) as client:
        theta0, thetaf = upload_pair(client, {"Authorization": f"Bearer {key}"})
    page = _page(browser, server)
    _sign_in(page, key)
    page.wait_for_url(f"{server}/jobs")

    # filter by the object (the checkpoint page links there too) and a time from before it
    page.goto(f"/checkpoints/{theta0}")
    page.get_by_role("link", name="every event about this checkpoint").click()
    page.wait_for_url(re.compile(rf".*/audit\?object_id={theta0}$"))
    page.goto("/audit")
    assert page.locator("#audit-table tbody tr").count() == 3  # sign-in and two uploads
    page.get_by_label("Object id").fill(theta0)
    page.get_by_label("From (UTC)").fill("2000-01-01T00:00:00")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(rf".*object_id={theta0}.*"))
    rows = page.locator("#audit-table tbody tr")
    assert rows.count() == 1 and "upload" in rows.first.inner_text() and theta0[:8] in rows.first.inner_text()
    assert page.get_by_label("Object id").input_value() == theta0
    _check_accessible(page, "09-audit-filtered")

    # the CSV link carries the filters, and the page's session downloads it
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    assert re.fullmatch(r"simudy-audit-trail-[0-9a-f]{6}-\d{4}-\d{2}-\d{2}\.csv", download.value.suggested_filename)
    path = tmp_path / "audit.csv"
    download.value.save_as(path)
    rows = list(csv.reader(path.open(newline="", encoding="utf-8")))
    assert rows[0] == ["id", "created_at", "action", "object_type", "object_id", "api_key_id", "key_prefix", "detail"]
    assert [(r[2], r[3], r[4]) for r in rows[1:]] == [("upload", "checkpoint", theta0)]
    assert thetaf not in path.read_text()
    page.context.close()


def test_a_revoked_key_ends_its_sessions_at_once(server, browser, team):
    from service.crud.teams import create_key, revoke_key
    from service.db.models import Team
    from service.db.session import session_scope

    with session_scope() as s:
        _, key = create_key(s, team=s.get(Team, team["id"]))
    page = _page(browser, server)
    _sign_in(page, key)
    page.wait_for_url(f"{server}/jobs")
    with session_scope() as s:
        revoke_key(s, id_or_prefix=key)
    page.goto("/checkpoints")
    assert "/signin" in page.url and "was revoked" in page.content()
    _sign_in(page, key)
    assert "was revoked on" in page.get_by_role("alert").inner_text()
    page.context.close()
