"""Journeys that ship ready to use. The abandoned cart: the commonest journey of a shop, and the
one the issue names.

When the carts domain says a cart was abandoned (the tenant's idle time, ``cart.abandoned``):

1. if the cart is still open, remind the customer on their preferred channel (WhatsApp, then
   email, then SMS as fallbacks), with the cart's lines;
2. wait a day;
3. if it is still open, remind them once more, with recommendations;
4. end.

The journey exits as soon as the customer buys, in any channel (``order.placed``: the web, the
app, the call center or a store's till), so nobody is reminded of what they already bought.
The reminder's renderings use only variables the templates accept (``customer``, ``cart``,
``recommendations``, ``unsubscribe_url``), in Spanish and English.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hilos.core.tenancy import TenantContext
from hilos.engagement import journeys
from hilos.engagement.journey_models import Journey

REMINDER_TEMPLATE = "recordatorio-carrito"
SECOND_REMINDER_TEMPLATE = "recordatorio-carrito-2"
DAY = 86_400

_TEXT_ES = (
    "Hola {{ customer.first_name or '' }}, te has dejado {{ cart.lines | length }} "
    "artículo(s) en el carrito ({{ cart.total }}). ¿Lo terminamos? {{ cart.url }}"
)
_TEXT_EN = (
    "Hi {{ customer.first_name or '' }}, you left {{ cart.lines | length }} item(s) in your "
    "cart ({{ cart.total }}). Shall we finish it? {{ cart.url }}"
)
_SECOND_ES = (
    "{{ customer.first_name or 'Hola' }}, tu carrito te sigue esperando. Quizá también te "
    "guste: {% for item in recommendations[:3] %}{{ item.name }}{% if not loop.last %}, "
    "{% endif %}{% endfor %}. {{ cart.url }}"
)
_SECOND_EN = (
    "{{ customer.first_name or 'Hi' }}, your cart is still waiting. You may also like: "
    "{% for item in recommendations[:3] %}{{ item.name }}{% if not loop.last %}, {% endif %}"
    "{% endfor %}. {{ cart.url }}"
)


def _variants(text_es: str, text_en: str, subject_es: str, subject_en: str) -> dict[str, Any]:
    def one(text: str, subject: str, language: str) -> dict[str, Any]:
        return {
            "text": text,
            "sms": {"text": text},
            "email": {
                "subject": subject,
                "text": text + "\n\n{{ unsubscribe_url }}",
                "html": f'<p>{text}</p><p><a href="{{{{ unsubscribe_url }}}}">'
                + ("Darse de baja" if language == "es" else "Unsubscribe")
                + "</a></p>",
            },
            "whatsapp": {
                "template_name": "carrito_abandonado",
                "language": "es_ES" if language == "es" else "en_GB",
                # The approved template reads {{1}} the name, {{2}} the cart's total. WhatsApp
                # refuses an empty parameter: a customer without a name is greeted all the
                # same, and the total is always there (the cart's link may not be configured).
                "parameters": [
                    "{{ customer.first_name or '%s' }}"
                    % ("cliente" if language == "es" else "there"),
                    "{{ cart.total }}",
                ],
            },
        }

    return {"es": one(text_es, subject_es, "es"), "en": one(text_en, subject_en, "en")}


async def _template_id(
    session: AsyncSession, tenant: TenantContext, name: str, variants: dict[str, Any]
) -> str:
    from hilos.engagement import templates

    existing = await templates.find_template(session, tenant, name)
    if existing is not None:
        return str(existing.id)
    created = await templates.create_template(
        session, tenant, name=name, purpose="marketing", variants=variants
    )
    return str(created.id)


async def abandoned_cart(
    session: AsyncSession, tenant: TenantContext, *, name: str, activate: bool
) -> Journey:
    """The abandoned-cart journey and its templates; asking again returns the same journey."""
    existing = (
        await session.scalars(
            select(Journey).where(Journey.tenant_id == tenant.id, Journey.name == name)
        )
    ).one_or_none()
    if existing is not None:
        return existing
    first = await _template_id(
        session,
        tenant,
        REMINDER_TEMPLATE,
        _variants(_TEXT_ES, _TEXT_EN, "Tu carrito te espera", "Your cart is waiting"),
    )
    second = await _template_id(
        session,
        tenant,
        SECOND_REMINDER_TEMPLATE,
        _variants(_SECOND_ES, _SECOND_EN, "¿Te lo vas a perder?", "Still thinking about it?"),
    )
    fallbacks = ["whatsapp", "email", "sms"]
    journey = await journeys.create_journey(
        session,
        tenant,
        name=name,
        trigger={"event": "cart.abandoned"},
        definition={
            "start": "still-open",
            "steps": [
                {
                    "id": "still-open",
                    "type": "condition",
                    "if": {"cart_open": True},
                    "then": "remind",
                    "else": None,
                },
                {
                    "id": "remind",
                    "type": "send",
                    "template_id": first,
                    "channel_order": fallbacks,
                    "next": "a-day",
                },
                {"id": "a-day", "type": "wait", "seconds": DAY, "next": "still-open-later"},
                {
                    "id": "still-open-later",
                    "type": "condition",
                    "if": {"cart_open": True},
                    "then": "remind-again",
                    "else": None,
                },
                {
                    "id": "remind-again",
                    "type": "send",
                    "template_id": second,
                    "channel_order": fallbacks,
                    "next": None,
                },
            ],
        },  # fmt: skip
        exit_on=["order.placed"],
        reentry="after_exit",
    )
    if activate:
        journey.status = "active"
    return journey
