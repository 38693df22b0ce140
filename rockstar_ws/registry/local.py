"""The in-process registry: counters and records of this process, and the limits on them."""

from __future__ import annotations

import itertools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..conf import ws_settings
from ..core.errors import Deny

if TYPE_CHECKING:
    from ..core.context import Context
    from ..engine.server import WebSocketServer

from .records import LIMIT_REASONS, ConnectionRecord, build_snapshot, fields_and_checks, process_name, user_id_of

__all__ = ["LocalRegistry"]

logger = logging.getLogger("rockstar_ws.registry")

Release = Callable[[], Awaitable[None]]


class LocalRegistry:
    """The registry of this process (embedded mode): counters and records in memory."""

    mode = "local"

    def __init__(self, process: str | None = None) -> None:
        self.process = process or process_name()
        self.records: dict[str, ConnectionRecord] = {}
        self.counts: Counter[str] = Counter()
        #: Refusals by limit kind ("process", "tenant", "user", "ip").
        self.limited: Counter[str] = Counter()
        self.servers: list[WebSocketServer] = []
        self._ids = itertools.count(1)

    # -- wiring -----------------------------------------------------------------------
    def install(self, server: WebSocketServer) -> None:
        """Count ``server``'s connections and enforce the limits on its handshakes."""
        if server not in self.servers:
            self.servers.append(server)
            server.add_stage(self.admit, name="admission")

    def uninstall(self, server: WebSocketServer) -> None:
        """Stop counting ``server``'s connections."""
        if server in self.servers:
            self.servers.remove(server)
            server.pipeline.remove("admission")

    # -- admission --------------------------------------------------------------------
    def _record(self, ctx: Context) -> ConnectionRecord:
        request = ctx.request
        return ConnectionRecord(
            id=f"{next(self._ids)}", route=ctx.route.label, host=request.host, tenant_id=request.tenant_id,
            user_id=user_id_of(ctx), remote_addr=request.remote_addr, connected_at=time.time(),
            process=self.process)

    def _local_refusal(self, checks: list[tuple[str, str, int]]) -> str | None:
        counts = self.counts
        for kind, field, limit in checks:
            if counts[field] >= limit:
                return kind
        return None

    def _deny(self, kind: str, ctx: Context) -> Deny:
        self.limited[kind] += 1
        return Deny(429, LIMIT_REASONS[kind], log_detail=f"connection limit ({kind}) reached on {ctx.route.label}")

    def _add(self, record: ConnectionRecord, fields: list[str]) -> None:
        self.records[record.id] = record
        counts = self.counts
        for field in fields:
            counts[field] += 1

    def _remove(self, record: ConnectionRecord, fields: list[str]) -> None:
        self.records.pop(record.id, None)
        counts = self.counts
        for field in fields:
            left = counts[field] - 1
            if left > 0:
                counts[field] = left
            else:
                del counts[field]

    async def admit(self, ctx: Context) -> Release:
        """Count the connection of ``ctx`` or refuse it with 429 when a limit is reached."""
        max_process = ws_settings.MAX_CONNECTIONS
        if max_process and self.counts["total"] >= max_process:
            raise self._deny("process", ctx)
        fields, checks = fields_and_checks(ctx)
        kind = self._local_refusal(checks)
        if kind is not None:
            raise self._deny(kind, ctx)
        record = self._record(ctx)
        self._add(record, fields)
        return self._releaser(record, fields)

    def _releaser(self, record: ConnectionRecord, fields: list[str]) -> Release:
        released = False

        async def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._remove(record, fields)
        return release

    # -- reading ----------------------------------------------------------------------
    @property
    def total(self) -> int:
        """Connections counted in this process."""
        return self.counts["total"]

    def local_snapshot(self, records: bool = False, mode: str | None = None, **extra: Any) -> dict[str, Any]:
        """This process's counts (and records)."""
        recs = [r.as_dict() for r in self.records.values()] if records else []
        return build_snapshot(mode or self.mode, [(self.process, dict(self.counts), recs)], **extra)

    async def snapshot(self, records: bool = False) -> dict[str, Any]:
        """Totals by route, tenant, user, IP and process: this process only in local mode."""
        return self.local_snapshot(records)

    async def leave(self) -> None:
        """The process is shutting down (cluster mode: its node leaves Redis at once)."""

    async def close(self) -> None:
        """Release resources (the Redis client in cluster mode)."""
