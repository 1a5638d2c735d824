"""Message templates: one message rendered per channel and language, checked when saved (unknown
variables and syntax errors are 422s naming the rendering), run in a sandbox, SMS segments
counted the way phones count them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.engagement import templates
from tests.conftest import TenantHandle, identify


def variants(**overrides: Any) -> dict[str, Any]:
    """A marketing message in Spanish and English with every rendering."""
    spanish = {
        "email": {
            "subject": "{{ customer.first_name }}, tu carrito te espera",
            "text": "Hola {{ customer.first_name }}: te esperan {{ cart.lines | length }} "
            "artículos ({{ cart.total }}). {{ cart.url }}",
            "html": "<p>Hola {{ customer.first_name }}</p><p>{{ cart.total }}</p>"
            '<a href="{{ unsubscribe_url }}">Darse de baja</a>',
        },
        "whatsapp": {
            "template_name": "carrito_abandonado",
            "language": "es_ES",
            "parameters": ["customer.first_name", "{{ cart.total }}"],
        },
        "sms": {"text": "{{ tenant.name }}: tu carrito te espera {{ cart.url }}"},
        "text": "¡Hola {{ customer.first_name }}! Tu carrito te espera: {{ cart.url }}",
    }
    english = {
        "email": {
            "subject": "{{ customer.first_name }}, your cart is waiting",
            "text": "Hi {{ customer.first_name }}, {{ cart.lines | length }} items wait for you "
            "({{ cart.total }}). {{ cart.url }}",
        },
        "whatsapp": {
            "template_name": "abandoned_cart",
            "language": "en_GB",
            "parameters": ["customer.first_name", "{{ cart.total }}"],
        },
        "text": "Hi {{ customer.first_name }}! Your cart is waiting: {{ cart.url }}",
    }
    return {"es": spanish, "en": english, **overrides}


async def create(client: httpx.AsyncClient, tenant: TenantHandle, **body: Any) -> httpx.Response:
    payload = {"name": "carrito", "purpose": "marketing", "variants": variants(), **body}
    return await client.post("/v1/templates", json=payload, headers=tenant.headers)


async def listed(client: httpx.AsyncClient, tenant: TenantHandle) -> list[Any]:
    response = await client.get("/v1/templates", headers=tenant.headers)
    assert response.status_code == 200, response.text
    items: list[Any] = response.json()
    return items


async def preview(
    client: httpx.AsyncClient, tenant: TenantHandle, template_id: str, **body: Any
) -> dict[str, Any]:
    response = await client.post(
        f"/v1/templates/{template_id}/preview", json=body, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_a_template_is_saved_with_its_variables_and_read_back(
    client: httpx.AsyncClient, tenant: TenantHandle, make_tenant: Any
) -> None:
    created = await create(client, tenant)
    assert created.status_code == 201, created.text
    template = created.json()
    assert template["purpose"] == "marketing"
    assert set(template["variants"]) == {"es", "en"}
    assert {"customer.first_name", "cart.total", "cart.url", "unsubscribe_url"} <= set(
        template["variables"]
    )
    fetched = await client.get(f"/v1/templates/{template['id']}", headers=tenant.headers)
    assert fetched.json()["variants"] == template["variants"]
    assert [t["name"] for t in await listed(client, tenant)] == ["carrito"]

    other = await make_tenant("Otra tienda")
    assert (
        await client.get(f"/v1/templates/{template['id']}", headers=other.headers)
    ).status_code == 404
    assert (
        await client.post(
            f"/v1/templates/{template['id']}/preview",
            json={"channel_kind": "sms"},
            headers=other.headers,
        )
    ).status_code == 404
    assert await listed(client, other) == []


@pytest.mark.parametrize(
    ("rendering", "field", "variable"),
    [
        ({"text": "Hola {{ customer.nmae }}"}, "variants.es.text", "customer.nmae"),
        ({"text": "Usa el cupón {{ cupon }}"}, "variants.es.text", "cupon"),
        (
            {"email": {"subject": "{{ order.numero }}", "text": "Hola"}},
            "variants.es.email.subject",
            "order.numero",
        ),
        (
            {"sms": {"text": "{% for line in cart.lines %}{{ line.prize }}{% endfor %}"}},
            "variants.es.sms.text",
            "line.prize",
        ),
        (
            {"text": "{% for item in recommendations %}{{ item.title }}{% endfor %}"},
            "variants.es.text",
            "item.title",
        ),
        (
            {
                "whatsapp": {
                    "template_name": "pedido",
                    "language": "es",
                    "parameters": ["order.number", "customer.loyalty.points"],
                }
            },
            "variants.es.whatsapp.parameters.1",
            "customer.loyalty.points",
        ),
    ],
)
async def test_an_unknown_variable_is_refused_at_save_naming_the_rendering(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    rendering: dict[str, Any],
    field: str,
    variable: str,
) -> None:
    response = await create(client, tenant, variants={"es": rendering})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "unknown_variable"
    assert error["field"] == field
    assert variable in error["message"]
    assert field in error["message"]
    assert await listed(client, tenant) == []


@pytest.mark.parametrize(
    "text",
    ["Hola {{ customer.first_name ", "{% if cart %}sin cerrar", "{{ customer.name | mayusculas }}"],
)
async def test_a_syntax_error_is_refused_at_save(
    client: httpx.AsyncClient, tenant: TenantHandle, text: str
) -> None:
    response = await create(client, tenant, variants={"es": {"text": text}})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "template_syntax"
    assert error["field"] == "variants.es.text"
    assert await listed(client, tenant) == []


async def test_free_variables_and_filters_are_accepted(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    text = (
        "{{ customer.name | upper }} {{ customer.traits.talla }} {{ data.cupon }} "
        "{% for line in cart.lines %}{{ line.name }} x{{ line.quantity }}{% endfor %} "
        "{{ recommendations[0].name if recommendations else '' }} {{ order.total.amount }}"
    )
    response = await create(client, tenant, variants={"es": {"text": text}})
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    "text", ["{{ customer.__class__ }}", "{{ data.x.__class__.__mro__ }}", "{{ tenant._sa }}"]
)
async def test_python_internals_are_refused_at_save(
    client: httpx.AsyncClient, tenant: TenantHandle, text: str
) -> None:
    response = await create(client, tenant, variants={"es": {"text": text}})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "unsafe_variable"
    assert await listed(client, tenant) == []


async def test_the_sandbox_blocks_internals_and_changes_when_rendering(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    # Neither reads an attribute by name, so only the sandbox can stop them.
    for n, text in enumerate(["{{ data | attr('__class__') }}", "{{ data.update({'a': 1}) }}"]):
        created = await create(client, tenant, name=f"trampa-{n}", variants={"es": {"text": text}})
        assert created.status_code == 201, created.text
        response = await client.post(
            f"/v1/templates/{created.json()['id']}/preview",
            json={"channel_kind": "telegram", "data": {"a": 0}},
            headers=tenant.headers,
        )
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "unsafe_template"
    with pytest.raises(templates.Invalid):
        templates.render_source("{{ data.__class__.__mro__ }}", {"data": {}})


def test_sms_segments_follow_gsm_7_and_ucs_2() -> None:
    one = templates.sms_info("a" * 160)
    assert (one.encoding, one.length, one.segments) == ("GSM-7", 160, 1)
    assert templates.sms_info("a" * 161).segments == 2
    assert templates.sms_info("a" * 306).segments == 2
    assert templates.sms_info("a" * 307).segments == 3
    # An extension character (€, {, [) costs two septets and is never split between parts:
    # 306 septets would fit two parts, but the € cannot straddle them.
    euro = templates.sms_info("€" * 80)
    assert (euro.encoding, euro.characters, euro.length, euro.segments) == ("GSM-7", 80, 160, 1)
    assert templates.sms_info("a" * 152 + "€" + "a" * 10).segments == 2
    assert templates.sms_info("a" * 152 + "€" + "a" * 152).segments == 3
    # One emoji makes it UCS-2: 70 units in one message, 67 per part; an emoji is two units.
    emoji = templates.sms_info("Hola 👋")
    assert (emoji.encoding, emoji.characters, emoji.length, emoji.segments) == (
        "UCS-2",
        6,
        7,
        1,
    )
    assert templates.sms_info("😀" * 35).segments == 1
    assert templates.sms_info("😀" * 36).segments == 2
    assert templates.sms_info("a" * 66 + "😀" + "a" * 5).segments == 2
    assert templates.sms_info("a" * 66 + "😀" + "a" * 66).segments == 3  # 134 units, 3 parts
    # Spanish accents other than é are outside GSM-7.
    assert templates.sms_info("¿Dónde está?").encoding == "UCS-2"
    assert templates.sms_info("Qué señor").encoding == "GSM-7"


async def test_the_answer_shows_sms_length_and_segments_per_language(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    body = {
        "es": {"sms": {"text": "Oferta: " + "a" * 160}},
        "en": {"text": "Sale today 🎉"},
    }
    response = await create(client, tenant, variants=body)
    assert response.status_code == 201, response.text
    sms = response.json()["sms"]
    assert sms["es"]["encoding"] == "GSM-7"
    assert (sms["es"]["length"], sms["es"]["segments"]) == (168, 2)
    assert sms["en"]["encoding"] == "UCS-2"
    assert (sms["en"]["characters"], sms["en"]["length"], sms["en"]["segments"]) == (12, 13, 1)


async def test_each_channel_gets_its_rendering_in_spanish_and_english(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    template_id = (await create(client, tenant)).json()["id"]

    whatsapp = await preview(client, tenant, template_id, channel_kind="whatsapp", language="es")
    assert whatsapp["whatsapp_template"] == {
        "name": "carrito_abandonado",
        "language": "es_ES",
        "parameters": ["Lucía", "77,97\xa0€"],
    }
    english = await preview(client, tenant, template_id, channel_kind="whatsapp", language="en")
    assert english["whatsapp_template"]["name"] == "abandoned_cart"
    assert english["whatsapp_template"]["parameters"] == ["Lucía", "€77.97"]

    email = await preview(client, tenant, template_id, channel_kind="email", language="es")
    assert email["subject"] == "Lucía, tu carrito te espera"
    assert email["text"].startswith("Hola Lucía: te esperan 2 artículos (77,97")
    assert email["html"].startswith("<p>Hola Lucía</p>")
    english_email = await preview(client, tenant, template_id, channel_kind="email", language="en")
    assert english_email["subject"] == "Lucía, your cart is waiting"
    assert english_email["html"] is None

    sms = await preview(client, tenant, template_id, channel_kind="sms", language="es")
    assert sms["text"] == "Tienda de prueba: tu carrito te espera https://tienda.example/carrito"
    assert sms["sms"] == {
        "encoding": "GSM-7",
        "characters": len(sms["text"]),
        "length": len(sms["text"]),
        "segments": 1,
    }
    # English has no SMS rendering: its text goes by SMS.
    english_sms = await preview(client, tenant, template_id, channel_kind="sms", language="en")
    assert english_sms["text"].startswith("Hi Lucía! Your cart is waiting")
    assert english_sms["sms"]["encoding"] == "UCS-2"

    telegram = await preview(client, tenant, template_id, channel_kind="telegram", language="en")
    assert telegram["text"].startswith("Hi Lucía!")
    assert telegram["subject"] is None
    assert telegram["whatsapp_template"] is None


async def test_the_language_falls_back_to_the_primary_tag_then_the_tenants(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    template_id = (await create(client, tenant)).json()["id"]
    british = await preview(client, tenant, template_id, channel_kind="telegram", language="en-GB")
    assert british["language"] == "en"
    french = await preview(client, tenant, template_id, channel_kind="telegram", language="fr")
    assert french["language"] == "es"  # the tenant's locale
    only_english = await create(
        client, tenant, name="solo-ingles", variants={"en": {"text": "Hello {{ tenant.name }}"}}
    )
    anyone = await preview(
        client, tenant, only_english.json()["id"], channel_kind="web_chat", language="es"
    )
    assert (anyone["language"], anyone["text"]) == ("en", "Hello Tienda de prueba")


async def test_html_is_escaped_only_in_the_email_html(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    template_id = (await create(client, tenant)).json()["id"]
    customer = await identify(client, tenant, ("email", "ana@example.es"), name="Ana <b>Gómez</b>")
    email = await preview(
        client,
        tenant,
        template_id,
        channel_kind="email",
        language="es",
        customer_id=customer["customer_id"],
    )
    assert email["html"].startswith("<p>Hola Ana</p>")
    named = await create(
        client,
        tenant,
        name="nombre",
        variants={
            "es": {
                "email": {
                    "subject": "{{ customer.name }}",
                    "text": "{{ customer.name }}",
                    "html": "<p>{{ customer.name }}</p>",
                }
            }
        },
    )
    rendered = await preview(
        client,
        tenant,
        named.json()["id"],
        channel_kind="email",
        customer_id=customer["customer_id"],
    )
    assert rendered["html"] == "<p>Ana &lt;b&gt;Gómez&lt;/b&gt;</p>"
    assert rendered["text"] == "Ana <b>Gómez</b>"


async def test_a_preview_with_a_real_customer_says_what_a_send_would_miss(
    client: httpx.AsyncClient, tenant: TenantHandle, make_tenant: Any
) -> None:
    created = await create(
        client,
        tenant,
        name="talla",
        variants={
            "es": {"text": "{{ customer.first_name }}, tu talla {{ customer.traits.talla }}"}
        },
    )
    template_id = created.json()["id"]
    with_size = await identify(
        client, tenant, ("email", "marta@example.es"), name="Marta Ruiz", traits={"talla": "M"}
    )
    shown = await preview(
        client, tenant, template_id, channel_kind="telegram", customer_id=with_size["customer_id"]
    )
    assert (shown["text"], shown["problem"]) == ("Marta, tu talla M", None)

    without = await identify(client, tenant, ("email", "pablo@example.es"), name="Pablo")
    missing = await preview(
        client, tenant, template_id, channel_kind="telegram", customer_id=without["customer_id"]
    )
    assert missing["text"] == "Pablo, tu talla [talla]"
    assert "talla" in missing["problem"]

    other = await make_tenant("Otra")
    stranger = await identify(client, other, ("email", "x@example.es"))
    response = await client.post(
        f"/v1/templates/{template_id}/preview",
        json={"channel_kind": "telegram", "customer_id": stranger["customer_id"]},
        headers=tenant.headers,
    )
    assert response.status_code == 404


async def test_names_are_unique_and_changes_are_checked_like_creation(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    template = (await create(client, tenant)).json()
    again = await create(client, tenant)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "template_exists"

    bad = await client.patch(
        f"/v1/templates/{template['id']}",
        json={"variants": {"es": {"text": "{{ customer.apellido }}"}}},
        headers=tenant.headers,
    )
    assert bad.status_code == 422
    unchanged = await client.get(f"/v1/templates/{template['id']}", headers=tenant.headers)
    assert unchanged.json()["variants"] == template["variants"]

    changed = await client.patch(
        f"/v1/templates/{template['id']}",
        json={"purpose": "service", "variants": {"en": {"text": "Hi {{ customer.name }}"}}},
        headers=tenant.headers,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["purpose"] == "service"
    assert changed.json()["variables"] == ["customer", "customer.name"]

    deleted = await client.delete(f"/v1/templates/{template['id']}", headers=tenant.headers)
    assert deleted.status_code == 204
    gone = await client.get(f"/v1/templates/{template['id']}", headers=tenant.headers)
    assert gone.status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"variants": {}}, "variants"),
        ({"variants": {"es": {}}}, "variants.es"),
        ({"variants": {"español": {"text": "Hola"}}}, "variants.español"),
        ({"variants": {"es": {"email": {"text": "sin asunto"}}}}, "variants.es.email.subject"),
        (
            {"variants": {"es": {"whatsapp": {"template_name": "Con Espacios", "language": "es"}}}},
            "variants.es.whatsapp.template_name",
        ),
        (
            {
                "variants": {
                    "es": {
                        "whatsapp": {
                            "template_name": "pedido",
                            "language": "es",
                            "parameters": ["order.number }}{{ order.status"],
                        }
                    }
                }
            },
            "variants.es.whatsapp.parameters.0",
        ),
        ({"purpose": "spam"}, "purpose"),
    ],
)
async def test_a_malformed_template_is_refused_naming_the_field(
    client: httpx.AsyncClient, tenant: TenantHandle, body: dict[str, Any], field: str
) -> None:
    response = await create(client, tenant, **body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"].startswith(field)
    assert await listed(client, tenant) == []


async def test_render_picks_the_language_and_fills_the_tenant(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    template_id = (await create(client, tenant)).json()["id"]
    context = {
        "customer": {"first_name": "Iker"},
        "cart": {"lines": [], "total": 1250, "currency": "EUR", "url": "https://t.es/c/1"},
    }
    async with sessionmaker() as session:
        sms = await templates.render(
            session,
            tenant.context,
            template_id=template_id,
            channel_kind="sms",
            language=None,
            context=context,
        )
        whatsapp = await templates.render(
            session,
            tenant.context,
            template_id=template_id,
            channel_kind="whatsapp",
            language="en",
            context=context,
        )
        with pytest.raises(templates.RenderError):
            await templates.render(
                session,
                tenant.context,
                template_id=template_id,
                channel_kind="email",
                language="es",
                context={"customer": {"first_name": "Iker"}},
            )
    assert sms.language == "es"
    assert sms.text == "Tienda de prueba: tu carrito te espera https://t.es/c/1"
    assert whatsapp.whatsapp_template == {
        "name": "abandoned_cart",
        "language": "en_GB",
        "parameters": ["Iker", "€12.50"],
    }
