"""The web app factories: config, services, the route table, the body deadline; no other side effect."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from flask import Flask

from server.config import Config, configure_logging
from server.infra.services import Services


def create_app(config: Config | None = None, *, services: Services | None = None, local_runner: bool = False) -> Flask:
    """Build the web app; with `local_runner` and no GEARMAN_SERVERS it also runs the jobs on local threads.

    Only a caller that knows it is the one process asks for the local runner (dev_run.py, the test and
    bench harnesses): gunicorn builds one app per worker process, and each would start its own runner
    and reaper over the same database and media tree.
    """
    config = config or Config.from_env()
    configure_logging(config.LOG_LEVEL)
    services = services or Services.build(config)
    if services.queue is None:
        _attach_runner(services, local_runner)
    from server.web.api import ROUTES

    return _flask_app(config, services, ROUTES)


def create_events_app(config: Config | None = None) -> Flask:
    """Build the event-stream server: only the dashboard's GET /api/admin/events (and /ping), same login.

    Production runs it apart from the web app (deploy/gunicorn-events.conf.py; nginx routes the streams to
    it), so open dashboard tabs hold its threads, never the ones phones and players need. It runs no jobs.
    """
    config = config or Config.from_env()
    configure_logging(config.LOG_LEVEL)
    services = Services.build(config)
    if services.queue is None:
        from server.infra.queue import NoQueue

        services.queue = NoQueue()
    from server.web.api import EVENT_ROUTES

    return _flask_app(config, services, EVENT_ROUTES)


def _flask_app(config: Config, services: Services, routes: Sequence[tuple[type, str]]) -> Flask:
    from server.web.api import init_app
    from server.web.api.uploads import BodyDeadline, Request
    from server.web.doors import DoorPaths

    app = Flask(__name__, static_folder=None)
    app.request_class = Request
    app.config.update(
        SECRET_KEY=config.SECRET_KEY,
        # Room for the multipart envelope around the largest allowed segment.
        MAX_CONTENT_LENGTH=config.MAX_SEGMENT_BYTES + 1024 * 1024,
        JSON_SORT_KEYS=False,
    )
    app.extensions["team03"] = services
    init_app(app, routes)
    app.wsgi_app = DoorPaths(app.wsgi_app)  # type: ignore[method-assign]  # werkzeug's documented way to add a middleware
    # The body limit plus the multipart envelope (deploy/nginx/team03.conf's client_max_body_size).
    drain_limit = config.MAX_SEGMENT_BYTES + 1024 * 1024
    app.wsgi_app = BodyDeadline(app.wsgi_app, config.BODY_READ_TIMEOUT, drain_limit)  # type: ignore[method-assign]  # werkzeug's documented way to add a middleware
    return app


def _attach_runner(services: Services, local_runner: bool) -> None:
    """Run the jobs on this process's threads if asked; otherwise uploads wait for a segment_processor."""
    if local_runner:
        from server.worker.local import start_local_runner

        start_local_runner(services)
        return
    from server.infra.queue import NoQueue

    services.queue = NoQueue()
    logging.getLogger(__name__).error(
        "GEARMAN_SERVERS is not set and this web process runs no local job runner (gunicorn never does): uploads are "
        "stored but wait until a segment_processor is started (set GEARMAN_SERVERS for it and for the web processes)"
    )
