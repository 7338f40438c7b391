"""/docs works on a machine without internet: every asset it names is served here."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

_URL = re.compile(r"""(?:src|href|url)\s*[=:(]\s*['"]?([^'")\s>]+)""")


def test_docs_reference_only_local_assets(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and "swagger" in page.text.lower()
    assert "http://" not in page.text and "https://" not in page.text
    assets = [u for u in _URL.findall(page.text) if u.startswith("/")]
    assert {"/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"} <= set(assets)
    for asset in assets:
        answer = client.get(asset)
        assert answer.status_code == 200, asset
        assert len(answer.content) > 100
    assert client.get("/openapi.json").json()["info"]["title"] == "tokenserver"
