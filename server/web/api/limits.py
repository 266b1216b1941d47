"""Request rates: who may create videos and upload how fast (Flask-Limiter), and who the client is.

Counters live in memcached when MEMCACHED_SERVERS is set, so every web process and machine shares them;
in memory otherwise (the embedded mode has one process). A memcached that is down counts nothing, like
a cache miss: a limit is never a reason to refuse an upload the service could store.

The limits (README, Environment) are per client address, and per video for uploads. A phone makes one
create per recording and about one upload per 3 s (plus retries), so the defaults let 100 phones behind
one NAT record at once with room to spare, while one video cannot upload faster than 3x real time.

Failed admin logins (the login form and HTTP Basic alike) are counted in the same store by their own rule,
server/web/api/login_throttle.py, built here.

The client address is the TCP peer's, unless TRUSTED_PROXIES says how many proxies (nginx, a load balancer)
stand in front: then it is taken from X-Forwarded-For, counting that many hops from the right, so a client
cannot spoof it; with the default 0 the header is ignored. X-Forwarded-Proto is trusted the same way, so
`request.is_secure` is true behind a TLS-terminating proxy (the login cookie's Secure flag).
"""

from __future__ import annotations

import logging
import math
import time

from flask import Flask, current_app, request
from flask_limiter import Limiter
from werkzeug.middleware.proxy_fix import ProxyFix

from server.infra.cache import MemcachedCache
from server.infra.services import Services
from server.web.api.login_throttle import EXTENSION as LOGIN_EXTENSION
from server.web.api.login_throttle import LoginThrottle

log = logging.getLogger(__name__)
EXTENSION = "team03.limiter"
FAILED_WORKER_AUTH = "team03.failed_worker_auth"
# Resources (by flask-restful endpoint) whose POST is limited: creating a video, uploading a segment.
CREATE_ENDPOINT = "videolist"
UPLOAD_ENDPOINT = "segmentlist"


def client_address() -> str:
    return request.remote_addr or "unknown"


def video_key() -> str:
    return f"video:{(request.view_args or {}).get('video_id')}"


def init_limits(app: Flask, services: Services) -> Limiter:
    """Trust the configured proxies, then limit creates and uploads on `app` (after its routes exist)."""
    config = services.config
    if config.TRUSTED_PROXIES > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=config.TRUSTED_PROXIES, x_proto=config.TRUSTED_PROXIES)  # type: ignore[method-assign]
    cache = services.cache
    shared = isinstance(cache, MemcachedCache)
    limiter = Limiter(
        client_address,
        app=app,
        storage_uri=f"memcached://{','.join(config.MEMCACHED_SERVERS)}" if shared else "memory://",
        # The cache's own client (pooled, short timeouts, closed with the services; a dead server reads as a miss).
        storage_options={"client_getter": lambda *_args, **_options: cache.client} if shared else {},  # type: ignore[dict-item, union-attr]
        key_prefix=f"{config.CACHE_PREFIX}rate",
        swallow_errors=True,
        headers_enabled=False,  # Retry-After on a 429 only, set by the error mapper
    )
    create = limiter.limit(config.RATE_LIMIT_CREATE, key_func=client_address, methods=["POST"], scope="create")
    upload = limiter.limit(config.RATE_LIMIT_UPLOAD, key_func=client_address, methods=["POST"], scope="upload")
    per_video = limiter.limit(config.RATE_LIMIT_UPLOAD_PER_VIDEO, key_func=video_key, methods=["POST"], scope="video")
    # Checked by a before_request hook registered before the one that receives the body
    # (server/web/api/uploads.py), so a refused request's body is never read: a 429 costs no
    # bandwidth and no temp file. Each limit is entered as a context manager (Flask-Limiter's
    # documented form), which counts and checks it for the current request.
    rules = {CREATE_ENDPOINT: (create,), UPLOAD_ENDPOINT: (upload, per_video)}

    def check_limits() -> None:
        for rule in rules.get(request.endpoint or "", ()):
            with rule:
                pass

    app.before_request(check_limits)
    app.extensions[EXTENSION] = limiter
    app.extensions[LOGIN_EXTENSION] = LoginThrottle.build(services)
    # Counted only when a worker token is refused (server/web/api/worker_api.py): valid tokens are never limited.
    app.extensions[FAILED_WORKER_AUTH] = limiter.limit(
        config.RATE_LIMIT_WORKER_AUTH, key_func=client_address, scope="worker-auth"
    )
    return limiter


def count_failed_worker_auth() -> None:
    """Count one refused worker token from this address; raise RateLimitExceeded (429) past the limit."""
    with current_app.extensions[FAILED_WORKER_AUTH]:
        pass


def retry_after() -> int:
    """Return the seconds until the limit this request broke lets it through again (at least 1)."""
    limiter: Limiter | None = current_app.extensions.get(EXTENSION)
    try:
        current = limiter.current_limit if limiter is not None else None
        reset_at = current.window.reset_time if current is not None else None
    except Exception:  # noqa: BLE001 - the counters' store went away since the check; a guess will do
        reset_at = None
    return 60 if reset_at is None else max(1, math.ceil(reset_at - time.time()))
