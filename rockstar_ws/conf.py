"""One settings object for rockstar_ws, read from the ``ROCKSTAR_WS`` dict in Django settings.

Every key has a default and a line of documentation in :data:`DEFAULTS`. An unknown key is an
error (a typo must not silently fall back to a default). Import strings are resolved lazily.
"""

from __future__ import annotations

import difflib
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

__all__ = ["DEFAULTS", "DOCS", "WsSettings", "ws_settings"]

# name: (default, documentation). docs/settings.md is generated from this table's text.
_TABLE: dict[str, tuple[Any, str]] = {
    "ROUTES": ([], "Routes declared in settings: a list of dicts with path, handler (import string), "
                   "and optionally host, tenant, middleware, authenticated, allowed_scopes, require_all_scopes, name."),
    "AUTODISCOVER": (True, "Import the `ws_routes` module of every installed app at start-up (like admin.py)."),
    "MIDDLEWARE": ([], "Import strings of middleware run around every route, outermost first, before the route's own."),
    "AUTH_MANAGER": ("rockstar_ws.auth.AuthManager", "Import string of the default server's auth manager."),
    "REFUSAL_MODE": ("http", "'http': refuse handshakes with an HTTP status (daphne can only send 403); "
                             "'close': accept, then close at once with 4000+status (4401, 4403, 4404, 4429) so browsers can tell reasons apart."),
    "CHANNEL_LAYER": ("default", "Alias of the Channels layer used for per-connection channels and cross-process broadcast."),
    "INBOX_SIZE": (256, "Messages a connection buffers for a handler that is not reading; over it the connection closes with 1008."),
    "INBOX_MAX_BYTES": (1048576, "Bytes (characters for text) of client messages a connection buffers for its handler; at it the "
                                 "server stops reading that client until the handler catches up (TCP back-pressure, no close). 0: no limit."),
    "SYNC_HANDLER_THREADS": (64, "Threads for plain `def` handlers; each one holds a thread for its connection's life."),
    "HANDLER_CLOSE_TIMEOUT": (5.0, "Seconds a handler may keep running after its client left before it is cancelled."),
    "CLOSE_TIMEOUT": (5.0, "Seconds to wait for the client's closing handshake after the server closed."),

    # -- authentication (docs/auth.md) --
    "AUTH_QUERY_PARAM": ("token", "Query parameter that may carry the access token (first source); None turns it off, "
                                  "since URLs end up in access logs and browser history."),
    "AUTH_SUBPROTOCOL": ("rockstar.bearer", "Marker subprotocol: a client offering [marker, token] authenticates with the token "
                                            "and the server accepts the marker (never the token); None turns the source off."),
    "AUTH_SESSION": (False, "Admit the Django session user (Channels' AuthMiddlewareStack) when no token is sent; "
                            "needs AUTH_SESSION_ORIGINS."),
    "AUTH_SESSION_ORIGINS": (None, "Origins or host patterns ('https://app.example.com', '.example.com') a session-authenticated "
                                   "handshake must come from; required with AUTH_SESSION, a missing Origin is refused."),
    "AUTH_SCOPE_CLAIM": ("scope", "Claim holding the OAuth 2 space-separated scope string (None: not read)."),
    "AUTH_SCOPES_CLAIM": ("scopes", "Claim holding a list of scopes (None: not read); joined with AUTH_SCOPE_CLAIM's."),
    "AUTH_TENANT_CLAIM": ("tenant_id", "Claim naming the token's tenant; sets request.tenant_id when the host resolved none."),
    "AUTH_CLOSE_ON_EXPIRY": (True, "Close a token connection with 4401 when its access token expires, unless the client "
                                   "sent {\"rockstar.refresh\": token} in time."),
    "AUTH_CHECK_BLACKLIST": (True, "With rest_framework_simplejwt.token_blacklist installed, refuse access tokens whose jti "
                                   "is blacklisted (checked in the same query as the user)."),
    "TOKEN_SCOPES": ("rockstar_ws.serializers.scopes_from_permissions", "Import string of `func(user, request) -> list of scopes` that "
                     "rockstar_ws.serializers puts into the tokens of SimpleJWT's views; the default reads SCOPE_MAP."),
    "SCOPE_MAP": ({}, "Scopes of the default TOKEN_SCOPES hook: {'app_label.codename': [scopes]} for a permission "
                      "(user.has_perm), {'group:<name>': [scopes]} for a group."),
    "TOKEN_TENANT": (None, "Import string of `func(user, request) -> tenant id or None` whose answer "
                           "rockstar_ws.serializers puts into AUTH_TENANT_CLAIM; None: tokens carry no tenant."),
    "AUTH_USER_CACHE_TTL": (5.0, "Seconds a successful user lookup (user row and blacklist answer, per user and token jti) is reused by "
                                 "later handshakes of this process; saves of users and blacklist entries in this process clear it at once, "
                                 "changes made elsewhere take up to this long. 0: no cache, every handshake queries."),

    # -- tenants (docs/tenants.md) --
    "TENANT_RESOLVER": ("rockstar_ws.tenants.model_resolver", "Import string of `func(host) -> TenantInfo | str | None` (sync or async) resolving a handshake's host to its tenant; the default reads the Tenant model; None turns tenancy off."),
    "TENANT_CACHE_TTL": (5.0, "Seconds a host->tenant answer (a miss too) is cached per process; saves clear it at once, this bounds changes no signal reports. 0: no cache."),
    "TENANT_CACHE_SIZE": (10000, "Hosts kept in the per-process tenant cache (oldest dropped first)."),
    "TENANT_TOKEN_CLAIM": ("tenant_id", "Token claim holding the tenant id; on a tenant's host an authenticated route admits only tokens whose claim equals that tenant."),
    "TENANT_SWEEP_INTERVAL": (30.0, "Seconds between re-checks of the tenants of open connections (closes those of tenants made inactive where no signal fired, 4403). 0: off."),
    "TENANT_POLL_INTERVAL": (0.5, "Seconds between reads of the tenant tables' version stamp (tenants' count and latest `updated`, "
                                  "hosts' count and highest id) in a process whose channel layer does not reach other processes "
                                  "(embedded mode): a change made elsewhere (manage.py ws_tenant) clears the cache and closes an "
                                  "inactive tenant's connections within this time. 0: off."),
    "TENANT_CONTROL_GROUP": ("rockstar_ws.tenants", "Channel-layer group through which tenant changes and per-user commands (send_to_user, disconnect_user, revocation) reach every server process."),

    # -- live connections and limits (docs/connections.md) --
    "LIVE_REGISTRY": (True, "Keep the registry of live connections (counts by route, tenant, user, process) and enforce the connection limits; "
                            "False turns both off (no work at all on connect and close)."),
    "REGISTRY_REDIS_URL": (None, "Redis URL of the cluster-wide registry. None: the first host of CHANNEL_LAYER when it is a channels_redis layer, "
                                 "else in-process only; '': in-process only."),
    "REGISTRY_KEY_PREFIX": ("rockstar_ws:live:", "Prefix of the registry's Redis keys (give each cluster its own)."),
    "REGISTRY_HEARTBEAT": (3.0, "Seconds between a process's heartbeats to Redis (one write per process, never per connection)."),
    "REGISTRY_TTL": (10.0, "Seconds after its last heartbeat that a process (e.g. one killed with kill -9) drops out of every count; "
                           "at least twice REGISTRY_HEARTBEAT."),
    "REGISTRY_REDIS_TIMEOUT": (1.0, "Seconds a registry call to Redis may take before the process falls back to its local counts."),
    "MAX_CONNECTIONS": (0, "Live connections one server process accepts; over it a handshake is refused with 429 (0: no limit)."),
    "MAX_CONNECTIONS_PER_TENANT": (0, "Live connections per tenant, cluster-wide (0: no limit); a tenant's own `max_connections` overrides it."),
    "MAX_CONNECTIONS_PER_USER": (0, "Live connections per authenticated user, cluster-wide (0: no limit)."),
    "MAX_CONNECTIONS_PER_IP": (0, "Live connections per client IP address, cluster-wide (0: no limit)."),
    "METRICS_TOKEN": ("", "Bearer token that may read the Prometheus metrics and the live JSON without a staff session ('': staff only)."),
    "LIVE_PAGE_REFRESH": (2.0, "Seconds between the admin 'Live connections' page's updates."),
    "LIVE_SERIES_INTERVAL": (5.0, "Seconds between a process's samples of the live page's chart (live connections, handshakes/s, "
                                  "refusals/s by status); one ring buffer per process, one Redis write per sample in cluster mode."),
    "LIVE_SERIES_WINDOW": (900.0, "Seconds of samples the live page's chart, live.json's `series` and the ring buffer keep (15 minutes)."),

    # -- broadcast groups (docs/broadcast.md) --
    "GROUP_OVERFLOW": ("close", "What happens to a group member that stops reading once it is over its limit: "
                                "'close' (close code 1013, try again later) or 'drop' (it misses broadcasts until it catches up)."),
    "GROUP_QUEUE_SIZE": (1000, "Broadcasts queued for one member on servers whose send waits for the socket (uvicorn); "
                               "over it, GROUP_OVERFLOW applies."),
    "GROUP_MAX_BUFFERED_BYTES": (4 * 1024 * 1024, "Bytes daphne may hold unsent for one member before GROUP_OVERFLOW "
                                                  "applies (daphne buffers without bound otherwise); 0 turns the check off."),
    "GROUP_REFRESH_INTERVAL": (30.0, "Seconds between re-adds of a process's layer group memberships and member counts; "
                                     "a process silent for 3 intervals is pruned from the layer groups and counts."),
    "GROUP_PUBLISH_QUEUE_SIZE": (10000, "Broadcasts waiting for the channel layer in one process; over it (layer down or "
                                        "too slow) a broadcast stays local and an ERROR is logged."),

    "PRESENCE": ({}, "Presence store and events: {'REDIS': URL or channels-redis host dict (Sentinel too); absent or None: the live registry's Redis, else in memory; '': in memory}, plus optional KEY_PREFIX, HEARTBEAT, TTL (default the registry's), INTERVAL (1.0 s between a group's updates), MAX_INFO_BYTES (512), MAX_ENTRIES (None)."),

    # -- pub/sub routes (docs/protocol.md, docs/pubsub.md) --
    "PUBSUB_PERMISSIONS": ([], "Rules of pub/sub routes registered without permissions=: a list of dicts "
                               "{'pattern', 'subscribe', 'publish', 'presence'} (docs/protocol.md, \"Permissions\"); "
                               "a group no pattern fits is refused."),
    "PUBSUB_HISTORY": ({}, "History of pub/sub groups: {'GROUPS': [{'pattern', 'size', 'ttl'}], 'REDIS', 'KEY_PREFIX', "
                           "'META_TTL', 'RECOVERY_LIMIT'}; a group no GROUPS pattern fits has none. REDIS absent: the "
                           "live registry's Redis when there is one, else memory (docs/pubsub.md)."),

    # -- protection (docs/protection.md) --
    "CHECK_ORIGIN": (None, "Import string of a `check_origin(ctx) -> bool` for every route; None: same host, "
                           "or a host in ALLOWED_ORIGINS."),
    "ALLOWED_ORIGINS": (None, "Origins browsers may connect from: host patterns as in ALLOWED_HOSTS "
                              "('.example.com') or full origins ('https://app.example.com'); None: ALLOWED_HOSTS."),
    "ALLOW_MISSING_ORIGIN": (True, "Admit handshakes without an Origin header (non-browser clients); False refuses them with 403."),
    "MAX_MESSAGE_SIZE": (1048576, "Largest client message in bytes (UTF-8 for text); a larger one closes with 1009. 0: no limit."),
    "MESSAGE_RATE": (100.0, "Messages per second a connection may send on average (token bucket); 0: no limit."),
    "MESSAGE_BURST": (200, "Messages a connection may send at once above MESSAGE_RATE (the bucket's size)."),
    "RATE_LIMIT_POLICY": ("close", "Over MESSAGE_RATE: 'close' (1008), 'close-4429' (4429), or 'drop' "
                                   "(the message is dropped and the client gets a JSON warning, at most one a second)."),
    "HANDSHAKE_RATE": (20.0, "New handshakes per second per client IP, per process (token bucket); over it: 429. 0: no limit."),
    "HANDSHAKE_BURST": (50, "Handshakes one IP may open at once above HANDSHAKE_RATE."),
    "HANDSHAKE_RATE_EXEMPT": (["127.0.0.1", "::1"], "Client IPs the handshake rate does not apply to (a local proxy, health checks)."),
    "IDLE_TIMEOUT": (0.0, "Seconds without a message from the client before the server closes with 4408; 0: never."),
    "WRITE_TIMEOUT": (10.0, "Seconds a write may wait for a client that does not read (servers whose send blocks, "
                            "e.g. uvicorn); then it fails and the connection closes with 1013. 0: wait forever."),
    "WRITE_BUFFER_LIMIT": (1048576, "Bytes the server may hold unsent for one client (daphne, whose send never blocks); "
                                    "a write above it fails and closes with 1013. 0: no limit."),
}

