"""An uploaded segment waits for its encode, however slow; only a segment that never came is skipped."""

from server.core.playlists import RenditionView, SegmentView, VideoView, is_finished, live_segments

RUNGS = tuple(
    RenditionView(n, w, h, b, b - 128_000, "avc1.4d401e")
    for n, w, h, b in (("HIGH", 720, 480, 3_128_000), ("MEDIUM", 480, 320, 896_000), ("LOW", 240, 160, 328_000))
)


def _video(*segments: SegmentView, ended_at: float | None = None, last: int | None = None) -> VideoView:
    return VideoView(1, "t", 0.0, RUNGS, segments, ended_at=ended_at, last_segment_id=last)


def _ready(k: int, uploaded: float, ready: float) -> SegmentView:
    return SegmentView(k, "READY", uploaded_at=uploaded, ready_at=ready, duration_ticks=270_000)


def test_a_slow_encode_is_waited_for_not_skipped():
    slow = SegmentView(1, "PENDING", uploaded_at=4.0)  # uploaded, still transcoding at now=60
    video = _video(_ready(0, 1.0, 2.0), slow, _ready(2, 7.0, 8.0), ended_at=9.0, last=2)
    assert [p.segment_id for p in live_segments(video, 60.0, 3.0)] == [0]
    assert not is_finished(video, 60.0, 3.0)
    done = _video(_ready(0, 1.0, 2.0), _ready(1, 4.0, 61.0), _ready(2, 7.0, 8.0), ended_at=9.0, last=2)
    assert [p.segment_id for p in live_segments(done, 62.0, 3.0)] == [0, 1, 2]
    assert is_finished(done, 62.0, 3.0)


def test_a_segment_uploaded_after_its_deadline_stays_skipped():
    late = _video(_ready(0, 1.0, 2.0), _ready(1, 20.0, 21.0), _ready(2, 7.0, 8.0))
    assert [p.segment_id for p in live_segments(late, 30.0, 3.0)] == [0, 2]


def test_an_uploaded_segment_that_fails_for_good_is_skipped_at_its_failure():
    failed = SegmentView(1, "FAILED", uploaded_at=4.0, failed_at=30.0)
    video = _video(_ready(0, 1.0, 2.0), failed, _ready(2, 7.0, 8.0), ended_at=9.0, last=2)
    assert [p.segment_id for p in live_segments(video, 29.0, 3.0)] == [0]
    assert [p.segment_id for p in live_segments(video, 31.0, 3.0)] == [0, 2]
    assert is_finished(video, 31.0, 3.0)


def test_an_upload_being_probed_is_waited_for_until_its_arrival_expires():
    # ingest records an arrival before ffprobe; state.arriving_views shows it as PENDING, failing at its expiry.
    probing = SegmentView(1, "PENDING", uploaded_at=4.0, failed_at=109.0)
    video = _video(_ready(0, 1.0, 2.0), probing, _ready(2, 7.0, 8.0))
    assert [p.segment_id for p in live_segments(video, 108.9, 3.0)] == [0]  # arrived in time: waited for
    assert [p.segment_id for p in live_segments(video, 109.0, 3.0)] == [0, 2]  # its process died: skipped
