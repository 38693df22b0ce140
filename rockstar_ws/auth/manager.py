"""Authentication of handshakes on authenticated routes (the reference's ``AuthManager``).

The default :class:`AuthManager` validates SimpleJWT access tokens with SimpleJWT itself
(signature, ``exp``/``nbf``, token type, the user) and reads scopes and the tenant from the
token's claims. It looks for the token in this order:

1. the ``token`` query parameter (``AUTH_QUERY_PARAM``; None turns it off: URLs end up in logs),
2. ``Authorization: Bearer <token>`` (SimpleJWT's ``AUTH_HEADER_TYPES``),
3. the subprotocol pair ``["rockstar.bearer", <token>]`` (``AUTH_SUBPROTOCOL``): the server
   accepts the marker and never echoes the token,
4. the Django session user (Channels' ``AuthMiddlewareStack``), only with ``AUTH_SESSION`` on and
   an ``AUTH_SESSION_ORIGINS`` list the handshake's ``Origin`` must match.

A token that is present but invalid is refused; it never falls through to the next source.
Connections authenticated by a token close with 4401 when the token expires, unless the client
sent a fresh access token in time: a text message ``{"rockstar.refresh": "<token>"}`` (see
docs/auth.md). See :class:`TokenGuard`.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import router
from django.db.models import IntegerField

from ..conf import ws_settings
from ..core.errors import Deny
from ..core.logsafe import escape
from ..core.messages import CloseCode, TextMessage
from .lookup import Coalescer, CompiledIn, run_with_connections

if TYPE_CHECKING:
    from rest_framework_simplejwt.tokens import Token

    from ..core.connection import WebSocketConnection
    from ..core.context import Context

__all__ = ["REFRESH_PREFIX", "AuthManager", "TokenGuard", "scopes_from_claims"]

logger = logging.getLogger("rockstar_ws.auth")

#: Every refresh message starts with these characters (``{"rockstar.refresh": "<token>"}``,
#: with or without a space after the colon): the pump compares a text message's start with it.
#: AUTH_USER_CACHE_TTL's cache: (user id, jti) -> (user, monotonic expiry); only lookups that
#: passed every check are kept. Cleared by saves and deletes of users and blacklist entries.
_USER_CACHE: dict[tuple[str, str], tuple[Any, float]] = {}
_USER_CACHE_MAX = 10_000


def clear_user_cache(**_kwargs: Any) -> None:
    """Forget every cached user lookup (AUTH_USER_CACHE_TTL); connected to the model signals."""
    _USER_CACHE.clear()


def _connect_cache_signals() -> None:
    from django.db.models.signals import post_delete, post_save

    for signal in (post_save, post_delete):
        signal.connect(clear_user_cache, sender=get_user_model(), dispatch_uid=f"rockstar_ws.auth.user.{id(signal)}")
        if apps.is_installed("rest_framework_simplejwt.token_blacklist"):
            from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken

            signal.connect(clear_user_cache, sender=BlacklistedToken,
                           dispatch_uid=f"rockstar_ws.auth.blacklist.{id(signal)}")


#: (user model, id field name) -> the compiled users query; the compiled blacklist query.
_COMPILED: dict[tuple[Any, str], CompiledIn] = {}
_BLACKLIST_QUERY: list[CompiledIn] = []


def _compiled_queries(user_model: Any, field: Any, blacklist: bool) -> tuple[CompiledIn, CompiledIn | None]:
    """The lookup's two queries: users by ``USER_ID_FIELD__in``, blacklisted jtis by ``jti__in``."""
    key = (user_model, field.name)
    users = _COMPILED.get(key)
    if users is None:
        name = f"{field.name}__in"
        users = _COMPILED[key] = CompiledIn(lambda values: user_model._default_manager.filter(**{name: values}),
                                            field)
    if not blacklist:
        return users, None
    if not _BLACKLIST_QUERY:
        from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

        _BLACKLIST_QUERY.append(CompiledIn(
            lambda values: BlacklistedToken.objects.filter(token__jti__in=values).values_list("token__jti", flat=True),
            OutstandingToken._meta.get_field("jti"), flat=True))
    return users, _BLACKLIST_QUERY[0]