DEFAULTS: dict[str, Any] = {k: v[0] for k, v in _TABLE.items()}
DOCS: dict[str, str] = {k: v[1] for k, v in _TABLE.items()}
IMPORT_STRINGS = {"AUTH_MANAGER"}


def settings_markdown() -> str:
    """docs/settings.md: every key, its default and its documentation (``python -m rockstar_ws.conf``)."""
    lines = [
        "# Settings",
        "",
        "All settings live in one dict, `ROCKSTAR_WS`, in your Django settings. Every key is optional.",
        "An unknown key (named with the closest known one: `'INBOX_SIZ' (did you mean 'INBOX_SIZE'?)`)",
        "and a bad value (a string where a number goes, an unknown policy name) are errors of",
        "`manage.py check`, and the same errors stop daphne, uvicorn and `runserver` at start-up with",
        "`ImproperlyConfigured` and the text `check` prints, before any connection is served.",
        "This page is generated by `python -m rockstar_ws.conf` (a test checks it is current).",
        "",
        "| key | default | meaning |",
        "| --- | --- | --- |",
    ]
    for key, (default, doc) in _TABLE.items():
        lines.append(f"| `{key}` | `{default!r}` | {doc} |")
    return "\n".join(lines) + "\n"


def _with_suggestion(key: Any) -> str:
    """``'INBOX_SIZ' (did you mean 'INBOX_SIZE'?)``: a typo names its fix."""
    close = difflib.get_close_matches(str(key).upper(), DEFAULTS, n=1, cutoff=0.6)
    return f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key)


