"""A marketing email leaves through the business's SMTP relay as the template wrote it: its own
subject, an HTML alternative beside the text, and a one-click unsubscribe link."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from email import message_from_bytes, policy
from typing import Any

import httpx
import pytest

from hilos.core import clock
from tests.channels.conftest import add_configured_channel, deliver
from tests.channels.email_fakes import FakeRelay, unique_address
from tests.conftest import TenantHandle
from tests.engagement.test_sending import NOON_UTC, consent, send


def no_http(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"email is sent by SMTP, not to {request.url}")


@pytest.fixture(autouse=True)
def at_noon() -> Iterator[None]:
    """Marketing waits out the customer's quiet hours (21:00-09:00 in Madrid): send at noon,
    whenever the suite runs."""
    clock.set_now(lambda: NOON_UTC)
    yield
    clock.set_now(None)


@pytest.fixture
async def relay() -> AsyncIterator[FakeRelay]:
    fake = FakeRelay()
    await fake.start()
    yield fake
    await fake.close()


async def test_a_campaign_email_has_its_subject_html_and_unsubscribe_header(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    app: Any,
    sessionmaker: Any,
    relay: FakeRelay,
) -> None:
    address = unique_address("novedades")
    await add_configured_channel(client, tenant, "email", relay.config(address), name="Tienda")
    created = await client.post(
        "/v1/templates",
        json={
            "name": "rebajas",
            "purpose": "marketing",
            "variants": {
                "es": {
                    "text": "Hola {{ customer.first_name }}, empiezan las rebajas.",
                    "email": {
                        "subject": "Rebajas para ti, {{ customer.first_name }}",
                        "text": "Hola {{ customer.first_name }}, empiezan las rebajas.",
                        "html": "<p>Hola <b>{{ customer.first_name }}</b></p>"
                        '<a href="{{ unsubscribe_url }}">Baja</a>',
                    },
                }
            },
        },
        headers=tenant.headers,
    )
    assert created.status_code == 201, created.text
    found = await client.post(
        "/v1/customers/identify",
        json={"identities": [{"kind": "email", "value": "marta@example.es"}], "name": "Marta Gil"},
        headers=tenant.headers,
    )
    customer_id = found.json()["customer_id"]
    await consent(client, tenant, customer_id, "email", True)

    result = await send(sessionmaker, tenant, customer_id, created.json()["id"], "rebajas-1")
    assert (result.status, result.channel_kind) == ("queued", "email")
    assert (await deliver(app, no_http, tenant))["sent"] == 1

    [envelope] = relay.received
    sent = message_from_bytes(envelope.original_content or b"", policy=policy.default)
    assert sent["Subject"] == "Rebajas para ti, Marta"
    unsubscribe = sent["List-Unsubscribe"].strip("<>")
    assert "/unsubscribe/" in unsubscribe
    assert sent["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    html = sent.get_body(preferencelist=("html",))
    text = sent.get_body(preferencelist=("plain",))
    assert html is not None
    assert text is not None
    assert "<b>Marta</b>" in html.get_content()
    assert unsubscribe in html.get_content()
    assert "empiezan las rebajas" in text.get_content()
