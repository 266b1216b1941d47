"""Admin login: HTTP Basic against the admins table (passwords stored as scrypt hashes)."""

from __future__ import annotations

from flask import request
from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from server.errors import Unauthorized
from server.models import Admin

_DUMMY_HASH = generate_password_hash("not-a-password")


def require_admin(session) -> Admin:  # type: ignore[no-untyped-def]
    """Return the logged-in admin or raise Unauthorized."""
    auth = request.authorization
    if auth is None or auth.type != "basic" or not auth.username:
        raise Unauthorized("admin login required (HTTP Basic)")
    admin = session.scalars(select(Admin).where(Admin.name == auth.username)).one_or_none()
    # Check a hash either way so timing does not reveal which names exist.
    if not check_password_hash(admin.password_hash if admin else _DUMMY_HASH, auth.password or ""):
        raise Unauthorized("wrong admin name or password")
    assert admin is not None
    return admin