class WsSettings:
    """Attribute access to ``settings.ROCKSTAR_WS`` with defaults; cached until settings change."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}
        self._user: dict[str, Any] | None = None

    @property
    def user_settings(self) -> dict[str, Any]:
        if self._user is None:
            user = getattr(django_settings, "ROCKSTAR_WS", {}) or {}
            if not isinstance(user, dict):
                raise ImproperlyConfigured("ROCKSTAR_WS must be a dict")
            unknown = sorted(set(user) - set(DEFAULTS), key=str)
            if unknown:
                raise ImproperlyConfigured(
                    f"Unknown ROCKSTAR_WS setting(s): {', '.join(_with_suggestion(k) for k in unknown)}. "
                    f"Known keys: {', '.join(sorted(DEFAULTS))}."
                )
            self._user = user
        return self._user

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in DEFAULTS:
            raise AttributeError(f"Unknown rockstar_ws setting {name!r}")
        try:
            return self._cache[name]
        except KeyError:
            pass
        value = self.user_settings.get(name, DEFAULTS[name])
        if name in IMPORT_STRINGS and isinstance(value, str):
            try:
                value = import_string(value)
            except ImportError as exc:
                raise ImproperlyConfigured(f"ROCKSTAR_WS[{name!r}]: cannot import {value!r}: {exc}") from exc
        self._cache[name] = value
        return value

    def reload(self) -> None:
        """Forget cached values (called when Django settings change, e.g. in tests)."""
        self._cache.clear()
        self._user = None


ws_settings = WsSettings()


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "ROCKSTAR_WS":
        ws_settings.reload()


setting_changed.connect(_on_setting_changed)

if __name__ == "__main__":
    print(settings_markdown(), end="")
