"""RemoteOrigin against a local HTTP server that misbehaves on purpose: cut, corrupted, 5xx, 410, 401."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest
from flask import Flask, Response, request, send_file

from server.core.errors import WorkerUnauthorized
from server.core.wire import AttemptGone, Claim, Skip
from server.web.devserver import make_dev_server
from server.worker.remote import Limits, OriginUnavailable, RemoteOrigin, TransferCorrupted

TOKEN = "t" * 43
SOURCE = bytes(range(256)) * 4096  # 1 MiB


@dataclass
class Script:
    """What the fake API does next; each list is consumed one answer per request."""

    source: list[str] = field(default_factory=list)  # "cut", "corrupt", "503", "410"; then the real bytes
    put: list[int] = field(default_factory=list)  # statuses to answer before storing; then 201
    json: list[int] = field(default_factory=list)
    ranges: list[str | None] = field(default_factory=list)
    stored: dict[str, bytes] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)


def fake_api(script: Script, source: Path) -> Flask:
    app = Flask("fake_worker_api")

    @app.before_request
    def token():  # type: ignore[no-untyped-def]
        script.calls.append(f"{request.method} {request.path}")
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return {"message": "bad token"}, 401
        return None

    @app.get("/api/worker/attempts/<int:attempt>/source")
    def get_source(attempt: int):  # type: ignore[no-untyped-def]
        script.ranges.append(request.headers.get("Range"))
        what = script.source.pop(0) if script.source else "ok"
        if what == "cut":  # promise every byte, send a third, hang up
            cut = SOURCE[: len(SOURCE) // 3]
            return Response(iter([cut]), headers={"Content-Length": str(len(SOURCE))}, mimetype="application/octet-stream")
        if what == "corrupt":
            return Response(b"\0" * len(SOURCE), mimetype="application/octet-stream")
        if what in ("503", "410"):
            return {"message": what}, int(what)
        return send_file(source, conditional=True, mimetype="application/octet-stream")

    @app.put("/api/worker/attempts/<int:attempt>/outputs/<name>")
    def put_output(attempt: int, name: str):  # type: ignore[no-untyped-def]
        body = request.get_data()
        if script.put:
            return {"message": "scripted"}, script.put.pop(0)
        assert hashlib.sha256(body).hexdigest() == request.headers["X-Content-SHA256"]
        script.stored[name] = body
        return {"name": name}, 201

    @app.post("/api/worker/attempts")
    def claim():  # type: ignore[no-untyped-def]
        status = script.json.pop(0) if script.json else 409
        return ({"skip": "already encoded", "code": "nothing_to_do"}, 409) if status == 409 else ({"message": "x"}, status)

    @app.post("/api/worker/attempts/<int:attempt>/heartbeat")
    def heartbeat(attempt: int):  # type: ignore[no-untyped-def]
        status = script.json.pop(0) if script.json else 200
        return {"message": "scripted", "lease_expires_at": "2030-01-01T00:00:00"}, status

    return app


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Script, str]]:
    script = Script()
    (tmp_path / "work").mkdir()  # the worker's directory, apart from the server's file
    source = tmp_path / "original.mp4"
    source.write_bytes(SOURCE)
    server = make_dev_server(fake_api(script, source), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield script, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def claim_for(size: int = len(SOURCE), sha: str | None = None) -> Claim:
    return Claim(
        attempt_id=7,
        video_id=1,
        segment_id=0,
        lease_expires_at=datetime(2030, 1, 1),
        source_extension="mp4",
        source_size=size,
        source_sha256=sha or hashlib.sha256(SOURCE).hexdigest(),
        source_info="{}",
        renditions=(),  # only the encoder reads them
        outputs=("HIGH.mp4",),
    )


def origin(url: str, token: str = TOKEN, retries: int = 3) -> RemoteOrigin:
    slept: list[float] = []
    limits = Limits(retries=retries, backoff=0.01, read_timeout=5)
    found = RemoteOrigin(url, token, scratch=Path("/nonexistent"), limits=limits, sleep=slept.append)
    found.slept = slept  # type: ignore[attr-defined]
    return found


def test_a_cut_download_resumes_with_range_and_is_verified(served, tmp_path: Path) -> None:
    script, url = served
    script.source = ["cut"]
    path = origin(url).fetch_source(claim_for(), tmp_path / "work")
    assert path.read_bytes() == SOURCE
    # The second request asked only for what was missing: from what the first one had written (whole chunks).
    assert script.ranges[0] is None and script.ranges[1] is not None and len(script.ranges) == 2
    resumed_at = int(script.ranges[1].removeprefix("bytes=").removesuffix("-"))
    assert 0 < resumed_at <= len(SOURCE) // 3


def test_a_corrupted_download_is_deleted_and_fetched_again(served, tmp_path: Path) -> None:
    script, url = served
    script.source = ["corrupt", "503"]
    path = origin(url).fetch_source(claim_for(), tmp_path / "work")
    assert path.read_bytes() == SOURCE
    assert script.ranges == [None, None, None]  # never resumed on top of bad bytes


def test_a_download_that_never_matches_gives_up_and_leaves_no_file(served, tmp_path: Path) -> None:
    _script, url = served
    with pytest.raises(TransferCorrupted):
        origin(url, retries=2).fetch_source(claim_for(sha="0" * 64), tmp_path / "work")
    assert list((tmp_path / "work").iterdir()) == []


def test_a_download_of_an_attempt_that_is_over_is_attempt_gone(served, tmp_path: Path) -> None:
    script, url = served
    script.source = ["410"]
    with pytest.raises(AttemptGone):
        origin(url).fetch_source(claim_for(), tmp_path / "work")


def test_an_upload_is_retried_after_5xx_and_a_hash_mismatch(served, tmp_path: Path) -> None:
    script, url = served
    script.put = [500, 422]
    output = tmp_path / "HIGH.mp4"
    output.write_bytes(b"encoded" * 1000)
    remote = origin(url)
    remote.put_output(claim_for(), "HIGH.mp4", output)
    assert script.stored == {"HIGH.mp4": output.read_bytes()}
    assert remote.slept == [0.01, 0.02]  # type: ignore[attr-defined] - backoff doubles


def test_uploads_give_up_after_the_retries(served, tmp_path: Path) -> None:
    script, url = served
    script.put = [503] * 10
    output = tmp_path / "HIGH.mp4"
    output.write_bytes(b"x")
    with pytest.raises(OriginUnavailable):
        origin(url, retries=2).put_output(claim_for(), "HIGH.mp4", output)
    assert len([c for c in script.calls if c.startswith("PUT")]) == 3


def test_heartbeat_410_is_attempt_gone_and_401_is_unauthorized(served) -> None:
    script, url = served
    script.json = [410]
    with pytest.raises(AttemptGone):
        origin(url).heartbeat(claim_for(), 0.5)
    with pytest.raises(WorkerUnauthorized):
        origin(url, token="u" * 43).heartbeat(claim_for(), 0.5)


def test_a_claim_refused_with_409_is_a_skip(served) -> None:
    from server.core.jobs import SegmentJob

    _script, url = served
    assert origin(url).claim(SegmentJob(1, 0)) == Skip("already encoded")


def test_nothing_listening_is_origin_unavailable_after_bounded_retries() -> None:
    from tests.harness.services import free_port

    remote = origin(f"http://127.0.0.1:{free_port()}", retries=2)
    with pytest.raises(OriginUnavailable):
        remote.alive()
    assert len(remote.slept) == 2  # type: ignore[attr-defined]


def test_a_claim_whose_ticket_is_refused_drops_the_job_as_a_skip(served) -> None:
    from server.core.jobs import SegmentJob

    script, url = served
    script.json.append(403)
    assert origin(url).claim(SegmentJob(1, 0, 1_700_000_000, "f" * 64)) == Skip("ticket refused: x")
