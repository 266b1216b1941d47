"""Request rates: who may create videos and upload how fast (Flask-Limiter), and who the client is.

Counters live in memcached when MEMCACHED_SERVERS is set, so every web process and machine shares them;
in memory otherwise (the embedded mode has one process). A memcached that is down counts nothing, like
a cache miss: a limit is never a reason to refuse an upload the service could store.

The limits (README, Environment) are per client address, or per recording key for a request that came under
a valid one (/k/<key>/, resolved before the limits by server/web/api/recording.py: a key's phones share its
budget wherever they are, and phones of other keys behind the same NAT do not spend it), and for uploads also
per video and client address. Every create and every upload counts against its address (the flood limit); only a stored upload
counts against its video and address, so refused requests (a 400, 404, 409, 422, 429...) never spend the
phone's budget, whoever sends them. A phone makes one create per recording and about one upload per 3 s
(plus retries): the create limit fits 100 phones behind one NAT, and no more; the upload limit leaves them
3x room, while one video cannot be stored faster than 3x real time from one address.

Failed admin logins (the login form and HTTP Basic alike) are counted in the same store by their own rule,
server/web/api/login_throttle.py, built here.

The client address is the TCP peer's, unless TRUSTED_PROXIES says how many proxies (nginx, a load balancer)
stand in front and the peer is one of TRUSTED_PROXY_ADDRESSES (default loopback, where nginx connects from):
then it is taken from X-Forwarded-For, counting that many hops from the right, so a client behind the proxy
cannot spoof it, and a caller reaching gunicorn directly cannot name itself anew for every request. With
the default 0 the header is ignored. X-Forwarded-Proto is trusted the same way, so `request.is_secure` is
true behind a TLS-terminating proxy (the login cookie's Secure flag).
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, Response, current_app, g, request
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


class TrustedProxies:
    """WSGI middleware: X-Forwarded-For and -Proto, `hops` deep (ProxyFix), from a TCP peer in `addresses` only."""

    def __init__(self, app: Callable[..., Iterable[bytes]], hops: int, addresses: Iterable[str]) -> None:
        self.app = app
        self.fixed = ProxyFix(app, x_for=hops, x_proto=hops)
        self.networks = tuple(_network(text) for text in addresses)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        trusted = self.trusts(environ.get("REMOTE_ADDR") or "")
        return (self.fixed if trusted else self.app)(environ, start_response)

    def trusts(self, peer: str) -> bool:
        """Whether `peer` (a TCP peer's address as the server gives it) is one of the proxies."""
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:  # a Unix socket's peer, or nothing
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # a dual-stack listener's view of an IPv4 peer
        return any(address in network for network in self.networks)


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"TRUSTED_PROXY_ADDRESSES: {text!r} is not an IP address or network") from None


def recorder() -> str:
    """Whom a create or upload counts against: its recording key, when it came under a valid one, else its address."""
    key = g.get("recording_key")
    key_id = getattr(key, "id", None)
    return f"key:{key_id}" if key_id is not None else client_address()


def video_client_key() -> str:
    return f"video:{(request.view_args or {}).get('video_id')}/{client_address()}"


def stored(response: Response) -> bool:
    """Whether an upload's answer says its segment is stored (201, or 2xx for the bytes stored before)."""
    return 200 <= response.status_code < 300


def init_limits(app: Flask, services: Services) -> Limiter:
    """Trust the configured proxies, then limit creates and uploads on `app` (after its routes exist)."""
    config = services.config
    if config.TRUSTED_PROXIES > 0:
        app.wsgi_app = TrustedProxies(app.wsgi_app, config.TRUSTED_PROXIES, config.TRUSTED_PROXY_ADDRESSES)  # type: ignore[method-assign]  # werkzeug's documented way to add a middleware
    cache = services.cache
    shared = isinstance(cache, MemcachedCache)
    # The cache's own client (pooled, short timeouts, closed with the services; a dead server reads as a miss).
    storage_options: dict[str, Any] = {}
    if isinstance(cache, MemcachedCache):
        storage_options["client_getter"] = lambda *_args, **_options: cache.client
    limiter = Limiter(
        client_address,
        app=app,
        storage_uri=f"memcached://{','.join(config.MEMCACHED_SERVERS)}" if shared else "memory://",
        storage_options=storage_options,
        key_prefix=f"{config.CACHE_PREFIX}rate",
        swallow_errors=True,
        headers_enabled=False,  # Retry-After on a 429 only, set by the error mapper
    )
    create = limiter.limit(config.RATE_LIMIT_CREATE, key_func=recorder, methods=["POST"], scope="create")
    upload = limiter.limit(config.RATE_LIMIT_UPLOAD, key_func=recorder, methods=["POST"], scope="upload")
    # Only stored uploads spend a video's budget (tested before the body, counted after the answer), and
    # per client: anyone's refused requests, a flood of empty ones included, cannot silence a live video.
    # Uploads in flight at once are all tested before any is counted: the limit may be passed by that many.
    per_video = limiter.limit(
        config.RATE_LIMIT_UPLOAD_PER_VIDEO, key_func=video_client_key, methods=["POST"], scope="video", deduct_when=stored
    )
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
