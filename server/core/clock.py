"""Time, passed in: the domain asks a Clock, so tests move time instead of sleeping.

Timestamps are stored as naive UTC (every DateTime column), and compared with `now()`.
"""

from __future__ import annotations

import time as _time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Naive UTC now, the form every timestamp column stores."""
        ...

    def time(self) -> float:
        """Epoch seconds now (the publishing rules' unit)."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC).replace(tzinfo=None)

    def time(self) -> float:
        return _time.time()


def epoch(value: datetime | None) -> float | None:
    """Return a naive-UTC column value as epoch seconds."""
    return None if value is None else value.replace(tzinfo=UTC).timestamp()
