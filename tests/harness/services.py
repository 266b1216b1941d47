"""Real services for tests and benches: a fresh MariaDB database per run, private gearmand and memcached instances."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Self

import requests
from alembic import command
from sqlalchemy import create_engine, inspect, text

from server.db import alembic_config

ROOT = Path(__file__).resolve().parents[2]
MYSQL_BASE = os.environ.get("TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306")
GEARMAND_JOB_RETRIES = 3  # scripts/services.sh GEARMAN_JOB_RETRIES


def create_database() -> str:
    """Create an empty database, migrate it to head, return its URL."""
    name = f"team03_test_{uuid.uuid4().hex[:10]}"
    engine = create_engine(MYSQL_BASE)
    with engine.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4"))
    engine.dispose()
    url = f"{MYSQL_BASE}/{name}"
    migrate(url)
    return url


def migrate(url: str) -> None:
    command.upgrade(alembic_config(url), "head")


def new_database(kind: str, folder: Path) -> str:
    """Create and migrate a fresh database: a MariaDB one ("mysql"), or ("sqlite") a SQLite file in `folder`."""
    if kind == "mysql":
        return create_database()
    url = f"sqlite:///{folder / 'stack.sqlite'}"
    migrate(url)
    return url


def drop_database(url: str) -> None:
    engine = create_engine(MYSQL_BASE)
    with engine.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]}"))
    engine.dispose()


def truncate_all(url: str) -> None:
    """Empty every table (ids restart at 1), keeping the migrated schema."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("SET FOREIGN_KEY_CHECKS=0"))
        for table in inspect(conn).get_table_names():
            if table != "alembic_version":
                conn.execute(text(f"TRUNCATE TABLE {table}"))
        conn.execute(text("SET FOREIGN_KEY_CHECKS=1"))
    engine.dispose()


def wait_for(fact: Callable[[], object], timeout: float, message: str) -> object:
    """Return `fact()` once it is truthy, polling every 0.1 s; fail naming `message` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fact()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"after {timeout}s: {message}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def stop_gracefully(procs: list[subprocess.Popen[bytes]], timeout: float = 30.0) -> None:
    """SIGTERM every process (workers finish the job in hand), wait, kill stragglers."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_gunicorn(env: dict[str, str], port: int, log: Path, *flags: str) -> subprocess.Popen[bytes]:
    """Run the production server: gunicorn with deploy/gunicorn.conf.py on 127.0.0.1:`port`; `flags` override the file."""
    argv = [str(ROOT / ".venv/bin/gunicorn"), "-c", str(ROOT / "deploy/gunicorn.conf.py"), "-b", f"127.0.0.1:{port}", *flags]
    with open(log, "ab") as out:
        return subprocess.Popen([*argv, "server:create_app()"], cwd=ROOT, env=env, stdout=out, stderr=out)


def nginx_prefix() -> Path:
    """A fresh directory for nginx's config, logs and temp files (0755: its workers run as nobody, mkdtemp makes 0700)."""
    prefix = Path(tempfile.mkdtemp(prefix="team03-nginx-"))
    prefix.chmod(0o755)
    return prefix


NGINX_SITE = ROOT / "deploy/nginx/team03.conf"


def render_nginx(
    prefix: Path, app_port: int, port: int, *, media_root: Path | None = None, status_port: int | None = None, workers: int = 1
) -> str:
    """deploy/nginx/team03.conf as shipped, its addresses (and MEDIA_ROOT) pointed at ours, in a minimal nginx.conf."""
    site = NGINX_SITE.read_text()
    replacements = [("server 127.0.0.1:8000;", f"server 127.0.0.1:{app_port};"), ("listen 80;", f"listen 127.0.0.1:{port};")]
    if media_root is not None:
        replacements.append(("root /srv/team03/media;", f"root {media_root};"))
    for shipped, local in replacements:
        assert site.count(shipped) == 1, f"{NGINX_SITE} no longer says {shipped!r}: update tests/harness/services.py"
        site = site.replace(shipped, local)
    (prefix / "team03.conf").write_text(site)
    status = "" if status_port is None else f"server {{ listen 127.0.0.1:{status_port}; location = /status {{ stub_status; }} }}"
    return nginx_conf(prefix, f"include {prefix}/team03.conf;\n{status}", workers=workers)


def nginx_conf(prefix: Path, http_body: str, *, workers: int = 1) -> str:
    """A minimal nginx.conf under `prefix` (foreground, no access log, its temp files inside) around `http_body`."""
    return f"""\
worker_processes {workers};
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
{http_body}
}}
"""


def readable_by_all(folder: Path) -> None:
    """Make `folder` and the folders above it (up to /tmp) 0755: nginx's workers run as nobody, mkdtemp makes 0700."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in (folder, *folder.parents):
        if path in (Path("/tmp"), Path("/")):
            break
        path.chmod(0o755)


def start_nginx(prefix: Path, conf: str) -> subprocess.Popen[bytes]:
    """Run nginx in the foreground on `conf` (which says `daemon off;`) under `prefix`; its output goes to prefix/nginx.out."""
    (prefix / "nginx.conf").write_text(conf)
    with open(prefix / "nginx.out", "ab") as out:
        return subprocess.Popen(["nginx", "-c", str(prefix / "nginx.conf"), "-p", str(prefix)], stdout=out, stderr=out)


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    """Wait until `url` answers 200; fail with the tail of `log` if `proc` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}:\n{tail}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer 200 within {timeout}s")


class LocalDaemon:
    """A private server on a free loopback port that a test may stop and restart (it keeps nothing)."""

    binary_name = ""

    def __init__(self) -> None:
        binary = shutil.which(self.binary_name) or f"/usr/sbin/{self.binary_name}"
        if not os.path.exists(binary):
            raise RuntimeError(f"{self.binary_name} is not installed: run scripts/test.sh")
        self.binary = binary
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> Self:
        self.proc = subprocess.Popen(self.argv(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


class Gearmand(LocalDaemon):
    """gearmand; its queue is in memory, so a restart empties it."""

    binary_name = "gearmand"

    def argv(self) -> list[str]:
        # The same --job-retries as scripts/services.sh, which says why (at most 3 runs of a job whose worker dies).
        retries = f"--job-retries={GEARMAND_JOB_RETRIES}"
        return [self.binary, "--listen=127.0.0.1", f"--port={self.port}", "--log-file=none", "--threads=1", retries]


class Memcached(LocalDaemon):
    """memcached; a restart empties it."""

    binary_name = "memcached"

    def argv(self) -> list[str]:
        user = "memcache" if _user_exists("memcache") else "root"  # memcached refuses to run as root without -u
        return [self.binary, "-l", "127.0.0.1", "-p", str(self.port), "-U", "0", "-m", "16", "-u", user]


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
