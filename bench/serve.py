"""Cached playlist and media GETs: the app under gunicorn against nginx serving the same bytes from files.

    python -m bench.serve [--seconds 10] [--connections 32]

A fresh MariaDB database and a private gearmand; one worker turns 4 ffmpeg-made segments, uploaded and
ended through the API, into a finished VOD video. Then:
  gunicorn  .venv/bin/gunicorn -c deploy/gunicorn.conf.py -w 2 -k gthread --threads 8 "server:create_app()" on 127.0.0.1 (team03.wsgi is a file, not an importable module), env
            DATABASE_URL (that database), MEDIA_ROOT, MEMCACHED_SERVERS=127.0.0.1:11211 (a fresh CACHE_PREFIX),
            GEARMAN_SERVERS=the private gearmand. A finished playlist is a memcached hit keyed by the
            video's revision, so each GET costs one `SELECT revision` + one memcached get + Flask.
  nginx     worker_processes 2, the bytes gunicorn answered saved under the same paths in its root
            (sendfile, keep-alive, no access log): the floor for answering these bytes over HTTP here.
Load: wrk (-t2 -c<connections> -d<seconds> --latency, keep-alive) when installed, else a Python loop of
<connections> threads on keep-alive connections. The load generator shares the 2 CPUs with the server.
Everything started here is stopped on the way out.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import requests

from bench.live_latency import make_segments, percentile, served_stack
from tests.harness import services as real

TARGETS = ("master.m3u8", "HIGH/playlist.m3u8", "manifest.mpd", "HIGH/000001.m4s")
NGINX_CONF = """\
worker_processes 2;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 30s;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    types {{
        application/vnd.apple.mpegurl m3u8;
        application/dash+xml mpd;
        video/iso.segment m4s;
    }}
    server {{
        listen 127.0.0.1:{port};
        root {tmp}/www;
        add_header Access-Control-Allow-Origin *;
        add_header Cache-Control "public, max-age=3600";
    }}
}}
"""


def make_vod(stack, folder: Path, count: int = 4) -> int:  # type: ignore[no-untyped-def]
    """Upload `count` segments through the API, end the video, wait until the worker made it VOD."""
    video_id = stack.new_video("bench serve")
    for k, path in enumerate(make_segments(folder, count)):
        stack.upload(video_id, k, path.read_bytes())
    stack.end(video_id, count - 1)
    stack.wait_vod(video_id, timeout=120)
    return video_id


def start_gunicorn(stack, port: int, log: Path) -> subprocess.Popen[bytes]:  # type: ignore[no-untyped-def]
    c = stack.config
    env = {
        **os.environ,
        "DATABASE_URL": c.DATABASE_URL,
        "MEDIA_ROOT": str(c.MEDIA_ROOT),
        "MEMCACHED_SERVERS": "127.0.0.1:11211",
        "GEARMAN_SERVERS": ",".join(c.GEARMAN_SERVERS),
        "CACHE_PREFIX": f"bserve{uuid.uuid4().hex[:8]}:",
        "SECRET_KEY": "bench",
        "LOG_LEVEL": "WARNING",
    }
    return real.start_gunicorn(env, port, log, "-w", "2", "-k", "gthread", "--threads", "8", "--log-level", "warning")


def start_nginx(tmp: Path, port: int) -> subprocess.Popen[bytes]:
    return real.start_nginx(tmp, NGINX_CONF.format(tmp=tmp, port=port))


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- load -------------------------------------------------------------------------------------

_UNIT = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def wrk(url: str, seconds: float, connections: int) -> tuple[float, float, int]:
    """Return (requests/s, p99 latency in s, non-2xx/3xx + socket errors) measured by wrk."""
    argv = ["wrk", "-t2", f"-c{connections}", f"-d{int(seconds)}s", "--timeout", "5s", "--latency", url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    value, unit = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M).groups()  # type: ignore[union-attr]
    errors = sum(int(n) for n in re.findall(r"(?:Non-2xx or 3xx responses|connect|read|write|timeout)[: ]\s*(\d+)", out))
    return rps, float(value) * _UNIT[unit], errors


def python_load(url: str, seconds: float, connections: int) -> tuple[float, float, int]:
    """The fallback: `connections` threads, each GETting url on its own keep-alive connection."""
    host, port, path = re.match(r"http://([^:/]+):(\d+)(/.*)", url).groups()  # type: ignore[union-attr]
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def loop() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        mine = []
        while time.monotonic() < stop_at:
            started = time.monotonic()
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    errors[0] += 1
            except (OSError, http.client.HTTPException):
                errors[0] += 1
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=5)
            mine.append(time.monotonic() - started)
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 10)
    return len(latencies) / seconds, percentile(latencies, 99), errors[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="load duration per URL and server (default 10)")
    parser.add_argument("--connections", type=int, default=32, help="concurrent keep-alive connections (default 32)")
    args = parser.parse_args(argv)
    load = wrk if shutil.which("wrk") else python_load
    with served_stack(1) as stack:
        # nginx's workers drop root for nobody: its prefix must be readable by all (mkdtemp makes 0700).
        tmp = real.nginx_prefix()
        video_id = make_vod(stack, tmp / "phone")
        g_port, n_port = real.free_port(), real.free_port()
        gunicorn = start_gunicorn(stack, g_port, tmp / "gunicorn.log")
        nginx: subprocess.Popen[bytes] | None = None
        try:
            g_base = f"http://127.0.0.1:{g_port}/video_files/{video_id}"
            real.wait_http(f"{g_base}/master.m3u8", gunicorn, tmp / "gunicorn.log")
            for name in TARGETS:  # the exact bytes gunicorn answers, under the same paths
                body = requests.get(f"{g_base}/{name}", timeout=10).content
                (tmp / "www/video_files" / str(video_id) / name).parent.mkdir(parents=True, exist_ok=True)
                (tmp / "www/video_files" / str(video_id) / name).write_bytes(body)
            nginx = start_nginx(tmp, n_port)
            n_base = f"http://127.0.0.1:{n_port}/video_files/{video_id}"
            real.wait_http(f"{n_base}/master.m3u8", nginx, tmp / "nginx.out")
            for name in TARGETS:
                assert (
                    requests.get(f"{n_base}/{name}", timeout=10).content == requests.get(f"{g_base}/{name}", timeout=10).content
                )
            report(load, args, g_base, n_base, tmp / "www/video_files" / str(video_id))
        finally:
            if nginx is not None:
                stop(nginx, signal.SIGQUIT)
            stop(gunicorn)
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


def report(load, args: argparse.Namespace, g_base: str, n_base: str, files: Path) -> None:  # type: ignore[no-untyped-def]
    print(
        f"machine: {os.cpu_count()} CPUs; load: {load.__name__}, {args.connections} keep-alive connections, {args.seconds:.0f} s per run"
    )
    print(
        "gunicorn: -c deploy/gunicorn.conf.py -w 2 -k gthread --threads 8 server:create_app(), memcached 127.0.0.1:11211; nginx: worker_processes 2, sendfile"
    )
    load(f"{g_base}/master.m3u8", 2, args.connections)  # warm both before measuring
    load(f"{n_base}/master.m3u8", 2, args.connections)
    print(
        f"{'GET':<22}{'bytes':>8}  {'gunicorn req/s':>15} {'p99':>9}  {'nginx req/s':>12} {'p99':>9}   {'req/s g/n':>9} {'p99 g/n':>8}"
    )
    for name in TARGETS:
        g_rps, g_p99, g_err = load(f"{g_base}/{name}", args.seconds, args.connections)
        n_rps, n_p99, n_err = load(f"{n_base}/{name}", args.seconds, args.connections)
        size = (files / name).stat().st_size
        errors = f"  errors g={g_err} n={n_err}" if g_err or n_err else ""
        print(
            f"{name:<22}{size:>8}  {g_rps:>15.0f} {g_p99 * 1000:>7.1f}ms  {n_rps:>12.0f} {n_p99 * 1000:>7.1f}ms"
            f"   {g_rps / n_rps:>9.3f} {g_p99 / n_p99:>8.1f}{errors}"
        )


if __name__ == "__main__":
    sys.exit(main())
