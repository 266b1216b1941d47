"""The S3 engine tests use: scripts/services.sh's Ceph RADOS Gateway on loopback, and spare gateways to stop.

`scripts/services.sh start ceph` (run by scripts/test.sh) brings up the one cluster of a test run; when
it is not up, `ensure_gateway()` starts it the same way, or fails saying why (never a silent skip).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Self

import requests

from server.store.s3 import S3Objects
from tests.harness.services import free_port

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ENDPOINT = "http://127.0.0.1:7480"
ENDPOINT = os.environ.get("TEST_S3_ENDPOINT_URL", "").strip() or DEFAULT_ENDPOINT
# scripts/services.sh RGW_ACCESS_KEY / RGW_SECRET_KEY (scripts/test.sh exports them as these variables).
ACCESS_KEY = os.environ.get("AWS_ACCESS_KEY_ID", "").strip() or "team03-test-access-key"
SECRET_KEY = os.environ.get("AWS_SECRET_ACCESS_KEY", "").strip() or "team03-test-secret-key"
CEPH_CONF = Path(os.environ.get("TEAM03_RUN_DIR", "/tmp/team03-services")) / "ceph" / "ceph.conf"
START_TIMEOUT = 240.0  # under pytest-timeout's 300 s; a fresh machine installs the Debian packages first


def answers(endpoint: str) -> bool:
    """Whether an HTTP server answers at `endpoint` (any status)."""
    try:
        requests.get(endpoint, timeout=2)
    except requests.RequestException:
        return False
    return True


def ensure_gateway() -> bool:
    """Make sure the gateway answers; return True when this call had to start it."""
    if answers(ENDPOINT):
        return False
    if ENDPOINT != DEFAULT_ENDPOINT:
        raise AssertionError(f"TEST_S3_ENDPOINT_URL={ENDPOINT} does not answer")
    start = ["bash", str(ROOT / "scripts" / "services.sh"), "start", "ceph"]
    try:
        proc = subprocess.run(start, capture_output=True, text=True, timeout=START_TIMEOUT, check=False)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"the S3 gateway is down and `scripts/services.sh start ceph` took over {START_TIMEOUT}s") from exc
    if proc.returncode != 0 or not answers(ENDPOINT):
        raise AssertionError(f"the S3 gateway is down and `scripts/services.sh start ceph` failed:\n{proc.stderr[-3000:]}")
    return True


def stop_gateway() -> None:
    subprocess.run(["bash", str(ROOT / "scripts" / "services.sh"), "stop", "ceph"], capture_output=True, check=True)


def s3_objects(bucket: str, prefix: str = "", endpoint: str = ENDPOINT, **options: Any) -> S3Objects:
    """An S3Objects on the test gateway with the test user's keys."""
    return S3Objects(endpoint, bucket, prefix, access_key=ACCESS_KEY, secret_key=SECRET_KEY, **options)


def new_bucket() -> str:
    name = f"team03-test-{uuid.uuid4().hex[:12]}"
    s3_objects(name).client.create_bucket(Bucket=name)
    return name


def remove_bucket(name: str) -> None:
    client = s3_objects(name).client
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        for item in page.get("Contents", ()):
            client.delete_object(Bucket=name, Key=item["Key"])
    client.delete_bucket(Bucket=name)


class SpareGateway:
    """A second radosgw of the same cluster on its own port, a child of the test: to pause, kill, stop."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.log = folder / "radosgw.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        if not CEPH_CONF.exists():
            raise AssertionError(f"no {CEPH_CONF}: the gateway was not started by scripts/services.sh")
        self.folder.mkdir(parents=True, exist_ok=True)
        argv = [
            "radosgw", "-f", "-c", str(CEPH_CONF), "-n", f"client.rgw.t{self.port}",
            "--rgw_frontends", f"beast endpoint=127.0.0.1:{self.port}",
            "--rgw_data", str(self.folder), "--log_file", str(self.log),
            "--pid_file", str(self.folder / "radosgw.pid"), "--admin_socket", str(self.folder / "radosgw.asok"),
        ]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not answers(self.endpoint):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text()[-2000:] if self.log.exists() else ""
                raise AssertionError(f"a spare radosgw on port {self.port} did not come up:\n{tail}")
            time.sleep(0.1)
        return self

    def pause(self) -> None:
        """Freeze it: connections are still accepted (by the kernel), nothing is answered."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Stop it the way an operator does (SIGTERM), waiting for it to exit.

        Not kill -9: a killed radosgw leaves its cache watches on the cluster's control objects until
        the OSD times them out (30 s), and the other gateway's metadata writes (bucket create, delete)
        wait for those watchers meanwhile.
        """
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def read_policy(bucket: str, prefix: str, source: str = "127.0.0.1/32") -> str:
    """docs/operations.md's bucket policy: nginx's address may GET the media prefix without credentials."""
    statement = {
        "Sid": "team03-nginx-reads-media",
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/{prefix}videos/*",
        "Condition": {"IpAddress": {"aws:SourceIp": source}},
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})
