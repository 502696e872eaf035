"""The interactive docs load nothing from another site (issue 19: they came from a CDN)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from aisopod_session.service.app import create_app


def test_the_docs_page_and_its_assets_are_served_here() -> None:
    client = TestClient(create_app())
    page = client.get("/docs")
    assert page.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources, page.text
    assert all(source.startswith("/docs/assets/") for source in sources), sources
    assert "cdn" not in page.text.lower() and "https://" not in page.text
    for source in sources:
        asset = client.get(source)
        assert asset.status_code == 200, source
        assert len(asset.content) > 500, source
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/redoc").status_code == 404  # no packaged ReDoc: off
