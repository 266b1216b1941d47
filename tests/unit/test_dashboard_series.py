"""The system tab's last hour (server/web/admin_views.py series): one-minute buckets and nearest-rank percentiles."""

from __future__ import annotations

from datetime import datetime, timedelta

from server.web.admin_views import SERIES_MINUTES, percentile, series

NOW = datetime(2026, 1, 1, 12, 30, 20)


def test_percentiles_are_values_that_occurred() -> None:
    assert percentile([], 50) is None
    assert percentile([2.0], 95) == 2.0
    values = [float(v) for v in range(1, 21)]  # 1..20
    assert (percentile(values, 50), percentile(values, 95)) == (10.0, 19.0)


def test_sixty_minutes_ending_with_the_current_one() -> None:
    def packaged(minutes_ago: float, latency: float) -> tuple[datetime, datetime]:
        at = NOW - timedelta(minutes=minutes_ago)
        return at, at - timedelta(seconds=latency)

    rows = [packaged(0, 2.0), packaged(0.1, 4.0), packaged(1, 3.0), packaged(59.5, 9.0), packaged(61, 1.0)]
    out = series(NOW, rows)
    assert len(out["minutes"]) == SERIES_MINUTES
    assert out["minutes"][0] == "2026-01-01T11:31:00.000000Z" and out["minutes"][-1] == "2026-01-01T12:30:00.000000Z"
    assert out["segments_per_minute"][-2:] == [1, 2]
    assert out["latency_p50"][-1] == 2.0 and out["latency_p95"][-1] == 4.0
    assert out["latency_p50"][-2] == 3.0
    assert out["segments_per_minute"][0] == 0  # 59.5 minutes ago is 11:30:50, before the first bucket
    assert sum(out["segments_per_minute"]) == 3
    assert out["latency_p50"][5] is None
