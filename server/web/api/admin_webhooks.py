"""The admin API's webhooks (docs/admin-api.md "Webhooks"); every resource calls require_admin first.

The rules and queries are server/ops/webhooks.py's; these resources parse, call and answer.
"""

from __future__ import annotations

from flask_restful import Resource

from server.infra.models import MAX_ID
from server.ops import webhooks
from server.web.api.auth import require_admin
from server.web.api.context import services, session
from server.web.api.resource import Answer
from server.web.api.videos import _json_object, _query_int

NO_STORE = {"Cache-Control": "no-store"}


class AdminWebhooks(Resource):
    def get(self) -> Answer:
        require_admin(session())
        return {"webhooks": webhooks.listing(session())}, 200, NO_STORE

    def post(self) -> Answer:
        """Register a hook: {"url", "events"}; the answer carries its secret, this once."""
        require_admin(session())
        body = _json_object()
        allow_private = services().config.WEBHOOK_ALLOW_PRIVATE
        hook, secret = webhooks.create(
            session(), body.get("url"), body.get("events"), now=services().clock.now(), allow_private=allow_private
        )
        return {**hook, "secret": secret}, 201, NO_STORE


class AdminWebhook(Resource):
    def delete(self, webhook_id: int) -> Answer:
        require_admin(session())
        webhooks.remove(session(), webhook_id, now=services().clock.now())
        return "", 204


class AdminWebhookDeliveries(Resource):
    def get(self, webhook_id: int) -> Answer:
        """A page of the hook's deliveries, newest first: ?limit= (default 50, max 200), ?before=<delivery id>."""
        require_admin(session())
        limit = _query_int("limit", 50, 1, webhooks.PAGE_MAX) or 50
        before = _query_int("before", None, 1, MAX_ID)
        return webhooks.deliveries(session(), webhook_id, limit=limit, before=before), 200, NO_STORE
