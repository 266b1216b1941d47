"""Test hosts: a network namespace joined to this machine by a veth pair, with a link a test can cut.

    with TestHost("worker") as host:             # namespace t3-worker-<pid>, veth t3h<X> <-> t3n<X>
        host.host_address                        # 10.203.X.1: this machine's end; bind a server here
        host.address                             # 10.203.X.2: the namespace's end
        host.run([sys.executable, "-c", ...], timeout=10)   # a process inside (`ip netns exec`)
        host.cut(); host.restore()               # the link down and up again (a fault test)
    # the namespace, the veth pair and every process started inside are gone, even after a failure

Traffic stays on this machine: only the two ends of our own veth pair are addressed. Creating a
namespace needs CAP_SYS_ADMIN (the suite runs as root, as scripts/test.sh does); without it the test
is skipped with the kernel's own words, loudly, rather than failed.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from types import TracebackType
from typing import Self

import pytest

PREFIX = "10.203"  # 10.203.X.0/30 per host, X in SUBNETS
SUBNETS = range(1, 251)
COMMAND_TIMEOUT = 10.0  # seconds one `ip` command may take
LINK_TIMEOUT = 10.0  # seconds a restored link may take to carry traffic again
_NAME = re.compile(r"[a-z0-9]{1,16}")


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `ip ARGS`; raise with its stderr when `check` and it fails."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
    return result


class TestHost:
    """A network namespace with a veth pair to this machine: a separate host a test can cut off."""

    __test__ = False  # a helper, not a test class for pytest to collect

    def __init__(self, name: str) -> None:
        if not _NAME.fullmatch(name):
            raise ValueError(f"test host name {name!r}: 1-16 lowercase letters or digits")
        self.namespace = f"t3-{name}-{os.getpid()}"
        self.subnet = 0
        self._procs: list[subprocess.Popen[bytes]] = []
        self._created_namespace = False

    @property
    def host_interface(self) -> str:
        return f"t3h{self.subnet}"

    @property
    def inner_interface(self) -> str:
        return f"t3n{self.subnet}"

    @property
    def host_address(self) -> str:
        return f"{PREFIX}.{self.subnet}.1"

    @property
    def address(self) -> str:
        return f"{PREFIX}.{self.subnet}.2"

    def __enter__(self) -> Self:
        self._add_namespace()
        try:
            self._add_link()
            self._configure()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()

    def _add_namespace(self) -> None:
        try:
            result = ip("netns", "add", self.namespace, check=False)
        except FileNotFoundError:
            pytest.skip("NETWORK NAMESPACE TESTS SKIPPED: the `ip` command (iproute2) is not installed")
        if result.returncode != 0:
            pytest.skip(
                f"NETWORK NAMESPACE TESTS SKIPPED: `ip netns add {self.namespace}` exited {result.returncode}: "
                f"{result.stderr.strip()!r}. Creating a namespace needs CAP_SYS_ADMIN: run the suite as root "
                "(scripts/test.sh does), outside a container that drops it."
            )
        self._created_namespace = True

    def _add_link(self) -> None:
        """Create the veth pair on the first free 10.203.X.0/30 (another run may take one at the same time)."""
        taken = ip("-o", "-4", "addr").stdout
        for subnet in SUBNETS:
            if f" {PREFIX}.{subnet}." in taken:
                continue
            self.subnet = subnet
            if (
                ip(
                    "link", "add", self.host_interface, "type", "veth", "peer", "name", self.inner_interface, check=False
                ).returncode
                == 0
            ):
                return
        self.subnet = 0
        raise RuntimeError(f"no free {PREFIX}.X.0/30 for a test host (X in {SUBNETS.start}..{SUBNETS.stop - 1})")

    def _configure(self) -> None:
        ip("link", "set", self.inner_interface, "netns", self.namespace)
        ip("addr", "add", f"{self.host_address}/30", "dev", self.host_interface)
        ip("link", "set", self.host_interface, "up")
        inside = ("netns", "exec", self.namespace, "ip")
        ip(*inside, "addr", "add", f"{self.address}/30", "dev", self.inner_interface)
        ip(*inside, "link", "set", self.inner_interface, "up")
        ip(*inside, "link", "set", "lo", "up")
        self._wait_link_up()

    def argv(self, argv: list[str]) -> list[str]:
        """`argv` run inside the namespace."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    def run(self, argv: list[str], *, timeout: float, **kwargs: object) -> subprocess.CompletedProcess[str]:
        """Run `argv` inside the namespace to its end (at most `timeout` seconds); capture its text output."""
        return subprocess.run(self.argv(argv), capture_output=True, text=True, timeout=timeout, **kwargs)  # type: ignore[call-overload]

    def popen(self, argv: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        """Start `argv` inside the namespace; it is killed when the host is torn down."""
        proc = subprocess.Popen(self.argv(argv), **kwargs)  # type: ignore[call-overload]
        self._procs.append(proc)
        return proc

    def cut(self) -> None:
        """Take the link down on this machine's side: nothing passes either way until restore()."""
        ip("link", "set", self.host_interface, "down")

    def restore(self) -> None:
        """Bring the link back up and wait until both ends say so."""
        ip("link", "set", self.host_interface, "up")
        self._wait_link_up()

    def _wait_link_up(self) -> None:
        deadline = time.monotonic() + LINK_TIMEOUT
        while "state UP" not in ip("-o", "link", "show", self.host_interface).stdout:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.host_interface} not UP after {LINK_TIMEOUT}s")
            time.sleep(0.05)

    def close(self) -> None:
        """Kill what runs inside, delete the namespace and the veth pair; safe to call twice."""
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=COMMAND_TIMEOUT)
        self._procs.clear()
        if self._created_namespace:
            ip("netns", "del", self.namespace, check=False)  # takes the inner end, and so the pair, with it
            self._created_namespace = False
        if self.subnet and ip("link", "show", self.host_interface, check=False).returncode == 0:
            ip("link", "del", self.host_interface, check=False)
        leftovers = self.leftovers()
        if leftovers:
            raise RuntimeError(f"test host {self.namespace} not torn down: {leftovers}")

    def leftovers(self) -> list[str]:
        """What of this host still exists (empty once torn down): namespace and interface names."""
        names = [n.split()[0] for n in ip("netns", "list").stdout.splitlines() if n.strip()]
        found = [self.namespace] if self.namespace in names else []
        if self.subnet and ip("link", "show", self.host_interface, check=False).returncode == 0:
            found.append(self.host_interface)
        return found
