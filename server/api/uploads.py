"""Multipart uploads streamed straight to a temp file beside their destination."""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

import flask
from flask import g
from flask.json.provider import DefaultJSONProvider

from server.media import UploadFile


class JsonProvider(DefaultJSONProvider):
    """Flask's JSON, but a body nested past the parser's recursion limit is bad JSON (ValueError: a 400), not a 500."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None


class Request(flask.Request):
    """Flask's request, whose file parts go to an UploadFile when a view asked for one."""

    def _get_file_stream(  # type: ignore[override]
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        directory: Path | None = g.get("upload_dir")
        if directory is None:
            return super()._get_file_stream(total_content_length, content_type, filename, content_length)
        upload = UploadFile(directory, g.upload_limit)
        g.uploads.append(upload)
        return upload  # type: ignore[return-value]


def expect_uploads(directory: Path, limit: int) -> None:
    """Send the file parts of this request to `directory`, each at most `limit` bytes."""
    g.upload_dir = directory
    g.upload_limit = limit
    g.uploads = []


def discard_uploads() -> None:
    """Delete every temp file of this request that was not committed."""
    for upload in g.pop("uploads", []):
        upload.discard()
