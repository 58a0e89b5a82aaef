"""Dashboard sessions over HTTP (no browser): the sign-in form's CSRF check, wrong and revoked
keys, the HttpOnly cookie and its server-side row (only a hash), /v1 with the cookie (writes
need the CSRF header), sign-out, expiry and revocation ending a session at once, and no open
redirect after sign-in."""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from tests.service.helpers import tiny_target


@pytest.fixture()
def key(service_env):  # noqa: ANN001, ANN201
    """A fresh team and key per test (tests revoke keys)."""
    from service.crud.teams import create_key, create_team
    from service.db.session import session_scope

    with session_scope() as s:
        team = create_team(s, name=f"web-{uuid.uuid4().hex[:6]}")
        _, made = create_key(s, team=team)
    return made


@pytest.fixture()
def client(service_env):  # noqa: ANN001, ANN201
    from fastapi.testclient import TestClient

    from api.main import create_app

    with TestClient(create_app(sweep=False), follow_redirects=False) as c:
        yield c


def _form_token(client) -> str:  # noqa: ANN001
    r = client.get("/signin")
    assert r.status_code == 200 and "simudy_signin" in r.cookies
    return re.search(r'name="csrf_token" value="([^"]+)"', r.text).group(1)


def sign_in(client, key: str, next_path: str = "/jobs"):  # noqa: ANN001, ANN201
    return client.post("/signin", data={"api_key": key, "csrf_token": _form_token(client), "next": next_path})


def _csrf(client) -> str:  # noqa: ANN001
    page = client.get("/jobs")
    assert page.status_code == 200, page.text
    return re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', page.text).group(1)


def test_sign_in_sets_an_httponly_session_cookie_and_stores_only_its_hash(client, key):
    from service.db.models import WebSession
    from service.db.session import session_scope

    r = sign_in(client, key)
    assert r.status_code == 303 and r.headers["location"] == "/jobs"
    header = r.headers["set-cookie"]
    assert "simudy_session=" in header and "HttpOnly" in header and "SameSite=lax" in header
    token = client.cookies["simudy_session"]
    with session_scope() as s:
        hashes = s.scalars(select(WebSession.token_hash)).all()
    assert hashlib.sha256(token.encode()).hexdigest() in hashes and token not in hashes
    page = client.get("/jobs")
    assert page.status_code == 200 and key not in page.text and token not in page.text


def test_sign_in_refuses_a_forged_form_and_a_wrong_key_with_a_message(client, key):
    _form_token(client)
    forged = client.post("/signin", data={"api_key": key, "csrf_token": "guessed"})
    assert forged.status_code == 403 and "expired or came from another site" in forged.text
    assert "simudy_session" not in client.cookies
    wrong = sign_in(client, "sdk_000000000000_nope")
    assert wrong.status_code == 401 and "That API key is not valid" in wrong.text


def test_v1_accepts_the_cookie_but_writes_need_the_csrf_header(client, key):
    sign_in(client, key)
    assert client.get("/v1/checkpoints").status_code == 200
    t0, _, _ = tiny_target()
    refused = client.post("/v1/checkpoints", files={"file": ("t0.safetensors", t0)})
    assert refused.status_code == 403 and "X-CSRF-Token" in refused.json()["detail"]
    wrong = client.post("/v1/checkpoints", files={"file": ("t0.safetensors", t0)},
                        headers={"X-CSRF-Token": "0" * 64})
    assert wrong.status_code == 403
    ok = client.post("/v1/checkpoints", files={"file": ("t0.safetensors", t0)},
                     headers={"X-CSRF-Token": _csrf(client)})
    assert ok.status_code == 201, ok.text


def test_sign_out_ends_the_session(client, key):
    sign_in(client, key)
    token = client.cookies["simudy_session"]
    csrf = _csrf(client)
    assert client.post("/signout", data={"csrf_token": "wrong"}).headers["location"] == "/jobs"
    assert client.get("/v1/jobs").status_code == 200  # a forged sign-out did nothing
    out = client.post("/signout", data={"csrf_token": csrf})
    assert out.status_code == 303 and out.headers["location"] == "/signin?reason=signed-out"
    client.cookies.set("simudy_session", token)
    assert client.get("/v1/jobs").status_code == 401
    assert client.get("/jobs").headers["location"].startswith("/signin")


def test_revoking_the_key_or_expiry_ends_the_session_at_once(client, key):
    from service.crud.teams import revoke_key
    from service.db.models import WebSession, utcnow
    from service.db.session import session_scope

    sign_in(client, key)
    with session_scope() as s:
        mine = hashlib.sha256(client.cookies["simudy_session"].encode()).hexdigest()
        s.execute(update(WebSession).where(WebSession.token_hash == mine)
                  .values(expires_at=utcnow() - timedelta(seconds=1)))
    assert "expired" in client.get("/v1/jobs").json()["detail"]
    assert client.get("/jobs").headers["location"] == "/signin?reason=expired&next=%2Fjobs"
    sign_in(client, key)
    with session_scope() as s:
        revoke_key(s, id_or_prefix=key)
    r = client.get("/v1/jobs")
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    assert "reason=revoked" in client.get("/checkpoints").headers["location"]
    again = sign_in(client, key)
    assert again.status_code == 401 and "was revoked on" in again.text


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "\\\\evil"])
def test_sign_in_never_redirects_off_the_site(client, key, target):
    assert sign_in(client, key, next_path=target).headers["location"] == "/jobs"


def test_pages_without_a_session_go_to_sign_in_and_bearer_still_works(client, key):
    r = client.get("/checkpoints")
    assert r.status_code == 303 and r.headers["location"] == "/signin?next=%2Fcheckpoints"
    assert client.get("/v1/jobs", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert client.get("/v1/jobs").status_code == 401
    page = client.get("/signin")
    assert "script-src 'self'" in page.headers["content-security-policy"]
