"""Operator commands: `python -m server.cli db upgrade`, `python -m server.cli admin create NAME`."""

from __future__ import annotations

import argparse
import getpass
import secrets
import sys

from alembic import command
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from werkzeug.security import generate_password_hash

from server.config import Config
from server.db import alembic_config, make_engine, make_sessionmaker
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
    args = parser.parse_args(argv)
    config = Config.from_env()
    if args.group == "db":
        db_upgrade(config)
        print(f"database at head: {config.DATABASE_URL.split('@')[-1]}")
    else:
        admin_create(config, args.name, _read_password())
        print(f"admin {args.name!r} saved")
    return 0


if __name__ == "__main__":
    sys.exit(main())
