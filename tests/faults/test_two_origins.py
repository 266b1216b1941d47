"""Stateless origins (issue 17): two origins behind the shipped nginx, one killed with kill -9 mid-stream.

The set-up is tests/faults/origins.py: each origin a network namespace running gunicorn and a
segment_processor (with its reaper), sharing only the database, gearmand, memcached and the media store;
nginx (deploy/nginx/team03.conf) balances phones and players over both, round robin. A phone records a
live video through nginx, so its uploads land on both origins; once each origin has stored segments, the
one holding an attempt (if one does within a few seconds) is killed: every process of it at once, kill -9.
A reader polls every playlist throughout.

Afterwards: every segment the phone got a 2xx for is listed by every VOD playlist and each file is whole;
no playlist read ever went backwards (a list lost a segment, an ended playlist went live again, the
video's revision or the revision its files show decreased); exactly one `video.finished` event; no 5xx
but nginx's 503 for a request the dead origin held; no answer failed to parse. The tally is printed.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.actors import ForwardReader, Phone
from tests.faults.origins import TwoOrigins
from tests.faults.verdict import is_vod, published
from tests.harness.services import poll, wait_for

SEGMENTS = 14
PACE = 1.0  # seconds between two segments (2 s clips: faster than real time, to fit the budget)
STORED_EACH = 2  # segments each origin stores before the kill
RECORDING_DEADLINE = 60.0  # seconds for the phone to get every segment and the end stored, retries included
CONVERGE = 45.0  # seconds after the phone is done for the video to be VOD
HOLDING_WAIT = 5.0  # seconds to wait for an origin holding an attempt, to kill that one


@pytest.fixture(params=["s3"])  # the production shape; "local" (one folder shared by both) runs too, off CI's clock
def origins(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TwoOrigins]:
    system = TwoOrigins(request.param, tmp_path)
    try:
        system.start()
        yield system
    finally:
        system.close()


def test_a_recording_survives_the_crash_of_one_of_two_origins(origins: TwoOrigins, clips: list[bytes]) -> None:
    record, started = origins.record, time.monotonic()
    deadline = started + RECORDING_DEADLINE
    phone = Phone("phone", origins.base, clips, SEGMENTS, PACE, record, deadline)
    stop = threading.Event()
    videos = lambda: [phone.video_id] if phone.video_id is not None else []  # noqa: E731
    reader = ForwardReader(origins.base, videos, record, stop, origins.revisions)
    for thread in (phone, reader):
        thread.start()
    try:
        wait_for(
            lambda: all(o.uploads() >= STORED_EACH for o in origins.origins), 30, f"each origin stored {STORED_EACH} segments"
        )
        before = {o.name: o.uploads() for o in origins.origins}
        victim = poll(origins.holding, HOLDING_WAIT)
        origins.kill(victim or origins.origins[0], "holding an attempt" if victim else "idle")  # type: ignore[arg-type]
        phone.join(timeout=max(0.0, deadline - time.monotonic()) + 5)
        recorded = time.monotonic()
        assert phone.video_id is not None, "the phone never created its video"
        wait_for(lambda: is_vod(origins.base, phone.video_id), CONVERGE, f"video {phone.video_id} VOD")  # type: ignore[arg-type]
        converged = time.monotonic()
    finally:
        stop.set()
        phone.stop.set()
        for thread in (phone, reader):
            thread.join(timeout=30)

    in_vod = published(origins.base, phone.video_id)
    tally = {
        **record.tally(),
        "uploads_2xx_by_origin": {"before the kill": before, "in all": {o.name: o.uploads() for o in origins.origins}},
        "segments": {
            "recorded": SEGMENTS,
            "uploaded_2xx": len(phone.stored),
            "published": len(in_vod & phone.stored),
            "upload_tries": sum(phone.tries.values()),
        },
        "attempts": origins.attempt_outcomes(),
        "finished_events": origins.finished_events(phone.video_id),
        "reader": {
            "rounds": reader.rounds,
            "playlist_reads_compared": reader.compared,
            "playlists_watched": len(reader.seen),
            "media_files_checked": len(reader.fetched),
            "backwards": len(reader.backwards),
        },
        "seconds": {"recording": round(recorded - started, 1), "converge": round(converged - recorded, 1)},
    }
    print(f"\ntwo origins ({origins.store}) tally:\n{json.dumps(tally, indent=2)}")

    assert all(count >= STORED_EACH for count in before.values()), f"uploads did not alternate before the kill: {before}"
    assert record.failures() == [], "\n".join(record.failures())
    assert reader.backwards == [], "\n".join(reader.backwards)
    assert phone.ended, "/video_end never got a 2xx"
    assert phone.stored == set(range(SEGMENTS)), f"segments never stored: {set(range(SEGMENTS)) - phone.stored}"
    assert in_vod == phone.stored, (
        f"stored, not published: {phone.stored - in_vod}; published, never stored: {in_vod - phone.stored}"
    )
    assert origins.finished_events(phone.video_id) == 1, f"video {phone.video_id} finished more or less than once"
