"""Exact and property-style tests of the publish rules (server/core/playlists/publish.py)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

import pytest

from server.core.playlists import (
    RenditionView,
    SegmentView,
    VideoView,
    android_segments,
    is_finished,
    live_segments,
    stream_ended,
    vod_segments,
)
from server.core.playlists.publish import ready_for_vod

T0 = 1_795_000_000.0
GAP = 10.0
D = 270_000  # 3 s at 90 kHz
RUNGS = (
    RenditionView("HIGH", 720, 480, 3_128_000, 3_000_000, "avc1.4d401e"),
    RenditionView("MEDIUM", 480, 320, 896_000, 768_000, "avc1.4d401e"),
    RenditionView("LOW", 240, 160, 328_000, 200_000, "avc1.42c00d"),
)


def ready(k: int, at: float, duration: int = D) -> SegmentView:
    """Return a READY segment k that became ready at T0 + at, starting at k x 3 s."""
    return SegmentView(
        k, "READY", uploaded_at=T0 + at - 1, ready_at=T0 + at, start_ticks=k * D, duration_ticks=duration, packaged=True
    )


def failed(k: int, at: float) -> SegmentView:
    """Return a segment k that failed for good at T0 + at."""
    return SegmentView(k, "FAILED", uploaded_at=T0 + at - 1, failed_at=T0 + at)


def video(*segments: SegmentView, ended_at: float | None = None, last: int | None = None, vod: bool = False) -> VideoView:
    """Return a video on the test ladder; ended_at is relative to T0."""
    end = None if ended_at is None else T0 + ended_at
    return VideoView(7, "t", T0, RUNGS, tuple(segments), end, last, is_vod=vod)


def ids(video_: VideoView, at: float) -> list[int]:
    """Return the live list's segment ids at T0 + at."""
    return [p.segment_id for p in live_segments(video_, T0 + at, GAP)]


def test_contiguous_ready_segments_are_listed_in_order() -> None:
    v = video(ready(1, 8), ready(0, 5), ready(2, 11))
    published = live_segments(v, T0 + 12, GAP)
    assert [(p.segment_id, p.sequence, p.start_ticks, p.discontinuity) for p in published] == [
        (0, 0, 0, False),
        (1, 1, D, False),
        (2, 2, 2 * D, False),
    ]
    # audio: whole AAC frames laid end to end, never past the picture (0 + 140 x 1024, 141 frames to 288000, 140 to 432000)
    assert [(p.audio_start_ticks, p.audio_duration_ticks) for p in published] == [
        (0, 143_360),
        (143_360, 144_384),
        (287_744, 143_360),
    ]


def test_future_facts_are_ignored() -> None:
    v = video(ready(0, 5), ready(1, 8))
    assert ids(v, 7) == [0]


def test_missing_segment_waits_until_a_later_one_was_ready_for_the_timeout() -> None:
    v = video(ready(0, 5), ready(2, 11), ready(3, 14))
    assert ids(v, 20.999) == [0]
    published = live_segments(v, T0 + 21, GAP)
    assert [(p.segment_id, p.sequence, p.discontinuity, p.discontinuity_sequence) for p in published] == [
        (0, 0, False, 0),
        (2, 1, True, 1),
        (3, 2, False, 1),
    ]


def test_segment_arriving_after_its_skip_stays_out_of_the_live_list() -> None:
    v = video(ready(0, 5), ready(1, 30), ready(2, 11), ready(3, 14))
    assert ids(v, 22) == [0, 2, 3]
    assert ids(v, 40) == [0, 2, 3]
    assert [p.segment_id for p in vod_segments(v)] == [0, 1, 2, 3]
    assert [p.discontinuity for p in vod_segments(v)] == [False, False, False, False]


def test_segment_arriving_before_the_deadline_is_listed() -> None:
    v = video(ready(0, 5), ready(1, 20), ready(2, 11))
    assert ids(v, 19) == [0]
    assert ids(v, 20) == [0, 1, 2]


def test_failed_segment_is_skipped_at_once() -> None:
    v = video(ready(0, 5), failed(1, 6), ready(2, 11))
    assert ids(v, 11) == [0, 2]
    assert [p.discontinuity for p in live_segments(v, T0 + 11, GAP)] == [False, True]


def test_failed_first_segment_starts_the_list_without_a_discontinuity() -> None:
    v = video(failed(0, 4), ready(1, 8))
    assert [(p.segment_id, p.discontinuity, p.start_ticks) for p in live_segments(v, T0 + 9, GAP)] == [(1, False, D)]


def test_missing_tail_is_skipped_once_the_end_waited_the_timeout() -> None:
    v = video(ready(0, 5), ready(1, 8), ended_at=9, last=3)
    assert ids(v, 18.9) == [0, 1]
    assert not is_finished(v, T0 + 18.9, GAP)
    assert is_finished(v, T0 + 19, GAP)
    assert ids(v, 19) == [0, 1]


