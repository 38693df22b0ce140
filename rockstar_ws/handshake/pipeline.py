"""The handshake as one pipeline: the stages a ``websocket.connect`` goes through, in order.

A stage is ``async def stage(ctx) -> release | None`` (a check that needs no I/O may be a plain
``def stage(ctx) -> None``, called without a coroutine). It refuses the handshake by raising
:class:`~rockstar_ws.core.errors.Deny`; it may return a coroutine function (a *release*) to call
when the connection ends, e.g. to give back a connection slot. No stage runs user code except a
project's own stages and the auth manager the project chose. The engine runs the pipeline and
turns every refusal (a ``Deny``, or any other exception as a 500) into the answer the client
sees, in one place (``RockstarConsumer``).

The default stages of a :class:`~rockstar_ws.engine.server.WebSocketServer`, top to bottom
(the engine, which knows every feature, builds this list in ``WebSocketServer.default_stages``):

====================  =========================================================  =========
stage                 what it does                                               refuses
====================  =========================================================  =========
host_and_rate         ``Host`` in ALLOWED_HOSTS, the client IP's handshake       400, 429
                      rate, the subprotocol header (:mod:`.precheck`): costs
                      no lookup, so a flood of them costs no query
tenant                the host's tenant (rockstar_ws.tenants; when tenancy is    403
                      on): ``ctx.tenant``, ``request.tenant_id``
route                 host routes, then the tenant's, then global ones:          404
                      ``ctx.route``, ``request.path_params`` (no route: the
                      ``NoRoute`` refusal, which the engine hands to the
                      server's ``fallback`` application when it has one)
limits                ``ctx.upgrader``: route over server over settings
route_hook            the route's own step, ``handler.before_accept(ctx)`` when  any
                      the handler has one (the pub/sub route: its protocol
                      version, a token sent to a public route)
tenant_settings       the tenant's overrides of the upgrader (origins, size)
origin_and_subprotocol  the upgrader's origin check; the application              400, 403
                      subprotocol it accepts
authentication        the route's auth manager (tokens, scopes) on               401, 403
                      authenticated routes; the token marker subprotocol on
                      public ones
tenant_binding        a tenant host admits only its tenant's tokens; a token     403
                      of an inactive tenant is refused
selected_subprotocol  the chosen subprotocol was offered verbatim                400
(project stages)      :meth:`Pipeline.add` puts them here by default             any
admission             connection limits, the live registry (rockstar_ws.         429
                      registry; when LIVE_REGISTRY is on)
====================  =========================================================  =========

Then middleware (global, then the route's) runs around the accept and the connection's life;
middleware may still refuse with ``Deny`` before it calls ``next``.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..core.errors import ImproperlyConfigured, NoRoute
from ..limits.upgrader import Upgrader, effective_upgrader
from .precheck import check_selected_subprotocol, precheck

if TYPE_CHECKING:
    from ..core.context import Context, Request
    from ..core.routing import RouteTable

__all__ = [
    "DEFAULT_POSITION",
    "Pipeline",
    "Release",
    "Stage",
    "Step",
    "SyncStage",
    "host_and_rate",
    "limits",
    "origin_and_subprotocol",
    "route",
    "route_hook",
    "selected_subprotocol",
]

Release = Callable[[], Awaitable[None]]
Stage = Callable[["Context"], Awaitable[Release | None]]
#: The checks that need no I/O may be plain functions: called without a coroutine of their own
#: (every handshake runs all of them, and a coroutine per check is what the pipeline would add).
SyncStage = Callable[["Context"], None]

#: Where :meth:`Pipeline.add` puts a stage without ``before``/``after``: after every check of the
#: request and the token (the user is known), before admission counts the connection.
DEFAULT_POSITION = "admission"


@dataclass(frozen=True, slots=True)
class Step:
    """One named stage of the pipeline (``async def``, or a plain ``def`` that returns None)."""

    name: str
    run: Stage | SyncStage
    awaited: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "awaited", inspect.iscoroutinefunction(self.run))


class Pipeline:
    """The handshake's stages, run in order; see the module docstring for the default list."""

    def __init__(self, steps: Iterable[Step] = ()) -> None:
        self._steps: list[Step] = list(steps)

    def __iter__(self) -> Iterator[Step]:
        return iter(tuple(self._steps))

    @property
    def names(self) -> list[str]:
        """The stage names in the order they run."""
        return [s.name for s in self._steps]

    def add(self, stage: Stage | SyncStage, *, name: str | None = None, before: str | None = None,
            after: str | None = None) -> Step:
        """Add a project's ``stage``: before ``before``, after ``after``, or by default right
        before ``admission`` (at the end when there is none). Names are unique."""
        if before is not None and after is not None:
            raise ImproperlyConfigured("add a stage before= another or after= another, not both")
        step = Step(str(name or getattr(stage, "__qualname__", None) or repr(stage)), stage)
        if step.name in self.names:
            raise ImproperlyConfigured(f"A handshake stage named {step.name!r} exists already: {self.names}")
        anchor = before or after
        if anchor is None:
            index = self.names.index(DEFAULT_POSITION) if DEFAULT_POSITION in self.names else len(self._steps)
        elif anchor not in self.names:
            raise ImproperlyConfigured(f"No handshake stage named {anchor!r}; the stages are {self.names}")
        else:
            index = self.names.index(anchor) + (1 if after is not None else 0)
        self._steps.insert(index, step)
        return step

    def remove(self, name: str) -> None:
        """Take the stage ``name`` out (no-op when there is none)."""
        self._steps = [s for s in self._steps if s.name != name]

    async def run(self, ctx: Context) -> Release | None:
        """Run every stage on ``ctx``; the releases of the stages that passed, as one.

        A stage that refuses (or fails) stops the pipeline, and the releases gathered so far run
        at once, last first: a refused handshake holds nothing.
        """
        releases: list[Release] = []
        try:
            for step in self._steps:
                if not step.awaited:
                    step.run(ctx)
                    continue
                release = await step.run(ctx)  # type: ignore[misc]  # awaited: an async def stage
                if release is not None:
                    releases.append(release)
        except BaseException:
            await _release_all(releases)
            raise
        if not releases:
            return None
        if len(releases) == 1:
            return releases[0]

        async def release_all() -> None:
            await _release_all(releases)
        return release_all


