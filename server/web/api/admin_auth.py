"""The dashboard's login: log in, log out, who am I (docs/admin-api.md, "Login"); the rules are in server/web/api/auth.py."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request
from flask_restful import Resource

from server.core.errors import InvalidInput
from server.web.api.auth import COOKIE, authenticate, check_password, end_session, open_session
from server.web.api.context import session
from server.web.api.resource import Answer

_NO_STORE = {"Cache-Control": "no-store"}
MAX_FIELD = 1024  # longer than any name (64) or sane password; bounds what is hashed


def _credential(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or len(value) > MAX_FIELD:
        raise InvalidInput(field, f"must be a string of at most {MAX_FIELD} characters")
    return value


def _set_cookie(response: Response, token: str, *, expire: bool = False) -> None:
    # Secure when the request came over HTTPS, as a trusted proxy's X-Forwarded-Proto says (server/web/api/limits.py).
    value, expires = ("", 0) if expire else (token, None)
    response.set_cookie(COOKIE, value, expires=expires, path="/", httponly=True, samesite="Strict", secure=request.is_secure)


class AdminLogin(Resource):
    def post(self) -> Answer:
        """Trade a name and password for a session cookie and its CSRF token."""
        # JSON only (no force): a cross-site HTML form cannot send application/json, so it cannot log a browser in.
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise InvalidInput("body", "must be a JSON object sent as application/json")
        username, password = _credential(body, "username"), _credential(body, "password")
        admin = check_password(session(), username, password)
        token, row = open_session(session(), admin)
        response = jsonify({"name": admin.name, "csrf_token": row.csrf_token})
        response.headers.update(_NO_STORE)
        _set_cookie(response, token)
        return response


class AdminLogout(Resource):
    def post(self) -> Answer:
        """Delete the caller's session (nothing to delete for HTTP Basic) and expire the cookie."""
        login = authenticate(session())
        if login.session is not None:
            end_session(session(), login.session)
        response = Response(status=204, headers=_NO_STORE)
        _set_cookie(response, "", expire=True)
        return response


class AdminMe(Resource):
    def get(self) -> Answer:
        """Who is logged in, and the CSRF token the dashboard sends with every change (null for HTTP Basic)."""
        login = authenticate(session())
        return {"name": login.admin.name, "csrf_token": login.session.csrf_token if login.session else None}, 200, _NO_STORE
