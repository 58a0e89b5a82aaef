"""``simudy admin``: an operator creates teams and keys, finds a key to revoke by listing them
(never the keys themselves), and sees when each was last used. Bad input is one line, exit 2."""

from __future__ import annotations

import json
import uuid

from tests.service.helpers import upload


def _admin(capsys, *args: str) -> tuple[int, str, str]:  # noqa: ANN001
    from simudy.cli import main

    code = main(["admin", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_create_list_use_and_revoke_keys(app_client, capsys):  # noqa: ANN001
    team = f"admin-{uuid.uuid4().hex[:6]}"
    assert _admin(capsys, "create-team", team)[0] == 0
    code, key, err = _admin(capsys, "create-key", "--team", team)
    key = key.strip()
    assert code == 0 and key.startswith("sdk_") and "shown once" in err
    prefix = key[4:].split("_", 1)[0]
    _, other, _ = _admin(capsys, "create-key", "--team", team)

    keys = json.loads(_admin(capsys, "list-keys", "--team", team, "--json")[1])
    assert [k["prefix"] for k in keys] == [prefix, other.strip()[4:].split("_", 1)[0]]
    assert all(k["team"] == team and k["last_used"] is None and k["revoked"] is None for k in keys)
    assert key not in json.dumps(keys)  # a listing never shows a key

    assert upload(app_client, {"Authorization": f"Bearer {key}"}, b"not a checkpoint").status_code == 422
    assert upload(app_client, {"Authorization": f"Bearer {key}"}, _tiny()).status_code in (200, 201)
    used = json.loads(_admin(capsys, "list-keys", "--team", team, "--json")[1])[0]
    assert used["last_used"] is not None  # the upload, from the audit trail

    table = _admin(capsys, "list-keys", "--team", team)[1].splitlines()
    assert table[0].split() == ["prefix", "id", "team", "created", "last_used", "revoked"]
    assert table[1].startswith(prefix) and len(table) == 3

    teams = json.loads(_admin(capsys, "list-teams", "--json")[1])
    assert next(t for t in teams if t["name"] == team)["live_keys"] == 2

    assert _admin(capsys, "revoke-key", prefix)[0] == 0
    live = json.loads(_admin(capsys, "list-keys", "--team", team, "--json")[1])
    assert [k["prefix"] for k in live] == [other.strip()[4:].split("_", 1)[0]]
    every = json.loads(_admin(capsys, "list-keys", "--team", team, "--all", "--json")[1])
    assert every[0]["prefix"] == prefix and every[0]["revoked"] is not None
    assert next(t for t in json.loads(_admin(capsys, "list-teams", "--json")[1])
                if t["name"] == team)["live_keys"] == 1


def test_admin_errors_are_one_line(service_env, capsys):  # noqa: ANN001
    assert _admin(capsys, "list-keys", "--team", "no-such-team") == (
        2, "", "simudy admin: error: no team named 'no-such-team'\n")
    code, _, err = _admin(capsys, "revoke-key", "sdk_nothere")
    assert code == 2 and err == "simudy admin: error: no API key with id or prefix 'sdk_nothere'\n"
    team = f"admin-{uuid.uuid4().hex[:6]}"
    _admin(capsys, "create-team", team)
    assert _admin(capsys, "create-team", team) == (2, "", f"simudy admin: error: team {team!r} already exists\n")
    assert _admin(capsys, "list-keys", "--team", team) == (0, "no keys (--all shows revoked ones)\n", "")


def _tiny() -> bytes:
    from tests.service.helpers import tiny_target

    return tiny_target()[0]