REFRESH_PREFIX = '{"rockstar.refresh"'

#: Where ``authenticate`` leaves the :class:`TokenGuard` of a token connection.
GUARD_KEY = "rockstar_ws.token_guard"
#: Where ``authenticate`` records the source that authenticated the handshake.
SOURCE_KEY = "rockstar_ws.auth_source"

_UNSET: Any = object()


def scopes_from_claims(claims: dict[str, Any], scope_claim: str | None = "scope",
                       scopes_claim: str | None = "scopes") -> frozenset[str]:
    """The scopes a token grants: the OAuth 2 space-separated ``scope`` string claim and the
    ``scopes`` list claim, together. Values of another type are ignored."""
    found: set[str] = set()
    if scope_claim:
        value = claims.get(scope_claim)
        if isinstance(value, str):
            found.update(value.split())
        elif isinstance(value, list):  # some issuers put a list under "scope"
            found.update(v for v in value if isinstance(v, str) and v)
    if scopes_claim:
        value = claims.get(scopes_claim)
        if isinstance(value, list):
            found.update(v for v in value if isinstance(v, str) and v)
        elif isinstance(value, str):
            found.update(value.split())
    return frozenset(found)


def _token_error_detail(exc: BaseException) -> tuple[str, str]:
    """(client reason, log detail) for a SimpleJWT TokenError, from the PyJWT error behind it."""
    import jwt

    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, jwt.ExpiredSignatureError):
            return "token expired", "token expired (exp)"
        if isinstance(cause, jwt.ImmatureSignatureError):
            return "invalid token", "token not yet valid (nbf)"
        if isinstance(cause, jwt.InvalidAlgorithmError):
            return "invalid token", "algorithm not allowed"
        if isinstance(cause, jwt.InvalidSignatureError):
            return "invalid token", "bad signature"
        if isinstance(cause, jwt.DecodeError):
            return "invalid token", f"malformed token ({cause})"
        if isinstance(cause, jwt.InvalidTokenError):
            return "invalid token", f"invalid token ({type(cause).__name__}: {cause})"
        cause = cause.__cause__
    text = str(exc.args[0]) if exc.args else str(exc)
    if "expired" in text:
        return "token expired", text
    return "invalid token", text


