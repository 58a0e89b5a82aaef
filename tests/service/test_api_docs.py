"""``/docs`` is the API reference rendered on the server: complete, and readable offline (no
CDN script or stylesheet, under the dashboard's CSP)."""

from __future__ import annotations

import re


def test_docs_list_every_endpoint_and_schema_without_third_party_code(app_client):
    spec = app_client.get("/openapi.json").json()
    r = app_client.get("/docs")  # public, like /openapi.json
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    html = r.text
    for path, item in spec["paths"].items():
        for method in item:
            assert f"<code>{method.upper()} {path}</code>" in html, (method, path)
    for name in spec["components"]["schemas"]:
        assert f'id="schema-{name}"' in html, name
    # every type that names a schema links to it, and nothing is loaded from elsewhere
    for anchor in set(re.findall(r'href="#(schema-[^"]+)"', html)):
        assert f'id="{anchor}"' in html, anchor
    assert not re.search(r'<(script|link|img)[^>]+(src|href)="(https?:)?//', html)
    # the submit endpoint shows its body, its limits and its documented errors
    assert 'href="#schema-JobCreate"' in html
    assert "413" in html and "the body is larger than the service accepts" in html
    assert app_client.get("/redoc").status_code == 404
