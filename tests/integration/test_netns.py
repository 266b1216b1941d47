"""tests/harness/netns.py TestHost: a process in the namespace reaches a server on this machine's end of the link,
a cut makes it unreachable, a restore brings it back, and nothing is left afterwards, even after a failure."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.harness.netns import TestHost, ip
from tests.harness.services import wait_for

BODY = b"team03 test host\n"
# The client inside the namespace: print the body, or exit 1 on any network error within 1 s.
FETCH = """
import sys, urllib.request
try:
    sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=1.0).read().decode())
except OSError as exc:
    sys.exit(f"unreachable: {exc!r}")
"""


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (http.server's name)
        pass


@contextmanager
def http_server(address: str) -> Iterator[str]:
    """Serve BODY on `address` (this machine's end of a test host's link, not 0.0.0.0); yield its URL."""
    server = ThreadingHTTPServer((address, 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://{address}:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _fetch(host: TestHost, url: str) -> bool:
    """Whether a process inside `host` gets BODY from `url` (it gives up after 1 s)."""
    result = host.run([sys.executable, "-c", FETCH, url], timeout=15)
    return result.returncode == 0 and result.stdout == BODY.decode()


def test_a_process_inside_reaches_the_host_side_until_the_link_is_cut_and_again_once_restored():
    with TestHost("netns") as host:
        namespace, interface = host.namespace, host.host_interface
        assert host.host_address != host.address and host.host_address.startswith("10.203.")
        with http_server(host.host_address) as url:
            assert _fetch(host, url), "the namespace cannot reach the host side of its own link"
            host.cut()
            wait_for(lambda: not _fetch(host, url), 10, "the server unreachable from inside after the cut")
            host.restore()
            wait_for(lambda: _fetch(host, url), 15, "the server reachable from inside after the restore")
    assert namespace not in ip("netns", "list").stdout
    assert interface not in ip("-o", "link").stdout
    assert host.leftovers() == []


def test_a_failure_inside_the_block_still_tears_everything_down():
    with pytest.raises(RuntimeError, match="the test failed here"), TestHost("fails") as host:
        sleeper = host.popen([sys.executable, "-c", "import time; time.sleep(600)"])
        namespace, interface = host.namespace, host.host_interface
        assert namespace in ip("netns", "list").stdout
        raise RuntimeError("the test failed here")
    assert sleeper.poll() is not None  # the process started inside was killed
    assert namespace not in ip("netns", "list").stdout
    assert interface not in ip("-o", "link").stdout
