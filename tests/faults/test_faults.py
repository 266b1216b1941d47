"""The fault suite (issue 10): three paced live recordings upload while every dependency fails in turn.

The media live in an S3 bucket (MEDIA_STORE=s3, issue 17) behind nginx's cache tier. Faults, one after
another while the phones upload: kill -9 a worker mid-encode, stop and start memcached, restart gearmand,
kill -9 and restart MariaDB, fill the scratch disk and free it, freeze the object store for 20 s, cut the
remote worker's link while it holds an attempt, and kill -9 a worker again; slow-loris connections
and malformed requests run throughout. A reader polls every playlist and fetches every file they name.

Afterwards: every segment that got a 2xx is published and whole, every video became VOD exactly once,
no attempt is left running and no temp file is left; no 5xx but a 503 while MariaDB or the store was
down or a 507 while the disk was full; no answer failed to parse. The tally is printed and, with FAULT_TALLY set,
written there as JSON.
"""

from __future__ import annotations

import json
import os
import threading
import time

from tests.faults.actors import Hostile, Phone, Reader
from tests.faults.system import System
from tests.faults.verdict import is_vod, published
from tests.harness.services import wait_for

PHONES = 3
SEGMENTS = 20  # per recording
PACE = 1.5  # seconds between two segments (2 s clips: faster than real time, to fit the budget)
RECORDING_DEADLINE = 150.0  # seconds for the phones to get every segment and the end stored, retries included
CONVERGE = 120.0  # seconds after the phones are done for every video to be VOD


def schedule(system: System) -> None:
    """The faults, in order, while the phones record (each waits for the fact it needs, with a deadline)."""
    system.kill_worker()
    system.bounce_memcached(down=3.0)
    system.restart_gearmand()
    system.restart_mariadb(down=3.0)
    system.fill_disk(refused=3)
    system.pause_store(down=20.0)
    system.cut_remote()
    system.kill_worker()


def test_recordings_survive_every_fault(system: System, clips: list[bytes]) -> None:
    record, started = system.record, time.monotonic()
    deadline = started + RECORDING_DEADLINE
    phones = [Phone(f"phone{k}", system.base, clips, SEGMENTS, PACE, record, deadline) for k in range(PHONES)]
    stop = threading.Event()
    reader = Reader(system.base, lambda: [p.video_id for p in phones if p.video_id is not None], record, stop)
    hostile = Hostile(system.front_port, system.app_port, lambda: phones[0].video_id or 0, clips[0], record, stop)
    for thread in (*phones, reader, hostile):
        thread.start()
    try:
        wait_for(lambda: all(p.created.is_set() for p in phones), 30, "every phone created its video")
        schedule(system)
        for phone in phones:
            phone.join(timeout=max(0.0, deadline - time.monotonic()) + 5)
        recorded = time.monotonic()
        for phone in phones:
            assert phone.video_id is not None, f"{phone.name} never created its video"
            wait_for(lambda p=phone: is_vod(system.base, p.video_id), CONVERGE, f"video {phone.video_id} of {phone.name} VOD")
        converged = time.monotonic()
    finally:
        stop.set()
        for phone in phones:
            phone.stop.set()
        for thread in (*phones, reader, hostile):
            thread.join(timeout=30)

    in_vod = {p.name: published(system.base, p.video_id) for p in phones}
    tally = {
        **record.tally(),
        "segments": {
            "recorded": PHONES * SEGMENTS,
            "uploaded_2xx": sum(len(p.stored) for p in phones),
            "published": sum(len(in_vod[p.name] & p.stored) for p in phones),
            "lost": sum(SEGMENTS - len(p.stored) for p in phones),
            "upload_tries": sum(sum(p.tries.values()) for p in phones),
        },
        "attempts": system.attempt_outcomes(),
        "reader": {"rounds": reader.rounds, "media_files_checked": len(reader.fetched)},
        "slow_loris_closed_by_server": hostile.slow_closed,
        "seconds": {"recording": round(recorded - started, 1), "converge": round(converged - recorded, 1)},
    }
    _report(tally)

    failures = record.failures()
    assert failures == [], "\n".join(failures)
    for phone in phones:
        assert phone.ended, f"{phone.name}: /video_end never got a 2xx"
        assert phone.stored == set(range(SEGMENTS)), f"{phone.name}: segments never stored: {set(range(SEGMENTS)) - phone.stored}"
        assert in_vod[phone.name] == phone.stored, (
            f"{phone.name}: stored, not published: {phone.stored - in_vod[phone.name]}; "
            f"published, never stored: {in_vod[phone.name] - phone.stored}"
        )
        assert system.finished_events(phone.video_id) == 1, f"video {phone.video_id} finished more or less than once"  # type: ignore[arg-type]
    assert system.dangling_attempts() == 0
    assert system.temp_files() == []


def _report(tally: dict[str, object]) -> None:
    text = json.dumps(tally, indent=2)
    print(f"\nfault suite tally:\n{text}")
    path = os.environ.get("FAULT_TALLY")
    if path:
        with open(path, "w") as out:
            out.write(text + "\n")
