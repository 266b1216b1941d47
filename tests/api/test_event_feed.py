"""The process's one reader of the event log (server/web/eventfeed.py), on the test database.

Readers follow the feed's backlog; one behind it reads the log by itself until it is level, then joins:
every reader gets every event after its start, in id order, once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from server.core.clock import SystemClock
from server.domain.eventlog import newest_id, record
from server.infra.services import Services
from server.web import eventfeed
from server.web.eventfeed import Feed, Reader
from tests.harness.services import wait_for

FRAME_ID = re.compile(rb"^id: (\d+)$", re.MULTILINE)


@pytest.fixture
def services(make_config) -> Iterator[Services]:  # type: ignore[no-untyped-def]
    services = Services.build(make_config())
    yield services
    services.close()


def write(services: Services, count: int) -> list[int]:
    with services.sessions() as db:
        events = [record(db, "worker.started", at=SystemClock().now(), worker_id=k) for k in range(count)]
        db.commit()
        return [e.id for e in events]


def read(reader: Reader, count: int) -> list[int]:
    """The ids of the next `count` events the reader hands out (fails after 10 s)."""
    ids: list[int] = []

    def more() -> bool:
        ids.extend(int(i) for i in FRAME_ID.findall(reader.next(timeout=0.2)))
        return len(ids) >= count

    wait_for(more, 10, f"{count} events from the reader")
    return ids


def test_a_reader_behind_the_backlog_catches_up_by_itself_then_follows_the_feed(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(eventfeed, "BACKLOG", 3)
    feed = Feed(services)
    with services.sessions() as db:
        start = newest_id(db)
    ahead = feed.reader(start)
    try:
        written = write(services, 10)
        assert read(ahead, 10) == written  # the feed's backlog now holds the last 3 only
        behind = feed.reader(start)
        try:
            assert read(behind, 10) == written  # 7 read by itself, then the feed: each once, in order
            assert behind._own is None, "the reader never joined the feed"
            later = write(services, 2)
            assert (read(ahead, 2), read(behind, 2)) == (later, later)
        finally:
            behind.close()
    finally:
        ahead.close()
