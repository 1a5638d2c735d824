"""HTTP API of privacy: a customer's export and erasure, and the audit log (admin only)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from hilos.core.deps import AdminPrincipal, DbSession
from hilos.privacy import audit
from hilos.privacy.erase import erase_customer
from hilos.privacy.export import export_customer
from hilos.privacy.models import AuditEntry
from hilos.privacy.schemas import ActorOut, AuditEntryOut, AuditPage, EraseRequest, ErasureOut

router = APIRouter(prefix="/v1", tags=["privacy"])


@router.get(
    "/customers/{customer_id}/export",
    response_model=dict[str, Any],
    responses={200: {"description": "Every row Hilos holds about the customer, per table."}},
)
async def export(customer_id: str, session: DbSession, principal: AdminPrincipal) -> JSONResponse:
    document = await export_customer(session, principal.tenant, principal, customer_id=customer_id)
    return JSONResponse(
        document,
        headers={
            "Content-Disposition": (
                f'attachment; filename="customer-{document["customer_id"]}.json"'
            ),
            "Cache-Control": "no-store",
        },
    )


@router.post("/customers/{customer_id}/erase", response_model=ErasureOut)
async def erase(
    customer_id: str,
    session: DbSession,
    principal: AdminPrincipal,
    body: EraseRequest | None = None,
) -> ErasureOut:
    result = await erase_customer(
        session,
        principal.tenant,
        principal,
        customer_id=customer_id,
        reason=body.reason if body else None,
    )
    return ErasureOut(
        customer_id=result.customer_id,
        customer_ids=result.customer_ids,
        erased_at=result.erased_at,
        already_erased=result.already_erased,
        audit_id=result.audit_id,
        rows=result.rows,
    )


def entry_out(entry: AuditEntry) -> AuditEntryOut:
    return AuditEntryOut(
        id=entry.id,
        occurred_at=entry.occurred_at,
        actor=ActorOut(
            type=entry.actor_type,
            key_id=entry.actor_key_id,
            user_id=entry.actor_user_id,
            role=entry.actor_role,
        ),
        action=entry.action,
        subject_type=entry.subject_type,
        subject_id=entry.subject_id,
        details=entry.details or {},
        request_id=entry.request_id,
    )


@router.get("/audit-log", response_model=AuditPage)
async def audit_log(
    session: DbSession,
    principal: AdminPrincipal,
    action: Annotated[
        str | None, Query(max_length=64, description="customer.erased, or customer.*")
    ] = None,
    actor: Annotated[
        str | None,
        Query(max_length=32, description="system, cli, api_key, user, a key id or a user id"),
    ] = None,
    subject_type: Annotated[str | None, Query(max_length=32)] = None,
    subject_id: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[datetime | None, Query(description="from this moment (inclusive)")] = None,
    until: Annotated[datetime | None, Query(description="before this moment")] = None,
    cursor: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=audit.MAX_PAGE)] = 50,
) -> AuditPage:
    entries, next_cursor = await audit.list_entries(
        session,
        principal.tenant,
        audit.AuditFilters(
            action=action,
            actor=actor,
            subject_type=subject_type,
            subject_id=subject_id,
            since=since,
            until=until,
        ),
        cursor=cursor,
        limit=limit,
    )
    return AuditPage(items=[entry_out(e) for e in entries], next_cursor=next_cursor)
