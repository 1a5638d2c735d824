"""Who is calling: API keys (``Authorization: Bearer``, or a Segment write key as the Basic user).

Roles, from most to least power: admin (everything, including keys and users), supervisor,
agent. A key is looked up by its SHA-256 and kept in a small per-process cache for
``HILOS_API_KEY_CACHE_SECONDS``; revoking a key clears it from this process's cache at once.
Every request a key authenticates counts against its rate limit (``hilos.core.ratelimit``).
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass

from fastapi import Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hilos.core.errors import Unauthorized
from hilos.core.models import ApiKey, Tenant
from hilos.core.ratelimit import rate_limits
from hilos.core.security import hash_api_key
from hilos.core.tenancy import TenantContext

_RANK = {"agent": 0, "supervisor": 1, "admin": 2}


@dataclass(frozen=True, slots=True)
class Principal:
    tenant: TenantContext
    role: str
    key_id: str | None = None
    user_id: str | None = None

    def at_least(self, role: str) -> bool:
        return _RANK[self.role] >= _RANK[role]


class KeyCache:
    def __init__(self, ttl_seconds: float) -> None:
        self.ttl = ttl_seconds
        self._entries: dict[str, tuple[float, Principal]] = {}

    def get(self, key_hash: str) -> Principal | None:
        entry = self._entries.get(key_hash)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, key_hash: str, principal: Principal) -> None:
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[key_hash] = (time.monotonic() + self.ttl, principal)

    def forget_key(self, key_id: str) -> None:
        for key_hash, (_, principal) in list(self._entries.items()):
            if principal.key_id == key_id:
                del self._entries[key_hash]

    def forget_tenant(self, tenant_id: str) -> None:
        for key_hash, (_, principal) in list(self._entries.items()):
            if principal.tenant.id == tenant_id:
                del self._entries[key_hash]


def presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "bearer" and value:
        return value
    if scheme == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        user, _, _password = decoded.partition(":")
        return user or None
    return None


def _key_hash(request: Request) -> str:
    key = presented_key(request)
    if key is None:
        raise Unauthorized("an API key is required: Authorization: Bearer <key>")
    return hash_api_key(key)


def _admitted(request: Request, principal: Principal) -> Principal:
    """``principal``, once its key's rate limit lets this request through (else a 429)."""
    rate_limits(request.app).admit_api_key(principal.key_id or principal.tenant.id)
    return principal


def cached_principal(request: Request) -> Principal | None:
    """The caller from this process's key cache, if there; ``Unauthorized`` without a key."""
    cache: KeyCache = request.app.state.key_cache
    principal = cache.get(_key_hash(request))
    return None if principal is None else _admitted(request, principal)


async def authenticate(request: Request, session: AsyncSession) -> Principal:
    key_hash = _key_hash(request)
    cache: KeyCache = request.app.state.key_cache
    principal = cache.get(key_hash)
    if principal is not None:
        return _admitted(request, principal)
    statement = (
        select(ApiKey, Tenant)
        .join(Tenant, Tenant.id == ApiKey.tenant_id)
        .where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None))
    )
    row = (await session.execute(statement)).first()
    if row is None:
        raise Unauthorized("the API key is unknown or revoked")
    api_key, tenant = row
    principal = Principal(
        tenant=TenantContext.from_row(tenant),
        role=api_key.role,
        key_id=api_key.id,
        user_id=api_key.user_id,
    )
    cache.put(key_hash, principal)
    return _admitted(request, principal)
