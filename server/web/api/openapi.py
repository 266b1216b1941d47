"""GET /openapi.json: the OpenAPI 3.1 document of every route.

The document is data, `server/web/api/openapi.json`, written by hand beside the route table; the table is the
truth and tests/api/test_openapi.py fails when either has a route or method the other lacks (README,
"Adding a route"). It changes only with a deploy, so it is read once per process and served compact,
with an ETag and a public cache lifetime.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from flask import Response, request
from flask_restful import Resource

from server.web.api.resource import Answer

DOCUMENT = Path(__file__).with_name("openapi.json")
CACHE_CONTROL = "public, max-age=300"


@functools.cache
def document() -> dict[str, Any]:
    """Return the document as data (read once: the tests and the route share it)."""
    loaded: dict[str, Any] = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    return loaded


@functools.cache
def _compact() -> bytes:
    return json.dumps(document(), separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class OpenApiDocument(Resource):
    def get(self) -> Answer:
        response = Response(_compact(), content_type="application/json")
        response.headers["Cache-Control"] = CACHE_CONTROL
        response.add_etag()
        return response.make_conditional(request)
