"""A custom tenant resolver plugged in through ROCKSTAR_WS["TENANT_RESOLVER"] in tests."""

from __future__ import annotations

from rockstar_ws.tenants import TenantInfo

CALLS: list[str] = []


async def by_label(host: str) -> TenantInfo | None:
    """``<label>.custom.localhost`` is tenant ``custom-<label>``; ``off.custom.localhost`` is inactive."""
    CALLS.append(host)
    if not host.endswith(".custom.localhost"):
        return None
    label = host.split(".", 1)[0]
    if label == "off":
        return TenantInfo(identifier="custom-off", is_active=False)
    return TenantInfo(identifier=f"custom-{label}", name=label.title(), obj={"label": label})
