"""Operator commands (docs/operations.md "Operator CLI"): `python -m server.cli COMMAND`.

`stream FILE|URL` records a video as the phone does, over HTTP against `--server` (server/ops/phone.py).
`videos`, `segments VIDEO`, `workers`, `retry VIDEO`, `end VIDEO`, `purge`, `db upgrade`,
`admin create|logout-all|delete`, `worker token|revoke|list`, `key create|list|revoke` and `webhook ...` work on the deployment's
DATABASE_URL (and MEDIA_ROOT) through the same domain functions as the admin API; `media migrate` copies
MEDIA_ROOT into the S3 bucket (server/ops/migrate.py). Each prints a table a person reads, or JSON with
`--json`; an error is one line on stderr and exit 1 (2 for a usage error, or a refusal to start).
A command that prints a secret (a worker token, a recording key, a webhook's signing secret) prints it alone on stdout,
so `$(...)` captures just it; hints go to stderr.
"""

from __future__ import annotations

import argparse
import getpass
import json
import random
import re
import secrets
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO, TypeVar, cast

from alembic import command
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

from server.config import Config
from server.core.clock import SystemClock
from server.core.doors import MAX_LINK_TTL
from server.core.errors import Conflict, FFmpegError, ServiceError
from server.core.states import Visibility
from server.core.transcode import ffmpeg
from server.domain import admins, curation, ingest, keys, lifecycle, links, registry
from server.infra.db import alembic_config, make_engine, make_sessionmaker
from server.infra.models import Admin
from server.infra.queue import NoQueue
from server.infra.services import Services
from server.ops import migrate, phone, purge, webhooks
from server.ops.purge import PurgePlan
from server.web import admin_views

CLI = "cli"  # who the audit trail says acted, for a command run here (docs/admin-api.md "Audit")
T = TypeVar("T")  # what the work given to with_session or with_services returns


def db_upgrade(config: Config) -> None:
    """Apply every pending migration to DATABASE_URL."""
    if config.DATABASE_URL.startswith("sqlite:///"):
        from pathlib import Path

        Path(config.DATABASE_URL.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(config.DATABASE_URL), "head")


def admin_create(config: Config, name: str, password: str) -> str:
    """Create the admin `name`, or set a new password and end its sessions; return what to print."""
    saved, ended = with_session(config, lambda s: admins.set_password(s, name, password))
    return f"admin {saved!r} saved; {ended} session(s) ended"


def admin_command(config: Config, action: str, name: str) -> str:
    """Carry out `admin create|logout-all|delete NAME` (server/domain/admins.py) and return what to print."""
    if action == "create":
        return admin_create(config, name, _read_password())
    if action == "logout-all":
        found, ended = with_session(config, lambda s: admins.end_sessions(s, name))
        return f"admin {found!r}: {ended} session(s) ended"
    deleted, ended = with_session(config, lambda s: admins.delete_admin(s, name))
    return f"admin {deleted!r} deleted; {ended} session(s) ended"


def create_first_admin(config: Config, name: str = "admin") -> str | None:
    """Create `name` with a random password if no admin exists yet; return that password (shown once), else None.

    There is no default password: dev_run.py calls this at start and prints the result; nothing else does
    (gunicorn never creates an admin; production uses `admin create`).
    """
    engine = make_engine(config.DATABASE_URL)
    try:
        with make_sessionmaker(engine)() as session:
            if session.scalar(select(func.count()).select_from(Admin)):
                return None
            password = secrets.token_urlsafe(12)
            session.add(Admin(name=name, password_hash=generate_password_hash(password)))
            try:
                session.commit()
            except IntegrityError:  # another first start won the race: its password was printed there
                return None
            return password
    finally:
        engine.dispose()


def with_session(config: Config, work: Callable[[Session], T]) -> T:
    """Run `work(session)` on DATABASE_URL and release the connection."""
    engine = make_engine(config.DATABASE_URL)
    try:
        with make_sessionmaker(engine)() as session:
            return work(session)
    finally:
        engine.dispose()


LIST_COLUMNS: tuple[str, ...] = ("name", "host", "version", "ffmpeg", "concurrency", "functions", "last_heartbeat_at", "stopped_at", "revoked")
LIST_COLUMNS += ("running", "attempts_ok", "attempts_failed")


def format_table(rows: list[dict[str, Any]]) -> str:
    """Return `worker list` as aligned columns (one header line, one line per worker)."""
    cells = [list(LIST_COLUMNS)] + [["-" if row[c] is None else str(row[c]) for c in LIST_COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(LIST_COLUMNS))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in cells)


def hint(text: str) -> None:
    """Tell the operator something on stderr: stdout carries only the answer (a secret alone, for `$(...)`)."""
    print(text, file=sys.stderr)


