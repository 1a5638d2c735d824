"""Tenant scoping: every query that reads tenant data goes through ``tenant_scope``.

A row of another tenant is indistinguishable from a row that does not exist: both answer 404.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from hilos.core.errors import NotFound
from hilos.core.models import DEFAULT_IDENTITY_LIMITS, Tenant


class TenantOwned(Protocol):
    tenant_id: InstrumentedAttribute[str] | Any
    id: InstrumentedAttribute[str] | Any


ModelT = TypeVar("ModelT")
SelectT = TypeVar("SelectT", bound=Select[Any])


@dataclass(frozen=True, slots=True)
class TenantContext:
    """What a request needs to know about its tenant, loaded once with the API key."""

    id: str
    name: str = ""
    default_region: str = "ES"
    timezone: str = "Europe/Madrid"
    locale: str = "es"
    reopen_window_seconds: int = 86_400
    identity_limits: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_IDENTITY_LIMITS))

    @classmethod
    def from_row(cls, tenant: Tenant) -> TenantContext:
        return cls(
            id=tenant.id,
            name=tenant.name,
            default_region=tenant.default_region,
            timezone=tenant.timezone,
            locale=tenant.locale,
            reopen_window_seconds=tenant.reopen_window_seconds,
            identity_limits={k: int(v) for k, v in (tenant.identity_limits or {}).items()},
        )

    def identity_limit(self, kind: str) -> int:
        limits = self.identity_limits
        return int(limits.get(kind, limits.get("*", DEFAULT_IDENTITY_LIMITS["*"])))


def tenant_scope(statement: SelectT, model: Any, tenant: TenantContext) -> SelectT:
    return statement.where(model.tenant_id == tenant.id)


async def get_owned(
    session: AsyncSession, model: type[ModelT], row_id: str, tenant: TenantContext, *, what: str
) -> ModelT:
    """The row ``row_id`` of ``model`` if it belongs to ``tenant``, else ``NotFound``."""
    statement = tenant_scope(select(model).where(model.id == row_id), model, tenant)  # type: ignore[attr-defined]
    row = (await session.execute(statement)).scalar_one_or_none()
    if row is None:
        raise NotFound(f"{what} {row_id} not found")
    return row


async def load_tenant(session: AsyncSession, tenant_id: str) -> TenantContext:
    tenant = await session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound(f"tenant {tenant_id} not found")
    return TenantContext.from_row(tenant)
