"""What an operator or a load balancer asks: is this process able to serve, and is the system converging.

`ping` answers a load balancer: can this process reach its database (the source of truth)? `status`
answers an operator: the queue and its workers (each gearmand and their total), the cache, the media
disk, the object store (MEDIA_STORE=s3: whether its bucket answers), and the segments still waiting,
each with what is wrong in plain words. A problem that only delays work makes the system
"degraded", never "down": segments wait in the database and the reaper converges once it is fixed.
"""

from __future__ import annotations

import shutil
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text

from server.core.errors import StorageUnavailable
from server.core.jobs import TRANSCODE_SEGMENT
from server.core.states import SegmentState, VideoType
from server.infra.db import schema_revisions
from server.infra.models import Segment, Video
from server.infra.queue import ServerStatus, queue_status
from server.infra.services import Services

SERVICE_TIMEOUT = 2.0  # seconds a status check waits on gearmand or memcached


def ping(services: Services) -> None:
    """Raise (sqlalchemy.exc.OperationalError) unless the database answers."""
    with services.engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def status(services: Services, now: datetime) -> dict[str, Any]:
    """Return every check and the problems found; status is "ok" or "degraded"."""
    problems: list[str] = []
    report = {
        "database": _database(services, now, problems),
        "queue": _queue(services, problems),
        "cache": _cache(services, problems),
        "media": _media(services, problems),
        "store": _store(services, problems),
    }
    waiting = report["database"]["segments"]["oldest_waiting_seconds"]
    if waiting is not None and waiting > services.config.PROCESSING_DEADLINE:
        problems.append(
            f"a segment has waited {waiting:.0f} s for a worker (PROCESSING_DEADLINE is {services.config.PROCESSING_DEADLINE:g} s)"
        )
    return {"status": "degraded" if problems else "ok", "problems": problems, **report}


def _database(services: Services, now: datetime, problems: list[str]) -> dict[str, Any]:
    schema, head = schema_revisions(services.engine)
    if schema != head:
        problems.append(f"database schema is at {schema}, the code expects {head}: run python -m server.cli db upgrade")
    with services.sessions() as session:
        by_status = dict(session.execute(select(Segment.status, func.count()).group_by(Segment.status)).all())
        oldest = session.scalar(
            select(func.min(Segment.uploaded_at)).where(Segment.status.in_((SegmentState.RECEIVED, SegmentState.QUEUED)))
        )
        live = session.scalar(select(func.count()).select_from(Video).where(Video.type == VideoType.LIVE))
        total = session.scalar(select(func.count()).select_from(Video))
    segments: dict[str, float | None] = {state.value.lower(): int(by_status.get(state, 0)) for state in SegmentState}
    segments["oldest_waiting_seconds"] = None if oldest is None else round((now - oldest).total_seconds(), 1)
    videos = {"live": live, "vod": (total or 0) - (live or 0)}
    return {"ok": schema == head, "schema": schema, "videos": videos, "segments": segments}


def _queue(services: Services, problems: list[str]) -> dict[str, Any]:
    servers = services.config.GEARMAN_SERVERS
    if not servers:
        return {"kind": "local", "ok": True}
    status = queue_status(servers, timeout=SERVICE_TIMEOUT)
    total = status.total(TRANSCODE_SEGMENT)
    for server in status.servers:
        if server.error is not None:
            fallback = "jobs go to the others" if status.answered else "uploads queue in the database"
            problems.append(f"gearmand {server.server} does not answer ({server.error.split(':')[0]}); {fallback}")
    if status.answered and total["workers"] == 0:
        problems.append(f"no segment_processor is registered with gearmand for {TRANSCODE_SEGMENT}")
    elif status.answered:
        for server in status.servers:
            if server.error is None and server.functions.get(TRANSCODE_SEGMENT, {}).get("workers", 0) == 0:
                problems.append(f"no segment_processor is registered with gearmand {server.server}: jobs sent there wait")
    per_server = {s.server: _server_report(s) for s in status.servers}
    ok = all(report["ok"] for report in per_server.values())
    if not status.answered:
        return {"kind": "gearman", "ok": False, "servers": per_server}
    return {"kind": "gearman", "ok": ok, **total, "servers": per_server}


