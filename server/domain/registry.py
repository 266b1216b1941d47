"""The worker registry: who may take work (tokens), who is running (register, heartbeat, stopped).

A token is printed once by `python -m server.cli worker token NAME` and only its SHA-256 is stored, so
the table never holds a usable secret. A token is looked up BY its hash (an indexed equality on a value
an attacker cannot steer byte by byte), then compared with `hmac.compare_digest`: no timing tells how
much of a guess was right. Revoking keeps the row (its history, its counts) and refuses the token.

Every change is one transaction with exactly one event (`worker.*`, server/domain/eventlog.py). A heartbeat is
not a change of state, only a sign of life every few seconds: it writes no event, or the log would be
mostly heartbeats. Its absence is one: the reaper calls `mark_lost`, which writes `worker.lost` once per
silence (a webhook).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.core.errors import InvalidInput, NotFound
from server.core.wire import Registration
from server.domain import settings
from server.domain.eventlog import record
from server.infra.models import Attempt, Event, Worker

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# secrets.token_urlsafe(32) is 43 characters; anything far longer or outside that alphabet is no token of ours.
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
TOKEN_BYTES = 32
LOST_FACTOR = 3  # silent for this many leases: lost (the dashboard's `alive` uses the same bound)
LOST_BATCH = 100


def token_hash(token: str) -> str:
    """Return the stored form of a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def check_name(name: str) -> str:
    """Return `name` if it can name a worker (letters, digits, . _ -; 1 to 64), else raise InvalidInput."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInput("name", "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return name


def find(session: Session, name: str) -> Worker | None:
    return session.scalars(select(Worker).where(Worker.name == name)).one_or_none()


def mint_token(session: Session, name: str, *, now: datetime) -> str:
    """Create the worker `name` if needed, give it a new token (the old one stops working) and return it, once."""
    worker = find(session, check_name(name)) or _new(session, name)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    worker.token_hash = token_hash(token)
    worker.revoked_at = None
    session.flush()
    record(session, "worker.token_minted", at=now, worker_id=worker.id, name=name)
    session.commit()
    return token


def revoke(session: Session, name: str, *, now: datetime) -> None:
    """Refuse the worker's token from now on; NotFound if no worker has that name."""
    worker = find(session, check_name(name))
    if worker is None:
        raise NotFound(f"no worker named {name!r}")
    worker.revoked_at = now
    record(session, "worker.revoked", at=now, worker_id=worker.id, name=name)
    session.commit()


def authenticate(session: Session, token: str | None) -> Worker | None:
    """Return the worker whose unrevoked token this is, or None."""
    if not token or not _TOKEN.match(token):
        return None
    digest = token_hash(token)
    worker = session.scalars(select(Worker).where(Worker.token_hash == digest)).one_or_none()
    if worker is None or worker.revoked_at is not None or not hmac.compare_digest(worker.token_hash or "", digest):
        return None
    return worker


TICKET_KEY = "worker_ticket_key"


def ticket_key(session: Session) -> bytes:
    """Return the key that signs segment job tickets (server/core/jobs), made by the first process that asks.

    It lives in the database, so every process with it (web processes, the reaper, workers with the
    media tree) signs and checks alike with nothing to configure; remote workers, without it, cannot forge one.
    """
    value = settings.shared_secret(session, TICKET_KEY)
    key = bytes.fromhex(value)
    session.rollback()
    return key


def register(session: Session, name: str, registration: Registration, *, now: datetime) -> Worker:
    """Record that the worker `name` started (creating its row for a worker with the database): worker.started."""
    worker = find(session, check_name(name)) or _new(session, name)
    worker.host = registration.host
    worker.version = registration.version
    worker.capabilities = json.dumps(registration.capabilities, separators=(",", ":"))
    worker.concurrency = registration.concurrency
    worker.functions = ",".join(registration.functions)
    worker.started_at = worker.last_heartbeat_at = now
    worker.stopped_at = None
    session.flush()
    record(session, "worker.started", at=now, worker_id=worker.id, **registration.to_json())
    session.commit()
    return worker


