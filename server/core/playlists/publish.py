"""Pure decisions: which segments a playlist lists, and when a recording is over.

The skip rule (live lists are append-only, so every decision is final once taken):

Only facts whose timestamp is <= now count (a segment is "ready" iff status READY and ready_at <= now;
failed iff failed_at <= now; the end is known iff ended_at <= now). uploaded_at is when the upload's
request began: ingest records it before ffprobe (an upload still being probed is a PENDING segment that
fails at its arrival's expiry, server/domain/state.py), and only while the walk has not decided k yet, so a
fact learnt late never reopens a decision (ingest.record_arrival). Walk k = 0, 1, ... up to
last_segment_id (or, before the end is known, up to the highest id known) keeping r, the time at which
the previous segment's fate was decided (r = -inf before segment 0):

    later(k)    = min(ready_at(j) or failed_at(j) for k < j <= k + W) (+inf if none yet; W: max_ahead, else no bound)
    deadline(k) = max(r, min(later(k) + gap_timeout,                  a later segment waited long enough
                             ended_at + gap_timeout,                  the end waited long enough
                             failed_at(k)))                           k itself failed
    if uploaded_at(k) <= deadline(k): deadline(k) = failed_at(k)    an upload in time is never skipped
                                                                     for a slow encode, only if it fails
    k is included  iff ready_at(k) <= deadline(k); then r = max(r, ready_at(k))
    k is skipped   iff not included and deadline(k) <= now; then r = deadline(k)
    otherwise the walk stops: the list waits at k.

W is max_ahead (MAX_SEGMENT_AHEAD, the ingest bound): a segment more than W ids ahead says nothing about k,
and a run of ids that never arrived and is longer than W is never skipped (the walk waits at its first
id). So one stray id far ahead cannot end a stream's live list nor hurry its skips (ingest refuses such
ids too; this keeps rows stored before that rule harmless).

Facts learnt after `now` can only add terms greater than `now` to the min, so a deadline that has passed
never moves and one still ahead stays ahead: a decision taken at some `now` is taken the same way at every
later `now`. A segment that arrives after its deadline stays out of the live list (vod_segments has it).

A phone that was told a segment is stored must find it in the recording: the finished DASH MPD and
Android MPD list every ready segment, late ones too (`vod_segments`), and those are what is packaged once
the video is finished. An HLS EVENT playlist may only be appended to (RFC 8216 section 6.2.1), so the HLS
playlists keep the live list to their end (`append_only`); a late segment reaches HLS viewers only through
a VOD playlist of its own, not served yet (docs/changelog.md says why it stays open).
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable

from server.core.playlists.model import Published, SegmentView, VideoView
from server.core.timeline import AAC_FRAME, AUDIO_TIMESCALE, VIDEO_TIMESCALE

_INF = math.inf


def live_segments(video: VideoView, now: float, gap_timeout: float) -> list[Published]:
    """Return the append-only live list: ready segments from 0, holes skipped by the skip rule."""
    included, _ = _walk(video, now, gap_timeout)
    return _publish(video, included)


def vod_segments(video: VideoView) -> list[Published]:
    """Return every READY segment in id order, late ones too, with a discontinuity after each hole."""
    last = video.last_segment_id if video.last_segment_id is not None else _INF
    ready = [s.segment_id for s in _in_order(video) if s.status == "READY" and s.segment_id <= last]
    return _publish(video, ready)


def is_finished(video: VideoView, now: float, gap_timeout: float) -> bool:
    """Return whether the end is known and every segment up to the last one is decided."""
    end = _known_end(video, now)
    if end is None or video.last_segment_id is None:
        return False
    _, next_undecided = _walk(video, now, gap_timeout)
    return next_undecided > video.last_segment_id


def decided(video: VideoView, segment_id: int, now: float, gap_timeout: float) -> bool:
    """Return whether the live list has taken its (final) decision on `segment_id` at `now`: listed or skipped."""
    _, next_undecided = _walk(video, now, gap_timeout)
    return segment_id < next_undecided


def packagable(video: VideoView, now: float, gap_timeout: float) -> list[Published]:
    """Return the segments whose place on the timeline is decided: the live list, or every ready one once finished."""
    if video.is_vod or is_finished(video, now, gap_timeout):
        return vod_segments(video)
    return live_segments(video, now, gap_timeout)


def ready_for_vod(video: VideoView, now: float, gap_timeout: float) -> bool:
    """Return whether a LIVE video is over: finished, and every segment of its VOD list packaged."""
    if video.is_vod or not is_finished(video, now, gap_timeout):
        return False
    return all(video.by_id[p.segment_id].packaged for p in vod_segments(video))


def listed_segments(video: VideoView, now: float, gap_timeout: float, *, append_only: bool = False) -> list[Published]:
    """Return what players are given: the packaged VOD list, or the live list up to its first unpackaged segment.

    A live list only grows at its end, so it waits for a segment's remux rather than skip it.
    `append_only` keeps the live list after the end too: an HLS EVENT playlist may only be appended to
    (RFC 8216 section 6.2.1), so a segment that arrived after its live deadline is in DASH VOD and the
    Android MPD only.
    """
    if video.is_vod and not append_only:
        return [p for p in vod_segments(video) if video.by_id[p.segment_id].packaged]
    listed: list[Published] = []
    for entry in live_segments(video, now, gap_timeout):
        if not video.by_id[entry.segment_id].packaged:
            break
        listed.append(entry)
    return listed


def android_segments(video: VideoView, after: int | None, now: float, gap_timeout: float) -> list[Published]:
    """Return the segments the Android MPD lists: those players are given after `after` (all when None)."""
    return [p for p in listed_segments(video, now, gap_timeout) if after is None or p.segment_id > after]


def stream_ended(video: VideoView) -> bool:
    """Return the Android `streamEnded` flag: true once the video is VOD, whatever the answer lists.

    The switch happens only once every listed segment is packaged (ready_for_vod), so a player that
    stops polling at this flag has been offered every segment.
    """
    return video.is_vod


def _known_end(video: VideoView, now: float) -> float | None:
    """Return ended_at if the end is known at `now`."""
    if video.ended and video.ended_at is not None and video.ended_at <= now:
        return video.ended_at
    return None


def _ready_at(seg: SegmentView | None, now: float) -> float | None:
    """Return when the segment became ready, if it is ready at `now`."""
    if seg is None or seg.status != "READY" or seg.ready_at is None or seg.ready_at > now:
        return None
    return seg.ready_at


def _failed_at(seg: SegmentView | None, now: float) -> float:
    """Return when the segment failed, +inf if it has not failed by `now`."""
    if seg is None or seg.failed_at is None or seg.failed_at > now:
        return _INF
    return seg.failed_at


def _uploaded_at(seg: SegmentView | None, now: float) -> float:
    """Return when the segment was uploaded, +inf if not by `now`."""
    if seg is None or seg.uploaded_at is None or seg.uploaded_at > now:
        return _INF
    return seg.uploaded_at


def _settled_at(seg: SegmentView | None, now: float) -> float:
    """Return the first time the segment was ready or failed, +inf if neither by `now`."""
    ready = _ready_at(seg, now)
    return min(_INF if ready is None else ready, _failed_at(seg, now))


def _in_order(video: VideoView) -> list[SegmentView]:
    """Return the stored segments in id order: every walk below costs what is stored, never an id's size."""
    return sorted(video.segments, key=lambda s: s.segment_id)


