"""Who may subscribe to, publish to and see the presence of a group: rules matched by pattern.

A table of :class:`Rule` objects, each a pattern and one check per action::

    from rockstar_ws.pubsub.permissions import (
        Permissions, Rule, all_scopes, any_scope, anyone, authenticated, check, nobody, tenant_bound,
        user_limited)

    permissions = Permissions([
        Rule("news", subscribe=anyone(), publish=nobody()),
        Rule("room.*", subscribe=authenticated(), publish=authenticated(), presence=authenticated()),
        Rule("user:{user_id}", subscribe=user_limited()),
        Rule("tenant:{tenant_id}:*", subscribe=tenant_bound(), publish=[tenant_bound(), any_scope("write")]),
        Rule("orders.*", subscribe=check("shop.permissions.may_read_orders")),
    ])
    refusal = await permissions.authorize(principal, "subscribe", "room.lobby")   # None: allowed

or the same in settings (:meth:`Permissions.from_settings`, docs/protocol.md). The first rule
whose pattern fits the group decides (declaration order: put specific patterns first); a group
no rule fits is refused, and so is an action a rule gives no check for.

Patterns: literal characters, ``*`` (one or more characters of any kind, ``.`` and ``:``
included), ``{user_id}`` and ``{tenant_id}``. A placeholder binds: the rule fits the group by
its shape (``user:{user_id}`` fits ``user:43``), then the placeholder's text must be the
principal's own user id or tenant, whatever the check, or the action is refused; it never falls
through to a later, broader rule. So ``user:43`` is refused to user 42 even with ``"*"`` open to
anyone further down.

Tenants never mix: a group name is always relative to the connection's tenant.
:func:`namespaced` gives the stream a (tenant, group) pair lives in, so ``news`` on tenant A and
``news`` on tenant B are two streams, histories and presences, and no group name a client can
write reaches another tenant's. ``{tenant_id}`` binding adds the same guarantee to names that
spell the tenant out.
"""

from __future__ import annotations

import enum
import inspect
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote

from asgiref.sync import sync_to_async
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.utils.module_loading import import_string

if TYPE_CHECKING:
    from rockstar_ws.core.context import Request

__all__ = [
    "GROUP_MAX_LENGTH",
    "Action",
    "Check",
    "Permissions",
    "Principal",
    "Refusal",
    "RefusalCode",
    "Rule",
    "all_of",
    "all_scopes",
    "any_scope",
    "anyone",
    "authenticated",
    "check",
    "namespaced",
    "nobody",
    "tenant_bound",
    "user_limited",
    "validate_group",
]

GROUP_MAX_LENGTH = 200
_GROUP_RE = re.compile(r"[A-Za-z0-9_.:@#=~,+\-]+")
_PLACEHOLDERS = ("user_id", "tenant_id")
_TOKEN_RE = re.compile(r"\{([^{}]*)\}|\*")


class Action(enum.StrEnum):
    """What a principal asks to do with a group."""

    SUBSCRIBE = "subscribe"
    PUBLISH = "publish"
    PRESENCE = "presence"


class RefusalCode(enum.StrEnum):
    """Why an action on a group was refused (the ``code`` of an error reply, docs/protocol.md)."""

    BAD_GROUP = "bad_group"
    NO_RULE = "no_rule"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refused action: a code from :class:`RefusalCode` and a short text for the client.

    Messages never repeat the group name or other client text, so they are safe in any log line.
    """

    code: RefusalCode
    message: str

    def as_dict(self) -> dict[str, str]:
        """The ``error`` object of a protocol reply."""
        return {"code": str(self.code), "message": self.message}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who asks: the connection's user, tenant and token scopes.

    ``user`` is the Django user object when the server loaded one (callable checks may use it),
    else None; checks that only need ids use ``user_id``.
    """

    user_id: str | None = None
    tenant_id: str | None = None
    scopes: frozenset[str] = frozenset()
    is_authenticated: bool = False
    user: object | None = None

    @classmethod
    def from_request(cls, request: Request, user: object | None = None) -> Principal:
        """The principal of a connection, from what authentication and tenancy set on its request."""
        return cls(user_id=request.user_id, tenant_id=request.tenant_id, scopes=frozenset(request.scopes),
                   is_authenticated=request.user_id is not None, user=user)


