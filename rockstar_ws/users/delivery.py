"""Per-user delivery: reach or close every open connection of one user, in every process.

``await server.send_to_user(user_id, TextMessage, "hi")`` writes to this process's connections
of that user at once and sends **one** channel-layer message to the process control group
(``TENANT_CONTROL_GROUP``, which every server process joins through rockstar_ws.tenants'
listener), so each other process gets one message whatever the number of connections.
``disconnect_user`` does the same with a close. See docs/users.md.

A connection is indexed by its user id (``ctx.request.user_id``, or the session user's pk, as
the live registry counts it) when its handshake is admitted, and dropped when it ends, so a
lookup never scans the process's connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..conf import ws_settings
from ..core.logsafe import escape
from ..core.outage import outage

if TYPE_CHECKING:
    from ..core.context import Context
    from ..engine.server import WebSocketServer

__all__ = [
    "COMMAND_MESSAGE",
    "PASSWORD_CHANGED_CLOSE_CODE",
    "TOKEN_REVOKED_CLOSE_CODE",
    "USER_INACTIVE_CLOSE_CODE",
    "UserDelivery",
    "apply_command",
    "crosses_processes",
    "disconnect_user",
    "install",
    "publish_command",
    "send_to_user",
]

logger = logging.getLogger("rockstar_ws.users")

#: The channel-layer message type of a per-user command on the process control group.
COMMAND_MESSAGE = "rockstar.users.command"
#: The user was deactivated or deleted: do not reconnect (rockstar.js stops).
USER_INACTIVE_CLOSE_CODE = 4403
#: The user's password changed: get a new token (log in again), then reconnect.
PASSWORD_CHANGED_CLOSE_CODE = 4401
#: The connection's access token was blacklisted: get a new token, then reconnect.
TOKEN_REVOKED_CLOSE_CODE = 4401

# Tells this process's own commands apart when the control group hands them back.
_ORIGIN = uuid.uuid4().hex
_MAX_REASON_BYTES = 123  # RFC 6455: a close frame's payload is at most 125 bytes, 2 for the code

Release = Callable[[], Awaitable[None]]


class _Index:
    """server name -> user id -> the admitted connections' contexts (by id, in admission order)."""

    def __init__(self) -> None:
        self.by_server: dict[str, dict[str, dict[int, Context]]] = {}
        #: The loop that serves the indexed connections (the first admission's).
        self.loop: asyncio.AbstractEventLoop | None = None

    def add(self, server_name: str, user_id: str, ctx: Context) -> None:
        self.by_server.setdefault(server_name, {}).setdefault(user_id, {})[id(ctx)] = ctx

    def discard(self, server_name: str, user_id: str, ctx: Context) -> None:
        users = self.by_server.get(server_name)
        if users is None:
            return
        ctxs = users.get(user_id)
        if ctxs is not None:
            ctxs.pop(id(ctx), None)
            if not ctxs:
                del users[user_id]

    def contexts(self, server_name: str | None, user_id: str | None) -> list[Context]:
        """The contexts of one user (every user: None) on one server (every server: None)."""
        servers = list(self.by_server.values()) if server_name is None else [self.by_server.get(server_name) or {}]
        out: list[Context] = []
        for users in servers:
            if user_id is not None:
                out += (users.get(user_id) or {}).values()
            else:
                out += [c for ctxs in list(users.values()) for c in list(ctxs.values())]
        return out


_index = _Index()
_installed: set[int] = set()


def _user_id_of(ctx: Context) -> str | None:
    from ..registry.records import user_id_of

    return user_id_of(ctx)


def crosses_processes(layer: Any) -> bool:
    """True when ``layer`` reaches other processes (channels-redis), False for the in-memory one."""
    from ..layers import crosses_processes as reaches_other_processes

    return reaches_other_processes(layer)


def _ensure_control() -> Any:
    """Start the process control listener (rockstar_ws.tenants) on this loop, once."""
    from ..tenants import control_listener

    return control_listener()


async def admit(ctx: Context) -> Release | None:
    """Admission check: index the connection under its user (never refuses)."""
    server = ctx.server
    from .series import sampler

    sampler.ensure_started()
    control = _ensure_control()
    if not control.joined.is_set() and crosses_processes(server.channel_layer):
        # The first connection of a process waits (bounded) for the control group, so a command
        # sent right after it opened cannot miss it; a failing layer never blocks handshakes long.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await control.joined.wait()
    user_id = _user_id_of(ctx)
    if user_id is None:
        return None
    _index.loop = asyncio.get_running_loop()
    name = server.name
    _index.add(name, user_id, ctx)

    async def release() -> None:
        _index.discard(name, user_id, ctx)
    return release


