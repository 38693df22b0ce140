"""Prometheus metrics of the live connections, rendered on request (no work between scrapes).

Counters (opened, refused, closed, limited) belong to the process that answers the scrape, with
a ``process`` label; a cluster is scraped process by process. The ``_open`` gauges are this
process's; the ``rockstar_ws_cluster_*`` gauges are the registry's cluster-wide counts (present in
cluster mode only).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ..conf import ws_settings
from ..registry import get_registry, installed_servers, process_name

__all__ = ["render"]


def _servers() -> list[Any]:
    from ..engine.server import default_server

    return list(installed_servers) or [default_server]


class _Collected:
    """A collector over values read once per scrape."""

    def __init__(self, families: list[Any]) -> None:
        self.families = families

    def collect(self) -> list[Any]:
        return self.families


async def families() -> list[Any]:
    """The metric families of this scrape."""
    proc = process_name()
    labels = ["server", "process"]
    open_ = GaugeMetricFamily("rockstar_ws_connections_open", "Live WebSocket connections in this process.",
                              labels=labels)
    opened = CounterMetricFamily("rockstar_ws_connections_opened", "WebSocket connections accepted.", labels=labels)
    refused = CounterMetricFamily("rockstar_ws_connections_refused", "Handshakes refused, by HTTP status.",
                                  labels=[*labels, "status"])
    closed = CounterMetricFamily("rockstar_ws_connections_closed", "WebSocket connections ended, by close code.",
                                 labels=[*labels, "code"])
    for server in _servers():
        stats = server.stats
        open_.add_metric([server.name, proc], server.get_connections())
        opened.add_metric([server.name, proc], stats.opened_total)
        for status, n in sorted(stats.refused_total.items()):
            refused.add_metric([server.name, proc, str(status)], n)
        for code, n in sorted(stats.closed_total.items()):
            closed.add_metric([server.name, proc, str(code)], n)
    out: list[Any] = [open_, opened, refused, closed]
    from ..users import series  # hook: the live page's series as gauges

    out += await series.metric_families()
    if not ws_settings.LIVE_REGISTRY:
        return out
    registry = get_registry()
    limited = CounterMetricFamily("rockstar_ws_connections_limited",
                                  "Handshakes refused with 429 by a connection limit, by limit.",
                                  labels=["process", "limit"])
    for kind in ("process", "tenant", "user", "ip"):
        limited.add_metric([proc, kind], registry.limited[kind])
    out.append(limited)
    if registry.mode == "cluster":
        snap = await registry.snapshot()
        up = GaugeMetricFamily("rockstar_ws_registry_redis_up", "1 when the registry's Redis answered this scrape.")
        up.add_metric([], 0 if snap.get("error") else 1)
        out.append(up)
        if not snap.get("error"):
            total = GaugeMetricFamily("rockstar_ws_cluster_connections_open",
                                      "Live WebSocket connections in the cluster.")
            total.add_metric([], snap["total"])
            by_process = GaugeMetricFamily("rockstar_ws_cluster_connections_by_process",
                                           "Live connections per server process.", labels=["process"])
            for p, n in snap["by_process"].items():
                by_process.add_metric([p], n)
            by_route = GaugeMetricFamily("rockstar_ws_cluster_connections_by_route",
                                         "Live connections per route.", labels=["route"])
            for r, n in snap["by_route"].items():
                by_route.add_metric([r], n)
            by_tenant = GaugeMetricFamily("rockstar_ws_cluster_connections_by_tenant",
                                          "Live connections per tenant.", labels=["tenant"])
            for t, n in snap["by_tenant"].items():
                by_tenant.add_metric([t], n)
            out += [total, by_process, by_route, by_tenant]
    return out


async def render() -> tuple[bytes, str]:
    """The Prometheus text exposition of this scrape and its content type."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collected(await families()))
    return generate_latest(registry), CONTENT_TYPE_LATEST
