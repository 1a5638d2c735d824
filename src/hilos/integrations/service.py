"""Outbound webhooks: the endpoints a tenant subscribes, and the fan-out of events to them.

An endpoint is a URL with topics (exact ``stock.changed``, families ``order.*``, or ``*``) and a
Standard Webhooks signing secret, shown once when made or rotated. The fan-out is an outbox
consumer (``hilos.core.outbox.register_consumer``): it runs inside the relay's transaction, so
each event gets exactly one delivery row per matching enabled endpoint of its tenant, written
atomically with the event being marked published (a unique key on (endpoint, event) makes a
repeat a no-op all the same). ``hilos.integrations.delivery`` sends the rows.

Topics are checked for shape and for a known family, so a typo such as ``stok.changed`` is a
422 rather than an endpoint that silently never hears anything. A new domain that emits events
adds its family to ``TOPIC_FAMILIES``.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

import httpx
from sqlalchemy import Table, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from hilos.core.clock import now
from hilos.core.errors import Conflict, Invalid
from hilos.core.ids import new_id
from hilos.core.models import OutboxEvent
from hilos.core.outbox import register_consumer, topic_matcher
from hilos.core.tenancy import TenantContext, get_owned, tenant_scope
from hilos.integrations.models import WebhookDelivery, WebhookEndpoint

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
MAX_TOPICS = 50
MAX_URL_LENGTH = 2000
# How long the old secret keeps signing after a rotation, unless the caller says otherwise.
DEFAULT_KEEP_PREVIOUS_SECONDS = 24 * 3600
MAX_KEEP_PREVIOUS_SECONDS = 7 * 24 * 3600
DELIVERY_STATUSES = ("pending", "sending", "delivered", "failed")

# The first part of every topic Hilos emits, and what it covers.
TOPIC_FAMILIES: dict[str, str] = {
    "stock": "stock.changed",
    "order": "order.placed, order.allocated, order.picked, order.ready_for_pickup, "
    "order.shipped, order.collected, order.delivered, order.cancelled",
    "return": "return.created and the rest of a return's life",
    "cart": "cart.updated, cart.abandoned",
    "loyalty": "loyalty.points_changed, loyalty.tier_changed",
    "customer": "customer.merged, customer.unmerged",
    "consent": "consent.changed",
    "message": "message.received, message.queued, message.noted, message.sent, "
    "message.delivered, message.read, message.failed",
    "conversation": "conversation.open, conversation.pending, conversation.snoozed, "
    "conversation.resolved, conversation.queued, conversation.offered, conversation.assigned",
    "call": "call.ringing, call.answered, call.ended and the other call events",
    "task": "task.created, task.updated",
    "sla": "sla.warning, sla.breached",
    "agent": "agent.presence",
    "webhook": "webhook.endpoint_disabled",
    "segment": "segment.entered, segment.exited",
    "journey": "journey.entered, journey.done, journey.exited, journey.failed, "
    "journey.webhook (to the endpoint a journey's step names)",
    "campaign": "campaign.started, campaign.sent",
    "assistant": "assistant.answered, assistant.handed_off",
    "survey": "survey.answered, survey.commented",
    "review": "review.received",
    "mention": "mention.received",
}
_EXACT_TOPIC = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)+")
_TOPIC_PATTERN = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)*\.\*")


def new_secret() -> str:
    """A Standard Webhooks signing secret: ``whsec_`` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(os.urandom(SECRET_BYTES)).decode("ascii")


def check_url(url: str) -> str:
    """``url`` if it is an absolute http(s) URL with a host, else ``Invalid``."""
    url = url.strip()
    problem = None
    if not url or len(url) > MAX_URL_LENGTH:
        problem = f"url must be 1 to {MAX_URL_LENGTH} characters"
    elif any(character.isspace() for character in url):
        problem = "url must not contain spaces"
    else:
        try:
            parsed = httpx.URL(url)
            host = parsed.host  # decodes an internationalised name, which may be malformed
        except (httpx.InvalidURL, ValueError) as error:  # IDNAError is a ValueError
            problem = f"url is not a valid URL: {error}"
        else:
            if parsed.scheme not in ("http", "https"):
                problem = "url must start with http:// or https://"
            elif not host:
                problem = "url must name a host"
            elif parsed.port is not None and not 0 < parsed.port < 65536:
                problem = "url's port must be between 1 and 65535"
    if problem is not None:
        raise Invalid(problem, field="url", code="invalid_url")
    return url


