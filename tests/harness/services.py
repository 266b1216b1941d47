"""Real services for tests and benches: a fresh MariaDB database per run, private gearmand, memcached and MariaDB instances."""

from __future__ import annotations

import errno
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import requests
from alembic import command
from sqlalchemy import create_engine, inspect, text

from server.infra.db import alembic_config

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


def poll(fact: Callable[[], object], timeout: float) -> object:
    """Return `fact()` once it is truthy, polling every 0.1 s; None after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fact()
        if value:
            return value
        time.sleep(0.1)
    return None


def wait_for(fact: Callable[[], object], timeout: float, message: str) -> object:
    """Return `fact()` once it is truthy, polling every 0.1 s; fail naming `message` after `timeout` seconds."""
    value = poll(fact, timeout)
    if not value:
        raise AssertionError(f"after {timeout}s: {message}")
    return value


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout}s")


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


def start_gunicorn(
    env: dict[str, str],
    port: int,
    log: Path,
    *flags: str,
    conf: str = "deploy/gunicorn.conf.py",
    app: str = "server:create_app()",
) -> subprocess.Popen[bytes]:
    """Run a production server: gunicorn with `conf` on 127.0.0.1:`port`; `flags` override the file.

    The web app by default; the event-stream server is conf="deploy/gunicorn-events.conf.py", app="server:create_events_app()".
    """
    argv = [str(ROOT / ".venv/bin/gunicorn"), "-c", str(ROOT / conf), "-b", f"127.0.0.1:{port}", *flags]
    with open(log, "ab") as out:
        return subprocess.Popen([*argv, app], cwd=ROOT, env=env, stdout=out, stderr=out)


def nginx_prefix() -> Path:
    """A fresh directory for nginx's config, logs and temp files (0755: its workers run as nobody, mkdtemp makes 0700)."""
    prefix = Path(tempfile.mkdtemp(prefix="team03-nginx-"))
    prefix.chmod(0o755)
    return prefix


NGINX_SITE = ROOT / "deploy/nginx/team03.conf"
NGINX_S3_SITE = ROOT / "deploy/nginx/team03-s3.conf"  # MEDIA_STORE=s3: players' files from the bucket
NGINX_CACHES = ("team03-mpd", "team03-media", "team03-playlists", "team03-watch")  # team03.conf's proxy_cache_path folders


@dataclass(frozen=True)
class Store:
    """Where team03-s3.conf reads players' files: the store's host:port, the bucket, S3_PREFIX ("" or ending in /)."""

    address: str
    bucket: str
    prefix: str = ""


def render_nginx(
    prefix: Path,
    app_port: int,
    port: int,
    *,
    media_root: Path | None = None,
    status_port: int | None = None,
    workers: int = 1,
    events_port: int | None = None,
    origins: tuple[str, ...] = (),
    store: Store | None = None,
    link_secret: str | None = None,
) -> str:
    """deploy/nginx/team03.conf as shipped, its addresses, cache folders (and MEDIA_ROOT) pointed at ours, in a minimal nginx.conf.

    The event-stream server's upstream goes to `events_port`, or without one (no events server started) to the app's.
    With `origins` ("address:port" each), the app's upstream names those instead of 127.0.0.1:`app_port`, one
    `server` line each, as docs/operations.md "Run two origins on one bucket" tells the operator to edit it.
    With `store`, the MEDIA_STORE=s3 deployment: team03.conf's `include team03-s3.conf;` uncommented and
    deploy/nginx/team03-s3.conf rendered beside it with the store's address, bucket and prefix.
    With `link_secret`, nginx checks signed links with it (LINK_SECRET, as the operator fills it in).
    """
    servers = "\n    ".join(f"server {origin};" for origin in origins or (f"127.0.0.1:{app_port}",))
    replacements = [
        ("server 127.0.0.1:8000;", servers, 1),
        ("server 127.0.0.1:8001;", f"server 127.0.0.1:{events_port or app_port};", 1),
        ("listen 80;", f"listen 127.0.0.1:{port};", 1),
        *((f"proxy_cache_path /var/lib/nginx/{name} ", f"proxy_cache_path {prefix}/{name} ", 1) for name in NGINX_CACHES),
    ]
    if media_root is not None:
        replacements.append(("alias /srv/team03/media/videos/", f"alias {media_root}/videos/", 3))
    if link_secret is not None:
        replacements.append(('default ""; # LINK_SECRET', f'default "{link_secret}"; # LINK_SECRET', 1))
    if store is not None:
        replacements.append(("# include team03-s3.conf;", f"include {prefix}/team03-s3.conf;", 1))
        s3_site = _rendered(NGINX_S3_SITE, [
            ("http://127.0.0.1:7480/team03-media/videos/", f"http://{store.address}/{store.bucket}/{store.prefix}videos/", 3),
        ])  # fmt: skip
        (prefix / "team03-s3.conf").write_text(s3_site)
    (prefix / "team03.conf").write_text(_rendered(NGINX_SITE, replacements))
    status = "" if status_port is None else f"server {{ listen 127.0.0.1:{status_port}; location = /status {{ stub_status; }} }}"
    return nginx_conf(prefix, f"include {prefix}/team03.conf;\n{status}", workers=workers)


def _rendered(shipped: Path, replacements: list[tuple[str, str, int]]) -> str:
    text = shipped.read_text()
    for before, after, times in replacements:
        assert text.count(before) == times, f"{shipped} no longer says {before!r} {times}x: update tests/harness/services.py"
        text = text.replace(before, after)
    return text


