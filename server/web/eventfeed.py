"""One reader of the event log per process, fanned out to every open event stream (GET /api/admin/events).

A poller thread reads the events after the last one it handed out, every POLL_SECONDS, in id order
through a Sequencer (server/domain/eventlog.py: never twice, none skipped), and keeps the newest BACKLOG of
them rendered: a hundred open streams cost one query per tick, not a hundred. A stream follows the
backlog from its own cursor. One whose cursor is older than the backlog (resuming far behind, or a
reader that fell behind while its client was slow) reads the log itself, with its own Sequencer,
until it reaches the backlog. The thread starts with the first reader and idles while none is open;
it starts again from the newest event (a reader behind that catches up by itself).
"""

from __future__ import annotations

import bisect
import json
import logging
import threading
import time

from server.domain.eventlog import Sequencer, newest_id, read_after
from server.infra.models import Event
from server.infra.services import Services
from server.web.admin_views import event_json

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5  # how often the log is read while a stream is open
EVENT_BATCH = 500  # events read per query; a full batch is followed by the next at once
BACKLOG = 5000  # rendered events kept for the readers (a few MB at most)
IDLE_CHECK = 1.0  # how often an idle poller looks at whether the process is stopping


def frame(event: Event) -> bytes:
    """One event as the stream sends it."""
    data = json.dumps(event_json(event), separators=(",", ":"), ensure_ascii=True)
    return f"id: {event.id}\nevent: {event.kind}\ndata: {data}\n\n".encode()


class Feed:
    """The process's one reader of the event log; `reader(after)` follows it from there."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._cond = threading.Condition()
        self._readers = 0
        self._thread: threading.Thread | None = None
        self._ids: list[int] = []  # the backlog: ids ascending, and their frames
        self._frames: list[bytes] = []
        self._floor = 0  # every event the feed handed out with an id above this is in the backlog
        self._sequencer: Sequencer | None = None  # None until the first read (and again while idle)

    def reader(self, after: int) -> Reader:
        """A reader of the events after `after`; close it when its stream ends."""
        with self._cond:
            self._readers += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="event-feed", daemon=True)
                self._thread.start()
            self._cond.notify_all()
        return Reader(self, after)

    def leave(self) -> None:
        """A reader is closed."""
        with self._cond:
            self._readers -= 1

    def wait_after(self, cursor: int, timeout: float) -> tuple[int, list[bytes]] | None:
        """The last id and frames after `cursor`, waiting up to `timeout` for some; None if `cursor` is behind the backlog."""
        with self._cond:
            if not self._ready_after(cursor):
                self._cond.wait(timeout)
            if self._sequencer is not None and cursor < self._floor:
                return None
            start = bisect.bisect_right(self._ids, cursor)
            return (self._ids[-1], self._frames[start:]) if start < len(self._ids) else (cursor, [])

    def level_with(self, cursor: int) -> bool:
        """Whether a reader at `cursor` finds everything after it in the backlog."""
        with self._cond:
            return self._sequencer is not None and cursor >= self._floor

    def _ready_after(self, cursor: int) -> bool:
        return self._sequencer is not None and (cursor < self._floor or bool(self._ids and self._ids[-1] > cursor))

    def _run(self) -> None:
        stopping, failing = self.services.stopping, False
        while not stopping.is_set():
            if not self._wait_for_readers():
                continue
            try:
                full = self._poll()
            except Exception:  # the database away: streams keep sending keep-alives, the feed tries again
                if not failing:
                    log.exception("reading the event log failed; trying again every %s s", POLL_SECONDS)
                failing, full = True, False
            else:
                if failing:
                    log.info("reading the event log works again")
                failing = False
            if not full:
                stopping.wait(POLL_SECONDS)

    def _wait_for_readers(self) -> bool:
        """Whether a reader is open; while none is, forget the backlog and the position (an idle process reads nothing)."""
        with self._cond:
            if self._readers > 0:
                return True
            self._sequencer = None
            self._ids, self._frames = [], []
            self._cond.wait(IDLE_CHECK)
            return False

    def _poll(self) -> bool:
        """Read the next batch and hand the ready events to the readers; whether a whole batch came back."""
        with self.services.sessions() as db:
            sequencer = self._sequencer or Sequencer(newest_id(db))
            start = sequencer.last
            events = read_after(db, start, EVENT_BATCH)
            ready = sequencer.take(events, time.monotonic(), self.services.clock.now())
            frames = [frame(e) for e in ready]
        with self._cond:
            started = self._sequencer is None
            if started:
                self._sequencer, self._floor = sequencer, start
            self._ids += [e.id for e in ready]
            self._frames += frames
            if len(self._ids) > BACKLOG:
                self._floor = self._ids[-BACKLOG - 1]
                del self._ids[:-BACKLOG], self._frames[:-BACKLOG]
            if started or ready:  # a quiet tick wakes no stream
                self._cond.notify_all()
        return len(events) == EVENT_BATCH and bool(ready)


class Reader:
    """One stream's place in the log: in the feed's backlog, or (while behind it) in the log itself."""

    def __init__(self, feed: Feed, after: int) -> None:
        self._feed = feed
        self._cursor = after
        self._own: Sequencer | None = None  # set while this reader reads the log by itself
        self._more = False  # its last own read was a whole batch: read the next at once
        self._closed = False

    def next(self, timeout: float) -> bytes:
        """The frames after those already returned, waiting up to `timeout` seconds for some; b"" if none came."""
        if self._own is None:
            found = self._feed.wait_after(self._cursor, timeout)
            if found is not None:
                self._cursor, frames = found
                return b"".join(frames)
            self._own, self._more = Sequencer(self._cursor), True
        return self._catch_up(timeout)

    def _catch_up(self, timeout: float) -> bytes:
        """Read the log by itself, as every stream once did; join the feed once level with its backlog."""
        own, services = self._own, self._feed.services
        assert own is not None
        if not self._more and services.stopping.wait(min(POLL_SECONDS, timeout)):
            return b""
        with services.sessions() as db:
            events = read_after(db, own.last, EVENT_BATCH)
            ready = own.take(events, time.monotonic(), services.clock.now())
            text = b"".join(frame(e) for e in ready)
        self._cursor, self._more = own.last, len(events) == EVENT_BATCH and bool(ready)
        if self._feed.level_with(self._cursor):
            self._own = None
        return text

    def close(self) -> None:
        """Leave the feed (once)."""
        if not self._closed:
            self._closed = True
            self._feed.leave()
