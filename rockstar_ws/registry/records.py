"""What the registry keeps per connection, and the snapshot it answers with."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..conf import ws_settings

if TYPE_CHECKING:
    from ..core.context import Context


__all__ = ["LIMIT_REASONS", "ConnectionRecord", "Release", "build_snapshot", "fields_and_checks", "process_name",
           "user_id_of"]

logger = logging.getLogger("rockstar_ws.registry")

Release = Callable[[], Awaitable[None]]

#: The client-safe reason of each limit's 429 refusal.
LIMIT_REASONS = {
    "process": "too many connections to this server",
    "tenant": "too many connections for this tenant",
    "user": "too many connections for this user",
    "ip": "too many connections from this address",
}
_PREFIX_OF = {"route": "r:", "tenant": "t:", "user": "u:", "ip": "i:"}
_GROUP_OF = {v: k for k, v in _PREFIX_OF.items()}


def process_name() -> str:
    """This process as the registry names it: ``hostname:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(slots=True)
class ConnectionRecord:
    """One live connection as the registry keeps it."""

    id: str
    route: str
    host: str
    tenant_id: str | None
    user_id: str | None
    remote_addr: str
    connected_at: float
    process: str

    def as_dict(self) -> dict[str, Any]:
        """The record as plain JSON-ready data (the admin JSON and ws_connections print it)."""
        return {"id": self.id, "route": self.route, "host": self.host, "tenant_id": self.tenant_id,
                "user_id": self.user_id, "remote_addr": self.remote_addr, "connected_at": self.connected_at,
                "process": self.process}


def user_id_of(ctx: Context) -> str | None:
    uid = ctx.request.user_id
    if uid is not None:
        return str(uid)
    user = ctx.user
    if user is not None and getattr(user, "is_authenticated", False):
        return str(user.pk)
    return None


def fields_and_checks(ctx: Context) -> tuple[list[str], list[tuple[str, str, int]]]:
    """The counter fields of a connection and the limits (kind, field, limit) that apply to it."""
    request = ctx.request
    fields = ["total", "r:" + ctx.route.label]
    checks: list[tuple[str, str, int]] = []
    tenant_id = request.tenant_id
    if tenant_id is not None:
        field = f"t:{tenant_id}"
        fields.append(field)
        limit = getattr(ctx.tenant, "max_connections", None)
        if limit is None:
            limit = ws_settings.MAX_CONNECTIONS_PER_TENANT
        if limit:
            checks.append(("tenant", field, int(limit)))
    user_id = user_id_of(ctx)
    if user_id is not None:
        field = f"u:{user_id}"
        fields.append(field)
        if ws_settings.MAX_CONNECTIONS_PER_USER:
            checks.append(("user", field, ws_settings.MAX_CONNECTIONS_PER_USER))
    ip = request.remote_ip
    if ip:
        field = f"i:{ip}"
        fields.append(field)
        if ws_settings.MAX_CONNECTIONS_PER_IP:
            checks.append(("ip", field, ws_settings.MAX_CONNECTIONS_PER_IP))
    return fields, checks


def build_snapshot(mode: str, nodes: list[tuple[str, dict[str, int], list[dict[str, Any]]]],
                   **extra: Any) -> dict[str, Any]:
    """The registry's answer: totals by route, tenant, user, IP and process (plus records if read)."""
    groups: dict[str, Counter[str]] = {g: Counter() for g in _PREFIX_OF}
    by_process: dict[str, int] = {}
    records: list[dict[str, Any]] = []
    for process, counts, recs in nodes:
        by_process[process] = int(counts.get("total", 0))
        for field, value in counts.items():
            group = _GROUP_OF.get(field[:2])
            if group is not None and value:
                groups[group][field[2:]] += int(value)
        records.extend(recs)
    records.sort(key=lambda r: r.get("connected_at", 0))

    def ordered(c: Counter[str]) -> dict[str, int]:
        return dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))

    return {
        "mode": mode,
        "total": sum(by_process.values()),
        "by_route": ordered(groups["route"]),
        "by_tenant": ordered(groups["tenant"]),
        "by_user": ordered(groups["user"]),
        "by_ip": ordered(groups["ip"]),
        "by_process": dict(sorted(by_process.items())),
        "connections": records,
        "generated_at": time.time(),
        **extra,
    }
