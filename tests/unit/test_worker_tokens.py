"""Worker tokens and the registry (server/domain/registry.py) on a migrated SQLite file: minted once, stored hashed, revocable."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from server import cli
from server.config import Config
from server.core.errors import InvalidInput, NotFound
from server.domain import registry
from server.infra.db import make_engine, make_sessionmaker
from server.infra.models import Event, Worker

NOW = datetime(2030, 1, 1, 12, 0, 0)


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    cli.db_upgrade(Config.from_env(DATABASE_URL=url))
    engine = make_engine(url)
    with make_sessionmaker(engine)() as db:
        yield db
    engine.dispose()


def kinds(session: Session) -> list[str]:
    return [e.kind for e in session.scalars(select(Event).order_by(Event.id))]


def test_a_token_is_stored_only_as_its_sha256_and_authenticates_its_worker(session: Session) -> None:
    token = registry.mint_token(session, "w1", now=NOW)
    row = session.scalars(select(Worker)).one()
    assert row.token_hash == registry.token_hash(token) != token
    assert token not in str(row.__dict__)
    assert registry.authenticate(session, token).id == row.id  # type: ignore[union-attr]
    assert kinds(session) == ["worker.token_minted"]


@pytest.mark.parametrize("guess", [None, "", "x" * 43, "a b", "é" * 43, "x" * 129, "%00" * 20])
def test_anything_but_a_minted_token_is_refused(session: Session, guess: str | None) -> None:
    registry.mint_token(session, "w1", now=NOW)
    assert registry.authenticate(session, guess) is None


def test_a_new_token_replaces_the_old_and_revoke_refuses_it(session: Session) -> None:
    old = registry.mint_token(session, "w1", now=NOW)
    new = registry.mint_token(session, "w1", now=NOW)
    assert registry.authenticate(session, old) is None
    assert registry.authenticate(session, new) is not None
    registry.revoke(session, "w1", now=NOW)
    assert registry.authenticate(session, new) is None
    assert session.scalars(select(Worker)).one().revoked_at == NOW  # the row and its history stay
    assert kinds(session) == ["worker.token_minted", "worker.token_minted", "worker.revoked"]


def test_revoking_an_unknown_worker_or_minting_a_bad_name_is_refused(session: Session) -> None:
    with pytest.raises(NotFound):
        registry.revoke(session, "nobody", now=NOW)
    for bad in ("", "-x", "a/b", "x" * 65, "a b"):
        with pytest.raises(InvalidInput):
            registry.mint_token(session, bad, now=NOW)
    assert kinds(session) == []


def test_register_heartbeat_stopped(session: Session) -> None:
    registration = registry.Registration("host1", "abc", {"ffmpeg": "5.1"}, 2, ("team03.transcode_segment",))
    worker = registry.register(session, "local-1", registration, now=NOW)
    later = datetime(2030, 1, 1, 12, 0, 10)
    registry.heartbeat(session, worker.id, now=later)
    assert session.get(Worker, worker.id).last_heartbeat_at == later  # type: ignore[union-attr]
    registry.stopped(session, worker.id, now=later)
    rows = registry.listing(session)
    assert [(r["name"], r["host"], r["ffmpeg"], r["running"], r["revoked"]) for r in rows] == [
        ("local-1", "host1", "5.1", 0, False)
    ]
    assert rows[0]["stopped_at"] == later.isoformat()
    assert kinds(session) == ["worker.started", "worker.stopped"]  # a heartbeat is no event


@pytest.mark.parametrize(
    ("field", "value"),
    [("host", ""), ("version", 5), ("capabilities", []), ("concurrency", 0), ("concurrency", True), ("functions", ["Bad Name"])],
)
def test_a_registration_names_its_bad_field(field: str, value: object) -> None:
    body = {"host": "h", "version": "v", "capabilities": {}, "concurrency": 1, "functions": ["team03.transcode_segment"]}
    with pytest.raises(InvalidInput) as refused:
        registry.Registration.from_json({**body, field: value})
    assert refused.value.field == field


def test_worker_cli_mints_lists_and_revokes(
    session: Session, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = str(session.get_bind().url)
    config = Config.from_env(DATABASE_URL=url)
    token = cli.worker_command(config, "token", "w9", False)
    assert "WORKER_TOKEN" in capsys.readouterr().err  # the hint; the token alone is returned for stdout
    assert registry.authenticate(session, token) is not None
    table = cli.worker_command(config, "list", None, False).splitlines()
    assert table[0].split()[:2] == ["name", "host"] and table[1].split()[0] == "w9"
    assert '"name": "w9"' in cli.worker_command(config, "list", None, True)
    monkeypatch.setenv("DATABASE_URL", url)
    assert cli.main(["worker", "revoke", "w9"]) == 0
    assert registry.authenticate(session, token) is None
    assert cli.main(["worker", "revoke", "nobody"]) == 1
    assert capsys.readouterr().err.strip() == "error: no worker named 'nobody'"
