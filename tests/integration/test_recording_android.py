"""The unchanged Android app pointed at a recording key's URL (http://host/k/<key>) on the real pipeline, under both
RECORDING settings: its exact requests, out-of-order and duplicate segments, an early end, its list, its MPD and
every URL it builds from them; and a quota refusing an upload once the stored originals and renditions fill it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import requests
from sqlalchemy import select

from server.core.states import Visibility
from server.domain import keys
from server.infra.models import RecordingKey, Segment, SegmentState, Video
from tests.harness.android import APP_HEADERS, SEGMENT_KEYS, VIDEO_KEYS, android_player, new_video_body, segment_upload
from tests.harness.media import make_segment
from tests.harness.services import ROOT
from tests.harness.stack import Stack
from tests.harness.tree import tree


@pytest.fixture
def make_stack(make_config, gearmand) -> Iterator[object]:  # type: ignore[no-untyped-def]
    stacks: list[Stack] = []

    def factory(**overrides: object) -> Stack:
        config = make_config(GEARMAN_SERVERS=(gearmand.address,), GAP_TIMEOUT=4.0, **overrides)
        stacks.append(Stack(config, gearmand))
        return stacks[-1]

    yield factory
    for stack in stacks:
        stack.close()


def _mint(stack: Stack, name: str, **limits: object) -> str:
    with stack.services.sessions() as session:
        return keys.mint(stack.services, session, name, by="test", **limits)[1]  # type: ignore[arg-type]


class Phone:
    """The app's recorder calls, over HTTP, against its configured server URL."""

    def __init__(self, server: str) -> None:
        self.server = server
        self.http = requests.Session()

    def create(self) -> requests.Response:
        return self.http.post(f"{self.server}/videos", json=new_video_body("field"), headers=APP_HEADERS, timeout=20)

    def upload(self, vid: int, segment_id: int, data: bytes) -> requests.Response:
        body, content_type = segment_upload(segment_id, data)
        headers = {**APP_HEADERS, "Content-Type": content_type}
        return self.http.post(f"{self.server}/video_segment/{vid}", data=body, headers=headers, timeout=20)

    def end(self, vid: int, last: int) -> requests.Response:
        return self.http.post(f"{self.server}/video_end/{vid}", data={"last_segment_id": str(last)}, headers=APP_HEADERS, timeout=20)

    def get(self, path: str) -> requests.Response:
        return self.http.get(self.server + path, headers=APP_HEADERS, timeout=20)


@pytest.mark.parametrize("recording", ["open", "keys"])
def test_the_android_app_records_and_plays_through_its_key_url(make_stack, recording, segment_files, tmp_path):
    stack = make_stack(RECORDING=recording)
    key = _mint(stack, "field-phone", visibility=Visibility.PRIVATE)  # its own videos, whatever their visibility
    stack.start_worker(tmp_path / "worker.log")
    host = stack.serve()
    phone = Phone(f"{host}/k/{key}")
    anonymous = Phone(host)
    if recording == "keys":
        assert anonymous.create().status_code == 401

    created = phone.create()
    assert created.status_code == 201 and set(created.json()) == VIDEO_KEYS
    vid = created.json()["video_id"]
    data = [p.read_bytes() for p in segment_files]
    # The retry queue reorders and repeats; the end comes before the last segments (retried until a 2xx).
    for step in ("0", "2", "2", "end", "1", "3", "1"):
        answer = phone.end(vid, 3) if step == "end" else phone.upload(vid, int(step), data[int(step)])
        assert answer.status_code == (200 if step == "end" else 201), (step, answer.text)
        assert set(answer.json()) == (VIDEO_KEYS if step == "end" else SEGMENT_KEYS)
    with stack.services.sessions() as session:
        assert len(session.scalars(select(Segment).where(Segment.video_id == vid)).all()) == 4

    assert android_player(phone.server, vid, time.monotonic() + 120) == [f"{k:06d}.mp4" for k in range(4)]
    stack.wait_vod(vid)
    listed = phone.get("/videos").json()
    assert [v["video_id"] for v in listed] == [vid] and set(listed[0]) == VIDEO_KEYS
    assert anonymous.get("/videos").json() == []  # private: listed to its key only
    video = phone.get(f"/video/{vid}").json()
    assert (video["type"], video["status"], video["segment_count"]) == ("VOD", "OK", 4)
    # The app builds <server> + base_url + "/" + uri_* for the thumbnail and the players' files.
    for uri in ("uri_thumbnail", "uri_mpd", "uri_m3u8"):
        answer = phone.get(f"{video['base_url']}/{video[uri]}")
        assert answer.status_code == 200, (uri, answer.status_code)
    segments = phone.get(f"/video_segment/{vid}").json()
    assert [s["segment_id"] for s in segments] == [0, 1, 2, 3] and all(set(s) == SEGMENT_KEYS for s in segments)
    assert all(s["status"] == "OK" for s in segments)


