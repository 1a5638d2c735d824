"""Signing agents in and out of the console, and recognising them on every request.

Rules this module keeps:

* A person signs in with email and password. Emails are unique per tenant, not globally, so the
  email is looked up across tenants and the password checked against each account holding it;
  when it opens accounts in several tenants the person chooses one. An unknown email costs the
  same argon2 check as a wrong password, and both get the same answer.
* A session is a random 256-bit token in an HttpOnly cookie. The database keeps only its SHA-256
  (as with API keys, a single hash suffices for a random token, and it lets each request find
  its session with one indexed lookup), so a copy of the database signs nobody in.
* A session lasts 12 hours, ends when the agent signs out (``revoked_at``) and stops working
  at once for a deactivated user.
* Each session has its own CSRF token; every form the console renders carries it.

The users and tenants tables belong to the core; the lookups across tenants that sign-in needs
are read here because the core service offers none (it scopes everything to one tenant).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from functools import cache

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hilos.core.clock import now
from hilos.core.ids import new_id
from hilos.core.models import Tenant, User
from hilos.core.security import hash_password, verify_password
from hilos.core.tenancy import TenantContext, load_tenant
from hilos.web.models import ConsoleSession

SESSION_LIFETIME = timedelta(hours=12)


@dataclass(frozen=True, slots=True)
class Account:
    """A user account the presented password opens, and the name of its tenant."""

    user_id: str
    tenant_id: str
    tenant_name: str


@dataclass(frozen=True, slots=True)
class SignedInAgent:
    """The person behind a console request: their session, their user and their tenant."""

    session_id: str
    csrf_token: str
    user_id: str
    name: str
    email: str
    role: str
    locale: str | None
    tenant: TenantContext


def hash_session_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def tokens_match(expected: str, presented: str | None) -> bool:
    """Constant-time comparison of a CSRF token with the one a form sent back."""
    return presented is not None and hmac.compare_digest(expected.encode(), presented.encode())


@cache
def _decoy_hash() -> str:
    # Checked when no account holds the email, so that answer takes as long as a wrong password.
    return hash_password(secrets.token_urlsafe(16))


async def accounts_for(session: AsyncSession, *, email: str, password: str) -> list[Account]:
    """The active accounts holding ``email`` whose password is ``password``, by tenant name."""
    statement = (
        select(User.id, User.tenant_id, User.password_hash, Tenant.name)
        .join(Tenant, Tenant.id == User.tenant_id)
        .where(User.email == email.strip().lower(), User.deactivated_at.is_(None))
        .order_by(Tenant.name, Tenant.id)
    )
    rows = (await session.execute(statement)).all()
    if not rows:
        await _password_matches(password, await asyncio.to_thread(_decoy_hash))
        return []
    return [
        Account(user_id=row.id, tenant_id=row.tenant_id, tenant_name=row.name)
        for row in rows
        if await _password_matches(password, row.password_hash)
    ]


async def _password_matches(password: str, password_hash: str) -> bool:
    # argon2 takes tens of milliseconds on purpose: keep the event loop free meanwhile.
    return await asyncio.to_thread(verify_password, password, password_hash)


async def sign_in(session: AsyncSession, *, account: Account) -> str:
    """Open a session for ``account``; return its token (for the cookie, never stored)."""
    token = secrets.token_urlsafe(32)
    moment = now()
    session.add(
        ConsoleSession(
            id=new_id(),
            tenant_id=account.tenant_id,
            user_id=account.user_id,
            token_hash=hash_session_token(token),
            csrf_token=secrets.token_urlsafe(32),
            created_at=moment,
            expires_at=moment + SESSION_LIFETIME,
        )
    )
    await session.flush()
    return token


async def signed_in_agent(session: AsyncSession, token: str | None) -> SignedInAgent | None:
    """The agent whose live session ``token`` opens, or ``None``."""
    if not token:
        return None
    statement = (
        select(ConsoleSession, User)
        .join(User, User.id == ConsoleSession.user_id)
        .where(
            ConsoleSession.token_hash == hash_session_token(token),
            ConsoleSession.revoked_at.is_(None),
            ConsoleSession.expires_at > now(),
            User.deactivated_at.is_(None),
        )
    )
    row = (await session.execute(statement)).first()
    if row is None:
        return None
    console_session, user = row
    return SignedInAgent(
        session_id=console_session.id,
        csrf_token=console_session.csrf_token,
        user_id=user.id,
        name=user.name,
        email=user.email,
        role=user.role,
        locale=user.locale,
        tenant=await load_tenant(session, console_session.tenant_id),
    )


async def sign_out(session: AsyncSession, *, agent: SignedInAgent) -> None:
    await session.execute(
        update(ConsoleSession)
        .where(
            ConsoleSession.id == agent.session_id,
            ConsoleSession.tenant_id == agent.tenant.id,
            ConsoleSession.revoked_at.is_(None),
        )
        .values(revoked_at=now())
    )