def _server_report(server: ServerStatus) -> dict[str, Any]:
    """One gearmand's counts for the transcode function, or that it does not answer."""
    if server.error is not None:
        return {"ok": False, "error": server.error}
    counts = server.functions.get(TRANSCODE_SEGMENT, {})
    report = {key: counts.get(key, 0) for key in ("queued", "running", "workers")}
    return {"ok": report["workers"] > 0, **report}


def cache_check(services: Services) -> dict[str, Any]:
    """Whether the cache answers: {"kind", "ok"}."""
    return _cache(services, [])


def _cache(services: Services, problems: list[str]) -> dict[str, Any]:
    if not services.config.MEMCACHED_SERVERS:
        return {"kind": "local", "ok": True}
    services.cache.set("health", b"1", ttl=10)  # a cache that is down drops the write and misses the read
    ok = services.cache.get("health") is not None
    if not ok:
        servers = ",".join(services.config.MEMCACHED_SERVERS)
        problems.append(f"memcached {servers} does not answer; playlists are computed on every request")
    return {"kind": "memcached", "ok": ok}


def _media(services: Services, problems: list[str]) -> dict[str, Any]:
    root = services.config.MEDIA_ROOT
    root.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(root).free
    ok = free >= services.config.MAX_SEGMENT_BYTES
    if not ok:
        problems.append(f"{free} bytes free under MEDIA_ROOT, less than one MAX_SEGMENT_BYTES upload: uploads get 507")
    return {"ok": ok, "free_bytes": free}


def _store(services: Services, problems: list[str]) -> dict[str, Any]:
    """Whether the object store answers: {"kind", "ok"}, and "error" in plain words when it does not (MEDIA_STORE=s3 only)."""
    config = services.config
    if config.MEDIA_STORE != "s3":
        return {"kind": config.MEDIA_STORE, "ok": True}  # the local tree: `media` above is its disk
    try:
        services.objects.check()
    except StorageUnavailable as exc:
        endpoint = config.S3_ENDPOINT_URL or f"AWS S3 in {config.S3_REGION}"
        problems.append(f"S3_BUCKET {config.S3_BUCKET} at {endpoint}: {exc.message}")
        return {"kind": "s3", "ok": False, "error": str(exc)}
    return {"kind": "s3", "ok": True}


def readiness(services: Services) -> dict[str, Any]:
    """Whether this process can serve now: the database, Gearman (if configured), memcached (if configured), the disk,
    the object store's bucket (MEDIA_STORE=s3; one try of at most 2 s, server/store/s3.py CHECK_TIMEOUT).

    A load balancer takes the process out while any is down ("ok" false, each one "down" named); unlike
    `status`, a queue without workers or a segment waiting is no reason: those delay work, they refuse none.
    Anyone may ask, so each check says up or down and nothing else (no addresses, no free bytes: admins
    read those in `status`).
    """
    found = {
        "database": _database_answers(services),
        "gearman": _gearman_answers(services),
        "cache": _cache(services, []),
        "disk": _media(services, []),
        "store": _store(services, []) if services.config.MEDIA_STORE == "s3" else None,
    }
    answers = {name: {"ok": bool(check["ok"])} for name, check in found.items() if check is not None}
    down = [name for name, check in answers.items() if not check["ok"]]
    return {"ok": not down, "down": down, "checks": answers}


def _database_answers(services: Services) -> dict[str, Any]:
    try:
        ping(services)
    except Exception as exc:  # noqa: BLE001 - any driver or pool error means it does not answer
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True}


def _gearman_answers(services: Services) -> dict[str, Any] | None:
    """Whether any gearmand answers (submits go through while one does); None without GEARMAN_SERVERS."""
    servers = services.config.GEARMAN_SERVERS
    if not servers:
        return None
    status = queue_status(servers, timeout=SERVICE_TIMEOUT)
    return {"ok": status.answered, "servers": {s.server: s.error is None for s in status.servers}}
