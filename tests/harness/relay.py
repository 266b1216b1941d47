"""A TCP relay: a service that listens on this machine's loopback, reached from a test host's namespace.

    with Relay({(host.host_address, 3306): ("127.0.0.1", 3306)}) as relay:   # MariaDB, as the namespace sees it
        ...                          # a process inside connects to 10.203.X.1:3306; MariaDB sees 127.0.0.1
    # the relay process is gone

A namespace reaches this machine only through its veth peer (tests/harness/netns.py): a private daemon
can listen there itself (the fault suite's gearmand does), but the shared MariaDB and the Ceph gateway
listen on 127.0.0.1 only, which the kernel never routes from another namespace. The relay listens on the
peer address and copies bytes both ways to the loopback port; the service sees a loopback client, so
MariaDB's `root@127.0.0.1` account lets it in. It runs as its own process (`python -m tests.harness.relay
LISTEN=TARGET ...`, asyncio) so the test's own threads never slow it, and prints `ready` once every
address listens. A client that dies (kill -9 of its process) closes its side, and the relay closes the
service's side at once: MariaDB drops the dead client's locks, gearmand hands its job to another worker.
"""

from __future__ import annotations

import asyncio
import functools
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.harness.services import ROOT

Address = tuple[str, int]
CHUNK = 1 << 16
START_TIMEOUT = 10.0  # seconds for the relay to listen on every address


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of file (then half-close the other way); a reset aborts the other side too."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.transport.abort()


async def _connect(target: Address, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
    try:
        service_reader, service_writer = await asyncio.open_connection(*target)
    except OSError:
        client_writer.transport.abort()  # the service is down: the client sees its connection reset
        return
    await asyncio.gather(_pipe(client_reader, service_writer), _pipe(service_reader, client_writer))
    service_writer.close()
    client_writer.close()


async def _serve(routes: dict[Address, Address]) -> None:
    servers = []
    for (host, port), target in routes.items():
        servers.append(await asyncio.start_server(functools.partial(_connect, target), host, port, reuse_address=True))
    print("ready", flush=True)
    await asyncio.gather(*(server.serve_forever() for server in servers))


def _address(text: str) -> Address:
    host, port = text.rsplit(":", 1)
    return host, int(port)


class Relay:
    """The relay process for `routes` (listen address -> target address) until close(); its errors go to `log`."""

    def __init__(self, routes: dict[Address, Address], log: Path) -> None:
        self.routes, self.log = routes, log
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> Self:
        argv = [sys.executable, "-m", "tests.harness.relay"]
        argv += [f"{a}:{p}={t}:{q}" for (a, p), (t, q) in self.routes.items()]
        with open(self.log, "ab") as errors:
            self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=errors, text=True)
        try:
            ready = self.proc.stdout.readline() if self.proc.stdout else ""  # until it listens, or exits
            if ready.strip() != "ready":
                raise RuntimeError(f"relay {argv[3:]} did not start: {self.log.read_text(errors='replace')[-2000:]}")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.communicate(timeout=START_TIMEOUT)
        self.proc = None


if __name__ == "__main__":
    pairs = (arg.split("=", 1) for arg in sys.argv[1:])
    asyncio.run(_serve({_address(listen): _address(target) for listen, target in pairs}))
