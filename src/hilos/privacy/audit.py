"""Writing and reading the audit log.

``record`` is what other domains call: it adds one row in the caller's transaction, so an action
that rolls back leaves no entry and an entry never describes something that did not happen. The
actor is an API ``Principal`` (its key, the key's user and role), a console user, or Hilos
itself (``Actor.system``: a merge caused by an identify call) or the ``hilos`` command
(``Actor.cli``). The request id comes from the structlog context that
``core.logging.RequestIdMiddleware`` binds for each request.

``record_settings_change`` is the generic entry for every other admin or supervisor change: the
role dependencies of ``core.deps`` call it after a changing request's endpoint succeeded, unless
the endpoint recorded its own entry.

Rules: ``details`` hold ids, codes and counts, never a customer's personal data; nothing here
updates or deletes an entry.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import structlog
from fastapi import Request
from sqlalchemy import Table, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from hilos.core.auth import Principal
from hilos.core.clock import as_utc, now
from hilos.core.errors import Invalid
from hilos.core.ids import new_id
from hilos.core.tenancy import TenantContext, tenant_scope
from hilos.privacy.models import ACTOR_TYPES, AuditEntry

_AUDIT_LOG = cast(Table, AuditEntry.__table__)
MAX_PAGE = 200
# Set on a session whose transaction holds an entry, so the generic settings entry steps aside.
_RECORDED = "audit_recorded"
# Settings bodies carry provider credentials and signing secrets: never copied into the log.
_SECRET_KEY = re.compile(r"secret|token|password|credential|api_key|apikey|private|auth", re.I)
MAX_TEXT = 120


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did something: the kind of actor and, for people and keys, which one."""

    tenant_id: str
    type: str
    key_id: str | None = None
    user_id: str | None = None
    role: str | None = None

    @classmethod
    def of(cls, principal: Principal) -> Actor:
        return cls(
            tenant_id=principal.tenant.id,
            type="api_key",
            key_id=principal.key_id,
            user_id=principal.user_id,
            role=principal.role,
        )

    @classmethod
    def user(cls, tenant_id: str, *, user_id: str, role: str) -> Actor:
        """A person signed in to the console."""
        return cls(tenant_id=tenant_id, type="user", user_id=user_id, role=role)

    @classmethod
    def system(cls, tenant_id: str) -> Actor:
        return cls(tenant_id=tenant_id, type="system")

    @classmethod
    def cli(cls, tenant_id: str) -> Actor:
        return cls(tenant_id=tenant_id, type="cli")


def current_request_id() -> str | None:
    value = structlog.contextvars.get_contextvars().get("request_id")
    return str(value) if value else None


async def record(
    session: AsyncSession,
    actor: Actor | Principal,
    action: str,
    *,
    subject_type: str | None = None,
    subject_id: str | None = None,
    details: dict[str, Any] | None = None,
    occurred_at: datetime | None = None,
) -> str:
    """Add an entry to the audit log in the session's transaction; return its id."""
    if isinstance(actor, Principal):
        actor = Actor.of(actor)
    session.info[_RECORDED] = True
    entry_id = new_id()
    await session.execute(
        insert(_AUDIT_LOG).values(
            id=entry_id,
            tenant_id=actor.tenant_id,
            occurred_at=occurred_at or now(),
            actor_type=actor.type,
            actor_key_id=actor.key_id,
            actor_user_id=actor.user_id,
            actor_role=actor.role,
            action=action,
            subject_type=subject_type,
            subject_id=subject_id,
            details=details or {},
            request_id=current_request_id(),
        )
    )
    return entry_id


def nothing_to_record(session: AsyncSession) -> None:
    """Say that this request, though an admin's change, changed nothing (an erasure repeated):
    the generic settings entry is not written."""
    session.info[_RECORDED] = True


async def record_settings_change(
    session: AsyncSession, principal: Principal, request: Request
) -> str | None:
    """Record a successful admin or supervisor request that changed something, unless its
    endpoint already recorded a more precise entry.

    Called by the role dependencies of ``core.deps``, so every admin endpoint of every domain is
    covered, including ones added later. The action is ``settings.<area>.<endpoint>``
    (``settings.channels.create_channel``, ``settings.sla.update_policy``); the subject is the
    last id in the path; the details hold the route and the request's top-level fields, with
    secrets masked, long text cut, lists counted and nested objects reduced to their keys.
    """
    if session.info.get(_RECORDED):
        return None
    route = request.scope.get("route")
    endpoint = request.scope.get("endpoint")
    if route is None or endpoint is None:
        return None
    area = endpoint.__module__.rsplit(".", 1)[-1].removesuffix("_api")
    if area in {"api", "service"}:
        area = endpoint.__module__.split(".")[-2]
    path: str = getattr(route, "path", request.url.path)
    params = dict(request.path_params)
    subject_type = subject_id = None
    if params:
        name, subject_id = list(params.items())[-1]
        subject_type = name.removesuffix("_id")
    details: dict[str, Any] = {"route": f"{request.method} {path}"}
    fields = await _request_fields(request)
    if fields is not None:
        details["fields"] = fields
    return await record(
        session,
        principal,
        f"settings.{area}.{endpoint.__name__}",
        subject_type=subject_type,
        subject_id=str(subject_id) if subject_id is not None else None,
        details=details,
    )


