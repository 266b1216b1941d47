"""Operator commands: `db upgrade`, `admin create NAME`, `worker token|revoke NAME`, `worker list [--json]`,
`webhook add URL --events ...|list|remove ID|deliveries ID`.

Run as `python -m server.cli ...` with the deployment's DATABASE_URL.
"""

from __future__ import annotations

import argparse
import getpass
import json
import secrets
import sys
from collections.abc import Callable
from typing import Any

from alembic import command
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from werkzeug.security import generate_password_hash

from server import webhooks, workers
from server.clock import SystemClock
from server.config import Config
from server.db import alembic_config, make_engine, make_sessionmaker
from server.errors import ServiceError
from server.models import Admin


def db_upgrade(config: Config) -> None:
    """Apply every pending migration to DATABASE_URL."""
    if config.DATABASE_URL.startswith("sqlite:///"):
        from pathlib import Path

        Path(config.DATABASE_URL.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(config.DATABASE_URL), "head")


def admin_create(config: Config, name: str, password: str) -> None:
    """Create the admin `name`, or set a new password if it exists."""
    if not password:
        raise SystemExit("refusing an empty password")
    engine = make_engine(config.DATABASE_URL)
    with make_sessionmaker(engine)() as session:
        admin = session.scalars(select(Admin).where(Admin.name == name)).one_or_none() or Admin(name=name)
        admin.password_hash = generate_password_hash(password)
        session.add(admin)
        session.commit()
    engine.dispose()


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


def with_session(config: Config, work: Callable[[Any], Any]) -> Any:
    """Run `work(session)` on DATABASE_URL and release the connection."""
    engine = make_engine(config.DATABASE_URL)
    try:
        with make_sessionmaker(engine)() as session:
            return work(session)
    finally:
        engine.dispose()


LIST_COLUMNS = ("name", "host", "version", "ffmpeg", "concurrency", "functions", "last_heartbeat_at", "stopped_at", "revoked")
LIST_COLUMNS += ("running", "attempts_ok", "attempts_failed")


def format_table(rows: list[dict[str, Any]]) -> str:
    """Return `worker list` as aligned columns (one header line, one line per worker)."""
    cells = [list(LIST_COLUMNS)] + [["-" if row[c] is None else str(row[c]) for c in LIST_COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(LIST_COLUMNS))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in cells)


def worker_command(config: Config, action: str, name: str | None, as_json: bool) -> str:
    """Carry out `worker token|revoke|list` and return what to print."""
    if action == "token":
        token = with_session(config, lambda s: workers.mint_token(s, name, now=SystemClock().now()))
        return f"{token}\n# worker {name!r}: set WORKER_TOKEN to the line above; it is shown only once"
    if action == "revoke":
        with_session(config, lambda s: workers.revoke(s, name, now=SystemClock().now()))
        return f"worker {name!r}: token revoked"
    rows = with_session(config, workers.listing)
    return json.dumps(rows, indent=2) if as_json else format_table(rows)


# --- webhook: add, list, remove, deliveries (server/webhooks.py) ---------------------------------------


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
        hook, secret = with_session(config, lambda s: webhooks.create(s, args.url, args.events, now=now))
        return f"webhook {hook['id']}: {hook['url']} ({','.join(hook['events'])})\nsecret: {secret}\n# shown only once"
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


def _read_password() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("password: ")
    return sys.stdin.readline().rstrip("\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server.cli")
    sub = parser.add_subparsers(dest="group", required=True)
    db = sub.add_parser("db").add_subparsers(dest="action", required=True)
    db.add_parser("upgrade", help="apply pending migrations to DATABASE_URL")
    admin = sub.add_parser("admin").add_subparsers(dest="action", required=True)
    create = admin.add_parser("create", help="create an admin; the password is read from stdin")
    create.add_argument("name")
    worker = sub.add_parser("worker").add_subparsers(dest="action", required=True)
    worker.add_parser("token", help="mint a worker's token (printed once; the old one stops working)").add_argument("name")
    worker.add_parser("revoke", help="refuse a worker's token from now on").add_argument("name")
    listing = worker.add_parser("list", help="the registered workers")
    listing.add_argument("--json", action="store_true", help="JSON instead of a table")
    add_webhook_parser(sub)
    args = parser.parse_args(argv)
    config = Config.from_env()
    if args.group == "db":
        db_upgrade(config)
        print(f"database at head: {config.DATABASE_URL.split('@')[-1]}")
    elif args.group == "admin":
        admin_create(config, args.name, _read_password())
        print(f"admin {args.name!r} saved")
    elif args.group == "webhook":
        try:
            print(webhook_command(config, args))
        except ServiceError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 1
    else:
        try:
            print(worker_command(config, args.action, getattr(args, "name", None), getattr(args, "json", False)))
        except ServiceError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
