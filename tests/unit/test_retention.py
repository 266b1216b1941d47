"""The retention rule (RETENTION_DAYS), with the clock passed in: which videos a reaper pass deletes, and when.

The rows are unsaved Video objects: the rule reads only their fields. The query that finds candidates, its
batch and its order run on MariaDB in tests/integration/test_retention.py.
"""

from datetime import datetime, timedelta

import pytest

from server.core.states import VideoStatus, VideoType
from server.infra.models import Video
from server.ops.reaper import past_retention
from tests.harness.clock import FakeClock

T0 = datetime(2026, 11, 26, 10, 0, 0)
DAYS = 30.0
KEEP = timedelta(days=DAYS)


def video(
    kind: VideoType = VideoType.VOD,
    *,
    finished_at: datetime | None = T0,
    ended_at: datetime | None = T0 - timedelta(seconds=20),
    pinned: bool = False,
) -> Video:
    return Video(title="v", type=kind, status=VideoStatus.OK, finished_at=finished_at, ended_at=ended_at, pinned=pinned)


def test_a_finished_video_is_deleted_exactly_when_its_finish_is_retention_days_old():
    clock = FakeClock(T0)
    finished = video()
    assert not past_retention(finished, clock.now(), DAYS)
    clock.advance(KEEP.total_seconds() - 0.000001)
    assert not past_retention(finished, clock.now(), DAYS)
    clock.advance(0.000001)
    assert clock.now() == T0 + KEEP
    assert past_retention(finished, clock.now(), DAYS)
    assert past_retention(finished, clock.advance(86400 * 365), DAYS)


def test_the_finish_counts_not_the_end_nor_the_creation():
    # Ended at T0, placed (finished) two days later: retention counts from the finish.
    late = video(finished_at=T0 + timedelta(days=2), ended_at=T0)
    assert not past_retention(late, T0 + KEEP, DAYS)
    assert past_retention(late, T0 + KEEP + timedelta(days=2), DAYS)


def test_a_finished_video_without_finished_at_counts_from_its_end():
    legacy = video(finished_at=None, ended_at=T0)
    assert not past_retention(legacy, T0 + KEEP - timedelta(seconds=1), DAYS)
    assert past_retention(legacy, T0 + KEEP, DAYS)
    assert not past_retention(video(finished_at=None, ended_at=None), T0 + 100 * KEEP, DAYS)  # no end known: kept


def test_a_pinned_video_is_kept_however_old():
    assert not past_retention(video(pinned=True), T0 + 100 * KEEP, DAYS)


@pytest.mark.parametrize(
    "live",
    [
        video(VideoType.LIVE, finished_at=None, ended_at=None),  # still recording
        video(VideoType.LIVE, finished_at=None, ended_at=T0),  # ended, its last segments still being placed
    ],
    ids=["recording", "ended-but-not-finished"],
)
def test_a_live_video_is_never_deleted_by_retention(live):
    assert not past_retention(live, T0 + 100 * KEEP, DAYS)


def test_zero_days_keeps_everything_forever():
    assert not past_retention(video(), T0 + 100 * KEEP, 0.0)


def test_fractional_days_count():
    assert not past_retention(video(), T0 + timedelta(hours=11, minutes=59), 0.5)
    assert past_retention(video(), T0 + timedelta(hours=12), 0.5)
