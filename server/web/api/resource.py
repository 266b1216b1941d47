"""What a route method (a Flask-RESTful Resource's get, post, ...) returns, for the type checker."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

from werkzeug.wrappers import Response

# A JSON body (a str only for an empty 204), with its status and maybe headers; or a whole Response
# (a file, a playlist, an event stream), which Flask-RESTful passes through as it is.
Body: TypeAlias = dict[str, Any] | list[Any] | str
Answer: TypeAlias = Response | tuple[Body, int] | tuple[Body, int, Mapping[str, str]]
