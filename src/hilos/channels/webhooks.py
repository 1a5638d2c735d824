"""``/webhooks/{provider}/{channel_id}``: every provider's webhook, through its adapter.

The order is the same for all: find the channel (404 if unknown, disabled or not served by
that provider), verify the signature (401, nothing stored), count the request against the
channel's rate limit (429 with ``Retry-After``, nothing stored), parse (400 for a body that is
not the provider's format, nothing stored), store each item, answer 200. A payload type the
adapter does not handle is acknowledged with 200, so the provider does not retry it forever.

An adapter may also answer the provider's subscription check (``challenge``, Meta's GET) and
shape its acknowledgement (``acknowledge``, Twilio's TwiML).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from hilos.channels import ingest, registry
from hilos.channels.base import BadPayload, WebhookRequest
from hilos.channels.service import channel_info
from hilos.core.errors import HilosError, NotFound
from hilos.core.metrics import WEBHOOK_REQUESTS
from hilos.core.ratelimit import rate_limits

log = structlog.get_logger(__name__)

router = APIRouter(tags=["webhooks"])

# Providers send small JSON or form bodies; an email or media comes by reference.
MAX_WEBHOOK_BYTES = 1_000_000


async def _webhook_request(request: Request) -> WebhookRequest:
    body = await request.body()
    if len(body) > MAX_WEBHOOK_BYTES:
        raise BadPayload(f"the body is larger than {MAX_WEBHOOK_BYTES} bytes", code="too_large")
    content_type = request.headers.get("content-type", "")
    form: list[tuple[str, str]] = []
    if content_type.startswith("application/x-www-form-urlencoded"):
        try:
            form = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError as error:
            raise BadPayload("the form body is not UTF-8") from error
    return WebhookRequest(
        method=request.method,
        url=str(request.url),
        headers=request.headers,
        query=request.query_params,
        body=body,
        form=form,
    )


@router.post("/webhooks/{provider}/{channel_id}", response_model=None)
async def webhook(provider: str, channel_id: str, request: Request) -> Any:
    """Answer the webhook and count it by provider and outcome (``hilos_webhook_requests_total``;
    a path naming no provider we know counts as ``unknown``, so made-up paths add no series)."""
    return await answer(provider, channel_id, request)


@router.get("/webhooks/{provider}/{channel_id}", response_model=None)
async def webhook_subscription_check(provider: str, channel_id: str, request: Request) -> Any:
    """A provider's subscription check (Meta's ``hub.challenge``); counted like a delivery."""
    return await answer(provider, channel_id, request)


async def answer(provider: str, channel_id: str, request: Request) -> Any:
    """Answer one webhook request (the routes above, and ``app.WebhookFastPath`` for POSTs)."""
    label = provider if registry.adapter_for_path(provider) is not None else "unknown"
    try:
        response = await _answer(provider, channel_id, request)
    except HilosError as error:
        WEBHOOK_REQUESTS.labels(label, error.code).inc()
        raise
    except Exception:
        WEBHOOK_REQUESTS.labels(label, "internal").inc()
        raise
    status = getattr(response, "status_code", 200)
    WEBHOOK_REQUESTS.labels(label, "ok" if status < 400 else f"http_{status}").inc()
    return response


async def _answer(provider: str, channel_id: str, request: Request) -> Any:
    state = request.app.state
    adapter = registry.adapter_for_path(provider)
    if adapter is None:
        raise NotFound(f"no webhook for provider {provider}")
    channel = await channel_info(state.engine, channel_id)
    if not registry.serves(adapter, channel):
        raise NotFound(f"channel {channel_id} does not take {provider} webhooks")
    incoming = await _webhook_request(request)
    if request.method == "GET":
        challenge = getattr(adapter, "challenge", None)
        if challenge is None:
            return JSONResponse(
                status_code=405,
                content={"error": {"code": "method_not_allowed", "message": "use POST"}},
            )
        return challenge(channel, incoming)
    adapter.verify(channel, incoming)
    # Counted once the provider's signature holds, so nobody else can spend the channel's budget.
    rate_limits(request.app).admit_webhook(channel.id)
    items = adapter.parse(channel, incoming)
    stored = await ingest.store(
        state.engine, state.sessionmaker, channel, items, wakeup=state.outbox_wakeup
    )
    acknowledge = getattr(adapter, "acknowledge", None)
    if acknowledge is not None:
        response: Response = acknowledge(stored)
        return response
    return JSONResponse(stored.as_json())
