"""Per-tenant settings overrides: the keys a tenant's ``settings`` may set, and their validation."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from django.core.exceptions import ValidationError

__all__ = ["UPGRADER_KEYS", "register_tenant_setting", "validate_tenant_settings"]

_SettingValidator = Callable[[Any], Any]
_TENANT_SETTINGS: dict[str, tuple[_SettingValidator, str]] = {}
#: Overrides that become fields of the tenant's upgrader.
UPGRADER_KEYS = {"max_message_size", "allowed_origins", "allow_missing_origin"}


def register_tenant_setting(name: str, validator: _SettingValidator, doc: str) -> None:
    """Declare a key a tenant's ``settings`` may override. ``validator(value)`` returns the
    cleaned value or raises ``ValueError``/``TypeError`` with a message for the admin form."""
    _TENANT_SETTINGS[name] = (validator, doc)


def _non_negative_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"must be a whole number >= 0, got {value!r}")
    return value


def _str_list(value: Any) -> list[str]:
    if isinstance(value, str) or not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"must be a list of non-empty strings, got {value!r}")
    return list(value)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r}")
    return value


register_tenant_setting("max_message_size", _non_negative_int,
                        "Bytes; a larger message closes the connection with 1009 (0: no limit).")
register_tenant_setting("allowed_origins", _str_list,
                        "Origins (host patterns or full origins) allowed besides the connection's own host.")
register_tenant_setting("allow_missing_origin", _bool,
                        "Admit handshakes without an Origin header (non-browser clients).")


def validate_tenant_settings(value: Any) -> dict[str, Any]:
    """Check a tenant's overrides: a dict of known keys with valid values.

    Raises :class:`django.core.exceptions.ValidationError` naming every bad key (unknown keys are
    listed with the known ones, so a typo is never silently ignored).
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationError(f"Tenant settings must be a JSON object, got {type(value).__name__}.")
    errors: list[str] = []
    cleaned: dict[str, Any] = {}
    for key, item in value.items():
        entry = _TENANT_SETTINGS.get(key)
        if entry is None:
            errors.append(f"Unknown tenant setting {key!r}; known: {', '.join(sorted(_TENANT_SETTINGS))}.")
            continue
        try:
            cleaned[key] = entry[0](item)
        except (TypeError, ValueError) as exc:
            errors.append(f"{key}: {exc}")
    if errors:
        raise ValidationError(errors)
    return cleaned