def validate_group(group: object) -> Refusal | None:
    """None when ``group`` is a valid group name, else a ``bad_group`` refusal saying why."""
    if not isinstance(group, str) or not group:
        return Refusal(RefusalCode.BAD_GROUP, "group must be a non-empty string")
    if len(group) > GROUP_MAX_LENGTH:
        return Refusal(RefusalCode.BAD_GROUP, f"group must be at most {GROUP_MAX_LENGTH} characters")
    if not _GROUP_RE.fullmatch(group):
        return Refusal(RefusalCode.BAD_GROUP, "group may contain only letters, digits and _ . : @ # = ~ , + -")
    return None


def namespaced(group: str, tenant_id: str | None) -> str:
    """The stream a group name of a connection of ``tenant_id`` means (history key, layer group).

    The tenant is percent-encoded, so no group or tenant text can forge another tenant's prefix.
    """
    if tenant_id is None:
        return f"-/{group}"
    return f"t:{quote(tenant_id, safe='')}/{group}"


# -- checks -------------------------------------------------------------------------------------
class Check(Protocol):
    """One condition of a rule: None allows, a :class:`Refusal` refuses."""

    async def __call__(self, principal: Principal, group: str, action: Action) -> Refusal | None:
        """Decide ``action`` on ``group`` (the pattern already fits it) for ``principal``."""
        ...


def _unauthenticated() -> Refusal:
    return Refusal(RefusalCode.UNAUTHENTICATED, "this group needs an authenticated connection")


@dataclass(frozen=True, slots=True)
class _Anyone:
    async def __call__(self, principal: Principal, group: str, action: Action) -> Refusal | None:
        return None


@dataclass(frozen=True, slots=True)
class _Nobody:
    async def __call__(self, principal: Principal, group: str, action: Action) -> Refusal | None:
        return Refusal(RefusalCode.FORBIDDEN, f"{action} is not allowed on this group")


@dataclass(frozen=True, slots=True)
class _Authenticated:
    async def __call__(self, principal: Principal, group: str, action: Action) -> Refusal | None:
        return None if principal.is_authenticated else _unauthenticated()


@dataclass(frozen=True, slots=True)
class _Scopes:
    scopes: frozenset[str]
    require_all: bool

    async def __call__(self, principal: Principal, group: str, action: Action) -> Refusal | None:
        if not principal.is_authenticated:
            return _unauthenticated()
        ok = self.scopes <= principal.scopes if self.require_all else bool(self.scopes & principal.scopes)
        if ok:
            return None
        kind = "all" if self.require_all else "one"
        return Refusal(RefusalCode.FORBIDDEN, f"{action} needs {kind} of the scopes {sorted(self.scopes)}")


@dataclass(frozen=True, slots=True)
class _UserLimited:
    """The binding of ``{user_id}`` does the work; this adds that a user must be known."""

    async def __call__(self, principal: Principal, group: str, action: Action) -> Refusal | None:
        return None if principal.is_authenticated and principal.user_id is not None else _unauthenticated()


@dataclass(frozen=True, slots=True)
class _TenantBound:
    tenants: frozenset[str] | None

    async def __call__(self, principal: Principal, group: str, action: Action) -> Refusal | None:
        if principal.tenant_id is None:
            return Refusal(RefusalCode.FORBIDDEN, "this group needs a connection of a tenant")
        if self.tenants is not None and principal.tenant_id not in self.tenants:
            return Refusal(RefusalCode.FORBIDDEN, "this group is not open to this tenant")
        return None


CheckFunction = Callable[[Principal, str, Action], "bool | Awaitable[bool]"]


@dataclass(frozen=True, slots=True)
class _Callable:
    func: CheckFunction
    name: str

    async def __call__(self, principal: Principal, group: str, action: Action) -> Refusal | None:
        try:
            if inspect.iscoroutinefunction(self.func):
                allowed = await self.func(principal, group, action)
            else:
                # A plain function may query the ORM: run it where Django allows sync code.
                result = await sync_to_async(self.func)(principal, group, action)
                allowed = await result if inspect.isawaitable(result) else result
        except PermissionDenied as exc:
            return Refusal(RefusalCode.FORBIDDEN, str(exc) or f"{action} is not allowed on this group")
        if allowed is True:
            return None
        if allowed is False:
            return Refusal(RefusalCode.FORBIDDEN, f"{action} is not allowed on this group")
        raise TypeError(f"permission check {self.name} returned {type(allowed).__name__}; it must return True or False")


