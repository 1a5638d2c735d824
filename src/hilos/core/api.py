"""HTTP API for the tenant's own settings, its API keys and its users (admin only).

Every change here is recorded in the audit log (``hilos.privacy.audit``) in its transaction.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from hilos.core import service
from hilos.core.deps import AdminPrincipal, CurrentPrincipal, DbSession
from hilos.core.models import Tenant
from hilos.core.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    TenantOut,
    TenantUpdate,
    UserCreate,
    UserOut,
)
from hilos.privacy import audit

router = APIRouter(prefix="/v1", tags=["tenant"])


@router.get("/tenant", response_model=TenantOut)
async def get_tenant(session: DbSession, principal: CurrentPrincipal) -> Tenant | None:
    return await session.get(Tenant, principal.tenant.id)


@router.patch("/tenant", response_model=TenantOut)
async def update_tenant(
    body: TenantUpdate, request: Request, session: DbSession, principal: AdminPrincipal
) -> Tenant:
    changes = body.model_dump(exclude_unset=True)
    tenant = await service.update_tenant(session, tenant=principal.tenant, changes=changes)
    await audit.record(
        session,
        principal,
        "tenant.updated",
        subject_type="tenant",
        subject_id=tenant.id,
        details={"changes": changes},
    )
    request.app.state.key_cache.forget_tenant(principal.tenant.id)
    return tenant


@router.post("/api-keys", response_model=ApiKeyCreated, status_code=201)
async def create_api_key(
    body: ApiKeyCreate, session: DbSession, principal: AdminPrincipal
) -> ApiKeyCreated:
    row, key = await service.create_api_key(
        session, tenant=principal.tenant, name=body.name, role=body.role, user_id=body.user_id
    )
    await audit.record(
        session,
        principal,
        "api_key.created",
        subject_type="api_key",
        subject_id=row.id,
        details={"name": row.name, "role": row.role, "user_id": row.user_id},
    )
    return ApiKeyCreated(**ApiKeyOut.model_validate(row).model_dump(), key=key)


@router.get("/api-keys", response_model=list[ApiKeyOut])
async def list_api_keys(session: DbSession, principal: AdminPrincipal) -> object:
    return await service.list_api_keys(session, tenant=principal.tenant)


@router.delete("/api-keys/{key_id}", response_model=ApiKeyOut)
async def revoke_api_key(
    key_id: str, request: Request, session: DbSession, principal: AdminPrincipal
) -> object:
    row = await service.revoke_api_key(session, tenant=principal.tenant, key_id=key_id)
    request.app.state.key_cache.forget_key(key_id)
    await audit.record(
        session,
        principal,
        "api_key.revoked",
        subject_type="api_key",
        subject_id=row.id,
        details={"name": row.name, "role": row.role},
    )
    return row


@router.post("/users", response_model=UserOut, status_code=201)
async def create_user(body: UserCreate, session: DbSession, principal: AdminPrincipal) -> object:
    user = await service.create_user(
        session,
        tenant=principal.tenant,
        email=str(body.email),
        name=body.name,
        role=body.role,
        password=body.password,
        locale=body.locale,
    )
    await audit.record(
        session,
        principal,
        "user.created",
        subject_type="user",
        subject_id=user.id,
        details={"email": user.email, "role": user.role},
    )
    return user


@router.get("/users", response_model=list[UserOut])
async def list_users(session: DbSession, principal: AdminPrincipal) -> object:
    return await service.list_users(session, tenant=principal.tenant)
