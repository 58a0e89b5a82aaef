"""The audit trail for a compliance review, over HTTP on the real services: filters by object,
key and time range (combined, kept across pages, a bad value answered 422 naming it), the
dashboard page's filters, and the CSV export (header, order, the caller's team only, filters,
cells a spreadsheet would run as formulas written as text, a long trail streamed whole)."""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from tests.service.helpers import RECIPE, settings, tiny_target, upload

COLUMNS = ["id", "created_at", "action", "object_type", "object_id", "api_key_id", "key_prefix", "detail"]
FORMULA = "=SUM(1+2)*cmd|'calc'!A0.safetensors"


def _new_team(name: str, keys: int = 1) -> SimpleNamespace:
    from service.crud.teams import create_key, create_team
    from service.db.session import session_scope

    with session_scope() as s:
        team = create_team(s, name=f"{name} {uuid.uuid4().hex[:6]}")
        made = [create_key(s, team=team) for _ in range(keys)]
        return SimpleNamespace(id=team.id, name=team.name, key_ids=[row.id for row, _ in made],
                               prefixes=[row.prefix for row, _ in made], keys=[key for _, key in made],
                               headers=[{"Authorization": f"Bearer {key}"} for _, key in made])


@pytest.fixture(scope="module")
def trail(app_client, service_env):  # noqa: ANN001, ANN201
    """A team with two keys and a known trail, oldest first: key 1 uploads theta0 (named like a
    spreadsheet formula) and thetaf, key 2 submits a job, key 1 cancels it, key 2 deletes it."""
    team = _new_team("compliance review", keys=2)
    h1, h2 = team.headers
    t0, tf, _ = tiny_target()
    theta0 = upload(app_client, h1, t0, name=FORMULA).json()["id"]
    thetaf = upload(app_client, h1, tf).json()["id"]
    r = app_client.post("/v1/jobs", headers=h2, json={"theta0": theta0, "thetaf": thetaf, "recipe": RECIPE,
                                                      "settings": settings(iterations=5)})
    assert r.status_code == 201, r.text
    job = r.json()["id"]
    assert app_client.post(f"/v1/jobs/{job}/cancel", headers=h1).status_code == 200
    assert app_client.delete(f"/v1/jobs/{job}", headers=h2).status_code == 204
    events = app_client.get("/v1/audit", headers=h1).json()["data"][::-1]
    assert [(e["action"], e["object_id"]) for e in events] == [
        ("upload", theta0), ("upload", thetaf), ("submit", job), ("cancel", job), ("delete", job)]
    times = [e["created_at"] for e in events]
    assert [_parse(t) for t in times] == sorted({_parse(t) for t in times})  # distinct, in order
    return SimpleNamespace(team=team, h1=h1, h2=h2, theta0=theta0, thetaf=thetaf, job=job,
                           ids=[e["id"] for e in events], times=times, events=events)


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _ids(client, headers: dict, **params) -> list[int]:  # noqa: ANN001, ANN003
    r = client.get("/v1/audit", headers=headers, params=params)
    assert r.status_code == 200, r.text
    return [e["id"] for e in r.json()["data"]]


def _csv(response) -> list[list[str]]:  # noqa: ANN001
    assert response.status_code == 200, response.text
    return list(csv.reader(io.StringIO(response.text)))


def test_filters_by_object_key_and_time_range_combine(app_client, trail):
    e1, e2, e3, e4, e5 = trail.ids
    t1, t2, t3, t4, t5 = trail.times
    k1, k2 = trail.team.key_ids
    h = trail.h2  # every key of the team sees the team's whole trail
    assert _ids(app_client, h, object_id=trail.job) == [e5, e4, e3]
    assert _ids(app_client, h, object_id=trail.theta0) == [e1]
    assert _ids(app_client, h, api_key_id=k2) == [e5, e3]
    assert _ids(app_client, h, object_id=trail.job, api_key_id=k1) == [e4]
    assert _ids(app_client, h, object_id=trail.job, action="delete") == [e5]
    # since inclusive, until exclusive; a naive time is UTC and an offset is honoured
    assert _ids(app_client, h, since=t2, until=t4) == [e3, e2]
    naive_t2 = _parse(t2).replace(tzinfo=None).isoformat()
    t4_in_paris_summer = _parse(t4).astimezone(timezone(timedelta(hours=2))).isoformat()
    assert _ids(app_client, h, since=naive_t2, until=t4_in_paris_summer) == [e3, e2]
    assert _ids(app_client, h, since=t4) == [e5, e4]
    assert _ids(app_client, h, until=t2) == [e1]
    assert _ids(app_client, h, since=t3, until=t3) == []
    assert _ids(app_client, h, since=t2, api_key_id=k1) == [e4, e2]
    assert _ids(app_client, h, since=t2, api_key_id=k1, action="upload") == [e2]
    assert _ids(app_client, h, object_id=trail.job, since=t1, until=t5, api_key_id=k2) == [e3]
    # another team's filters find nothing of this team's, and this team's nothing of theirs
    other = _new_team("other")
    assert _ids(app_client, other.headers[0], object_id=trail.job) == []
    assert _ids(app_client, h, api_key_id=other.key_ids[0]) == []


