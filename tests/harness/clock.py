"""A clock that moves only when a test says so, to pass where the server takes a clock.

It has the two methods of the server's Clock protocol (server/core/clock.py): `now()`, a naive UTC datetime
as the database stores it, and `time()`, epoch seconds; both read one instant, so they always agree.
Time-based rules (leases, retry_at, gap timeouts, retention) are then tested by `advance`, not by sleeping.
"""

from __future__ import annotations

import math
import threading
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1)
START = datetime(2026, 1, 1, 12, 0, 0)


class FakeClock:
    """Stands still at `start` (naive UTC, or aware and converted) until `advance` moves it forward."""

    def __init__(self, start: datetime = START) -> None:
        if start.tzinfo is not None:
            start = start.astimezone(UTC).replace(tzinfo=None)
        # A datetime, not a float: microseconds stay exact however often the clock is advanced.
        self._at = start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """Return the current instant as a naive UTC datetime."""
        return self._at

    def time(self) -> float:
        """Return the current instant as seconds since the epoch (like time.time())."""
        return (self._at - EPOCH).total_seconds()

    def advance(self, seconds: float) -> datetime:
        """Move the clock forward by `seconds` (>= 0, finite); return the new now()."""
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"a FakeClock only moves forward by a finite number of seconds, not {seconds!r}")
        with self._lock:  # a test advances it while the app's threads read it
            self._at += timedelta(seconds=seconds)
            return self._at

    def __repr__(self) -> str:
        return f"FakeClock({self._at.isoformat()})"
