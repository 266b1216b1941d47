"""gunicorn settings for production (README "Production"), behind deploy/nginx/team03.conf:

    .venv/bin/gunicorn -c deploy/gunicorn.conf.py 'server:create_app()'

Command-line flags override these. nginx buffers every request body before it reaches gunicorn, so a
thread here never waits on a phone; the app's own BODY_READ_TIMEOUT still bounds a body that stalls.
"""

bind = "127.0.0.1:8000"  # loopback: only nginx talks to gunicorn
workers = 4
worker_class = "gthread"
threads = 8
# gthread reads a request's body on a blocking socket with no timeout of its own: the app cuts a body still
# arriving at BODY_READ_TIMEOUT (server/api/uploads.py). `timeout` is the worker heartbeat: a process whose
# main loop is stuck this long is killed and restarted (it never cuts a slow request); `graceful_timeout` is
# what SIGTERM leaves running requests.
timeout = 30
graceful_timeout = 30
# Idle keep-alive connections (nginx's upstream pool) are closed after this; longer than nginx's 4 s reuse window.
keepalive = 5


# Prometheus (README "Metrics"): with PROMETHEUS_MULTIPROC_DIR set, each process writes its counters to files
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
