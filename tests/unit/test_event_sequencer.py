"""The event stream's order (server/domain/eventlog.py Sequencer): by id, never twice, none skipped, rollbacks passed."""

from __future__ import annotations

from datetime import datetime, timedelta

from server.domain.eventlog import Sequencer
from server.infra.models import Event

WALL = datetime(2026, 1, 1, 12, 0, 0)


def ev(event_id: int, age: float = 0.0) -> Event:
    return Event(id=event_id, at=WALL - timedelta(seconds=age), kind="video.renamed")


def ids(events: list[Event]) -> list[int]:
    return [e.id for e in events]


def test_consecutive_ids_pass_at_once() -> None:
    seq = Sequencer(last=4)
    assert ids(seq.take([ev(5), ev(6), ev(7)], now=0.0, wall=WALL)) == [5, 6, 7]
    assert seq.last == 7
    assert seq.take([], now=1.0, wall=WALL) == []


def test_events_after_a_missing_id_wait_for_it_and_come_in_order() -> None:
    seq = Sequencer(last=4, grace=5.0)
    assert ids(seq.take([ev(5), ev(7)], now=0.0, wall=WALL)) == [5]  # 6 is not committed yet
    assert ids(seq.take([ev(7)], now=4.9, wall=WALL)) == []
    assert ids(seq.take([ev(6), ev(7)], now=5.0, wall=WALL)) == [6, 7]  # 6 committed: both, in order


def test_a_rolled_back_id_is_passed_after_the_grace() -> None:
    seq = Sequencer(last=4, grace=5.0)
    assert ids(seq.take([ev(6), ev(8)], now=10.0, wall=WALL)) == []
    assert ids(seq.take([ev(6), ev(8)], now=15.0, wall=WALL)) == [6]  # 5 never came; 7 is a new gap
    assert ids(seq.take([ev(8)], now=15.1, wall=WALL)) == []
    assert ids(seq.take([ev(8)], now=20.1, wall=WALL)) == [8]


def test_a_reader_resuming_far_behind_does_not_wait_at_old_gaps() -> None:
    seq = Sequencer(last=1, grace=5.0)
    assert ids(seq.take([ev(3, age=60), ev(5, age=59), ev(6, age=0), ev(8, age=0)], now=0.0, wall=WALL)) == [3, 5, 6]