async def _request_fields(request: Request) -> dict[str, Any] | None:
    if "json" not in request.headers.get("content-type", ""):
        body = await request.body()
        return (
            {"content_type": request.headers.get("content-type"), "bytes": len(body)}
            if body
            else None
        )
    try:
        payload = await request.json()
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return {"items": len(payload)} if isinstance(payload, list) else None
    return {str(key): _summary(str(key), value) for key, value in payload.items()}


def _summary(key: str, value: Any) -> Any:
    if _SECRET_KEY.search(key):
        return "[hidden]"
    if isinstance(value, dict):
        # Nested values (a send's template context, a channel's provider config) may hold a
        # customer's data or a credential under any name: only their keys are kept.
        return {"fields": sorted(str(inner) for inner in value)}
    if isinstance(value, list):
        return {"items": len(value)}
    if isinstance(value, str) and len(value) > MAX_TEXT:
        return value[:MAX_TEXT] + "…"
    return value


@dataclass(frozen=True, slots=True)
class AuditFilters:
    """What the log is narrowed to. ``action`` is exact, or a family such as ``customer.*``;
    ``actor`` is an actor type (``system``, ``cli``...), an API key id or a user id."""

    action: str | None = None
    actor: str | None = None
    subject_type: str | None = None
    subject_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def checked(self) -> AuditFilters:
        since = as_utc(self.since) if self.since else None
        until = as_utc(self.until) if self.until else None
        if since and until and since >= until:
            raise Invalid("since must be before until", field="since")
        if self.action is not None and (
            not self.action or self.action == "*" or "*" in self.action[:-1]
        ):
            raise Invalid(
                "action is an action (customer.erased) or a family (customer.*)", field="action"
            )
        return AuditFilters(
            action=self.action,
            actor=self.actor,
            subject_type=self.subject_type,
            subject_id=self.subject_id,
            since=since,
            until=until,
        )


async def list_entries(
    session: AsyncSession,
    tenant: TenantContext,
    filters: AuditFilters,
    *,
    cursor: str | None = None,
    limit: int = 50,
) -> tuple[list[AuditEntry], str | None]:
    """A page of the tenant's entries, newest first, and the cursor of the next page."""
    if not 1 <= limit <= MAX_PAGE:
        raise Invalid(f"limit must be between 1 and {MAX_PAGE}", field="limit")
    filters = filters.checked()
    statement = tenant_scope(select(AuditEntry), AuditEntry, tenant)
    if filters.action is not None:
        if filters.action.endswith(".*"):
            statement = statement.where(AuditEntry.action.startswith(filters.action[:-1]))
        else:
            statement = statement.where(AuditEntry.action == filters.action)
    if filters.actor:
        conditions = [AuditEntry.actor_key_id == filters.actor]
        conditions.append(AuditEntry.actor_user_id == filters.actor)
        if filters.actor in ACTOR_TYPES:
            conditions.append(AuditEntry.actor_type == filters.actor)
        statement = statement.where(or_(*conditions))
    if filters.subject_type:
        statement = statement.where(AuditEntry.subject_type == filters.subject_type)
    if filters.subject_id:
        statement = statement.where(AuditEntry.subject_id == filters.subject_id)
    if filters.since is not None:
        statement = statement.where(AuditEntry.occurred_at >= filters.since)
    if filters.until is not None:
        statement = statement.where(AuditEntry.occurred_at < filters.until)
    if cursor:
        statement = statement.where(AuditEntry.id < cursor)
    rows = list(
        (await session.execute(statement.order_by(AuditEntry.id.desc()).limit(limit + 1)))
        .scalars()
        .all()
    )
    next_cursor = rows[limit - 1].id if len(rows) > limit else None
    return rows[:limit], next_cursor


async def latest(
    session: AsyncSession,
    tenant_id: str,
    *,
    action: str,
    subject_type: str,
    subject_ids: Sequence[str],
) -> AuditEntry | None:
    """The latest entry of ``action`` about one of ``subject_ids`` (whether a customer was
    erased, and when)."""
    if not subject_ids:
        return None
    statement = (
        select(AuditEntry)
        .where(
            AuditEntry.tenant_id == tenant_id,
            AuditEntry.subject_type == subject_type,
            AuditEntry.subject_id.in_(list(subject_ids)),
            AuditEntry.action == action,
        )
        .order_by(AuditEntry.id.desc())
        .limit(1)
    )
    return (await session.execute(statement)).scalar_one_or_none()
