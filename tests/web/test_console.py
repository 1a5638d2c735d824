"""The agent console through HTTP, the way a browser without JavaScript uses it.

Each test signs in as a user created through ``POST /v1/users`` and checks what the console
shows and what it stores through the public API, on every backend the suite runs.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg

from hilos.app import create_app
from hilos.core import clock
from hilos.core.bus import InProcessBus
from hilos.core.settings import Settings
from hilos.web.i18n import LOCALE_DIR, language_from_accept, translations
from tests.channels.conftest import deliver
from tests.conftest import TenantHandle, add_channel, identify, inbound

PASSWORD = "clave-de-prueba-1"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Agent:
    id: str
    email: str


async def make_agent(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    *,
    email: str | None = None,
    password: str = PASSWORD,
    locale: str | None = None,
    role: str = "supervisor",
) -> Agent:
    """A console user. A supervisor by default: they see every conversation of the tenant,
    which these tests need; what an agent (role ``agent``) sees is in test_console_actions."""
    email = email or f"agente-{uuid.uuid4().hex[:12]}@tienda-prueba.es"
    body: dict[str, Any] = {
        "email": email,
        "name": "Lucía Martín",
        "password": password,
        "role": role,
    }
    if locale:
        body["locale"] = locale
    response = await client.post("/v1/users", json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    return Agent(id=response.json()["id"], email=email)


def csrf_of(page: httpx.Response) -> str:
    match = CSRF.search(page.text)
    assert match is not None, "no CSRF token on the page"
    return match.group(1)


async def sign_in(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD, **fields: str
) -> httpx.Response:
    form = await client.get("/login")
    assert form.status_code == 200, form.text
    data = {"email": email, "password": password, "csrf_token": csrf_of(form), **fields}
    return await client.post("/login", data=data)


@asynccontextmanager
async def browser(
    app: Any, base_url: str = "http://hilos.test"
) -> AsyncIterator[httpx.AsyncClient]:
    """A second browser, with its own cookies."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
        yield client


@dataclass
class Story:
    conversation_id: str
    customer_id: str
    whatsapp_id: str
    email_id: str


async def two_channel_story(client: httpx.AsyncClient, tenant: TenantHandle) -> Story:
    """Ana writes on WhatsApp, then by email: one conversation across two channels."""
    whatsapp_id = await add_channel(client, tenant, "whatsapp", "WhatsApp Tienda")
    email_id = await add_channel(client, tenant, "email", "Atención al cliente")
    await identify(
        client, tenant, ("whatsapp", "+34600111222"), ("email", "ana@example.es"), name="Ana García"
    )
    first = await inbound(
        client,
        tenant,
        channel_id=whatsapp_id,
        external_id=f"wa-{uuid.uuid4().hex}",
        kind="whatsapp",
        value="+34600111222",
        text="¿Tenéis la chaqueta vaquera en talla M?",
    )
    second = await inbound(
        client,
        tenant,
        channel_id=email_id,
        external_id=f"em-{uuid.uuid4().hex}",
        kind="email",
        value="ana@example.es",
        text="Os escribo también por correo <b>por si acaso</b>",
    )
    assert first.status_code == second.status_code == 200, second.text
    assert first.json()["conversation_id"] == second.json()["conversation_id"]
    return Story(
        conversation_id=first.json()["conversation_id"],
        customer_id=first.json()["customer_id"],
        whatsapp_id=whatsapp_id,
        email_id=email_id,
    )


