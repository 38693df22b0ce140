"""One WebSocket connection, as a handler sees it (the reference's ``WebSocketConnection``).

Messages from the client are pumped into a small inbox by the consumer (see consumer.py); a
handler reads them with ``await conn.read_message()`` or ``async for``. The inbox is bounded in
messages (``INBOX_SIZE``: over it the connection closes with 1008) and in bytes
(``INBOX_MAX_BYTES``: at it the pump stops reading until the handler catches up, so the server's
own back-pressure reaches the client; docs/protection.md). Reads and writes after
the connection has ended raise :class:`~rockstar_ws.errors.ConnectionClosed`.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from asgiref.sync import async_to_sync

from ..conf import ws_settings
from .errors import ConnectionClosed
from .logsafe import escape
from .messages import BinaryMessage, CloseCode, MessageType, TextMessage
from .transport import ServerBridge

if TYPE_CHECKING:
    from .context import Context

__all__ = ["ConnectionState", "GroupMembership", "Message", "SyncConnection", "WebSocketConnection"]

Message = tuple[MessageType, "str | bytes"]



class ConnectionState(enum.IntEnum):
    """A connection's life, in order: a state is only ever left for a later one."""

    CONNECTING = 0
    OPEN = 1
    CLOSED = 2


CONNECTING, OPEN, CLOSED = ConnectionState.CONNECTING, ConnectionState.OPEN, ConnectionState.CLOSED

logger = logging.getLogger("rockstar_ws")


class GroupMembership(Protocol):
    """What ``conn.join()``, ``conn.leave()`` and ``conn.subscribe()`` delegate to: the engine's
    composition of the group hub, presence and pub/sub (rockstar_ws.engine.membership)."""

    async def join(self, conn: WebSocketConnection, group: str, *, presence: bool = False,
                   info: dict[str, Any] | None = None,
                   on_presence: Callable[[Any], Awaitable[None]] | None = None) -> None:
        """Add ``conn`` to ``group`` (and to its presence with ``presence=True``)."""

    async def leave(self, conn: WebSocketConnection, group: str) -> None:
        """Remove ``conn`` from ``group`` (and its presence)."""

    async def subscribe(self, conn: WebSocketConnection, group: str, *, since: Any = None,
                        on_publication: Any = None) -> Any:
        """Subscribe ``conn`` to pub/sub ``group`` of its tenant."""


class Guard(Protocol):
    """What a connection asks of its guard (rockstar_ws.limits.guard): guarded writes."""

    #: True when the next write needs no watching (it cannot wait, it stays under the byte limit).
    write_ready: Callable[[], bool]

    async def send(self, message: dict[str, Any]) -> None:
        """Write one ASGI message to the client, within the write limits."""


