"""What the admin API answers (docs/admin-api.md): videos, workers, the system, as JSON dicts.

Every query is bounded (a page, a time range on an index, a LIMIT); the HTTP layer only parses and calls.
Mutations are not here: they go through server/domain/ingest.py and server/domain/lifecycle.py.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, Select, and_, case, exists, func, or_, select
from sqlalchemy.orm import Session, selectinload

from server.core.errors import NotFound
from server.core.ingest_health import Upload, ingest_health
from server.core.jobs import FUNCTIONS
from server.core.states import AttemptOutcome, SegmentState, VideoStatus, VideoType
from server.core.transcode.ladder import SourceInfo
from server.domain import keys
from server.infra.models import Attempt, Event, RecordingKey, Segment, SegmentRendition, Video, Worker
from server.infra.queue import QueueStatus, ServerStatus, queue_status
from server.infra.services import Services
from server.ops import checks

log = logging.getLogger(__name__)

PAGE_DEFAULT, PAGE_MAX = 50, 200
FILTERS = ("live", "vod", "failed")
MAX_QUERY_WORDS = 8
HEALTH_ROWS = 10_000  # newest segments (by id) a video's ingest health reads: 8 hours of 3 s segments
WORKERS_MAX = 200
RATE_WINDOW = timedelta(minutes=10)  # a worker's segments_per_minute and x_realtime
SERIES_MINUTES = 60
SERIES_ROWS = 50_000  # packaged segments the last hour's series reads at most
QUEUE_CACHE_SECONDS = 2  # gearmand's status is asked at most this often per cache, whatever the tabs
QUEUE_CACHE_KEY = "admin:queue"
QUEUE_GROWING = 10  # waiting segments per alive worker slot (at least this many) before the banner says so


def iso(value: datetime | None) -> str | None:
    """A naive-UTC column value as ISO 8601 with a Z (what the dashboard parses)."""
    return None if value is None else value.isoformat(timespec="microseconds") + "Z"


def utc(unix: float) -> datetime:
    """Unix seconds as the naive-UTC datetime the columns hold (for iso())."""
    return datetime.fromtimestamp(unix, UTC).replace(tzinfo=None)


def _seconds(later: datetime | None, earlier: datetime | None) -> float | None:
    if later is None or earlier is None:
        return None
    return round((later - earlier).total_seconds(), 3)


# -- videos -----------------------------------------------------------------------------------------


def list_videos(
    services: Services, session: Session, *, limit: int, before: int | None, q: str | None, kind: str | None
) -> dict[str, Any]:
    """One page of VideoRows, newest first, and the `before` of the next page (None on the last)."""
    query = select(Video).order_by(Video.id.desc()).limit(limit)
    if before is not None:
        query = query.where(Video.id < before)
    for word in (q or "").split()[:MAX_QUERY_WORDS]:
        query = query.where(Video.title.like(f"%{_escape_like(word)}%", escape="\\"))
    if kind == "live":
        query = query.where(Video.type == VideoType.LIVE)
    elif kind == "vod":
        query = query.where(Video.type == VideoType.VOD)
    elif kind == "failed":
        failed = exists().where(Segment.video_id == Video.id, Segment.status == SegmentState.FAILED)
        query = query.where(or_(Video.status == VideoStatus.ERROR, failed))
    videos = list(session.scalars(query))
    rows = video_rows(services, session, videos)
    return {"videos": rows, "next_before": videos[-1].id if len(videos) == limit else None}


def _escape_like(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def video_rows(services: Services, session: Session, videos: Sequence[Video]) -> list[dict[str, Any]]:
    """VideoRows of `videos`: their counts in one grouped query, ingest health for the live ones."""
    ids = [v.id for v in videos]
    counts: dict[int, tuple[int, int]] = {}
    if ids:
        failed = func.sum(case((Segment.status == SegmentState.FAILED, 1), else_=0))
        grouped = select(Segment.video_id, func.coalesce(func.sum(Segment.duration_ms), 0), failed).group_by(Segment.video_id)
        # The rows' types, which the grouped select's aggregates lose.
        rows = cast(Iterable[tuple[int, int | None, int | None]], session.execute(grouped.where(Segment.video_id.in_(ids))))
        for video_id, duration_ms, failed_count in rows:
            counts[video_id] = (int(duration_ms or 0), int(failed_count or 0))
    now = services.clock.now()
    names = _key_names(session, {v.key_id for v in videos if v.key_id is not None})
    out = [_video_row(v, counts.get(v.id, (0, 0)), _health(session, v, now)) for v in videos]
    for video, row in zip(videos, out, strict=True):
        row["key"] = names.get(video.key_id) if video.key_id is not None else None
    return out


def _key_names(session: Session, key_ids: set[int]) -> dict[int, str]:
    """The names of the recording keys `key_ids` (a revoked key keeps its name)."""
    if not key_ids:
        return {}
    rows = session.execute(select(RecordingKey.id, RecordingKey.name).where(RecordingKey.id.in_(key_ids)))
    return {key_id: name for key_id, name in rows}


def _video_row(video: Video, counts: tuple[int, int], health: dict[str, Any] | None) -> dict[str, Any]:
    base = f"/video_files/{video.id}"
    thumbnail = video.thumbnail_segment_id
    return {
        "id": video.id,
        "title": video.title,
        "type": video.type.value,
        "status": video.status.value,
        "created_at": iso(video.created_at),
        "ended_at": iso(video.ended_at),
        "finished_at": iso(video.finished_at),
        "duration": round(counts[0] / 1000, 3),
        "segment_count": video.segment_count,
        "segments_failed": counts[1],
        "revision": video.revision,
        "thumbnail_url": None if thumbnail is None else f"{base}/thumbnails/{thumbnail:06d}.jpg",
        "storyboard_url": f"{base}/storyboard.vtt",
        "mpd_url": f"{base}/manifest.mpd",
        "m3u8_url": f"{base}/master.m3u8",
        "health": health,
        "visibility": video.visibility.value,
        "pinned": video.pinned,
    }


def _health(session: Session, video: Video, now: datetime) -> dict[str, Any] | None:
    """Ingest health of a live video (None for VOD): its newest HEALTH_ROWS segments, in first-upload order."""
    if video.type is not VideoType.LIVE:
        return None
    columns = (Segment.segment_id, Segment.uploaded_at, Segment.duration_ms, Segment.upload_ms, Segment.duplicates)
    query = select(Segment.id, *columns).where(Segment.video_id == video.id).order_by(Segment.segment_id.desc())
    rows = sorted(session.execute(query.limit(HEALTH_ROWS)).all(), key=lambda r: r[0])  # pk order: first upload order
    uploads = [Upload(k, at, ms / 1000, None if up is None else up / 1000, dup or 0) for _pk, k, at, ms, up, dup in rows]
    newest = max(rows, key=lambda r: r.uploaded_at, default=None)
    info = None
    if newest is not None:
        info = _source_info(session.scalar(select(Segment.source_info).where(Segment.id == newest[0])))
    return ingest_health(
        uploads, now=now, segment_seconds=video.segment_duration_ms / 1000, last_segment_id=video.last_segment_id, probe=info
    )


def _source_info(text: str | None) -> SourceInfo | None:
    if not text:
        return None
    try:
        return SourceInfo.from_json(text)
    except (ValueError, TypeError):
        log.warning("unreadable source_info %r", text[:200])
        return None


def video_detail(services: Services, session: Session, video_id: int) -> dict[str, Any]:
    """A VideoRow with its renditions and every segment (ascending id), each with its rungs and attempts."""
    video = session.scalars(
        select(Video)
        .where(Video.id == video_id)
        .options(selectinload(Video.renditions))
        .execution_options(populate_existing=True)
    ).one_or_none()
    if video is None:
        raise NotFound(f"video {video_id} does not exist")
    row = video_rows(services, session, [video])[0]
    row["renditions"] = [
        {"name": r.name, "width": r.width, "height": r.height, "bandwidth": r.bandwidth} for r in video.renditions
    ]
    segments = session.scalars(
        select(Segment)
        .where(Segment.video_id == video_id)
        .order_by(Segment.segment_id)
        .options(selectinload(Segment.renditions).selectinload(SegmentRendition.rendition))
    ).all()
    attempts: dict[int, list[Attempt]] = defaultdict(list)
    for attempt in session.scalars(select(Attempt).where(Attempt.video_id == video_id).order_by(Attempt.id)):
        attempts[attempt.segment_pk].append(attempt)
    row["segments"] = [segment_row(s, attempts[s.id]) for s in segments]
    return row


def segment_row(segment: Segment, attempts: Iterable[Attempt]) -> dict[str, Any]:
    rungs = sorted(segment.renditions, key=lambda r: r.rendition.position)
    return {
        "segment_id": segment.segment_id,
        "state": segment.status.value,
        "size": segment.size,
        "duration": segment.duration_ms / 1000,
        "uploaded_at": iso(segment.uploaded_at),
        "upload_seconds": None if segment.upload_ms is None else segment.upload_ms / 1000,
        "queued_at": iso(segment.queued_at),
        "ready_at": iso(segment.ready_at),
        "packaged_at": iso(segment.packaged_at),
        "failed_at": iso(segment.failed_at),
        "latency": _seconds(segment.packaged_at, segment.uploaded_at),
        "error": segment.error,
        "rungs": [{"name": r.rendition.name, "state": r.status.value, "size": r.size} for r in rungs],
        "attempts": [attempt_row(a) for a in attempts],
    }


def segment_detail(session: Session, video_id: int, segment_id: int) -> dict[str, Any]:
    segment = session.scalars(
        select(Segment)
        .where(Segment.video_id == video_id, Segment.segment_id == segment_id)
        .options(selectinload(Segment.renditions).selectinload(SegmentRendition.rendition))
        .execution_options(populate_existing=True)
    ).one_or_none()
    if segment is None:
        raise NotFound(f"segment {segment_id} of video {video_id} does not exist")
    attempts = session.scalars(select(Attempt).where(Attempt.segment_pk == segment.id).order_by(Attempt.id))
    return segment_row(segment, attempts)


def attempt_row(attempt: Attempt, segment_id: int | None = None) -> dict[str, Any]:
    """An AttemptRow; with `segment_id`, also where it works (video_id, segment_id)."""
    row: dict[str, Any] = {
        "id": attempt.id,
        "worker": attempt.worker_name,
        "started_at": iso(attempt.started_at),
        "finished_at": iso(attempt.finished_at),
        "progress": attempt.progress,
        "outcome": attempt.outcome.value if attempt.outcome else None,
        "error": attempt.error,
        "lease_expires_at": iso(attempt.lease_expires_at),
    }
    if segment_id is not None:
        row["video_id"] = attempt.video_id
        row["segment_id"] = segment_id
    return row


def segment_id_of(attempt: Attempt) -> Select[int]:
    """The query of the segment id an attempt works on."""
    return select(Segment.segment_id).where(Segment.id == attempt.segment_pk)


def failed_segment_ids(session: Session, video_id: int) -> list[int]:
    """Every FAILED segment of a video (bounded by its segment count); NotFound if the video is gone."""
    if session.get(Video, video_id) is None:
        raise NotFound(f"video {video_id} does not exist")
    query = select(Segment.segment_id).where(Segment.video_id == video_id, Segment.status == SegmentState.FAILED)
    return list(session.scalars(query.order_by(Segment.segment_id)))


# -- workers ----------------------------------------------------------------------------------------


def workers(services: Services, session: Session) -> dict[str, Any]:
    """Every registered worker (the WORKERS_MAX most recently heard), the queue, and a banner if something is wrong."""
    now = services.clock.now()
    rows = list(session.scalars(select(Worker).order_by(Worker.last_heartbeat_at.desc(), Worker.id.desc()).limit(WORKERS_MAX)))
    running = _running_attempts(session, [w.id for w in rows])
    stats = _worker_stats(session, now)
    alive_after = now - timedelta(seconds=3 * services.config.LEASE_SECONDS)
    out = [_worker_row(w, now, alive_after, running.get(w.id, []), stats.get(w.id, {})) for w in rows]
    waiting = session.scalar(
        select(func.count()).select_from(Segment).where(Segment.status.in_((SegmentState.RECEIVED, SegmentState.QUEUED)))
    )
    slots = sum(w["concurrency"] for w in out if w["alive"])
    return {"workers": out, "queue": queue(services), "banner": banner(out, int(waiting or 0), slots)}


def banner(rows: Sequence[dict[str, Any]], waiting: int, slots: int) -> str | None:
    """The one line the workers tab shows on top, or None when all is well."""
    if rows and not any(w["alive"] for w in rows) or (not rows and waiting):
        return "no worker is alive"
    if waiting > QUEUE_GROWING * max(1, slots):
        return f"the queue is growing: {waiting} segments waiting"
    return None


def _running_attempts(session: Session, worker_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    if not worker_ids:
        return {}
    query = (
        select(Attempt, Segment.segment_id)
        .join(Segment, Segment.id == Attempt.segment_pk)
        .where(Attempt.outcome.is_(None), Attempt.worker_id.in_(worker_ids))
        .order_by(Attempt.id)
    )
    found: dict[int, list[dict[str, Any]]] = defaultdict(list)
    # worker_id is a nullable column, but in these rows one of worker_ids (the query's filter).
    for attempt, segment_id in cast(Iterable[tuple[Attempt, int]], session.execute(query)):
        found[cast(int, attempt.worker_id)].append(attempt_row(attempt, segment_id))
    return found


def _worker_stats(session: Session, now: datetime) -> dict[int, dict[str, float]]:
    """Per worker: attempts finished within the last hour, failures among them, and its pace over RATE_WINDOW."""
    hour_ago, window_start = now - timedelta(hours=1), now - RATE_WINDOW
    query = (
        select(Attempt.worker_id, Attempt.outcome, Attempt.started_at, Attempt.finished_at, Segment.duration_ms)
        .join(Segment, Segment.id == Attempt.segment_pk)
        .where(Attempt.finished_at >= hour_ago, Attempt.worker_id.is_not(None))
    )
    stats: dict[int, dict[str, float]] = defaultdict(lambda: {"errors": 0, "ok": 0, "media": 0.0, "busy": 0.0})
    # worker_id and finished_at are nullable columns, but not in these rows (the query's filter).
    rows = cast(Iterable[tuple[int, AttemptOutcome | None, datetime, datetime, int]], session.execute(query.limit(SERIES_ROWS)))
    for worker_id, outcome, started, finished, duration_ms in rows:
        entry = stats[worker_id]
        if outcome in (AttemptOutcome.FAILED, AttemptOutcome.EXPIRED):
            entry["errors"] += 1
        elif outcome is AttemptOutcome.OK and finished >= window_start:
            entry["ok"] += 1
            entry["media"] += duration_ms / 1000
            entry["busy"] += max(0.0, (finished - started).total_seconds())
    return stats


def _worker_row(
    worker: Worker, now: datetime, alive_after: datetime, running: list[dict[str, Any]], stats: dict[str, float]
) -> dict[str, Any]:
    heartbeat = worker.last_heartbeat_at
    busy = stats.get("busy", 0.0)
    return {
        "id": worker.id,
        "name": worker.name,
        "host": worker.host,
        "version": worker.version,
        "concurrency": worker.concurrency,
        "functions": [f for f in (worker.functions or "").split(",") if f],
        "started_at": iso(worker.started_at),
        "last_heartbeat_at": iso(heartbeat),
        "heartbeat_age": _seconds(now, heartbeat),
        "alive": heartbeat is not None and heartbeat > alive_after and worker.stopped_at is None,
        "stopped_at": iso(worker.stopped_at),
        "attempts": running,
        "segments_per_minute": round(stats.get("ok", 0) / (RATE_WINDOW.total_seconds() / 60), 2),
        "x_realtime": round(stats["media"] / busy, 2) if busy > 0 else None,
        "errors_last_hour": int(stats.get("errors", 0)),
        "attempts_ok": worker.attempts_ok,
        "attempts_failed": worker.attempts_failed,
    }


def queue(services: Services) -> dict[str, Any]:
    """Each gearmand's counts per function and their total, asked at most every QUEUE_CACHE_SECONDS."""
    servers = services.config.GEARMAN_SERVERS
    if not servers:
        return {"kind": "local"}
    cached = services.cache.get(QUEUE_CACHE_KEY)
    if cached is not None:
        answer: dict[str, Any] = json.loads(cached)
        return answer
    answer = queue_json(queue_status(servers, timeout=checks.SERVICE_TIMEOUT))
    services.cache.set(QUEUE_CACHE_KEY, json.dumps(answer).encode(), ttl=QUEUE_CACHE_SECONDS)
    return answer


