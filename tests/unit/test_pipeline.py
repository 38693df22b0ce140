"""rockstar_ws.handshake.pipeline: stages in order, project stages in their place, releases on refusal."""

from __future__ import annotations

import pytest

from rockstar_ws import Deny, WebSocketServer
from rockstar_ws.core.context import Context, Headers, Request
from rockstar_ws.core.errors import ImproperlyConfigured
from rockstar_ws.handshake.pipeline import Pipeline, Step

DEFAULT = ["host_and_rate", "tenant", "route", "limits", "route_hook", "tenant_settings", "origin_and_subprotocol",
           "authentication", "tenant_binding", "selected_subprotocol"]


def _ctx(server: WebSocketServer) -> Context:
    request = Request(path="/ws/x", host="testserver", remote_addr="10.0.0.1:5000", local_addr="127.0.0.1:80",
                      headers=Headers([]), query_string="", subprotocols=[])
    return Context(request, {"type": "websocket", "headers": []}, server)


def test_a_server_starts_with_the_documented_stages_in_order():
    assert WebSocketServer(name="unit").pipeline.names == DEFAULT


def test_a_project_stage_goes_before_admission_or_where_it_is_asked():
    server = WebSocketServer(name="unit")

    async def mine(ctx): return None
    async def admission(ctx): return None
    async def early(ctx): return None
    async def late(ctx): return None

    server.add_stage(admission, name="admission")
    server.add_stage(mine)
    server.add_stage(early, name="early", after="route")
    server.add_stage(late, name="late", before="host_and_rate")
    names = server.pipeline.names
    assert names[0] == "late" and names[names.index("route") + 1] == "early"
    assert names[-2:] == [mine.__qualname__, "admission"], names


def test_bad_positions_and_duplicate_names_are_errors_that_list_the_stages():
    pipeline = Pipeline([Step("a", None)])  # type: ignore[arg-type]

    async def stage(ctx): return None

    with pytest.raises(ImproperlyConfigured, match=r"No handshake stage named 'b'; the stages are \['a'\]"):
        pipeline.add(stage, before="b")
    with pytest.raises(ImproperlyConfigured, match="exists already"):
        pipeline.add(stage, name="a")
    with pytest.raises(ImproperlyConfigured, match="not both"):
        pipeline.add(stage, before="a", after="a")


async def test_a_refusal_releases_what_earlier_stages_took_last_first():
    released: list[str] = []

    def taking(name: str):
        async def stage(ctx):
            async def release():
                released.append(name)
            return release
        return stage

    async def refuse(ctx):
        raise Deny(429, "full")

    server = WebSocketServer(name="unit")
    pipeline = Pipeline([Step("one", taking("one")), Step("two", taking("two")), Step("no", refuse)])
    with pytest.raises(Deny):
        await pipeline.run(_ctx(server))
    assert released == ["two", "one"]

    passing = Pipeline([Step("one", taking("one")), Step("two", taking("two"))])
    release = await passing.run(_ctx(server))
    assert release is not None
    released.clear()
    await release()
    assert released == ["two", "one"]


async def test_plain_def_stages_run_in_order_with_async_ones():
    seen: list[str] = []

    def cheap(ctx):
        seen.append("cheap")

    async def slow(ctx):
        seen.append("slow")

    def refuse(ctx):
        raise Deny(400, "no")

    server = WebSocketServer(name="unit")
    await Pipeline([Step("a", cheap), Step("b", slow), Step("c", cheap)]).run(_ctx(server))
    assert seen == ["cheap", "slow", "cheap"]
    with pytest.raises(Deny):
        await Pipeline([Step("a", cheap), Step("no", refuse), Step("b", slow)]).run(_ctx(server))
    assert seen == ["cheap", "slow", "cheap", "cheap"]