def test_end_before_the_last_uploads_waits_for_them() -> None:
    v = video(ready(0, 5), ready(1, 12), ended_at=9, last=1)
    assert ids(v, 10) == [0]
    assert not is_finished(v, T0 + 10, GAP)
    assert is_finished(v, T0 + 12, GAP)


def test_finished_at_once_when_every_segment_is_ready_before_the_end() -> None:
    v = video(ready(0, 5), ready(1, 8), ended_at=9, last=1)
    assert not is_finished(v, T0 + 8.5, GAP)
    assert is_finished(v, T0 + 9, GAP)


def test_one_segment_video_with_last_segment_id_zero() -> None:
    v = video(ready(0, 5), ended_at=6, last=0)
    assert is_finished(v, T0 + 6, GAP)
    assert ready_for_vod(v, T0 + 6, GAP)


def test_not_finished_while_the_end_is_unknown() -> None:
    v = video(ready(0, 5), ready(1, 8))
    assert not is_finished(v, T0 + 1000, GAP)
    assert not ready_for_vod(v, T0 + 1000, GAP)


def test_segments_past_the_last_id_are_ignored() -> None:
    v = video(ready(0, 5), ready(1, 8), ended_at=9, last=0)
    assert ids(v, 10) == [0]
    assert [p.segment_id for p in vod_segments(v)] == [0]


def test_no_skip_jumps_past_the_window_at_once() -> None:
    # A stranger's segment 999999 once skipped 8..999998 and ended the phone's stream (issue 15 item 1).
    phone = [ready(k, 5 + 3 * k) for k in range(8)]
    v = replace(video(*phone, ready(999_999, 10)), max_ahead=100)
    assert ids(v, 1000) == list(range(8))
    assert android_segments(v, None, T0 + 1000, GAP)[-1].segment_id == 7
    later = replace(video(*phone, ready(8, 60), ready(9, 63), ready(999_999, 10)), max_ahead=100)
    assert ids(later, 1000) == list(range(10))
    within = replace(video(ready(0, 5), ready(101, 8)), max_ahead=100)
    assert ids(within, 18) == [0, 101]  # a run of exactly the window (1..100) is still skipped


def test_android_segments_lists_only_ids_after_the_one_given() -> None:
    v = video(ready(0, 5), ready(1, 8), ready(2, 11))
    assert [p.segment_id for p in android_segments(v, None, T0 + 12, GAP)] == [0, 1, 2]
    assert [p.segment_id for p in android_segments(v, 0, T0 + 12, GAP)] == [1, 2]
    assert android_segments(v, 2, T0 + 12, GAP) == []


def test_android_stream_ended_is_true_even_when_nothing_new_is_listed() -> None:
    v = video(ready(0, 5), ready(1, 8), ended_at=9, last=1, vod=True)
    assert android_segments(v, 1, T0 + 9, GAP) == []
    assert stream_ended(v)


def test_android_segments_of_a_vod_include_late_ones() -> None:
    v = video(ready(0, 5), ready(1, 30), ready(2, 11), ended_at=12, last=2, vod=True)
    assert [p.segment_id for p in android_segments(v, None, T0 + 40, GAP)] == [0, 1, 2]
    assert stream_ended(v)


def test_starts_are_derived_from_earlier_durations_when_unknown() -> None:
    segs = [
        SegmentView(0, "READY", ready_at=T0 + 5, duration_ticks=271_000),
        SegmentView(2, "READY", ready_at=T0 + 11, duration_ticks=269_000),
    ]
    v = video(*segs)
    assert [(p.segment_id, p.start_ticks) for p in vod_segments(v)] == [(0, 0), (2, 271_000 + D)]


def test_invalid_states_are_refused() -> None:
    with pytest.raises(ValueError):
        SegmentView(0, "READY")
    with pytest.raises(ValueError):
        SegmentView(0, "FAILED")
    with pytest.raises(ValueError):
        SegmentView(0, "DONE")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        RenditionView("../x", 1, 1, 1, 1, "avc1")


# Property-style tests: random arrival orders, checked at every instant something happens.


@dataclass(frozen=True)
class History:
    """A whole recording's facts, as the database would hold them at the end."""

    video: VideoView
    gap: float
    events: tuple[float, ...]


def random_history(rng: random.Random) -> History:
    """Return a random recording: segments ready, failed or never arriving, in any order."""
    n = rng.randint(1, 10)
    segments = []
    for k in range(n):
        fate = rng.choices(["ready", "failed", "never"], weights=[7, 1, 2])[0]
        at = k * 3 + rng.uniform(3, 40)  # retries make some arrive far behind the others
        duration = D + rng.randint(-9000, 9000)
        if fate == "ready":
            segments.append(SegmentView(k, "READY", ready_at=T0 + at, duration_ticks=duration))
        elif fate == "failed":
            segments.append(SegmentView(k, "FAILED", failed_at=T0 + at))
    ended_at = T0 + n * 3 + rng.uniform(0, 20) if rng.random() < 0.8 else None
    ahead = rng.choice([None, None, 1, 2, 3, 5])
    v = VideoView(7, "t", T0, RUNGS, tuple(segments), ended_at, n - 1 if ended_at else None, max_ahead=ahead)
    times = [s.ready_at or s.failed_at or 0.0 for s in segments] + ([ended_at] if ended_at else [])
    gap = rng.choice([0.0, 5.0, 10.0, 30.0])
    events = sorted({T0, *times} | {t + gap for t in times} | {t - 0.001 for t in times})
    return History(v, gap, tuple(events))


