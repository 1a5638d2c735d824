"""Sending webhook deliveries, signed the Standard Webhooks way, and checking such signatures.

Signature (Standard Webhooks 1.0, symmetric): the signed content is
``{webhook-id}.{webhook-timestamp}.{body}``; the key is the secret after ``whsec_``,
base64-decoded; the ``webhook-signature`` header is ``v1,`` + base64(HMAC-SHA256), one entry per
secret that signs, separated by spaces (two during a secret rotation). ``webhook-id`` is the
event's id, the same on every attempt and for every endpoint, so a receiver can drop repeats.
The helpers are written here rather than taken from the ``standardwebhooks`` package: it is
not a dependency, and the scheme is a few lines of ``hmac``.

Claims: ``send_due`` claims due deliveries (``FOR UPDATE SKIP LOCKED`` on PostgreSQL) by
setting them ``sending`` with a lease (``next_attempt_at`` = now + ``CLAIM_SECONDS``) and
commits before calling anyone. A worker that dies mid-send leaves the lease to lapse, and the
delivery is sent again: webhooks are at least once, which the stable ``webhook-id`` makes safe.
An outcome is recorded only if the claim is still the one that sent it.

Outcomes: a 2xx is delivered. A 408, a 429, a 5xx, a timeout or a network error is retried on
``RETRY_SCHEDULE`` (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h: ten attempts over
about three days), each delay plus up to 10 % jitter and never sooner than ``Retry-After``
asks (capped at a day); then it fails. Any other answer (other 4xx, and 3xx: redirects are
not followed) fails at once, keeping the status and an excerpt of the body. A 410 Gone also
disables the endpoint, as does failing with no delivery succeeding for ``AUTO_DISABLE_AFTER``;
either emits ``webhook.endpoint_disabled``. Deliveries of a disabled endpoint wait and go out
once it is enabled again.

Order: deliveries are claimed by due time, several at once, so one endpoint's events can
arrive out of order (and a retried one after later ones). Receivers order by the payload's
``created_at`` or re-read the resource; ``data`` carries the state after the change.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

import httpx
import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos import __version__
from hilos.core.clock import as_utc, now
from hilos.core.metrics import WEBHOOK_DELIVERIES
from hilos.core.outbox import emit
from hilos.integrations.models import WebhookDelivery, WebhookEndpoint
from hilos.integrations.service import SECRET_PREFIX, signing_secrets

log = structlog.get_logger(__name__)

CLAIM_SECONDS = 120
REQUEST_TIMEOUT_SECONDS = 15.0
# Delay after the n-th failed attempt (Standard Webhooks' example schedule).
RETRY_SCHEDULE = (5, 300, 1800, 7200, 18_000, 36_000, 50_400, 72_000, 86_400)
MAX_ATTEMPTS = len(RETRY_SCHEDULE) + 1
JITTER = 0.1
MAX_RETRY_AFTER_SECONDS = 86_400
AUTO_DISABLE_AFTER = timedelta(days=5)
BATCH = 10  # claimed and sent concurrently
MAX_PER_RUN = 200  # then the worker's other stages get their turn
EXCERPT_BYTES = 1000
DEFAULT_TOLERANCE_SECONDS = 300


class InvalidSignature(ValueError):
    """A webhook whose headers or signature do not check out."""


# --- signing --------------------------------------------------------------------------------


def _key(secret: str) -> bytes:
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSignature("the secret is not whsec_ followed by base64") from None


def sign(secret: str, *, webhook_id: str, timestamp: int, body: bytes) -> str:
    """``v1,`` and the base64 HMAC-SHA256 of ``{id}.{timestamp}.{body}`` under ``secret``."""
    content = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_headers(
    secrets: Sequence[str], *, webhook_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers, signed with every secret in ``secrets``."""
    signatures = " ".join(
        sign(secret, webhook_id=webhook_id, timestamp=timestamp, body=body) for secret in secrets
    )
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signatures,
    }