def _horizon(video: VideoView, now: float) -> int:
    """Return the highest segment id the walk may reach."""
    if _known_end(video, now) is not None and video.last_segment_id is not None:
        return video.last_segment_id
    known = [s.segment_id for s in video.segments if _settled_at(s, now) <= now]
    return max(known, default=-1)


class _RangeMin:
    """Earliest settle time among the stored segments whose ids lie in a range (a sparse table: O(1) a query)."""

    def __init__(self, stored: list[SegmentView], now: float) -> None:
        self.ids = [s.segment_id for s in stored]
        self.table = [[_settled_at(s, now) for s in stored]]
        width = 1
        while 2 * width <= len(stored):
            row = self.table[-1]
            self.table.append([min(row[i], row[i + width]) for i in range(len(row) - width)])
            width *= 2

    def between(self, low: int, high: int | float) -> float:
        """Return the earliest settle time of the stored ids in [low, high], +inf if none."""
        i, j = bisect_left(self.ids, low), bisect_right(self.ids, high)
        if i >= j:
            return _INF
        level = (j - i).bit_length() - 1
        return min(self.table[level][i], self.table[level][j - (1 << level)])


def _walk(video: VideoView, now: float, gap_timeout: float) -> tuple[list[int], int]:
    """Apply the skip rule; return the included ids and the first undecided id.

    A run of ids with no segment has no upload, failure or readiness of its own, and every later id of
    the run sees at least the segments its first id sees (its later(k) is no later), so the rule takes
    the same decision for the whole run at its first id: skip it all at one deadline, or wait there.
    Each run is therefore one step, and the walk is O(segments stored x log).
    """
    horizon = _horizon(video, now)
    stored = [s for s in _in_order(video) if s.segment_id <= horizon]
    settled = _RangeMin(stored, now)
    ahead = _INF if video.max_ahead is None else video.max_ahead
    end = _known_end(video, now)
    end_deadline = _INF if end is None else end + gap_timeout
    decided_at = -_INF
    included: list[int] = []
    expected = 0  # the first id not decided yet
    for seg in stored:
        k = seg.segment_id
        if expected < k:  # ids expected..k-1 never arrived: the first later segment is k itself
            if k - expected > ahead:
                return included, expected  # a stray id far ahead is no reason to skip a whole window
            deadline = max(decided_at, min(settled.between(k, expected + ahead) + gap_timeout, end_deadline))
            if deadline > now:
                return included, expected
            decided_at = deadline
        after = settled.between(k + 1, k + ahead)
        deadline = max(decided_at, min(after + gap_timeout, end_deadline, _failed_at(seg, now)))
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
        expected = k + 1
    if expected <= horizon and max(decided_at, end_deadline) > now:  # the missing tail waits for the end
        return included, expected
    return included, horizon + 1


