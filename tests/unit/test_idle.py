"""The abandoned-live-video rule, with the clock passed in."""

from datetime import datetime, timedelta

from server.ops.reaper import abandoned

T0 = datetime(2026, 11, 26, 10, 0, 0)
TIMEOUT = timedelta(seconds=600)


def test_a_live_video_is_abandoned_exactly_when_its_last_activity_is_timeout_old():
    assert not abandoned(T0, T0, TIMEOUT)
    assert not abandoned(T0, T0 + TIMEOUT - timedelta(microseconds=1), TIMEOUT)
    assert abandoned(T0, T0 + TIMEOUT, TIMEOUT)
    assert abandoned(T0, T0 + timedelta(days=3), TIMEOUT)
    assert not abandoned(T0 + timedelta(seconds=5), T0, TIMEOUT)  # an upload stamped by a clock ahead of ours