class AuthManager:
    """Validates the access token of a handshake and fills ``ctx.request``.

    Every option defaults to the ``ROCKSTAR_WS`` setting of the same name (``AUTH_*``); pass one
    to override it for one server: ``WebSocketServer(auth_manager=AuthManager(query_param=None))``.
    Subclass and override :meth:`get_user` (another user lookup), :meth:`scopes_for`,
    :meth:`tenant_for` (other claims) or :meth:`session_scopes`.
    """

    #: The SimpleJWT token class that validates (access tokens; type claim "access").
    token_class: type[Token] | None = None

    def __init__(self, *, query_param: Any = _UNSET, subprotocol: Any = _UNSET,
                 session: bool | None = None, session_origins: Sequence[str] | None = None,
                 scope_claim: Any = _UNSET, scopes_claim: Any = _UNSET, tenant_claim: Any = _UNSET,
                 close_on_expiry: bool | None = None, check_blacklist: bool | None = None) -> None:
        s = ws_settings
        self.query_param: str | None = s.AUTH_QUERY_PARAM if query_param is _UNSET else query_param
        self.subprotocol: str | None = s.AUTH_SUBPROTOCOL if subprotocol is _UNSET else subprotocol
        self.session = s.AUTH_SESSION if session is None else session
        origins = s.AUTH_SESSION_ORIGINS if session_origins is None else session_origins
        self.session_origins = tuple(origins) if origins else ()
        self.scope_claim: str | None = s.AUTH_SCOPE_CLAIM if scope_claim is _UNSET else scope_claim
        self.scopes_claim: str | None = s.AUTH_SCOPES_CLAIM if scopes_claim is _UNSET else scopes_claim
        self.tenant_claim: str | None = s.AUTH_TENANT_CLAIM if tenant_claim is _UNSET else tenant_claim
        self.close_on_expiry = s.AUTH_CLOSE_ON_EXPIRY if close_on_expiry is None else close_on_expiry
        check = s.AUTH_CHECK_BLACKLIST if check_blacklist is None else check_blacklist
        self.check_blacklist = bool(check) and apps.is_installed("rest_framework_simplejwt.token_blacklist")
        if self.session and not self.session_origins:
            raise ImproperlyConfigured(
                "AUTH_SESSION needs AUTH_SESSION_ORIGINS: a session cookie rides along on cross-site "
                "handshakes, so the session source is only allowed with an origin check. List the "
                "origins or hosts of your pages (e.g. ['https://app.example.com'] or ['.example.com']).")
        from rest_framework_simplejwt.settings import api_settings

        self._jwt = api_settings
        self._header_types = tuple(t.lower() for t in api_settings.AUTH_HEADER_TYPES)
        if self.token_class is None:
            from rest_framework_simplejwt.tokens import AccessToken

            self.token_class = AccessToken
        self._token_class: type[Token] = self.token_class
        self._loader: Coalescer[tuple[Any, Any], tuple[Any, bool]] = Coalescer(
            lambda keys: self._lookup_sync(keys))

    # -- where the token is ---------------------------------------------------------------
    def find_token(self, ctx: Context) -> tuple[str | None, str | None]:
        """``(token, source)`` from the handshake, in the documented order; ``(None, None)``
        when no token source carries one. Sets ``ctx.subprotocol`` for the subprotocol source."""
        request = ctx.request
        if self.query_param:
            value = request.query_param(self.query_param)
            if value is not None:
                return value, "query"
        auth = request.headers.get("authorization")
        if auth is not None:
            kind, _, value = auth.strip().partition(" ")
            if kind.lower() in self._header_types:
                return value.strip(), "header"
        if self.subprotocol:
            offered = request.subprotocols
            if self.subprotocol in offered:
                i = offered.index(self.subprotocol)
                token = offered[i + 1] if i + 1 < len(offered) else ""
                if ctx.subprotocol is None:
                    ctx.subprotocol = self.subprotocol  # the marker, never the token
                return token, "subprotocol"
        return None, None

    # -- validation -------------------------------------------------------------------------
    def validate(self, raw: str) -> Token:
        """A SimpleJWT token validated by SimpleJWT (signature, exp, nbf, type), or ``Deny(401)``."""
        from rest_framework_simplejwt.exceptions import TokenError

        if not raw:
            raise Deny(401, "missing token", log_detail="empty token")
        try:
            token = self._token_class(raw)  # type: ignore[arg-type]  # the stubs omit str, what SimpleJWT parses
        except TokenError as exc:
            reason, detail = _token_error_detail(exc)
            raise Deny(401, reason, log_detail=detail) from None
        except Exception as exc:  # a token SimpleJWT chokes on is a bad token, not a server error
            raise Deny(401, "invalid token", log_detail=f"unreadable token ({type(exc).__name__})") from None
        return token

    def _lookup_sync(self, keys: Sequence[tuple[Any, Any]]) -> list[tuple[Any, bool]]:
        """On the lookup thread: ``(user or None, blacklisted)`` for each ``(user id, jti)``.

        One query for the users of the whole batch (``USER_ID_FIELD__in``) and, with the blacklist
        check on, one for the blacklisted ones among the batch's ``jti``s. An id the field cannot
        hold (``"abc"`` for an integer key) finds no user instead of failing the batch.
        """
        User = get_user_model()
        field: Any = User._meta.get_field(self._jwt.USER_ID_FIELD)
        ranged = isinstance(field, IntegerField)  # AutoField too: an id past the column's range
        wanted: list[Any] = []                    # fails an IN (...) list on SQLite, not "= id"
        for user_id, _jti in keys:
            try:
                value = field.to_python(user_id)
                field.get_prep_value(value)
                if ranged:
                    field.run_validators(value)
            except (ValueError, TypeError, ValidationError):
                value = None
            wanted.append(value)
        ids = list(dict.fromkeys(v for v in wanted if v is not None))
        jtis = list(dict.fromkeys(str(jti) for _u, jti in keys if jti is not None)) if self.check_blacklist else []
        aliases = [router.db_for_read(User)]
        if jtis:
            from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken

            aliases.append(router.db_for_read(BlacklistedToken))

        users_query, black_query = _compiled_queries(User, field, bool(jtis))

        def run() -> tuple[dict[Any, Any], set[str]]:
            found = {getattr(u, field.attname): u for u in users_query.run(aliases[0], ids)}
            black = set(black_query.run(aliases[1], jtis)) if black_query is not None else set()
            return found, black

        found, black = run_with_connections(aliases, run)
        out: list[tuple[Any, bool]] = []
        given: set[Any] = set()
        for (_user_id, jti), value in zip(keys, wanted, strict=True):
            user = found.get(value) if value is not None else None
            if user is not None:
                if value in given:
                    user = copy.copy(user)  # each handshake its own object, as from its own query
                given.add(value)
            out.append((user, jti is not None and str(jti) in black))
        return out

    def _user_cache_get(self, key: tuple[str, str]) -> Any:
        hit = _USER_CACHE.get(key)
        if hit is None:
            return None
        user, expires = hit
        if time.monotonic() >= expires:
            _USER_CACHE.pop(key, None)
            return None
        return copy.copy(user)  # each connection gets its own object, as from a query

    def _user_cache_put(self, key: tuple[str, str], user: Any, ttl: float) -> None:
        _connect_cache_signals()
        if len(_USER_CACHE) >= _USER_CACHE_MAX:
            _USER_CACHE.clear()
        _USER_CACHE[key] = (copy.copy(user), time.monotonic() + ttl)

    async def get_user(self, token: Token) -> Any:
        """The active Django user the token names, or ``Deny(401)``.

        Read off the event loop on the lookup thread (rockstar_ws/auth/lookup.py): concurrent
        handshakes share one users query and one blacklist query; the thread's database
        connection persists (``AUTH_DB_CONN_MAX_AGE``) and never holds a transaction.

        Follows SimpleJWT's ``JWTAuthentication.get_user``: ``USER_ID_CLAIM``/``USER_ID_FIELD``,
        ``CHECK_USER_IS_ACTIVE``, ``CHECK_REVOKE_TOKEN``; plus the access token's ``jti`` in the
        blacklist when ``token_blacklist`` is installed.
        """
        s = self._jwt
        user_id = token.get(s.USER_ID_CLAIM)
        if user_id is None or isinstance(user_id, (dict, list, bool)):
            raise Deny(401, "invalid token", log_detail="token names no user")
        jti = token.get(s.JTI_CLAIM) if s.JTI_CLAIM else None
        ttl = ws_settings.AUTH_USER_CACHE_TTL
        key = (str(user_id), str(jti))
        user = self._user_cache_get(key) if ttl > 0 else None
        cached = user is not None
        if user is None:
            user, blacklisted = await self._loader.load((user_id, jti))
            if user is None:
                raise Deny(401, "invalid token", log_detail=f"unknown user {str(user_id)[:64]!r}")
            if blacklisted:
                raise Deny(401, "invalid token", log_detail=f"token blacklisted (user {user.pk})")
        if s.CHECK_USER_IS_ACTIVE and not getattr(user, "is_active", True):
            raise Deny(401, "invalid token", log_detail=f"inactive user {user.pk}")
        if s.CHECK_REVOKE_TOKEN:
            from rest_framework_simplejwt.utils import get_md5_hash_password

            if token.get(s.REVOKE_TOKEN_CLAIM) != get_md5_hash_password(user.password):
                raise Deny(401, "invalid token",
                           log_detail=f"password changed since the token was issued (user {user.pk})")
        if ttl > 0 and not cached:
            self._user_cache_put(key, user, ttl)
        return user

    def scopes_for(self, claims: dict[str, Any]) -> frozenset[str]:
        """The scopes the claims grant (``AUTH_SCOPE_CLAIM`` and ``AUTH_SCOPES_CLAIM``)."""
        return scopes_from_claims(claims, self.scope_claim, self.scopes_claim)

    def tenant_for(self, claims: dict[str, Any]) -> str | None:
        """The tenant the claims name (``AUTH_TENANT_CLAIM``), as a string, or None."""
        if not self.tenant_claim:
            return None
        value = claims.get(self.tenant_claim)
        if value is None or isinstance(value, (dict, list, bool)):
            return None
        return str(value)

    def session_scopes(self, ctx: Context, user: Any) -> frozenset[str]:
        """Scopes of a session-authenticated user. None by default: such users only enter routes
        without ``allowed_scopes``. Override to grant scopes from your own models."""
        return frozenset()

    def check_scopes(self, ctx: Context, scopes: frozenset[str]) -> None:
        """``Deny(403)`` unless ``scopes`` satisfy the route (any of, or all of, its scopes)."""
        route = ctx.route
        wanted = route.allowed_scopes
        if not wanted:
            return
        if route.require_all_scopes:
            missing = [s for s in wanted if s not in scopes]
            if missing:
                raise Deny(403, "insufficient scope",
                           log_detail=f"needs all of {list(wanted)}, missing {missing}, token has {sorted(scopes)}")
        elif scopes.isdisjoint(wanted):
            raise Deny(403, "insufficient scope",
                       log_detail=f"needs one of {list(wanted)}, token has {sorted(scopes)}")

    # -- the handshake -----------------------------------------------------------------------
    async def authenticate(self, ctx: Context) -> None:
        """Authenticate ``ctx`` for ``ctx.route`` or raise :class:`Deny` (401/403).

        On success ``ctx.request.user_id``, ``access_token``, ``scopes``, ``claims``, ``ctx.user``
        and (when the host resolved none) ``ctx.request.tenant_id`` are set.
        """
        raw, source = self.find_token(ctx)
        if raw is None:
            if self.session:
                await self._authenticate_session(ctx)
                return
            raise Deny(401, "missing token", log_detail="no token in query, Authorization header or subprotocol")
        try:
            token = self.validate(raw)
            user = await self.get_user(token)
        except Deny as deny:
            deny.log_detail = f"{deny.log_detail} [source={source}]"
            raise
        claims = dict(token.payload)
        scopes = self.scopes_for(claims)
        self.check_scopes(ctx, scopes)
        request = ctx.request
        request.user_id = str(claims[self._jwt.USER_ID_CLAIM])
        request.access_token = raw
        request.scopes = scopes
        request.claims = claims
        if request.tenant_id is None:
            request.tenant_id = self.tenant_for(claims)
        ctx.user = user
        ctx.state[SOURCE_KEY] = source
        exp = claims.get("exp")
        if self.close_on_expiry and isinstance(exp, (int, float)):
            ctx.state[GUARD_KEY] = TokenGuard(self, ctx, float(exp))

    async def _authenticate_session(self, ctx: Context) -> None:
        from ..limits.upgrader import default_check_origin

        user = ctx.user
        if not getattr(user, "is_authenticated", False):
            raise Deny(401, "missing token", log_detail="no token and no session user")
        if ctx.request.origin is None or not default_check_origin(ctx, self.session_origins, allow_missing=False):
            raise Deny(403, "origin not allowed",
                       log_detail=f"session source needs an allowed Origin, got {ctx.request.origin!r}")
        scopes = self.session_scopes(ctx, user)
        self.check_scopes(ctx, scopes)
        request = ctx.request
        request.user_id = str(getattr(user, self._jwt.USER_ID_FIELD, user.pk))
        request.scopes = scopes
        ctx.state[SOURCE_KEY] = "session"

    # -- mid-connection ---------------------------------------------------------------------
    async def refresh(self, ctx: Context, raw: str) -> float:
        """Validate a fresh access token for an open connection and adopt it; returns its ``exp``.

        Raises ``Deny(401)`` for an invalid token and ``Deny(403)`` for a token of another user
        or tenant, or one whose scopes no longer satisfy the route.
        """
        token = self.validate(raw)
        claims = dict(token.payload)
        request = ctx.request
        old = request.claims
        if str(claims.get(self._jwt.USER_ID_CLAIM)) != request.user_id:
            raise Deny(403, "token of another user", log_detail="refresh token names another user")
        if self.tenant_claim and claims.get(self.tenant_claim) != old.get(self.tenant_claim):
            raise Deny(403, "token of another tenant", log_detail="refresh token names another tenant")
        await self.get_user(token)
        scopes = self.scopes_for(claims)
        self.check_scopes(ctx, scopes)
        request.access_token = raw
        request.scopes = scopes
        request.claims = claims
        return float(claims["exp"])


