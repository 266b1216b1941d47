"""Webhooks: an admin's URLs told of a few events, signed, retried for a day (docs/api.md "Webhooks").

The event log is the one source (server/domain/eventlog.py): a hook's events are found there, after the hook's
own mark (`Webhook.scanned_to`, the newest event when it was created: nothing older is sent), and
mapped by `hook_event`:

| log event | webhook event | once per hook per |
|---|---|---|
| first `segment.packaged` of a video | `video.live` (it became playable) | video |
| `video.finished` | `video.vod` | video |
| `segment.failed` (attempts spent) | `segment.failed` | event (a segment retried by an admin may fail again) |
| `video.stalled` (the reaper, `ingest_health.is_stalled`) | `stream.stalled` | event (one per stall) |
| `worker.lost` (the reaper, `workers.mark_lost`) | `worker.lost` | event (one per silence) |
| `video.deleted` (an admin, or the reaper: `reason` abandoned or retention) | `video.deleted` | video |

Each becomes a `WebhookDelivery` whose (hook, dedupe key) is unique. The dispatcher, run by the reaper
(every origin worker, the local runner: any number at once), scans under the hook's row lock, then sends
due deliveries on a small pool, at most one in flight per hook and per thread, each claimed first (its
next_attempt_at moved past the try's deadline) so two reapers never send it together. Hooks whose last
try timed out go behind the others and hold at most `slow_share` of the threads (`send_order`,
`may_start`), so receivers that hang leave threads to the healthy hooks; a receiver that is down or
hangs holds one thread for at most its timeout. A try is a POST
with a total deadline of WEBHOOK_TIMEOUT: no redirect followed, at most RESPONSE_LIMIT bytes read.
A 2xx delivers; anything else is tried again after `retry_delay` until WEBHOOK_GIVE_UP after the event.
A try records only its result's class (RESULTS: "2xx", "timeout", "refused" ...), never the receiver's bytes.

A hook's host is resolved when it is registered and again at every try, and refused (`refusal`) when any
of its addresses is loopback, private, link-local, multicast, unspecified or reserved, unless
WEBHOOK_ALLOW_PRIVATE (which allows the first three); a try connects to the addresses it checked, never
looking the name up again (no DNS rebinding between the check and the connection).

Events are read only once they are GAP_GRACE old: ids are taken at insert and transactions commit in
any order, so a younger id may be visible before an older one commits (as the dashboard's Sequencer).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Collection, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast
from urllib.parse import urlsplit

from sqlalchemy import CursorResult, Table, delete, func, select, update
from sqlalchemy.orm import Session

from server.config import Config
from server.core.errors import InvalidInput, NotFound
from server.domain import eventlog
from server.infra import metrics
from server.infra.models import Event, Webhook, WebhookDelivery
from server.infra.services import Services

log = logging.getLogger(__name__)

EVENTS = ("video.live", "video.vod", "segment.failed", "stream.stalled", "worker.lost", "video.deleted")
SIGNATURE_HEADER = "X-Team03-Signature"
SCAN_BATCH = 500  # log events read per hook per transaction
SCAN_ROUNDS = 20  # batches per hook per pass: a hook catches up 10,000 events a pass, and a pass still ends
SEND_BATCH = 100  # due deliveries looked at per pass
RESPONSE_LIMIT = 64 * 1024  # bytes of a receiver's answer read (then dropped)
MAX_URL = 2000
MAX_HOOKS = 100  # hooks scanned per pass (and listed)
PAGE_MAX = 200
# What a try records (its class, never the receiver's own words), and what the admin reads for it.
RESULTS = {
    "2xx": None,
    "1xx": "the receiver answered 1xx, not 2xx",
    "3xx": "the receiver answered a redirect (3xx): redirects are not followed",
    "4xx": "the receiver answered 4xx",
    "5xx": "the receiver answered 5xx",
    "timeout": "no answer within WEBHOOK_TIMEOUT",
    "refused": "the connection was refused",
    "closed": "the receiver closed the connection without an answer",
    "reset": "the connection was reset",
    "unreachable": "the receiver's host or network is unreachable",
    "not_http": "the receiver did not answer HTTP",
    "tls": "the TLS handshake or the certificate check failed",
    "unresolved": "the hook's host name does not resolve",
    "blocked": "the hook's host resolves to an address that is refused (see WEBHOOK_ALLOW_PRIVATE)",
    "error": "the try failed",
}
PRIVATE_KINDS = ("loopback", "private", "link-local")  # what WEBHOOK_ALLOW_PRIVATE allows
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


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
    if kind == "video.deleted" and video_id is not None:  # its data says why (`reason`; `by` when an admin did it)
        return "video.deleted", f"video.deleted:{video_id}"
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


def address_kind(address: str) -> str | None:
    """What kind of non-public address `address` is ("loopback", "private", ...), None for a public one.

    An IPv6 address carrying an IPv4 one (mapped, NAT64, 6to4) is judged by the IPv4 address it reaches.
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip in NAT64:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        elif ip.sixtofour is not None:
            ip = ip.sixtofour
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private or not ip.is_global),  # RFC 1918, ULA, shared 100.64/10, documentation ...
    )
    return next((kind for kind, hit in checks if hit), None)


