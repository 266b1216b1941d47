"""Health: /ping and /readyz for load balancers, /healthz for process supervisors (public); /status.json for operators (admin login)."""

from __future__ import annotations

from flask_restful import Resource

from server.ops import checks
from server.web.api.auth import require_admin
from server.web.api.context import services, session
from server.web.api.resource import Answer

_NO_STORE = {"Cache-Control": "no-store"}


class Ping(Resource):
    def get(self) -> Answer:
        checks.ping(services())  # a database that does not answer becomes a 503 in the error mapper
        return {"status": "ok"}, 200, _NO_STORE


class Status(Resource):
    def get(self) -> Answer:
        require_admin(session())
        return checks.status(services(), services().clock.now()), 200, _NO_STORE


class Healthz(Resource):
    def get(self) -> Answer:
        # The process answers: nothing else is asked, so a dependency that is down never gets this process restarted.
        return {"status": "ok"}, 200, _NO_STORE


class Readyz(Resource):
    def get(self) -> Answer:
        report = checks.readiness(services())
        if report["ok"]:
            return {"status": "ready", **report}, 200, _NO_STORE
        down = ", ".join(report["down"])
        body = {"status": "not_ready", "code": "not_ready", "message": f"down: {down}", **report}
        return body, 503, {**_NO_STORE, "Retry-After": "5"}
