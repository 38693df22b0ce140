"""The live page's time series: live connections, handshakes/s and refusals/s by reason.

Each server process samples its own counters every ``LIVE_SERIES_INTERVAL`` seconds into a ring
buffer covering ``LIVE_SERIES_WINDOW`` seconds (15 minutes by default): nothing happens per
connection. With the registry in Redis, every sample also rewrites that process's buffer under
``<REGISTRY_KEY_PREFIX>series:<process>`` with the registry's expiry (``REGISTRY_TTL``), so a
process killed with ``kill -9`` drops out; a reader sums the processes' samples per time slot
(slots are multiples of the interval, so processes line up). See docs/connections.md.

The page also names people: :func:`people` maps the registry's user ids to usernames and admin
links, and tenant ids to tenant names.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter, deque
from typing import Any

from ..conf import ws_settings

__all__ = ["Sampler", "metric_families", "people", "sampler", "snapshot"]

logger = logging.getLogger("rockstar_ws.users")


#: The servers ``users.install`` was given: sampled when the live registry counts none.
sampled_servers: list[Any] = []


def _servers() -> list[Any]:
    from ..registry import installed_servers

    return list(installed_servers) or list(sampled_servers)


class Sampler:
    """One process's ring buffer of samples, filled by a task on the serving loop."""

    def __init__(self) -> None:
        self.points: deque[dict[str, Any]] = deque()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task[None] | None = None
        self._last: tuple[float, int, Counter[str]] | None = None

    @staticmethod
    def interval() -> float:
        return max(0.1, float(ws_settings.LIVE_SERIES_INTERVAL))

    def ensure_started(self) -> None:
        """Start sampling on the running loop (once per loop; a no-op when already running)."""
        loop = asyncio.get_running_loop()
        if self.loop is loop and self.task is not None and not self.task.done():
            return
        self.loop = loop
        self.task = loop.create_task(self._run())

    def _counters(self) -> tuple[int, int, Counter[str]]:
        live = opened = 0
        refused: Counter[str] = Counter()
        for server in _servers():
            live += server.get_connections()
            opened += server.stats.opened_total
            refused.update(server.stats.refused_total)
        return live, opened, refused

    def sample(self, now: float | None = None) -> dict[str, Any] | None:
        """Take one sample (rates over the time since the previous one); None for the first."""
        now = time.time() if now is None else now
        live, opened, refused = self._counters()
        last, self._last = self._last, (now, opened, refused)
        if last is None:
            point = {"t": _slot(now, self.interval()), "connections": live, "handshakes_per_s": 0.0,
                     "refused_per_s": {}}
        else:
            dt = max(now - last[0], 1e-6)
            delta = refused - last[2]
            point = {"t": _slot(now, self.interval()), "connections": live,
                     "handshakes_per_s": round((opened - last[1]) / dt, 3),
                     "refused_per_s": {k: round(v / dt, 3) for k, v in sorted(delta.items()) if v > 0}}
        keep = max(1, int(float(ws_settings.LIVE_SERIES_WINDOW) / self.interval()))
        self.points.append(point)
        while len(self.points) > keep:
            self.points.popleft()
        return point

    async def _run(self) -> None:
        while True:
            try:
                self.sample()
                await _publish(list(self.points))
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.debug("sampling the live series failed", exc_info=True)
            await asyncio.sleep(self.interval())


sampler = Sampler()


def _slot(t: float, interval: float) -> float:
    return round(round(t / interval) * interval, 3)


def _redis_registry() -> Any:
    if not ws_settings.LIVE_REGISTRY:
        return None
    from ..registry import get_registry

    registry = get_registry()
    return registry if getattr(registry, "mode", "") == "cluster" else None


async def _publish(points: list[dict[str, Any]]) -> None:
    registry = _redis_registry()
    if registry is None:
        return
    key = f"{registry.prefix}series:{registry.process}"
    try:
        await registry._redis().set(key, json.dumps(points), px=int(registry.ttl * 1000))
    except Exception as exc:
        from ..core.outage import outage

        outage.failed("live registry", "writing the live series", exc, holds=False, log=logger)


