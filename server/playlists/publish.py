"""Pure decisions: which segments a playlist lists, and when a recording is over.

The skip rule (live lists are append-only, so every decision is final once taken):

Only facts whose timestamp is <= now count (a segment is "ready" iff status READY and ready_at <= now;
failed iff failed_at <= now; the end is known iff ended_at <= now). Walk k = 0, 1, ... up to
last_segment_id (or, before the end is known, up to the highest id known) keeping r, the time at which
the previous segment's fate was decided (r = -inf before segment 0):

    later(k)    = min(ready_at(j) or failed_at(j) for j > k)          (+inf if none yet)
    deadline(k) = max(r, min(later(k) + gap_timeout,                  a later segment waited long enough
                             ended_at + gap_timeout,                  the end waited long enough
                             failed_at(k)))                           k itself failed
    if uploaded_at(k) <= deadline(k): deadline(k) = failed_at(k)    an upload in time is never skipped
                                                                     for a slow encode, only if it fails
    k is included  iff ready_at(k) <= deadline(k); then r = max(r, ready_at(k))
    k is skipped   iff not included and deadline(k) <= now; then r = deadline(k)
    otherwise the walk stops: the list waits at k.

Facts learnt after `now` can only add terms greater than `now` to the min, so a deadline that has passed
never moves and one still ahead stays ahead: a decision taken at some `now` is taken the same way at every
later `now`. A segment that arrives after its deadline stays out of the live list (vod_segments has it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from server.playlists.model import AAC_FRAME, AUDIO_TIMESCALE, VIDEO_TIMESCALE, Published, SegmentState, VideoState

_INF = math.inf


def live_segments(video: VideoState, now: float, gap_timeout: float) -> list[Published]:
    """Return the append-only live list: ready segments from 0, holes skipped by the skip rule."""
    included, _ = _walk(video, now, gap_timeout)
    return _publish(video, included)


def vod_segments(video: VideoState) -> list[Published]:
    """Return every READY segment in id order, late ones too, with a discontinuity after each hole."""
    last = video.last_segment_id if video.last_segment_id is not None else _INF
    ready = sorted(s.segment_id for s in video.segments if s.status == "READY" and s.segment_id <= last)
    return _publish(video, ready)


def is_finished(video: VideoState, now: float, gap_timeout: float) -> bool:
    """Return whether the end is known and every segment up to the last one is decided."""
    end = _known_end(video, now)
    if end is None or video.last_segment_id is None:
        return False
    _, next_undecided = _walk(video, now, gap_timeout)
    return next_undecided > video.last_segment_id


def android_segments(video: VideoState, after: int | None, now: float, gap_timeout: float) -> list[Published]:
    """Return the segments the Android MPD lists: those after `after` (all when None).

    While live this is the live list; once the server switched the video to VOD it is the VOD list.
    """
    published = vod_segments(video) if video.is_vod else live_segments(video, now, gap_timeout)
    return [p for p in published if after is None or p.segment_id > after]


def stream_ended(video: VideoState, now: float, gap_timeout: float) -> bool:
    """Return the Android `streamEnded` flag: true once finished, whatever the answer lists."""
    return video.is_vod or is_finished(video, now, gap_timeout)


def _known_end(video: VideoState, now: float) -> float | None:
    """Return ended_at if the end is known at `now`."""
    if video.ended and video.ended_at is not None and video.ended_at <= now:
        return video.ended_at
    return None


def _ready_at(seg: SegmentState | None, now: float) -> float | None:
    """Return when the segment became ready, if it is ready at `now`."""
    if seg is None or seg.status != "READY" or seg.ready_at is None or seg.ready_at > now:
        return None
    return seg.ready_at


def _failed_at(seg: SegmentState | None, now: float) -> float:
    """Return when the segment failed, +inf if it has not failed by `now`."""
    if seg is None or seg.failed_at is None or seg.failed_at > now:
        return _INF
    return seg.failed_at


def _uploaded_at(seg: SegmentState | None, now: float) -> float:
    """Return when the segment was uploaded, +inf if not by `now`."""
    if seg is None or seg.uploaded_at is None or seg.uploaded_at > now:
        return _INF
    return seg.uploaded_at


def _settled_at(seg: SegmentState | None, now: float) -> float:
    """Return the first time the segment was ready or failed, +inf if neither by `now`."""
    ready = _ready_at(seg, now)
    return min(_INF if ready is None else ready, _failed_at(seg, now))


def _horizon(video: VideoState, now: float) -> int:
    """Return the highest segment id the walk may reach."""
    if _known_end(video, now) is not None and video.last_segment_id is not None:
        return video.last_segment_id
    known = [s.segment_id for s in video.segments if _settled_at(s, now) <= now]
    return max(known, default=-1)


def _later_settled(video: VideoState, horizon: int, now: float) -> list[float]:
    """Return, for each k in 0..horizon, the earliest settle time of a segment j with k < j <= horizon."""
    later = [_INF] * (horizon + 1)
    running = _INF
    for k in range(horizon, -1, -1):
        later[k] = running
        running = min(running, _settled_at(video.by_id.get(k), now))
    return later


def _walk(video: VideoState, now: float, gap_timeout: float) -> tuple[list[int], int]:
    """Apply the skip rule; return the included ids and the first undecided id."""
    horizon = _horizon(video, now)
    later = _later_settled(video, horizon, now)
    end = _known_end(video, now)
    end_deadline = _INF if end is None else end + gap_timeout
    decided_at = -_INF
    included: list[int] = []
    for k in range(horizon + 1):
        seg = video.by_id.get(k)
        deadline = max(decided_at, min(later[k] + gap_timeout, end_deadline, _failed_at(seg, now)))
        if _uploaded_at(seg, now) <= deadline:
            deadline = _failed_at(seg, now)  # it arrived in time: wait for its fate, however long the encode
        ready = _ready_at(seg, now)
        if ready is not None and ready <= deadline:
            included.append(k)
            decided_at = max(decided_at, ready)
        elif deadline <= now:
            decided_at = deadline
        else:
            return included, k
    return included, horizon + 1


def _publish(video: VideoState, ids: Iterable[int]) -> list[Published]:
    """Build the Published entries of the given ids, in order, with their timeline positions."""
    starts = _derived_starts(video)
    out: list[Published] = []
    discontinuities = 0
    for sequence, k in enumerate(ids):
        gap = bool(out) and k != out[-1].segment_id + 1
        discontinuities += gap
        audio_after = None if not out or gap else out[-1].audio_start_ticks + out[-1].audio_duration_ticks
        out.append(_entry(video, k, sequence, starts.get(k, 0), gap, discontinuities, audio_after))
    return out


def _entry(
    video: VideoState, k: int, sequence: int, derived_start: int, gap: bool, disc_seq: int, audio_after: int | None
) -> Published:
    """Build one Published entry, deriving whatever ticks the packager has not recorded yet.

    Audio: see `audio_span`; `audio_after` is where the previous entry's audio ends (None at the
    first entry and after a hole, where the audio restarts level with the picture).
    """
    seg = video.by_id[k]
    start = derived_start if seg.start_ticks is None else seg.start_ticks
    duration = video.nominal_ticks if seg.duration_ticks is None else seg.duration_ticks
    audio_start, audio_duration = audio_span(start, duration, audio_after)
    if seg.audio_start_ticks is not None:
        audio_start = seg.audio_start_ticks
    if seg.audio_duration_ticks is not None:
        audio_duration = seg.audio_duration_ticks
    return Published(k, sequence, start, duration, audio_start, audio_duration, gap, disc_seq)


def audio_span(start: int, duration: int, audio_after: int | None) -> tuple[int, int]:
    """Return (audio start, audio duration) in 48 kHz ticks of a segment whose video spans start..start+duration (90 kHz).

    Each segment's audio is encoded apart, so it holds whole AAC frames (1024 samples) and its own
    priming frame. The audio track is laid end to end: a segment's audio starts exactly where the
    previous one's ends (no overlap, no gap) and holds as many whole frames as fit before its video's
    end, so the audio never runs ahead of the picture and lags it by less than one frame (plus the
    constant priming frame). Only the first segment and the first after a hole start level with
    their picture.
    """
    audio_start = _to_audio(start) if audio_after is None else audio_after
    frames = max(1, (_to_audio(start + duration) - audio_start) // AAC_FRAME)
    return audio_start, frames * AAC_FRAME


def _derived_starts(video: VideoState) -> dict[int, int]:
    """Return each id's start: the sum of earlier actual durations, nominal for any unknown one."""
    top = max(video.by_id, default=-1)
    starts: dict[int, int] = {}
    cursor = 0
    for k in range(top + 1):
        seg = video.by_id.get(k)
        if seg is not None and seg.start_ticks is not None:
            cursor = seg.start_ticks  # the worker's tfdt is the truth; resync on it
        starts[k] = cursor
        duration = seg.duration_ticks if seg is not None and seg.status == "READY" else None
        cursor += video.nominal_ticks if duration is None else duration
    return starts


def _to_audio(video_ticks: int) -> int:
    """Convert 90 kHz ticks to the nearest 48 kHz tick."""
    return (video_ticks * AUDIO_TIMESCALE * 2 + VIDEO_TIMESCALE) // (VIDEO_TIMESCALE * 2)
