"""Every setting the service reads, each from one env var with a default (see README)."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
INSTANCE = ROOT / "instance"
MEDIA_STORES = ("local", "s3")
RECORDING_MODES = ("open", "keys")


def _list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


@dataclass(frozen=True)
class Config:
    """Typed settings; `Config.from_env()` reads them, tests pass overrides."""

    DATABASE_URL: str = f"sqlite:///{INSTANCE / 'team03.sqlite'}"
    GEARMAN_SERVERS: tuple[str, ...] = ()
    MEMCACHED_SERVERS: tuple[str, ...] = ()
    MEDIA_ROOT: Path = INSTANCE / "media"
    # Where media objects live (server/store/objects.py): "local" (under MEDIA_ROOT) or "s3" (the bucket
    # below; MEDIA_ROOT then keeps only scratch). `cli media migrate` copies MEDIA_ROOT into the bucket.
    MEDIA_STORE: str = "local"
    S3_ENDPOINT_URL: str = ""  # empty: AWS's own endpoint for S3_REGION
    S3_BUCKET: str = ""
    S3_PREFIX: str = ""
    S3_REGION: str = "us-east-1"
    S3_TIMEOUT: float = 10.0  # seconds to connect, and per socket read
    S3_MAX_ATTEMPTS: int = 3  # tries of one call in all, then StorageUnavailable
    MAX_SEGMENT_BYTES: int = 64 * 1024 * 1024
    BODY_READ_TIMEOUT: float = 60.0
    SECRET_KEY: str = field(default_factory=lambda: secrets.token_hex(32))
    LADDER: str = "HIGH:720x480:3000k,MEDIUM:480x320:768k,LOW:240x160:200k"
    SEGMENT_DURATION_MS: int = 3000
    WORKER_CONCURRENCY: int = 1
    FFMPEG_TIMEOUT: float = 60.0
    PROBE_TIMEOUT: float = 15.0
    JOB_MAX_ATTEMPTS: int = 4
    RETRY_BACKOFF: float = 2.0
    PROCESSING_DEADLINE: float = 120.0
    # An attempt's lease: a worker renews it every third of this while it encodes; one not renewed for
    # this long is taken back by the reaper and the segment retried (docs/workers.md).
    LEASE_SECONDS: float = 30.0
    EVENT_RETENTION: float = 7 * 24 * 3600.0
    WORKER_NAME: str = ""  # how this segment_processor is named in the workers table; default host-pid
    REAPER_INTERVAL: float = 5.0
    # How often a reaper searches the whole media tree for what dead writers left; between, each pass
    # searches only the folders of videos written lately (server/ops/reaper.py TempSweep).
    TEMP_SWEEP_INTERVAL: float = 3600.0
    GAP_TIMEOUT: float = 10.0
    # A live video refuses a segment_id (or a /video_end last_segment_id) more than this many ids past its
    # highest stored one (from 0 before the first), and no skip jumps more ids at once (playlists/publish.py).
    MAX_SEGMENT_AHEAD: int = 100
    FIRST_SEGMENT_WAIT: float = 8.0
    FIRST_SEGMENT_WAITERS: int = 4
    KEEP_ORIGINALS: bool = False
    # Doors (docs/api.md "Doors"): "open" lets anyone create, upload and end (the embedded default, so the README's
    # tour works), "keys" only a recording key's URL (/k/<key>/, `cli key create`); production sets "keys".
    RECORDING: str = "open"
    # Finished videos older than this many days are deleted, rows and media, unless pinned (0: kept forever).
    RETENTION_DAYS: float = 0.0
    # What signs private videos' playback links (server/core/doors.py): the same value in nginx's team03.conf
    # (secure_link_md5). Empty: one made by the first process that asks and kept in the database (embedded).
    LINK_SECRET: str = ""
    LINK_TTL: int = 3600  # `cli video link`'s default lifetime of a link, in seconds
    # The server's address as players reach it, before a link's path (`cli video link`; its --base-url wins).
    # Empty: dev_run.py's http://127.0.0.1:5000.
    PUBLIC_URL: str = ""
    CACHE_TTL: int = 3600
    CACHE_PREFIX: str = "team03:"
    LOG_LEVEL: str = "INFO"
    MAX_SEGMENT_SECONDS: float = 20.0
    MAX_SOURCE_PIXELS: int = 3840 * 2160
    LIVE_IDLE_TIMEOUT: float = 600.0
    # Flask-Limiter rate strings ("N/second|minute|hour", ";"-separated); see the README for why these.
    RATE_LIMIT_CREATE: str = "100/minute"  # 100 phones behind one NAT, one create per recording
    RATE_LIMIT_UPLOAD: str = "6000/minute"
    RATE_LIMIT_UPLOAD_PER_VIDEO: str = "60/minute"
    # X-Forwarded-For/-Proto are believed, TRUSTED_PROXIES hops deep, only from a TCP peer in these addresses or
    # networks (server/web/api/limits.py): any other caller's headers are its own claim.
    TRUSTED_PROXIES: int = 0
    TRUSTED_PROXY_ADDRESSES: tuple[str, ...] = ("127.0.0.0/8", "::1")
    # The dashboard's login (server/web/api/auth.py): a session ends after this long unused; failed logins
    # (and failed HTTP Basic checks) per client address and per admin name before a 429.
    ADMIN_SESSION_SECONDS: float = 8 * 3600.0
    RATE_LIMIT_LOGIN_FAILURES: str = "5/15 minutes"
    RATE_LIMIT_WORKER_AUTH: str = "30/minute"  # failed worker-token checks per client address
    # A remote worker (docs/workers.md): the API it talks to and its token; no DATABASE_URL, no shared media.
    API_URL: str = ""
    WORKER_TOKEN: str = ""
    # Prometheus (docs/operations.md "Metrics"): gunicorn's processes share their counters through this directory
    # (prometheus_client reads the same variable at import); /metrics wants this Bearer token, or without
    # one a loopback caller; a segment_processor serves its own metrics on METRICS_HOST:METRICS_PORT (0: off).
    PROMETHEUS_MULTIPROC_DIR: str = ""
    METRICS_TOKEN: str = ""
    METRICS_PORT: int = 0
    METRICS_HOST: str = "127.0.0.1"
    # The dashboard's event stream (GET /api/admin/events) holds a thread of the process that serves it (in
    # production the event-stream server, deploy/gunicorn-events.conf.py, whose thread count is this cap plus
    # spares; deploy/gunicorn.conf.py sets 2 for the web app's processes, which nginx sends no stream): it ends
    # after this many seconds (the browser reconnects where it left off), at most ADMIN_STREAMS at once per
    # process (beyond: an immediate 503 with Retry-After).
    ADMIN_STREAM_SECONDS: float = 300.0
    ADMIN_STREAMS: int = 100
    # Webhooks (docs/api.md "Webhooks"): each delivery try waits at most WEBHOOK_TIMEOUT seconds for its receiver;
    # a failed one is tried again after WEBHOOK_BACKOFF seconds, doubling up to WEBHOOK_BACKOFF_MAX, until
    # WEBHOOK_GIVE_UP seconds after the event; WEBHOOK_THREADS send at once per reaper process. A hook's host
    # must resolve to public addresses only, unless WEBHOOK_ALLOW_PRIVATE (loopback, private, link-local too).
    WEBHOOK_TIMEOUT: float = 5.0
    WEBHOOK_BACKOFF: float = 10.0
    WEBHOOK_BACKOFF_MAX: float = 3600.0
    WEBHOOK_GIVE_UP: float = 24 * 3600.0
    WEBHOOK_THREADS: int = 4
    WEBHOOK_ALLOW_PRIVATE: bool = False

    def __post_init__(self) -> None:
        if self.MEDIA_STORE not in MEDIA_STORES:
            raise ValueError(f"MEDIA_STORE={self.MEDIA_STORE!r}: expected one of {', '.join(MEDIA_STORES)}")
        if self.MEDIA_STORE == "s3" and not self.S3_BUCKET:
            raise ValueError("MEDIA_STORE=s3 needs S3_BUCKET")
        if self.RECORDING not in RECORDING_MODES:
            raise ValueError(f"RECORDING={self.RECORDING!r}: expected one of {', '.join(RECORDING_MODES)}")
        if self.RETENTION_DAYS < 0 or self.LINK_TTL < 1:
            raise ValueError("RETENTION_DAYS must be 0 or more and LINK_TTL at least 1")
        if self.S3_MAX_ATTEMPTS < 1 or self.S3_TIMEOUT <= 0:
            raise ValueError("S3_MAX_ATTEMPTS must be at least 1 and S3_TIMEOUT above 0")

    @classmethod
    def from_env(cls, **overrides: object) -> Config:
        """Read every setting from the environment; keyword overrides win."""
        values: dict[str, Any] = {}  # each of the type its field declares (_convert)
        for f in fields(cls):
            raw = os.environ.get(f.name, "").strip()
            if f.name in overrides:
                values[f.name] = overrides[f.name]
            elif raw:
                values[f.name] = _convert(f.name, f.type, raw)
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """Return the environment that reproduces this config in another process (a worker).

        An empty PROMETHEUS_MULTIPROC_DIR is left out: prometheus_client turns multiprocess mode on when the
        variable merely exists, and would write its files into the working directory.
        """
        env = {f.name: _render(getattr(self, f.name)) for f in fields(self)}
        if not self.PROMETHEUS_MULTIPROC_DIR:
            del env["PROMETHEUS_MULTIPROC_DIR"]
        return env

    @property
    def uses_gearman(self) -> bool:
        return bool(self.GEARMAN_SERVERS)


def database_configured(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether DATABASE_URL is set: without it a worker with API_URL and WORKER_TOKEN is a remote one.

    DATABASE_URL has a default (a SQLite file for the embedded mode), so only the environment can tell.
    """
    return bool(environ.get("DATABASE_URL", "").strip())


def _render(value: object) -> str:
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _convert(name: str, kind: object, raw: str) -> object:
    kind = str(kind)
    try:
        if "tuple" in kind:
            return _list(raw)
        if kind == "bool":
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError("expected true or false")
            return raw.lower() in ("1", "true", "yes")
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "Path":
            return Path(raw)
    except ValueError as exc:
        raise ValueError(f"environment variable {name}={raw!r}: {exc}") from None
    return raw


def configure_logging(level: str) -> None:
    """Log one line per event to stderr, unless the host already configured logging."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root.setLevel(level)
