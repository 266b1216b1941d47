"""The segment state machine's table and its one writer, `move` (docs/architecture.md draws it).

Its own module so that packaging and the attempt rules (server/domain/lifecycle.py) both use it
without importing each other.
"""

from __future__ import annotations

from server.core.states import SegmentState
from server.domain import eventlog
from server.domain.changes import Change
from server.infra.models import Segment

S = SegmentState
TRANSITIONS: dict[SegmentState, frozenset[SegmentState]] = {
    # A job can be delivered before its QUEUED mark commits: a RECEIVED segment may be claimed.
    S.RECEIVED: frozenset({S.QUEUED, S.RUNNING}),
    S.QUEUED: frozenset({S.RUNNING}),
    S.RUNNING: frozenset({S.ENCODED, S.RECEIVED, S.FAILED}),
    S.ENCODED: frozenset({S.PACKAGED}),
    S.PACKAGED: frozenset(),
    S.FAILED: frozenset({S.RECEIVED}),  # a re-upload, or an operator's retry
}


class IllegalTransition(RuntimeError):
    """A code path tried a move the state machine does not have: a bug, never a client's fault."""


def move(change: Change, segment: Segment, to: SegmentState, worker: int | None = None, **data: object) -> None:
    """Move `segment` (and its rungs) to `to`, logging one event; the only writer of Segment.status."""
    if to not in TRANSITIONS[segment.status]:
        raise IllegalTransition(f"segment {segment.segment_id}: {segment.status.value} -> {to.value}")
    segment.status = to
    for rung in segment.renditions:
        rung.status = to
    change.event(eventlog.segment_kind(to), segment=segment.segment_id, worker=worker, **data)