def refusal(address: str, *, allow_private: bool) -> str | None:
    """Why a receiver at `address` is refused (its kind), or None: public, or a kind WEBHOOK_ALLOW_PRIVATE allows."""
    kind = address_kind(address)
    return None if kind is None or (allow_private and kind in PRIVATE_KINDS) else kind


def status_class(status: int) -> str:
    """The result a receiver's HTTP status records: its class ("2xx" ... "5xx"); any other number is not HTTP."""
    return f"{status // 100}xx" if 100 <= status <= 599 else "not_http"


class Refused(Exception):
    """A hook's host cannot be sent to: `result` is "unresolved" or "blocked"; `reason` says why, for the admin."""

    def __init__(self, result: str, reason: str) -> None:
        super().__init__(reason)
        self.result, self.reason = result, reason


@dataclass(frozen=True)
class Target:
    """A hook's URL and the addresses its host resolved to, each checked: a try connects to these only."""

    url: str
    addresses: tuple[tuple[int, tuple[Any, ...]], ...]  # (socket family, sockaddr)


def resolve(url: str, *, allow_private: bool) -> Target:
    """Look the URL's host up once and check every address it has (`refusal`); Refused if none or any is refused."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        found = socket.getaddrinfo(parts.hostname or "", port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError):
        found = []
    if not found:
        raise Refused("unresolved", "its host does not resolve")
    for _family, _kind, _proto, _name, sockaddr in found:
        kind = refusal(str(sockaddr[0]), allow_private=allow_private)
        if kind is not None:
            fix = " (WEBHOOK_ALLOW_PRIVATE=true allows it)" if kind in PRIVATE_KINDS else ""
            raise Refused("blocked", f"its host resolves to a {kind} address{fix}")
    return Target(url, tuple(dict.fromkeys((family, sockaddr) for family, _k, _p, _n, sockaddr in found)))


def check_target(url: object, *, allow_private: bool) -> str:
    """Return `url` if it is a hook's (`check_url`) and its host resolves to addresses allowed, else InvalidInput."""
    checked = check_url(url)
    try:
        resolve(checked, allow_private=allow_private)
    except Refused as exc:
        raise InvalidInput("url", exc.reason) from None
    return checked


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


