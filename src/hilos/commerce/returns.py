"""Returns: any order, from any channel, handed in at any store or sent by post to any location.

A return takes back units that were handed over (shipped, collected, sold at the counter), never
more than were bought: each order line counts its returned units with a conditional update, so
two returns racing for the last unit cannot both take it. Resellable units go back on the shelf
of the location that received them (a ``return`` row in that location's stock ledger), whatever
location sold them; the others are recorded and not restocked.

The refund is what the customer paid for those units: their price less their share of the
order's loyalty discount. The loyalty points the order earned are taken back in proportion
(``loyalty.reverse_for_return``). An exchange is a refund plus a new order for the replacement
units, placed at the receiving store (sold at the counter) or shipped for a return by post;
``exchange_order_id`` links it, and the refund pays for it.

A return with an ``idempotency_key`` that was seen before answers the first return and changes
nothing; the same key with another body is ``idempotency_key_reused``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hilos.commerce import catalog, orders, stock
from hilos.commerce.order_models import Order, Return, ReturnLine
from hilos.conversations.notify import notify_customer
from hilos.core.clock import now
from hilos.core.errors import Conflict, Invalid
from hilos.core.ids import new_id
from hilos.core.outbox import emit
from hilos.core.tenancy import TenantContext, get_owned
from hilos.customers import service as customers
from hilos.web.i18n import translations

METHODS = ("store", "post")
RESOLUTIONS = ("refund", "exchange")


@dataclass(frozen=True, slots=True)
class ReturnLineRequest:
    sku: str
    quantity: int
    resellable: bool = True


@dataclass(frozen=True, slots=True)
class Returned:
    ret: Return
    created: bool


async def _by_key(session: AsyncSession, tenant: TenantContext, key: str) -> Return | None:
    return (
        await session.execute(
            select(Return).where(Return.tenant_id == tenant.id, Return.idempotency_key == key)
        )
    ).scalar_one_or_none()


def _replay(found: Return, digest: str) -> Returned:
    if found.request_digest != digest:
        raise Conflict(
            f"idempotency_key {found.idempotency_key!r} was used for another return ({found.id})",
            code="idempotency_key_reused",
        )
    return Returned(found, created=False)


async def create_return(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    order_id: str,
    lines: list[ReturnLineRequest],
    location: str,
    method: str | None = None,
    resolution: str = "refund",
    exchange_lines: list[orders.LineRequest] | None = None,
    reason: str | None = None,
    idempotency_key: str | None = None,
    by_user_id: str | None = None,
) -> Returned:
    if not lines:
        raise Invalid("a return needs at least one line", field="lines")
    if resolution not in RESOLUTIONS:
        raise Invalid(f"resolution must be one of {', '.join(RESOLUTIONS)}", field="resolution")
    if resolution == "exchange" and not exchange_lines:
        raise Invalid("an exchange needs exchange_lines", field="exchange_lines")
    digest = hashlib.sha256(
        json.dumps(
            {
                "order_id": order_id,
                "lines": [[line.sku, line.quantity, line.resellable] for line in lines],
                "location": location,
                "method": method,
                "resolution": resolution,
                "exchange": [
                    [line.sku, line.quantity, line.fulfilment, line.location]
                    for line in exchange_lines or []
                ],
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()
    key = idempotency_key or f"return:{new_id()}"
    if idempotency_key is not None:
        existing = await _by_key(session, tenant, key)
        if existing is not None:
            return _replay(existing, digest)
    order = await orders.get_order(session, tenant, order_id)
    receiving = await catalog.location_by_code(session, tenant, location)
    method = method or ("store" if receiving.kind == "store" else "post")
    if method not in METHODS:
        raise Invalid(f"method must be one of {', '.join(METHODS)}", field="method")
    if method == "store" and receiving.kind != "store":
        raise Invalid(f"{location} is not a store", field="location", code="not_a_store")

    handed_over = await orders.returnable(session, tenant, order.id)
    every_line = {line.sku for line in await orders.lines_of(session, tenant, order.id)}
    moment = now()
    ret = Return(
        id=new_id(),
        tenant_id=tenant.id,
        order_id=order.id,
        customer_id=order.customer_id,
        location_id=receiving.id,
        location=receiving.code,
        method=method,
        resolution=resolution,
        currency=order.currency,
        refund_amount=0,
        loyalty_points_reversed=0,
        idempotency_key=key,
        request_digest=digest,
        reason=reason,
        created_at=moment,
    )
    try:
        async with session.begin_nested():
            session.add(ret)
            await session.flush()
    except IntegrityError:
        first = await _by_key(session, tenant, key)
        if first is None:
            raise
        return _replay(first, digest)

    refund_total = 0
    for index, request in enumerate(lines):
        field = f"lines[{index}]"
        if request.quantity <= 0:
            raise Invalid("quantity must be a positive whole number", field=f"{field}.quantity")
        if request.sku not in every_line:
            raise Invalid(
                f"{request.sku} is not in order {order.id}",
                field=f"{field}.sku",
                code="not_in_order",
            )
        candidates = handed_over.get(request.sku, [])
        if not candidates:
            raise Conflict(
                f"{request.sku} of order {order.id} has not been handed over yet: cancel the "
                "order instead",
                code="not_handed_over",
            )
        wanted = request.quantity
        left = sum(line.quantity - line.returned_quantity for line in candidates)
        if wanted > left:
            raise Invalid(
                f"only {left} of {request.sku} can still be returned, not {wanted}",
                field=f"{field}.quantity",
                code="return_exceeds_order",
            )
        for line in candidates:
            take = min(line.quantity - line.returned_quantity, wanted)
            if take <= 0:
                continue
            if not await orders.mark_returned(session, line, take):
                raise Conflict(
                    f"another return of {request.sku} was recorded meanwhile; try again",
                    code="return_conflict",
                )
            # Not ``line.returned_quantity += take``: the ORM would write back a value computed
            # from what this request read, over a concurrent return's increment.
            wanted -= take
            paid = line.unit_price * take
            share = order.discount * paid // order.subtotal if order.subtotal else 0
            refund = paid - share
            refund_total += refund
            session.add(
                ReturnLine(
                    id=new_id(),
                    tenant_id=tenant.id,
                    return_id=ret.id,
                    order_line_id=line.id,
                    sku=request.sku,
                    quantity=take,
                    refund_amount=refund,
                    resellable=request.resellable,
                    restocked=request.resellable,
                )
            )
            if request.resellable:
                await stock.record_movement(
                    session,
                    tenant,
                    sku=request.sku,
                    location=receiving.code,
                    quantity=take,
                    reason="return",
                    idempotency_key=f"return:{ret.id}:{line.id}",
                )
            if wanted == 0:
                break

    ret.refund_amount = refund_total
    from hilos.commerce import loyalty

    ret.loyalty_points_reversed = await loyalty.reverse_for_return(
        session,
        tenant,
        customer_id=order.customer_id,
        reference=f"order:{order.id}",
        returned_amount=refund_total,
        order_amount=order.total,
        idempotency_key=f"return:{ret.id}:loyalty",
    )
    if resolution == "exchange":
        assert exchange_lines is not None
        replacement = await orders.place_order(
            session,
            tenant,
            channel=receiving.code if method == "store" else order.channel,
            lines=exchange_lines,
            idempotency_key=f"return:{ret.id}:exchange",
            customer_id=order.customer_id,
            currency=order.currency,
            by_user_id=by_user_id,
        )
        ret.exchange_order_id = replacement.order.id
    await session.flush()
    await _announce(session, tenant, order, ret)
    return Returned(ret, created=True)


async def _announce(session: AsyncSession, tenant: TenantContext, order: Any, ret: Return) -> None:
    payload = {
        "return_id": ret.id,
        "order_id": order.id,
        "customer_id": ret.customer_id,
        "location": ret.location,
        "method": ret.method,
        "resolution": ret.resolution,
        "refund_amount": ret.refund_amount,
        "currency": ret.currency,
        "loyalty_points_reversed": ret.loyalty_points_reversed,
        "lines": [
            {"sku": line.sku, "quantity": line.quantity, "restocked": line.restocked}
            for line in await lines_of(session, tenant, ret.id)
        ],
    }
    await emit(session, tenant_id=tenant.id, topic="return.created", payload=payload)
    notification: dict[str, Any] | None = None
    if (await orders.get_settings(session, tenant)).notify_customer:
        language = await orders.customer_language(session, tenant, ret.customer_id)
        text = translations(language).gettext(
            "We have received your return for order %(number)s. Refund: %(amount)s."
        ) % {
            "number": orders.order_number(order.id),
            "amount": orders.money(ret.refund_amount, ret.currency, language),
        }
        notified = await notify_customer(
            session,
            tenant,
            customer_id=ret.customer_id,
            text=text,
            about={"order_id": order.id, "return_id": ret.id},
        )
        notification = notified.as_dict()
    await customers.add_timeline_event(
        session,
        tenant,
        customer_id=ret.customer_id,
        type="return",
        name=ret.resolution,
        properties={**payload, "notified_on": (notification or {}).get("channel_kind")},
        context={},
        occurred_at=ret.created_at,
        source_message_id=None,
    )


async def get_return(session: AsyncSession, tenant: TenantContext, return_id: str) -> Return:
    return await get_owned(session, Return, return_id, tenant, what="return")


async def lines_of(
    session: AsyncSession, tenant: TenantContext, return_id: str
) -> list[ReturnLine]:
    rows = await session.scalars(
        select(ReturnLine)
        .where(ReturnLine.tenant_id == tenant.id, ReturnLine.return_id == return_id)
        .order_by(ReturnLine.id)
    )
    return list(rows.all())


async def returns_of_order(
    session: AsyncSession, tenant: TenantContext, order_id: str
) -> list[Return]:
    rows = await session.scalars(
        select(Return)
        .where(Return.tenant_id == tenant.id, Return.order_id == order_id)
        .order_by(Return.id)
    )
    return list(rows.all())


customers.register_merge_participant(customers.OwnedRowsParticipant("orders", Order, Return))