def test_an_upload_past_the_quota_is_refused_on_the_real_pipeline(make_stack, segment_files, tmp_path):
    """The quota counts what the key's videos hold, renditions included: once segment 0 and its encodes are
    stored, segment 1 no longer fits, and is refused (403) with nothing of it stored."""
    stack = make_stack(RECORDING="keys")
    data = [p.read_bytes() for p in segment_files]
    requests_size = [len(segment_upload(k, data[k])[0]) for k in (0, 1)]
    key = _mint(stack, "tight", quota_bytes=sum(requests_size) + 4096)  # both originals fit; their renditions do not
    stack.start_worker(tmp_path / "worker.log")
    phone = Phone(f"{stack.serve()}/k/{key}")
    vid = phone.create().json()["video_id"]
    assert phone.upload(vid, 0, data[0]).status_code == 201
    stack.wait(lambda: stack.segment(vid, 0).status is SegmentState.PACKAGED, 60, "segment 0 encoded and packaged")
    with stack.services.sessions() as session:
        key_id = session.scalar(select(RecordingKey.id).where(RecordingKey.name == "tight"))
        assert keys.usage(session, key_id) > len(data[0]) + 4096  # the renditions are counted

    refused = phone.upload(vid, 1, data[1])
    assert refused.status_code == 403 and refused.json()["code"] == "quota_exceeded", refused.text
    assert f"quota_bytes ({sum(requests_size) + 4096} bytes" in refused.json()["message"]
    with stack.services.sessions() as session:
        assert [s.segment_id for s in session.scalars(select(Segment).where(Segment.video_id == vid))] == [0]
    assert not tree(stack.services).original(vid, 1, "mp4").exists()
    assert phone.end(vid, 0).status_code == 200
    stack.wait_vod(vid)  # what was stored plays to the end
    assert tree(stack.services).temp_files() == []  # the refused body's included (checked once the pipeline is idle)


def test_the_operators_phone_records_under_a_key_url(make_stack, tmp_path):
    """`cli stream --server http://host/k/<key>` records as the app does; a revoked key stops it before any cutting."""
    stack = make_stack(RECORDING="keys")
    key = _mint(stack, "operator")
    source = make_segment(tmp_path / "clip.mp4", seconds=6.0, size="640x360")
    base = stack.serve()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}  # stream talks HTTP only

    def stream(server: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "server.cli", "stream", str(source), "--fast", "--retries", "0", "--server", server]
        return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)

    done = stream(f"{base}/k/{key}")
    assert done.returncode == 0, done.stderr
    with stack.services.sessions() as session:
        video = session.scalars(select(Video)).one()
        assert video.key_id == session.scalar(select(RecordingKey.id)) and video.last_segment_id == 1
    assert f"Android {base}/k/{key}/live_mpd/{video.id}.mpd" in done.stdout
    with stack.services.sessions() as session:
        keys.revoke(stack.services, session, "operator", by="test")
    refused = stream(f"{base}/k/{key}")
    assert refused.returncode == 1 and "HTTP 401" in refused.stderr and "cut" not in refused.stderr, refused.stderr
    with stack.services.sessions() as session:
        assert len(session.scalars(select(Video)).all()) == 1

