"""FakeClock: the test double of the server's Clock (now() naive UTC, time() epoch seconds)."""

from __future__ import annotations

import calendar
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from tests.harness.clock import FakeClock

T0 = datetime(2026, 3, 1, 8, 30, 15, 250000)


def test_it_stands_still_at_its_start() -> None:
    clock = FakeClock(T0)
    assert clock.now() == T0 and clock.now().tzinfo is None
    assert clock.time() == calendar.timegm(T0.timetuple()) + 0.25
    assert clock.now() == T0 and clock.time() == clock.time()


def test_time_is_the_epoch_seconds_of_now() -> None:
    clock = FakeClock(T0)
    assert datetime.fromtimestamp(clock.time(), UTC).replace(tzinfo=None) == clock.now()
    assert clock.time() == pytest.approx(T0.replace(tzinfo=UTC).timestamp(), abs=1e-6)


def test_advance_moves_both_by_exactly_that_much() -> None:
    clock = FakeClock(T0)
    assert clock.advance(30) == T0 + timedelta(seconds=30)
    assert clock.now() == T0 + timedelta(seconds=30)
    assert clock.time() == T0.replace(tzinfo=UTC).timestamp() + 30


def test_many_small_steps_add_up_to_the_microsecond() -> None:
    clock = FakeClock(T0)
    for _ in range(10_000):
        clock.advance(0.001)
    assert clock.now() == T0 + timedelta(seconds=10)
    assert datetime.fromtimestamp(clock.time(), UTC).replace(tzinfo=None) == T0 + timedelta(seconds=10)


def test_advance_by_zero_is_allowed() -> None:
    clock = FakeClock(T0)
    assert clock.advance(0) == T0


@pytest.mark.parametrize("seconds", [-1, -0.000001, float("nan"), float("inf"), float("-inf")])
def test_it_never_goes_back_nor_jumps_to_infinity(seconds: float) -> None:
    clock = FakeClock(T0)
    with pytest.raises(ValueError, match="forward"):
        clock.advance(seconds)
    assert clock.now() == T0


def test_an_aware_start_is_read_as_the_same_instant_in_naive_utc() -> None:
    clock = FakeClock(datetime(2026, 3, 1, 10, 30, 15, 250000, tzinfo=timezone(timedelta(hours=2))))
    assert clock.now() == T0 and clock.now().tzinfo is None


def test_the_default_start_is_fixed_not_the_wall_clock() -> None:
    assert FakeClock().now() == FakeClock().now()
    assert FakeClock().now().tzinfo is None


@pytest.fixture
def far_from_utc(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Run with the process's local time zone 5 h behind UTC (this machine's is often UTC, which hides the bug)."""
    monkeypatch.setenv("TZ", "EST+5")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("far_from_utc")
def test_the_local_time_zone_changes_nothing() -> None:
    assert time.localtime(0).tm_hour == 19  # the zone took effect
    clock = FakeClock(T0)
    assert clock.time() == calendar.timegm(T0.timetuple()) + 0.25
    assert clock.now() == T0
