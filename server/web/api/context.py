"""Per-request access to the process's services and a request-scoped Session."""

from __future__ import annotations

import contextlib
import logging

from flask import current_app, g
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from server.infra.services import Services
from server.web.eventfeed import Feed

FEED = "team03.feed"
log = logging.getLogger(__name__)


def services() -> Services:
    found: Services = current_app.extensions["team03"]  # set by server/web/app.py
    return found


def feed() -> Feed:
    """The process's one reader of the event log, fanned out to its open event streams (made by init_app)."""
    found: Feed = current_app.extensions[FEED]
    return found


def session() -> Session:
    """Return this request's Session, opened on first use and closed at teardown."""
    if "db" not in g:
        g.db = services().sessions()
    db: Session = g.db
    return db


def close_session(_exc: BaseException | None = None) -> None:
    """Close this request's Session at teardown. A database that went away meanwhile (its ROLLBACK unanswered)
    changes nothing the route answered: the connection is dropped from the pool, and the answer stands."""
    db = g.pop("db", None)
    if db is None:
        return
    try:
        db.close()
    except SQLAlchemyError as exc:
        log.warning("closing a request's database session failed (%s); its connection is discarded", exc)
        with contextlib.suppress(SQLAlchemyError):
            db.invalidate()
