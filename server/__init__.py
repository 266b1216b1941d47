"""team03: live streaming and video-on-demand from phones.

The folders are the layers (docs/architecture.md). Importing this package loads no framework: the app
factory below imports the web layer only when called, so `server.core` stays pure and a remote worker
never loads Flask.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from server.config import Config
    from server.infra.services import Services


def create_app(config: Config | None = None, *, services: Services | None = None, local_runner: bool = False) -> Flask:
    """Build the web app (server/web/app.py); `'server:create_app()'` is what gunicorn and team03.wsgi name."""
    from server.web.app import create_app as build

    return build(config, services=services, local_runner=local_runner)


def create_events_app(config: Config | None = None) -> Flask:
    """Build the event-stream server (server/web/app.py); `'server:create_events_app()'` is what its gunicorn names."""
    from server.web.app import create_events_app as build

    return build(config)
