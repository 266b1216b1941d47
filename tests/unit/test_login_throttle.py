"""The failed-login throttle's rule (server/web/api/login_throttle.py) as a table, and its slots on the in-process store."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from server.core.errors import TooManyRequests
from server.web.api.login_throttle import FOR_NAME, FROM_ADDRESS, LocalCounters, LoginThrottle, refusal, subject

# (count on the address, count on the admin) after this attempt's reservations, limit 5 -> refused why
CASES = [
    ((1, 1), None),
    ((5, 5), None),  # the fifth failure is still checked
    ((6, 1), FROM_ADDRESS),
    ((6, 6), FROM_ADDRESS),  # the address is named first
    ((2, 6), FOR_NAME),
    ((5, 9), FOR_NAME),
    ((1, 6), None),  # a clean address gets its check through the admin's limit
    ((1, 1000), None),
    ((0, 0), None),  # a store that is down counts nothing
]


@pytest.mark.parametrize(("counts", "reason"), CASES)
def test_refusal(counts: tuple[int, int], reason: str | None) -> None:
    assert refusal(*counts, limit=5) == reason


def test_an_admin_is_counted_by_its_row_and_an_unknown_name_by_its_fold() -> None:
    assert subject(7, "Bôb ") == subject(7, "bob") == "admin/7"
    assert subject(None, "Bôb ") == subject(None, "bob") == subject(None, "BÓB") != subject(None, "bobby")


def test_slots_given_back_are_not_failures_and_refused_attempts_take_none() -> None:
    throttle = LoginThrottle(LocalCounters(), "2/15 minutes", "t:")
    now = 900.0 * 1000 + 10
    for _ in range(3):  # successes
        throttle.release(throttle.reserve("a", "admin/1", now))
    throttle.reserve("a", "admin/1", now)
    throttle.reserve("a", "admin/1", now)
    with pytest.raises(TooManyRequests) as refused:
        throttle.reserve("a", "admin/2", now)
    assert FROM_ADDRESS in refused.value.message and refused.value.retry_after == 890
    throttle.reserve("b", "admin/1", now + 890)  # the next window starts afresh


def test_concurrent_reservations_on_the_local_store_never_pass_the_limit() -> None:
    throttle = LoginThrottle(LocalCounters(), "5/15 minutes", "t:")
    start = threading.Barrier(32)

    def attempt(_i: int) -> bool:
        start.wait()
        try:
            throttle.reserve("a", "admin/1", 0.0)
        except TooManyRequests:
            return False
        return True

    with ThreadPoolExecutor(32) as pool:
        assert sum(pool.map(attempt, range(32))) == 5
