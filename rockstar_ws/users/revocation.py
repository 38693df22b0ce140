"""Revocation that reaches open connections: Django signals close what a change revokes.

* a user deactivated (``is_active`` set to False) or deleted: 4403 ``user inactive``;
* a user's password changed: 4401 ``password changed``;
* an access token's ``jti`` blacklisted (SimpleJWT's ``token_blacklist``): 4401 ``token revoked``,
  that token's connections only.

The signal fires in the process that made the change (a web process serving the admin, a
``manage.py shell``); it closes that process's connections and sends one command through the
channel layer to every other process, which also forget their cached user lookups
(``AUTH_USER_CACHE_TTL``). Work runs after the transaction commits, so a rolled-back change
closes nothing. See docs/users.md.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .delivery import (
    PASSWORD_CHANGED_CLOSE_CODE,
    TOKEN_REVOKED_CLOSE_CODE,
    USER_INACTIVE_CLOSE_CODE,
    apply_command,
    publish_command,
)

__all__ = ["connect_signals", "revoke"]

logger = logging.getLogger("rockstar_ws.users")

_BEFORE = "_rockstar_ws_before"
_WATCHED_FIELDS = frozenset({"password", "is_active"})
_tasks: set[asyncio.Task[Any]] = set()


def revoke(user_id: Any, code: int, reason: str, *, jti: str | None = None) -> None:
    """Close the open connections of ``user_id`` (of its access token ``jti`` only, when given)
    with ``code`` and ``reason`` in every process, and clear every process's user cache.

    Safe from sync code (signals, views, management commands) and from inside an event loop
    (it is then scheduled on that loop). Layer failures are logged, never raised.
    """
    command = {"server": None, "op": "close", "user": None if user_id is None else str(user_id),
               "route": None, "tenant": None, "jti": None if jti is None else str(jti),
               "code": int(code), "reason": reason, "revoke": True}
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is not None:
        task = loop.create_task(_run(command))
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)
        return
    from asgiref.sync import async_to_sync

    try:
        async_to_sync(_run)(command)
    except Exception:  # saving a user must not fail because a server cannot be told
        logger.exception("could not close the connections of user %r", command["user"])


async def _run(command: dict[str, Any]) -> None:
    try:
        await apply_command(command)
    except Exception:
        logger.exception("closing the local connections of user %r failed", command["user"])
    await publish_command(None, command)


def _id_field() -> str:
    from rest_framework_simplejwt.settings import api_settings

    return api_settings.USER_ID_FIELD


def _on_commit(using: str | None, user_id: Any, code: int, reason: str, jti: str | None = None) -> None:
    from django.db import transaction

    transaction.on_commit(lambda: revoke(user_id, code, reason, jti=jti), using=using)


def user_pre_save(sender: Any, instance: Any, raw: bool = False, using: str | None = None,
                  update_fields: Any = None, **kwargs: Any) -> None:
    """Remember the stored password hash and ``is_active`` of a user about to be saved."""
    if raw or instance.pk is None or instance._state.adding:
        return
    if update_fields is not None and not _WATCHED_FIELDS & set(update_fields):
        return  # e.g. login's update_last_login: skip the extra query
    fields = [f for f in ("password", "is_active") if _has_field(sender, f)]
    if not fields:
        return
    row = sender._default_manager.using(using).filter(pk=instance.pk).values(*fields).first()
    if row is not None:
        setattr(instance, _BEFORE, row)


def _has_field(model: Any, name: str) -> bool:
    try:
        model._meta.get_field(name)
    except Exception:
        return False
    return True


def user_post_save(sender: Any, instance: Any, created: bool = False, using: str | None = None,
                   **kwargs: Any) -> None:
    """Close the user's connections when the save deactivated the user or changed the password."""
    before = instance.__dict__.pop(_BEFORE, None)
    if created or before is None:
        return
    user_id = getattr(instance, _id_field(), instance.pk)
    if before.get("is_active", False) and not getattr(instance, "is_active", True):
        _on_commit(using, user_id, USER_INACTIVE_CLOSE_CODE, "user inactive")
    elif "password" in before and before["password"] != instance.password:
        _on_commit(using, user_id, PASSWORD_CHANGED_CLOSE_CODE, "password changed")


def user_post_delete(sender: Any, instance: Any, using: str | None = None, **kwargs: Any) -> None:
    """Close a deleted user's connections."""
    _on_commit(using, getattr(instance, _id_field(), instance.pk), USER_INACTIVE_CLOSE_CODE, "user inactive")


def token_blacklisted(sender: Any, instance: Any, created: bool = False, using: str | None = None,
                      **kwargs: Any) -> None:
    """Close the connections of a blacklisted access token (matched by its ``jti``).

    Blacklisting a *refresh* token closes nothing: access tokens minted from it carry their own
    jti and stay valid until they expire, as SimpleJWT has it for HTTP.
    """
    if not created:
        return
    outstanding = instance.token
    user_id = None
    if outstanding.user_id is not None and _id_field() in ("id", "pk"):
        user_id = outstanding.user_id  # narrows the lookup; the jti alone would find it too
    _on_commit(using, user_id, TOKEN_REVOKED_CLOSE_CODE, "token revoked", jti=str(outstanding.jti))


def connect_signals() -> None:
    """Connect the revocation signals (called from AppConfig.ready)."""
    from django.apps import apps
    from django.contrib.auth import get_user_model
    from django.db.models.signals import post_delete, post_save, pre_save

    user = get_user_model()
    pre_save.connect(user_pre_save, sender=user, dispatch_uid="rockstar_ws.users.pre_save")
    post_save.connect(user_post_save, sender=user, dispatch_uid="rockstar_ws.users.post_save")
    post_delete.connect(user_post_delete, sender=user, dispatch_uid="rockstar_ws.users.post_delete")
    if apps.is_installed("rest_framework_simplejwt.token_blacklist"):
        from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken

        post_save.connect(token_blacklisted, sender=BlacklistedToken, dispatch_uid="rockstar_ws.users.blacklisted")