def check_topics(topics: Sequence[str]) -> list[str]:
    """The topics, without repeats, if each is an exact topic, a ``family.*`` pattern or
    ``*`` of a known family; else ``Invalid`` naming the first bad one."""
    if not topics:
        raise Invalid("topics must name at least one topic", field="topics", code="invalid_topic")
    if len(topics) > MAX_TOPICS:
        raise Invalid(
            f"topics may hold at most {MAX_TOPICS} entries", field="topics", code="invalid_topic"
        )
    seen: list[str] = []
    for index, topic in enumerate(topics):
        field = f"topics.{index}"
        if topic != "*" and not (_EXACT_TOPIC.fullmatch(topic) or _TOPIC_PATTERN.fullmatch(topic)):
            raise Invalid(
                f"{topic!r} is not a topic: use an exact topic such as 'stock.changed', a "
                "family such as 'order.*', or '*' for every event",
                field=field,
                code="invalid_topic",
            )
        family = topic.split(".", 1)[0]
        if topic != "*" and family not in TOPIC_FAMILIES:
            raise Invalid(
                f"{topic!r}: no event family {family!r}; known families: "
                + ", ".join(sorted(TOPIC_FAMILIES)),
                field=field,
                code="unknown_topic",
            )
        if topic not in seen:
            seen.append(topic)
    return seen


# --- endpoints ------------------------------------------------------------------------------


async def create_endpoint(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    url: str,
    topics: Sequence[str],
    description: str = "",
    enabled: bool = True,
) -> WebhookEndpoint:
    """A new endpoint with a fresh secret (``endpoint.secret``: the caller shows it once)."""
    endpoint = WebhookEndpoint(
        id=new_id(),
        tenant_id=tenant.id,
        url=check_url(url),
        topics=check_topics(topics),
        description=description,
        enabled=enabled,
        secret=new_secret(),
    )
    session.add(endpoint)
    await session.flush()
    return endpoint


async def list_endpoints(session: AsyncSession, tenant: TenantContext) -> list[WebhookEndpoint]:
    statement = tenant_scope(select(WebhookEndpoint), WebhookEndpoint, tenant)
    return list((await session.execute(statement.order_by(WebhookEndpoint.id))).scalars())


async def get_endpoint(
    session: AsyncSession, tenant: TenantContext, endpoint_id: str
) -> WebhookEndpoint:
    return await get_owned(session, WebhookEndpoint, endpoint_id, tenant, what="webhook endpoint")


async def update_endpoint(
    session: AsyncSession, tenant: TenantContext, *, endpoint_id: str, changes: dict[str, Any]
) -> WebhookEndpoint:
    """Change url, topics, description or enabled. Enabling clears what Hilos noted when it
    disabled the endpoint by itself; deliveries that waited while it was disabled go out."""
    endpoint = await get_endpoint(session, tenant, endpoint_id)
    if "url" in changes:
        endpoint.url = check_url(changes["url"])
    if "topics" in changes:
        endpoint.topics = check_topics(changes["topics"])
    if "description" in changes:
        endpoint.description = changes["description"]
    if "enabled" in changes:
        endpoint.enabled = bool(changes["enabled"])
        endpoint.disabled_reason = None
        if endpoint.enabled:
            endpoint.failing_since = None
    endpoint.updated_at = now()
    await session.flush()
    return endpoint


async def delete_endpoint(
    session: AsyncSession, tenant: TenantContext, *, endpoint_id: str
) -> None:
    """Remove the endpoint and its deliveries (nothing more is sent to it)."""
    endpoint = await get_endpoint(session, tenant, endpoint_id)
    await session.execute(
        delete(WebhookDelivery).where(
            WebhookDelivery.tenant_id == tenant.id, WebhookDelivery.endpoint_id == endpoint.id
        )
    )
    await session.delete(endpoint)
    await session.flush()


async def rotate_secret(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    endpoint_id: str,
    keep_previous_seconds: int = DEFAULT_KEEP_PREVIOUS_SECONDS,
) -> WebhookEndpoint:
    """A new secret; the old one keeps signing (a second ``v1,`` signature) for
    ``keep_previous_seconds``, so a receiver can switch without losing a delivery."""
    if not 0 <= keep_previous_seconds <= MAX_KEEP_PREVIOUS_SECONDS:
        raise Invalid(
            f"keep_previous_seconds must be between 0 and {MAX_KEEP_PREVIOUS_SECONDS}",
            field="keep_previous_seconds",
        )
    endpoint = await get_endpoint(session, tenant, endpoint_id)
    moment = now()
    if keep_previous_seconds:
        endpoint.previous_secret = endpoint.secret
        endpoint.previous_secret_expires_at = moment + timedelta(seconds=keep_previous_seconds)
    else:
        endpoint.previous_secret = None
        endpoint.previous_secret_expires_at = None
    endpoint.secret = new_secret()
    endpoint.updated_at = moment
    await session.flush()
    return endpoint


