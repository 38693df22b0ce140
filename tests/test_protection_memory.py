"""Memory stays bounded in bytes on every server when clients push and never read.

Ten raw-socket clients (a tiny receive buffer, never read) each push up to 200 binary messages of
1 MiB to /ws/echo. The echo handler's writes back fail or block; the inbox bound
(``INBOX_MAX_BYTES``) and the write limits keep what the server holds per connection to a few
MiB (docs/protection.md has the figures per server). A polite client is served throughout.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

import psutil
import pytest

from tests.hostile import handshake
from tests.test_protection_e2e import protect_env, steady, wait_live

pytestmark = pytest.mark.timeout(180)

SERVERS = ["daphne", "uvicorn", "granian"]
MIB = 1024 * 1024
CLIENTS, MESSAGES = 10, 200
GROWTH_LIMIT = 100 * MIB
# A send that has not drained for this long is held by the server's back-pressure.
BLOCKED_AFTER = 5.0


def binary_frame(payload: bytes) -> bytes:
    """A masked binary frame with the all-zero mask key (legal, and the payload stays as is,
    so one 1 MiB frame is built once instead of masked byte by byte in Python)."""
    head = bytes([0x82, 0x80 | 127]) + struct.pack("!Q", len(payload))
    return head + b"\0\0\0\0" + payload


def rss(pid: int) -> int:
    """Resident memory of the server process and its children (granian runs a worker)."""
    proc = psutil.Process(pid)
    total = proc.memory_info().rss
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += child.memory_info().rss
    return total


class Pusher:
    """One client that pushes 1 MiB messages and never reads. ``outcome`` says how its pushing
    ended: ``"closed"`` (the server ended the connection), ``"blocked"`` (its sends stopped
    draining: back-pressure) or ``"sent"`` (all 200 went out: the server read and discarded them
    after closing, while it waited for a close reply that never comes)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.outcome = ""
        self.sent = 0
        self.writer: asyncio.StreamWriter | None = None

    async def run(self, message: bytes) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.port))
        reader, writer = await asyncio.open_connection(sock=sock)
        self.writer = writer
        writer.write(handshake("/ws/echo", self.port))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        assert head.startswith(b"HTTP/1.1 101"), head
        try:
            for _ in range(MESSAGES):
                writer.write(message)
                await asyncio.wait_for(writer.drain(), BLOCKED_AFTER)
                self.sent += 1
            self.outcome = "sent"
        except TimeoutError:
            self.outcome = "blocked"
        except ConnectionError:
            self.outcome = "closed"

    def drop(self) -> None:
        if self.writer is not None:
            sock = self.writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.writer.transport.abort()


@pytest.mark.parametrize("kind", SERVERS)
async def test_clients_that_push_and_never_read_grow_memory_by_a_bounded_amount(server_factory, kind):
    server = server_factory(kind, env=protect_env())
    message = binary_frame(b"m" * MIB)
    async with steady(server, min_echoes=20) as polite:
        # Warm up the path a 1 MiB message takes, so the baseline includes the server's steady state.
        from tests.client import connect

        async with connect(server, "/ws/echo", max_size=None) as ws:
            await ws.send(b"w" * MIB)
            assert len(await asyncio.wait_for(ws.recv(), 30)) == MIB
        assert await wait_live(server, 1) == 1
        baseline = peak = rss(server.proc.pid)
        echoes_before = polite.echoes
        pushers = [Pusher(server.port) for _ in range(CLIENTS)]
        attack = asyncio.gather(*(p.run(message) for p in pushers))
        try:
            while not attack.done():  # sample the peak while the clients push
                peak = max(peak, rss(server.proc.pid))
                await asyncio.wait([attack], timeout=0.1)
            await attack
            peak = max(peak, rss(server.proc.pid))
            outcomes = sorted(p.outcome for p in pushers)
            sent = sum(p.sent for p in pushers)
            growth = peak - baseline
            print(f"{kind}: baseline {baseline / MIB:.0f} MiB, peak growth {growth / MIB:.1f} MiB, "
                  f"{sent} MiB pushed, outcomes {outcomes}, polite echoes {polite.echoes - echoes_before}")
            assert growth < GROWTH_LIMIT, f"{kind} grew by {growth / MIB:.0f} MiB"
            assert polite.echoes > echoes_before  # served during the attack
            # Dealt with by the policy while the clients still hold their sockets: every pusher's
            # connection leaves the live count (1013 from the write limits), the polite one stays.
            assert await wait_live(server, 1, timeout=60) == 1
            assert peak - baseline < GROWTH_LIMIT
        finally:
            for p in pushers:
                p.drop()
            attack.cancel()
