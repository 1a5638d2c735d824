"""Registering, changing and finding channel instances.

Channels are read on every inbound message, so their kind is cached per process: a channel's
tenant and kind never change once registered. Webhooks need the whole channel (its secrets
and its tenant) without an API key; that is cached for ``WEBHOOK_CACHE_SECONDS``, dropped at
once in the process that changes the channel, and within that many seconds elsewhere.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from hilos.channels.base import ChannelInfo
from hilos.channels.models import Channel
from hilos.core.clock import now
from hilos.core.errors import NotFound
from hilos.core.ids import new_id
from hilos.core.models import Tenant
from hilos.core.tenancy import TenantContext, get_owned, tenant_scope

_KIND_CACHE: dict[tuple[str, str], str] = {}
WEBHOOK_CACHE_SECONDS = 10.0
_INFO_CACHE: dict[str, tuple[float, ChannelInfo]] = {}


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


async def update_channel(
    session: AsyncSession,
    tenant: TenantContext,
    channel_id: str,
    *,
    name: str | None = None,
    config: dict[str, Any] | None = None,
    disabled: bool | None = None,
) -> Channel:
    """Rename, change settings (a key set to ``None`` is removed), disable or enable."""
    channel = await get_channel(session, tenant, channel_id)
    if name is not None:
        channel.name = name
    if config is not None:
        merged = dict(channel.config)
        for key, value in config.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        channel.config = merged
    if disabled is not None:
        channel.disabled_at = (channel.disabled_at or now()) if disabled else None
    await session.flush()
    _INFO_CACHE.pop(channel.id, None)
    return channel


def _info(channel: Channel, tenant: TenantContext) -> ChannelInfo:
    return ChannelInfo(
        id=channel.id,
        tenant=tenant,
        kind=channel.kind,
        config=dict(channel.config),
        disabled=channel.disabled_at is not None,
    )


async def channel_info(engine: AsyncEngine, channel_id: str) -> ChannelInfo:
    """The channel a webhook names, with its tenant; ``NotFound`` if unknown or disabled."""
    cached = _INFO_CACHE.get(channel_id)
    if cached is not None and cached[0] > time.monotonic():
        info = cached[1]
    else:
        async with AsyncSession(engine) as session:
            row = (
                await session.execute(
                    select(Channel, Tenant)
                    .join(Tenant, Tenant.id == Channel.tenant_id)
                    .where(Channel.id == channel_id)
                )
            ).first()
        if row is None:
            raise NotFound(f"channel {channel_id} not found")
        info = _info(row[0], TenantContext.from_row(row[1]))
        if len(_INFO_CACHE) > 10_000:
            _INFO_CACHE.clear()
        _INFO_CACHE[channel_id] = (time.monotonic() + WEBHOOK_CACHE_SECONDS, info)
    if info.disabled:
        raise NotFound(f"channel {channel_id} not found")
    return info


async def channel_info_in(
    session: AsyncSession, tenant: TenantContext, channel_id: str
) -> ChannelInfo:
    """The tenant's channel as adapters see it, read fresh (for sending)."""
    return _info(await get_channel(session, tenant, channel_id), tenant)


async def channels_of_kind(session: AsyncSession, kind: str) -> Sequence[Channel]:
    """Every enabled channel of ``kind`` in every tenant (the SMTP server's address book)."""
    statement = select(Channel).where(Channel.kind == kind, Channel.disabled_at.is_(None))
    return (await session.execute(statement)).scalars().all()


def cached_channel_kind(tenant: TenantContext, channel_id: str) -> str | None:
    """The kind of the tenant's channel if this process has read it before (no database)."""
    return _KIND_CACHE.get((tenant.id, channel_id))


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
