"""The embedded job runner (dev_run.py) is a registered worker: the dashboard shows it keeping up."""

from __future__ import annotations

from sqlalchemy import select

from server import create_app
from server.infra.models import Worker
from tests.harness.services import wait_for


def test_the_local_runner_registers_and_keeps_its_worker_row_alive(make_config):  # type: ignore[no-untyped-def]
    app = create_app(make_config(LEASE_SECONDS=0.6, WORKER_NAME="laptop-runner"), local_runner=True)
    services = app.extensions["team03"]
    try:
        with services.sessions() as session:
            worker = session.scalars(select(Worker)).one()
            started = worker.last_heartbeat_at
        assert (worker.name, worker.functions) == ("laptop-runner", "team03.transcode_segment,team03.package_video")
        assert worker.stopped_at is None and worker.started_at == started

        def beat() -> bool:
            with services.sessions() as session:
                return session.scalars(select(Worker.last_heartbeat_at)).one() > started

        wait_for(beat, 10, "a heartbeat of the local runner's worker row")  # every LEASE_SECONDS / 3
    finally:
        services.close()
