"""Tenants, users and API keys."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hilos.core.clock import now
from hilos.core.errors import Conflict, Invalid, NotFound
from hilos.core.ids import new_id
from hilos.core.models import ApiKey, Tenant, User
from hilos.core.security import hash_api_key, hash_password, new_api_key
from hilos.core.tenancy import TenantContext, get_owned, tenant_scope


async def create_tenant(
    session: AsyncSession,
    *,
    name: str,
    default_region: str = "ES",
    timezone: str = "Europe/Madrid",
    locale: str = "es",
) -> tuple[Tenant, str]:
    """Create a tenant and its first admin API key; return both (the key in clear, once)."""
    tenant = Tenant(
        id=new_id(),
        name=name,
        default_region=default_region,
        timezone=timezone,
        locale=locale,
        reopen_window_seconds=86_400,
        identity_limits={"external": 1, "*": 5},
        created_at=now(),
    )
    session.add(tenant)
    await session.flush()
    _, key = await create_api_key(
        session, tenant=TenantContext.from_row(tenant), name="admin", role="admin"
    )
    return tenant, key


async def update_tenant(
    session: AsyncSession, *, tenant: TenantContext, changes: dict[str, Any]
) -> Tenant:
    row = await session.get(Tenant, tenant.id)
    if row is None:
        raise NotFound(f"tenant {tenant.id} not found")
    for field, value in changes.items():
        setattr(row, field, value)
    await session.flush()
    return row


_ROLE_RANK = {"agent": 0, "supervisor": 1, "admin": 2}


async def create_api_key(
    session: AsyncSession,
    *,
    tenant: TenantContext,
    name: str,
    role: str,
    user_id: str | None = None,
) -> tuple[ApiKey, str]:
    """A new key, shown once. With ``user_id`` it acts as that user (an agent sees only their
    queues' conversations) and can have no more rights than the user has."""
    if user_id is not None:
        user = await get_owned(session, User, user_id, tenant, what="user")
        if _ROLE_RANK[role] > _ROLE_RANK.get(user.role, 0):
            raise Invalid(
                f"a key of user {user_id} cannot have more rights than the user ({user.role})",
                field="role",
            )
    key = new_api_key()
    row = ApiKey(
        id=new_id(),
        tenant_id=tenant.id,
        name=name,
        role=role,
        prefix=key[:10],
        key_hash=hash_api_key(key),
        user_id=user_id,
        created_at=now(),
    )
    session.add(row)
    await session.flush()
    return row, key


async def list_api_keys(session: AsyncSession, *, tenant: TenantContext) -> Sequence[ApiKey]:
    statement = tenant_scope(select(ApiKey).order_by(ApiKey.id), ApiKey, tenant)
    return (await session.execute(statement)).scalars().all()


async def revoke_api_key(session: AsyncSession, *, tenant: TenantContext, key_id: str) -> ApiKey:
    row = await get_owned(session, ApiKey, key_id, tenant, what="API key")
    if row.revoked_at is None:
        row.revoked_at = now()
        await session.flush()
    return row


async def create_user(
    session: AsyncSession,
    *,
    tenant: TenantContext,
    email: str,
    name: str,
    role: str,
    password: str,
    locale: str | None = None,
) -> User:
    user = User(
        id=new_id(),
        tenant_id=tenant.id,
        email=email.lower(),
        name=name,
        role=role,
        # argon2 takes a fifth of a second on purpose: off the event loop, or it stalls every
        # request the process is serving.
        password_hash=await asyncio.to_thread(hash_password, password),
        locale=locale,
        created_at=now(),
    )
    try:
        async with session.begin_nested():
            session.add(user)
    except IntegrityError as error:
        raise Conflict(f"a user with email {email} already exists", code="user_exists") from error
    return user


async def list_users(session: AsyncSession, *, tenant: TenantContext) -> Sequence[User]:
    statement = tenant_scope(select(User).order_by(User.id), User, tenant)
    return (await session.execute(statement)).scalars().all()


async def find_tenant_by_name(session: AsyncSession, name: str) -> Tenant | None:
    statement = select(Tenant).where(Tenant.name == name).order_by(Tenant.id).limit(1)
    return (await session.execute(statement)).scalar_one_or_none()
