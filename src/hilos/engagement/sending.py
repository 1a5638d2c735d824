"""The sending rules: every message journeys and campaigns send to a customer goes through
``send``, which picks the channel, applies consent, quiet hours and the frequency cap, and
records what became of it — queued, deferred or suppressed, with the reason — in the sends log.

The rules, in this order:

1. **Channel.** The customer's preferred channel kind (trait ``preferred_channel``), then the
   caller's ``channel_order`` (a journey's fallbacks), then every other channel of the tenant
   the customer can be reached on, as ``conversations.reply_options`` judges it (an address the
   channel delivers to, the channel enabled, no refusal of service messages, WhatsApp's
   24-hour window). Outside that window WhatsApp still qualifies when the template has a
   WhatsApp rendering: an approved template goes at any time. A channel also needs a rendering
   of the template (``templates.can_render``).
2. **Consent** (``marketing`` templates only): a channel kind without a granted ``marketing``
   consent of the customer for that kind is passed over (``no_consent:<kind>``) for the next;
   none left is ``suppressed`` ``no_consent``. No record is no consent.
3. **Quiet hours** (marketing only): inside the tenant's quiet hours (default 21:00–09:00) in
   the customer's time zone (trait ``timezone``, an IANA name, else the tenant's), the send is
   ``deferred`` ``quiet_hours`` with ``retry_at`` the end of the quiet period.
4. **Frequency cap** (marketing only): at most N marketing messages per customer in any D days
   (default 3 in 7), counted from the sends log across every channel; the N+1th is
   ``suppressed`` ``frequency_cap``.
5. **Queued**: rendered in the customer's language (else the tenant's, else any) for the chosen
   channel and put in the customer's conversation through ``conversations.notify`` — the
   outbox, like every reply, marked automated so it stops no SLA clock. A rendering that fails
   (a value the caller did not pass) passes that channel over (``render_failed:<kind>``).

Idempotency: ``idempotency_key`` is unique per tenant. A repeated key returns the first result
and sends nothing — except that a ``deferred`` send asked again at or after its ``retry_at`` is
tried again under the same key (its deferral stays in the row's ``history``), so a journey can
retry a step with the key it used the first time.

Concurrent sends to one customer are serialised on PostgreSQL by a transaction-scoped advisory
lock (on SQLite every write transaction already is), so two journeys at once cannot both take
the last message the cap allows.

The sends log is also what the frequency cap counts, what a campaign's counts start from (its
``message_id`` leads to delivery and read receipts) and where ``unsubscribe_url`` points: each
send has a secret token, and ``unsubscribe`` records the refusal of marketing on that channel.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from hilos.commerce import carts, orders
from hilos.conversations import notify
from hilos.conversations import service as conversations
from hilos.conversations.service import WHATSAPP_WINDOW_CLOSED, ReplyOption
from hilos.core.clock import as_utc, now
from hilos.core.errors import Conflict, Invalid, NotFound
from hilos.core.ids import new_id
from hilos.core.settings import get_settings as app_settings
from hilos.core.tenancy import TenantContext, load_tenant, tenant_scope
from hilos.customers import service as customers
from hilos.engagement import recommend, templates
from hilos.engagement.send_models import EngagementSettings, Send
from hilos.engagement.template_models import MessageTemplate

QUEUED, DEFERRED, SUPPRESSED = "queued", "deferred", "suppressed"
STATUSES = (QUEUED, DEFERRED, SUPPRESSED)
# Reasons of the sends log.
NO_CONSENT = "no_consent"
NO_REACHABLE_CHANNEL = "no_reachable_channel"
QUIET_HOURS = "quiet_hours"
FREQUENCY_CAP = "frequency_cap"
CHANNEL_THROTTLED = "channel_throttled"
# How long a throttled send waits before it is tried again.
THROTTLE_PAUSE = timedelta(minutes=1)
RENDER_FAILED = "render_failed"
NO_CHANNEL = "no_channel"
NO_RENDERING = "no_rendering"

DEFAULT_QUIET_HOURS = ("21:00", "09:00")
DEFAULT_CAP = (3, 7)
MAX_KEY_LENGTH = 200
# Recommendations a template gets when the caller passes none.
RECOMMENDED = 3
UNSUBSCRIBE_PATH = "/v1/engagement/unsubscribe/"


# --- settings ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendingSettings:
    """A tenant's sending rules: quiet hours ("HH:MM", ``None``: none), the frequency cap
    (``None``: none) and the address of a cart on the shop (``{cart_id}``, ``{customer_id}``)."""

    quiet_start: str | None = DEFAULT_QUIET_HOURS[0]
    quiet_end: str | None = DEFAULT_QUIET_HOURS[1]
    cap_messages: int | None = DEFAULT_CAP[0]
    cap_days: int | None = DEFAULT_CAP[1]
    cart_url: str | None = None

    def as_dict(self) -> dict[str, Any]:
        quiet = (
            {"start": self.quiet_start, "end": self.quiet_end}
            if self.quiet_start and self.quiet_end
            else None
        )
        cap = (
            {"messages": self.cap_messages, "days": self.cap_days}
            if self.cap_messages is not None and self.cap_days is not None
            else None
        )
        return {"quiet_hours": quiet, "frequency_cap": cap, "cart_url": self.cart_url}


def _clock_time(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise Invalid(f"{where} is a time of day such as 21:00", field=where)
    try:
        parsed = time.fromisoformat(value)
    except ValueError:
        raise Invalid(
            f"{where} is a time of day such as 21:00, not {value!r}", field=where
        ) from None
    if parsed.second or parsed.microsecond or parsed.tzinfo is not None:
        raise Invalid(f"{where} is hours and minutes (21:00), not {value!r}", field=where)
    return f"{parsed.hour:02d}:{parsed.minute:02d}"


async def get_settings(session: AsyncSession, tenant: TenantContext) -> SendingSettings:
    row = await session.get(EngagementSettings, tenant.id)
    if row is None:
        return SendingSettings()
    return SendingSettings(
        quiet_start=row.quiet_start,
        quiet_end=row.quiet_end,
        cap_messages=row.cap_messages,
        cap_days=row.cap_days,
        cart_url=row.cart_url,
    )


async def set_settings(
    session: AsyncSession, tenant: TenantContext, *, changes: Mapping[str, Any]
) -> SendingSettings:
    """Change the keys given (``quiet_hours``, ``frequency_cap``, ``cart_url``); ``None`` turns
    one off, a key left out keeps its value. Everything is checked before anything changes."""
    current = await get_settings(session, tenant)
    values = {
        "quiet_start": current.quiet_start,
        "quiet_end": current.quiet_end,
        "cap_messages": current.cap_messages,
        "cap_days": current.cap_days,
        "cart_url": current.cart_url,
    }
    if "quiet_hours" in changes:
        quiet = changes["quiet_hours"]
        if quiet is None:
            values["quiet_start"] = values["quiet_end"] = None
        else:
            start = _clock_time(quiet.get("start"), "quiet_hours.start")
            end = _clock_time(quiet.get("end"), "quiet_hours.end")
            if start == end:
                raise Invalid(
                    "quiet hours start and end at the same time; send null for no quiet hours",
                    field="quiet_hours",
                )
            values["quiet_start"], values["quiet_end"] = start, end
    if "frequency_cap" in changes:
        cap = changes["frequency_cap"]
        if cap is None:
            values["cap_messages"] = values["cap_days"] = None
        else:
            messages, days = cap.get("messages"), cap.get("days")
            if not isinstance(messages, int) or not 1 <= messages <= 1000:
                raise Invalid("frequency_cap.messages is 1 to 1000", field="frequency_cap.messages")
            if not isinstance(days, int) or not 1 <= days <= 365:
                raise Invalid("frequency_cap.days is 1 to 365", field="frequency_cap.days")
            values["cap_messages"], values["cap_days"] = messages, days
    if "cart_url" in changes:
        url = changes["cart_url"]
        if url is not None and (
            not isinstance(url, str) or not url.startswith(("https://", "http://"))
        ):
            raise Invalid("cart_url is an http(s) address", field="cart_url")
        values["cart_url"] = url
    row = await session.get(EngagementSettings, tenant.id)
    if row is None:
        row = EngagementSettings(tenant_id=tenant.id)
        session.add(row)
    for key, value in values.items():
        setattr(row, key, value)
    row.updated_at = now()
    await session.flush()
    return await get_settings(session, tenant)


# --- quiet hours -----------------------------------------------------------------------------


def zone_of(name: Any, fallback: str) -> ZoneInfo:
    """The IANA zone ``name``, else ``fallback``, else UTC."""
    for candidate in (name, fallback):
        if isinstance(candidate, str) and candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def quiet_until(moment: datetime, zone: ZoneInfo, start: str, end: str) -> datetime | None:
    """When the quiet period that ``moment`` falls in ends (UTC), or ``None`` outside one.

    Quiet hours are wall-clock times in ``zone``: 21:00–09:00 crosses midnight, 13:00–15:00
    does not."""
    begin, finish = time.fromisoformat(start), time.fromisoformat(end)
    local = moment.astimezone(zone)
    at = local.time().replace(tzinfo=None)
    if begin < finish:
        inside, day = begin <= at < finish, local.date()
    else:
        inside = at >= begin or at < finish
        day = local.date() if at < finish else local.date() + timedelta(days=1)
    if not inside:
        return None
    return datetime.combine(day, finish, tzinfo=zone).astimezone(UTC)


# --- the result -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendResult:
    """What became of a send (the row ``send_id`` of the sends log says the same)."""

    status: str
    reason: str | None
    channel_kind: str | None
    message_id: str | None
    retry_at: datetime | None
    send_id: str
    detail: str | None = None

    @classmethod
    def of(cls, row: Send) -> SendResult:
        return cls(
            status=row.status,
            reason=row.reason,
            channel_kind=row.channel_kind,
            message_id=row.message_id,
            retry_at=as_utc(row.retry_at) if row.retry_at else None,
            send_id=row.id,
            detail=row.detail,
        )


@dataclass(slots=True)
class _Route:
    """A channel the send could take, or was refused (``reason``)."""

    kind: str
    channel_id: str | None
    template_only: bool = False
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "channel_id": self.channel_id, "reason": self.reason}


@dataclass(slots=True)
class _Outcome:
    status: str
    reason: str | None = None
    detail: str | None = None
    retry_at: datetime | None = None
    route: _Route | None = None
    language: str | None = None
    message_id: str | None = None
    conversation_id: str | None = None
    routes: list[_Route] = field(default_factory=list)


# --- choosing the channel ------------------------------------------------------------------


def _routes(
    options: Sequence[ReplyOption],
    template: MessageTemplate,
    *,
    preferred: Any,
    channel_order: Sequence[str],
) -> list[_Route]:
    """Every channel kind in the order of the rules, each usable or with why not."""
    asked = [k for k in (preferred, *channel_order) if isinstance(k, str) and k]
    by_default = sorted(options, key=lambda o: not o.default)
    order = list(dict.fromkeys([*asked, *(o.kind for o in by_default)]))
    variants = template.variants or {}
    routes: list[_Route] = []
    for kind in order:
        mine = [o for o in by_default if o.kind == kind]
        if not mine:
            routes.append(_Route(kind, None, reason=NO_CHANNEL))
            continue
        refused: list[_Route] = []
        chosen: _Route | None = None
        for option in mine:
            if not option.available and option.reason != WHATSAPP_WINDOW_CLOSED:
                refused.append(_Route(kind, option.channel_id, reason=option.reason))
                continue
            template_only = not option.available
            if (
                templates.pick_language(variants, kind, languages=[], template_only=template_only)
                is None
            ):
                reason = WHATSAPP_WINDOW_CLOSED if template_only else NO_RENDERING
                refused.append(_Route(kind, option.channel_id, reason=reason))
                continue
            chosen = _Route(kind, option.channel_id, template_only=template_only)
            break
        routes.extend([chosen] if chosen else refused)
    return routes


async def _marketing_consents(
    session: AsyncSession, tenant: TenantContext, customer_id: str
) -> set[str]:
    history = await customers.consent_history(session, tenant, customer_id)
    return {
        consent.channel_kind
        for consent in customers.current_consents(history)
        if consent.purpose == "marketing" and consent.granted
    }


async def _queued_recently(
    session: AsyncSession, tenant: TenantContext, customer_id: str, since: datetime
) -> int:
    count = await session.scalar(
        select(func.count(Send.id)).where(
            Send.tenant_id == tenant.id,
            Send.customer_id == customer_id,
            Send.queued_at > since,
            Send.purpose == "marketing",
            Send.status == QUEUED,
        )
    )
    return int(count or 0)


# --- the values of a send ------------------------------------------------------------------


def unsubscribe_url(token: str) -> str:
    return app_settings().base_url.rstrip("/") + UNSUBSCRIBE_PATH + token


async def _values(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    template: MessageTemplate,
    customer_id: str,
    context: Mapping[str, Any],
    settings: SendingSettings,
    token: str,
) -> dict[str, Any]:
    """The caller's ``context`` completed: ``customer`` and ``tenant`` always from the database;
    the open ``cart`` (or ``data.cart_id``'s), ``data.order_id``'s ``order`` and the customer's
    ``recommendations`` when the template reads them and the caller gave none; the send's own
    ``unsubscribe_url``."""
    values: dict[str, Any] = {**context}
    data = values.get("data")
    data = dict(data) if isinstance(data, Mapping) else {}
    values["data"] = data
    values["customer"] = await templates.customer_values(
        session, tenant, customer_id, with_loyalty=templates.uses(template, "customer.loyalty")
    )
    values["tenant"] = {"name": tenant.name}
    if "cart" not in values and templates.uses(template, "cart"):
        cart = None
        if isinstance(data.get("cart_id"), str):
            try:
                cart = await carts.get_cart(session, tenant, data["cart_id"])
            except NotFound:
                cart = None
        if cart is None:
            cart = await carts.active_cart(session, tenant, customer_id)
        if cart is not None:
            url = data.get("cart_url") or (
                settings.cart_url.replace("{cart_id}", cart.id).replace(
                    "{customer_id}", customer_id
                )
                if settings.cart_url
                else ""
            )
            values["cart"] = templates.cart_values(cart, url=str(url))
    if "order" not in values and templates.uses(template, "order"):
        order_id = data.get("order_id")
        if isinstance(order_id, str):
            try:
                order = await orders.get_order(session, tenant, order_id)
            except NotFound:
                order = None
            if order is not None and order.customer_id == customer_id:
                values["order"] = {
                    "number": orders.order_number(order.id),
                    "status": order.status,
                    "total": order.total,
                    "currency": order.currency,
                }
    if "recommendations" not in values:
        values["recommendations"] = (
            await recommend.template_items(session, tenant, customer_id, limit=RECOMMENDED)
            if templates.uses(template, "recommendations")
            else []
        )
    values.setdefault("unsubscribe_url", unsubscribe_url(token))
    return values


# --- sending -----------------------------------------------------------------------------------


def _check_arguments(idempotency_key: str, channel_order: Sequence[str] | None) -> list[str]:
    if not isinstance(idempotency_key, str) or not 1 <= len(idempotency_key) <= MAX_KEY_LENGTH:
        raise Invalid(
            f"idempotency_key has 1 to {MAX_KEY_LENGTH} characters", field="idempotency_key"
        )
    order = list(channel_order or [])
    for n, kind in enumerate(order):
        if kind not in templates.SENDABLE_KINDS:
            raise Invalid(
                f"channel_order.{n}: {kind!r} is not a channel kind a message can go on; use "
                + ", ".join(templates.SENDABLE_KINDS),
                field=f"channel_order.{n}",
            )
    return order


async def _lock(session: AsyncSession, *names: str) -> None:
    """Hold PostgreSQL advisory locks on ``names`` until the transaction ends (SQLite runs one
    write transaction at a time already)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for name in names:
        await session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": name})


async def _by_key(session: AsyncSession, tenant: TenantContext, key: str) -> Send | None:
    statement = tenant_scope(select(Send).where(Send.idempotency_key == key), Send, tenant)
    return (await session.execute(statement)).scalar_one_or_none()


async def send(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    customer_id: str,
    template_id: str,
    context: dict[str, Any],
    channel_order: list[str] | None,
    source: dict[str, Any],
    idempotency_key: str,
    throttled: Collection[str] = (),
) -> SendResult:
    """Send template ``template_id`` to the customer under the sending rules (see the module
    docstring); the outcome is recorded in the sends log whatever it is.

    ``throttled`` names channel kinds that have used up the caller's budget for now (a
    campaign's messages per minute per channel): a send that would go on one of them is
    ``deferred`` (``channel_throttled``) a minute rather than moved to another channel, so the
    customer still gets it where they prefer.

    ``context`` holds the template's values the caller knows (``cart``, ``order``,
    ``recommendations``, ``unsubscribe_url``, ``data``); ``source`` says who asks
    (``{"journey_id", "run_id", "step_id"}``, ``{"campaign_id"}``) and is kept in the log.
    Another tenant's customer or template is ``NotFound``; a key already used for another
    customer or template is ``Conflict``.
    """
    order = _check_arguments(idempotency_key, channel_order)
    await _lock(session, f"send:{tenant.id}:{idempotency_key}")
    existing = await _by_key(session, tenant, idempotency_key)
    moment = now()
    if existing is not None:
        if existing.template_id != template_id or (
            existing.customer_id != customer_id
            and (await customers.live_customer(session, tenant, customer_id)).id
            != existing.customer_id
        ):
            raise Conflict(
                f"idempotency_key {idempotency_key!r} was used for another send ({existing.id})",
                code="idempotency_key_reused",
                details={"field": "idempotency_key"},
            )
        due = existing.status == DEFERRED and (
            existing.retry_at is None or as_utc(existing.retry_at) <= moment
        )
        if not due:
            return SendResult.of(existing)
    template = await templates.get_template(session, tenant, template_id)
    customer = await customers.live_customer(session, tenant, customer_id)
    await _lock(session, f"send:{tenant.id}:customer:{customer.id}")
    send_id = existing.id if existing is not None else new_id()
    token = existing.unsubscribe_token if existing is not None else secrets.token_urlsafe(24)
    outcome = await _decide(
        session,
        tenant,
        template=template,
        customer_id=customer.id,
        preferred=(customer.traits or {}).get("preferred_channel"),
        timezone=(customer.traits or {}).get("timezone"),
        languages=[customer.language, tenant.locale],
        context=context,
        channel_order=order,
        send_id=send_id,
        token=token,
        source=source,
        moment=moment,
        throttled=frozenset(throttled),
    )
    row = existing
    if row is None:
        row = Send(
            id=send_id,
            tenant_id=tenant.id,
            customer_id=customer.id,
            template_id=template.id,
            purpose=template.purpose,
            idempotency_key=idempotency_key,
            source=dict(source),
            history=[],
            attempts=1,
            unsubscribe_token=token,
            created_at=moment,
        )
        session.add(row)
    else:
        row.history = [
            *(row.history or []),
            {
                "status": row.status,
                "reason": row.reason,
                "at": as_utc(row.updated_at).isoformat(),
                "retry_at": as_utc(row.retry_at).isoformat() if row.retry_at else None,
            },
        ]
        row.attempts = (row.attempts or 1) + 1
    _record(row, outcome, moment)
    await session.flush()
    return SendResult.of(row)


def _record(row: Send, outcome: _Outcome, moment: datetime) -> None:
    row.status, row.reason, row.detail = outcome.status, outcome.reason, outcome.detail
    row.retry_at = outcome.retry_at
    row.channel_kind = outcome.route.kind if outcome.route else None
    row.channel_id = outcome.route.channel_id if outcome.route else None
    row.language = outcome.language
    row.message_id, row.conversation_id = outcome.message_id, outcome.conversation_id
    row.queued_at = moment if outcome.status == QUEUED else None
    chosen = outcome.route
    passed = []
    for route in outcome.routes:
        if route is chosen:
            break
        if route.reason is not None:
            passed.append(route.as_dict())
    row.tried = passed
    row.updated_at = moment


async def _decide(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    template: MessageTemplate,
    customer_id: str,
    preferred: Any,
    timezone: Any,
    languages: list[str | None],
    context: Mapping[str, Any],
    channel_order: list[str],
    send_id: str,
    token: str,
    source: Mapping[str, Any],
    moment: datetime,
    throttled: frozenset[str] = frozenset(),
) -> _Outcome:
    marketing = template.purpose == "marketing"
    conversation = await notify.conversation_for_notice(session, tenant, customer_id)
    options = await conversations.reply_options(session, tenant, conversation)
    routes = _routes(options, template, preferred=preferred, channel_order=channel_order)
    if not any(route.reason is None for route in routes):
        return _Outcome(SUPPRESSED, NO_REACHABLE_CHANNEL, _describe(routes), routes=routes)
    if marketing:
        granted = await _marketing_consents(session, tenant, customer_id)
        for route in routes:
            if route.reason is None and route.kind not in granted:
                route.reason = f"{NO_CONSENT}:{route.kind}"
        if not any(route.reason is None for route in routes):
            return _Outcome(SUPPRESSED, NO_CONSENT, _describe(routes), routes=routes)
    settings = await get_settings(session, tenant)
    if marketing and settings.quiet_start and settings.quiet_end:
        zone = zone_of(timezone, tenant.timezone)
        until = quiet_until(moment, zone, settings.quiet_start, settings.quiet_end)
        if until is not None:
            return _Outcome(
                DEFERRED,
                QUIET_HOURS,
                f"quiet hours {settings.quiet_start}–{settings.quiet_end} in {zone.key}",
                retry_at=until,
                routes=routes,
            )
    if marketing and settings.cap_messages is not None and settings.cap_days is not None:
        since = moment - timedelta(days=settings.cap_days)
        sent = await _queued_recently(session, tenant, customer_id, since)
        if sent >= settings.cap_messages:
            return _Outcome(
                SUPPRESSED,
                FREQUENCY_CAP,
                f"{sent} marketing messages in the last {settings.cap_days} days "
                f"(the cap is {settings.cap_messages})",
                routes=routes,
            )
    values = await _values(
        session,
        tenant,
        template=template,
        customer_id=customer_id,
        context=context,
        settings=settings,
        token=token,
    )
    failures: list[str] = []
    for route in routes:
        if route.reason is not None or route.channel_id is None:
            continue
        if route.kind in throttled:
            return _Outcome(
                DEFERRED,
                CHANNEL_THROTTLED,
                f"{route.kind} has sent its share for this minute",
                retry_at=moment + THROTTLE_PAUSE,
                routes=routes,
            )
        try:
            rendered = templates.render_template(
                template,
                channel_kind=route.kind,
                languages=languages,
                values=values,
                template_only=route.template_only,
            )
        except Invalid as error:
            route.reason = f"{RENDER_FAILED}:{route.kind}"
            failures.append(f"{route.kind}: {error.message}")
            continue
        notified = await notify.queue_notice(
            session,
            tenant,
            conversation=conversation,
            channel_id=route.channel_id,
            channel_kind=route.kind,
            text=rendered.text,
            template=rendered.whatsapp_template,
            data=_message_data(
                rendered, unsubscribe=values.get("unsubscribe_url") if marketing else None
            ),
            about={"send_id": send_id, "template_id": template.id, "source": dict(source)},
        )
        return _Outcome(
            QUEUED,
            route=route,
            language=rendered.language,
            message_id=notified.message_id,
            conversation_id=notified.conversation_id,
            routes=routes,
        )
    return _Outcome(SUPPRESSED, RENDER_FAILED, "; ".join(failures), routes=routes)


def _message_data(
    rendered: templates.Rendered, *, unsubscribe: Any = None
) -> dict[str, Any] | None:
    """What the email adapter needs beyond the text: the subject, the HTML alternative and,
    for marketing, the ``List-Unsubscribe`` link (RFC 2369) mail clients show as a button."""
    if rendered.channel_kind != "email":
        return None
    data: dict[str, Any] = {}
    if rendered.subject:
        data["subject"] = rendered.subject
    if rendered.html:
        data["html"] = rendered.html
    if isinstance(unsubscribe, str) and unsubscribe:
        data["list_unsubscribe"] = unsubscribe
    return data or None


def _describe(routes: Sequence[_Route]) -> str:
    return (
        "; ".join(f"{route.kind}: {route.reason}" for route in routes if route.reason is not None)
        or "the tenant has no channel a message can go on"
    )


# --- reading the log -----------------------------------------------------------------------


async def list_sends(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    customer_id: str | None = None,
    status: str | None = None,
    template_id: str | None = None,
    before: str | None = None,
    limit: int = 50,
) -> list[Send]:
    """The sends log, newest first (``before``: a send id, for the next page)."""
    if status is not None and status not in STATUSES:
        raise Invalid(f"status is one of {', '.join(STATUSES)}", field="status")
    statement = tenant_scope(select(Send), Send, tenant)
    if customer_id is not None:
        customer = await customers.live_customer(session, tenant, customer_id)
        statement = statement.where(Send.customer_id == customer.id)
    if status is not None:
        statement = statement.where(Send.status == status)
    if template_id is not None:
        statement = statement.where(Send.template_id == template_id)
    if before is not None:
        statement = statement.where(Send.id < before)
    statement = statement.order_by(Send.id.desc()).limit(limit)
    return list((await session.execute(statement)).scalars().all())


# --- unsubscribing -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Unsubscribed:
    channel_kind: str
    language: str
    already: bool


async def unsubscribe(session: AsyncSession, token: str, *, confirm: bool) -> Unsubscribed:
    """The customer followed ``unsubscribe_url``. With ``confirm`` (they pressed the button, or
    their mail client posted RFC 8058's one-click request), record their refusal of marketing on
    the channel kind the message went by — once: confirming again records nothing. Without it,
    only say what the link is for: mail scanners open links, and must not unsubscribe anyone."""
    row = (
        await session.execute(select(Send).where(Send.unsubscribe_token == token))
    ).scalar_one_or_none()
    if row is None or row.channel_kind is None:
        raise NotFound("this unsubscribe link is not valid")
    tenant = await load_tenant(session, row.tenant_id)
    customer = await customers.live_customer(session, tenant, row.customer_id)
    history = await customers.consent_history(session, tenant, customer.id)
    latest = next(
        (
            c
            for c in customers.current_consents(history)
            if c.purpose == "marketing" and c.channel_kind == row.channel_kind
        ),
        None,
    )
    already = latest is not None and not latest.granted
    if confirm and not already:
        await customers.record_consent(
            session,
            tenant,
            customer_id=customer.id,
            purpose="marketing",
            channel_kind=row.channel_kind,
            granted=False,
            source="unsubscribe_link",
        )
    return Unsubscribed(
        channel_kind=row.channel_kind,
        language=row.language or customer.language or tenant.locale,
        already=already,
    )


# --- merges -----------------------------------------------------------------------------------


customers.register_merge_participant(customers.OwnedRowsParticipant("sends", Send))
