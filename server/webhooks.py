"""Webhooks: an admin's URLs told of a few events, signed, retried for a day (README "Webhooks").

The event log is the one source (server/eventlog.py): a hook's events are found there, after the hook's
own mark (`Webhook.scanned_to`, the newest event when it was created: nothing older is sent), and
mapped by `hook_event`:

| log event | webhook event | once per hook per |
|---|---|---|
| first `segment.packaged` of a video | `video.live` (it became playable) | video |
| `video.finished` | `video.vod` | video |
| `segment.failed` (attempts spent) | `segment.failed` | event (a segment retried by an admin may fail again) |
| `video.stalled` (the reaper, `ingest_health.is_stalled`) | `stream.stalled` | event (one per stall) |
| `worker.lost` (the reaper, `workers.mark_lost`) | `worker.lost` | event (one per silence) |

Each becomes a `WebhookDelivery` whose (hook, dedupe key) is unique. The dispatcher, run by the reaper
(every origin worker, the local runner: any number at once), scans under the hook's row lock, then sends
due deliveries on a small pool, at most one in flight per hook and per thread, each claimed first (its
next_attempt_at moved past the try's deadline) so two reapers never send it together. A try is a POST
with a total deadline of WEBHOOK_TIMEOUT: no redirect followed, at most RESPONSE_LIMIT bytes read.
A 2xx delivers; anything else is tried again after `retry_delay` until WEBHOOK_GIVE_UP after the event.
A receiver that is down or hangs holds one pool thread for at most its timeout and delays no other hook.

Events are read only once they are GAP_GRACE old: ids are taken at insert and transactions commit in
any order, so a younger id may be visible before an older one commits (as the dashboard's Sequencer).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import json
import logging
import secrets
import socket
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from server import eventlog, metrics
from server.config import Config
from server.errors import InvalidInput, NotFound
from server.models import Event, Webhook, WebhookDelivery
from server.services import Services

log = logging.getLogger(__name__)

EVENTS = ("video.live", "video.vod", "segment.failed", "stream.stalled", "worker.lost")
SIGNATURE_HEADER = "X-Team03-Signature"
SCAN_BATCH = 500  # log events read per hook per transaction
SCAN_ROUNDS = 20  # batches per hook per pass: a hook catches up 10,000 events a pass, and a pass still ends
SEND_BATCH = 100  # due deliveries looked at per pass
RESPONSE_LIMIT = 64 * 1024  # bytes of a receiver's answer read (then dropped)
MAX_URL = 2000
MAX_HOOKS = 100  # hooks scanned per pass (and listed)
PAGE_MAX = 200


# --- Pure rules -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """When a failed delivery is tried again: `backoff` doubling up to `backoff_max`, until `give_up` after the event."""

    backoff: float = 10.0
    backoff_max: float = 3600.0
    give_up: float = 24 * 3600.0

    @classmethod
    def of(cls, config: Config) -> Policy:
        return cls(config.WEBHOOK_BACKOFF, config.WEBHOOK_BACKOFF_MAX, config.WEBHOOK_GIVE_UP)


def retry_delay(attempts: int, policy: Policy) -> float:
    """Seconds to wait after the `attempts`-th failed try (1-based): backoff * 2^(attempts-1), at most backoff_max."""
    if attempts < 1:
        raise ValueError("attempts counts tries made: 1 or more")
    return min(policy.backoff * 2.0 ** min(attempts - 1, 62), policy.backoff_max)


def next_attempt(created_at: datetime, now: datetime, attempts: int, policy: Policy) -> datetime | None:
    """When to try again after the `attempts`-th failure at `now`, or None: give up (the window is over).

    The last try is at the window's end (created_at + give_up), never after it.
    """
    end = created_at + timedelta(seconds=policy.give_up)
    if now >= end:
        return None
    return min(now + timedelta(seconds=retry_delay(attempts, policy)), end)


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The signature header's value: `t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def hook_event(kind: str, event_id: int, video_id: int | None) -> tuple[str, str] | None:
    """The webhook event a log event makes, with its once-per-hook key; None for the others (module docstring)."""
    if kind == "segment.packaged" and video_id is not None:
        return "video.live", f"video.live:{video_id}"
    if kind == "video.finished" and video_id is not None:
        return "video.vod", f"video.vod:{video_id}"
    mapped = {"segment.failed": "segment.failed", "video.stalled": "stream.stalled", "worker.lost": "worker.lost"}
    if kind in mapped:
        return mapped[kind], f"event:{event_id}"
    return None


def payload(hook_kind: str, event: Event) -> str:
    """The JSON body of a delivery: the webhook event and the log event it came from."""
    try:
        data = json.loads(event.data) if event.data else {}
    except ValueError:
        data = {}
    body = {
        "event": hook_kind,
        "event_id": event.id,
        "at": event.at.isoformat(timespec="microseconds") + "Z",
        "video_id": event.video_id,
        "segment_id": event.segment_id,
        "worker_id": event.worker_id,
        "data": data,
    }
    return json.dumps(body, separators=(",", ":"), sort_keys=True)


def check_url(url: object) -> str:
    """Return `url` if it can be a hook's (http or https, a host, no credentials, no spaces), else InvalidInput."""
    if (
        not isinstance(url, str)
        or not 1 <= len(url) <= MAX_URL
        or not url.isascii()
        or any(c.isspace() or ord(c) < 32 for c in url)
    ):
        raise InvalidInput("url", f"an http or https URL of at most {MAX_URL} ASCII characters without spaces is required")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise InvalidInput("url", "is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidInput("url", "only http and https URLs are allowed")
    if not parts.hostname or parts.username is not None or parts.password is not None:
        raise InvalidInput("url", "must name a host, without a user or password")
    if parts.fragment:
        raise InvalidInput("url", "must not have a #fragment")
    return url


def check_events(raw: object) -> tuple[str, ...]:
    """Return the events asked for (a list, or a comma-separated string), each one of EVENTS, else InvalidInput."""
    items = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise InvalidInput("events", f"a list of events is required, from: {', '.join(EVENTS)}")
    names = tuple(dict.fromkeys(i.strip() for i in items if i.strip()))
    unknown = [n for n in names if n not in EVENTS]
    if not names or unknown:
        raise InvalidInput(
            "events", f"one or more of {', '.join(EVENTS)} is required" + (f"; unknown: {unknown[0][:40]}" if unknown else "")
        )
    return names


# --- Hooks and their deliveries (what the admin API and the CLI call) --------------------------------


def create(session: Session, url: object, events: object, *, now: datetime) -> tuple[dict[str, Any], str]:
    """Register a hook; return its JSON and its secret (shown this once). It hears only events after now."""
    hook = Webhook(
        url=check_url(url),
        events=",".join(check_events(events)),
        secret=secrets.token_hex(32),
        created_at=now,
        scanned_to=eventlog.newest_id(session),
    )
    session.add(hook)
    session.commit()
    return hook_json(hook), hook.secret


def remove(session: Session, hook_id: int, *, now: datetime) -> None:
    """Disable the hook: nothing more is sent to it (its deliveries stay, for the record); NotFound if none."""
    hook = session.get(Webhook, hook_id)
    if hook is None or hook.disabled_at is not None:
        raise NotFound(f"webhook {hook_id} does not exist")
    hook.disabled_at = now
    session.commit()


def listing(session: Session) -> list[dict[str, Any]]:
    """Every enabled hook, oldest first (at most MAX_HOOKS), without its secret."""
    query = select(Webhook).where(Webhook.disabled_at.is_(None)).order_by(Webhook.id).limit(MAX_HOOKS)
    return [hook_json(hook) for hook in session.scalars(query)]


def deliveries(session: Session, hook_id: int, *, limit: int = 50, before: int | None = None) -> dict[str, Any]:
    """A page of the hook's deliveries, newest first, and the `before` of the next page (None at the end)."""
    if session.get(Webhook, hook_id) is None:
        raise NotFound(f"webhook {hook_id} does not exist")
    query = select(WebhookDelivery).where(WebhookDelivery.webhook_id == hook_id)
    if before is not None:
        query = query.where(WebhookDelivery.id < before)
    rows = list(session.scalars(query.order_by(WebhookDelivery.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return {"deliveries": [delivery_json(d) for d in rows], "next_before": rows[-1].id if more else None}


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="microseconds") + "Z"


def hook_json(hook: Webhook) -> dict[str, Any]:
    return {
        "id": hook.id,
        "url": hook.url,
        "events": hook.events.split(","),
        "created_at": _iso(hook.created_at),
        "disabled_at": _iso(hook.disabled_at),
    }


def delivery_json(delivery: WebhookDelivery) -> dict[str, Any]:
    if delivery.delivered_at is not None:
        state = "delivered"
    elif delivery.given_up_at is not None:
        state = "given_up"
    else:
        state = "pending"
    return {
        "id": delivery.id,
        "event": delivery.kind,
        "event_id": delivery.event_id,
        "state": state,
        "attempts": delivery.attempts,
        "created_at": _iso(delivery.created_at),
        "next_attempt_at": _iso(delivery.next_attempt_at),
        "last_status": delivery.last_status,
        "last_error": delivery.last_error,
        "delivered_at": _iso(delivery.delivered_at),
        "given_up_at": _iso(delivery.given_up_at),
    }


# --- Finding what to send -------------------------------------------------------------------------


def scan(services: Services) -> int:
    """Turn new log events into deliveries for every enabled hook; return how many were made."""
    with services.sessions() as session:
        hook_ids = session.scalars(
            select(Webhook.id).where(Webhook.disabled_at.is_(None)).order_by(Webhook.id).limit(MAX_HOOKS)
        ).all()
        session.rollback()
        made = 0
        for hook_id in hook_ids:
            for _ in range(SCAN_ROUNDS):
                count, more = _scan_hook(services, session, hook_id)
                made += count
                if not more:
                    break
        return made


def _lock_hook(session: Session, hook_id: int) -> Webhook | None:
    """The hook's row, locked for this transaction (SQLite: the database's write lock, as changes.lock_video)."""
    if session.get_bind().dialect.name == "sqlite":
        table = Webhook.__table__
        session.execute(update(table).where(table.c.id == hook_id).values(scanned_to=table.c.scanned_to))
    query = select(Webhook).where(Webhook.id == hook_id).with_for_update().execution_options(populate_existing=True)
    return session.scalars(query).one_or_none()


def _scan_hook(services: Services, session: Session, hook_id: int) -> tuple[int, bool]:
    """One batch of the hook's new events into deliveries, in one transaction; (deliveries made, a full batch was read)."""
    hook = _lock_hook(session, hook_id)
    if hook is None or hook.disabled_at is not None:
        session.rollback()
        return 0, False
    cutoff = services.clock.now() - timedelta(seconds=eventlog.GAP_GRACE)
    events = eventlog.read_after(session, hook.scanned_to, SCAN_BATCH)
    ready = list(_settled(events, cutoff))
    wanted = set(hook.events.split(","))
    made = _enqueue(session, hook, ready, wanted, services.clock.now())
    if ready:
        hook.scanned_to = ready[-1].id
    session.commit()
    return made, len(events) == SCAN_BATCH and len(ready) == len(events)


def _settled(events: Iterable[Event], cutoff: datetime) -> Iterable[Event]:
    """The events, in id order, up to the first one younger than `cutoff` (an older id may not have committed yet)."""
    for event in events:
        if event.at > cutoff:
            return
        yield event


def _enqueue(session: Session, hook: Webhook, events: Sequence[Event], wanted: set[str], now: datetime) -> int:
    candidates: dict[str, tuple[str, Event]] = {}
    for event in events:
        mapped = hook_event(event.kind, event.id, event.video_id)
        if mapped is not None and mapped[0] in wanted:
            candidates.setdefault(mapped[1], (mapped[0], event))
    if not candidates:
        return 0
    known = set(
        session.scalars(
            select(WebhookDelivery.dedupe_key).where(
                WebhookDelivery.webhook_id == hook.id, WebhookDelivery.dedupe_key.in_(list(candidates))
            )
        )
    )
    made = 0
    for key, (kind, event) in candidates.items():
        if key not in known:
            session.add(_delivery(hook.id, key, kind, event, now))
            made += 1
    return made


def _delivery(hook_id: int, key: str, kind: str, event: Event, now: datetime) -> WebhookDelivery:
    return WebhookDelivery(
        webhook_id=hook_id,
        dedupe_key=key,
        event_id=event.id,
        kind=kind,
        payload=payload(kind, event),
        created_at=event.at,  # the retry window counts from the event, not from when it was noticed
        attempts=0,
        next_attempt_at=now,
    )


# --- Sending --------------------------------------------------------------------------------------


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int | None, str | None]:
    """POST `body` once, within `timeout` seconds in all; (HTTP status or None, error or None). Follows no redirect."""
    parts = urlsplit(url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = kind(parts.hostname or "", parts.port, timeout=timeout)
    # The socket timeout bounds each read; this bounds them all (a receiver answering a byte at a time).
    cut = threading.Event()
    watchdog = threading.Timer(timeout, _cut, (conn, cut))
    watchdog.daemon = True
    watchdog.start()
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.request("POST", target, body=body, headers=headers)
        response = conn.getresponse()
        response.read(RESPONSE_LIMIT)
        status = response.status
        return status, None if 200 <= status < 300 else f"HTTP {status}"
    except (OSError, http.client.HTTPException, ValueError) as exc:
        if cut.is_set() or isinstance(exc, TimeoutError):
            return None, f"timed out: no answer within {timeout:g} s"
        return None, (f"{type(exc).__name__}: {exc}")[:255]
    finally:
        watchdog.cancel()
        conn.close()


def _cut(conn: http.client.HTTPConnection, cut: threading.Event) -> None:
    cut.set()
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed: nothing to cut
            sock.shutdown(socket.SHUT_RDWR)


def claim_seconds(config: Config) -> float:
    """How long a claimed delivery is left alone by other senders: past its try's deadline, with a margin."""
    return 2 * config.WEBHOOK_TIMEOUT + 30.0


class Dispatcher:
    """Scans and sends for one process (its reaper calls `tick`); sends run on WEBHOOK_THREADS threads."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.threads = max(1, services.config.WEBHOOK_THREADS)
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="webhook")
        self._busy: set[int] = set()  # hooks with a try in flight from this process
        self._lock = threading.Lock()

    def tick(self) -> list[Future[None]]:
        """One pass: new events into deliveries, old finished ones out, then start the due tries (without waiting)."""
        scan(self.services)
        with self.services.sessions() as session:
            prune(session, self.services.clock.now(), self.services.config.EVENT_RETENTION)
        return self.send_due()

    def send_due(self) -> list[Future[None]]:
        """Claim and start due deliveries: at most one per hook in flight, none waiting for a thread."""
        services = self.services
        now = services.clock.now()
        query = (
            select(WebhookDelivery.id, WebhookDelivery.webhook_id, WebhookDelivery.next_attempt_at)
            .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
            .where(Webhook.disabled_at.is_(None), WebhookDelivery.next_attempt_at <= now)
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
            .limit(SEND_BATCH)
        )
        started: list[Future[None]] = []
        with services.sessions() as session:
            for delivery_id, hook_id, due in session.execute(query).all():
                if not self._take(hook_id):
                    continue
                if not self._claim(session, delivery_id, due, now):
                    self._release(hook_id)
                    continue
                started.append(self._pool.submit(self._try, delivery_id, hook_id))
            session.rollback()
        return started

    def _take(self, hook_id: int) -> bool:
        with self._lock:
            if hook_id in self._busy or len(self._busy) >= self.threads:
                return False
            self._busy.add(hook_id)
            return True

    def _release(self, hook_id: int) -> None:
        with self._lock:
            self._busy.discard(hook_id)

    def _claim(self, session: Session, delivery_id: int, due: datetime, now: datetime) -> bool:
        """Move the delivery's next try past this one's deadline, if no other sender did first."""
        later = now + timedelta(seconds=claim_seconds(self.services.config))
        table = WebhookDelivery.__table__
        claimed = session.execute(
            update(table).where(table.c.id == delivery_id, table.c.next_attempt_at == due).values(next_attempt_at=later)
        )
        session.commit()
        return claimed.rowcount == 1  # type: ignore[attr-defined]

    def _try(self, delivery_id: int, hook_id: int) -> None:
        try:
            deliver(self.services, delivery_id)
        except Exception:  # the claim lapses and the delivery is tried again
            log.exception("webhook delivery %s failed to run", delivery_id)
        finally:
            self._release(hook_id)

    def close(self) -> None:
        """Stop taking tries; those running end within their timeout."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def deliver(services: Services, delivery_id: int) -> None:
    """Send one claimed delivery once and record what happened (delivered, a next try, or given up)."""
    with services.sessions() as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        hook = None if delivery is None else session.get(Webhook, delivery.webhook_id)
        if delivery is None or hook is None or delivery.next_attempt_at is None:
            return
        url, secret, kind, body = hook.url, hook.secret, delivery.kind, delivery.payload.encode()
        session.rollback()  # no connection is held while the receiver takes its time
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "team03-webhooks",
        "X-Team03-Event": kind,
        "X-Team03-Delivery": str(delivery_id),
        SIGNATURE_HEADER: sign(secret, body, int(services.clock.time())),
    }
    status, error = post(url, body, headers, services.config.WEBHOOK_TIMEOUT)
    _record(services, delivery_id, status, error)


def prune(session: Session, now: datetime, retention: float) -> int:
    """Delete finished deliveries (delivered or given up) older than `retention` s, at most PRUNE_BATCH; return how many.

    Safe to forget: a hook never rescans events (scanned_to only moves on), so a pruned delivery is never re-made.
    Deliveries still to be tried are kept whatever their age (they give up after WEBHOOK_GIVE_UP).
    """
    cutoff = now - timedelta(seconds=retention)
    query = select(WebhookDelivery.id).where(WebhookDelivery.next_attempt_at.is_(None), WebhookDelivery.created_at < cutoff)
    ids = session.scalars(query.order_by(WebhookDelivery.id).limit(eventlog.PRUNE_BATCH)).all()
    if ids:
        session.execute(delete(WebhookDelivery).where(WebhookDelivery.id.in_(ids)))
    session.commit()
    return len(ids)


def _record(services: Services, delivery_id: int, status: int | None, error: str | None) -> None:
    with services.sessions() as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        if delivery is None:
            return
        now = services.clock.now()
        delivery.attempts += 1
        delivery.last_status, delivery.last_error = status, error
        result = "delivered"
        if error is None:
            delivery.delivered_at, delivery.next_attempt_at = now, None
        else:
            result = "retrying"
            delivery.next_attempt_at = next_attempt(delivery.created_at, now, delivery.attempts, Policy.of(services.config))
            if delivery.next_attempt_at is None:
                result, delivery.given_up_at = "given_up", now
                log.warning("webhook delivery %s given up after %d tries: %s", delivery_id, delivery.attempts, error)
        session.commit()
    metrics.WEBHOOK_TRIES.labels(result=result).inc()