def heartbeat(session: Session, worker_id: int, *, now: datetime) -> None:
    """Note that the worker is alive (no event: see the module docstring)."""
    worker = _get(session, worker_id)
    worker.last_heartbeat_at = now
    session.commit()


def stopped(session: Session, worker_id: int, *, now: datetime) -> None:
    """Record that the worker drained and exited: worker.stopped."""
    worker = _get(session, worker_id)
    worker.stopped_at = worker.last_heartbeat_at = now
    record(session, "worker.stopped", at=now, worker_id=worker.id)
    session.commit()


def mark_lost(session: Session, *, now: datetime, lease_seconds: float, horizon: float) -> list[int]:
    """Write `worker.lost` for each running worker silent for LOST_FACTOR leases, once per silence; their ids.

    Once: a worker already has a `worker.lost` after its last heartbeat until it beats again. Only
    workers heard within `horizon` seconds (the event log's retention) are looked at, so a worker gone for
    good is not reported again once its event is pruned. Each worker's row is locked while it is decided,
    so two reapers report it once.
    """
    silent = now - timedelta(seconds=LOST_FACTOR * lease_seconds)
    candidates = session.scalars(
        select(Worker.id)
        .where(
            Worker.stopped_at.is_(None),
            Worker.last_heartbeat_at < silent,
            Worker.last_heartbeat_at >= now - timedelta(seconds=horizon),
        )
        .order_by(Worker.id)
        .limit(LOST_BATCH)
    ).all()
    session.rollback()
    return [worker_id for worker_id in candidates if _mark_lost(session, worker_id, now, silent)]


def _mark_lost(session: Session, worker_id: int, now: datetime, silent: datetime) -> bool:
    worker = session.scalars(select(Worker).where(Worker.id == worker_id).with_for_update()).one_or_none()
    if worker is None or worker.stopped_at is not None or worker.last_heartbeat_at is None or worker.last_heartbeat_at >= silent:
        session.rollback()
        return False
    reported = select(Event.id).where(
        Event.kind == "worker.lost", Event.worker_id == worker_id, Event.at > worker.last_heartbeat_at
    )
    if session.scalar(reported.limit(1)) is not None:
        session.rollback()
        return False
    heard = worker.last_heartbeat_at.isoformat(timespec="seconds")
    record(session, "worker.lost", at=now, worker_id=worker_id, name=worker.name, last_heartbeat_at=heard)
    session.commit()
    return True


def listing(session: Session) -> list[dict[str, Any]]:
    """Return every worker as the operator sees it (`worker list`), with its attempts running now."""
    running = dict(
        session.execute(
            select(Attempt.worker_id, func.count()).where(Attempt.outcome.is_(None)).group_by(Attempt.worker_id)
        ).all()
    )
    return [_row(worker, running.get(worker.id, 0)) for worker in session.scalars(select(Worker).order_by(Worker.name))]


def _row(worker: Worker, running: int) -> dict[str, Any]:
    def iso(value: datetime | None) -> str | None:
        return None if value is None else value.isoformat(timespec="seconds")

    return {
        "name": worker.name,
        "host": worker.host,
        "version": worker.version,
        "ffmpeg": capabilities_of(worker).get("ffmpeg"),
        "concurrency": worker.concurrency,
        "functions": worker.functions,
        "started_at": iso(worker.started_at),
        "last_heartbeat_at": iso(worker.last_heartbeat_at),
        "stopped_at": iso(worker.stopped_at),
        "revoked": worker.revoked_at is not None,
        "running": running,
        "attempts_ok": worker.attempts_ok or 0,
        "attempts_failed": worker.attempts_failed or 0,
    }


def capabilities_of(worker: Worker) -> dict[str, Any]:
    """The worker's capabilities as it registered them (a JSON object), {} if none or unreadable."""
    try:
        found = json.loads(worker.capabilities or "{}")
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _new(session: Session, name: str) -> Worker:
    worker = Worker(name=name, attempts_ok=0, attempts_failed=0)
    session.add(worker)
    return worker


def _get(session: Session, worker_id: int) -> Worker:
    worker = session.get(Worker, worker_id)
    if worker is None:
        raise NotFound(f"worker {worker_id} does not exist")
    return worker