def _publish(video: VideoView, ids: Iterable[int]) -> list[Published]:
    """Build the Published entries of the given ids, in order, with their timeline positions."""
    starts = _derived_starts(video)
    out: list[Published] = []
    discontinuities = 0
    for sequence, k in enumerate(ids):
        gap = bool(out) and k != out[-1].segment_id + 1
        discontinuities += gap
        audio_after = None if not out or gap else out[-1].audio_start_ticks + out[-1].audio_duration_ticks
        out.append(_entry(video, k, sequence, starts[k], gap, discontinuities, audio_after))
    return out


def _entry(
    video: VideoView, k: int, sequence: int, derived_start: int, gap: bool, disc_seq: int, audio_after: int | None
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
    return Published(k, sequence, start, duration, audio_start, audio_duration, gap, disc_seq, seg.parts)


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


def _derived_starts(video: VideoView) -> dict[int, int]:
    """Return each stored id's start: the sum of earlier actual durations, nominal for any unknown or missing one."""
    starts: dict[int, int] = {}
    cursor = 0
    expected = 0
    for seg in _in_order(video):
        cursor += video.nominal_ticks * (seg.segment_id - expected)  # the ids that never arrived
        if seg.start_ticks is not None:
            cursor = seg.start_ticks  # the worker's tfdt is the truth; resync on it
        starts[seg.segment_id] = cursor
        duration = seg.duration_ticks if seg.status == "READY" else None
        cursor += video.nominal_ticks if duration is None else duration
        expected = seg.segment_id + 1
    return starts


def _to_audio(video_ticks: int) -> int:
    """Convert 90 kHz ticks to the nearest 48 kHz tick."""
    return (video_ticks * AUDIO_TIMESCALE * 2 + VIDEO_TIMESCALE) // (VIDEO_TIMESCALE * 2)
