"""gunicorn settings for production (docs/operations.md "Production"), behind deploy/nginx/team03.conf:

    .venv/bin/gunicorn -c deploy/gunicorn.conf.py 'server:create_app()'

Command-line flags override these. nginx buffers every request body before it reaches gunicorn, so a
thread here never waits on a phone; the app's own BODY_READ_TIMEOUT still bounds a body that stalls.
"""

bind = "127.0.0.1:8000"  # loopback: only nginx talks to gunicorn
workers = 4
worker_class = "gthread"
threads = 8
# gthread reads a request's body on a blocking socket with no timeout of its own: the app cuts a body still
# arriving at BODY_READ_TIMEOUT (server/web/api/uploads.py). `timeout` is the worker heartbeat: a process whose
# main loop is stuck this long is killed and restarted (it never cuts a slow request); `graceful_timeout` is
# what SIGTERM leaves running requests.
timeout = 30
graceful_timeout = 30
# Idle keep-alive connections (nginx's upstream pool) are closed after this; longer than nginx's 4 s reuse window.
keepalive = 5
# The dashboard's event streams are the event-stream server's (deploy/gunicorn-events.conf.py), where nginx sends
# them. Should one reach a web process anyway (an nginx site from before that server), it may hold at most 2 of
# the process's 8 threads; the next gets 503 too_many_streams at once. (ADMIN_STREAMS set here wins over the
# environment's, which is the event-stream server's cap.)
raw_env = ["ADMIN_STREAMS=2"]


# gunicorn refuses some requests before the app sees them (a malformed request line, one longer than
# limit_request_line, more than limit_request_fields headers or one over limit_request_field_size): its own
# page for those is HTML, so each worker writes them in the API's JSON shape instead, the code named as the
# app's error mapper names it (werkzeug's reason, snake_case). gunicorn has no setting for its error pages:
# util.write_error is the one function they all go through (gunicorn/workers/base.py, handle_error).
def post_fork(server, worker):  # type: ignore[no-untyped-def]
    from gunicorn import util

    util.write_error = _json_error_page


def _json_error_page(sock, status_int, reason, mesg):  # type: ignore[no-untyped-def]
    import json

    from gunicorn import util
    from werkzeug.http import HTTP_STATUS_CODES

    name = HTTP_STATUS_CODES.get(status_int, reason)
    body = json.dumps({"code": name.lower().replace(" ", "_"), "message": name, "description": f"gunicorn: {mesg[:200]}"})
    head = f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
    util.write_nonblock(sock, f"{head}Content-Length: {len(body) + 1}\r\n\r\n{body}\n".encode("latin-1"))


# Prometheus (docs/operations.md "Metrics"): with PROMETHEUS_MULTIPROC_DIR set, each process writes its counters to files
# there and /metrics sums them. The files of a previous run are removed before the first process starts (they
# would be summed too); a process that exits is marked dead, so its gauges leave while its counters still count.
def on_starting(server):  # type: ignore[no-untyped-def]
    import os
    from pathlib import Path

    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        for stale in Path(folder).glob("*.db"):
            stale.unlink()


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    import os

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