def worker_command(config: Config, action: str, name: str | None, as_json: bool) -> str:
    """Carry out `worker token|revoke|list` and return what to print."""
    given = cast(str, name)  # token and revoke have a NAME argument (argparse); only list has none
    if action == "token":
        token = with_session(config, lambda s: registry.mint_token(s, given, now=SystemClock().now()))
        hint(f"worker {name!r}: set WORKER_TOKEN to the token on stdout; it is shown only once")
        return token
    if action == "revoke":
        with_session(config, lambda s: registry.revoke(s, given, now=SystemClock().now()))
        return f"worker {name!r}: token revoked"
    rows = with_session(config, registry.listing)
    return json.dumps(rows, indent=2) if as_json else format_table(rows)


# --- key: create, list, revoke (server/domain/keys.py) ----------------------------------------------------


def add_key_parser(sub: Any) -> None:
    """The `key` subcommands: recording keys, carried in the Android app's server URL (docs/api.md "Doors")."""
    key = sub.add_parser("key", help="recording keys: key create|list|revoke").add_subparsers(dest="action", required=True)
    create = key.add_parser("create", help="mint a recording key (printed once, alone on stdout)")
    create.add_argument("name")
    create.add_argument("--max-live", type=_count, metavar="N", help="at most N live videos at once (default: no cap)")
    create.add_argument("--quota", type=_count, metavar="BYTES", help="bytes its videos may hold (default: no quota)")
    create.add_argument("--visibility", choices=[v.value for v in Visibility], default="public", help="its videos' visibility")
    listing = key.add_parser("list", help="every key: limits, live videos, bytes stored (never the keys)")
    listing.add_argument("--json", action="store_true", help="JSON instead of a table")
    key.add_parser("revoke", help="refuse a key from its next request on; its live videos end").add_argument("name")


def key_command(config: Config, args: argparse.Namespace) -> str:
    """Carry out `key create|list|revoke` (by "cli") and return what to print."""
    if args.action == "create":
        _, key = with_services(
            config,
            lambda s, db: keys.mint(
                s, db, args.name, max_live=args.max_live, quota_bytes=args.quota, visibility=Visibility(args.visibility), by="cli"
            ),
        )
        hint(f"recording key {args.name!r}: shown only once. Set the Android app's server URL to https://<host>/k/<key>")
        return key
    if args.action == "revoke":
        ended = with_services(config, lambda s, db: keys.revoke(s, db, args.name, by="cli"))
        return f"recording key {args.name!r} revoked; live videos ended: {ended or 'none'}"
    rows = [asdict(row) for row in with_session(config, keys.list_keys)]
    return dumps(rows) if args.json else keys_table(rows)


def keys_table(rows: Sequence[dict[str, Any]]) -> str:
    return table(
        rows,
        [
            ("NAME", lambda r: r["name"]),
            ("CREATED", lambda r: f"{r['created_at']:%Y-%m-%d %H:%M}"),
            ("BY", lambda r: r["created_by"]),
            ("REVOKED", lambda r: r["revoked_at"] and f"{r['revoked_at']:%Y-%m-%d %H:%M}"),
            ("VISIBILITY", lambda r: r["visibility"]),
            ("LIVE", lambda r: f"{r['live']}/{r['max_live'] or '-'}"),
            ("STORED", lambda r: f"{human_size(r['used_bytes'])} / {human_size(r['quota_bytes']) or '-'}"),
        ],
    )


# --- webhook: add, list, remove, deliveries (server/ops/webhooks.py) ---------------------------------------


def add_webhook_parser(sub: Any) -> None:
    """The `webhook` subcommands."""
    hook = sub.add_parser("webhook", help="URLs told of events (README: Webhooks)").add_subparsers(dest="action", required=True)
    add = hook.add_parser("add", help="register a URL; its signing secret is printed once")
    add.add_argument("url")
    add.add_argument("--events", required=True, help=f"comma-separated, from: {','.join(webhooks.EVENTS)}")
    hook.add_parser("list", help="the registered URLs").add_argument("--json", action="store_true", help="JSON instead of lines")
    hook.add_parser("remove", help="stop sending to a URL").add_argument("id", type=int)
    deliveries = hook.add_parser("deliveries", help="a URL's newest deliveries and their last status")
    deliveries.add_argument("id", type=int)
    deliveries.add_argument("--limit", type=int, default=20, choices=range(1, webhooks.PAGE_MAX + 1), metavar="1..200")
    deliveries.add_argument("--json", action="store_true", help="JSON instead of lines")


def webhook_command(config: Config, args: argparse.Namespace) -> str:
    """Carry out `webhook add|list|remove|deliveries` and return what to print."""
    now = SystemClock().now()
    if args.action == "add":
        hook, secret = with_session(config, lambda s: webhooks.create(s, args.url, args.events, now=now, allow_private=config.WEBHOOK_ALLOW_PRIVATE))
        hint(
            f"webhook {hook['id']}: {hook['url']} ({','.join(hook['events'])}); its signing secret is on stdout, shown only once"
        )
        return secret
    if args.action == "remove":
        with_session(config, lambda s: webhooks.remove(s, args.id, now=now))
        return f"webhook {args.id}: removed"
    if args.action == "list":
        rows = with_session(config, webhooks.listing)
        return json.dumps(rows, indent=2) if args.json else "\n".join(_hook_line(r) for r in rows)
    page = with_session(config, lambda s: webhooks.deliveries(s, args.id, limit=args.limit))
    rows = page["deliveries"]
    return json.dumps(rows, indent=2) if args.json else "\n".join(_delivery_line(r) for r in rows)


