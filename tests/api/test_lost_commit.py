"""An upload whose COMMIT took effect but whose answer from the database was lost (MariaDB killed mid-COMMIT).

The phone sees a 503 and sends the same bytes again; the server finds the row and answers 2xx as for
any lost response. The file must still be there, since a 2xx means the bytes are stored: the fault
suite (tests/faults) found a segment answered 2xx whose original the failed request had deleted.
"""

from __future__ import annotations

import pymysql

from tests.harness.stack import upload
from tests.harness.tree import tree


def test_a_retried_upload_whose_first_commit_took_effect_keeps_its_file(app, client, video_id, segment_files, monkeypatch):  # type: ignore[no-untyped-def]
    data = segment_files[0].read_bytes()
    dialect = app.extensions["team03"].engine.dialect
    commit = dialect.do_commit
    lost: list[int] = []

    def commit_then_lose_the_answer(dbapi_connection) -> None:  # type: ignore[no-untyped-def]
        commit(dbapi_connection)
        if not lost:
            lost.append(1)
            raise pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query")

    monkeypatch.setattr(dialect, "do_commit", commit_then_lose_the_answer)
    first = upload(client, video_id, 0, data)
    assert lost == [1] and first.status_code == 503, first.json
    again = upload(client, video_id, 0, data)  # the phone's retry: the row is there, with the same bytes
    assert again.status_code in (200, 201), again.json
    assert tree(app.extensions["team03"]).original(video_id, 0, "mp4").read_bytes() == data


def test_a_database_lost_after_the_answer_was_made_does_not_turn_it_into_a_500(app, client, video_id, monkeypatch):  # type: ignore[no-untyped-def]
    """MariaDB killed while a request's session is closed at teardown (its ROLLBACK unanswered): the answer the
    route made stands; the dead connection is the pool's to replace (the fault suite saw a 500 here)."""
    dialect = app.extensions["team03"].engine.dialect
    rollback = dialect.do_rollback
    lost: list[int] = []

    def lose_the_rollback(dbapi_connection) -> None:  # type: ignore[no-untyped-def]
        if not lost:
            lost.append(1)
            raise pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query")
        rollback(dbapi_connection)

    monkeypatch.setattr(dialect, "do_rollback", lose_the_rollback)
    answer = client.get(f"/video/{video_id}")
    assert lost == [1] and answer.status_code == 200, answer.json
    assert client.get(f"/video/{video_id}").status_code == 200  # and the next request has a connection
