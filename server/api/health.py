"""Health: /ping for load balancers (public), /status.json for operators (admin login)."""

from __future__ import annotations

from flask_restful import Resource

from server import health
from server.api.auth import require_admin
from server.api.context import services, session
from server.ingest import utcnow

_NO_STORE = {"Cache-Control": "no-store"}


class Ping(Resource):
    def get(self):  # type: ignore[no-untyped-def]
        health.ping(services())  # a database that does not answer becomes a 503 in the error mapper
        return {"status": "ok"}, 200, _NO_STORE


class Status(Resource):
    def get(self):  # type: ignore[no-untyped-def]
        require_admin(session())
        return health.status(services(), utcnow()), 200, _NO_STORE
