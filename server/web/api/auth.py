"""Admin login: `require_admin(session)` is the one check every admin route calls, first.

Two ways in:

* The dashboard: `POST /api/admin/login` trades a name and password for a random token in the cookie
  `team03_session` (HttpOnly, SameSite=Strict, Secure over HTTPS). The session is the server's: a row in
  `admin_sessions` keyed by the token's SHA-256 (a copy of the table logs nobody in), with a CSRF token
  that every mutation made with the cookie must echo in `X-CSRF-Token` (403 otherwise), ending after
  ADMIN_SESSION_SECONDS unused. Use slides the end forward, written at most once a minute (so an idle
  session may end up to a minute early) rather than on every request.
* Scripts: HTTP Basic on each request, no cookie, no CSRF token. A browser never sends Basic by itself:
  no 401 carries `WWW-Authenticate` (server/web/api/errors.py), so none prompts for it and caches it.

Either way a password is checked by `check_password`: scrypt (werkzeug), against a dummy hash when the
name is unknown (the answer takes as long and says the same), and only after the failed-login throttle
(per address and per admin, server/web/api/login_throttle.py) gave the attempt a slot, so Basic is no way around it.
Expired sessions are deleted at login, a bounded batch at a time (`open_session`), and nowhere else;
a new password, `admin logout-all` and `admin delete` end an admin's sessions (server/domain/admins.py).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import request
from sqlalchemy import delete, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from server.core.errors import Forbidden, Unauthorized
from server.domain import admins, eventlog
from server.infra.models import Admin, AdminSession
from server.ops.purge import expired_sessions
from server.web.api.context import services
from server.web.api.limits import client_address
from server.web.api.login_throttle import login_throttle, subject

COOKIE = "team03_session"
CSRF_HEADER = "X-CSRF-Token"
MUTATIONS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
TOUCH_EVERY = timedelta(seconds=60)
PRUNE_BATCH = 100
WRONG_PASSWORD = "wrong username or password"

_DUMMY_HASH = generate_password_hash("not-a-password")


@dataclass(frozen=True)
class Login:
    """Who is calling, and through which session (None: HTTP Basic)."""

    admin: Admin
    session: AdminSession | None


def require_admin(session: Session) -> Admin:
    """Return the logged-in admin or raise Unauthorized (401) or Forbidden (403: a cookie mutation without CSRF)."""
    return authenticate(session).admin


def authenticate(session: Session) -> Login:
    """Return the caller's login: HTTP Basic if an Authorization header is sent, else the session cookie.

    Call it before anything else in the request: a used session's last_seen_at is committed here.
    """
    if "Authorization" in request.headers:
        return Login(_basic(session), None)
    token = request.cookies.get(COOKIE)
    if not token:
        raise Unauthorized("admin login required: log in, or send HTTP Basic credentials")
    return _from_cookie(session, token)


def check_password(session: Session, name: str, password: str) -> Admin:
    """Return the admin `name` if `password` is theirs; raise TooManyRequests or Unauthorized, counting a failure."""
    # The row first: the throttle counts the admin the database finds, however its collation folded the name.
    admin = session.scalars(select(Admin).where(Admin.name == name)).one_or_none()
    throttle = login_throttle()
    slots = throttle.reserve(client_address(), subject(admin.id if admin else None, name), services().clock.time())
    # Check a hash either way so timing does not reveal which names exist.
    if not check_password_hash(admin.password_hash if admin else _DUMMY_HASH, password) or admin is None:
        raise Unauthorized(WRONG_PASSWORD)  # its slots stay taken: they are its failures
    throttle.release(slots)
    return admin


def open_session(session: Session, admin: Admin) -> tuple[str, AdminSession]:
    """Start a session for `admin`; return the cookie's token (never stored) and the committed row."""
    now = services().clock.now()
    if not admins.unchanged(session, admin):  # its password changed (or it was deleted) since it was checked
        session.rollback()
        raise Unauthorized(WRONG_PASSWORD)
    _prune(session, now)
    token = secrets.token_urlsafe(32)
    row = AdminSession(
        id=_digest(token),
        admin_id=admin.id,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        last_seen_at=now,
        expires_at=now + _idle(),
        address=client_address()[:64],
    )
    session.add(row)
    # The audit trail (docs/admin-api.md "Audit"): a dashboard login, committed with its session or not at all.
    eventlog.record(session, "admin.login", at=now, by=admin.name, address=row.address)
    session.commit()
    return token, row


def end_session(session: Session, row: AdminSession) -> None:
    """Delete the session `row`: its cookie logs nobody in from now on."""
    session.execute(delete(AdminSession).where(AdminSession.id == row.id))
    session.commit()


def _basic(session: Session) -> Admin:
    auth = request.authorization
    if auth is None or auth.type != "basic" or not auth.username:
        raise Unauthorized("admin login required: malformed HTTP Basic credentials")
    return check_password(session, auth.username, auth.password or "")


def _from_cookie(session: Session, token: str) -> Login:
    now = services().clock.now()
    row = session.get(AdminSession, _digest(token))
    if row is None or row.expires_at <= now:
        raise Unauthorized("not logged in, or the session expired: log in again")
    if request.method in MUTATIONS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode("utf-8", "surrogatepass"), row.csrf_token.encode()):
            raise Forbidden(f"a change made with the session cookie needs the {CSRF_HEADER} header from login")
    admin = session.get(Admin, row.admin_id)
    if admin is None:  # deleted since (SQLite without the cascade)
        raise Unauthorized("not logged in, or the session expired: log in again")
    if now - row.last_seen_at >= TOUCH_EVERY:
        row.last_seen_at, row.expires_at = now, now + _idle()
        session.commit()
    return Login(admin, row)


def _prune(session: Session, now: datetime) -> None:
    """Delete up to PRUNE_BATCH expired sessions (each login adds one row, so the table cannot outgrow this)."""
    stale = session.scalars(select(AdminSession.id).where(expired_sessions(now)).limit(PRUNE_BATCH)).all()
    if stale:
        session.execute(delete(AdminSession).where(AdminSession.id.in_(stale)))


def _idle() -> timedelta:
    return timedelta(seconds=services().config.ADMIN_SESSION_SECONDS)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
