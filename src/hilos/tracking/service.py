"""Turning Segment calls into identities, profile traits and timeline events.

Identities from a call: ``userId`` → ``external``, ``anonymousId`` → ``anonymous``, and
``traits.email`` / ``traits.phone`` → ``email`` / ``phone``. They go through the ordinary
``identify``, so an anonymous visitor who later logs in brings their earlier page views along.
A call whose ``messageId`` was seen before changes nothing and answers the first result.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hilos.core.clock import now
from hilos.core.tenancy import TenantContext
from hilos.customers import service as customers
from hilos.customers.identities import normalize
from hilos.tracking.schemas import (
    AliasCall,
    CallResult,
    IdentifyCall,
    PageCall,
    ScreenCall,
    SegmentMessage,
    TrackCall,
)

PROFILE_TRAITS = ("name", "firstName", "lastName", "first_name", "last_name", "language")


def _as_text(value: str | int | None) -> str | None:
    return None if value in (None, "") else str(value)


def _identities(
    tenant: TenantContext, call: SegmentMessage, traits: dict[str, Any], *, field_prefix: str
) -> list[tuple[str, str]]:
    """The call's identities, each checked under the name of the Segment field it came from."""
    candidates: list[tuple[str, str, str]] = []
    if (user_id := _as_text(call.user_id)) is not None:
        candidates.append(("external", user_id, "userId"))
    if (anonymous_id := _as_text(call.anonymous_id)) is not None:
        candidates.append(("anonymous", anonymous_id, "anonymousId"))
    for trait in ("email", "phone"):
        value = traits.get(trait)
        if isinstance(value, str) and value.strip():
            candidates.append((trait, value, f"traits.{trait}"))
    return [
        (kind, normalize(kind, value, region=tenant.default_region, field=field_prefix + field))
        for kind, value, field in candidates
    ]


def _profile_name(traits: dict[str, Any]) -> str | None:
    if isinstance(traits.get("name"), str) and traits["name"].strip():
        return str(traits["name"]).strip()
    first = traits.get("firstName") or traits.get("first_name")
    last = traits.get("lastName") or traits.get("last_name")
    parts = [p.strip() for p in (first, last) if isinstance(p, str) and p.strip()]
    return " ".join(parts) or None


def _occurred_at(call: SegmentMessage) -> datetime:
    if call.timestamp is None:
        return now()
    if call.timestamp.tzinfo is None:
        return call.timestamp.replace(tzinfo=UTC)
    return call.timestamp.astimezone(UTC)


async def _alias_identities(
    session: AsyncSession, tenant: TenantContext, call: AliasCall
) -> list[tuple[str, str]]:
    """``previousId`` is a former ``userId`` if Hilos knows it as one, else an anonymous id."""
    previous = str(call.previous_id)
    known = await customers.find_by_identity(session, tenant, kind="external", value=previous)
    kind = "external" if known is not None else "anonymous"
    return [("external", str(call.user_id)), (kind, previous)]


async def ingest(
    session: AsyncSession,
    tenant: TenantContext,
    call: IdentifyCall | TrackCall | PageCall | ScreenCall | AliasCall,
    *,
    field_prefix: str = "",
    batch_context: dict[str, Any] | None = None,
) -> CallResult:
    if call.message_id:
        seen = await customers.timeline_event_by_source_id(session, tenant, call.message_id)
        if seen is not None:
            survivor = await customers.live_customer(session, tenant, seen.customer_id)
            return CallResult(
                message_id=call.message_id,
                customer_id=survivor.id,
                event_id=seen.id,
                duplicate=True,
            )
    context = {**(batch_context or {}), **call.context}
    traits: dict[str, Any] = {}
    if isinstance(call, IdentifyCall):
        traits = dict(call.traits)
    elif isinstance(context.get("traits"), dict):
        traits = dict(context["traits"])
    if isinstance(call, AliasCall):
        pairs = await _alias_identities(session, tenant, call)
    else:
        pairs = _identities(tenant, call, traits, field_prefix=field_prefix)
    resolved = await customers.identify(
        session,
        tenant,
        identities=pairs,
        name=_profile_name(traits) if isinstance(call, IdentifyCall) else None,
        language=str(traits["language"]) if isinstance(traits.get("language"), str) else None,
        traits=(
            {k: v for k, v in traits.items() if k not in PROFILE_TRAITS}
            if isinstance(call, IdentifyCall)
            else None
        ),
        reason=f"segment {call.type}",
        enforce_limits=not isinstance(call, AliasCall),
        field_prefix=f"{field_prefix}identities",
    )
    name: str | None
    if isinstance(call, TrackCall):
        name, properties = call.event, call.properties
    elif isinstance(call, PageCall | ScreenCall):
        name = call.name
        properties = dict(call.properties)
        if isinstance(call, PageCall) and call.category:
            properties.setdefault("category", call.category)
    elif isinstance(call, IdentifyCall):
        name, properties = None, traits
    else:
        name, properties = None, {"previousId": str(call.previous_id)}
    event_id, duplicate = await customers.add_timeline_event(
        session,
        tenant,
        customer_id=resolved.customer_id,
        type=call.type,
        name=name,
        properties=properties,
        context=context,
        occurred_at=_occurred_at(call),
        source_message_id=call.message_id,
    )
    return CallResult(
        message_id=call.message_id,
        customer_id=resolved.customer_id,
        event_id=event_id,
        duplicate=duplicate,
    )