async def _release_all(releases: list[Release]) -> None:
    for release in reversed(releases):
        await release()


# -- the stages that need no feature ----------------------------------------------------------
def host_and_rate(rate: Callable[[Request], None]) -> SyncStage:
    """The checks that cost no lookup, before the tenant and the route: the ``Host`` header
    (400), the client IP's handshake rate (``rate``, 429; unknown paths count too), and the
    subprotocol header (400)."""
    def host_and_rate(ctx: Context) -> None:
        precheck(ctx.scope, ctx.request, rate)
    return host_and_rate


def route(table: RouteTable) -> SyncStage:
    """Find the route of the host, tenant and path (404): ``ctx.route`` and the path parameters."""
    def route(ctx: Context) -> None:
        request = ctx.request
        found = table.find(request.host, request.path, request.tenant_id)
        if found is None:
            raise NoRoute(log_detail=f"no route for host={request.host!r} path={request.path!r}")
        ctx.route, request.path_params = found
    return route


def limits(server_upgrader: Callable[[], Upgrader]) -> SyncStage:
    """``ctx.upgrader``: the route's limits over the server's over the settings'."""
    def limits(ctx: Context) -> None:
        ctx.upgrader = effective_upgrader(ctx.route, server_upgrader())
    return limits


async def route_hook(ctx: Context) -> None:
    """The route's own handshake step: ``await handler.before_accept(ctx)`` when the handler has
    one (rockstar_ws.pubsub.route: the protocol version, a token sent to a public route); it may
    refuse with ``Deny``. Runs once the upgrader is known, before the tenant's overrides of it."""
    before = getattr(ctx.route.handler, "before_accept", None)
    if before is not None:
        await before(ctx)


def origin_and_subprotocol(ctx: Context) -> None:
    """The upgrader's origin check (400 malformed, 403 refused) and its application subprotocol."""
    ctx.upgrader.check(ctx)


def selected_subprotocol(ctx: Context) -> None:
    """The subprotocol chosen so far (by the upgrader or the auth manager) was offered verbatim (400);
    before admission counts the connection."""
    check_selected_subprotocol(ctx.scope, ctx.subprotocol)
