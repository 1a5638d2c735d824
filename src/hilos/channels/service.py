"""Registering and finding channel instances.

Channels are read on every inbound message, so their kind is cached per process: a channel's
tenant and kind never change once registered.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from hilos.channels.models import Channel
from hilos.core.clock import now
from hilos.core.errors import NotFound
from hilos.core.ids import new_id
from hilos.core.tenancy import TenantContext, get_owned, tenant_scope

_KIND_CACHE: dict[tuple[str, str], str] = {}


async def create_channel(
    session: AsyncSession, tenant: TenantContext, *, kind: str, name: str, config: dict[str, Any]
) -> Channel:
    channel = Channel(
        id=new_id(), tenant_id=tenant.id, kind=kind, name=name, config=config, created_at=now()
    )
    session.add(channel)
    await session.flush()
    return channel


async def get_channel(session: AsyncSession, tenant: TenantContext, channel_id: str) -> Channel:
    return await get_owned(session, Channel, channel_id, tenant, what="channel")


async def channel_kind(
    session: AsyncSession | AsyncConnection, tenant: TenantContext, channel_id: str
) -> str:
    """The kind of the tenant's channel ``channel_id``; ``NotFound`` for anyone else's."""
    cached = _KIND_CACHE.get((tenant.id, channel_id))
    if cached is not None:
        return cached
    statement = select(Channel.kind).where(Channel.id == channel_id, Channel.tenant_id == tenant.id)
    kind = (await session.execute(statement)).scalar_one_or_none()
    if kind is None:
        raise NotFound(f"channel {channel_id} not found")
    if len(_KIND_CACHE) > 100_000:
        _KIND_CACHE.clear()
    _KIND_CACHE[(tenant.id, channel_id)] = kind
    return kind


async def list_channels(session: AsyncSession, tenant: TenantContext) -> Sequence[Channel]:
    statement = tenant_scope(select(Channel).order_by(Channel.id), Channel, tenant)
    return (await session.execute(statement)).scalars().all()


async def kinds_of(
    session: AsyncSession, tenant: TenantContext, channel_ids: Sequence[str]
) -> dict[str, str]:
    if not channel_ids:
        return {}
    statement = select(Channel.id, Channel.kind).where(
        Channel.tenant_id == tenant.id, Channel.id.in_(set(channel_ids))
    )
    return {row[0]: row[1] for row in (await session.execute(statement)).all()}
