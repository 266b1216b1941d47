"""/metrics for Prometheus: METRICS_TOKEN as a Bearer token, or without one set, loopback callers only.

Behind nginx every request comes from 127.0.0.1, so a loopback peer is not enough: the outside client
it forwards is in X-Forwarded-For (and, with TRUSTED_PROXIES, already in remote_addr), and every
address there must be loopback too. A scrape from the machine itself sends no such header.
"""

from __future__ import annotations

import hmac
import ipaddress

from flask import Response, current_app, request
from flask_restful import Resource
from prometheus_client import CONTENT_TYPE_LATEST

from server.config import Config
from server.core.errors import MetricsForbidden
from server.ops import system_metrics
from server.web.api.context import services
from server.web.api.resource import Answer

EXTENSION = "team03.metrics"


class Metrics(Resource):
    def get(self) -> Answer:
        config = services().config
        check_scraper(config)
        system = current_app.extensions.get(EXTENSION)
        if system is None:
            system = current_app.extensions[EXTENSION] = system_metrics.SystemCollector(services())
        body = system_metrics.exposition(config, system)
        return Response(body, 200, {"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"})


def check_scraper(config: Config) -> None:
    """Raise MetricsForbidden (403) unless this request may read the metrics."""
    if config.METRICS_TOKEN:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), config.METRICS_TOKEN.encode()):
            raise MetricsForbidden("/metrics needs Authorization: Bearer <METRICS_TOKEN>")
        return
    forwarded = [part.strip() for value in request.headers.getlist("X-Forwarded-For") for part in value.split(",")]
    if not all(_loopback(address) for address in [request.remote_addr or "", *forwarded]):
        raise MetricsForbidden("/metrics answers loopback callers only (set METRICS_TOKEN to scrape from elsewhere)")


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False
