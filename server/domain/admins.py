"""Admin accounts (docs/api.md "Admin login"): the one door for setting a password and ending sessions.

A dashboard session is a row in `admin_sessions` (opened at login by server/web/api/auth.py). Setting a
password ends every session of that admin in the same transaction, so a cookie taken before the change
logs nobody in after it; `end_sessions` does that alone; `delete` removes the admin and its sessions
(deleted here, not left to the foreign key's cascade, which SQLite does not enforce).

Each locks the admin's row first (FOR UPDATE). A login racing a change cannot leave a session behind:
it opens its session only after `unchanged` read the row under a share lock and found the hash it
checked, so either the change waits for that session to commit and then ends it, or the login sees
the new hash and opens none. Names are found as the database compares them (MariaDB's collation folds
case and accents), as at login; answers name the row found.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, delete, select
from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

from server.core.errors import InvalidInput, NotFound
from server.infra.models import Admin, AdminSession


def set_password(session: Session, name: str, password: str) -> tuple[str, int]:
    """Create the admin `name`, or give it a new password and end its sessions; return its name and how many ended."""
    if not password:
        raise InvalidInput("password", "must not be empty")
    admin = _locked(session, name)
    if admin is None:
        admin = Admin(name=name, password_hash="")
        session.add(admin)
        ended = 0
    else:
        ended = _end_sessions(session, admin)
    admin.password_hash = generate_password_hash(password)
    session.commit()
    return admin.name, ended


def end_sessions(session: Session, name: str) -> tuple[str, int]:
    """End every session of the admin `name` (its password stays); return its name and how many ended."""
    admin = _found(session, name)
    ended = _end_sessions(session, admin)
    session.commit()
    return admin.name, ended


def delete_admin(session: Session, name: str) -> tuple[str, int]:
    """Delete the admin `name` and its sessions; return its name and how many sessions ended."""
    admin = _found(session, name)
    ended = _end_sessions(session, admin)
    session.delete(admin)
    session.commit()
    return admin.name, ended


def unchanged(session: Session, admin: Admin) -> bool:
    """Whether `admin` still exists with the password hash it was loaded with, holding a share lock on its row."""
    current = session.scalar(select(Admin.password_hash).where(Admin.id == admin.id).with_for_update(read=True))
    return current is not None and current == admin.password_hash


def _locked(session: Session, name: str) -> Admin | None:
    return session.scalars(select(Admin).where(Admin.name == name).with_for_update()).one_or_none()


def _found(session: Session, name: str) -> Admin:
    admin = _locked(session, name)
    if admin is None:
        raise NotFound(f"no admin named {name!r}")
    return admin


def _end_sessions(session: Session, admin: Admin) -> int:
    # A DELETE's result is a CursorResult (Session.execute is typed for any statement).
    return cast(CursorResult[Any], session.execute(delete(AdminSession).where(AdminSession.admin_id == admin.id))).rowcount
