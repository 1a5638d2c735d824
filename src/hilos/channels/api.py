"""HTTP API for channel instances."""

from __future__ import annotations

from fastapi import APIRouter

from hilos.channels import service
from hilos.channels.schemas import ChannelCreate, ChannelOut
from hilos.core.deps import AdminPrincipal, CurrentPrincipal, DbSession

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