async def _cluster_points() -> list[list[dict[str, Any]]] | None:
    registry = _redis_registry()
    if registry is None:
        return None
    client = registry._redis()
    keys = [k async for k in client.scan_iter(match=f"{registry.prefix}series:*", count=500)]
    if not keys:
        return []
    return [json.loads(raw) for raw in await client.mget(keys) if raw]


def _merge(per_process: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    slots: dict[float, dict[str, Any]] = {}
    for points in per_process:
        for p in points:
            s = slots.setdefault(p["t"], {"t": p["t"], "connections": 0, "handshakes_per_s": 0.0,
                                          "refused_per_s": Counter()})
            s["connections"] += p["connections"]
            s["handshakes_per_s"] += p["handshakes_per_s"]
            s["refused_per_s"].update(p["refused_per_s"])
    out = []
    for t in sorted(slots):
        s = slots[t]
        out.append({**s, "handshakes_per_s": round(s["handshakes_per_s"], 3),
                    "refused_per_s": {k: round(v, 3) for k, v in sorted(s["refused_per_s"].items())}})
    return out


async def snapshot() -> dict[str, Any]:
    """The series for live.json: ``{"interval", "window", "scope", "points": [...]}``, each point
    ``{"t", "connections", "handshakes_per_s", "refused_per_s": {status: rate}}``; cluster-wide
    with the registry in Redis (``scope: "cluster"``), else this process's."""
    sampler.ensure_started()
    scope, points = "process", list(sampler.points)
    with contextlib.suppress(Exception):  # Redis trouble: this process's series, as the counts do
        cluster = await _cluster_points()
        if cluster is not None:
            scope, points = "cluster", _merge(cluster)
    return {"interval": sampler.interval(), "window": float(ws_settings.LIVE_SERIES_WINDOW), "scope": scope,
            "points": points}


async def metric_families() -> list[Any]:
    """Gauges of the latest sample (Prometheus keeps the history itself)."""
    from prometheus_client.core import GaugeMetricFamily

    data = await snapshot()
    last = data["points"][-1] if data["points"] else None
    hs = GaugeMetricFamily("rockstar_ws_handshakes_per_second",
                           f"Accepted handshakes per second over the last sample ({data['scope']}).")
    rf = GaugeMetricFamily("rockstar_ws_refusals_per_second",
                           f"Refused handshakes per second over the last sample, by HTTP status ({data['scope']}).",
                           labels=["status"])
    live = GaugeMetricFamily("rockstar_ws_series_connections",
                             f"Live connections at the last sample ({data['scope']}).")
    if last is not None:
        hs.add_metric([], last["handshakes_per_s"])
        live.add_metric([], last["connections"])
        for status, rate in last["refused_per_s"].items():
            rf.add_metric([status], rate)
    return [hs, rf, live]


def _people_sync(user_ids: list[str], tenant_ids: list[str]) -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.urls import NoReverseMatch, reverse
    from rest_framework_simplejwt.settings import api_settings

    User = get_user_model()
    users: dict[str, dict[str, Any]] = {}
    field = api_settings.USER_ID_FIELD
    if user_ids:
        meta = User._meta
        for user in User._default_manager.filter(**{f"{field}__in": user_ids}):
            try:
                url = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[user.pk])
            except NoReverseMatch:
                url = None
            users[str(getattr(user, field))] = {"username": user.get_username(), "url": url}
    tenants: dict[str, str] = {}
    if tenant_ids:
        from ..tenants.models import Tenant

        tenants = dict(Tenant.objects.filter(identifier__in=tenant_ids).values_list("identifier", "name"))
    return {"users": users, "tenants": tenants}


async def people(data: dict[str, Any]) -> dict[str, Any]:
    """Usernames (with admin links) of ``data["by_user"]``'s ids, names of ``data["by_tenant"]``'s
    tenants: ``{"users": {id: {"username", "url"}}, "tenants": {id: name}}`` (two queries)."""
    from channels.db import database_sync_to_async

    ids = [str(k) for k in (data.get("by_user") or {})][:1000]
    tids = [str(k) for k in (data.get("by_tenant") or {})][:1000]
    try:
        return await database_sync_to_async(_people_sync)(ids, tids)
    except Exception:  # a custom user model without these fields: ids stay ids
        logger.debug("naming users and tenants failed", exc_info=True)
        return {"users": {}, "tenants": {}}