def nginx_conf(prefix: Path, http_body: str, *, workers: int = 1) -> str:
    """A minimal nginx.conf under `prefix` (foreground, no access log, its temp files inside) around `http_body`;
    its main context is the shipped deploy/nginx/main.conf (connection slots and file limit)."""
    return f"""\
worker_processes {workers};
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
include {ROOT}/deploy/nginx/main.conf;
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
    """A private server on a free port of `host` (loopback, or a test host's veth peer) that a test may stop and restart."""

    binary_name = ""

    def __init__(self, host: str = "127.0.0.1") -> None:
        binary = shutil.which(self.binary_name) or f"/usr/sbin/{self.binary_name}"
        if not os.path.exists(binary):
            raise RuntimeError(f"{self.binary_name} is not installed: run scripts/test.sh")
        self.binary = binary
        self.host = host
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def argv(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> Self:
        self.proc = subprocess.Popen(self.argv(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, host=self.host)
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
        return [self.binary, f"--listen={self.host}", f"--port={self.port}", "--log-file=none", "--threads=1", retries]


class Memcached(LocalDaemon):
    """memcached; a restart empties it."""

    binary_name = "memcached"

    def argv(self) -> list[str]:
        user = "memcache" if _user_exists("memcache") else "root"  # memcached refuses to run as root without -u
        return [self.binary, "-l", self.host, "-p", str(self.port), "-U", "0", "-m", "16", "-u", user]


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


class MariaDB:
    """A private MariaDB server (its own datadir, socket and loopback port) a test may kill -9 and start again.

    The shared server on 3306 is never disturbed. The datadir lives outside pytest's tmp dir, whose
    0700 parents the `mysql` user that mariadbd switches to could not enter; close() removes it.
    """

    START_TIMEOUT = 60.0  # seconds to wait for `SELECT 1` after a start (crash recovery included)

    def __init__(self) -> None:
        if not os.path.exists("/usr/sbin/mariadbd") or shutil.which("mariadb-install-db") is None:
            raise RuntimeError("mariadb-server is not installed: run scripts/test.sh")
        self.folder = Path(tempfile.mkdtemp(prefix="team03-mariadb-"))
        user = pwd.getpwnam("mysql")
        os.chown(self.folder, user.pw_uid, user.pw_gid)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        install = ["mariadb-install-db", "--no-defaults", f"--datadir={self.datadir}", "--user=mysql"]
        install += ["--auth-root-authentication-method=normal", "--skip-test-db", "--innodb-log-file-size=8M"]
        result = subprocess.run(install, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"mariadb-install-db exited {result.returncode}: {result.stderr[-2000:]}")

    @property
    def datadir(self) -> Path:
        return self.folder / "data"

    @property
    def base_url(self) -> str:
        return f"mysql+pymysql://root@127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        flags = [f"--datadir={self.datadir}", f"--socket={self.folder / 'mysqld.sock'}", f"--port={self.port}"]
        flags += ["--bind-address=127.0.0.1", "--user=mysql", f"--pid-file={self.folder / 'mysqld.pid'}"]
        flags += [f"--log-error={self.folder / 'error.log'}", "--skip-name-resolve", "--skip-log-bin"]
        flags += ["--innodb-buffer-pool-size=64M", "--innodb-log-file-size=8M", "--max-connections=300"]
        return ["/usr/sbin/mariadbd", "--no-defaults", *flags]

    def start(self) -> Self:
        """Start mariadbd on the same datadir and port; return once it answers a query."""
        self.proc = subprocess.Popen(self.argv(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._answers, self.START_TIMEOUT, f"private MariaDB answering on port {self.port}; see {self.folder}/error.log")
        return self

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            tail = (self.folder / "error.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"mariadbd exited {self.proc.returncode}:\n{tail}")
        engine = create_engine(self.base_url, connect_args={"connect_timeout": 2})
        try:
            with engine.connect() as conn:
                return conn.scalar(text("SELECT 1")) == 1
        except Exception:  # noqa: BLE001 - refused or still recovering: not yet
            return False
        finally:
            engine.dispose()

    def kill(self) -> None:
        """kill -9, as a crash or an OOM kill would: InnoDB recovers at the next start."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def create_database(self) -> str:
        """Create an empty database on this server, migrate it to head, return its URL."""
        name = f"team03_{uuid.uuid4().hex[:10]}"
        engine = create_engine(self.base_url)
        with engine.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4"))
        engine.dispose()
        migrate(f"{self.base_url}/{name}")
        return f"{self.base_url}/{name}"

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.folder, ignore_errors=True)


def fill_disk(disk: Path) -> Path:
    """Take every free byte of the filesystem of `disk`; return the file to delete to give them back."""
    filler = disk / "filler"
    try:
        with open(filler, "wb") as fh:
            while True:
                fh.write(bytes(1 << 16))
                fh.flush()
    except OSError as exc:  # full: the state asked for (even at open, when uploads in flight took the last bytes)
        if exc.errno != errno.ENOSPC:
            raise
    return filler


def burst(url: str, count: int) -> tuple[list[requests.Response], float, float]:
    """`count` GETs of `url` at once, each on its own connection; return them and the wall clock before and after."""
    ready = threading.Barrier(count)
    answers: list[requests.Response] = []

    def one() -> None:
        ready.wait(timeout=30)
        answers.append(requests.get(url, timeout=20))

    threads = [threading.Thread(target=one) for _ in range(count)]
    started = time.time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return answers, started, time.time()
