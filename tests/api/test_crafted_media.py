"""Crafted uploads that lie to the probe (issue 15, item 4): the encode is bounded whatever the probe said.

The inputs are made here with ffmpeg (never committed): MPEG-TS pieces concatenated with their clocks
restarting (probe: one piece; decode: all of them), and a TS whose head is small and tail large.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select

from server import create_app
from server.core.wire import Claim, WorkerRef
from server.domain import lifecycle
from server.infra.models import Attempt, Segment, SegmentState
from server.worker.encoding import encode
from server.worker.local import LocalOrigin
from tests.harness.android import new_video_body
from tests.harness.stack import upload
from tests.harness.tree import tree

FFMPEG = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]


def ts_piece(path: Path, *, size: str = "320x240", seconds: float = 3.0, offset: float = 0.0) -> Path:
    """Write a phone-like MPEG-TS piece (H.264 + AAC) whose clock starts at `offset` seconds."""
    lavfi = ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30:duration={seconds}"]
    lavfi += ["-f", "lavfi", "-i", f"sine=duration={seconds}"]
    codecs = ["-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-c:a", "aac", "-output_ts_offset", f"{offset:g}"]
    subprocess.run([*FFMPEG, *lavfi, *codecs, "-f", "mpegts", str(path)], check=True)
    return path


@pytest.fixture
def app(make_config, gearmand):  # type: ignore[no-untyped-def]
    # Small limits keep the crafted files cheap: 8 s and 640x480 stand for 20 s and 4K.
    app = create_app(make_config(GEARMAN_SERVERS=(gearmand.address,), MAX_SEGMENT_SECONDS=8.0, MAX_SOURCE_PIXELS=640 * 480))
    yield app
    app.extensions["team03"].close()


@pytest.fixture
def video_id(app) -> int:  # type: ignore[no-untyped-def]
    return app.test_client().post("/videos", json=new_video_body("crafted")).json["video_id"]


def encode_segment(app, video_id: int, segment_id: int) -> tuple[str, Segment, int]:  # type: ignore[no-untyped-def]
    """Claim and encode one segment as a worker with the media tree does; return (outcome, segment row, attempts)."""
    services = app.extensions["team03"]
    origin = LocalOrigin(services, WorkerRef(None, "crafted-test"))
    with services.sessions() as session:
        claim = lifecycle.start_attempt(services, session, video_id, segment_id, origin.worker)
    assert isinstance(claim, Claim), claim
    outcome = encode(origin, claim, services.config)
    with services.sessions() as session:
        segment = session.scalars(select(Segment).where(Segment.video_id == video_id, Segment.segment_id == segment_id)).one()
        attempts = len(session.scalars(select(Attempt).where(Attempt.segment_pk == segment.id)).all())
        session.expunge(segment)
    return outcome, segment, attempts


def test_ts_pieces_whose_clock_restarts_are_refused_at_upload(app, video_id, tmp_path):  # type: ignore[no-untyped-def]
    piece = ts_piece(tmp_path / "piece.ts").read_bytes()
    response = upload(app.test_client(), video_id, 0, piece * 10, "ts")
    assert response.status_code == 422, response.json
    assert "not one recording" in response.json["message"] and "go back" in response.json["message"]
    assert upload(app.test_client(), video_id, 0, piece, "ts").status_code == 201  # one piece is one recording


def test_an_encode_reads_no_further_than_max_segment_seconds_and_fails_as_bad_media(app, video_id, tmp_path):  # type: ignore[no-untyped-def]
    piece = ts_piece(tmp_path / "piece.ts").read_bytes()
    assert upload(app.test_client(), video_id, 0, piece, "ts").status_code == 201
    # The stored original becomes the concatenation (as if accepted before the upload check): 30 s behind a 3 s probe.
    original = tree(app.extensions["team03"]).original(video_id, 0, "ts")
    original.write_bytes(piece * 10)
    outcome, segment, attempts = encode_segment(app, video_id, 0)
    assert outcome.startswith("failed (media)"), outcome
    assert "lasts 8.0" in (segment.error or ""), segment.error  # read up to the limit (-t), then refused
    assert (segment.status, attempts) == (SegmentState.FAILED, 1)  # for good: no crash loop


def test_a_ts_whose_tail_is_larger_than_max_source_pixels_fails_the_encode_as_bad_media(app, video_id, tmp_path):  # type: ignore[no-untyped-def]
    # The probe's stream analysis reads 5 s (ffmpeg's analyzeduration): a longer head hides the tail.
    head = ts_piece(tmp_path / "head.ts", seconds=5.5).read_bytes()
    tail = ts_piece(tmp_path / "tail.ts", size="1280x720", seconds=1.0, offset=5.5).read_bytes()  # the clock goes on
    response = upload(app.test_client(), video_id, 0, head + tail, "ts")
    assert response.status_code == 201, response.json  # the probe sees the 320x240 head
    outcome, segment, attempts = encode_segment(app, video_id, 0)
    assert outcome.startswith("failed (media)"), outcome
    assert "1280x720 has more pixels than MAX_SOURCE_PIXELS" in (segment.error or ""), segment.error
    assert (segment.status, attempts) == (SegmentState.FAILED, 1)