def queue_json(status: QueueStatus) -> dict[str, Any]:
    functions = sorted({*FUNCTIONS, *(f for s in status.servers for f in s.functions)})
    return {
        "servers": [_server_json(s) for s in status.servers],
        "total": {f: status.total(f) for f in functions},
    }


def _server_json(server: ServerStatus) -> dict[str, Any]:
    return {"server": server.server, "ok": server.error is None, "error": server.error, "functions": server.functions}


# -- system -----------------------------------------------------------------------------------------


def system(services: Services, session: Session) -> dict[str, Any]:
    """Disk, services, the last hour's failures and its per-minute series."""
    now = services.clock.now()
    hour_ago = now - timedelta(hours=1)
    failures = session.scalar(
        select(func.count())
        .select_from(Attempt)
        .where(Attempt.finished_at >= hour_ago, Attempt.outcome.in_((AttemptOutcome.FAILED, AttemptOutcome.EXPIRED)))
    )
    packaged = session.execute(
        select(Segment.packaged_at, Segment.uploaded_at)
        .where(and_(Segment.packaged_at >= now - timedelta(minutes=SERIES_MINUTES), Segment.packaged_at <= now))
        .order_by(Segment.packaged_at.desc())
        .limit(SERIES_ROWS)
    ).all()
    return {
        "disk": _disk(services),
        "services": _services(services),
        "failures_last_hour": int(failures or 0),
        "series": series(now, [(cast(datetime, p), u) for p, u in packaged]),  # packaged_at is set in these rows (the query)
    }


