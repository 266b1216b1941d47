"""Doors (docs/api.md "Doors"): recording keys and signed playback links, as values and rules only (pure).

The Android app cannot change and its only credential is its server URL, so a recording key lives in that URL:
the app pointed at `https://host/k/<key>` sends every request under `/k/<key>/` (server/web/doors.py strips it).
A key is 32 random bytes in URL-safe base64 (43 characters); the database keeps its SHA-256 only.

A signed link opens one video's files until it expires: `/s/<signature>/<expires>/video_files/<id>/<file>`.
Every URL inside that video's playlists is relative, so a player that opened the master or the MPD there asks
for everything else under the same prefix: the link carries what each request needs, and nothing else opens.
The signature is nginx's secure_link_md5 of `"<expires> <video id> <secret>"` (base64url of the MD5, no
padding), so the shipped nginx checks links itself at static-file speed (deploy/nginx/team03.conf) and the app
checks the same on the embedded default. MD5 is what nginx's stock module offers; the secret comes last, so the
hash cannot be extended, and a link names one video until one instant.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import re
import secrets

KEY_BYTES = 32
# The key as it may appear in a URL: exactly what token_urlsafe(32) makes.
KEY_PATTERN = r"[A-Za-z0-9_-]{43}"
KEY_RE = re.compile(rf"^{KEY_PATTERN}$")
KEY_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SIGNATURE_PATTERN = r"[A-Za-z0-9_-]{22}"
EXPIRES_PATTERN = r"[0-9]{1,12}"
# The path prefixes of the two doors. A keyed request is one of the Android app's routes under /k/<key>/.
KEY_PREFIX = "/k/"
LINK_PREFIX = "/s/"
KEYED_ROUTES = ("videos", "video/", "video_segment/", "video_end/", "live_mpd/", "live_m3u8/", "video_files/")
MAX_LINK_TTL = 366 * 24 * 3600


def new_key() -> str:
    """A fresh recording key (shown once; only its hash is kept)."""
    return secrets.token_urlsafe(KEY_BYTES)


def key_hash(key: str) -> str:
    """What the database keeps of a key: its SHA-256, hex."""
    return hashlib.sha256(key.encode("ascii")).hexdigest()


def valid_key_name(name: str) -> bool:
    return bool(KEY_NAME_RE.match(name))


def link_signature(secret: str, video_id: int, expires: int) -> str:
    """nginx secure_link_md5 "$expires $video_id $secret": base64url of the MD5, without '=' padding."""
    digest = hashlib.md5(f"{expires} {video_id} {secret}".encode(), usedforsecurity=False).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


class LinkVerdict(enum.Enum):
    OK = "ok"
    ALTERED = "altered"  # not signed by this secret for this video and expiry (forged, truncated, another video's)
    EXPIRED = "expired"


def check_link(secret: str, video_id: int, signature: str, expires: str, now: float) -> LinkVerdict:
    """Whether a link's signature and expiry open `video_id` at `now` (Unix seconds)."""
    if not (re.fullmatch(SIGNATURE_PATTERN, signature) and re.fullmatch(EXPIRES_PATTERN, expires)):
        return LinkVerdict.ALTERED
    if not hmac.compare_digest(link_signature(secret, video_id, int(expires)), signature):
        return LinkVerdict.ALTERED
    # nginx's secure_link: a link is good while $secure_link_expires is not in the past.
    return LinkVerdict.EXPIRED if int(expires) < now else LinkVerdict.OK


def link_path(secret: str, video_id: int, expires: int, file: str) -> str:
    """The root-relative path of a signed link to one of the video's files (`master.m3u8`, `manifest.mpd`)."""
    return f"{LINK_PREFIX}{link_signature(secret, video_id, expires)}/{expires}/video_files/{video_id}/{file}"


def may_watch(visibility: str, video_key_id: int | None, key_id: int | None) -> bool:
    """Whether a request without a signed link may play a video (and read its JSON): public and unlisted videos
    by anyone with their URL, a private one only under the key that recorded it."""
    if visibility != "private":
        return True
    return key_id is not None and video_key_id == key_id


def listed(visibility: str, video_key_id: int | None, key_id: int | None) -> bool:
    """Whether GET /videos lists a video to a request: public ones to all, and a key's own videos to that key."""
    return visibility == "public" or (key_id is not None and video_key_id == key_id)
