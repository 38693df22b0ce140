"""Raw-socket attack helpers: hand-built handshakes and frames that no polite client sends."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
from typing import Any

__all__ = ["RawClient", "close_code", "frame", "handshake", "rst"]

KEY = base64.b64encode(b"0123456789abcdef").decode()


def handshake(path: str, port: int, *, origin: str | None = None, version: str | None = "13",
              upgrade: bool = True, key: str | None = KEY, extra: list[str] | None = None,
              end: bool = True, host: str | None = None) -> bytes:
    """A WebSocket upgrade request; each keyword removes or spoils one part of it."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host if host is not None else f'127.0.0.1:{port}'}"]
    if upgrade:
        lines += ["Upgrade: websocket", "Connection: Upgrade"]
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    if version is not None:
        lines.append(f"Sec-WebSocket-Version: {version}")
    if origin is not None:
        lines.append(f"Origin: {origin}")
    lines += extra or []
    text = "\r\n".join(lines) + "\r\n"
    return (text + "\r\n" if end else text).encode("latin-1")


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, mask: bool = True, rsv: int = 0,
          length: int | None = None) -> bytes:
    """One frame. ``mask=False`` sends it unmasked (illegal from a client); ``length`` lies about
    the payload length; ``rsv`` sets reserved bits (0-7)."""
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv & 7) << 4 | opcode])
    mbit = 0x80 if mask else 0
    if n < 126:
        head += bytes([mbit | n])
    elif n < 65536:
        head += bytes([mbit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mbit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def stalled_reader(server: Any, path: str, *, subprotocol: str | None = None,
                   first: bytes | None = None) -> socket.socket:
    """A client that completes the handshake (and sends ``first`` as one text message), then
    never reads: a blocking raw socket with a tiny receive buffer (a client library would keep
    reading into its own memory)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    extra = [f"Sec-WebSocket-Protocol: {subprotocol}"] if subprotocol else []
    sock.sendall(handshake(path, server.port, extra=extra))
    sock.settimeout(10)
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    if first is not None:
        sock.sendall(frame(0x1, first))
    return sock


def close_code(payload: bytes) -> int | None:
    """The code in a close frame's payload (None: no code)."""
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None


def rst(writer: asyncio.StreamWriter) -> None:
    """Drop the connection with a TCP RST (no FIN, no close frame)."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class RawClient:
    """A TCP connection that speaks exactly the bytes a test gives it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.status: int | None = None
        self.response_headers: dict[str, str] = {}

    @classmethod
    async def open(cls, server: Any) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        return cls(reader, writer)

    @classmethod
    async def upgrade(cls, server: Any, path: str, **kw: Any) -> RawClient:
        """Open a connection and send a handshake; ``status`` is the HTTP status of the answer."""
        client = await cls.open(server)
        await client.send(handshake(path, server.port, **kw))
        await client.read_response()
        return client

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_response(self, timeout: float = 10) -> int:
        """Read the HTTP response head; 0 when the server closed without one."""
        try:
            head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        except asyncio.IncompleteReadError as exc:
            head = exc.partial
        if not head:
            self.status = 0
            return 0
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                self.response_headers[k.strip().lower()] = v.strip()
        return self.status

    async def read_frame(self, timeout: float = 10) -> tuple[int, bytes] | None:
        """The next frame from the server: ``(opcode, payload)``; None when the TCP connection ended."""
        try:
            async with asyncio.timeout(timeout):
                b0, b1 = await self.reader.readexactly(2)
                n = b1 & 0x7F
                if n == 126:
                    n = struct.unpack("!H", await self.reader.readexactly(2))[0]
                elif n == 127:
                    n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
                return b0 & 0x0F, await self.reader.readexactly(n)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    async def close_code(self, timeout: float = 10) -> int | None:
        """Read frames until a close frame (its code) or the end of the connection (None)."""
        while True:
            got = await self.read_frame(timeout)
            if got is None:
                return None
            if got[0] == 8:
                return close_code(got[1])

    async def ended(self, timeout: float = 10) -> bool:
        """True when the server ends the TCP connection within ``timeout`` (data is discarded)."""
        try:
            async with asyncio.timeout(timeout):
                while await self.reader.read(65536):
                    pass
            return True
        except ConnectionError:
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.writer.close()

    def rst(self) -> None:
        rst(self.writer)