def _disk(services: Services) -> dict[str, Any]:
    root = services.config.MEDIA_ROOT
    root.mkdir(parents=True, exist_ok=True)
    usage = shutil.disk_usage(root)
    return {"total": usage.total, "used": usage.used, "free": usage.free, "path_hint": "MEDIA_ROOT"}


def _services(services: Services) -> dict[str, Any]:
    """Up or down, from the same checks /status.json makes (the queue's answer cached like the workers tab's)."""
    try:
        checks.ping(services)
        database: dict[str, Any] = {"ok": True}
    except Exception as exc:  # noqa: BLE001 - a database that does not answer is what this reports
        database = {"ok": False, "error": type(exc).__name__}
    if services.config.GEARMAN_SERVERS:
        answer = queue(services)
        queue_ok = bool(answer["servers"]) and all(s["ok"] for s in answer["servers"])
        queue_report = {"ok": queue_ok, "kind": "gearman"}
    else:
        queue_report = {"ok": True, "kind": "local"}
    cache = checks.cache_check(services)
    return {"database": database, "queue": queue_report, "cache": {"ok": cache["ok"], "kind": cache["kind"]}}


def series(now: datetime, packaged: Sequence[tuple[datetime, datetime]]) -> dict[str, list[Any]]:
    """60 one-minute buckets ending at `now`: segments packaged in each, and their upload-to-playable p50/p95."""
    end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    start = end - timedelta(minutes=SERIES_MINUTES)
    buckets: list[list[float]] = [[] for _ in range(SERIES_MINUTES)]
    for packaged_at, uploaded_at in packaged:
        index = int((packaged_at - start).total_seconds() // 60)
        if 0 <= index < SERIES_MINUTES:
            buckets[index].append((packaged_at - uploaded_at).total_seconds())
    return {
        "minutes": [iso(start + timedelta(minutes=i)) for i in range(SERIES_MINUTES)],
        "segments_per_minute": [len(b) for b in buckets],
        "latency_p50": [percentile(b, 50) for b in buckets],
        "latency_p95": [percentile(b, 95) for b in buckets],
    }


def percentile(values: Sequence[float], pct: float) -> float | None:
    """The nearest-rank percentile (a value that occurred), rounded to ms; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return round(ordered[rank - 1], 3)


# -- events -----------------------------------------------------------------------------------------


def event_json(event: Event) -> dict[str, Any]:
    """One event as the stream's `data:` carries it."""
    return {
        "id": event.id,
        "at": iso(event.at),
        "kind": event.kind,
        "video_id": event.video_id,
        "segment_id": event.segment_id,
        "worker_id": event.worker_id,
        "data": json.loads(event.data) if event.data else {},
    }


# -- recording keys -----------------------------------------------------------------------------------


def key_row(summary: keys.KeySummary) -> dict[str, Any]:
    """A KeyRow: a key's name, limits and use (never the key itself, which only its mint's answer shows)."""
    return {
        "name": summary.name,
        "created_at": iso(summary.created_at),
        "created_by": summary.created_by,
        "revoked_at": iso(summary.revoked_at),
        "max_live": summary.max_live,
        "quota_bytes": summary.quota_bytes,
        "visibility": summary.visibility,
        "live": summary.live,
        "used_bytes": summary.used_bytes,
    }


def key_detail(session: Session, name: str) -> dict[str, Any]:
    """The KeyRow of the key `name` (revoked or not); NotFound if there is none."""
    row = session.scalars(select(RecordingKey).where(RecordingKey.name == name)).one_or_none()
    if row is None:
        raise NotFound(f"no recording key named {name!r}")
    return key_row(keys.summarize(session, row))


# -- the audit trail ----------------------------------------------------------------------------------

# The admin actions in the event log (docs/admin-api.md "Audit"): these kinds always, and a rename or a
# delete when an admin made it (its data carries `by`; the reaper's and retention's deletions carry a reason).
AUDIT_KINDS = ("admin.login", "key.minted", "key.revoked", "video.visibility", "video.pinned", "video.link", "video.retried")
BY_KINDS = ("video.renamed", "video.deleted")


def _audited() -> ColumnElement[bool]:
    # data is compact JSON (eventlog.record): a key reads '"by":'; inside a string a quote is escaped.
    by_admin = Event.kind.in_(BY_KINDS) & Event.data.like('%"by":%')
    return Event.kind.in_(AUDIT_KINDS) | by_admin


def audit(session: Session, *, limit: int, before: int | None) -> dict[str, Any]:
    """One page of AuditEntries, newest first, and the `before` of the next page (None after the oldest).

    Read on the (kind, id) index: a page costs the audited kinds' rows below `before`, never the whole log.
    """
    query = select(Event).where(Event.kind.in_(AUDIT_KINDS + BY_KINDS), _audited())
    if before is not None:
        query = query.where(Event.id < before)
    found = list(session.scalars(query.order_by(Event.id.desc()).limit(limit)))
    return {"events": [audit_entry(e) for e in found], "next_before": found[-1].id if len(found) == limit else None}


def audit_entry(event: Event) -> dict[str, Any]:
    """Who (`by`) did what (`kind`, `data`) when (`at`) to which video or key."""
    data = json.loads(event.data) if event.data else {}
    by = data.pop("by", None)
    key = data.get("name") if event.kind.startswith("key.") else None
    return {"id": event.id, "at": iso(event.at), "kind": event.kind, "by": by, "video_id": event.video_id, "key": key, "data": data}