def test_paging_keeps_the_filters(app_client, trail):
    seen, cursor = [], None
    while True:
        params = {"object_id": trail.job, "limit": 1, **({"cursor": cursor} if cursor else {})}
        page = app_client.get("/v1/audit", headers=trail.h1, params=params).json()
        assert page["count"] == 1
        seen += [e["id"] for e in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == trail.ids[:1:-1]
    page = app_client.get("/v1/audit", headers=trail.h1,
                          params={"api_key_id": trail.team.key_ids[0], "since": trail.times[1], "limit": 1}).json()
    rest = app_client.get("/v1/audit", headers=trail.h1,
                          params={"api_key_id": trail.team.key_ids[0], "since": trail.times[1],
                                  "cursor": page["next_cursor"]}).json()
    assert [e["id"] for e in page["data"] + rest["data"]] == [trail.ids[3], trail.ids[1]]


@pytest.mark.parametrize("path", ["/v1/audit", "/v1/audit/export.csv"])
def test_bad_filters_are_422_naming_the_parameter(app_client, trail, path):
    def refused(**params) -> str:  # noqa: ANN003
        r = app_client.get(path, headers=trail.h1, params=params)
        assert r.status_code == 422, (params, r.status_code, r.text)
        return r.json()["detail"]

    message = refused(since="2025-03-01T00:00:00Z", until="2025-02-01T00:00:00")
    assert "since (2025-03-01T00:00:00+00:00) is after until (2025-02-01T00:00:00+00:00)" in message
    assert "since" in refused(since="yesterday") and "'yesterday' is not an ISO 8601" in refused(since="yesterday")
    assert "until" in refused(until="2025-13-01T00:00:00Z")
    assert "since" in refused(since="1700000000")  # a Unix time is not ISO 8601
    assert "since" in refused(since="0001-01-01T00:00:00+01:00")  # before year 1 in UTC
    assert "object_id" in refused(object_id="../../etc")
    assert "api_key_id" in refused(api_key_id="x\x00")
    assert "action" in refused(action="export")


def test_csv_export_is_the_whole_filtered_trail_of_the_callers_team(app_client, trail, teams):
    team = trail.team
    before = _ids(app_client, trail.h1, limit=500)
    r = app_client.get("/v1/audit/export.csv", headers=trail.h1)
    rows = _csv(r)
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    filename = f"simudy-audit-{team.name.replace(' ', '-')}-{today}.csv"
    assert r.headers["content-disposition"] == f'attachment; filename="{filename}"'
    assert rows[0] == COLUMNS
    assert [int(row[0]) for row in rows[1:]] == before  # newest first, the whole trail, no more
    by_id = {int(row[0]): dict(zip(COLUMNS, row)) for row in rows[1:]}
    for event in trail.events:
        row = by_id[event["id"]]
        assert row["created_at"].endswith("Z") and _parse(row["created_at"]) == _parse(event["created_at"])
        assert (row["action"], row["object_type"], row["object_id"], row["api_key_id"]) == (
            event["action"], event["object_type"], event["object_id"], event["api_key_id"])
        assert row["key_prefix"] == team.prefixes[team.key_ids.index(event["api_key_id"])]
        assert (json.loads(row["detail"]) if row["detail"] else None) == event["detail"]
        assert ": " not in row["detail"] and ", " not in row["detail"]  # compact
    # the formula-like file name is inside the JSON cell; no cell starts like a formula
    upload_detail = by_id[trail.ids[0]]["detail"]
    assert upload_detail.startswith("{") and json.loads(upload_detail)["filename"] == FORMULA
    assert not [cell for row in rows for cell in row if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]

    # the export is recorded (with its file and filters); it is in the next export, not its own
    filtered = _csv(app_client.get("/v1/audit/export.csv", headers=trail.h2,
                                   params={"object_id": trail.job, "api_key_id": team.key_ids[1]}))
    assert [int(row[0]) for row in filtered[1:]] == [trail.ids[4], trail.ids[2]]
    exports = app_client.get("/v1/audit", headers=trail.h1, params={"action": "download"}).json()["data"]
    assert [(e["object_type"], e["object_id"], e["api_key_id"]) for e in exports] == [
        ("audit_trail", team.id, team.key_ids[1]), ("audit_trail", team.id, team.key_ids[0])]
    assert exports[0]["detail"] == {"file": filename,
                                    "filters": f"object_id={trail.job}&api_key_id={team.key_ids[1]}"}
    assert exports[1]["detail"] == {"file": filename}
    again = _csv(app_client.get("/v1/audit/export.csv", headers=trail.h1, params={"since": trail.times[4]}))
    assert [int(row[0]) for row in again[1:]] == [exports[0]["id"], exports[1]["id"], trail.ids[4]]

    # another team sees none of it, filtered or not, and this team none of theirs
    theirs = _csv(app_client.get("/v1/audit/export.csv", headers=teams["b"]))
    assert theirs[0] == COLUMNS
    ours = set(by_id) | {e["id"] for e in exports}
    assert not ours & {int(row[0]) for row in theirs[1:]}
    assert not {trail.job, trail.theta0, trail.thetaf, team.id} & {row[4] for row in theirs[1:]}
    assert _csv(app_client.get("/v1/audit/export.csv", headers=teams["b"],
                               params={"object_id": trail.job})) == [COLUMNS]


def test_a_cell_that_a_spreadsheet_would_run_is_written_as_text():
    from api.audit_csv import as_text, event_row
    from service.db.models import AuditEvent

    for cell in ("=1+1", "+1", "-2", "@SUM(A1)", "\t=1", "\r=1"):
        assert as_text(cell) == "'" + cell
    for cell in ("", "upload", "{\"filename\":\"=1+1\"}", "2025-01-01T00:00:00.000000Z", "a=b"):
        assert as_text(cell) == cell
    event = AuditEvent(id=7, created_at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc), action="upload",
                       object_type="checkpoint", object_id="-1", api_key_id="@k", detail=None)
    assert event_row(event, {"@k": "+p"}) == ["7", "2025-01-02T03:04:05.000000Z", "upload", "checkpoint",
                                              "'-1", "'@k", "'+p", ""]