def oracle(v: VideoView, gap: float) -> tuple[list[int], float]:
    """Return the final live ids and the finish time (+inf: never), from the docstring's rule with every fact known."""
    assert v.ended_at is not None and v.last_segment_id is not None
    ahead = v.last_segment_id + 1 if v.max_ahead is None else v.max_ahead

    def settled(j: int) -> float:
        s = v.by_id.get(j)
        return math.inf if s is None else min(s.ready_at or math.inf, s.failed_at or math.inf)

    decided, included = -math.inf, []
    for k in range(v.last_segment_id + 1):
        s = v.by_id.get(k)
        if s is None and (k == 0 or k - 1 in v.by_id):  # a run of missing ids starts: too long to skip?
            after = [j for j in v.by_id if k < j <= v.last_segment_id]
            if after and min(after) - k > ahead:
                return included, math.inf
        last = min(k + ahead, v.last_segment_id)
        later = min((settled(j) for j in range(k + 1, last + 1)), default=math.inf)
        failed_at = s.failed_at if s and s.failed_at else math.inf
        deadline = max(decided, min(later + gap, v.ended_at + gap, failed_at))
        if s and s.ready_at is not None and s.ready_at <= deadline:
            included.append(k)
            decided = max(decided, s.ready_at)
        else:
            decided = deadline
    return included, max(decided, v.ended_at)


@pytest.mark.parametrize("seed", range(300))
def test_live_list_only_grows_and_finishes_when_expected(seed: int) -> None:
    h = random_history(random.Random(seed))
    previous: list = []
    was_finished = False
    for now in (*h.events, h.events[-1] + 1000):
        current = live_segments(h.video, now, h.gap)
        assert current[: len(previous)] == previous, f"live list rewritten at now={now - T0:.3f}"
        finished = is_finished(h.video, now, h.gap)
        assert finished or not was_finished, "is_finished went back to false"
        previous, was_finished = current, finished
    listed = {p.segment_id for p in previous}
    assert listed <= {p.segment_id for p in vod_segments(h.video)}
    if h.video.ended_at is None:
        assert not was_finished
        return
    expected_ids, finish_at = oracle(h.video, h.gap)
    assert [p.segment_id for p in previous] == expected_ids
    if finish_at == math.inf:
        assert not was_finished
        return
    assert was_finished
    assert is_finished(h.video, finish_at, h.gap)
    assert not is_finished(h.video, finish_at - 0.0005, h.gap)


def test_audio_is_laid_end_to_end_in_whole_frames_never_ahead_of_the_picture() -> None:
    rng = random.Random(7)
    durations = [rng.randrange(75, 106) * 3000 for _ in range(200)]  # 2.5-3.5 s cuts at 30 fps
    starts = [sum(durations[:k]) for k in range(len(durations))]
    segments = [
        SegmentView(k, "READY", ready_at=T0 + k, start_ticks=s, duration_ticks=d)
        for k, (s, d) in enumerate(zip(starts, durations, strict=True))
    ]
    published = vod_segments(video(*segments, ended_at=300, last=len(segments) - 1, vod=True))
    audio_end = 0
    for p in published:
        assert p.audio_start_ticks == audio_end  # no overlap, no gap
        assert p.audio_duration_ticks % 1024 == 0 and p.audio_duration_ticks > 0
        audio_end = p.audio_start_ticks + p.audio_duration_ticks
        lag = (p.end_ticks * 48_000 // 90_000) - audio_end
        assert 0 <= lag < 1024  # behind the picture's end by less than one frame, however long the recording


def test_audio_restarts_level_with_the_picture_after_a_hole_and_keeps_what_was_packaged() -> None:
    packaged = SegmentView(
        0, "READY", ready_at=T0 + 5, start_ticks=0, duration_ticks=D, audio_start_ticks=0, audio_duration_ticks=99_328
    )
    published = vod_segments(video(packaged, ready(1, 8), ready(3, 14), ended_at=20, last=3, vod=True))
    assert [(p.segment_id, p.audio_start_ticks, p.audio_duration_ticks) for p in published] == [
        (0, 0, 99_328),  # recorded by the packager: kept as it is
        (1, 99_328, 188_416),  # follows it: (288000 - 99328) // 1024 = 184 frames
        (3, 432_000, 143_360),  # after a hole: level with its picture (3 x 144000)
    ]
