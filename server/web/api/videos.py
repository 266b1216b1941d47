"""Videos: create, list, show, rename, delete, end."""

from __future__ import annotations

from typing import Any

from flask import request
from flask_restful import Resource
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from server.core.errors import InvalidInput
from server.core.states import VideoStatus
from server.domain import ingest, keys
from server.domain.lifecycle import maybe_finish
from server.infra.models import MAX_ID, Video
from server.web.api.auth import require_admin
from server.web.api.context import services, session
from server.web.api.recording import key_id, recording_key
from server.web.api.resource import Answer
from server.web.api.schemas import video_json


def _json_object() -> dict[str, Any]:
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise InvalidInput("body", "must be a JSON object")
    return body


PAGE_DEFAULT, PAGE_MAX = 100, 1000


def _query_int(name: str, default: int | None, low: int, high: int) -> int | None:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 10) or not low <= int(raw) <= high:
        raise InvalidInput(name, f"must be an integer from {low} to {high}")
    return int(raw)


class VideoList(Resource):
    def get(self) -> Answer:
        """List newest first, a page at a time: ?limit= (default 100, max 1000), ?before=<video_id> for the next.

        A video is listed from its first stored segment on (EMPTY until then): creates alone, which anyone can
        send, cannot push recordings out of the app's list; the admin API lists every video. Public videos are
        listed to all, and under a recording key (/k/<key>/) that key's own videos too, whatever their visibility.
        """
        limit = _query_int("limit", PAGE_DEFAULT, 1, PAGE_MAX)
        before = _query_int("before", None, 1, MAX_ID)
        # Ids grow with creation, so id order is creation order, and a page boundary is stable under inserts.
        query = (
            select(Video)
            .where(Video.status != VideoStatus.EMPTY, keys.listed_to(key_id()))
            .options(selectinload(Video.renditions))
            .order_by(Video.id.desc())
            .limit(limit)
        )
        if before is not None:
            query = query.where(Video.id < before)
        videos = session().scalars(query).all()
        headers = {}
        if len(videos) == limit:
            headers["Link"] = f'</videos?limit={limit}&before={videos[-1].id}>; rel="next"'
        return [video_json(v) for v in videos], 200, headers

    def post(self) -> Answer:
        title = ingest.validate_title(_json_object().get("title"))
        video = ingest.create_video(services(), session(), title, recording_key())
        return video_json(video), 201, {"Location": f"/video/{video.id}"}


class VideoItem(Resource):
    def get(self, video_id: int) -> Answer:
        return video_json(ingest.get_watchable(session(), video_id, key_id())), 200

    def put(self, video_id: int) -> Answer:
        require_admin(session())
        title = ingest.validate_title(_json_object().get("title"))
        return video_json(ingest.rename_video(services(), session(), video_id, title)), 200

    def delete(self, video_id: int) -> Answer:
        require_admin(session())
        ingest.delete_video(services(), session(), video_id)
        return "", 204


class VideoEnd(Resource):
    def post(self, video_id: int) -> Answer:
        last = ingest.parse_segment_id(request.form.get("last_segment_id"), "last_segment_id")
        ingest.get_recording(session(), video_id, key_id())  # only under the key that recorded it
        ingest.end_video(services(), session(), video_id, last)
        # Every segment may already be done: then the video is VOD from this answer on.
        maybe_finish(services(), session(), video_id)
        return video_json(ingest.get_video(session(), video_id)), 200