@dataclass(frozen=True, slots=True)
class _AllOf:
    checks: tuple[Check, ...]

    async def __call__(self, principal: Principal, group: str, action: Action) -> Refusal | None:
        for c in self.checks:
            refusal = await c(principal, group, action)
            if refusal is not None:
                return refusal
        return None


def anyone() -> Check:
    """Allow every connection, authenticated or not."""
    return _Anyone()


def nobody() -> Check:
    """Refuse every connection (e.g. only the server publishes with ``server.broadcast``)."""
    return _Nobody()


def authenticated() -> Check:
    """Allow authenticated connections (``unauthenticated`` refusal otherwise)."""
    return _Authenticated()


def any_scope(*scopes: str) -> Check:
    """Allow authenticated connections whose token has at least one of ``scopes``."""
    return _Scopes(_scope_set(scopes, "any_scope"), require_all=False)


def all_scopes(*scopes: str) -> Check:
    """Allow authenticated connections whose token has every one of ``scopes``."""
    return _Scopes(_scope_set(scopes, "all_scopes"), require_all=True)


def user_limited() -> Check:
    """Allow only the user the group names: the rule's pattern must contain ``{user_id}``."""
    return _UserLimited()


def tenant_bound(tenants: Iterable[str] | None = None) -> Check:
    """Allow connections of a tenant (of one of ``tenants`` when given), refuse those of none."""
    if tenants is None:
        return _TenantBound(None)
    if isinstance(tenants, str):
        raise ImproperlyConfigured("tenant_bound(tenants=...) takes a list of tenant identifiers, not a string")
    values = frozenset(tenants)
    if not values or not all(isinstance(t, str) and t for t in values):
        raise ImproperlyConfigured("tenant_bound(tenants=...) needs a non-empty list of tenant identifiers")
    return _TenantBound(values)


def check(func: CheckFunction | str) -> Check:
    """Allow when ``func(principal, group, action)`` returns True (sync or async; an import string too).

    A sync function runs in a thread through ``sync_to_async``, so it may use the ORM. Raising
    ``django.core.exceptions.PermissionDenied("why")`` refuses with that message.
    """
    name = func if isinstance(func, str) else getattr(func, "__qualname__", repr(func))
    if isinstance(func, str):
        try:
            func = import_string(func)
        except ImportError as exc:
            raise ImproperlyConfigured(f"permission check {name!r} cannot be imported: {exc}") from exc
    if not callable(func):
        raise ImproperlyConfigured(f"permission check {name!r} is not callable")
    return _Callable(func, name)


def all_of(*checks: Check) -> Check:
    """Allow when every check allows; the first refusal is the answer."""
    if not checks:
        raise ImproperlyConfigured("all_of() needs at least one check")
    return _AllOf(tuple(checks))


def _scope_set(scopes: Sequence[str], name: str) -> frozenset[str]:
    if not scopes or not all(isinstance(s, str) and s for s in scopes):
        raise ImproperlyConfigured(f"{name}() needs one or more non-empty scope strings")
    return frozenset(scopes)


# -- rules --------------------------------------------------------------------------------------
def _as_check(value: Check | Sequence[Check] | None, where: str) -> Check | None:
    if value is None:
        return None
    if isinstance(value, Sequence) and not isinstance(value, str):
        return all_of(*(_as_check(v, where) or nobody() for v in value))
    if inspect.isfunction(value) or inspect.ismethod(value):
        # A bare function answers True/False: give it check()'s contract rather than the
        # Check protocol's (which returns a Refusal), so neither reading of it is wrong.
        return check(value)
    if not callable(value):
        raise ImproperlyConfigured(
            f"{where}: a check must come from anyone(), authenticated(), ... or be a list of them")
    return value