async def messages_of(
    client: httpx.AsyncClient, tenant: TenantHandle, conversation_id: str
) -> list[dict[str, Any]]:
    response = await client.get(
        f"/v1/conversations/{conversation_id}/messages", headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


# --- signing in and out ---------------------------------------------------------------------


async def test_wrong_password_is_refused_without_a_session(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    agent = await make_agent(client, tenant)

    wrong = await sign_in(client, agent.email, "not-the-password")
    unknown = await sign_in(client, f"nadie-{uuid.uuid4().hex}@tienda-prueba.es")

    assert wrong.status_code == unknown.status_code == 401
    assert "hilos_session" not in wrong.headers.get("set-cookie", "")
    assert "hilos_session" not in client.cookies
    message = "El correo o la contraseña no son correctos."
    assert message in wrong.text
    assert message in unknown.text
    assert (await client.get("/console")).status_code == 303


async def test_sign_in_opens_the_inbox_with_the_customers_conversation(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    story = await two_channel_story(client, tenant)
    agent = await make_agent(client, tenant)

    response = await sign_in(client, agent.email.upper())

    assert response.status_code == 303
    assert response.headers["location"] == "/console"
    cookie = response.headers["set-cookie"].lower()
    assert "hilos_session=" in cookie
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "max-age=43200" in cookie
    assert "secure" not in cookie
    inbox = await client.get("/console")
    assert inbox.status_code == 200
    assert "Ana García" in inbox.text
    assert f'href="/console/conversations/{story.conversation_id}"' in inbox.text
    assert "WhatsApp" in inbox.text
    assert "Correo electrónico" in inbox.text
    assert (await client.get("/")).headers["location"] == "/console"
    assert (await client.get("/login")).headers["location"] == "/console"


async def test_session_cookie_is_secure_behind_https(engine: Any, tenant: TenantHandle) -> None:
    settings = Settings(
        database_url=str(engine.url), bus_url="memory://", base_url="https://hilos.example"
    )
    app = create_app(settings, engine=engine, bus=InProcessBus())
    async with browser(app, base_url="https://hilos.example") as client:
        agent = await make_agent(client, tenant)
        response = await sign_in(client, agent.email)
    assert response.status_code == 303
    assert "secure" in response.headers["set-cookie"].lower()


async def test_an_email_in_two_tenants_chooses_the_business(
    client: httpx.AsyncClient, make_tenant: Any
) -> None:
    email = f"compartido-{uuid.uuid4().hex[:10]}@tienda-prueba.es"
    north = await make_tenant("Tienda Norte")
    south = await make_tenant("Tienda Sur")
    await make_agent(client, north, email=email)
    await make_agent(client, south, email=email)

    choose = await sign_in(client, email)
    assert choose.status_code == 200
    assert "Tienda Norte" in choose.text
    assert "Tienda Sur" in choose.text
    assert f'value="{south.id}"' in choose.text
    assert "hilos_session" not in client.cookies

    chosen = await client.post(
        "/login",
        data={
            "email": email,
            "password": PASSWORD,
            "tenant_id": south.id,
            "csrf_token": csrf_of(choose),
        },
    )
    assert chosen.status_code == 303
    inbox = await client.get("/console")
    assert "Tienda Sur" in inbox.text
    assert "Tienda Norte" not in inbox.text


async def test_sign_in_needs_the_forms_own_token(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    agent = await make_agent(client, tenant)
    await client.get("/login")

    response = await client.post(
        "/login", data={"email": agent.email, "password": PASSWORD, "csrf_token": "forged"}
    )

    assert response.status_code == 403
    assert "hilos_session" not in client.cookies


async def test_sign_out_ends_the_session(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    agent = await make_agent(client, tenant)
    await sign_in(client, agent.email)
    old_cookie = client.cookies["hilos_session"]
    inbox = await client.get("/console")

    refused = await client.post("/logout", data={})
    assert refused.status_code == 403
    response = await client.post("/logout", data={"csrf_token": csrf_of(inbox)})

    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    async with browser(app) as thief:
        thief.cookies.set("hilos_session", old_cookie)
        again = await thief.get("/console")
    assert again.status_code == 303
    assert again.headers["location"] == "/login"


async def test_a_session_lasts_twelve_hours(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    agent = await make_agent(client, tenant)
    await sign_in(client, agent.email)
    started = clock.now()
    try:
        clock.set_now(lambda: started + timedelta(hours=11, minutes=59))
        assert (await client.get("/console")).status_code == 200
        clock.set_now(lambda: started + timedelta(hours=12, minutes=1))
        assert (await client.get("/console")).status_code == 303
    finally:
        clock.set_now(None)


async def test_console_pages_send_strangers_to_sign_in(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    story = await two_channel_story(client, tenant)

    for path in (
        "/",
        "/console",
        f"/console/conversations/{story.conversation_id}",
        "/console/customers",
    ):
        response = await client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"] == "/login"
    posted = await client.post(
        f"/console/conversations/{story.conversation_id}/reply", data={"text": "Hola"}
    )
    assert posted.status_code == 303
    assert len(await messages_of(client, tenant, story.conversation_id)) == 2


# --- a conversation -------------------------------------------------------------------------


async def test_conversation_page_shows_both_channels_in_time_order(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    story = await two_channel_story(client, tenant)
    agent = await make_agent(client, tenant)
    await sign_in(client, agent.email)

    page = await client.get(f"/console/conversations/{story.conversation_id}")

    assert page.status_code == 200
    text = page.text
    first = text.index("¿Tenéis la chaqueta vaquera en talla M?")
    second = text.index("Os escribo también por correo &lt;b&gt;por si acaso&lt;/b&gt;")
    assert first < second
    assert "<b>por si acaso" not in text
    # The reply goes by default to the channel the customer wrote on last: email.
    assert re.search(rf'<option value="{story.email_id}" selected>', text)
    assert f'<option value="{story.whatsapp_id}">' in text
    assert f'href="/console/customers/{story.customer_id}"' in text
    assert "+34600111222" in text
    assert "ana@example.es" in text


async def test_reply_through_the_form_is_queued_on_the_chosen_channel(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    story = await two_channel_story(client, tenant)
    agent = await make_agent(client, tenant)
    await sign_in(client, agent.email)
    page = await client.get(f"/console/conversations/{story.conversation_id}")

    response = await client.post(
        f"/console/conversations/{story.conversation_id}/reply",
        data={
            "csrf_token": csrf_of(page),
            "text": "¡Hola Ana! Sí, nos queda en M.",
            "channel_id": story.whatsapp_id,
        },
    )

    assert response.status_code == 303
    assert response.headers["location"] == f"/console/conversations/{story.conversation_id}#latest"
    reply = (await messages_of(client, tenant, story.conversation_id))[-1]
    assert reply["direction"] == "outbound"
    assert reply["status"] == "queued"
    assert reply["channel_id"] == story.whatsapp_id
    assert reply["address"] == "whatsapp:+34600111222"
    assert reply["author_user_id"] == agent.id
    assert reply["text"] == "¡Hola Ana! Sí, nos queda en M."
    shown = await client.get(f"/console/conversations/{story.conversation_id}")
    assert "¡Hola Ana! Sí, nos queda en M." in shown.text
    assert "Lucía Martín" in shown.text


async def test_each_message_shows_its_channel_and_delivery_state_and_a_failure_its_reason(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any
) -> None:
    story = await two_channel_story(client, tenant)
    agent = await make_agent(client, tenant)
    await sign_in(client, agent.email)
    reply = await client.post(
        f"/v1/conversations/{story.conversation_id}/messages",
        json={"text": "¿Te la reservo?", "channel_id": story.whatsapp_id},
        headers=tenant.headers,
    )
    assert reply.status_code == 201, reply.text
    queued = await client.get(f"/console/conversations/{story.conversation_id}")
    sent_item = _message_item(queued.text, reply.json()["id"])
    assert ">WhatsApp</span>" in sent_item
    assert '<span class="delivery delivery-queued">en cola</span>' in sent_item
    received = [m for m in await messages_of(client, tenant, story.conversation_id)][1]
    email_item = _message_item(queued.text, received["id"])
    assert ">Correo electrónico</span>" in email_item
    assert '<span class="delivery delivery-received">recibido</span>' in email_item

    # The WhatsApp channel of the story has no credentials: the provider's step fails.
    await deliver(app, lambda request: httpx.Response(500), tenant)
    failed = await client.get(f"/console/conversations/{story.conversation_id}")
    failed_item = _message_item(failed.text, reply.json()["id"])
    assert '<span class="delivery delivery-failed">fallido</span>' in failed_item
    (stored,) = [
        m
        for m in await messages_of(client, tenant, story.conversation_id)
        if m["id"] == reply.json()["id"]
    ]
    assert stored["status"] == "failed"
    assert f'<p class="delivery-error">{stored["error"]["message"]}</p>' in failed_item


def _message_item(page: str, message_id: str) -> str:
    start = page.index(f'id="message-{message_id}"')
    return page[start : page.index("</li>", start)]


async def test_the_sidebar_shows_consents_and_the_customers_other_conversations(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    story = await two_channel_story(client, tenant)
    consent = await client.post(
        f"/v1/customers/{story.customer_id}/consents",
        json={"purpose": "marketing", "channel_kind": "whatsapp", "granted": True},
        headers=tenant.headers,
    )
    assert consent.status_code == 201, consent.text
    resolved = await client.patch(
        f"/v1/conversations/{story.conversation_id}",
        json={"status": "resolved"},
        headers=tenant.headers,
    )
    assert resolved.status_code == 200, resolved.text
    clock.set_now(lambda: datetime.now(UTC) + timedelta(days=3))
    try:
        later = await inbound(
            client,
            tenant,
            channel_id=story.whatsapp_id,
            external_id=f"wa-{uuid.uuid4().hex}",
            kind="whatsapp",
            value="+34600111222",
            text="Otra pregunta",
        )
        new_conversation = later.json()["conversation_id"]
        assert new_conversation != story.conversation_id
        agent = await make_agent(client, tenant)
        await sign_in(client, agent.email)
        page = await client.get(f"/console/conversations/{new_conversation}")
    finally:
        clock.set_now(None)

    sidebar = page.text[page.text.index('id="customer-side"') :]
    assert "Marketing · WhatsApp:" in sidebar
    assert "concedido" in sidebar
    assert f'href="/console/conversations/{story.conversation_id}"' in sidebar
    assert "Resuelta" in sidebar
    assert f'href="/console/conversations/{new_conversation}"' not in sidebar


async def test_private_note_is_stored_as_a_note_and_highlighted(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    story = await two_channel_story(client, tenant)
    agent = await make_agent(client, tenant)
    await sign_in(client, agent.email)
    page = await client.get(f"/console/conversations/{story.conversation_id}")

    response = await client.post(
        f"/console/conversations/{story.conversation_id}/reply",
        data={
            "csrf_token": csrf_of(page),
            "text": "Clienta habitual: ofrecer recogida en tienda.",
            "channel_id": story.whatsapp_id,
            "private": "1",
        },
    )

    assert response.status_code == 303
    note = (await messages_of(client, tenant, story.conversation_id))[-1]
    assert note["direction"] == "note"
    assert note["status"] is None
    assert note["channel_id"] is None
    shown = await client.get(f"/console/conversations/{story.conversation_id}")
    assert 'class="message note"' in shown.text


async def test_form_posts_without_the_csrf_token_are_refused_and_store_nothing(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    story = await two_channel_story(client, tenant)
    agent = await make_agent(client, tenant)
    await sign_in(client, agent.email)
    url = f"/console/conversations/{story.conversation_id}"

    missing = await client.post(f"{url}/reply", data={"text": "Hola"})
    forged = await client.post(f"{url}/reply", data={"text": "Hola", "csrf_token": "x" * 43})
    status = await client.post(f"{url}/status", data={"status": "resolved"})

    assert missing.status_code == forged.status_code == status.status_code == 403
    assert len(await messages_of(client, tenant, story.conversation_id)) == 2
    conversation = await client.get(
        f"/v1/conversations/{story.conversation_id}", headers=tenant.headers
    )
    assert conversation.json()["status"] == "open"


async def test_bad_reply_input_is_a_4xx_page_and_stores_nothing(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    story = await two_channel_story(client, tenant)
    telegram_id = await add_channel(client, tenant, "telegram")
    agent = await make_agent(client, tenant)
    await sign_in(client, agent.email)
    url = f"/console/conversations/{story.conversation_id}"
    token = csrf_of(await client.get(url))

    empty = await client.post(f"{url}/reply", data={"csrf_token": token, "text": "   "})
    unreachable = await client.post(
        f"{url}/reply", data={"csrf_token": token, "text": "Hola", "channel_id": telegram_id}
    )
    bad_status = await client.post(f"{url}/status", data={"csrf_token": token, "status": "gone"})

    assert empty.status_code == 422
    assert "Escribe un mensaje antes de enviarlo." in empty.text
    assert f'href="{url}"' in empty.text
    assert unreachable.status_code == 422
    assert "telegram" in unreachable.text
    assert bad_status.status_code == 422
    assert len(await messages_of(client, tenant, story.conversation_id)) == 2


async def test_status_buttons_change_the_status(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    story = await two_channel_story(client, tenant)
    agent = await make_agent(client, tenant)
    await sign_in(client, agent.email)
    url = f"/console/conversations/{story.conversation_id}"
    token = csrf_of(await client.get(url))

    for status in ("pending", "resolved", "open"):
        response = await client.post(f"{url}/status", data={"csrf_token": token, "status": status})
        assert response.status_code == 303
        assert response.headers["location"] == url
        stored = await client.get(
            f"/v1/conversations/{story.conversation_id}", headers=tenant.headers
        )
        assert stored.json()["status"] == status

    await client.post(f"{url}/status", data={"csrf_token": token, "status": "resolved"})
    resolved = await client.get("/console?status=resolved")
    assert story.conversation_id in resolved.text
    assert story.conversation_id not in (await client.get("/console")).text


async def test_another_tenants_ids_are_not_found(
    client: httpx.AsyncClient, tenant: TenantHandle, make_tenant: Any
) -> None:
    other = await make_tenant("Otra tienda")
    theirs = await two_channel_story(client, other)
    agent = await make_agent(client, tenant)
    await sign_in(client, agent.email)
    token = csrf_of(await client.get("/console"))

    page = await client.get(f"/console/conversations/{theirs.conversation_id}")
    posted = await client.post(
        f"/console/conversations/{theirs.conversation_id}/reply",
        data={"csrf_token": token, "text": "Hola"},
    )
    customer = await client.get(f"/console/customers/{theirs.customer_id}")

    assert page.status_code == posted.status_code == customer.status_code == 404
    assert "No encontrado" in page.text
    assert "text/html" in page.headers["content-type"]
    assert len(await messages_of(client, other, theirs.conversation_id)) == 2
    search = await client.get("/console/customers", params={"q": "Ana"})
    assert theirs.customer_id not in search.text


# --- customers ------------------------------------------------------------------------------


async def test_customer_search_and_360(client: httpx.AsyncClient, tenant: TenantHandle) -> None:
    story = await two_channel_story(client, tenant)
    consent = await client.post(
        f"/v1/customers/{story.customer_id}/consents",
        json={"purpose": "marketing", "channel_kind": "whatsapp", "granted": True},
        headers=tenant.headers,
    )
    assert consent.status_code == 201, consent.text
    agent = await make_agent(client, tenant)
    await sign_in(client, agent.email)

    found = await client.get("/console/customers", params={"q": "ana@example"})
    nobody = await client.get("/console/customers", params={"q": "Zacarías"})
    view = await client.get(f"/console/customers/{story.customer_id}")

    assert found.status_code == 200
    assert f'href="/console/customers/{story.customer_id}"' in found.text
    assert "Ana García" not in nobody.text
    assert "Zacarías" in nobody.text
    assert view.status_code == 200
    for expected in ("Ana García", "+34600111222", "ana@example.es", "Marketing", "concedido"):
        assert expected in view.text
    assert f'href="/console/conversations/{story.conversation_id}"' in view.text
    assert "¿Tenéis la chaqueta vaquera en talla M?" in view.text


# --- languages ------------------------------------------------------------------------------


async def test_spanish_by_default_english_on_request_and_remembered(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    agent = await make_agent(client, tenant)
    await sign_in(client, agent.email)

    spanish = await client.get("/console")
    english = await client.get("/console?lang=en")
    remembered = await client.get("/console")
    back = await client.get("/console?lang=es")

    assert '<html lang="es">' in spanish.text
    assert "Bandeja de entrada" in spanish.text
    assert '<html lang="en">' in english.text
    assert "Inbox" in english.text
    assert "Bandeja de entrada" not in english.text
    assert "hilos_lang=en" in english.headers["set-cookie"]
    assert "Inbox" in remembered.text
    assert "Bandeja de entrada" in back.text


async def test_language_follows_user_then_tenant_then_browser(
    app: Any, client: httpx.AsyncClient, make_tenant: Any
) -> None:
    english_shop = await make_tenant("English Shop", locale="en")
    spanish_shop = await make_tenant("Tienda")
    async with browser(app) as anonymous:
        login = await anonymous.get("/login", headers={"Accept-Language": "en-GB,en;q=0.9"})
        assert "Sign in to the console" in login.text
        login = await anonymous.get("/login", headers={"Accept-Language": "fr, es;q=0.5"})
        assert "Entrar en la consola" in login.text

    tenant_default = await make_agent(client, english_shop)
    await sign_in(client, tenant_default.email)
    assert "Inbox" in (await client.get("/console")).text

    async with browser(app) as second:
        own_choice = await make_agent(second, spanish_shop, locale="en")
        await sign_in(second, own_choice.email)
        assert "Inbox" in (await second.get("/console")).text


def test_accept_language_is_read_by_quality() -> None:
    assert language_from_accept("de-DE,en;q=0.8,es;q=0.9") == "es"
    assert language_from_accept("en-US") == "en"
    assert language_from_accept("fr, de") is None
    assert language_from_accept("es;q=0, en;q=0.1") == "en"
    assert language_from_accept(None) is None


def test_spanish_catalog_translates_every_message_of_the_console() -> None:
    with (REPO / "babel.cfg").open() as config:
        method_map, options_map = parse_mapping_cfg(config)
    extracted = {
        message if isinstance(message, str) else message[0]
        for _file, _line, message, _comments, _context in extract_from_dir(
            REPO, method_map, options_map
        )
    }
    spanish = translations("es")
    untranslated = sorted(
        m for m in extracted if spanish.gettext(m) == m and m not in SAME_IN_SPANISH
    )
    assert untranslated == [], "add these to locale/es/LC_MESSAGES/messages.po (make i18n)"
    assert (LOCALE_DIR / "en" / "LC_MESSAGES" / "messages.po").exists()


# Brand and channel names read the same in both languages.
SAME_IN_SPANISH = {
    "WhatsApp",
    "Messenger",
    "Instagram",
    "Telegram",
    "SMS",
    "API",
    "Marketing",
    "Supervisor",
    "SLA",
    "Audio",
    "Sticker",
}


@pytest.mark.parametrize("language", ["es", "en"])
def test_catalogs_load(language: str) -> None:
    assert (
        translations(language).gettext("Inbox")
        == {"es": "Bandeja de entrada", "en": "Inbox"}[language]
    )
