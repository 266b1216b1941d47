"""The dashboard's files at /: client routes fall back to index.html, hashed assets are immutable, the API keeps its JSON 404s."""

from __future__ import annotations

from pathlib import Path

import pytest

INDEX = "<!doctype html><title>dashboard</title><script type=module src=/assets/index-Ab12_x.js></script>"
ASSET = "console.log('dashboard')"


def assert_hardened(headers) -> None:  # type: ignore[no-untyped-def]
    """The dashboard's page runs only its own files, in no frame, and leaks no URL to other sites."""
    policy = dict(part.strip().split(" ", 1) for part in headers["Content-Security-Policy"].split(";") if part.strip())
    assert policy["default-src"] == "'self'" and policy["frame-ancestors"] == "'none'" and policy["object-src"] == "'none'"
    assert "unsafe-inline" not in policy.get("script-src", policy["default-src"])
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["X-Content-Type-Options"] == "nosniff"


@pytest.fixture
def dist(app, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    """A build in a temp dir: these tests are about serving it, whatever the app in it does."""
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text(INDEX)
    (tmp_path / "assets" / "index-Ab12_x.js").write_text(ASSET)
    app.config["DASHBOARD_DIST"] = tmp_path
    return tmp_path


@pytest.mark.parametrize("path", ["/", "/workers", "/system", "/login?next=%2Fworkers", "/recording/7", "/deep/client/route"])
def test_client_routes_get_index_html_revalidated_every_time(client, dist, path: str) -> None:
    with client.get(path) as response:
        assert response.status_code == 200
        assert response.get_data(as_text=True) == INDEX
        assert response.mimetype == "text/html"
        assert response.headers["Cache-Control"] == "no-cache"
        assert_hardened(response.headers)
        etag = response.headers["ETag"]
    with client.get(path, headers={"If-None-Match": etag}) as again:
        assert again.status_code == 304


def test_hashed_assets_are_cached_for_a_year(client, dist) -> None:
    with client.get("/assets/index-Ab12_x.js") as response:
        assert response.status_code == 200
        assert response.get_data(as_text=True) == ASSET
        assert response.mimetype == "text/javascript"
        assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    "path",
    [
        "/assets/index-missing.js",
        "/assets/..%2Findex.html",
        "/assets/.hidden",
        "/robots.txt",
        "/recording/7/old-bundle.js",
        "/api/admin/nope",
        "/api",
        "/video/abc",
        "/videos/7",
        "/video_files/1/nope",
        "/video_segment/x",
        "/live_mpd/x",
        "/time/x",
        "/ping/x",
        "/healthz/x",
        "/metrics/x",
        "/v%C3%ADdeos",
        "/workers%00",
        "/a.b",
    ],
)
def test_server_paths_and_missing_files_keep_their_json_404(client, dist, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.json["code"] == "not_found"


def test_android_routes_are_untouched(client, dist) -> None:
    assert client.get("/videos").json == []
    assert client.post("/videos", json={"title": "x"}).status_code == 201
    assert client.get("/time").mimetype == "text/plain"


def test_a_page_is_only_read(client, dist) -> None:
    response = client.post("/workers")
    assert response.status_code == 405
    assert "code" in response.json


def test_without_a_build_the_root_says_how_to_make_one(client, app, tmp_path: Path) -> None:
    app.config["DASHBOARD_DIST"] = tmp_path / "nothing"
    for path in ("/", "/workers"):
        response = client.get(path)
        assert response.status_code == 503
        assert response.mimetype == "text/html"
        assert "npm ci &amp;&amp; npm run build" in response.get_data(as_text=True)
        assert_hardened(response.headers)
    assert client.get("/assets/index-Ab12_x.js").status_code == 404


def test_the_built_dashboard_is_looked_for_in_the_repository_s_static_dist():
    # The module moved with the layers (server/web/api/spa.py): its path must not count folders up from itself.
    from server.web.api import spa

    assert Path(__file__).resolve().parents[2] / "static" / "dist" == spa.DIST
