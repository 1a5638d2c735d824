"""FastAPI dependencies: one database transaction per request, and the calling principal.

Endpoints that can answer without a session (the one-statement inbound path on PostgreSQL)
manage their own connection; every other endpoint takes ``DbSession``.

The session dependency has function scope, so the commit happens before the response is sent:
a client that got a 2xx knows its change is stored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from hilos.core.auth import Principal, authenticate, cached_principal
from hilos.core.errors import Forbidden


async def _db_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
        if session.info.pop("outbox_written", False):
            request.app.state.outbox_wakeup()


DbSession = Annotated[AsyncSession, Depends(_db_session, scope="function")]


async def _current_principal(request: Request) -> Principal:
    # Most requests find their key in the cache; the others look it up in a short session of
    # their own, so a request that needs no database (the one-statement inbound path) opens none.
    principal = cached_principal(request)
    if principal is not None:
        return principal
    async with request.app.state.sessionmaker() as session:
        return await authenticate(request, session)


CurrentPrincipal = Annotated[Principal, Depends(_current_principal, scope="function")]


# Requests that change something: an admin's or supervisor's change lands in the audit log.
_CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _require(role: str) -> Callable[..., AsyncIterator[Principal]]:
    async def dependency(
        request: Request, principal: CurrentPrincipal, session: DbSession
    ) -> AsyncIterator[Principal]:
        if not principal.at_least(role):
            raise Forbidden(f"this needs the {role} role; this key has the {principal.role} role")
        yield principal
        # Only reached when the endpoint succeeded, and before the session's commit (the session
        # was opened first, so it closes last): the entry is stored with the change or not at all.
        if request.method in _CHANGING_METHODS:
            from hilos.privacy import audit

            await audit.record_settings_change(session, principal, request)

    return dependency


AdminPrincipal = Annotated[Principal, Depends(_require("admin"), scope="function")]
SupervisorPrincipal = Annotated[Principal, Depends(_require("supervisor"), scope="function")]
