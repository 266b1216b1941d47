"""How a live video's uploads are going, from the uploads themselves (docs/admin-api.md "IngestHealth").

Pure: the caller loads one `Upload` per stored segment (light columns, in first-upload order) and passes
`now`. The rules, each answering one operator question:

* last_segment_age: seconds since the newest upload; stalled when it exceeds STALL_FACTOR segment
  durations while the video is not ended (the phone stopped sending).
* upload_ratio: a segment's upload time over its media duration. At 1.0 the phone needs as long to
  send a segment as to record it, so a live stream falls behind for good; warn from WARN_RATIO. `last`
  is the newest upload's ratio and decides the level; `max` is the worst seen.
* drift: (newest upload - first upload) - media received after the first segment: how far behind real
  time the uploads have fallen, as of the newest one (missing segments count as not received).
* missing: ids below the highest stored (or up to last_segment_id once ended) that never arrived: their
  count and the first MAX_MISSING of them.
* duplicates: identical bytes uploaded again (a phone retrying after a lost answer).
* out_of_order: uploads whose id is below an id uploaded before them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from server.core.transcode.ladder import SourceInfo

STALL_FACTOR = 3
WARN_RATIO = 0.9
ALARM_RATIO = 1.0
MAX_MISSING = 50


@dataclass(frozen=True)
class Upload:
    """One stored segment as ingest health sees it."""

    segment_id: int
    uploaded_at: datetime
    duration: float  # seconds of media (probed)
    upload_seconds: float | None  # request start -> stored; None for rows from before it was measured
    duplicates: int = 0


def ratio_level(ratio: float | None) -> str:
    """ok, warn (>= WARN_RATIO) or alarm (>= ALARM_RATIO)."""
    if ratio is None or ratio < WARN_RATIO:
        return "ok"
    return "alarm" if ratio >= ALARM_RATIO else "warn"


def ingest_health(
    uploads: Sequence[Upload],
    *,
    now: datetime,
    segment_seconds: float,
    last_segment_id: int | None,
    probe: SourceInfo | None,
) -> dict[str, Any]:
    """The IngestHealth JSON of one live video; `uploads` in the order they first arrived."""
    newest = max((u.uploaded_at for u in uploads), default=None)
    age = None if newest is None else round((now - newest).total_seconds(), 3)
    stalled = is_stalled(newest, now=now, segment_seconds=segment_seconds, last_segment_id=last_segment_id)
    missing, missing_count = missing_ids(uploads, last_segment_id)
    return {
        "last_segment_age": age,
        "stalled": stalled,
        "upload_ratio": upload_ratio(uploads),
        "drift": drift(uploads),
        "missing": missing,
        "missing_count": missing_count,
        "duplicates": sum(u.duplicates for u in uploads),
        "out_of_order": out_of_order(uploads),
        "probe": None if probe is None else probe_json(probe),
    }


def is_stalled(newest: datetime | None, *, now: datetime, segment_seconds: float, last_segment_id: int | None) -> bool:
    """Whether a video that is not ended got no upload for STALL_FACTOR segment durations (the phone stopped).

    The dashboard's `stalled` and the reaper's `video.stalled` event (a webhook) both ask this.
    """
    if newest is None or last_segment_id is not None:
        return False
    return round((now - newest).total_seconds(), 3) > STALL_FACTOR * segment_seconds


def upload_ratio(uploads: Sequence[Upload]) -> dict[str, Any]:
    measured = [(u.uploaded_at, u.upload_seconds / u.duration) for u in uploads if u.upload_seconds is not None and u.duration > 0]
    ratios = [ratio for _at, ratio in measured]
    last = None
    if measured:
        _newest, newest_ratio = max(measured, key=lambda m: m[0])
        last = round(newest_ratio, 3)
    return {"last": last, "max": round(max(ratios), 3) if ratios else None, "level": ratio_level(last)}


def drift(uploads: Sequence[Upload]) -> float | None:
    if not uploads:
        return None
    first = min(uploads, key=lambda u: u.uploaded_at)
    newest = max(u.uploaded_at for u in uploads)
    received_after_first = sum(u.duration for u in uploads) - first.duration
    return round((newest - first.uploaded_at).total_seconds() - received_after_first, 3)


def missing_ids(uploads: Sequence[Upload], last_segment_id: int | None) -> tuple[list[int], int]:
    """The first MAX_MISSING ids that never arrived, and how many there are."""
    stored = {u.segment_id for u in uploads}
    top = last_segment_id if last_segment_id is not None else max(stored, default=-1)
    count = top + 1 - len({k for k in stored if k <= top})
    first: list[int] = []
    expected = 0  # the next id not yet accounted for
    for k in [*sorted(k for k in stored if k <= top), top + 1]:  # top + 1: the gap after the highest stored
        while expected < k and len(first) < MAX_MISSING:
            first.append(expected)
            expected += 1
        expected = k + 1
    return first, count


def out_of_order(uploads: Sequence[Upload]) -> int:
    """How many uploads came after an upload of a higher id."""
    count, highest = 0, -1
    for upload in uploads:
        if upload.segment_id < highest:
            count += 1
        highest = max(highest, upload.segment_id)
    return count


def probe_json(info: SourceInfo) -> dict[str, Any]:
    return {
        "width": info.width,
        "height": info.height,
        "fps": info.fps,
        "keyframe_interval": info.keyframe_interval,
        "audio": info.has_audio,
    }
