"""Ingest health (server/core/ingest_health.py) on crafted uploads: each number against its rule."""

from __future__ import annotations

from datetime import datetime, timedelta

from server.core.ingest_health import MAX_MISSING, Upload, ingest_health, missing_ids, out_of_order, ratio_level
from server.core.transcode.ladder import SourceInfo

T0 = datetime(2026, 1, 1, 12, 0, 0)


def up(k: int, at: float, duration: float = 3.0, took: float | None = 1.0, dup: int = 0) -> Upload:
    return Upload(k, T0 + timedelta(seconds=at), duration, took, dup)


def test_a_steady_stream_is_healthy() -> None:
    uploads = [up(k, 3.0 * (k + 1) + 0.4, took=0.9) for k in range(5)]
    info = SourceInfo(1080, 720, 3.0, 30.0, True, "h264", 1.0)
    health = ingest_health(uploads, now=T0 + timedelta(seconds=17.4), segment_seconds=3.0, last_segment_id=None, probe=info)
    assert health == {
        "last_segment_age": 2.0,
        "stalled": False,
        "upload_ratio": {"last": 0.3, "max": 0.3, "level": "ok"},
        "drift": 0.0,
        "missing": [],
        "missing_count": 0,
        "duplicates": 0,
        "out_of_order": 0,
        "probe": {"width": 1080, "height": 720, "fps": 30.0, "keyframe_interval": 1.0, "audio": True},
    }


def test_stalled_after_three_segment_durations_unless_ended() -> None:
    uploads = [up(0, 3.0)]
    just = ingest_health(uploads, now=T0 + timedelta(seconds=12.0), segment_seconds=3.0, last_segment_id=None, probe=None)
    late = ingest_health(uploads, now=T0 + timedelta(seconds=12.01), segment_seconds=3.0, last_segment_id=None, probe=None)
    ended = ingest_health(uploads, now=T0 + timedelta(seconds=60), segment_seconds=3.0, last_segment_id=0, probe=None)
    assert (just["stalled"], late["stalled"], ended["stalled"]) == (False, True, False)
    assert late["last_segment_age"] == 9.01


def test_upload_ratio_levels_follow_the_newest_upload() -> None:
    assert [ratio_level(r) for r in (None, 0.0, 0.899, 0.9, 0.999, 1.0, 4.0)] == [
        "ok",
        "ok",
        "ok",
        "warn",
        "warn",
        "alarm",
        "alarm",
    ]
    uploads = [up(0, 3, took=3.3), up(1, 6, took=2.7), up(2, 9, took=None)]  # the last has no measure (an old row)
    health = ingest_health(uploads, now=T0 + timedelta(seconds=9), segment_seconds=3.0, last_segment_id=None, probe=None)
    assert health["upload_ratio"] == {"last": 0.9, "max": 1.1, "level": "warn"}


def test_drift_is_how_far_uploads_fell_behind_real_time() -> None:
    # Segments 0..3 arrive 3 s apart, then segment 4 arrives 5 s late: 5 s of drift.
    uploads = [up(k, 3.0 * k) for k in range(4)] + [up(4, 17.0)]
    health = ingest_health(uploads, now=T0 + timedelta(seconds=17), segment_seconds=3.0, last_segment_id=None, probe=None)
    assert health["drift"] == 5.0
    assert ingest_health([], now=T0, segment_seconds=3.0, last_segment_id=None, probe=None)["drift"] is None


def test_missing_ids_are_counted_and_the_first_fifty_listed() -> None:
    assert missing_ids([up(0, 0), up(3, 1), up(5, 2)], None) == ([1, 2, 4], 3)
    assert missing_ids([up(0, 0)], 3) == ([1, 2, 3], 3)  # ended at 3: the tail is missing too
    assert missing_ids([], None) == ([], 0)
    many, count = missing_ids([up(999_999, 0)], None)
    assert (many, count) == (list(range(MAX_MISSING)), 999_999)


def test_duplicates_and_out_of_order_uploads() -> None:
    uploads = [up(0, 0, dup=2), up(2, 1), up(1, 2, dup=1), up(3, 3), up(0 + 4, 4), up(2 + 3, 5)]
    assert out_of_order(uploads) == 1
    assert out_of_order([up(3, 0), up(0, 1), up(1, 2), up(2, 3)]) == 3
    health = ingest_health(uploads, now=T0, segment_seconds=3.0, last_segment_id=None, probe=None)
    assert (health["duplicates"], health["out_of_order"]) == (3, 1)
