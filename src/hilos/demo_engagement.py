"""The demo shop's engagement: a knowledge base the virtual assistant answers from (Spanish and
English), the assistant switched on for web chat, two segments, and the abandoned-cart journey
with its templates, left as a draft: the demo's channels have no provider credentials, so an
active journey would only queue messages that cannot leave.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from hilos.core.tenancy import TenantContext
from hilos.engagement import assistant, journey_examples, knowledge, segments

# (title, body, language, tags)
ARTICLES = (
    (
        "Devoluciones",
        "Tienes 30 días para devolver tu compra en cualquier tienda o por correo, con el ticket "
        "o el número de pedido. El reembolso llega en 5 a 7 días al mismo medio de pago.",
        "es",
        ["devoluciones"],
    ),
    (
        "Envíos y plazos",
        "Los pedidos a la península llegan en 24 a 48 horas laborables. El envío es gratis a "
        "partir de 50 €; si no, cuesta 4,95 €. Puedes recoger gratis en tienda.",
        "es",
        ["envios"],
    ),
    (
        "Cambios de talla",
        "Puedes cambiar la talla en cualquier tienda sin coste en los 30 días siguientes a la "
        "compra, o pedir el cambio por la web y te enviamos la nueva talla.",
        "es",
        ["cambios"],
    ),
    (
        "Returns",
        "You have 30 days to return your purchase in any store or by post, with the receipt "
        "or the order number. The refund reaches the same payment method in 5 to 7 days.",
        "en",
        ["returns"],
    ),
    (
        "Shipping",
        "Orders to mainland Spain arrive in 24 to 48 working hours. Shipping is free over "
        "50 €, otherwise 4.95 €. You can collect in store for free.",
        "en",
        ["shipping"],
    ),
)


async def build_engagement(session: AsyncSession, tenant: TenantContext) -> None:
    for title, body, language, tags in ARTICLES:
        await knowledge.create_article(
            session, tenant, title=title, body=body, language=language, tags=tags
        )
    await assistant.set_settings(
        session, tenant, enabled=True, channel_kinds=["web_chat"], confidence_threshold=0.5
    )
    await segments.create_segment(
        session,
        tenant,
        name="Clientes oro",
        description="Nivel oro del programa de fidelización",
        rule={"loyalty_tier": "oro"},
    )
    await segments.create_segment(
        session,
        tenant,
        name="Compran en tienda",
        description="Al menos un pedido en una tienda en los últimos 90 días",
        rule={"orders": {"count_gte": 1, "within_days": 90, "channel": "store"}},
    )
    await journey_examples.abandoned_cart(
        session, tenant, name="Carrito abandonado", activate=False
    )