class WebSocketConnection:
    """An accepted WebSocket connection.

    ``read_message()`` returns ``(message_type, data)``: ``str`` for text, ``bytes`` for binary.
    ``write_message(message_type, data)`` sends one message. ``close(code, reason)`` is
    idempotent. ``remote_addr`` and ``local_addr`` are ``"ip:port"`` strings.
    """

    __slots__ = ("ctx", "_send", "_bridge", "_inbox", "_inbox_size", "_inbox_bytes", "_inbox_max_bytes", "_room",
                 "_waiter", "_state", "close_code", "close_reason", "channel_name", "subprotocol", "groups",
                 "_on_close", "_guard", "_write_ready", "_write_now", "_membership", "_reader", "_discarded",
                 "_closing", "_direct", "_unpark", "__weakref__")

    def __init__(self, ctx: Context, send: Callable[[dict[str, Any]], Awaitable[None]],
                 *, inbox_size: int = 256, inbox_max_bytes: int = 0,
                 bridge: ServerBridge | None = None,
                 membership: Callable[[], GroupMembership] | None = None) -> None:
        self.ctx = ctx
        self._send = send
        self._bridge = bridge or ServerBridge(send)
        #: The bridge's direct write (None on most servers): see ServerBridge.direct_writer.
        self._write_now = self._bridge.direct_writer()
        # Created by the first message: an idle connection does not hold an empty deque (~760 B).
        self._inbox: deque[Message] | None = None
        self._inbox_size = inbox_size
        #: Bytes (characters for text) of the messages in the inbox; the pump pauses at the bound.
        self._inbox_bytes = 0
        self._inbox_max_bytes = inbox_max_bytes
        self._room: asyncio.Future[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._state = CONNECTING
        #: Close code once closed: the client's, the server's, or 1006 when the client vanished.
        self.close_code: int | None = None
        self.close_reason: str = ""
        #: This connection's Channels channel name (when a channel layer is configured).
        self.channel_name: str | None = None
        self.subprotocol: str | None = None
        #: Names of the broadcast groups this connection is a member of.
        self.groups: set[str] = set()
        self._on_close: list[Callable[[WebSocketConnection], Any]] = []
        #: Write limits, rate limit and idle timer (rockstar_ws.guard); None when all are off.
        self._guard: Guard | None = None
        #: The guard's ``write_ready`` (None without a guard): True lets a write skip the guard.
        self._write_ready: Callable[[], bool] | None = None
        self._membership = membership
        #: The task reading the client's messages (the consumer's pump) while it reads; None otherwise.
        self._reader: asyncio.Task[Any] | None = None
        #: Messages the pump read and dropped after the close: a lingering close watches it.
        self._discarded = 0
        #: The close frame's send when the pump itself closed on a server where closes linger.
        self._closing: asyncio.Future[None] | None = None
        #: While the pump is parked (see :meth:`park`): the reader's own receive of one message.
        self._direct: Callable[[], Awaitable[Message | None]] | None = None
        #: While the pump is parked: what wakes it (it reads again until a reader waits).
        self._unpark: Callable[[], None] | None = None

    # -- facts ---------------------------------------------------------------------------
    @property
    def remote_addr(self) -> str:
        """The client's address, ``"ip:port"``."""
        return self.ctx.request.remote_addr

    @property
    def local_addr(self) -> str:
        """The server's address, ``"ip:port"``."""
        return self.ctx.request.local_addr

    @property
    def closed(self) -> bool:
        """True once the connection has ended (either side closed, or the client vanished)."""
        return self._state == CLOSED

    @property
    def is_open(self) -> bool:
        """True between the accept and the end of the connection."""
        return self._state == OPEN

    @property
    def state(self) -> ConnectionState:
        """Where the connection is in its life (only the connection itself changes it)."""
        return self._state

    # -- what the engine, the guard and the group hub may do to a connection ----------------
    def opened(self, subprotocol: str | None = None) -> None:
        """The handshake was accepted (with ``subprotocol``): CONNECTING -> OPEN."""
        if self._state != CONNECTING:
            raise RuntimeError(f"{self!r}: accepted twice, or after it closed")
        self._state = OPEN
        self.subprotocol = subprotocol

    @property
    def transport(self) -> ServerBridge:
        """The server bridge this connection writes through."""
        return self._bridge

    @property
    def send_raw(self) -> Callable[[dict[str, Any]], Awaitable[None]]:
        """The server's ``send``, unguarded: for the guard and the group hub, which apply the
        slow-client policy themselves."""
        return self._send

    @property
    def guard(self) -> Any:
        """The write limits, rate limit and idle timer of this connection (None: all off)."""
        return self._guard

    def set_guard(self, guard: Guard | None) -> None:
        """Attach the guard before the connection opens (rockstar_ws.limits.guard.new_guard)."""
        if self._state != CONNECTING:
            raise RuntimeError(f"{self!r}: the guard is set before the connection opens")
        self._guard = guard
        self._write_ready = guard.write_ready if guard is not None else None

    def reading_by(self, task: asyncio.Task[Any] | None) -> None:
        """The pump tells which task reads the client now (None: nobody reads)."""
        self._reader = task

    @property
    def reading(self) -> bool:
        """True while the pump reads this client's messages."""
        return self._reader is not None

    def park(self, direct: Callable[[], Awaitable[Message | None]], unpark: Callable[[], None]) -> None:
        """The pump stops reading and lets the handler read for itself: while parked,
        :meth:`read_message` with an empty inbox awaits ``direct()`` (one client message received
        and processed as the pump would, in the reader's task: one task wake-up per message; it
        returns the message when it is simply the next one for the reader, None when it went
        through the pump's checks instead), and
        ``unpark()`` gives the reading back to the pump (a read with a timeout, the close)."""
        self._direct = direct
        self._unpark = unpark

    def unparked(self) -> None:
        """The pump reads again (called by the pump when it wakes)."""
        self._direct = None
        self._unpark = None

    @property
    def parked(self) -> bool:
        """True while the pump is parked and readers receive for themselves."""
        return self._unpark is not None

    @property
    def handed_off(self) -> bool:
        """True when a reader waiting in :meth:`read_message` has just been handed a message
        (the pump may park: that reader will be back for the next one)."""
        waiter = self._waiter
        return waiter is not None and waiter.done()

    def wake_parked_pump(self) -> None:
        """Give the reading back to a parked pump (no-op when it is not parked)."""
        unpark = self._unpark
        if unpark is not None:
            self._direct = None
            self._unpark = None
            unpark()

    def discard(self) -> None:
        """The pump read a message after the close and dropped it (a lingering close counts them)."""
        self._discarded += 1

    @property
    def discarded(self) -> int:
        """Messages read and dropped after the close."""
        return self._discarded

    @property
    def closing(self) -> asyncio.Future[None] | None:
        """The close frame's send still under way when the pump itself closed (granian lingers)."""
        return self._closing

    def on_close(self, callback: Callable[[WebSocketConnection], Any]) -> None:
        """Call ``callback(conn)`` once when the connection ends (at once if it has ended)."""
        if self._state == CLOSED:
            callback(self)
        else:
            self._on_close.append(callback)

    # -- fed by the consumer (hot path) --------------------------------------------------
    def feed(self, message: Message) -> bool:
        """Queue a client message for the handler. False when the inbox is full in messages
        (``INBOX_SIZE``); the byte bound is the pump's to wait on (:meth:`wait_for_room`)."""
        inbox = self._inbox
        if inbox is None:
            inbox = self._inbox = deque()
        elif len(inbox) >= self._inbox_size:
            return False
        inbox.append(message)
        # len() of the str for text, like read_message() subtracts: the count never drifts.
        self._inbox_bytes += len(message[1])
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True

    @property
    def inbox_full(self) -> bool:
        """True when the inbox holds ``INBOX_MAX_BYTES`` or more: the pump must stop reading."""
        limit = self._inbox_max_bytes
        return bool(limit) and self._inbox_bytes >= limit

    async def wait_for_room(self) -> None:
        """Wait until the handler has read the inbox below ``INBOX_MAX_BYTES``, or the connection ended."""
        while self.inbox_full and self._state != CLOSED:
            room = self._room = asyncio.get_running_loop().create_future()
            try:
                await room
            finally:
                self._room = None

    def _wake_pump(self) -> None:
        room = self._room
        if room is not None and not room.done():
            room.set_result(None)

    def mark_closed(self, code: int, reason: str = "") -> None:
        """Record the end of the connection (the client left, or a close is under way): -> CLOSED.

        Wakes the handler's read and the pump, runs the on-close callbacks; sends nothing (that is
        :meth:`close`, which starts here). Idempotent: the first code and reason stay."""
        if self._state == CLOSED:
            return
        self._state = CLOSED
        self.close_code = code
        self.close_reason = reason
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._wake_pump()
        self.wake_parked_pump()
        for callback in self._on_close:
            try:
                callback(self)
            except Exception:  # pragma: no cover - a callback must never break the close path
                logger.exception("on-close callback failed")
        self._on_close.clear()

    # -- the reference's API -------------------------------------------------------------
    async def read_message(self, timeout: float | None = None) -> Message:
        """Wait for the next message: ``(MessageType.TEXT, str)`` or ``(MessageType.BINARY, bytes)``.

        Raises :class:`ConnectionClosed` once the connection has ended (after the messages that
        arrived before the close have been read), and :class:`TimeoutError` when ``timeout``
        seconds pass without a message (the connection stays open).
        """
        while True:
            if self._inbox:
                message = self._inbox.popleft()
                data = message[1]
                self._inbox_bytes -= len(data)
                if self._room is not None and not self.inbox_full:
                    self._wake_pump()
                return message
            if self._state == CLOSED:
                raise ConnectionClosed(self.close_code or CloseCode.NO_STATUS, self.close_reason)
            direct = self._direct
            if direct is not None:
                if timeout is None:  # the pump is parked: receive the next message in this task
                    item = await direct()
                    if item is not None:  # nothing queued before it: it is the next one
                        return item
                    continue
                # A timeout cancels what it waits for: only the pump's receive may be cancelled.
                self.wake_parked_pump()
            waiter = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                if timeout is None:
                    await waiter
                else:
                    async with asyncio.timeout(timeout):
                        await waiter
            finally:
                self._waiter = None

    async def write_message(self, message_type: int, data: str | bytes) -> None:
        """Send one message. Text data may be ``str`` or UTF-8 ``bytes``; binary may be ``bytes`` or ``str``.

        Ping and pong frames are the server's job (daphne's ``--ping-interval``, uvicorn's
        ``--ws-ping-interval``): ASGI gives applications no way to send them.
        """
        if self._state != OPEN:
            if self._state == CONNECTING:
                raise RuntimeError("write_message() before the connection was accepted")
            raise ConnectionClosed(self.close_code or CloseCode.NO_STATUS, self.close_reason)
        if message_type == TextMessage:
            if not isinstance(data, str):
                data = bytes(data).decode("utf-8")
            binary = False
        elif message_type == BinaryMessage:
            if isinstance(data, str):
                data = data.encode("utf-8")
            elif type(data) is not bytes:
                data = bytes(data)
            binary = True
        elif message_type == MessageType.CLOSE:
            await self.close()
            return
        elif message_type in (MessageType.PING, MessageType.PONG):
            raise ValueError("Ping and pong frames are sent by the ASGI server (see its ping interval); "
                             "ASGI applications cannot send them")
        else:
            raise ValueError(f"Unknown message type {message_type!r}: use TextMessage (1) or BinaryMessage (2)")
        now = self._write_now
        if now is not None and now(binary, data):  # written without the server's send (daphne)
            return
        message = {"type": "websocket.send", "bytes": data} if binary else {"type": "websocket.send", "text": data}
        ready = self._write_ready
        if ready is None or ready():  # no guard, or nothing for it to watch in this write
            await self._send(message)
        else:  # a client that does not read makes the write fail (1013) instead of hang
            await self._guard.send(message)  # type: ignore[union-attr]

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Close the connection. Idempotent: closing a closed connection does nothing. Never
        raises for a transport that is gone (the close has happened anyway).

        On granian the close frame is sent once the client has paused sending (at most 1 s;
        docs/protection.md): granian ends the TCP connection right after it.
        """
        sending = self.begin_close(code, reason)
        if sending is None:
            return
        if self._bridge.lingers and self._reader is not None and asyncio.current_task() is self._reader:
            # The pump closes (a size, rate or inbox limit): it must go on reading while the close
            # lingers, or the client's unread frames would reset the connection (servers/bridges.py).
            self._closing = asyncio.ensure_future(sending)
            return
        await sending

    def begin_close(self, code: int, reason: str = "", wait: float | None = None) -> Coroutine[Any, Any, None] | None:
        """The one close path: the connection is CLOSED when this returns (reads end, callbacks
        ran); the returned awaitable sends the close frame, dropping the TCP connection after
        ``wait`` seconds (default ``CLOSE_TIMEOUT``) when the frame cannot be written. None when
        there is nothing to send (closed already, or never accepted)."""
        if self._state == CLOSED:
            return None
        was_open = self._state == OPEN
        self.mark_closed(code, reason)
        if not was_open:
            return None
        return self._send_close(code, reason[:120], float(ws_settings.CLOSE_TIMEOUT) or 1.0 if wait is None else wait)

    async def _send_close(self, code: int, reason: str, wait: float) -> None:
        if self._bridge.lingers and self._reader is not None:
            await self._bridge.linger(self, wait)
        try:  # a client that never reads would hold the close frame (and us) behind its data
            await self._bridge.close_or_drop(code, reason, wait)
        except Exception:  # the transport is already gone: the close has happened anyway
            pass

    async def __aiter__(self) -> AsyncIterator[Message]:
        """``async for message_type, data in conn``: ends when the connection closes."""
        while True:
            try:
                yield await self.read_message()
            except ConnectionClosed:
                return

    # -- broadcast groups (groups.py) ---------------------------------------------------
    async def join(self, group: str, *, presence: bool = False, info: dict[str, Any] | None = None,
                   on_presence: Callable[[Any], Awaitable[None]] | None = None) -> None:
        """Join broadcast ``group`` (in every process); left automatically when the connection ends.

        With ``presence=True`` the connection is also listed by ``server.presence(group)`` with its
        public ``info`` (a small JSON object), and ``on_presence`` (optional) is called with each
        coalesced :class:`~rockstar_ws.presence.PresenceUpdate` of the group (docs/presence.md).
        Raises :class:`~rockstar_ws.groups.InvalidGroupName` for a name the channel layer cannot
        carry, :class:`ConnectionClosed` when the connection has ended.
        """
        await self._groups().join(self, group, presence=presence, info=info, on_presence=on_presence)

    async def leave(self, group: str) -> None:
        """Leave broadcast ``group`` (and its presence); no-op when not a member."""
        await self._groups().leave(self, group)

    async def subscribe(self, group: str, *, since: Any = None, on_publication: Any = None) -> Any:
        """Subscribe this connection to pub/sub ``group`` of its tenant; see ``rockstar_ws.pubsub.route.subscribe``."""
        return await self._groups().subscribe(self, group, since=since, on_publication=on_publication)

    def _groups(self) -> GroupMembership:
        if self._membership is None:
            raise RuntimeError("broadcast groups need a connection served by a WebSocketServer")
        return self._membership()

    # -- helpers -------------------------------------------------------------------------
    async def send_text(self, data: str) -> None:
        """Shortcut for ``write_message(TextMessage, data)``."""
        await self.write_message(TextMessage, data)

    async def send_bytes(self, data: bytes) -> None:
        """Shortcut for ``write_message(BinaryMessage, data)``."""
        await self.write_message(BinaryMessage, data)

    async def read_json(self, timeout: float | None = None, *, max_size: int | None = None) -> Any:
        """Read one message (text, or UTF-8 binary) and parse it as JSON.

        A message over ``max_size`` bytes (the upgrader's ``max_message_size`` is enforced
        anyway) closes the connection with 1009; a message that is not JSON (or nests deeper than
        Python can parse) closes it with 1007, the RFC's "invalid payload data". Both then raise
        :class:`ConnectionClosed`, so ``while True: await conn.read_json()`` ends quietly.
        Raises :class:`TimeoutError` like :meth:`read_message`.
        """
        _type, data = await self.read_message(timeout)
        if max_size is not None:
            size = len(data.encode("utf-8")) if isinstance(data, str) else len(data)
            if size > max_size:
                await self.close(CloseCode.MESSAGE_TOO_BIG, "message too big")
                raise ConnectionClosed(CloseCode.MESSAGE_TOO_BIG, "message too big")
        try:
            return json.loads(data)
        except (ValueError, RecursionError):
            await self.close(CloseCode.INVALID_PAYLOAD, "invalid JSON")
            raise ConnectionClosed(CloseCode.INVALID_PAYLOAD, "invalid JSON") from None

    async def write_json(self, value: Any) -> None:
        """Send ``value`` as one JSON text message."""
        await self.write_message(TextMessage, json.dumps(value, separators=(",", ":")))

    def __repr__(self) -> str:
        state = ("connecting", "open", "closed")[self._state]
        # Log lines name connections by this repr: the path is the client's text.
        return f"<WebSocketConnection {escape(self.remote_addr)} {escape(self.ctx.request.path)} {state}>"


class SyncConnection:
    """The blocking twin of :class:`WebSocketConnection`, given to plain ``def`` handlers.

    Each method blocks the handler's worker thread until the event loop has done the work, so
    the reference's Go loops port line by line, and Django ORM calls can run in between.
    """

    __slots__ = ("_conn",)

    def __init__(self, conn: WebSocketConnection) -> None:
        self._conn = conn

    @property
    def remote_addr(self) -> str:
        """The client's address, ``"ip:port"``."""
        return self._conn.remote_addr

    @property
    def local_addr(self) -> str:
        """The server's address, ``"ip:port"``."""
        return self._conn.local_addr

    @property
    def closed(self) -> bool:
        """True once the connection has ended."""
        return self._conn.closed

    @property
    def async_connection(self) -> WebSocketConnection:
        """The underlying async connection."""
        return self._conn

    def read_message(self, timeout: float | None = None) -> Message:
        """Blocking :meth:`WebSocketConnection.read_message`."""
        return async_to_sync(self._conn.read_message)(timeout)

    def write_message(self, message_type: int, data: str | bytes) -> None:
        """Blocking :meth:`WebSocketConnection.write_message`."""
        async_to_sync(self._conn.write_message)(message_type, data)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Blocking :meth:`WebSocketConnection.close`."""
        async_to_sync(self._conn.close)(code, reason)

    def __iter__(self):
        """``for message_type, data in conn``: ends when the connection closes."""
        while True:
            try:
                yield self.read_message()
            except ConnectionClosed:
                return

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._conn, name)
        if asyncio.iscoroutinefunction(attr):
            return async_to_sync(attr)
        return attr