class TokenGuard:
    """Closes a token connection with 4401 when its token expires; adopts refreshed tokens.

    The consumer asks the server for a control hook once per connection
    (:meth:`WebSocketServer.control_hook`); only token connections get one, so the pump's
    per-message cost elsewhere is one ``is not None`` check.
    """

    __slots__ = ("manager", "ctx", "exp", "conn", "_timer", "_closing")

    def __init__(self, manager: AuthManager, ctx: Context, exp: float) -> None:
        self.manager = manager
        self.ctx = ctx
        self.exp = exp
        self.conn: WebSocketConnection | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closing: asyncio.Future[None] | None = None

    def _deadline(self) -> float:
        from rest_framework_simplejwt.state import token_backend

        return self.exp + token_backend.get_leeway().total_seconds()

    def start(self, conn: WebSocketConnection) -> Callable[[str], Awaitable[None]]:
        """Arm the expiry timer for ``conn``; returns the pump's refresh hook."""
        self.conn = conn
        self._arm()
        conn.on_close(self._cancel)
        return self.on_refresh

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(max(0.0, self._deadline() - time.time()), self._expired)

    def _cancel(self, _conn: Any = None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        conn = self.conn
        if conn is None or conn.closed:
            return
        logger.info("closing %s%s (user %s): access token expired", escape(self.ctx.request.host),
                    escape(self.ctx.request.path), escape(self.ctx.request.user_id))
        self._closing = asyncio.ensure_future(conn.close(CloseCode.UNAUTHORIZED, "token expired"))

    async def on_refresh(self, text: str) -> None:
        """Handle one refresh message (its text starts with :data:`REFRESH_PREFIX`)."""
        conn = self.conn
        assert conn is not None
        try:
            message = json.loads(text)
            raw = message["rockstar.refresh"] if isinstance(message, dict) and len(message) == 1 else None
        except (ValueError, KeyError, RecursionError):  # RecursionError: nested too deep to parse
            raw = None
        if not isinstance(raw, str):
            logger.info("refresh on %s (user %s) refused: malformed refresh message",
                        escape(self.ctx.request.path), escape(self.ctx.request.user_id))
            await conn.close(CloseCode.BAD_REQUEST, "malformed refresh message")
            return
        try:
            exp = await self.manager.refresh(self.ctx, raw)
        except Deny as deny:
            logger.info("refresh on %s (user %s) refused: %s (%s)", escape(self.ctx.request.path),
                        escape(self.ctx.request.user_id), escape(deny.reason), escape(deny.log_detail, 500))
            await conn.close(deny.close_code, deny.reason)
            return
        if conn.closed:
            return
        self.exp = exp
        self._arm()
        try:
            await conn.write_message(TextMessage, json.dumps({"rockstar.refreshed": int(exp)}))
        except Exception:  # the client left meanwhile
            pass




