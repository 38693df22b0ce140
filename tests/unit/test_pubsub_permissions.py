"""Per-group permissions (rockstar_ws/pubsub/permissions.py): every rule kind allowed and refused,
a cross-tenant case for every pattern shape, and the settings form with its errors."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from hypothesis import given
from hypothesis import strategies as st

from rockstar_ws.core.context import Headers, Request
from rockstar_ws.pubsub.permissions import (
    Action,
    Permissions,
    Principal,
    RefusalCode,
    Rule,
    all_scopes,
    any_scope,
    anyone,
    authenticated,
    check,
    namespaced,
    nobody,
    tenant_bound,
    user_limited,
    validate_group,
)

OK = None
NO_RULE, UNAUTH, FORBIDDEN, BAD = (RefusalCode.NO_RULE, RefusalCode.UNAUTHENTICATED, RefusalCode.FORBIDDEN,
                                   RefusalCode.BAD_GROUP)


def staff_only(principal: Principal, group: str, action: Action) -> bool:
    """A sync check that queries the ORM (run through sync_to_async by the rule)."""
    return get_user_model().objects.filter(pk=principal.user_id, is_staff=True).exists()


async def shop_open(principal: Principal, group: str, action: Action) -> bool:
    """An async check that refuses with its own message."""
    if group.endswith(".closed"):
        raise PermissionDenied("the shop is closed")
    return True


RULES = [
    Rule("news", subscribe=anyone(), publish=nobody()),
    Rule("members", subscribe=authenticated()),
    Rule("reports.*", subscribe=any_scope("reports:read", "admin"), publish=all_scopes("reports:write", "admin")),
    Rule("user:{user_id}", subscribe=user_limited(), presence=user_limited()),
    Rule("tenant:{tenant_id}:*", subscribe=tenant_bound(), publish=[tenant_bound(), any_scope("write")]),
    Rule("vip.*", subscribe=tenant_bound(["t1"])),
    Rule("staff.*", subscribe=check(staff_only)),
    Rule("shop.*", subscribe=check(shop_open)),
    Rule("room.*", subscribe=authenticated(), publish=authenticated(), presence=authenticated()),
]

SETTINGS = [
    {"pattern": "news", "subscribe": "anyone", "publish": "nobody"},
    {"pattern": "members", "subscribe": "authenticated"},
    {"pattern": "reports.*", "subscribe": {"any_scopes": ["reports:read", "admin"]},
     "publish": {"all_scopes": ["reports:write", "admin"]}},
    {"pattern": "user:{user_id}", "subscribe": "user", "presence": "user"},
    {"pattern": "tenant:{tenant_id}:*", "subscribe": "tenant", "publish": ["tenant", {"any_scopes": ["write"]}]},
    {"pattern": "vip.*", "subscribe": {"tenants": ["t1"]}},
    {"pattern": "staff.*", "subscribe": {"callable": "tests.unit.test_pubsub_permissions.staff_only"}},
    {"pattern": "shop.*", "subscribe": {"callable": "tests.unit.test_pubsub_permissions.shop_open"}},
    {"pattern": "room.*", "subscribe": "authenticated", "publish": "authenticated", "presence": "authenticated"},
]

ANON = Principal()
ANON_T1 = Principal(tenant_id="t1")
ALICE = Principal("1", "t1", frozenset({"reports:read"}), True)  # tenant t1
BOB = Principal("2", "t2", frozenset({"reports:write", "admin", "write"}), True)  # tenant t2
CAROL = Principal("3", None, frozenset({"write"}), True)  # a user of no tenant
STAFF = "staff"  # replaced by the staff user's principal (needs the database)

S, P, PR = Action.SUBSCRIBE, Action.PUBLISH, Action.PRESENCE

TABLE: list[tuple[str, Principal | str, Action, str, RefusalCode | None]] = [
    # anyone / nobody
    ("anyone", ANON, S, "news", OK),
    ("nobody", ALICE, P, "news", FORBIDDEN),
    ("no check for the action", ALICE, PR, "news", FORBIDDEN),
    # authenticated only
    ("authenticated", ALICE, S, "members", OK),
    ("authenticated", ANON, S, "members", UNAUTH),
    ("authenticated", ANON_T1, S, "room.lobby", UNAUTH),
    # scopes, any of / all of
    ("any scope", ALICE, S, "reports.q3", OK),
    ("any scope", CAROL, S, "reports.q3", FORBIDDEN),
    ("any scope", ANON, S, "reports.q3", UNAUTH),
    ("all scopes", BOB, P, "reports.q3", OK),
    ("all scopes", ALICE, P, "reports.q3", FORBIDDEN),
    # user-limited
    ("user", ALICE, S, "user:1", OK),
    ("user", BOB, S, "user:1", FORBIDDEN),
    ("user", ANON, S, "user:1", UNAUTH),
    ("user", ALICE, PR, "user:1", OK),
    ("user, no check for the action", ALICE, P, "user:1", FORBIDDEN),
    # tenant-bound
    ("tenant", ALICE, S, "tenant:t1:orders", OK),
    ("tenant", ALICE, S, "tenant:t2:orders", FORBIDDEN),
    ("tenant", CAROL, S, "tenant:t1:orders", FORBIDDEN),
    ("tenant", ANON_T1, S, "tenant:t1:orders", OK),  # tenant-bound does not need a login
    ("tenant and scope", BOB, P, "tenant:t2:orders", OK),
    ("tenant and scope", ALICE, P, "tenant:t1:orders", FORBIDDEN),
    ("listed tenants", ALICE, S, "vip.lounge", OK),
    ("listed tenants", BOB, S, "vip.lounge", FORBIDDEN),
    ("listed tenants", CAROL, S, "vip.lounge", FORBIDDEN),
    # callables: sync with the ORM, async with its own message
    ("sync callable", STAFF, S, "staff.board", OK),
    ("sync callable", ALICE, S, "staff.board", FORBIDDEN),
    ("async callable", ANON, S, "shop.open", OK),
    ("async callable", ANON, S, "shop.closed", FORBIDDEN),
    # no rule, bad names
    ("no rule", ALICE, S, "elsewhere", NO_RULE),
    ("no rule: * needs one character", ALICE, S, "room.", NO_RULE),
    ("bad group", ALICE, S, "room lobby", BAD),
    ("bad group", ALICE, S, "room.*", BAD),
    ("bad group", ALICE, S, "x" * 201, BAD),
    ("bad group", ALICE, S, "", BAD),
]


@pytest.fixture
async def staff_principal() -> Principal:
    user = await sync_to_async(get_user_model().objects.create_user)("pubsub-staff", password="x", is_staff=True)
    return Principal(str(user.pk), "t1", frozenset(), True, user)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("source", ["code", "settings"])
@pytest.mark.parametrize(("kind", "who", "action", "group", "expected"), TABLE,
                         ids=[f"{r[0]}-{r[2]}-{r[3][:20]}-{'ok' if r[4] is None else r[4]}" for r in TABLE])
async def test_every_rule_kind_allowed_and_refused(source: str, kind: str, who: Principal | str, action: Action,
                                                   group: str, expected: RefusalCode | None,
                                                   staff_principal: Principal) -> None:
    permissions = Permissions(RULES) if source == "code" else Permissions.from_settings(SETTINGS)
    principal = staff_principal if who == STAFF else who
    assert isinstance(principal, Principal)
    refusal = await permissions.authorize(principal, action, group)
    assert (refusal.code if refusal else None) == expected, refusal
    if refusal is not None:
        assert refusal.message and (not group or group not in refusal.message)  # no client text echoed back
        assert refusal.as_dict() == {"code": str(expected), "message": refusal.message}


async def test_a_callable_refusal_carries_its_message() -> None:
    refusal = await Permissions(RULES).authorize(ANON, "subscribe", "shop.closed")
    assert refusal is not None and refusal.message == "the shop is closed"


# -- tenants never mix: a case for every pattern shape --------------------------------------------
# (pattern shape, rules, group) -> the same group asked by a principal of t1 and of t2.
SHAPES = [
    ("literal", [Rule("news", subscribe=anyone())], "news"),
    ("wildcard", [Rule("room.*", subscribe=authenticated())], "room.lobby"),
    ("user placeholder", [Rule("user:{user_id}", subscribe=user_limited())], "user:7"),
    ("tenant placeholder", [Rule("tenant:{tenant_id}:*", subscribe=anyone())], "tenant:t1:orders"),
]
T1_USER7 = Principal("7", "t1", frozenset(), True)
T2_USER7 = Principal("7", "t2", frozenset(), True)  # the same user id in another tenant


@pytest.mark.parametrize(("shape", "rules", "group"), SHAPES, ids=[s[0] for s in SHAPES])
async def test_cross_tenant_for_every_pattern_shape(shape: str, rules: list[Rule], group: str) -> None:
    permissions = Permissions(rules)
    assert await permissions.authorize(T1_USER7, "subscribe", group) is None
    mine = namespaced(group, T1_USER7.tenant_id)
    refusal = await permissions.authorize(T2_USER7, "subscribe", group)
    if refusal is None:
        # Allowed by name, the other tenant reaches its own stream, never t1's.
        assert namespaced(group, T2_USER7.tenant_id) != mine
    else:
        assert refusal.code == RefusalCode.FORBIDDEN
    # No group name t2 can write (valid or not) lands in t1's stream.
    for attempt in (group, mine, f"t:t1/{group}", f"../t:t1/{group}", "t1/" + group):
        if validate_group(attempt) is None:
            assert namespaced(attempt, "t2") != mine


@given(a=st.text(min_size=1, max_size=12), b=st.text(min_size=1, max_size=12),
       g1=st.from_regex(r"[A-Za-z0-9_.:@#=~,+\-]{1,30}", fullmatch=True),
       g2=st.from_regex(r"[A-Za-z0-9_.:@#=~,+\-]{1,30}", fullmatch=True))
def test_namespaces_of_two_tenants_never_meet(a: str, b: str, g1: str, g2: str) -> None:
    if a != b:
        assert namespaced(g1, a) != namespaced(g2, b)
    assert namespaced(g1, None) != namespaced(g2, a)


async def test_placeholders_bind_and_never_fall_through() -> None:
    # A broader rule later must not open user:2 to user 1: the first fitting rule decides.
    permissions = Permissions([Rule("user:{user_id}", subscribe=user_limited()), Rule("*", subscribe=anyone())])
    assert await permissions.authorize(ALICE, "subscribe", "user:1") is None
    refusal = await permissions.authorize(ALICE, "subscribe", "user:2")
    assert refusal is not None and refusal.code == RefusalCode.FORBIDDEN
    assert await permissions.authorize(ALICE, "subscribe", "anything") is None
    # Ids with separators bind exactly, whatever the split.
    colon = Principal("a:b", "t:1", frozenset(), True)
    permissions = Permissions([Rule("tenant:{tenant_id}:u:{user_id}", subscribe=anyone())])
    assert await permissions.authorize(colon, "subscribe", "tenant:t:1:u:a:b") is None
    assert await permissions.authorize(colon, "subscribe", "tenant:t:1:u:a:c") is not None


def test_principal_from_request() -> None:
    request = Request(path="/ws/live", host="t1.example.com", remote_addr="127.0.0.1:5", local_addr="127.0.0.1:80",
                      headers=Headers([]), user_id="9", tenant_id="t1", scopes=frozenset({"read"}))
    p = Principal.from_request(request, user="u")
    assert p == Principal("9", "t1", frozenset({"read"}), True, "u")
    anon = Principal.from_request(Request(path="/", host="h", remote_addr="", local_addr="", headers=Headers([])))
    assert not anon.is_authenticated and anon.user_id is None and anon.tenant_id is None


# -- declaring rules wrong ------------------------------------------------------------------------
@pytest.mark.parametrize(("rules", "match"), [
    ({"pattern": "news"}, "must be a list"),
    (["news"], r"PUBSUB_PERMISSIONS\[0\] must be a dict"),
    ([{"subscribe": "anyone"}], "needs a 'pattern'"),
    ([{"pattern": "news", "read": "anyone"}], r"unknown key\(s\) \['read'\]"),
    ([{"pattern": "news", "subscribe": "everyone"}], r"\[0\]\['subscribe'\]: unknown rule 'everyone'; use one of"),
    ([{"pattern": "news", "subscribe": {"any_scopes": "read"}}], "takes a list of strings"),
    ([{"pattern": "news", "subscribe": {"any_scopes": []}}], "one or more non-empty scope"),
    ([{"pattern": "news", "subscribe": {"any_scopes": ["a"], "all_scopes": ["b"]}}], "exactly one key"),
    ([{"pattern": "news", "subscribe": {"callable": "nowhere.module.func"}}], "cannot be imported"),
    ([{"pattern": "news", "subscribe": {"callable": 42}}], "import string"),
    ([{"pattern": "news", "subscribe": []}], "use 'nobody'"),
    ([{"pattern": "news", "subscribe": {"tenants": []}}], "non-empty list of tenant"),
    ([{"pattern": "news", "subscribe": "user"}], r"\[0\]: .*has no \{user_id\}"),
    ([{"pattern": "room.{name}", "subscribe": "anyone"}], r"unknown placeholder \{name\}"),
    ([{"pattern": "room lobby", "subscribe": "anyone"}], "characters a group cannot contain"),
    ([{"pattern": "", "subscribe": "anyone"}], "non-empty string"),
    ([{"pattern": "a", "subscribe": "anyone"}, {"pattern": "a", "publish": "anyone"}], "appears twice"),
])
def test_bad_settings_name_the_fix(rules: object, match: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=match):
        Permissions.from_settings(rules)


def test_bad_code_declarations_name_the_fix() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"has no \{user_id\}"):
        Rule("inbox", subscribe=[authenticated(), user_limited()])
    with pytest.raises(ImproperlyConfigured, match="not a string"):
        tenant_bound("t1")
    with pytest.raises(ImproperlyConfigured, match="Rule objects"):
        Permissions(["news"])  # type: ignore[list-item]
    with pytest.raises(ImproperlyConfigured, match="not callable"):
        check(42)  # type: ignore[arg-type]


async def test_a_bare_function_is_a_check_and_a_wrong_return_is_an_error() -> None:
    permissions = Permissions([Rule("a", subscribe=lambda p, g, a: p.is_authenticated),
                               Rule("b", subscribe=check(lambda p, g, a: "yes"))])
    assert await permissions.authorize(ALICE, "subscribe", "a") is None
    refusal = await permissions.authorize(ANON, "subscribe", "a")
    assert refusal is not None and refusal.code == RefusalCode.FORBIDDEN
    with pytest.raises(TypeError, match="must return True or False"):
        await permissions.authorize(ALICE, "subscribe", "b")
    with pytest.raises(ValueError):
        await permissions.authorize(ALICE, "read", "a")