@dataclass(frozen=True)
class Rule:
    """One pattern and a check per action (a list of checks: all must allow; None: refused)."""

    pattern: str
    subscribe: Check | Sequence[Check] | None = None
    publish: Check | Sequence[Check] | None = None
    presence: Check | Sequence[Check] | None = None
    _shape: re.Pattern[str] = field(init=False, repr=False, compare=False)
    _placeholders: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _checks: dict[Action, Check | None] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        shape, placeholders = _compile(self.pattern)
        checks = {a: _as_check(getattr(self, a.value), f"rule {self.pattern!r} {a.value}") for a in Action}
        for action, c in checks.items():
            if _uses_user_limited(c) and "user_id" not in placeholders:
                raise ImproperlyConfigured(
                    f"rule {self.pattern!r}: {action.value} is user_limited() but the pattern has no "
                    "{user_id}; write it like 'user:{user_id}'")
        object.__setattr__(self, "_shape", shape)
        object.__setattr__(self, "_placeholders", placeholders)
        object.__setattr__(self, "_checks", checks)

    def fits(self, group: str) -> bool:
        """True when the group has the pattern's shape (placeholders still unbound)."""
        return self._shape.fullmatch(group) is not None

    def binds(self, group: str, principal: Principal) -> bool:
        """True when every placeholder of the pattern reads the principal's own id."""
        if not self._placeholders:
            return True
        values = {"user_id": principal.user_id, "tenant_id": principal.tenant_id}
        if any(values[p] is None for p in self._placeholders):
            return False
        return _compile(self.pattern, values)[0].fullmatch(group) is not None

    def check_for(self, action: Action) -> Check | None:
        """The check of one action (None: the action is refused on this rule's groups)."""
        return self._checks[action]


def _uses_user_limited(c: Check | None) -> bool:
    if isinstance(c, _AllOf):
        return any(_uses_user_limited(x) for x in c.checks)
    return isinstance(c, _UserLimited)


def _compile(pattern: str, values: Mapping[str, str | None] | None = None) -> tuple[re.Pattern[str], tuple[str, ...]]:
    """The regex of a pattern: placeholders as any text, or as the given values when bound."""
    if not isinstance(pattern, str) or not pattern:
        raise ImproperlyConfigured(f"a rule's pattern must be a non-empty string, got {pattern!r}")
    parts: list[str] = []
    placeholders: list[str] = []
    pos = 0
    for m in _TOKEN_RE.finditer(pattern):
        parts.append(_literal(pattern, pattern[pos:m.start()]))
        if m.group(0) == "*":
            parts.append(".+")
        else:
            name = m.group(1)
            if name not in _PLACEHOLDERS:
                raise ImproperlyConfigured(
                    f"rule pattern {pattern!r}: unknown placeholder {{{name}}}; use {{user_id}} or {{tenant_id}}")
            placeholders.append(name)
            value = values.get(name) if values is not None else None
            parts.append(re.escape(value) if value is not None else ".+")
        pos = m.end()
    parts.append(_literal(pattern, pattern[pos:]))
    return re.compile("".join(parts)), tuple(placeholders)


def _literal(pattern: str, text: str) -> str:
    if text and not _GROUP_RE.fullmatch(text):
        raise ImproperlyConfigured(
            f"rule pattern {pattern!r} has characters a group cannot contain; groups use letters, digits "
            "and _ . : @ # = ~ , + -, patterns add * and {user_id} / {tenant_id}")
    return re.escape(text)


