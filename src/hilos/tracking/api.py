"""HTTP routes of the Segment-compatible events API.

Authentication is Segment's: the write key as the Basic auth user (password empty), or the same
key as a bearer token. A batch is one transaction: one bad message rejects it whole, naming the
message's index, so a retry of the fixed batch does not find half of it already stored.
"""

from __future__ import annotations

from fastapi import APIRouter

from hilos.core.deps import CurrentPrincipal, DbSession
from hilos.tracking import service
from hilos.tracking.schemas import (
    AliasCall,
    BatchCall,
    BatchResult,
    CallResult,
    IdentifyCall,
    PageCall,
    ScreenCall,
    TrackCall,
)

router = APIRouter(prefix="/v1", tags=["events"])


@router.post("/identify", response_model=CallResult, response_model_by_alias=True)
async def identify(body: IdentifyCall, session: DbSession, principal: CurrentPrincipal) -> object:
    return await service.ingest(session, principal.tenant, body)


@router.post("/track", response_model=CallResult, response_model_by_alias=True)
async def track(body: TrackCall, session: DbSession, principal: CurrentPrincipal) -> object:
    return await service.ingest(session, principal.tenant, body)


@router.post("/page", response_model=CallResult, response_model_by_alias=True)
async def page(body: PageCall, session: DbSession, principal: CurrentPrincipal) -> object:
    return await service.ingest(session, principal.tenant, body)


@router.post("/screen", response_model=CallResult, response_model_by_alias=True)
async def screen(body: ScreenCall, session: DbSession, principal: CurrentPrincipal) -> object:
    return await service.ingest(session, principal.tenant, body)


@router.post("/alias", response_model=CallResult, response_model_by_alias=True)
async def alias(body: AliasCall, session: DbSession, principal: CurrentPrincipal) -> object:
    return await service.ingest(session, principal.tenant, body)


@router.post("/batch", response_model=BatchResult, response_model_by_alias=True)
async def batch(body: BatchCall, session: DbSession, principal: CurrentPrincipal) -> BatchResult:
    results = [
        await service.ingest(
            session,
            principal.tenant,
            call,
            field_prefix=f"batch[{index}].",
            batch_context=body.context,
        )
        for index, call in enumerate(body.batch)
    ]
    return BatchResult(results=results)
