"""The Android app's requests, byte for byte as Retrofit 1.x and OkHttp send them."""

from __future__ import annotations

import uuid

CRLF = b"\r\n"


def _part(name: str, content_type: str, body: bytes, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    headers = [
        f"Content-Disposition: {disposition}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Content-Transfer-Encoding: binary",
    ]
    return CRLF.join(h.encode() for h in headers) + CRLF + CRLF + body + CRLF


def segment_upload(segment_id: int | str, data: bytes | None, extension: str | None = "mp4") -> tuple[bytes, str]:
    """Return (body, content_type) of POST /video_segment/<id> as the recorder sends it."""
    boundary = str(uuid.uuid4())
    parts = [_part("segment_id", "application/json; charset=UTF-8", str(segment_id).encode())]
    if extension is not None:
        parts.append(_part("original_extension", "text/plain; charset=UTF-8", extension.encode()))
    if data is not None:
        parts.append(_part("data", "multipart/form-data", data, filename=f"video-{segment_id}.mp4"))
    body = b"".join(b"--" + boundary.encode() + CRLF + p for p in parts) + b"--" + boundary.encode() + b"--" + CRLF
    return body, f"multipart/form-data; boundary={boundary}"


def new_video_body(title: str | None = "My recording") -> dict:
    """The app's whole Video object, most values null, as POST /videos sends it."""
    body: dict = {
        "video_id": None,
        "title": title,
        "created_at": 1795860000000,
        "type": "LIVE",
        "status": "EMPTY",
        "segment_count": None,
        "segment_duration": None,
        "uri_mpd": None,
        "uri_m3u8": None,
        "uri_thumbnail": None,
        "base_url": None,
    }
    for i in (1, 2, 3):
        body.update({f"repr_{i}_name": None, f"repr_{i}_bandwidth": None, f"repr_{i}_width": None, f"repr_{i}_height": None})
    return body


VIDEO_KEYS = {
    "video_id",
    "title",
    "created_at",
    "type",
    "status",
    "segment_count",
    "segment_duration",
    *(f"repr_{i}_{k}" for i in (1, 2, 3) for k in ("name", "bandwidth", "width", "height")),
    "uri_mpd",
    "uri_m3u8",
    "uri_thumbnail",
    "base_url",
}
SEGMENT_KEYS = {
    "video_id",
    "segment_id",
    "original_path",
    "original_extension",
    "media_mpd",
    "media_m3u8",
    "status",
    "repr_1_status",
    "repr_2_status",
    "repr_3_status",
}