class Permissions:
    """An ordered table of rules: the first whose pattern fits a group decides."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        seen: set[str] = set()
        for r in self.rules:
            if not isinstance(r, Rule):
                raise ImproperlyConfigured(f"Permissions takes Rule objects, got {type(r).__name__}")
            if r.pattern in seen:
                raise ImproperlyConfigured(
                    f"rule pattern {r.pattern!r} appears twice; only the first can ever match, remove the other")
            seen.add(r.pattern)

    def rule_for(self, group: str) -> Rule | None:
        """The rule that decides for ``group``, or None when none fits."""
        for r in self.rules:
            if r.fits(group):
                return r
        return None

    async def authorize(self, principal: Principal, action: Action | str, group: str) -> Refusal | None:
        """None when ``principal`` may do ``action`` on ``group``, else the :class:`Refusal`."""
        action = Action(action)
        bad = validate_group(group)
        if bad is not None:
            return bad
        r = self.rule_for(group)
        if r is None:
            return Refusal(RefusalCode.NO_RULE, "no permission rule matches this group")
        if not r.binds(group, principal):
            if not principal.is_authenticated and "user_id" in r._placeholders:
                return _unauthenticated()
            return Refusal(RefusalCode.FORBIDDEN, "this group belongs to another user or tenant")
        c = r.check_for(action)
        if c is None:
            return Refusal(RefusalCode.FORBIDDEN, f"{action} is not allowed on this group")
        return await c(principal, group, action)

    @classmethod
    def from_settings(cls, rules: object, *, setting: str = "PUBSUB_PERMISSIONS") -> Permissions:
        """The table a setting declares: a list of dicts (docs/protocol.md, "Permissions")::

            [{"pattern": "news", "subscribe": "anyone", "publish": "nobody"},
             {"pattern": "room.*", "subscribe": "authenticated", "publish": {"any_scopes": ["chat"]}},
             {"pattern": "user:{user_id}", "subscribe": "user"},
             {"pattern": "tenant:{tenant_id}:*", "subscribe": ["tenant", {"all_scopes": ["a", "b"]}]},
             {"pattern": "orders.*", "subscribe": {"callable": "shop.perms.may_read"}}]
        """
        if not isinstance(rules, list | tuple):
            raise ImproperlyConfigured(
                f"{setting} must be a list of dicts like {{'pattern': 'news', 'subscribe': 'anyone'}}")
        built: list[Rule] = []
        for i, item in enumerate(rules):
            where = f"{setting}[{i}]"
            if not isinstance(item, Mapping):
                raise ImproperlyConfigured(f"{where} must be a dict with 'pattern' and subscribe/publish/presence")
            unknown = sorted(set(item) - {"pattern", *(a.value for a in Action)})
            if unknown:
                raise ImproperlyConfigured(
                    f"{where}: unknown key(s) {unknown}; the keys are pattern, subscribe, publish, presence")
            if "pattern" not in item:
                raise ImproperlyConfigured(f"{where} needs a 'pattern' (e.g. 'news', 'room.*', 'user:{{user_id}}')")
            kwargs = {a.value: _check_from_setting(item[a.value], f"{where}[{a.value!r}]")
                      for a in Action if a.value in item}
            try:
                built.append(Rule(item["pattern"], **kwargs))
            except ImproperlyConfigured as exc:
                raise ImproperlyConfigured(f"{where}: {exc}") from None
        try:
            return cls(built)
        except ImproperlyConfigured as exc:
            raise ImproperlyConfigured(f"{setting}: {exc}") from None


_NAMED = {"anyone": anyone, "nobody": nobody, "authenticated": authenticated, "user": user_limited,
          "tenant": tenant_bound}
_KEYED = ("any_scopes", "all_scopes", "tenants", "callable")


def _check_from_setting(value: object, where: str) -> Check | None:
    if value is None:
        return None
    if isinstance(value, str):
        if value not in _NAMED:
            raise ImproperlyConfigured(
                f"{where}: unknown rule {value!r}; use one of {sorted(_NAMED)}, a dict with one of "
                f"{list(_KEYED)}, or a list of these (all must allow)")
        return _NAMED[value]()
    if isinstance(value, list | tuple):
        if not value:
            raise ImproperlyConfigured(f"{where}: an empty list allows nothing; use 'nobody' or remove the key")
        return all_of(*(c for c in (_check_from_setting(v, f"{where}[{j}]") for j, v in enumerate(value))
                        if c is not None))
    if isinstance(value, Mapping):
        if len(value) != 1 or next(iter(value)) not in _KEYED:
            raise ImproperlyConfigured(
                f"{where}: a dict rule has exactly one key among {list(_KEYED)}, got {sorted(value)}")
        key, arg = next(iter(value.items()))
        try:
            if key == "callable":
                if not isinstance(arg, str):
                    raise ImproperlyConfigured("'callable' takes an import string like 'myapp.perms.may_read'")
                return check(arg)
            if not isinstance(arg, list | tuple):
                raise ImproperlyConfigured(f"{key!r} takes a list of strings, got {type(arg).__name__}")
            if key == "tenants":
                return tenant_bound(arg)
            return any_scope(*arg) if key == "any_scopes" else all_scopes(*arg)
        except ImproperlyConfigured as exc:
            raise ImproperlyConfigured(f"{where}: {exc}") from None
    raise ImproperlyConfigured(
        f"{where}: a rule is a name like 'anyone', a dict like {{'any_scopes': [...]}}, or a list")
