"""gunicorn settings for the event-stream server (docs/operations.md "Production"), behind deploy/nginx/team03.conf:

    .venv/bin/gunicorn -c deploy/gunicorn-events.conf.py 'server:create_events_app()'

It serves only the dashboard's GET /api/admin/events (and /ping), which nginx routes here, so open
dashboard tabs hold this server's threads, never the web app's (deploy/gunicorn.conf.py). Each open
stream holds one thread, mostly asleep (one poller per process reads the event log for all of them).
One process: ADMIN_STREAMS is then the whole server's cap, and the threads beyond it answer the stream
past the cap (503 too_many_streams) at once. Start it from the checkout, with the web app's environment
(DATABASE_URL, MEMCACHED_SERVERS, ...) but without PROMETHEUS_MULTIPROC_DIR (that directory is the web app's).
"""

from server.config import Config  # gunicorn has put the working directory (the checkout) on sys.path

SPARE_THREADS = 16  # beyond ADMIN_STREAMS: the refusals past the cap and /ping, never queued behind a stream

bind = "127.0.0.1:8001"  # loopback: only nginx talks to it
workers = 1
worker_class = "gthread"
threads = Config.from_env().ADMIN_STREAMS + SPARE_THREADS
# A stream ends by itself after ADMIN_STREAM_SECONDS, and a browser resumes a cut one (Last-Event-ID): a restart
# need not wait for open streams.
timeout = 30
graceful_timeout = 3
keepalive = 5
