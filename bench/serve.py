"""Playlist and media GETs through the shipped nginx config against nginx on a plain file of the same bytes.

    python -m bench.serve [--seconds 10] [--connections 32] [--rounds 3] [--tier-only]

A fresh MariaDB database and a private gearmand; one worker turns 4 ffmpeg-made segments, uploaded and
ended through the API, into a finished VOD video, and publishes its playlists as files (server/domain/publishing.py).
Then, in this one run:
  front     deploy/nginx/team03.conf as shipped (root = MEDIA_ROOT, the app behind it), worker_processes 2:
            playlists and media from the media tree, the Android MPD (dynamic) from its micro-cache, filled by
  gunicorn  .venv/bin/gunicorn -c deploy/gunicorn.conf.py -w 2 -k gthread --threads 8 "server:create_app()", env
            DATABASE_URL (that database), MEDIA_ROOT, MEMCACHED_SERVERS=127.0.0.1:11211 (a fresh CACHE_PREFIX),
            GEARMAN_SERVERS=the private gearmand.
  plain     nginx, worker_processes 2, the bytes the front answered saved under the same paths in its root
            (sendfile, keep-alive, no access log): the floor for answering these bytes over HTTP here.
The ratio front/plain is what the issue asks (>= 0.9 for playlists): the median of --rounds alternated runs
(req/s medians, p99 of the last round); gunicorn straight is printed for scale. The Android MPD
(/live_mpd/<id>.mpd?last_segment_id=1, the same bytes and headers either way) is measured through the
front (cached: gunicorn answers it once a second) against gunicorn answering it straight, alternated the
same way: front/gunicorn is what the issue asks of the cache (>= 20).
The cache tier (MEDIA_STORE=s3, deploy/nginx/team03-s3.conf included by team03.conf): the same video's files
copied into a fresh bucket on the test run's Ceph RGW (TEST_S3_ENDPOINT_URL, scripts/services.sh; readable by
loopback through the bucket policy of docs/operations.md), a media playlist and a media segment GET through
  tier      deploy/nginx/team03.conf + team03-s3.conf (2 workers), reading the bucket through nginx's cache,
against plain on the same bytes, alternated the same way: tier/plain is what the issue asks (>= 0.9).
`--tier-only` measures that alone.
Private playback (issue 18): last, the video is made private and the same files are fetched through a signed
link (/s/<sig>/<exp>/video_files/<id>/..., deploy/nginx/team03.conf's secure_link with LINK_SECRET filled in)
  link      the front as above, checking each link itself and serving the file from the tree,
against plain on the same bytes, alternated the same way: link/plain is "private playback at static-file speed".
The public front's ratios above include its anonymous check (auth_request to the app, micro-cached per second).
Load: wrk (-t2 -c<connections> -d<seconds> --latency, keep-alive) when installed, else a Python loop of
<connections> threads on keep-alive connections. The load generator shares the 2 CPUs with the servers.
Everything started here is stopped on the way out.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import requests

from bench.live_latency import make_segments, percentile, served_stack
from server.core.states import Visibility
from server.domain import curation, links
from tests.harness import s3
from tests.harness import services as real

TARGETS = ("master.m3u8", "HIGH/playlist.m3u8", "manifest.mpd", "HIGH/000001.m4s")
TIER_TARGETS = ("HIGH/playlist.m3u8", "HIGH/000001.m4s")  # a playlist (kept within its second) and media (kept)
ANDROID = "/live_mpd/{vid}.mpd?last_segment_id=1"
LINK_SECRET = "bench-link-secret"  # the app's LINK_SECRET and the front's $team03_link_secret  # dynamic by protocol: the app answers it through the front
PLAIN_SITE = """\
    sendfile on;
    tcp_nopush on;
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
    }}"""


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
        "LINK_SECRET": LINK_SECRET,
        "LOG_LEVEL": "WARNING",
    }
    return real.start_gunicorn(env, port, log, "-w", "2", "-k", "gthread", "--threads", "8", "--log-level", "warning")


def start_nginx(tmp: Path, port: int) -> subprocess.Popen[bytes]:
    return real.start_nginx(tmp, real.nginx_conf(tmp, PLAIN_SITE.format(tmp=tmp, port=port), workers=2))


def start_tier(folder: Path, bucket: str, video_dir: Path, video_id: int, app_port: int, port: int) -> subprocess.Popen[bytes]:
    """Copy the video's files into `bucket` (as `media migrate` does), let loopback read them, start the tier's nginx."""
    prefix = f"b{uuid.uuid4().hex[:8]}/"
    objects = s3.s3_objects(bucket, prefix=prefix)
    for path in sorted(
        p for p in video_dir.rglob("*") if p.is_file() and "originals" not in p.parts and not p.name.startswith(".")
    ):
        objects.put(f"videos/{video_id}/{path.relative_to(video_dir).as_posix()}", path)
    statement = {
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/{prefix}videos/*",
        "Condition": {"IpAddress": {"aws:SourceIp": "127.0.0.1/32"}},
    }
    objects.client.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [statement]}))
    store = real.Store(s3.ENDPOINT.removeprefix("http://").rstrip("/"), bucket, prefix)
    return real.start_nginx(folder, real.render_nginx(folder, app_port, port, store=store, workers=2))


def private_link(stack, video_id: int, base: str) -> str:  # type: ignore[no-untyped-def]
    """Make the video private and return the base URL of a signed link to its folder (an hour's)."""
    with stack.services.sessions() as session:
        curation.set_visibility(stack.services, session, video_id, Visibility.PRIVATE, by="bench")
        link = links.mint_link(stack.services, session, video_id, dash=False, ttl=3600, by="bench")
    return base + link.path.rsplit("/", 1)[0]


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
    parser.add_argument("--rounds", type=int, default=3, help="front and plain alternated this many times per URL (default 3)")
    parser.add_argument("--tier-only", action="store_true", help="measure only the cache tier against plain nginx")
    args = parser.parse_args(argv)
    load = wrk if shutil.which("wrk") else python_load
    with served_stack(1, LINK_SECRET=LINK_SECRET) as stack:
        # nginx's workers drop root for nobody: its prefixes and the media tree must be readable by all.
        tmp, front_prefix = real.nginx_prefix(), real.nginx_prefix()
        video_id = make_vod(stack, tmp / "phone")
        media_root = Path(stack.config.MEDIA_ROOT)
        real.readable_by_all(media_root)
        g_port, f_port, n_port, t_port = real.free_port(), real.free_port(), real.free_port(), real.free_port()
        gunicorn = start_gunicorn(stack, g_port, tmp / "gunicorn.log")
        procs: list[subprocess.Popen[bytes]] = []
        try:
            real.wait_http(f"http://127.0.0.1:{g_port}/ping", gunicorn, tmp / "gunicorn.log")
            front_conf = real.render_nginx(front_prefix, g_port, f_port, media_root=media_root, workers=2, link_secret=LINK_SECRET)
            procs.append(real.start_nginx(front_prefix, front_conf))
            f_base = f"http://127.0.0.1:{f_port}/video_files/{video_id}"
            real.wait_http(f"{f_base}/master.m3u8", procs[-1], front_prefix / "nginx.out")
            for name in TARGETS:  # the exact bytes the front answers, under the same paths
                body = requests.get(f"{f_base}/{name}", timeout=10).content
                (tmp / "www/video_files" / str(video_id) / name).parent.mkdir(parents=True, exist_ok=True)
                (tmp / "www/video_files" / str(video_id) / name).write_bytes(body)
            procs.append(start_nginx(tmp, n_port))
            n_base = f"http://127.0.0.1:{n_port}/video_files/{video_id}"
            g_base = f"http://127.0.0.1:{g_port}/video_files/{video_id}"
            real.wait_http(f"{n_base}/master.m3u8", procs[-1], tmp / "nginx.out")
            for name in TARGETS:
                same = {requests.get(f"{base}/{name}", timeout=10).content for base in (f_base, n_base, g_base)}
                assert len(same) == 1, f"{name}: the front, plain nginx and gunicorn answer different bytes"
            android = ANDROID.format(vid=video_id)
            f_android, g_android = f"http://127.0.0.1:{f_port}{android}", f"http://127.0.0.1:{g_port}{android}"
            same_android = {_android_answer(requests.get(u, timeout=10)) for u in (f_android, g_android)}
            assert len(same_android) == 1, "the front and gunicorn answer the Android MPD differently"
            t_base = f"http://127.0.0.1:{t_port}/video_files/{video_id}"
            bucket = s3.new_bucket()
            tier_prefix = real.nginx_prefix()
            try:
                procs.append(start_tier(tier_prefix, bucket, media_root / "videos" / str(video_id), video_id, g_port, t_port))
                real.wait_http(f"{t_base}/master.m3u8", procs[-1], tier_prefix / "nginx.out")
                for name in TIER_TARGETS:
                    assert (
                        requests.get(f"{t_base}/{name}", timeout=10).content
                        == requests.get(f"{n_base}/{name}", timeout=10).content
                    ), name
                files_dir = tmp / "www/video_files" / str(video_id)
                if not args.tier_only:
                    report(load, args, {"front": f_base, "plain": n_base, "gunicorn": g_base}, files_dir)
                    report_android(load, args, f_android, g_android, f"{n_base}/manifest.mpd")
                report_tier(
                    load, args, {"tier": t_base, "plain": n_base, "front": f_base}, tmp / "www/video_files" / str(video_id)
                )
                if not args.tier_only:
                    l_base = private_link(stack, video_id, f"http://127.0.0.1:{f_port}")
                    hidden_by = time.monotonic() + 5  # nginx's anonymous check is kept for the second it was asked in
                    while requests.get(f"{f_base}/{TARGETS[0]}", timeout=10).status_code != 404:
                        assert time.monotonic() < hidden_by, "the front still plays the private video anonymously"
                        time.sleep(0.1)
                    for name in TARGETS:
                        assert requests.get(f"{f_base}/{name}", timeout=10).status_code == 404, name  # private now
                        assert requests.get(f"{l_base}/{name}", timeout=10).content == (files_dir / name).read_bytes(), name
                    print("link: the front checking a signed link (secure_link) and serving the private video's file from the tree")
                    g_link = f"http://127.0.0.1:{g_port}" + l_base.removeprefix(f"http://127.0.0.1:{f_port}")  # the app checks it
                    report(load, args, {"front": l_base, "plain": n_base, "gunicorn": g_link}, files_dir)
            finally:
                s3.remove_bucket(bucket)
                shutil.rmtree(tier_prefix, ignore_errors=True)
        finally:
            for proc in procs:
                stop(proc, signal.SIGQUIT)
            stop(gunicorn)
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(front_prefix, ignore_errors=True)
    return 0


def report(load, args: argparse.Namespace, bases: dict[str, str], files: Path) -> None:  # type: ignore[no-untyped-def]
    print(
        f"machine: {os.cpu_count()} CPUs; load: {load.__name__}, {args.connections} keep-alive connections, {args.seconds:.0f} s per run"
    )
    print("front: deploy/nginx/team03.conf (2 workers) over MEDIA_ROOT; plain: nginx (2 workers) on a copy of the same bytes")
    for base in bases.values():  # warm every server before measuring
        load(f"{base}/master.m3u8", 2, args.connections)
    print(
        f"{'GET':<22}{'bytes':>8}  {'front req/s':>12} {'p99':>9}  {'plain req/s':>12} {'p99':>9}  {'front/plain':>11}"
        f"  {'gunicorn req/s':>15} {'g/plain':>8}"
    )
    for name in TARGETS:
        rounds = []
        for _ in range(args.rounds):  # alternated, so a load spike from elsewhere hits both sides alike
            rounds.append(
                (
                    load(f"{bases['front']}/{name}", args.seconds, args.connections),
                    load(f"{bases['plain']}/{name}", args.seconds, args.connections),
                )
            )
        g_rps, _, g_err = load(f"{bases['gunicorn']}/{name}", args.seconds, args.connections)
        (f_rps, f_p99, f_err), (n_rps, n_p99, n_err) = rounds[-1]
        ratios = sorted(f[0] / n[0] for f, n in rounds)
        f_rps, n_rps = statistics.median(f[0] for f, _ in rounds), statistics.median(n[0] for _, n in rounds)
        size = (files / name).stat().st_size
        errors = sum(f[2] + n[2] for f, n in rounds) + g_err
        print(
            f"{name:<22}{size:>8}  {f_rps:>12.0f} {f_p99 * 1000:>7.1f}ms  {n_rps:>12.0f} {n_p99 * 1000:>7.1f}ms  {statistics.median(ratios):>11.3f}"
            f"  {g_rps:>15.0f} {g_rps / n_rps:>8.3f}  rounds {' '.join(f'{r:.2f}' for r in ratios)}"
            + (f"  errors {errors}" if errors else "")
        )


def _android_answer(response: requests.Response) -> tuple[int, bytes, str | None, str | None]:
    return response.status_code, response.content, response.headers.get("lastSegmentId"), response.headers.get("streamEnded")


def report_android(load, args: argparse.Namespace, front_url: str, gunicorn_url: str, plain_url: str) -> None:  # type: ignore[no-untyped-def]
    """The Android MPD (dynamic by protocol: its query and headers) through the front's micro-cache vs gunicorn straight."""
    rounds = []
    for _ in range(args.rounds):  # alternated, as in report()
        rounds.append((load(front_url, args.seconds, args.connections), load(gunicorn_url, args.seconds, args.connections)))
    n_rps, _, _ = load(plain_url, args.seconds, args.connections)
    (_, f_p99, _), (_, g_p99, _) = rounds[-1]
    f_rps, g_rps = statistics.median(f[0] for f, _ in rounds), statistics.median(g[0] for _, g in rounds)
    ratios = sorted(f[0] / g[0] for f, g in rounds)
    errors = sum(f[2] + g[2] for f, g in rounds)
    print(
        f"android MPD {front_url[front_url.index('/live_mpd/') :]}: front (micro-cached) {f_rps:.0f} req/s, p99 {f_p99 * 1000:.1f}ms; gunicorn straight"
        f" {g_rps:.0f} req/s, p99 {g_p99 * 1000:.1f}ms; front/gunicorn {statistics.median(ratios):.1f}x (issue: >= 20x),"
        f" rounds {' '.join(f'{r:.1f}' for r in ratios)}; front/plain manifest.mpd {f_rps / n_rps:.3f}"
        + (f"  errors {errors}" if errors else "")
    )


def report_tier(load, args: argparse.Namespace, bases: dict[str, str], files: Path) -> None:  # type: ignore[no-untyped-def]
    """Players' files through the cache tier (the bucket behind nginx's cache) against plain nginx on the same bytes;
    the front (the same config reading MEDIA_ROOT) alternated with them, for scale on a loaded machine."""
    print("tier: deploy/nginx/team03.conf + team03-s3.conf (2 workers) over the bucket on Ceph RGW; plain, front: as above")
    for base in bases.values():
        load(f"{base}/{TIER_TARGETS[0]}", 2, args.connections)  # warm every server (and the tier's copies)
    for name in TIER_TARGETS:
        rounds = [
            {role: load(f"{base}/{name}", args.seconds, args.connections) for role, base in bases.items()}
            for _ in range(args.rounds)
        ]
        rps = {role: statistics.median(r[role][0] for r in rounds) for role in bases}
        ratios = sorted(r["tier"][0] / r["plain"][0] for r in rounds)
        fronts = sorted(r["front"][0] / r["plain"][0] for r in rounds)
        errors = sum(r[role][2] for r in rounds for role in bases)
        print(
            f"tier {name:<20}{(files / name).stat().st_size:>8} B  tier {rps['tier']:.0f} req/s, p99 {rounds[-1]['tier'][1] * 1000:.1f}ms;"
            f" plain {rps['plain']:.0f} req/s; tier/plain {statistics.median(ratios):.3f} (issue: >= 0.9), rounds"
            f" {' '.join(f'{r:.2f}' for r in ratios)}; front/plain {statistics.median(fronts):.3f}"
            + (f"  errors {errors}" if errors else "")
        )


if __name__ == "__main__":
    sys.exit(main())
