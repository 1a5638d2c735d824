"""HTTP API of the sending rules (thin: ``sending`` does the work): the tenant's quiet hours
and frequency cap, the sends log with its reasons, a one-off send of a template to a customer,
and the unsubscribe link that marketing messages carry (public: the customer follows it)."""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from hilos.core.deps import CurrentPrincipal, DbSession, SupervisorPrincipal
from hilos.core.errors import Invalid
from hilos.engagement import sending
from hilos.engagement.send_models import Send
from hilos.web.i18n import VOCABULARY, supported_language, translations

router = APIRouter(prefix="/v1/engagement", tags=["engagement sending"])

ChannelKind = Literal[
    "web_chat", "email", "whatsapp", "messenger", "instagram", "telegram", "sms", "api"
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class QuietHours(_Strict):
    start: str = Field(pattern=r"^\d{2}:\d{2}$", examples=["21:00"])
    end: str = Field(pattern=r"^\d{2}:\d{2}$", examples=["09:00"])


class FrequencyCap(_Strict):
    messages: int = Field(ge=1, le=1000)
    days: int = Field(ge=1, le=365)


class SettingsIn(_Strict):
    """Keys left out keep their value; ``null`` turns quiet hours or the cap off."""

    quiet_hours: QuietHours | None = None
    frequency_cap: FrequencyCap | None = None
    cart_url: str | None = Field(
        default=None,
        max_length=500,
        description="the shop's address of a cart, with {cart_id} and {customer_id}",
    )


class SettingsOut(BaseModel):
    quiet_hours: QuietHours | None
    frequency_cap: FrequencyCap | None
    cart_url: str | None


class SendIn(_Strict):
    customer_id: str = Field(min_length=1, max_length=32)
    template_id: str = Field(min_length=1, max_length=32)
    idempotency_key: str = Field(min_length=1, max_length=sending.MAX_KEY_LENGTH)
    channel_order: list[ChannelKind] = Field(default_factory=list, max_length=10)
    context: dict[str, Any] = Field(
        default_factory=dict,
        description="cart, order, recommendations, unsubscribe_url, data (customer and tenant "
        "are filled in)",
    )


class SendResultOut(BaseModel):
    send_id: str
    status: str
    reason: str | None
    detail: str | None
    channel_kind: str | None
    message_id: str | None
    retry_at: datetime | None


class SendOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    customer_id: str
    template_id: str
    purpose: str
    status: str
    reason: str | None
    detail: str | None
    channel_kind: str | None
    channel_id: str | None
    language: str | None
    tried: list[dict[str, Any]]
    source: dict[str, Any]
    idempotency_key: str
    message_id: str | None
    conversation_id: str | None
    attempts: int
    history: list[dict[str, Any]]
    created_at: datetime
    updated_at: datetime
    queued_at: datetime | None
    retry_at: datetime | None


class SendPage(BaseModel):
    items: list[SendOut]
    next_before: str | None


_CONTEXT_KEYS = frozenset({"cart", "order", "recommendations", "unsubscribe_url", "data"})


@router.get("/settings", response_model=SettingsOut)
async def get_settings(session: DbSession, principal: CurrentPrincipal) -> object:
    return (await sending.get_settings(session, principal.tenant)).as_dict()


@router.put("/settings", response_model=SettingsOut)
async def set_settings(
    body: SettingsIn, session: DbSession, principal: SupervisorPrincipal
) -> object:
    changes = {
        key: (value.model_dump() if isinstance(value, BaseModel) else value)
        for key in body.model_fields_set
        for value in [getattr(body, key)]
    }
    return (await sending.set_settings(session, principal.tenant, changes=changes)).as_dict()


@router.get("/sends", response_model=SendPage)
async def list_sends(
    session: DbSession,
    principal: CurrentPrincipal,
    customer_id: Annotated[str | None, Query(max_length=32)] = None,
    status: Annotated[Literal["queued", "deferred", "suppressed"] | None, Query()] = None,
    template_id: Annotated[str | None, Query(max_length=32)] = None,
    before: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> SendPage:
    """The sends log, newest first, with the reason of each deferral or suppression."""
    rows: list[Send] = await sending.list_sends(
        session,
        principal.tenant,
        customer_id=customer_id,
        status=status,
        template_id=template_id,
        before=before,
        limit=limit,
    )
    return SendPage(
        items=[SendOut.model_validate(row) for row in rows],
        next_before=rows[-1].id if len(rows) == limit else None,
    )


@router.post("/sends", response_model=SendResultOut)
async def send(body: SendIn, session: DbSession, principal: SupervisorPrincipal) -> SendResultOut:
    """Send a template to one customer under the sending rules; a repeated idempotency key
    answers the first result and sends nothing."""
    unknown = sorted(set(body.context) - _CONTEXT_KEYS)
    if unknown:
        raise Invalid(
            f"context.{unknown[0]} is not a template value the caller gives; use "
            + ", ".join(sorted(_CONTEXT_KEYS)),
            field=f"context.{unknown[0]}",
        )
    result = await sending.send(
        session,
        principal.tenant,
        customer_id=body.customer_id,
        template_id=body.template_id,
        context=body.context,
        channel_order=list(body.channel_order),
        source={"api_key_id": principal.key_id} if principal.key_id else {},
        idempotency_key=body.idempotency_key,
    )
    return SendResultOut(
        send_id=result.send_id,
        status=result.status,
        reason=result.reason,
        detail=result.detail,
        channel_kind=result.channel_kind,
        message_id=result.message_id,
        retry_at=result.retry_at,
    )


def _page(language: str, title: str, body: str, button: str | None = None) -> str:
    form = (
        f'<form method="post"><button type="submit">{escape(button)}</button></form>'
        if button
        else ""
    )
    return (
        f'<!doctype html><html lang="{language}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title></head>"
        '<body style="font-family: system-ui, sans-serif; max-width: 32rem; margin: 4rem auto;">'
        f"<h1>{escape(title)}</h1><p>{escape(body)}</p>{form}</body></html>"
    )


async def _unsubscribe(token: str, session: DbSession, *, confirm: bool) -> HTMLResponse:
    done = await sending.unsubscribe(session, token, confirm=confirm)
    language = supported_language(done.language) or "es"
    gettext = translations(language).gettext
    channel = gettext(VOCABULARY["channel"].get(done.channel_kind, done.channel_kind))
    if confirm or done.already:
        title = gettext("Unsubscribed")
        body = gettext("You will no longer receive marketing messages by %(channel)s.") % {
            "channel": channel
        }
        return HTMLResponse(_page(language, title, body))
    title = gettext("Unsubscribe")
    body = gettext("Stop receiving marketing messages by %(channel)s?") % {"channel": channel}
    return HTMLResponse(_page(language, title, body, gettext("Unsubscribe")))


@router.get("/unsubscribe/{token}", response_class=HTMLResponse)
async def unsubscribe_page(token: str, session: DbSession) -> HTMLResponse:
    """The link in a marketing message: a page that asks to confirm (a link scanner opening it
    unsubscribes nobody)."""
    return await _unsubscribe(token, session, confirm=False)


@router.post("/unsubscribe/{token}", response_class=HTMLResponse)
async def unsubscribe_confirmed(token: str, session: DbSession) -> HTMLResponse:
    """The page's button, and RFC 8058's one-click ``List-Unsubscribe-Post``: records the
    refusal of marketing on the channel the message went by."""
    return await _unsubscribe(token, session, confirm=True)
