"""HTTP API of outbound webhooks: endpoints (subscriptions) and their deliveries.

Thin: shapes in ``schemas``, rules in ``service``. Only admins manage endpoints, since an
endpoint receives the tenant's data. Another tenant's endpoint or delivery answers 404.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query, Response

from hilos.core.deps import AdminPrincipal, DbSession
from hilos.integrations import service
from hilos.integrations.schemas import (
    DeliveryList,
    DeliveryOut,
    EndpointCreated,
    EndpointIn,
    EndpointList,
    EndpointOut,
    EndpointUpdate,
    RotateIn,
    SecretRotated,
)

router = APIRouter(tags=["webhooks"])


@router.post("/v1/webhook-endpoints", response_model=EndpointCreated, status_code=201)
async def create_endpoint(
    body: EndpointIn, session: DbSession, principal: AdminPrincipal
) -> EndpointCreated:
    """Subscribe a URL to topics. The answer holds the signing secret: the only time it shows."""
    endpoint = await service.create_endpoint(session, principal.tenant, **body.model_dump())
    return EndpointCreated(**EndpointOut.of(endpoint).model_dump(), secret=endpoint.secret)


@router.get("/v1/webhook-endpoints", response_model=EndpointList)
async def list_endpoints(session: DbSession, principal: AdminPrincipal) -> EndpointList:
    endpoints = await service.list_endpoints(session, principal.tenant)
    return EndpointList(items=[EndpointOut.of(endpoint) for endpoint in endpoints])


@router.get("/v1/webhook-endpoints/{endpoint_id}", response_model=EndpointOut)
async def get_endpoint(
    endpoint_id: str, session: DbSession, principal: AdminPrincipal
) -> EndpointOut:
    return EndpointOut.of(await service.get_endpoint(session, principal.tenant, endpoint_id))


@router.patch("/v1/webhook-endpoints/{endpoint_id}", response_model=EndpointOut)
async def update_endpoint(
    endpoint_id: str, body: EndpointUpdate, session: DbSession, principal: AdminPrincipal
) -> EndpointOut:
    endpoint = await service.update_endpoint(
        session,
        principal.tenant,
        endpoint_id=endpoint_id,
        changes=body.model_dump(exclude_unset=True),
    )
    return EndpointOut.of(endpoint)


@router.delete("/v1/webhook-endpoints/{endpoint_id}", status_code=204)
async def delete_endpoint(
    endpoint_id: str, session: DbSession, principal: AdminPrincipal
) -> Response:
    await service.delete_endpoint(session, principal.tenant, endpoint_id=endpoint_id)
    return Response(status_code=204)


@router.post("/v1/webhook-endpoints/{endpoint_id}/rotate-secret", response_model=SecretRotated)
async def rotate_secret(
    endpoint_id: str,
    session: DbSession,
    principal: AdminPrincipal,
    body: Annotated[RotateIn | None, Body()] = None,
) -> SecretRotated:
    """A new secret, shown once. The old one signs too for ``keep_previous_seconds`` (a day
    unless told), so receivers can switch without a failed delivery."""
    keep = (body or RotateIn()).keep_previous_seconds
    endpoint = await service.rotate_secret(
        session, principal.tenant, endpoint_id=endpoint_id, keep_previous_seconds=keep
    )
    return SecretRotated(
        id=endpoint.id,
        secret=endpoint.secret,
        previous_secret_expires_at=endpoint.previous_secret_expires_at,
    )


@router.get("/v1/webhook-endpoints/{endpoint_id}/deliveries", response_model=DeliveryList)
async def list_deliveries(
    endpoint_id: str,
    session: DbSession,
    principal: AdminPrincipal,
    status: Annotated[
        str | None, Query(description="pending, sending, delivered or failed")
    ] = None,
    before: Annotated[str | None, Query(max_length=32, description="last id seen")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> DeliveryList:
    """The endpoint's deliveries, newest first."""
    deliveries = await service.list_deliveries(
        session,
        principal.tenant,
        endpoint_id=endpoint_id,
        status=status,
        before=before,
        limit=limit,
    )
    return DeliveryList(
        items=[DeliveryOut.of(delivery) for delivery in deliveries],
        next_before=deliveries[-1].id if len(deliveries) == limit else None,
    )


@router.post("/v1/webhook-deliveries/{delivery_id}/retry", response_model=DeliveryOut)
async def retry_delivery(
    delivery_id: str, session: DbSession, principal: AdminPrincipal
) -> DeliveryOut:
    """Send it again now (the worker picks it up on its next round), with a fresh schedule."""
    delivery = await service.retry_delivery(session, principal.tenant, delivery_id=delivery_id)
    return DeliveryOut.of(delivery)
