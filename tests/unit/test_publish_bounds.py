"""Publishing costs what is stored, never what an id says; the rules players are served are these ones."""

from __future__ import annotations

import random
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from server.core.playlists import SegmentView, VideoView, live_segments, vod_segments
from server.core.playlists import publish as publish_module
from server.core.playlists.publish import (
    android_segments,
    is_finished,
    listed_segments,
    packagable,
    ready_for_vod,
    stream_ended,
)
from tests.unit.test_playlists_publish import RUNGS, T0, oracle

D = 270_000
GAP = 10.0
TOP = 999_999  # the highest id a phone may upload (six-digit media names)


class OverBudget(Exception):
    pass


@contextmanager
def step_budget(limit: int) -> Iterator[Callable[[], int]]:
    """Count the lines executed in server/core/playlists/publish.py; raise OverBudget past `limit`.

    A count of steps, not a clock: it says the same on a loaded machine as on an idle one.
    """
    steps = 0

    def local(frame, event, _arg):  # type: ignore[no-untyped-def]
        nonlocal steps
        if event == "line":
            steps += 1
            if steps > limit:
                raise OverBudget(f"more than {limit} steps in publish.py")
        return local

    def calls(frame, _event, _arg):  # type: ignore[no-untyped-def]
        return local if frame.f_code.co_filename == publish_module.__file__ else None

    previous = sys.gettrace()
    sys.settrace(calls)
    try:
        yield lambda: steps
    finally:
        sys.settrace(previous)


def ready(k: int, at: float, *, packaged: bool = True) -> SegmentView:
    return SegmentView(k, "READY", uploaded_at=T0 + at - 1, ready_at=T0 + at, duration_ticks=D, packaged=packaged)


def video(*segments: SegmentView, ended_at: float | None = None, last: int | None = None, vod: bool = False) -> VideoView:
    end = None if ended_at is None else T0 + ended_at
    return VideoView(7, "t", T0, RUNGS, tuple(segments), end, last, is_vod=vod)


def _every_rule(v: VideoView, now: float) -> None:
    live_segments(v, now, GAP)
    vod_segments(v)
    is_finished(v, now, GAP)
    listed_segments(v, now, GAP)
    android_segments(v, 0, now, GAP)
    packagable(v, now, GAP)
    ready_for_vod(v, now, GAP)


@pytest.mark.parametrize(
    "v",
    [
        video(ready(0, 5), ready(TOP, 8)),  # live, a huge hole, the end unknown
        video(ready(0, 5), ready(TOP, 8), ended_at=9, last=TOP),  # ended at the top id
        video(ready(0, 5), ended_at=9, last=TOP),  # ended at the top id with nothing after 0
        video(ready(0, 5), ready(1, 6), ready(TOP, 8), ended_at=9, last=TOP, vod=True),
        video(ready(0, 5), ready(10**15, 8), ended_at=9, last=10**15),  # past any id a route accepts: still bounded
    ],
    ids=["live", "ended", "ended-empty-tail", "vod", "absurd"],
)
def test_every_rule_costs_what_is_stored_not_the_largest_id(v: VideoView) -> None:
    for now in (T0 + 7, T0 + 30, T0 + 10_000):
        with step_budget(2_000):
            _every_rule(v, now)


def test_a_huge_hole_is_decided_like_a_small_one() -> None:
    v = video(ready(0, 5), ready(TOP, 8))
    assert [p.segment_id for p in live_segments(v, T0 + 17.9, GAP)] == [0]
    published = live_segments(v, T0 + 18, GAP)
    assert [(p.segment_id, p.discontinuity, p.start_ticks) for p in published] == [(0, False, 0), (TOP, True, D * TOP)]
    ended = video(ready(0, 5), ended_at=9, last=TOP)
    assert not is_finished(ended, T0 + 18.9, GAP)
    assert is_finished(ended, T0 + 19, GAP)


def sparse_history(rng: random.Random) -> tuple[VideoView, float, list[float]]:
    """Return an ended recording whose few stored segments are scattered over a wide id range."""
    span = rng.randint(1, 300)
    ids = sorted(rng.sample(range(span), rng.randint(1, min(span, 8))))
    segments = []
    for k in ids:
        at = k * 0.1 + rng.uniform(3, 40)
        if rng.random() < 0.85:
            segments.append(SegmentView(k, "READY", ready_at=T0 + at, duration_ticks=D + rng.randint(-9000, 9000)))
        else:
            segments.append(SegmentView(k, "FAILED", failed_at=T0 + at))
    last = max(ids) + rng.choice([0, 0, 1, rng.randint(2, 500)])
    ended_at = T0 + rng.uniform(0, 50)
    v = VideoView(7, "t", T0, RUNGS, tuple(segments), ended_at, last)
    gap = rng.choice([0.0, 5.0, 10.0, 30.0])
    times = [s.ready_at or s.failed_at or 0.0 for s in segments] + [ended_at]
    events = sorted({T0, *times} | {t + gap for t in times} | {t - 0.001 for t in times})
    return v, gap, events