def test_a_long_trail_is_exported_whole_across_pages(app_client, service_env):
    """More events than one page of the export (filtered and not): none lost, none twice."""
    from api.audit_csv import EXPORT_PAGE
    from service.crud import audit
    from service.db.session import session_scope

    team = _new_team("long trail")
    objects = [uuid.uuid4().hex, uuid.uuid4().hex]
    with session_scope() as s:
        made = [audit.record(s, team_id=team.id, api_key_id=team.key_ids[0], action="download",
                             object_type="job", object_id=objects[i % 2], detail={"file": f"{i}.png"})
                for i in range(2 * EXPORT_PAGE + 5)]
        s.flush()
        ids = [e.id for e in made][::-1]
    everything = _csv(app_client.get("/v1/audit/export.csv", headers=team.headers[0]))
    assert [int(row[0]) for row in everything[1:]] == ids
    one_object = _csv(app_client.get("/v1/audit/export.csv", headers=team.headers[0],
                                     params={"object_id": objects[0]}))
    assert [int(row[0]) for row in one_object[1:]] == ids[::-1][::2][::-1]
    assert len(one_object) - 1 == EXPORT_PAGE + 3


@pytest.fixture()
def browser_session(service_env):  # noqa: ANN001, ANN201
    """A client of its own signed in to the dashboard (the cookie stays off the shared client)."""
    from fastapi.testclient import TestClient

    from api.main import create_app
    from api.sessions import SESSION_COOKIE
    from service.crud.web_sessions import create_session
    from service.db.models import ApiKey
    from service.db.session import session_scope

    team = _new_team("dashboard trail")
    with session_scope() as s:
        token = create_session(s, key=s.get(ApiKey, team.key_ids[0]), lifetime_seconds=600)
    with TestClient(create_app(sweep=False), follow_redirects=False) as client:
        client.cookies.set(SESSION_COOKIE, token)
        yield client, team


def test_the_audit_page_filters_and_keeps_them_on_older_events(browser_session):
    from service.crud import audit
    from service.db.session import session_scope

    client, team = browser_session
    wanted, other = uuid.uuid4().hex, uuid.uuid4().hex
    with session_scope() as s:
        for i in range(110):
            audit.record(s, team_id=team.id, api_key_id=team.key_ids[0], action="download",
                         object_type="job", object_id=(wanted, other)[i % 2], detail={"file": "grid.png"})
    page = client.get("/audit", params={"object_id": wanted, "since": "2000-01-01T00:00", "until": ""})
    assert page.status_code == 200, page.text
    assert page.text.count(f'href="/jobs/{wanted}"') == 50 and f"/jobs/{other}" not in page.text
    assert 'value="2000-01-01T00:00:00"' in page.text  # the form shows the filters it applied
    csv_link = re.search(r'id="audit-csv" href="([^"]+)"', page.text).group(1).replace("&amp;", "&")
    assert csv_link == f"/v1/audit/export.csv?object_id={wanted}&since=2000-01-01T00%3A00%3A00Z"
    older = re.search(r'id="older" href="([^"]+)"', page.text).group(1).replace("&amp;", "&")
    assert older.startswith(f"/audit?object_id={wanted}&since=2000-01-01T00%3A00%3A00Z&before=")
    rest = client.get(older)
    assert rest.text.count(f'href="/jobs/{wanted}"') == 5 and f"/jobs/{other}" not in rest.text
    assert 'id="older"' not in rest.text
    exported = _csv(client.get(csv_link))  # the page's cookie is enough to download
    assert len(exported) == 1 + 55 and {row[4] for row in exported[1:]} == {wanted}

    bad = client.get("/audit", params={"since": "2025-02-01T00:00", "until": "2025-01-01T00:00"})
    assert bad.status_code == 422 and 'role="alert"' in bad.text
    assert "since (2025-02-01T00:00:00+00:00) is after until (2025-01-01T00:00:00+00:00)" in bad.text
    assert 'id="audit-table"' not in bad.text and 'id="audit-csv"' not in bad.text
