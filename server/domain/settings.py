"""Values every process with the database shares (the `settings` table), made once by the first that needs one."""

from __future__ import annotations

import secrets

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.infra.models import Setting


def shared_secret(session: Session, name: str) -> str:
    """The random secret `name` (64 hex digits), made and committed by the first process that asks; theirs if they race."""
    row = session.get(Setting, name)
    if row is None:
        session.add(Setting(name=name, value=secrets.token_hex(32)))
        try:
            session.commit()
        except IntegrityError:  # another process made it first: theirs it is
            session.rollback()
        row = session.get(Setting, name, populate_existing=True)
        assert row is not None
    return row.value
