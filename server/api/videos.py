"""Videos: create, list, show, rename, delete, end."""

from __future__ import annotations

from flask import request
from flask_restful import Resource
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from server import ingest
from server.api.auth import require_admin
from server.api.context import services, session
from server.api.schemas import video_json
from server.errors import InvalidInput
from server.lifecycle import maybe_finish
from server.models import Video


def _json_object() -> dict:
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise InvalidInput("body", "must be a JSON object")
    return body


class VideoList(Resource):
    def get(self):  # type: ignore[no-untyped-def]
        query = select(Video).options(selectinload(Video.renditions)).order_by(Video.created_at.desc(), Video.id.desc())
        return [video_json(v) for v in session().scalars(query)], 200

    def post(self):  # type: ignore[no-untyped-def]
        title = ingest.validate_title(_json_object().get("title"))
        video = ingest.create_video(services(), session(), title)
        return video_json(video), 201, {"Location": f"/video/{video.id}"}


class VideoItem(Resource):
    def get(self, video_id: int):  # type: ignore[no-untyped-def]
        return video_json(ingest.get_video(session(), video_id)), 200

    def put(self, video_id: int):  # type: ignore[no-untyped-def]
        require_admin(session())
        title = ingest.validate_title(_json_object().get("title"))
        return video_json(ingest.rename_video(session(), video_id, title)), 200

    def delete(self, video_id: int):  # type: ignore[no-untyped-def]
        require_admin(session())
        ingest.delete_video(services(), session(), video_id)
        return "", 204


class VideoEnd(Resource):
    def post(self, video_id: int):  # type: ignore[no-untyped-def]
        last = ingest.parse_segment_id(request.form.get("last_segment_id"), "last_segment_id")
        ingest.end_video(session(), video_id, last)
        # Every segment may already be done: then the video is VOD from this answer on.
        maybe_finish(services(), session(), video_id)
        return video_json(ingest.get_video(session(), video_id, fresh=True)), 200