def verify_signature(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    at: datetime | None = None,
) -> None:
    """Check a received webhook as a receiver must; raise ``InvalidSignature`` if it fails.

    ``headers`` is looked up in lower case (pass ``request.headers`` of Starlette or httpx, or
    a dict with lower-case keys); ``body`` is the raw body, before any JSON parsing. The
    timestamp must be within ``tolerance_seconds`` of ``at`` (default now), which stops replays.
    """
    webhook_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not webhook_id or not timestamp or not signatures:
        raise InvalidSignature("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise InvalidSignature("webhook-timestamp is not a whole number of seconds") from None
    moment = (at or now()).timestamp()
    if abs(moment - sent_at) > tolerance_seconds:
        raise InvalidSignature("webhook-timestamp is too far from now (a replay?)")
    expected = sign(secret, webhook_id=webhook_id, timestamp=sent_at, body=body)
    for candidate in signatures.split(" "):
        if hmac.compare_digest(candidate.encode(), expected.encode()):
            return
    raise InvalidSignature("no signature matches")


# --- the schedule ---------------------------------------------------------------------------


def retry_delay(attempts: int, retry_after: float | None = None) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt, with jitter, honouring the
    receiver's ``Retry-After`` up to a day."""
    base = RETRY_SCHEDULE[min(max(attempts, 1), len(RETRY_SCHEDULE)) - 1]
    delay = base + random.uniform(0, base * JITTER)  # jitter, not a secret
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER_SECONDS))
    return delay


