"""Segments: upload (the Android multipart form), list, show."""

from __future__ import annotations

from pathlib import Path

from flask import request
from flask_restful import Resource
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from sqlalchemy.sql.base import ExecutableOption

from server.core.errors import InvalidInput, NotFound
from server.domain import ingest, keys
from server.infra.models import Segment, SegmentRendition
from server.store import UploadFile
from server.web.api.context import services, session
from server.web.api.recording import key_id, recording_key
from server.web.api.resource import Answer
from server.web.api.schemas import segment_json
from server.web.api.uploads import request_started, request_started_at
from server.web.doors import request_key


def _with_renditions() -> ExecutableOption:
    return selectinload(Segment.renditions).selectinload(SegmentRendition.rendition)


class SegmentList(Resource):
    def get(self, video_id: int) -> Answer:
        ingest.get_watchable(session(), video_id, key_id())
        query = select(Segment).where(Segment.video_id == video_id).options(_with_renditions()).order_by(Segment.segment_id)
        return [segment_json(s) for s in session().scalars(query)], 200

    @staticmethod
    def upload_dir(video_id: int) -> Path:
        """Where the body's file parts are received: this machine's scratch (server/web/api/uploads.py).

        Refused before the body arrives: 404 for a video that does not exist or was recorded under another key
        (or none), 403 quota_exceeded when the body's declared length would take the key past its quota.
        """
        # This session is closed before the body's first byte is read.
        with services().sessions() as db:
            key = request_key(db)
            ingest.get_recording(db, video_id, None if key is None else key.id)
            if key is not None:
                keys.check_quota(db, key, request.content_length or 0)
        return services().media.scratch("uploads")

    def post(self, video_id: int) -> Answer:
        # The whole body is in (receive_body); the temp file is deleted at teardown unless committed.
        segment_id = ingest.parse_segment_id(request.form.get("segment_id"))
        ext = ingest.parse_extension(request.form.get("original_extension"))
        part = request.files.get("data")
        if part is None or not isinstance(part.stream, UploadFile):
            raise InvalidInput("data", "missing: send the segment as a file part named 'data'")
        if part.stream.size == 0:
            raise InvalidInput("data", "empty file")
        key = recording_key()
        video = ingest.get_recording(session(), video_id, None if key is None else key.id)
        started, started_at = request_started(), request_started_at()
        accepted = ingest.accept_segment(
            services(), session(), video, segment_id, ext, part.stream, started=started, started_at=started_at, key=key
        )
        return segment_json(accepted.segment), 201


class SegmentItem(Resource):
    def get(self, video_id: int, segment_id: int) -> Answer:
        try:
            ingest.get_watchable(session(), video_id, key_id())
        except NotFound:  # as a missing video's segment is answered: nothing says the video exists
            raise NotFound(f"segment {segment_id} of video {video_id} does not exist") from None
        return segment_json(ingest.find_segment(session(), video_id, segment_id)), 200