def _hook_line(row: dict[str, Any]) -> str:
    return f"{row['id']}  {row['url']}  {','.join(row['events'])}  since {row['created_at']}"


def _delivery_line(row: dict[str, Any]) -> str:
    status = row["last_status"] if row["last_status"] is not None else "-"
    error = f"  {row['last_error']}" if row["last_error"] else ""
    return f"{row['id']}  {row['event']}  {row['state']}  tries={row['attempts']}  status={status}  at={row['created_at']}{error}"


def first_admin_banner(url: str, name: str, password: str) -> str:
    """The console block a newcomer reads on the first start: where the dashboard is and how to log in."""
    rule = "=" * 72
    return "\n".join(
        [
            rule,
            f"  Dashboard: {url}",
            "  No admin existed, so one was created. Log in with:",
            f"    Username: {name}",
            f"    Password: {password}",
            "  This password is shown once, now. To set another, or add an admin:",
            "    python -m server.cli admin create NAME",
            rule,
        ]
    )


# -- formatting -------------------------------------------------------------------------------------

Column = tuple[str, Callable[[dict[str, Any]], Any]]


def table(rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> str:
    """Aligned columns: one header line, one line per row; None shows as "-"."""
    cells = [[title for title, _ in columns]]
    cells += [["-" if (v := get(row)) is None else str(v) for _, get in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells)


def human_size(size: float | None) -> str | None:
    """Bytes as a person reads them: 512 B, 1.5 KiB, 23.4 MiB."""
    if size is None:
        return None
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def human_seconds(seconds: float | None) -> str | None:
    """A span as a person reads it: 4.2s, 3m05s, 2h10m, 3d4h."""
    if seconds is None:
        return None
    s = max(0.0, float(seconds))
    if s < 60:
        return f"{s:.1f}s"
    minutes, sec = divmod(int(s), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours < 48 else f"{hours // 24}d{hours % 24}h"


def age(stamp: str | None, now: datetime) -> str | None:
    """How long ago an ISO 8601 'Z' time was (the dashboard's JSON times), e.g. "3m05s"."""
    if stamp is None:
        return None
    return human_seconds((now - datetime.fromisoformat(stamp.removesuffix("Z"))).total_seconds())


def short(text: str | None, width: int = 40) -> str | None:
    """One line of at most `width` characters."""
    if text is None:
        return None
    line = " ".join(str(text).split())
    return line if len(line) <= width else line[: width - 1] + "…"


def videos_table(rows: Sequence[dict[str, Any]], now: datetime) -> str:
    return table(
        rows,
        [
            ("ID", lambda r: r["id"]),
            ("TYPE", lambda r: r["type"]),
            ("STATUS", lambda r: r["status"]),
            ("SEGMENTS", lambda r: "live" if r["segment_count"] in (None, -1) else r["segment_count"]),
            ("FAILED", lambda r: r["segments_failed"]),
            ("DURATION", lambda r: human_seconds(r["duration"])),
            ("CREATED", lambda r: age(r["created_at"], now) and f"{age(r['created_at'], now)} ago"),
            ("TITLE", lambda r: short(r["title"])),
        ],
    )


def _rungs(row: dict[str, Any]) -> str:
    return " ".join(f"{r['name']}:{r['state']}" for r in row["rungs"]) or "-"


def segments_table(video: dict[str, Any]) -> str:
    head = f"video {video['id']} {video['type']} {video['status']}  {short(video['title'])!s}"
    rows = table(
        video["segments"],
        [
            ("SEG", lambda r: r["segment_id"]),
            ("STATE", lambda r: r["state"]),
            ("SIZE", lambda r: human_size(r["size"])),
            ("DURATION", lambda r: human_seconds(r["duration"])),
            ("UPLOAD", lambda r: human_seconds(r["upload_seconds"])),
            ("LATENCY", lambda r: human_seconds(r["latency"])),
            ("ATTEMPTS", lambda r: len(r["attempts"])),
            ("RUNGS", _rungs),
            ("ERROR", lambda r: short(r["error"], 60)),
        ],
    )
    return f"{head}\n{rows}"


def workers_table(answer: dict[str, Any]) -> str:
    rows = table(
        answer["workers"],
        [
            ("NAME", lambda r: r["name"]),
            ("ALIVE", lambda r: "yes" if r["alive"] else "no"),
            ("HOST", lambda r: r["host"]),
            ("JOBS", lambda r: r["concurrency"]),
            ("HEARTBEAT", lambda r: r["heartbeat_age"] is not None and f"{human_seconds(r['heartbeat_age'])} ago" or None),
            ("RUNNING", lambda r: len(r["attempts"])),
            ("SEG/MIN", lambda r: r["segments_per_minute"]),
            ("xRT", lambda r: r["x_realtime"]),
            ("ERR/H", lambda r: r["errors_last_hour"]),
            ("OK", lambda r: r["attempts_ok"]),
            ("FAILED", lambda r: r["attempts_failed"]),
        ],
    )
    lines = [rows if answer["workers"] else "no worker registered (dev_run.py runs its jobs on local threads)"]
    queue = answer.get("queue") or {}
    for function, counts in sorted((queue.get("total") or {}).items()):
        lines.append(f"queue {function}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if answer.get("banner"):
        lines.append(f"! {answer['banner']}")
    return "\n".join(lines)


def purge_text(purge: PurgePlan, *, done: bool) -> str:
    verb = "removed" if done else "would remove"
    lines = []
    for kind, paths in purge.files.items():
        lines.append(f"{verb} {len(paths)} {kind}")
        lines += [f"  {p}" for p in paths[:PURGE_SHOWN]]
        if len(paths) > PURGE_SHOWN:
            lines.append(f"  ... and {len(paths) - PURGE_SHOWN} more")
    lines += [f"{verb} {count} {kind}" for kind, count in purge.rows.items()]
    if not done and (any(purge.files.values()) or any(purge.rows.values())):
        lines.append("dry run: nothing was removed; run again with --yes to remove it")
    return "\n".join(lines)


PURGE_SHOWN = 20


def purge_json(purge: PurgePlan, *, done: bool) -> dict[str, Any]:
    return {"removed": done, "files": {k: [str(p) for p in v] for k, v in purge.files.items()}, "rows": purge.rows}


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2, default=str)


# -- the database commands ----------------------------------------------------------------------------


def _services(config: Config) -> Services:
    """The deployment's services; with no gearmand a retried segment waits for the reaper (NoQueue)."""
    services = Services.build(config)
    if services.queue is None:
        services.queue = NoQueue()
    return services


def with_services(config: Config, work: Callable[[Services, Session], T]) -> T:
    """Run `work(services, session)` and release every connection."""
    services = _services(config)
    try:
        with services.sessions() as session:
            return work(services, session)
    finally:
        services.close()


def videos_command(services: Services, session: Session, limit: int, kind: str | None, as_json: bool) -> str:
    page = admin_views.list_videos(services, session, limit=limit, before=None, q=None, kind=kind)
    return dumps(page["videos"]) if as_json else videos_table(page["videos"], services.clock.now())


def segments_command(services: Services, session: Session, video_id: int, as_json: bool) -> str:
    detail = admin_views.video_detail(services, session, video_id)
    return dumps(detail) if as_json else segments_table(detail)


def workers_command(services: Services, session: Session, as_json: bool) -> str:
    answer = admin_views.workers(services, session)
    return dumps(answer) if as_json else workers_table(answer)


def retry_command(services: Services, session: Session, video_id: int, as_json: bool) -> str:
    """Every FAILED segment of the video starts over (as the admin API's retry does)."""
    retried = []
    for segment_id in admin_views.failed_segment_ids(session, video_id):
        try:
            lifecycle.retry_failed(services, session, video_id, segment_id)
        except Conflict:  # retried by someone else meanwhile
            continue
        retried.append(segment_id)
    if retried:
        curation.record_retry(services, session, video_id, retried, by=CLI)
    if as_json:
        return dumps({"video_id": video_id, "retried": retried})
    return f"video {video_id}: {len(retried)} failed segment(s) retried" + (f": {retried}" if retried else "")


def end_command(services: Services, session: Session, video_id: int, as_json: bool) -> str:
    """End a stuck live video at its highest stored segment (as the admin API's end does)."""
    ingest.end_stuck_video(services, session, video_id)
    lifecycle.maybe_finish(services, session, video_id)  # every segment may be done already
    row = admin_views.video_rows(services, session, [ingest.get_video(session, video_id)])[0]
    if as_json:
        return dumps(row)
    return f"video {video_id}: ended at segment {row['segment_count'] - 1}; now {row['type']} {row['status']}"


def video_command(services: Services, session: Session, args: argparse.Namespace) -> str:
    """`video visibility|pin|unpin ID`: as the admin API's PATCH does, audited with by="cli"."""
    if args.action == "visibility":
        curation.set_visibility(services, session, args.video, curation.parse_visibility(args.visibility), by=CLI)
    else:
        curation.set_pinned(services, session, args.video, args.action == "pin", by=CLI)
    row = admin_views.video_rows(services, session, [ingest.get_video(session, args.video)])[0]
    if args.json:
        return dumps(row)
    return f"video {args.video}: {row['visibility']}, {'pinned' if row['pinned'] else 'not pinned'}"


def add_video_parser(sub: Any) -> None:
    """`video visibility ID public|unlisted|private`, `video pin ID`, `video unpin ID`, `video link ID` (docs/operations.md)."""
    video = sub.add_parser("video", help="a video's visibility, pin and signed links").add_subparsers(dest="action", required=True)
    link = video.add_parser("link", help="print a signed URL that plays a video (private ones too) until it expires")
    link.add_argument("video", type=_video_id)
    link.add_argument("--dash", action="store_true", help="the DASH MPD instead of the HLS master playlist")
    link.add_argument("--ttl", type=_ttl, metavar="SECONDS", help="how long it plays (default LINK_TTL, 3600)")
    link.add_argument("--base-url", type=_base_url, help="the server as players reach it (default PUBLIC_URL, else " + DEFAULT_SERVER + ")")
    visibility = video.add_parser("visibility", help="who may watch a video (docs/api.md Doors)")
    visibility.add_argument("video", type=_video_id)
    visibility.add_argument("visibility", choices=curation.VISIBILITIES)
    video.add_parser("pin", help="RETENTION_DAYS spares the video").add_argument("video", type=_video_id)
    video.add_parser("unpin", help="RETENTION_DAYS applies to the video again").add_argument("video", type=_video_id)
    for action in ("visibility", "pin", "unpin"):
        video.choices[action].add_argument("--json", action="store_true", help="the video's row as JSON")


def link_command(services: Services, session: Session, args: argparse.Namespace) -> str:
    """A signed link that plays the video (its HLS master, or with --dash its MPD) until it expires (audited)."""
    base = (args.base_url or services.config.PUBLIC_URL or DEFAULT_SERVER).rstrip("/")
    ttl = args.ttl or services.config.LINK_TTL
    link = links.mint_link(services, session, args.video, dash=args.dash, ttl=ttl, by="cli")
    until = datetime.fromtimestamp(link.expires, UTC).isoformat(timespec="seconds")
    hint(f"plays video {args.video} until {until} ({ttl} s); every file it names opens under the same link, nothing else")
    return base + link.path


def purge_command(services: Services, session: Session, yes: bool, as_json: bool) -> str:
    found = purge.plan(services, session)
    result = purge.apply(services, session, found) if yes else found
    return dumps(purge_json(result, done=yes)) if as_json else purge_text(result, done=yes)


# -- stream -----------------------------------------------------------------------------------------


class ProgressBar:
    """A plain-text bar on stderr, redrawn in place with \\r (no dependency)."""

    WIDTH = 30

    def __init__(self, out: TextIO, clock: Callable[[], float] = time.monotonic) -> None:
        self.out, self.clock, self.start = out, clock, clock()

    def line(self, sent: phone.Sent) -> str:
        filled = round(self.WIDTH * sent.stored / max(1, sent.total))
        bar = "#" * filled + "." * (self.WIDTH - filled)
        took = human_seconds(self.clock() - self.start)
        size = human_size(sent.bytes)
        return f"[{bar}] {sent.stored}/{sent.total} segments  {sent.uploads} uploads  {size}  {took}"

    def __call__(self, sent: phone.Sent) -> None:
        self.out.write("\r" + self.line(sent))
        self.out.flush()

    def note(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def done(self) -> None:
        self.out.write("\n")
        self.out.flush()


def stream_command(args: argparse.Namespace, err: TextIO) -> str:
    """Cut SOURCE as the phone does, upload it to --server, end it; return the final line (or JSON)."""
    source = phone.check_source(args.source)
    client = phone.PhoneClient(args.server, timeout=args.timeout, retries=args.retries)
    rng = random.Random(args.seed)
    bar = ProgressBar(err)
    client.check()
    with tempfile.TemporaryDirectory(prefix="team03-stream-") as workdir:
        bar.note(f"cutting {args.source} into ~{ffmpeg.CUT_SECONDS:g} s segments ...")
        cuts, copied = phone.cut(source, Path(workdir), args.cut_timeout)
        plan = phone.upload_plan(len(cuts), shuffle=args.shuffle, duplicate=args.duplicate, rng=rng)
        pace = "as fast as possible" if args.fast else "in real time"
        how = "copied" if copied else "re-encoded"
        bar.note(f"{len(cuts)} segments ({how}), {len(plan)} uploads {pace} to {client.server}")
        pacer = phone.Pacer(cuts, fast=args.fast)
        title = args.title or Path(urllib.parse.urlsplit(args.source).path).name or "stream"
        try:
            video = phone.record(client, title, cuts, plan, pacer, on_sent=bar)
        finally:
            bar.done()
    urls = phone.playback_urls(client.server, video)
    summary = {"video_id": video["video_id"], "segments": len(cuts), "uploads": len(plan), "retried": client.retried}
    if args.json:
        return dumps({**summary, "copied": copied, "urls": urls, "video": video})
    return f"video {video['video_id']} ({len(cuts)} segments): MPD {urls['mpd']}  HLS {urls['hls']}  Android {urls['android']}"


# -- media migrate ----------------------------------------------------------------------------------


class Refused(Exception):
    """A command that will not start as configured: one line on stderr, exit 2."""


@dataclass(frozen=True)
class Outcome:
    """What a command prints, and an exit status other than 0 (a command that did its work but found problems)."""

    text: str
    status: int


class CopyProgress:
    """`media migrate`'s progress on stderr: files and bytes done of the total, rate, ETA.

    On a terminal the line is redrawn in place (at most 10 times a second); in a log (not a terminal) a
    line is written after the first file, then at most once every LOG_EVERY seconds, and after the last.
    """

    LOG_EVERY = 5.0

    def __init__(self, out: TextIO, clock: Callable[[], float] = time.monotonic) -> None:
        self.out, self.clock = out, clock
        self.start = self.last = clock()
        self.tty = out.isatty()
        self.width = 0  # of the longest line drawn, so a shorter one leaves none of it behind

    def line(self, p: migrate.Progress, now: float) -> str:
        rate, left = migrate.estimate(p, now - self.start)
        speed = f"{human_size(rate)}/s" if rate is not None else "-"
        eta = human_seconds(left) if left is not None else "-"
        done = f"{human_size(p.bytes)}/{human_size(p.bytes_total)}"
        return f"{p.files}/{p.files_total} files  {done}  {speed}  ETA {eta}"

    def __call__(self, p: migrate.Progress) -> None:
        now = self.clock()
        every = 0.1 if self.tty else self.LOG_EVERY
        if p.files not in (1, p.files_total) and now - self.last < every:
            return
        self.last = now
        text = self.line(p, now)
        self.width = max(self.width, len(text))
        self.out.write(f"\r{text.ljust(self.width)}" if self.tty else f"{text}\n")
        self.out.flush()

    def done(self) -> None:
        if self.tty:
            self.out.write("\n")
            self.out.flush()


def media_migrate(config: Config, args: argparse.Namespace, err: TextIO) -> Outcome:
    """Copy MEDIA_ROOT's media into the S3 bucket: resumable, checked, conflicts left alone (exit 1)."""
    if config.MEDIA_STORE != "s3":
        raise Refused(f"media migrate copies into the S3 bucket: set MEDIA_STORE=s3 and S3_* (MEDIA_STORE is {config.MEDIA_STORE!r})")
    if not config.MEDIA_ROOT.is_dir():
        raise Refused(f"MEDIA_ROOT {config.MEDIA_ROOT} is not a folder")
    from server.store.s3 import S3Objects  # boto3 only where S3 is used

    store = S3Objects.from_config(config)
    where = f"s3://{config.S3_BUCKET}/{store.prefix}"
    try:
        store.check()
    except ServiceError as exc:
        raise Refused(f"bucket {where} unreachable: {exc}") from None
    work = migrate.plan(config.MEDIA_ROOT)
    skipped = _skipped(work)
    if skipped:
        err.write(f"skipped: {skipped}\n")
    verb = "checking" if args.dry_run else "copying"
    err.write(f"{verb} {len(work.items)} files ({human_size(work.bytes)}) from {config.MEDIA_ROOT} to {where}\n")
    bar = CopyProgress(err)
    try:
        result = migrate.copy(store, work, dry_run=args.dry_run, replace=args.replace, on_progress=bar)
    finally:
        bar.done()
    for conflict in result.conflicts:
        err.write(f"conflict: {_conflict_line(conflict)}\n")
    status = 1 if result.conflicts else 0
    if args.json:
        return Outcome(dumps(_migrate_json(work, result, where, args.dry_run)), status)
    return Outcome(_migrate_text(work, result, args.dry_run), status)


def _skipped(work: migrate.Plan) -> str:
    parts = []
    if work.staging_dirs:
        parts.append(f"{work.staging_dirs} attempt staging folder(s) (videos/*/attempts/ is never copied)")
    if work.temp_files:
        parts.append(f"{work.temp_files} temp (dot) file(s)")
    if work.links:
        parts.append(f"{work.links} symlink(s)")
    if work.unsafe:
        parts.append(f"{len(work.unsafe)} name(s) no object key may have: {', '.join(work.unsafe[:5])}")
    return "; ".join(parts)


def _conflict_line(c: migrate.Conflict) -> str:
    return (
        f"{c.key}: the bucket holds other bytes ({c.bucket.size} B, sha256 {c.bucket.sha256[:12]}) than the file"
        f" ({c.size} B, sha256 {c.sha256[:12]}); left as it is"
    )


def _migrate_text(work: migrate.Plan, result: migrate.Result, dry_run: bool) -> str:
    conflicts = len(result.conflicts)
    if dry_run:
        lines = [f"would copy {item.key} ({human_size(item.size)})" for item in result.would_copy]
        size = human_size(sum(item.size for item in result.would_copy))
        lines.append(f"dry run: would copy {len(result.would_copy)} ({size}), already there {result.already}, conflicts {conflicts}")
        return "\n".join(lines)
    line = f"copied {len(result.copied)}, already there {result.already}, conflicts {conflicts}"
    if result.replaced:
        line += f", replaced {len(result.replaced)}"
    if result.vanished:
        line += f", gone from the tree meanwhile {len(result.vanished)}"
    return line + f"; {human_size(result.bytes_copied)} written of {human_size(work.bytes)} in {len(work.items)} files"


def _migrate_json(work: migrate.Plan, result: migrate.Result, where: str, dry_run: bool) -> dict[str, Any]:
    conflicts = [
        {"key": c.key, "size": c.size, "sha256": c.sha256, "bucket_size": c.bucket.size, "bucket_sha256": c.bucket.sha256}
        for c in result.conflicts
    ]
    return {
        "destination": where,
        "dry_run": dry_run,
        "files": len(work.items),
        "bytes": work.bytes,
        "copied": len(result.copied),
        "bytes_copied": result.bytes_copied,
        "already": result.already,
        "conflicts": conflicts,
        "replaced": result.replaced,
        "vanished": result.vanished,
        "would_copy": [{"key": item.key, "size": item.size} for item in result.would_copy],
        "skipped": {"attempt_staging_dirs": work.staging_dirs, "temp_files": work.temp_files, "links": work.links, "unsafe": work.unsafe},
    }


# -- the command line ---------------------------------------------------------------------------------


def _read_password() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("password: ")
    return sys.stdin.readline().rstrip("\n")


def _video_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a video id: {text!r}") from None
    if not 0 < value < 2**63:
        raise argparse.ArgumentTypeError(f"not a video id: {text!r}")
    return value


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a probability: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"not a probability between 0 and 1: {text!r}")
    return value


def _page(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= admin_views.PAGE_MAX:
        raise argparse.ArgumentTypeError(f"not a number from 1 to {admin_views.PAGE_MAX}: {text!r}")
    return int(text)


def _retries(text: str) -> int:
    if not text.isdigit() or int(text) > MAX_RETRIES:
        raise argparse.ArgumentTypeError(f"not a number from 0 to {MAX_RETRIES}: {text!r}")
    return int(text)


MAX_RETRIES = 20


def _count(text: str) -> int:
    """A whole number of at least 1 (--max-live, --quota)."""
    if not (text.isascii() and text.isdigit() and len(text) <= 18) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1: {text!r}")
    return int(text)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


DEFAULT_SERVER = "http://127.0.0.1:5000"  # dev_run.py's default --host and --port


def parser() -> argparse.ArgumentParser:
    """Every command and its options (usage errors exit 2, argparse's own)."""
    top = argparse.ArgumentParser(prog="python -m server.cli", description="team03 operator commands")
    sub = top.add_subparsers(dest="group", required=True, metavar="COMMAND")
    _stream_parser(sub)
    videos = sub.add_parser("videos", help="the newest videos")
    limit_help = f"at most N (1-{admin_views.PAGE_MAX})"
    videos.add_argument("--limit", type=_page, default=admin_views.PAGE_DEFAULT, metavar="N", help=limit_help)
    videos.add_argument("--filter", choices=admin_views.FILTERS, help="only live, vod, or failed videos")
    sub.add_parser("segments", help="a video's segments, their rungs and attempts").add_argument("video", type=_video_id)
    sub.add_parser("workers", help="the registered workers and the queue")
    sub.add_parser("retry", help="start every FAILED segment of a video over").add_argument("video", type=_video_id)
    sub.add_parser("end", help="end a stuck live video at its highest stored segment").add_argument("video", type=_video_id)
    purge_ = sub.add_parser("purge", help="orphaned files and rows: listed (dry run), removed with --yes")
    purge_.add_argument("--yes", action="store_true", help="remove what is listed")
    for name in ("videos", "segments", "workers", "retry", "end", "purge"):
        sub.choices[name].add_argument("--json", action="store_true", help="JSON instead of text")
    db = sub.add_parser("db", help="db upgrade").add_subparsers(dest="action", required=True)
    db.add_parser("upgrade", help="apply pending migrations to DATABASE_URL")
    admin = sub.add_parser("admin", help="admin create|logout-all|delete NAME").add_subparsers(dest="action", required=True)
    admin.add_parser("create", help="create an admin, or set a new password (ending its sessions); read from stdin").add_argument(
        "name"
    )
    admin.add_parser("logout-all", help="end every login session of an admin (the password stays)").add_argument("name")
    admin.add_parser("delete", help="delete an admin and its sessions").add_argument("name")
    worker = sub.add_parser("worker", help="worker token|revoke|list").add_subparsers(dest="action", required=True)
    worker.add_parser("token", help="mint a worker's token (printed once; the old one stops working)").add_argument("name")
    worker.add_parser("revoke", help="refuse a worker's token from now on").add_argument("name")
    listing = worker.add_parser("list", help="the registered workers")
    listing.add_argument("--json", action="store_true", help="JSON instead of a table")
    add_webhook_parser(sub)
    add_key_parser(sub)
    add_video_parser(sub)
    media = sub.add_parser("media", help="media migrate").add_subparsers(dest="action", required=True)
    moving = media.add_parser("migrate", help="copy MEDIA_ROOT's media into the S3 bucket (MEDIA_STORE=s3, S3_*)")
    moving.add_argument("--dry-run", action="store_true", help="list what would be copied; copy nothing")
    moving.add_argument("--replace", action="store_true", help="overwrite objects that hold other bytes (else: conflicts)")
    moving.add_argument("--json", action="store_true", help="JSON instead of the summary line")
    return top


def _base_url(text: str) -> str:
    if not re.fullmatch(r"https?://[^/?#\s]+(?:/[^?#\s]*)?", text):
        raise argparse.ArgumentTypeError(f"not an http(s) base URL: {text!r}")
    return text


def _ttl(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_LINK_TTL:
        raise argparse.ArgumentTypeError(f"not a number of seconds from 1 to {MAX_LINK_TTL}: {text!r}")
    return int(text)


def _stream_parser(sub: Any) -> None:
    stream = sub.add_parser("stream", help="record a local video or an http(s) URL as the phone does, to --server")
    stream.add_argument("source", metavar="FILE|URL")
    stream.add_argument("--server", default=DEFAULT_SERVER, help=f"the server's base URL (default {DEFAULT_SERVER})")
    stream.add_argument("--title", help="the video's title (default: the file's name)")
    stream.add_argument("--fast", action="store_true", help="upload as fast as possible, not in real time")
    stream.add_argument("--shuffle", action="store_true", help=f"reorder uploads within {phone.SHUFFLE_WINDOW} like the app")
    stream.add_argument(
        "--duplicate", type=_probability, default=0.0, metavar="P", help="send a segment twice with probability P"
    )
    stream.add_argument("--seed", type=int, help="seed of --shuffle and --duplicate (repeatable runs)")
    stream.add_argument("--timeout", type=_positive, default=phone.TIMEOUT, help="seconds per HTTP call (default 20)")
    stream.add_argument("--retries", type=_retries, default=phone.RETRIES, metavar="N", help="retries per call, 0-20 (default 5)")
    stream.add_argument("--cut-timeout", type=_positive, default=600.0, help="seconds ffmpeg may take to cut (default 600)")
    stream.add_argument("--json", action="store_true", help="JSON instead of the final line")


def run(args: argparse.Namespace, config: Config) -> str | Outcome:
    """Carry out one parsed command; return what to print on stdout (and an exit status, if not 0)."""
    group = args.group
    if group == "media":
        return media_migrate(config, args, sys.stderr)
    if group == "stream":
        return stream_command(args, sys.stderr)
    if group == "webhook":
        return webhook_command(config, args)
    if group == "key":
        return key_command(config, args)
    if group == "db":
        db_upgrade(config)
        return f"database at head: {config.DATABASE_URL.split('@')[-1]}"
    if group == "admin":
        return admin_command(config, args.action, args.name)
    if group == "worker":
        return worker_command(config, args.action, getattr(args, "name", None), getattr(args, "json", False))
    commands: dict[str, Callable[[Services, Session], str]] = {
        "videos": lambda s, db: videos_command(s, db, args.limit, args.filter, args.json),
        "segments": lambda s, db: segments_command(s, db, args.video, args.json),
        "workers": lambda s, db: workers_command(s, db, args.json),
        "retry": lambda s, db: retry_command(s, db, args.video, args.json),
        "end": lambda s, db: end_command(s, db, args.video, args.json),
        "purge": lambda s, db: purge_command(s, db, args.yes, args.json),
        "video": lambda s, db: link_command(s, db, args) if args.action == "link" else video_command(s, db, args),
    }
    return with_services(config, commands[group])


def one_line(exc: BaseException) -> str:
    """An error as one line an operator reads (no traceback, no ffmpeg stderr dump)."""
    if isinstance(exc, FFmpegError):
        last = exc.stderr_tail.strip().splitlines()[-1:]
        text = f"ffmpeg failed: {last[0] if last else f'exit {exc.returncode}'}"
    elif isinstance(exc, ServiceError):
        text = exc.message
    elif isinstance(exc, SQLAlchemyError):
        orig = getattr(exc, "orig", None)  # the driver's error, on the DBAPIError kind
        text = f"database: {type(exc).__name__}: {str(orig if orig else exc)}"
    else:
        text = str(exc) or type(exc).__name__
    return short(text, 300) or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        answer = run(args, Config.from_env())
    except Refused as exc:
        print(f"error: {short(str(exc), 300)}", file=sys.stderr)
        return 2
    except (ServiceError, phone.PhoneError, SQLAlchemyError, OSError, ValueError) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    if isinstance(answer, Outcome):
        print(answer.text)
        return answer.status
    print(answer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
