"""HTTP API for channel instances."""

from __future__ import annotations

from fastapi import APIRouter

from hilos.channels import service
from hilos.channels.schemas import ChannelCreate, ChannelOut, ChannelUpdate, check_provider
from hilos.core.deps import AdminPrincipal, CurrentPrincipal, DbSession
from hilos.core.errors import Invalid

router = APIRouter(prefix="/v1/channels", tags=["channels"])


@router.post("", response_model=ChannelOut, status_code=201)
async def create_channel(
    body: ChannelCreate, session: DbSession, principal: AdminPrincipal
) -> object:
    return await service.create_channel(
        session, principal.tenant, kind=body.kind, name=body.name, config=body.config
    )


@router.get("", response_model=list[ChannelOut])
async def list_channels(session: DbSession, principal: CurrentPrincipal) -> object:
    return await service.list_channels(session, principal.tenant)


@router.get("/{channel_id}", response_model=ChannelOut)
async def get_channel(channel_id: str, session: DbSession, principal: CurrentPrincipal) -> object:
    return await service.get_channel(session, principal.tenant, channel_id)


@router.patch("/{channel_id}", response_model=ChannelOut)
async def update_channel(
    channel_id: str, body: ChannelUpdate, session: DbSession, principal: AdminPrincipal
) -> object:
    channel = await service.get_channel(session, principal.tenant, channel_id)
    if body.config is not None and "provider" in body.config:
        try:
            check_provider(channel.kind, {k: v for k, v in body.config.items() if v is not None})
        except ValueError as error:
            raise Invalid(str(error), field="config.provider") from error
    return await service.update_channel(
        session,
        principal.tenant,
        channel_id,
        name=body.name,
        config=body.config,
        disabled=body.disabled,
    )
