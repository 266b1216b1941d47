"""One list of event kinds (server/domain/eventlog.py KINDS): the server writes no other, the API document
names exactly these, and the dashboard listens for each (static/src/events.ts; its own test and tsc
check that every kind has a handler)."""

from __future__ import annotations

import ast
import re
from datetime import datetime
from pathlib import Path

import pytest

from server.domain import eventlog
from server.infra.models import AttemptOutcome, SegmentState
from server.ops import webhooks
from server.web.api.openapi import document

SERVER = Path(__file__).resolve().parents[2] / "server"
DOTTED = re.compile(r"^(video|segment|attempt|worker|stream)\.[a-z_]+$")
# The calls that write an event, and which argument is its kind.
WRITERS = {"event": 0, "record": 1}


def kind_arguments(tree: ast.AST) -> list[ast.expr]:
    """The kind expression of every event written in a module (`change.event(kind)`, `record(session, kind)`)."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
        if name not in WRITERS:
            continue
        position = WRITERS[name]
        keyword = next((k.value for k in node.keywords if k.arg == "kind"), None)
        found.append(keyword if keyword is not None else node.args[position])
    return found


def modules() -> dict[Path, ast.AST]:
    return {path: ast.parse(path.read_text(encoding="utf-8")) for path in sorted(SERVER.rglob("*.py"))}


def test_every_kind_the_server_writes_is_in_the_list():
    written = set()
    for path, tree in modules().items():
        if path.name == "cli.py":  # phone.record is the simulator's recorder, not the event log
            continue
        for arg in kind_arguments(tree):
            where = f"{path.relative_to(SERVER.parent)}:{arg.lineno}"
            if isinstance(arg, ast.Constant):
                assert arg.value in eventlog.KINDS, f"{where} writes {arg.value!r}, which eventlog.KINDS lacks"
                written.add(arg.value)
            elif isinstance(arg, ast.Call) and getattr(arg.func, "attr", getattr(arg.func, "id", "")).endswith("_kind"):
                pass  # eventlog.segment_kind / attempt_kind: checked against their enums below
            elif isinstance(arg, ast.Name) and path.name in ("eventlog.py", "changes.py"):
                pass  # the writers themselves pass their `kind` parameter on
            else:
                pytest.fail(f"{where} writes a kind built on the spot: use a literal or eventlog.segment_kind/attempt_kind")
    assert written >= {"video.stalled", "worker.token_minted", "worker.revoked", "video.created", "attempt.progress"}


def test_every_dotted_name_in_the_server_is_an_event_kind_or_a_webhook_event():
    for path, tree in modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and DOTTED.match(node.value):
                assert node.value in eventlog.KINDS or node.value in webhooks.EVENTS, (
                    f"{path.relative_to(SERVER.parent)}:{node.lineno}: {node.value!r} is neither"
                )


def test_every_segment_state_and_attempt_outcome_has_its_kind():
    for state in SegmentState:
        assert eventlog.segment_kind(state) in eventlog.KINDS
    for outcome in AttemptOutcome:
        assert eventlog.attempt_kind(outcome) in eventlog.KINDS
    assert len(set(eventlog.KINDS)) == len(eventlog.KINDS)


def test_the_api_document_names_exactly_these_kinds():
    schemas = document()["components"]["schemas"]
    assert schemas["EventKind"]["enum"] == list(eventlog.KINDS)
    assert schemas["AdminEvent"]["properties"]["kind"] == {"$ref": "#/components/schemas/EventKind"}


def test_a_kind_outside_the_list_is_refused_before_it_is_written():
    with pytest.raises(ValueError, match="video.staled"):
        eventlog.record(None, "video.staled", at=datetime(2026, 1, 1))  # type: ignore[arg-type]
