"""Tenants in process: the models, the resolver's cache, the binding rule, the admin, the command.

The behaviour through real servers is in test_tenants_e2e.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, transaction
from django.test import override_settings

from rockstar_ws import Deny, WebSocketServer, tenants
from rockstar_ws.checks import check_tenancy
from rockstar_ws.core.context import Context, Headers, Request
from rockstar_ws.core.errors import ImproperlyConfigured
from rockstar_ws.core.routing import Route
from rockstar_ws.tenants import TenantInfo, TenantResolver, propagation
from rockstar_ws.tenants.models import Tenant, TenantHost


async def _handler(ctx: Any, conn: Any) -> None:
    return None


def make_ctx(host: str = "t1.example.com", *, tenant: TenantInfo | None = None, claims: dict | None = None,
             scopes: tuple[str, ...] = (), **options: Any) -> Context:
    request = Request(path="/ws/x", host=host, remote_addr="127.0.0.1:1", local_addr="127.0.0.1:2",
                      headers=Headers([]))
    request.claims = claims or {}
    request.scopes = frozenset(scopes)
    route = Route(path="/ws/x", handler=_handler, authenticated=True, options=options)
    ctx = Context(request, {}, WebSocketServer(), route)
    ctx.tenant = tenant
    return ctx


class FakeLayer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []

    async def group_send(self, group: str, message: dict) -> None:
        self.sent.append((group, message))


@pytest.fixture
def layer(monkeypatch) -> FakeLayer:
    fake = FakeLayer()
    monkeypatch.setattr(propagation, "_layer", lambda: fake)
    return fake


# -- models ------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_host_is_stored_lower_case_without_port():
    t = Tenant.objects.create(identifier="acme", name="Acme")
    assert TenantHost.objects.create(tenant=t, host="WWW.Acme.COM:8443").host == "www.acme.com"
    assert TenantHost.objects.create(tenant=t, host="shop.acme.com.").host == "shop.acme.com"
    assert t.host_names == ["shop.acme.com", "www.acme.com"]


@pytest.mark.django_db
@pytest.mark.parametrize("bad", ["http://acme.com", "acme.com/path", "a b.com", "", "*.acme.com"])
def test_a_bad_host_is_refused_with_a_clear_error(bad):
    t = Tenant.objects.create(identifier="acme")
    with pytest.raises(ValidationError, match="host name"):
        TenantHost.objects.create(tenant=t, host=bad)
    assert not TenantHost.objects.exists()


@pytest.mark.django_db
def test_a_host_belongs_to_one_tenant_only():
    a = Tenant.objects.create(identifier="a")
    b = Tenant.objects.create(identifier="b")
    TenantHost.objects.create(tenant=a, host="shared.example.com")
    with pytest.raises(ValidationError, match="already exists"):
        TenantHost(tenant=b, host="SHARED.example.com:80").full_clean()
    with pytest.raises(IntegrityError), transaction.atomic():
        TenantHost.objects.create(tenant=b, host="Shared.Example.com")


@pytest.mark.django_db
@pytest.mark.parametrize(("overrides", "message"), [
    ({"max_mesage_size": 5}, "Unknown tenant setting 'max_mesage_size'; known: allow_missing_origin, "
                             "allowed_origins, max_message_size."),
    ({"max_message_size": "big"}, "max_message_size: must be a whole number >= 0, got 'big'"),
    ({"max_message_size": -1}, "max_message_size: must be a whole number >= 0"),
    ({"allowed_origins": "https://a.com"}, "allowed_origins: must be a list of non-empty strings"),
    ({"allow_missing_origin": "no"}, "allow_missing_origin: must be true or false"),
    (["max_message_size"], "must be a JSON object"),
])
def test_setting_overrides_are_validated_against_known_keys(overrides, message):
    tenant = Tenant(identifier="acme", settings=overrides)
    with pytest.raises(ValidationError) as form_error:
        tenant.full_clean()
    assert message in str(form_error.value)
    with pytest.raises(ValidationError):
        tenant.save()  # code that skips full_clean() cannot store them either
    assert not Tenant.objects.exists()


@pytest.mark.django_db
def test_valid_overrides_are_kept():
    t = Tenant(identifier="acme", settings={"max_message_size": 65536, "allowed_origins": ["https://a.com"]})
    t.full_clean()
    t.save()
    t.refresh_from_db()
    assert t.settings == {"max_message_size": 65536, "allowed_origins": ["https://a.com"]}


def test_tenant_info_coercion():
    assert TenantInfo.coerce(None) is None
    assert TenantInfo.coerce("acme") == TenantInfo(identifier="acme")
    info = TenantInfo(identifier="x", settings={"max_message_size": 1})
    assert TenantInfo.coerce(info) is info
    with pytest.raises(TypeError, match=r"return None, an identifier str or rockstar_ws\.tenants\.TenantInfo"):
        TenantInfo.coerce(42)
    with pytest.raises(TypeError):
        info.settings["max_message_size"] = 2  # read-only


# -- the resolver ----------------------------------------------------------------------------
async def test_resolver_caches_hits_and_misses_and_coalesces_concurrent_lookups():
    calls: list[str] = []

    gate = asyncio.Event()

    async def slow(host: str) -> str | None:
        calls.append(host)
        await gate.wait()  # held until every lookup has started: they must share this one call
        return "acme" if host == "acme.com" else None

    r = TenantResolver(slow, ttl=60)
    lookups = [asyncio.ensure_future(r.lookup("acme.com")) for _ in range(10)]
    await asyncio.sleep(0)  # one loop turn: every lookup task runs up to its first wait
    gate.set()
    got = await asyncio.gather(*lookups)
    assert {g.identifier for g in got} == {"acme"}
    assert calls == ["acme.com"]
    assert await r.lookup("other.com") is None
    assert await r.lookup("other.com") is None
    assert calls == ["acme.com", "other.com"]
    r.invalidate()
    await r.lookup("acme.com")
    assert calls == ["acme.com", "other.com", "acme.com"]
    await r.lookup("acme.com", fresh=True)
    assert len(calls) == 4


@pytest.mark.django_db(transaction=True)
async def test_resolver_sets_tenant_id_and_refuses_inactive_tenants():
    def sync_resolver(host: str) -> TenantInfo | None:  # plain def: runs in a worker thread
        return {"a.com": TenantInfo("a"), "off.com": TenantInfo("off", is_active=False)}.get(host)

    r = TenantResolver(sync_resolver, ttl=0)
    request = make_ctx("a.com").request
    info = await r(request)
    assert info.identifier == "a" and request.tenant_id == "a"
    with pytest.raises(Deny) as denied:
        await r(make_ctx("off.com").request)
    assert denied.value.status == 403 and denied.value.reason == "tenant inactive"
    nobody = make_ctx("nobody.com").request
    assert await r(nobody) is None and nobody.tenant_id is None


async def test_resolver_errors_do_not_poison_the_cache():
    state = {"fail": True}

    async def flaky(host: str) -> str:
        if state["fail"]:
            raise RuntimeError("database down")
        return "acme"

    r = TenantResolver(flaky, ttl=60)
    with pytest.raises(RuntimeError):
        await r.lookup("acme.com")
    state["fail"] = False
    assert (await r.lookup("acme.com")).identifier == "acme"


def test_resolver_from_settings():
    with override_settings(ROCKSTAR_WS={"TENANT_RESOLVER": None}):
        assert tenants.get_resolver() is None
    with override_settings(ROCKSTAR_WS={"TENANT_RESOLVER": "tests.tenantapp.resolvers.by_label",
                                        "TENANT_CACHE_TTL": 1.5}):
        r = tenants.get_resolver()
        assert r.func.__name__ == "by_label" and r.ttl == 1.5
    with override_settings(ROCKSTAR_WS={"TENANT_RESOLVER": "no.such.resolver"}):
        with pytest.raises(ImproperlyConfigured, match=r"cannot import 'no\.such\.resolver'"):
            tenants.get_resolver()


def test_install_turns_tenancy_on_and_off():
    server = WebSocketServer()
    assert not server.tenancy_enabled
    tenants.install(server, lambda host: None)
    assert server.tenancy_enabled
    tenants.install(server, lambda host: None)
    assert server.tenancy_enabled
    with override_settings(ROCKSTAR_WS={"TENANT_RESOLVER": None}):
        tenants.install(server)
    assert not server.tenancy_enabled


@pytest.mark.django_db(transaction=True)
async def test_model_resolver_reads_the_models():
    from asgiref.sync import sync_to_async

    @sync_to_async
    def make() -> None:
        t = Tenant.objects.create(identifier="acme", name="Acme", max_connections=3,
                                  settings={"max_message_size": 10})
        TenantHost.objects.create(tenant=t, host="acme.localhost")

    await make()
    r = TenantResolver(tenants.model_resolver, ttl=60)
    info = await r.lookup("acme.localhost")
    assert (info.identifier, info.name, info.max_connections, dict(info.settings)) == \
        ("acme", "Acme", 3, {"max_message_size": 10})
    assert await r.lookup("other.localhost") is None


# -- changes reach the caches and the channel layer -------------------------------------------
@pytest.mark.django_db
def test_saving_tenants_clears_caches_and_broadcasts(layer, django_capture_on_commit_callbacks):
    r = TenantResolver(lambda host: None, ttl=60)
    r._store("acme.com", TenantInfo("acme"))
    with django_capture_on_commit_callbacks(execute=True):
        t = Tenant.objects.create(identifier="acme")
        TenantHost.objects.create(tenant=t, host="acme.com")
    assert r._cache == {}
    assert [m for _, m in layer.sent] == [
        {"type": "rockstar.tenants.changed", "identifiers": ["acme"], "close": False}] * 2
    assert {g for g, _ in layer.sent} == {"rockstar_ws.tenants"}
    layer.sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        t.deactivate()
    assert layer.sent[-1][1] == {"type": "rockstar.tenants.changed", "identifiers": ["acme"], "close": True}
    Tenant.objects.create(identifier="beta")
    layer.sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert Tenant.objects.all().activate() == 2
    assert layer.sent == [("rockstar_ws.tenants",
                           {"type": "rockstar.tenants.changed", "identifiers": ["acme", "beta"], "close": False})]
    layer.sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert Tenant.objects.filter(identifier="beta").deactivate() == 1
    assert layer.sent[-1][1]["close"] is True and layer.sent[-1][1]["identifiers"] == ["beta"]
    assert not Tenant.objects.get(identifier="beta").is_active


@pytest.mark.django_db
def test_nothing_is_broadcast_when_the_transaction_rolls_back(layer, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        try:
            with transaction.atomic():
                Tenant.objects.create(identifier="acme").deactivate()
                raise RuntimeError("rollback")
        except RuntimeError:
            pass
    assert layer.sent == []


# -- the handshake steps -------------------------------------------------------------------------
T1 = TenantInfo("tenant1")


@pytest.mark.parametrize(("claims", "scopes", "options", "admitted"), [
    ({"tenant_id": "tenant1"}, (), {}, True),
    ({"tenant_id": "tenant2"}, (), {}, False),
    ({}, (), {}, False),
    ({"tenant_id": None}, (), {}, False),
    ({"tenant_id": "TENANT1"}, (), {}, False),  # identifiers are compared exactly
    ({"tenant_id": "tenant2"}, ("staff:all",), {"cross_tenant_scopes": ["staff:all"]}, True),
    ({}, ("staff:all",), {"cross_tenant_scopes": ["staff:all"]}, True),
    ({"tenant_id": "tenant2"}, ("chat",), {"cross_tenant_scopes": ["staff:all"]}, False),
    ({"tenant_id": "tenant2"}, ("staff:all",), {}, False),
])
def test_token_binding_rule(claims, scopes, options, admitted):
    ctx = make_ctx(tenant=T1, claims=claims, scopes=scopes, **options)
    ctx.request.tenant_id = "tenant2"  # whatever authentication set, the host's tenant wins
    if admitted:
        tenants.check_tenant_binding(ctx)
        assert ctx.request.tenant_id == "tenant1"
    else:
        with pytest.raises(Deny) as denied:
            tenants.check_tenant_binding(ctx)
        assert denied.value.status == 403


def test_binding_numeric_claim_and_no_tenant_host():
    ctx = make_ctx(tenant=TenantInfo("42"), claims={"tenant_id": 42})
    tenants.check_tenant_binding(ctx)
    ctx = make_ctx(tenant=None, claims={"tenant_id": "tenant2"})
    ctx.request.tenant_id = "tenant2"
    tenants.check_tenant_binding(ctx)  # no tenant host: nothing to bind to
    assert ctx.request.tenant_id == "tenant2"


def test_cross_tenant_scopes_as_a_string_fails_closed():
    ctx = make_ctx(tenant=T1, claims={}, scopes=("s",), cross_tenant_scopes="staff:all")
    with pytest.raises(ImproperlyConfigured, match="must be a list"):
        tenants.check_tenant_binding(ctx)


def test_tenant_overrides_reach_the_connection_upgrader_only_for_that_tenant():
    from rockstar_ws.limits.upgrader import effective_upgrader

    ctx = make_ctx(tenant=TenantInfo("t", settings={"max_message_size": 8, "allowed_origins": ["https://a.com"]}))
    ctx.upgrader = base = effective_upgrader(ctx.route, ctx.server.upgrader)
    tenants.apply_tenant_settings(ctx)
    up = ctx.upgrader
    assert (up.max_message_size, list(up.allowed_origins)) == (8, ["https://a.com"])
    assert base.max_message_size != 8 and "upgrader" not in ctx.route.options  # nothing shared was changed
    plain = make_ctx(tenant=TenantInfo("u"))
    plain.upgrader = base
    tenants.apply_tenant_settings(plain)
    assert plain.upgrader is base


# -- admin -----------------------------------------------------------------------------------------
def _add_form(**fields: str) -> dict[str, str]:
    data = {"identifier": "shop", "name": "Shop", "is_active": "on", "max_connections": "", "settings": "{}",
            "hosts-TOTAL_FORMS": "1", "hosts-INITIAL_FORMS": "0", "hosts-MIN_NUM_FORMS": "0",
            "hosts-MAX_NUM_FORMS": "1000", "hosts-0-host": "Shop.Example.com:443", "hosts-0-id": "",
            "hosts-0-tenant": ""}
    data.update(fields)
    return data


@pytest.mark.django_db
def test_admin_creates_a_tenant_with_hosts(admin_client):
    response = admin_client.post("/admin/rockstar_ws/tenant/add/", _add_form(settings=""))
    assert response.status_code == 302, response.content.decode()[:2000]
    shop = Tenant.objects.get(identifier="shop")
    assert shop.host_names == ["shop.example.com"] and shop.settings == {}
    page = admin_client.get("/admin/rockstar_ws/tenant/").content.decode()
    assert "shop.example.com" in page and "Deactivate selected tenants" in page


@pytest.mark.django_db
def test_admin_shows_bad_overrides_and_stores_nothing(admin_client):
    response = admin_client.post("/admin/rockstar_ws/tenant/add/", _add_form(settings='{"bogus": 1}'))
    assert response.status_code == 200
    assert "Unknown tenant setting &#x27;bogus&#x27;" in response.content.decode()
    assert not Tenant.objects.exists()


@pytest.mark.django_db
def test_admin_unticking_active_closes_the_tenants_connections(admin_client, layer,
                                                               django_capture_on_commit_callbacks):
    t = Tenant.objects.create(identifier="shop", name="Shop")
    TenantHost.objects.create(tenant=t, host="shop.example.com")
    h = t.hosts.get()
    form = _add_form(**{"hosts-INITIAL_FORMS": "1", "hosts-0-id": str(h.pk), "hosts-0-tenant": str(t.pk),
                        "hosts-0-host": "shop.example.com"})
    del form["is_active"]
    layer.sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"/admin/rockstar_ws/tenant/{t.pk}/change/", form)
    assert response.status_code == 302
    assert not Tenant.objects.get(pk=t.pk).is_active
    assert {"type": "rockstar.tenants.changed", "identifiers": ["shop"], "close": True} in [m for _, m in layer.sent]


# -- the ws_tenant command --------------------------------------------------------------------
@pytest.mark.django_db
def test_ws_tenant_command(capsys):
    call_command("ws_tenant", "create", "acme", "--name", "Acme", "--host", "ACME.example.com:8000",
                 "--max-connections", "5", "--overrides", '{"max_message_size": 100}')
    t = Tenant.objects.get(identifier="acme")
    assert (t.name, t.max_connections, t.settings, t.host_names) == \
        ("Acme", 5, {"max_message_size": 100}, ["acme.example.com"])
    call_command("ws_tenant", "add-host", "acme", "www.acme.example.com")
    call_command("ws_tenant", "deactivate", "acme")
    assert not Tenant.objects.get(identifier="acme").is_active
    call_command("ws_tenant", "list")
    assert "acme\tINACTIVE\tacme.example.com, www.acme.example.com\tAcme" in capsys.readouterr().out
    call_command("ws_tenant", "activate", "acme")
    assert Tenant.objects.get(identifier="acme").is_active
    call_command("ws_tenant", "remove-host", "WWW.acme.example.com")
    assert Tenant.objects.get(identifier="acme").host_names == ["acme.example.com"]


@pytest.mark.django_db
@pytest.mark.parametrize(("args", "message"), [
    (["deactivate", "nope"], "No tenant 'nope'"),
    (["add-host", "acme", "Taken.example.com"], "already belongs to tenant 'other'"),
    (["create", "x", "--overrides", "{bad"], "--overrides is not valid JSON"),
    (["create", "x", "--overrides", '{"nope": 1}'], "Unknown tenant setting 'nope'"),
    (["create", "x", "--host", "http://bad/"], "host name"),
    (["remove-host", "missing.example.com"], "No tenant has host"),
])
def test_ws_tenant_command_errors_name_the_problem(args, message):
    Tenant.objects.create(identifier="acme")
    TenantHost.objects.create(tenant=Tenant.objects.create(identifier="other"), host="taken.example.com")
    with pytest.raises(CommandError, match=message):
        call_command("ws_tenant", *args)
    assert not Tenant.objects.filter(identifier="x").exists()  # nothing half-created


# -- system checks -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("settings", "check_id"), [
    ({"TENANT_RESOLVER": "no.such.fn"}, "rockstar_ws.E041"),
    ({"TENANT_CACHE_TTL": -1}, "rockstar_ws.E042"),
    ({"TENANT_SWEEP_INTERVAL": "often"}, "rockstar_ws.E042"),
])
def test_system_checks(settings, check_id):
    with override_settings(ROCKSTAR_WS=settings):
        assert check_id in [e.id for e in check_tenancy()]


def test_system_check_on_route_options(monkeypatch):
    from rockstar_ws import default_server

    route = default_server.register_route("/ws/test/bad-cross", _handler, cross_tenant_scopes="staff:all")
    try:
        assert "rockstar_ws.E043" in [e.id for e in check_tenancy()]
    finally:
        default_server.routes.global_routes.exact.pop(route.path)
    assert check_tenancy() == []


# -- the sweep and the control message --------------------------------------------------------------
class FakeConn:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.closed = False
        self.closed_with: tuple[int, str] | None = None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed, self.closed_with = True, (code, reason)


def _server_with(owners: dict[str, TenantInfo | None]) -> tuple[WebSocketServer, dict[str, FakeConn]]:
    """A server whose resolver answers from ``owners`` and one open connection per host."""
    server = WebSocketServer()
    tenants.install(server, TenantResolver(lambda host: owners.get(host), ttl=60))
    conns = {}
    for host, tenant in list(owners.items()):
        ctx = make_ctx(host, tenant=tenant)
        ctx.server = server
        ctx.request.tenant_id = tenant.identifier
        conns[host] = FakeConn(ctx)
        server._connections.add(conns[host])
    return server, conns


@pytest.mark.django_db(transaction=True)
async def test_sweep_closes_connections_whose_tenant_went_away():
    owners = {"a.com": TenantInfo("a"), "b.com": TenantInfo("b"), "c.com": TenantInfo("c"),
              "d.com": TenantInfo("d")}
    server, conns = _server_with(owners)
    assert await tenants.sweep() == 0
    owners["b.com"] = TenantInfo("b", is_active=False)  # changed where no signal fired
    owners["c.com"] = TenantInfo("other")                 # host moved to another tenant
    del owners["d.com"]                                   # host removed
    assert await tenants.sweep() == 3
    assert conns["a.com"].closed_with is None
    assert conns["b.com"].closed_with == (4403, "tenant inactive")
    assert conns["c.com"].closed_with == (4403, "tenant changed")
    assert conns["d.com"].closed_with == (4403, "tenant inactive")
    tenants.tenant_servers.discard(server)


async def test_control_message_clears_caches_and_closes_that_tenants_connections():
    server, conns = _server_with({"a.com": TenantInfo("a"), "b.com": TenantInfo("b")})
    resolver = server.tenant_resolver
    resolver._store("a.com", TenantInfo("a"))
    await propagation._control.handle({"type": tenants.CONTROL_MESSAGE, "identifiers": ["a"], "close": True})
    assert resolver._cache == {}
    assert conns["a.com"].closed_with == (4403, "tenant inactive")
    assert conns["b.com"].closed_with is None
    await propagation._control.handle({"type": tenants.CONTROL_MESSAGE, "identifiers": ["b"], "close": False})
    assert conns["b.com"].closed_with is None
    tenants.tenant_servers.discard(server)


def test_unmigrated_tables_mean_no_tenant_but_other_errors_refuse(monkeypatch):
    from django.db import OperationalError, connection

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("no such table: rockstar_ws_tenanthost")

    monkeypatch.setattr(TenantHost.objects, "select_related", broken)
    monkeypatch.setattr(connection.introspection, "table_names", lambda *a, **k: [])
    assert tenants.model_resolver("a.com") is None
    monkeypatch.setattr(connection.introspection, "table_names", lambda *a, **k: ["rockstar_ws_tenanthost"])
    with pytest.raises(OperationalError):
        tenants.model_resolver("a.com")


async def test_a_client_leaving_mid_lookup_does_not_cancel_the_others():
    gate = asyncio.Event()

    started = asyncio.Event()

    async def slow(host: str) -> str:
        started.set()
        await gate.wait()
        return "acme"

    r = TenantResolver(slow, ttl=60)
    leaver = asyncio.ensure_future(r.lookup("acme.com"))
    stayer = asyncio.ensure_future(r.lookup("acme.com"))
    await asyncio.wait_for(started.wait(), 10)  # the shared lookup is under way
    leaver.cancel()
    await asyncio.wait([leaver], timeout=10)
    gate.set()
    assert (await stayer).identifier == "acme"
    assert leaver.cancelled()
    assert r.calls == 1 and "acme.com" in r._cache