def install(server: WebSocketServer) -> None:
    """Index ``server``'s connections by user, so ``send_to_user``/``disconnect_user`` and
    revocation reach them (done for ``default_server`` at start-up; call it for your own servers).
    Idempotent."""
    if id(server) in _installed:
        return
    _installed.add(id(server))
    from .series import sampled_servers

    sampled_servers.append(server)
    # After the live registry's admission (a refused handshake is never indexed).
    server.add_stage(admit, name="users", after="admission" if "admission" in server.pipeline.names else None)
    from ..tenants import add_control_handler

    add_control_handler(COMMAND_MESSAGE, _on_control_message)


# -- commands -----------------------------------------------------------------------------
def _clean_user_id(user_id: Any) -> str | None:
    if user_id is None:
        return None
    if isinstance(user_id, bool) or (not isinstance(user_id, str | int) and not hasattr(user_id, "hex")):
        raise TypeError(f"user_id must be the user's id (str or int, the token's user id claim), "
                        f"not {type(user_id).__name__}")
    text = str(user_id)
    if not text:
        raise ValueError("user_id must not be empty")
    return text


def _check_close(code: int, reason: str) -> None:
    if isinstance(code, bool) or not isinstance(code, int) or not (code == 1000 or 3000 <= code <= 4999):
        raise ValueError(f"close code must be 1000 or 3000-4999 (application codes), not {code!r}")
    if not isinstance(reason, str) or len(reason.encode("utf-8")) > _MAX_REASON_BYTES:
        raise ValueError(f"close reason must be a str of at most {_MAX_REASON_BYTES} UTF-8 bytes")


def _matches(ctx: Context, command: dict[str, Any]) -> bool:
    route = command.get("route")
    if route is not None and route not in (ctx.route.path, ctx.route.name, ctx.route.label):
        return False
    tenant = command.get("tenant")
    if tenant is not None and ctx.request.tenant_id != tenant:
        return False
    jti = command.get("jti")
    if jti is not None:
        from rest_framework_simplejwt.settings import api_settings

        claim = api_settings.JTI_CLAIM
        if not claim or str((ctx.request.claims or {}).get(claim)) != jti:
            return False
    return True


async def apply_command(command: dict[str, Any]) -> int:
    """Apply a per-user command to this process's connections; how many it reached.

    Runs on the loop that serves the connections (handed over when called from another one).
    """
    loop = _index.loop
    if loop is not None and loop is not asyncio.get_running_loop() and loop.is_running() and not loop.is_closed():
        fut = asyncio.run_coroutine_threadsafe(_apply_here(command), loop)
        return await asyncio.wrap_future(fut)
    return await _apply_here(command)


async def _apply_here(command: dict[str, Any]) -> int:
    if command.get("revoke"):
        from ..auth.manager import clear_user_cache

        clear_user_cache()  # a revoked user's or token's cached lookup must not admit a new handshake
    targets = []
    for ctx in _index.contexts(command.get("server"), command.get("user")):
        conn = ctx.connection
        if conn is not None and not conn.closed and _matches(ctx, command):
            targets.append(conn)
    if not targets:
        return 0
    if command.get("op") == "send":
        kind, data = command["payload"]
        results = await asyncio.gather(*(_write(c, kind, data) for c in targets))
        return sum(results)
    code, reason = int(command.get("code", USER_INACTIVE_CLOSE_CODE)), str(command.get("reason", ""))
    await asyncio.gather(*(_close(c, code, reason) for c in targets))
    logger.info("closed %d connection(s) of user %s with %d (%s)", len(targets), escape(command.get("user")),
                code, escape(reason))
    return len(targets)


async def _write(conn: Any, kind: int, data: Any) -> int:
    try:
        await conn.write_message(kind, data)
    except Exception:  # closed meanwhile, or a slow client closed by its write guard
        return 0
    return 1


async def _close(conn: Any, code: int, reason: str) -> None:
    try:
        await conn.close(code, reason)
    except Exception:  # the client is gone already
        logger.debug("closing %s failed", conn, exc_info=True)


async def _on_control_message(message: Mapping[str, Any]) -> None:
    """The control listener's handler for :data:`COMMAND_MESSAGE`."""
    if message.get("origin") == _ORIGIN:
        return  # applied here before it was published
    try:
        await apply_command(dict(message))
    except Exception:
        logger.exception("applying a per-user command from another process failed")