def parse_retry_after(value: str | None, *, at: datetime) -> float | None:
    """``Retry-After`` in seconds: a number of seconds or an HTTP date; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((as_utc(when) - at).total_seconds(), 0.0)


# --- sending --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claimed:
    delivery_id: str
    tenant_id: str
    endpoint_id: str
    event_id: str
    body: str
    attempts: int
    url: str
    secrets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Outcome:
    result: str  # delivered, retry, failed
    status_code: int | None = None
    error: str | None = None
    response: str | None = None
    retry_after: float | None = None


async def _claim(session: AsyncSession, *, batch: int) -> list[Claimed]:
    moment = now()
    statement = (
        select(WebhookDelivery, WebhookEndpoint)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(
            WebhookDelivery.status.in_(("pending", "sending")),
            WebhookDelivery.next_attempt_at <= moment,
            WebhookEndpoint.enabled.is_(True),
        )
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(batch)
    )
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update(skip_locked=True, of=WebhookDelivery)
    rows = (await session.execute(statement)).all()
    if not rows:
        return []
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_([delivery.id for delivery, _ in rows]))
        .values(
            status="sending",
            attempts=WebhookDelivery.attempts + 1,
            next_attempt_at=moment + timedelta(seconds=CLAIM_SECONDS),
            last_attempt_at=moment,
            updated_at=moment,
        ),
        execution_options={"synchronize_session": False},
    )
    return [
        Claimed(
            delivery_id=delivery.id,
            tenant_id=delivery.tenant_id,
            endpoint_id=endpoint.id,
            event_id=delivery.event_id,
            body=delivery.body,
            attempts=delivery.attempts + 1,
            url=endpoint.url,
            secrets=tuple(signing_secrets(endpoint, moment)),
        )
        for delivery, endpoint in rows
    ]


async def send_due(
    sessionmaker: async_sessionmaker[AsyncSession], http_client: httpx.AsyncClient
) -> int:
    """Send every webhook delivery that is due (up to ``MAX_PER_RUN``); return how many
    attempts were made."""
    attempted = 0
    while attempted < MAX_PER_RUN:
        async with sessionmaker() as session, session.begin():
            claimed = await _claim(session, batch=BATCH)
        if not claimed:
            break
        outcomes = await asyncio.gather(*(_attempt(http_client, item) for item in claimed))
        for item, outcome in zip(claimed, outcomes, strict=True):
            await _record(sessionmaker, item, outcome)
        attempted += len(claimed)
        if len(claimed) < BATCH:
            break
    return attempted


async def _attempt(client: httpx.AsyncClient, item: Claimed) -> Outcome:
    body = item.body.encode()
    moment = now()
    headers = {
        "content-type": "application/json",
        "user-agent": f"Hilos-Webhooks/{__version__}",
        **signature_headers(
            item.secrets, webhook_id=item.event_id, timestamp=int(moment.timestamp()), body=body
        ),
    }
    try:
        async with client.stream(
            "POST",
            item.url,
            content=body,
            headers=headers,
            timeout=REQUEST_TIMEOUT_SECONDS,
            follow_redirects=False,
        ) as response:
            excerpt = await _excerpt(response)
            status = response.status_code
            retry_after = parse_retry_after(response.headers.get("retry-after"), at=moment)
            location = response.headers.get("location")
    except httpx.TimeoutException as error:
        return Outcome("retry", error=f"timed out ({type(error).__name__})")
    except httpx.HTTPError as error:
        return Outcome("retry", error=f"{type(error).__name__}: {error}"[:500])
    except httpx.InvalidURL as error:
        return Outcome("failed", error=f"invalid URL: {error}"[:500])
    except Exception as error:  # a bug must not lose the delivery: retried, then failed
        log.exception("webhooks.send_error", delivery_id=item.delivery_id)
        return Outcome("retry", error=f"unexpected {type(error).__name__}")
    if 200 <= status < 300:
        return Outcome("delivered", status_code=status, response=excerpt)
    if status in (408, 429) or status >= 500:
        return Outcome(
            "retry",
            status_code=status,
            error=f"the receiver answered {status}",
            response=excerpt,
            retry_after=retry_after,
        )
    if 300 <= status < 400:
        reason = f"the receiver answered {status}; redirects are not followed"
        if location:
            reason += f": change the endpoint's URL to {location}"[:300]
        return Outcome("failed", status_code=status, error=reason[:500], response=excerpt)
    return Outcome(
        "failed", status_code=status, error=f"the receiver answered {status}", response=excerpt
    )


async def _excerpt(response: httpx.Response) -> str:
    """The first ``EXCERPT_BYTES`` of the answer, without reading a huge body whole."""
    taken = bytearray()
    async for chunk in response.aiter_bytes():
        taken.extend(chunk)
        if len(taken) >= EXCERPT_BYTES:
            break
    return bytes(taken[:EXCERPT_BYTES]).decode("utf-8", errors="replace")


async def _record(
    sessionmaker: async_sessionmaker[AsyncSession], item: Claimed, outcome: Outcome
) -> None:
    moment = now()
    values: dict[str, object] = {
        "last_status_code": outcome.status_code,
        "last_error": outcome.error,
        "last_response": outcome.response,
        "updated_at": moment,
    }
    result = outcome.result
    if result == "retry" and item.attempts >= MAX_ATTEMPTS:
        result = "failed"
        values["last_error"] = f"{outcome.error}; gave up after {item.attempts} attempts"
    if result == "delivered":
        values.update(status="delivered", delivered_at=moment, next_attempt_at=None)
    elif result == "retry":
        delay = retry_delay(item.attempts, outcome.retry_after)
        values.update(status="pending", next_attempt_at=moment + timedelta(seconds=delay))
    else:
        values.update(status="failed", next_attempt_at=None)
    async with sessionmaker() as session, session.begin():
        mine = await session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == item.delivery_id,
                WebhookDelivery.status == "sending",
                WebhookDelivery.attempts == item.attempts,
            )
            .values(**values)
            .returning(WebhookDelivery.id)
        )
        if mine.first() is None:  # the claim lapsed and another worker took it over
            return
        if result == "delivered":
            await session.execute(
                update(WebhookEndpoint)
                .where(
                    WebhookEndpoint.id == item.endpoint_id,
                    WebhookEndpoint.failing_since.is_not(None),
                )
                .values(failing_since=None)
            )
        else:
            await _note_failure(session, item, outcome, moment)
    WEBHOOK_DELIVERIES.labels(result).inc()
    log.info(
        "webhooks.attempt",
        delivery_id=item.delivery_id,
        endpoint_id=item.endpoint_id,
        outcome=result,
        status_code=outcome.status_code,
        error=outcome.error,
    )


async def _note_failure(
    session: AsyncSession, item: Claimed, outcome: Outcome, moment: datetime
) -> None:
    await session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == item.endpoint_id, WebhookEndpoint.failing_since.is_(None))
        .values(failing_since=moment)
    )
    if outcome.status_code == 410:
        reason = "the receiver answered 410 Gone"
        condition = WebhookEndpoint.id == item.endpoint_id
    else:
        days = AUTO_DISABLE_AFTER.days
        reason = f"no delivery succeeded for {days} days"
        condition = (WebhookEndpoint.id == item.endpoint_id) & (
            WebhookEndpoint.failing_since <= moment - AUTO_DISABLE_AFTER
        )
    disabled = (
        await session.execute(
            update(WebhookEndpoint)
            .where(condition, WebhookEndpoint.enabled.is_(True))
            .values(enabled=False, disabled_reason=reason, updated_at=moment)
            .returning(WebhookEndpoint.url)
        )
    ).first()
    if disabled is None:
        return
    await emit(
        session,
        tenant_id=item.tenant_id,
        topic="webhook.endpoint_disabled",
        payload={"endpoint_id": item.endpoint_id, "url": disabled.url, "reason": reason},
    )
    log.warning("webhooks.endpoint_disabled", endpoint_id=item.endpoint_id, reason=reason)
