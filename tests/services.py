"""Real services for tests: a fresh MariaDB database per run and private gearmand instances."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import create_engine, inspect, text

ROOT = Path(__file__).resolve().parent.parent
MYSQL_BASE = os.environ.get("TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306")


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
    cfg = AlembicConfig(str(ROOT / "alembic.ini"))
    cfg.set_main_option("sqlalchemy.url", url)
    command.upgrade(cfg, "head")


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


class Gearmand:
    """A private gearmand on loopback that a test may stop and restart (its queue is in memory)."""

    def __init__(self) -> None:
        binary = shutil.which("gearmand") or "/usr/sbin/gearmand"
        if not os.path.exists(binary):
            raise RuntimeError("gearmand is not installed: run scripts/test.sh")
        self.binary = binary
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Gearmand:
        self.proc = subprocess.Popen(
            [self.binary, "--listen=127.0.0.1", f"--port={self.port}", "--log-file=none", "--threads=1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