async def publish_command(server: WebSocketServer | None, command: dict[str, Any]) -> bool:
    """Send ``command`` to every other process (one layer message each); False when it could not
    (no layer that crosses processes, or the layer failed: logged)."""
    layer = server.channel_layer if server is not None else _default_layer()
    if not crosses_processes(layer):
        return False
    message = {"type": COMMAND_MESSAGE, "origin": _ORIGIN, **command}
    try:
        await layer.group_send(ws_settings.TENANT_CONTROL_GROUP, message)
    except Exception as exc:
        outage.failed("channel layer", f"sending a per-user {command.get('op')} to other processes", exc,
                      holds=False, log=logger)
        return False
    return True


def _default_layer() -> Any:
    from channels.layers import get_channel_layer

    return get_channel_layer(ws_settings.CHANNEL_LAYER)


def _payload(message_type: int, data: str | bytes) -> list[Any]:
    from ..groups.encoding import payload, ws_message

    return payload(ws_message(message_type, data))


async def send_to_user(server: WebSocketServer, user_id: Any, message_type: int, data: str | bytes, *,
                       route: str | None = None, tenant: str | None = None) -> int:
    """``server.send_to_user()``: see :meth:`UserDelivery.send_to_user`."""
    uid = _clean_user_id(user_id)
    command = {"server": server.name, "op": "send", "user": uid, "route": route,
               "tenant": None if tenant is None else str(tenant), "payload": _payload(message_type, data)}
    delivered = await apply_command(command)
    await publish_command(server, command)
    return delivered


async def disconnect_user(server: WebSocketServer, user_id: Any, code: int = USER_INACTIVE_CLOSE_CODE,
                          reason: str = "", *, route: str | None = None, tenant: str | None = None,
                          jti: str | None = None, revoke: bool = False) -> int:
    """``server.disconnect_user()``: see :meth:`UserDelivery.disconnect_user`. ``jti`` narrows it
    to the connections of one access token; ``revoke`` also clears every process's user cache."""
    uid = _clean_user_id(user_id)
    if uid is None and jti is None:
        raise ValueError("disconnect_user() needs a user id (or a jti)")
    _check_close(code, reason)
    command = {"server": server.name, "op": "close", "user": uid, "route": route,
               "tenant": None if tenant is None else str(tenant), "jti": None if jti is None else str(jti),
               "code": code, "reason": reason, "revoke": revoke}
    closed = await apply_command(command)
    await publish_command(server, command)
    return closed


class UserDelivery:
    """The per-user methods of :class:`~rockstar_ws.server.WebSocketServer` (docs/users.md)."""

    name: str

    async def send_to_user(self, user_id: Any, message_type: int, data: str | bytes, *,
                           route: str | None = None, tenant: str | None = None) -> int:
        """Send one message to every open connection of ``user_id`` in every process.

        ``user_id`` is the token's user id claim (the user's pk by default; what
        ``ctx.request.user_id`` holds). ``route`` (a route's path, name or label) and ``tenant``
        narrow it. Returns how many connections in this process were written to; other processes
        get one channel-layer message each. Layer trouble is logged, never raised.
        """
        return await send_to_user(self, user_id, message_type, data, route=route, tenant=tenant)  # type: ignore[arg-type]

    def send_to_user_sync(self, user_id: Any, message_type: int, data: str | bytes, *,
                          route: str | None = None, tenant: str | None = None) -> int:
        """Blocking :meth:`send_to_user` for views, signals and management commands."""
        from asgiref.sync import async_to_sync

        return async_to_sync(self.send_to_user)(user_id, message_type, data, route=route, tenant=tenant)

    async def disconnect_user(self, user_id: Any, code: int = USER_INACTIVE_CLOSE_CODE, reason: str = "", *,
                              route: str | None = None, tenant: str | None = None) -> int:
        """Close every open connection of ``user_id`` in every process with ``code`` (1000 or
        3000-4999) and ``reason``; narrowed by ``route`` and ``tenant`` like :meth:`send_to_user`.
        Returns how many closed in this process."""
        return await disconnect_user(self, user_id, code, reason, route=route, tenant=tenant)  # type: ignore[arg-type]

    def disconnect_user_sync(self, user_id: Any, code: int = USER_INACTIVE_CLOSE_CODE, reason: str = "", *,
                             route: str | None = None, tenant: str | None = None) -> int:
        """Blocking :meth:`disconnect_user`."""
        from asgiref.sync import async_to_sync

        return async_to_sync(self.disconnect_user)(user_id, code, reason, route=route, tenant=tenant)