@pytest.mark.parametrize("seed", range(150))
def test_sparse_ids_are_decided_as_the_oracle_decides_each_id(seed: int) -> None:
    v, gap, events = sparse_history(random.Random(seed))
    previous: list = []
    for now in (*events, events[-1] + 1000):
        current = live_segments(v, now, gap)
        assert current[: len(previous)] == previous
        previous = current
    expected, finish_at = oracle(v, gap)
    assert [p.segment_id for p in previous] == expected
    assert is_finished(v, finish_at, gap)
    assert not is_finished(v, finish_at - 0.0005, gap)


def test_derived_starts_count_a_nominal_length_for_each_missing_id() -> None:
    segs = [
        SegmentView(0, "READY", ready_at=T0 + 5, duration_ticks=271_000),
        SegmentView(500, "READY", ready_at=T0 + 6, duration_ticks=1),
    ]
    assert [(p.segment_id, p.start_ticks) for p in vod_segments(video(*segs))] == [(0, 0), (500, 271_000 + 499 * D)]


# One rule per decision: what players are served, and when the stream is over.


def test_the_live_list_stops_at_the_first_unpackaged_segment() -> None:
    v = video(ready(0, 5), ready(1, 6, packaged=False), ready(2, 7))
    assert [p.segment_id for p in live_segments(v, T0 + 8, GAP)] == [0, 1, 2]
    assert [p.segment_id for p in listed_segments(v, T0 + 8, GAP)] == [0]  # 2 waits for 1's remux, never skips it
    assert [p.segment_id for p in android_segments(v, None, T0 + 8, GAP)] == [0]
    assert android_segments(v, 0, T0 + 8, GAP) == []


def test_a_vod_lists_every_packaged_ready_segment() -> None:
    v = video(ready(0, 5), ready(1, 30, packaged=False), ready(2, 7), ended_at=8, last=2, vod=True)
    assert [p.segment_id for p in listed_segments(v, T0 + 40, GAP)] == [0, 2]
    assert [p.segment_id for p in android_segments(v, 0, T0 + 40, GAP)] == [2]


def test_packagable_is_the_live_list_until_finished_then_every_ready_one() -> None:
    live = video(ready(0, 5, packaged=False), ready(2, 7, packaged=False))
    assert [p.segment_id for p in packagable(live, T0 + 16.9, GAP)] == [0]
    assert [p.segment_id for p in packagable(live, T0 + 17, GAP)] == [0, 2]  # 1 never came: skipped after GAP
    late = video(ready(0, 5, packaged=False), ready(1, 30, packaged=False), ready(2, 7, packaged=False), ended_at=8, last=2)
    assert [p.segment_id for p in live_segments(late, T0 + 31, GAP)] == [0, 2]
    assert [p.segment_id for p in packagable(late, T0 + 31, GAP)] == [0, 1, 2]  # finished: late 1 gets its place too


def test_vod_only_once_finished_and_every_listed_segment_is_packaged() -> None:
    waiting = video(ready(0, 5), ready(1, 6, packaged=False), ended_at=7, last=1)
    assert is_finished(waiting, T0 + 7, GAP)
    assert not ready_for_vod(waiting, T0 + 7, GAP)  # the last remux is still to come
    done = video(ready(0, 5), ready(1, 6), ended_at=7, last=1)
    assert not ready_for_vod(done, T0 + 6.9, GAP)
    assert ready_for_vod(done, T0 + 7, GAP)
    already = video(ready(0, 5), ready(1, 6), ended_at=7, last=1, vod=True)
    assert not ready_for_vod(already, T0 + 7, GAP)


def test_stream_ended_is_the_vod_switch_even_when_nothing_new_is_listed() -> None:
    finished = video(ready(0, 5), ready(1, 6, packaged=False), ended_at=7, last=1)
    assert not stream_ended(finished)  # the player would stop before it saw segment 1
    vod = video(ready(0, 5), ready(1, 6), ended_at=7, last=1, vod=True)
    assert android_segments(vod, 1, T0 + 8, GAP) == []
    assert stream_ended(vod)
