"""`python -m server.cli video visibility|pin|unpin ID` and `retry ID` on real MariaDB: they change what the admin
API changes, and the audit trail says "cli" did it (docs/admin-api.md "Audit")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from server import cli
from server.config import Config
from server.core.states import SegmentState, Visibility
from server.domain import ingest
from server.infra.models import Event, Segment, Video
from server.infra.services import Services
from tests.api.test_admin_api import add_segment


@pytest.fixture
def services(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Services:
    """The environment an operator's shell gives the CLI (no gearmand: a retried segment waits for a reaper)."""
    env = {"DATABASE_URL": database_url, "MEDIA_ROOT": str(tmp_path / "media"), "GEARMAN_SERVERS": "", "MEMCACHED_SERVERS": ""}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    services = Services.build(Config.from_env())
    yield services  # type: ignore[misc]
    services.close()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def audit(services: Services, video_id: int) -> list[tuple[str, dict]]:
    with services.sessions() as db:
        rows = db.scalars(select(Event).where(Event.video_id == video_id, Event.kind != "video.created").order_by(Event.id))
        return [(e.kind, json.loads(e.data or "{}")) for e in rows]


def row(services: Services, video_id: int) -> tuple[Visibility, bool]:
    with services.sessions() as db:
        video = db.get(Video, video_id)
        assert video is not None
        return video.visibility, video.pinned


def test_visibility_pin_and_unpin_are_audited_as_the_cli(services: Services, capsys: pytest.CaptureFixture[str]) -> None:
    with services.sessions() as db:
        vid = ingest.create_video(services, db, "t").id
    assert run(capsys, "video", "visibility", str(vid), "private") == (0, f"video {vid}: private, not pinned\n", "")
    assert run(capsys, "video", "pin", str(vid))[:2] == (0, f"video {vid}: private, pinned\n")
    assert row(services, vid) == (Visibility.PRIVATE, True)
    status, out, _ = run(capsys, "video", "unpin", str(vid), "--json")
    assert status == 0 and (json.loads(out)["pinned"], json.loads(out)["visibility"]) == (False, "private")
    assert audit(services, vid) == [
        ("video.visibility", {"visibility": "private", "by": "cli"}),
        ("video.pinned", {"pinned": True, "by": "cli"}),
        ("video.pinned", {"pinned": False, "by": "cli"}),
    ]


def test_bad_arguments_and_unknown_videos_change_nothing(services: Services, capsys: pytest.CaptureFixture[str]) -> None:
    with services.sessions() as db:
        vid = ingest.create_video(services, db, "t").id
    with pytest.raises(SystemExit) as usage:
        cli.main(["video", "visibility", str(vid), "secret"])
    assert usage.value.code == 2 and "invalid choice: 'secret'" in capsys.readouterr().err
    status, out, err = run(capsys, "video", "pin", str(vid + 1))
    assert (status, out, err) == (1, "", f"error: video {vid + 1} does not exist\n")
    assert row(services, vid) == (Visibility.PUBLIC, False) and audit(services, vid) == []


def test_retry_says_the_cli_retried_which_segments(services: Services, capsys: pytest.CaptureFixture[str]) -> None:
    with services.sessions() as db:
        vid = ingest.create_video(services, db, "t").id
    add_segment(services, vid, 0, at=3, state=SegmentState.FAILED)
    add_segment(services, vid, 1, at=6)
    assert run(capsys, "retry", str(vid))[:2] == (0, f"video {vid}: 1 failed segment(s) retried: [0]\n")
    assert run(capsys, "retry", str(vid))[:2] == (0, f"video {vid}: 0 failed segment(s) retried\n")
    with services.sessions() as db:
        assert db.scalars(select(Segment.status).where(Segment.video_id == vid, Segment.segment_id == 0)).one() is SegmentState.RECEIVED
    assert [(k, d) for k, d in audit(services, vid) if k == "video.retried"] == [("video.retried", {"segments": [0], "by": "cli"})]