def create(session: Session, url: object, events: object, *, now: datetime, allow_private: bool) -> tuple[dict[str, Any], str]:
    """Register a hook; return its JSON and its secret (shown this once). It hears only events after now."""
    names = check_events(events)
    hook = Webhook(
        url=check_target(url, allow_private=allow_private),
        events=",".join(names),
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
    result = delivery.last_result if delivery.last_result in RESULTS or delivery.last_result is None else "error"
    return {
        "id": delivery.id,
        "event": delivery.kind,
        "event_id": delivery.event_id,
        "state": state,
        "attempts": delivery.attempts,
        "created_at": _iso(delivery.created_at),
        "next_attempt_at": _iso(delivery.next_attempt_at),
        "last_status": result,  # the last try's class (RESULTS), null before the first
        "last_error": None if result is None else RESULTS[result],
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
        table = cast(Table, Webhook.__table__)  # a mapped class's table; typed as any FromClause
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


def post(target: Target, body: bytes, headers: dict[str, str], timeout: float) -> str:
    """POST `body` once to the target's checked addresses, within `timeout` seconds in all; return its RESULTS class.

    Follows no redirect; reads at most RESPONSE_LIMIT bytes of the answer and keeps none of them.
    """
    parts = urlsplit(target.url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = kind(parts.hostname or "", parts.port, timeout=timeout)
    deadline = time.monotonic() + timeout
    # Connect to the addresses checked, not to a fresh lookup of the name (which the Host header and TLS keep).
    conn._create_connection = lambda _address, _timeout, _source=None: _connect(target.addresses, deadline)  # type: ignore[attr-defined]  # http.client's private connect hook: not in typeshed
    # The socket timeout bounds each read; this bounds them all (a receiver answering a byte at a time).
    cut = threading.Event()
    watchdog = threading.Timer(timeout, _cut, (conn, cut))
    watchdog.daemon = True
    watchdog.start()
    try:
        target_path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.request("POST", target_path, body=body, headers=headers)
        response = conn.getresponse()
        response.read(RESPONSE_LIMIT)
        return status_class(response.status)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return "timeout" if cut.is_set() else failure_class(exc)
    finally:
        watchdog.cancel()
        conn.close()


def _connect(addresses: Sequence[tuple[int, tuple[Any, ...]]], deadline: float) -> socket.socket:
    """A connection to the first of `addresses` that takes one before `deadline`."""
    error: OSError = ConnectionRefusedError("no address to connect to")
    for family, sockaddr in addresses:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error


def failure_class(exc: BaseException) -> str:
    """The RESULTS class of a try that raised `exc` (its message may quote the receiver: it is not kept)."""
    classes: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...] = (
        (TimeoutError, "timeout"),
        ((ssl.SSLError, ssl.CertificateError), "tls"),
        (http.client.RemoteDisconnected, "closed"),
        (ConnectionRefusedError, "refused"),
        ((ConnectionResetError, ConnectionAbortedError, BrokenPipeError), "reset"),
        (http.client.HTTPException, "not_http"),
        (OSError, "unreachable"),
    )
    return next((result for kind, result in classes if isinstance(exc, kind)), "error")


def _cut(conn: http.client.HTTPConnection, cut: threading.Event) -> None:
    cut.set()
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed: nothing to cut
            sock.shutdown(socket.SHUT_RDWR)


def send_order(due: Sequence[tuple[int, datetime]], slow: Collection[int]) -> list[int]:
    """The hooks with a due delivery, (hook id, oldest due), in the order they get a thread.

    Hooks whose last try did not time out come first, then the `slow` ones; each group oldest due first.
    """
    return [hook_id for hook_id, at in sorted(due, key=lambda d: (d[0] in slow, d[1], d[0]))]


def slow_share(threads: int) -> int:
    """How many of `threads` hooks whose last try timed out may hold at once: half, at least one."""
    return max(1, threads // 2)


def may_start(hook_id: int, *, slow: bool, busy: Collection[int], busy_slow: int, threads: int) -> bool:
    """Whether a try of `hook_id` may take a thread: one in flight per hook, `threads` in all, `slow_share` slow ones."""
    if hook_id in busy or len(busy) >= threads:
        return False
    return not slow or busy_slow < slow_share(threads)


def _timed_out(session: Session, hook_ids: Sequence[int]) -> set[int]:
    """Those of the hooks with a delivery still to send whose last try timed out (a receiver that hangs)."""
    if not hook_ids:
        return set()
    query = select(WebhookDelivery.webhook_id).where(
        WebhookDelivery.webhook_id.in_(hook_ids),
        WebhookDelivery.next_attempt_at.is_not(None),
        WebhookDelivery.last_result == "timeout",
    )
    return set(session.scalars(query.distinct()))


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
        self._slow: set[int] = set()  # those of them whose last try before timed out
        self._lock = threading.Lock()

    def tick(self) -> list[Future[None]]:
        """One pass: new events into deliveries, old finished ones out, then start the due tries (without waiting)."""
        scan(self.services)
        with self.services.sessions() as session:
            prune(session, self.services.clock.now(), self.services.config.EVENT_RETENTION)
        return self.send_due()

    def send_due(self) -> list[Future[None]]:
        """Claim and start due deliveries, one per hook at most, in `send_order`; none waits for a thread."""
        services = self.services
        now = services.clock.now()
        oldest = func.min(WebhookDelivery.next_attempt_at)
        query = (
            select(WebhookDelivery.webhook_id, oldest)
            .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
            .where(Webhook.disabled_at.is_(None), WebhookDelivery.next_attempt_at <= now)
            .group_by(WebhookDelivery.webhook_id)
            .order_by(oldest, WebhookDelivery.webhook_id)
            .limit(SEND_BATCH)
        )
        started: list[Future[None]] = []
        with services.sessions() as session:
            # min(next_attempt_at) of rows whose next_attempt_at <= now: never NULL.
            due = [(hook_id, cast(datetime, at)) for hook_id, at in session.execute(query).all()]
            slow = _timed_out(session, [hook_id for hook_id, _ in due])
            for hook_id in send_order(due, slow):
                if not self._take(hook_id, hook_id in slow):
                    continue
                delivery_id = self._claim_next(session, hook_id, now)
                if delivery_id is None:
                    self._release(hook_id)
                    continue
                started.append(self._pool.submit(self._try, delivery_id, hook_id))
            session.rollback()
        return started

    def _take(self, hook_id: int, slow: bool) -> bool:
        with self._lock:
            if not may_start(hook_id, slow=slow, busy=self._busy, busy_slow=len(self._slow), threads=self.threads):
                return False
            self._busy.add(hook_id)
            if slow:
                self._slow.add(hook_id)
            return True

    def _release(self, hook_id: int) -> None:
        with self._lock:
            self._busy.discard(hook_id)
            self._slow.discard(hook_id)

    def _claim_next(self, session: Session, hook_id: int, now: datetime) -> int | None:
        """Claim the hook's oldest due delivery: move its next try past this one's deadline, if no other sender did first."""
        query = (
            select(WebhookDelivery.id, WebhookDelivery.next_attempt_at)
            .where(WebhookDelivery.webhook_id == hook_id, WebhookDelivery.next_attempt_at <= now)
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
            .limit(1)
        )
        row = session.execute(query).first()
        if row is None:
            session.rollback()
            return None
        later = now + timedelta(seconds=claim_seconds(self.services.config))
        table = cast(Table, WebhookDelivery.__table__)  # a mapped class's table; typed as any FromClause
        claim = update(table).where(table.c.id == row.id, table.c.next_attempt_at == row.next_attempt_at)
        # An UPDATE's result is a CursorResult (Session.execute is typed for any statement).
        claimed = cast(CursorResult[Any], session.execute(claim.values(next_attempt_at=later)))
        session.commit()
        return row.id if claimed.rowcount == 1 else None

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


def deliver(services: Services, delivery_id: int) -> str | None:
    """Send one claimed delivery once, record what happened (delivered, a next try, or given up); return its class."""
    with services.sessions() as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        hook = None if delivery is None else session.get(Webhook, delivery.webhook_id)
        if delivery is None or hook is None or delivery.next_attempt_at is None:
            return None
        url, secret, kind, body = hook.url, hook.secret, delivery.kind, delivery.payload.encode()
        session.rollback()  # no connection is held while the receiver takes its time
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "team03-webhooks",
        "X-Team03-Event": kind,
        "X-Team03-Delivery": str(delivery_id),
        SIGNATURE_HEADER: sign(secret, body, int(services.clock.time())),
    }
    try:
        target = resolve(url, allow_private=services.config.WEBHOOK_ALLOW_PRIVATE)  # again: DNS may have changed
    except Refused as exc:
        result = exc.result
    else:
        result = post(target, body, headers, services.config.WEBHOOK_TIMEOUT)
    _record(services, delivery_id, result)
    return result


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


def _record(services: Services, delivery_id: int, result: str) -> None:
    with services.sessions() as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        if delivery is None:
            return
        now = services.clock.now()
        delivery.attempts += 1
        delivery.last_result = result
        outcome = "delivered"
        if result == "2xx":
            delivery.delivered_at, delivery.next_attempt_at = now, None
        else:
            outcome = "retrying"
            delivery.next_attempt_at = next_attempt(delivery.created_at, now, delivery.attempts, Policy.of(services.config))
            if delivery.next_attempt_at is None:
                outcome, delivery.given_up_at = "given_up", now
                log.warning("webhook delivery %s given up after %d tries: %s", delivery_id, delivery.attempts, result)
        session.commit()
    metrics.WEBHOOK_TRIES.labels(result=outcome).inc()