def signing_secrets(endpoint: WebhookEndpoint, at: datetime) -> list[str]:
    """The secrets that sign a delivery sent at ``at``: the current one, and the previous one
    while it has not expired."""
    secrets = [endpoint.secret]
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret and expires is not None and expires > at:
        secrets.append(endpoint.previous_secret)
    return secrets


# --- deliveries -----------------------------------------------------------------------------


async def list_deliveries(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    endpoint_id: str,
    status: str | None = None,
    before: str | None = None,
    limit: int = 50,
) -> list[WebhookDelivery]:
    """The endpoint's deliveries, newest first; ``before`` is the last id already seen."""
    endpoint = await get_endpoint(session, tenant, endpoint_id)
    statement = tenant_scope(
        select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id),
        WebhookDelivery,
        tenant,
    )
    if status is not None:
        if status not in DELIVERY_STATUSES:
            raise Invalid(
                f"status must be one of {', '.join(DELIVERY_STATUSES)}",
                field="status",
            )
        statement = statement.where(WebhookDelivery.status == status)
    if before is not None:
        statement = statement.where(WebhookDelivery.id < before)
    statement = statement.order_by(WebhookDelivery.id.desc()).limit(limit)
    return list((await session.execute(statement)).scalars())


async def get_delivery(
    session: AsyncSession, tenant: TenantContext, delivery_id: str
) -> WebhookDelivery:
    return await get_owned(session, WebhookDelivery, delivery_id, tenant, what="webhook delivery")


async def retry_delivery(
    session: AsyncSession, tenant: TenantContext, *, delivery_id: str
) -> WebhookDelivery:
    """Send the delivery again now, with a fresh retry schedule, whatever its outcome was
    (delivered ones too: a receiver that lost the data asks for a replay)."""
    delivery = await get_delivery(session, tenant, delivery_id)
    if delivery.status == "sending":
        raise Conflict(
            "this delivery is being sent right now; look again in a moment",
            code="delivery_in_progress",
        )
    endpoint = await get_endpoint(session, tenant, delivery.endpoint_id)
    if not endpoint.enabled:
        raise Conflict(
            "the endpoint is disabled: enable it (PATCH enabled=true) to send again",
            code="endpoint_disabled",
        )
    moment = now()
    delivery.status = "pending"
    delivery.attempts = 0
    delivery.next_attempt_at = moment
    delivery.delivered_at = None
    delivery.updated_at = moment
    await session.flush()
    return delivery


# --- fan-out --------------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def event_body(event: OutboxEvent) -> str:
    """The JSON body every endpoint receives for ``event``: compact, the same on every attempt."""
    document = {
        "id": event.id,
        "type": event.topic,
        "created_at": _iso(event.created_at),
        "tenant_id": event.tenant_id,
        "data": event.payload,
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


# Topics whose events name the one endpoint they are for (``payload.endpoint_id``).
ADDRESSED_TOPICS = frozenset({"journey.webhook"})


async def fan_out(session: AsyncSession, events: Sequence[OutboxEvent]) -> None:
    """The outbox consumer: one pending delivery per (event, matching enabled endpoint)."""
    tenant_ids = {event.tenant_id for event in events}
    rows = (
        await session.execute(
            select(WebhookEndpoint.id, WebhookEndpoint.tenant_id, WebhookEndpoint.topics).where(
                WebhookEndpoint.tenant_id.in_(tenant_ids), WebhookEndpoint.enabled.is_(True)
            )
        )
    ).all()
    if not rows:
        return
    endpoints: dict[str, list[tuple[str, Any]]] = {}
    for row in rows:
        endpoints.setdefault(row.tenant_id, []).append((row.id, topic_matcher(row.topics)))
    moment = now()
    deliveries: list[dict[str, Any]] = []
    for event in events:
        target = event.payload.get("endpoint_id") if event.topic in ADDRESSED_TOPICS else None
        if target is not None:
            # An event for one endpoint (a journey's webhook step), whatever it subscribes to.
            wanted = [id_ for id_, _ in endpoints.get(event.tenant_id, ()) if id_ == target]
        else:
            wanted = [
                id_ for id_, matches in endpoints.get(event.tenant_id, ()) if matches(event.topic)
            ]
        if not wanted:
            continue
        body = event_body(event)
        deliveries.extend(
            {
                "id": new_id(),
                "tenant_id": event.tenant_id,
                "endpoint_id": endpoint_id,
                "event_id": event.id,
                "event_type": event.topic,
                "body": body,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": moment,
                "created_at": moment,
                "updated_at": moment,
            }
            for endpoint_id in wanted
        )
    if not deliveries:
        return
    connection = await session.connection()
    insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    await connection.execute(
        insert(cast(Table, WebhookDelivery.__table__)).on_conflict_do_nothing(
            index_elements=["endpoint_id", "event_id"]
        ),
        deliveries,
    )


register_consumer("webhooks", topics=("*",), consume=fan_out)
