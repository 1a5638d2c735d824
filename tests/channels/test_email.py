"""Email both ways: reading MIME, replies through the business's relay, threads, bounces."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import httpx
import pytest

from hilos.channels.base import BadPayload, Ignored, Inbound, Receipt
from hilos.channels.email_mime import MAX_EMAIL_BYTES, html_to_text, parse_email
from hilos.channels.smtp_server import SmtpServer
from hilos.core import clock
from tests.channels.conftest import add_configured_channel, deliver, messages
from tests.channels.email_fakes import (
    FakeRelay,
    email_bytes,
    inbound_server,
    send_mail,
    unique_address,
)
from tests.conftest import TenantHandle

SAMPLES = Path(__file__).resolve().parent / "samples"
SAMPLE = (SAMPLES / "email-reply.eml").read_bytes()
SAMPLE_ID = "<CAB4q2+rosa.88213@mail.example.org>"
CUSTOMER = "rosa.navarro@example.org"


# --- reading MIME ---------------------------------------------------------------------------


def only_inbound(raw: bytes) -> Inbound:
    [item] = parse_email(raw).items
    assert isinstance(item, Inbound)
    return item


def test_the_sample_reply_is_read_without_its_history() -> None:
    parsed = parse_email(SAMPLE)
    [inbound] = parsed.items
    assert isinstance(inbound, Inbound)
    assert inbound.external_id == SAMPLE_ID
    assert (inbound.sender_kind, inbound.sender_value) == ("email", CUSTOMER)
    assert inbound.sender_name == "Rosa Navarro"
    assert inbound.sent_at == datetime(2026, 11, 22, 10, 2, 10, tzinfo=UTC)
    assert inbound.text == (
        "Perfecto, la llevo mañana a la tienda de Triana. Adjunto el ticket.\n\nRosa"
    )
    assert inbound.data is not None
    assert inbound.data["full_text"].endswith("> Un saludo\n")
    assert inbound.data["to"] == ["atencion@tienda.example"]
    assert inbound.data["references"] == [
        "<conversation.3f9c@tienda.example>",
        "<conversation.3f9c/message.17@tienda.example>",
    ]
    assert inbound.thread_refs == [
        "<conversation.3f9c/message.17@tienda.example>",
        "<conversation.3f9c@tienda.example>",
    ]
    [ticket] = parsed.files
    assert (ticket.filename, ticket.content_type, ticket.kind) == (
        "ticket.jpg",
        "image/jpeg",
        "image",
    )
    assert ticket.content.startswith(b"\xff\xd8\xff")


def test_english_quotes_and_signatures_are_cut_and_lists_are_kept() -> None:
    raw = email_bytes(
        sender="john@example.com",
        to="help@shop.example",
        subject="Re: order 5512",
        text=(
            "Two things:\n- the size is wrong\n- the box was open\n\n"
            "-- \nJohn Smith\nSent from my phone\n\n"
            "On Fri, Nov 21, 2026 at 6:40 PM Shop <help@shop.example> wrote:\n"
            "> Your order has shipped.\n"
        ),
        message_id="<en-1@example.com>",
        sender_name="John Smith",
    )
    inbound = only_inbound(raw)
    assert inbound.text == "Two things:\n- the size is wrong\n- the box was open"


def test_a_spanish_attribution_wrapped_over_two_lines_is_cut() -> None:
    raw = email_bytes(
        sender="rosa@example.org",
        to="t@tienda.example",
        subject="Re: pedido",
        text=(
            "Vale, lo recojo el martes.\n\n"
            "El vie, 21 nov 2026 a las 18:40, Atención al cliente <\n"
            "atencion@tienda.example> escribió:\n>\n> Ya está listo.\n"
        ),
        message_id="<wrapped@example.org>",
    )
    assert only_inbound(raw).text == "Vale, lo recojo el martes."


def test_latin1_quoted_printable_and_encoded_headers_are_decoded() -> None:
    raw = (
        b"From: =?iso-8859-1?q?Jos=E9_P=E9rez?= <jose@example.es>\r\n"
        b"To: tienda@tienda.example\r\n"
        b"Subject: =?iso-8859-1?q?Devoluci=F3n_del_pedido?=\r\n"
        b"Message-ID: <latin1@example.es>\r\n"
        b"Date: Sat, 22 Nov 2026 09:00:00 -0000\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"Quiero devolver el abrigo, =BFc=F3mo lo hago? Cuesta 80 =80.\r\n"
    )
    inbound = only_inbound(raw)
    assert inbound.sender_name == "José Pérez"
    assert inbound.data is not None
    assert inbound.data["subject"] == "Devolución del pedido"
    # Declared Latin-1, written as Windows-1252 (the euro sign), as mail programs do.
    assert inbound.text == "Quiero devolver el abrigo, ¿cómo lo hago? Cuesta 80 €."
    assert inbound.sent_at == datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def test_an_html_only_message_is_read_as_text_without_the_quote() -> None:
    raw = (
        b"From: ana@example.org\r\nTo: t@tienda.example\r\nSubject: hola\r\n"
        b"Message-ID: <html-1@example.org>\r\n"
        b"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(
            "<html><head><style>p{color:red}</style></head><body>"
            "<p>¿Tenéis la <b>talla 40</b>?</p><p>Gracias</p>"
            '<div class="gmail_quote">El lun, 17 nov escribió:<blockquote>Hola Ana'
            "</blockquote></div></body></html>".encode()
        )
    )
    inbound = only_inbound(raw)
    assert inbound.text == "¿Tenéis la talla 40?\n\nGracias"
    assert inbound.data is not None
    assert "Hola Ana" in inbound.data["full_text"]
    assert "<b>talla 40</b>" in inbound.data["html"]


def test_html_to_text_keeps_lines_and_drops_scripts() -> None:
    html = "<div>Uno<br>Dos</div><script>alert(1)</script><ul><li>tres</li></ul>"
    assert html_to_text(html) == "Uno\nDos\n\n- tres"


def test_a_message_without_message_id_gets_a_stable_one() -> None:
    raw = email_bytes(sender="a@example.org", to="t@tienda.example", subject="s", text="hola")
    first, second = only_inbound(raw), only_inbound(raw)
    assert first.external_id == second.external_id
    assert first.external_id.endswith("@hilos.generated>")
    other = email_bytes(sender="a@example.org", to="t@tienda.example", subject="s", text="adiós")
    assert only_inbound(other).external_id != first.external_id


def test_a_message_without_date_is_dated_now() -> None:
    moment = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    clock.set_now(lambda: moment)
    try:
        raw = email_bytes(
            sender="a@example.org", to="t@tienda.example", subject="s", text="x", date=None
        )
        assert only_inbound(raw).sent_at == moment
    finally:
        clock.set_now(None)


def test_a_reply_to_a_hilos_message_names_its_bare_id_too() -> None:
    hilos_id = "019ab1c2d3e4f5a6b7c8d9e0f1a2b3c4"
    raw = email_bytes(
        sender="a@example.org",
        to="t@tienda.example",
        subject="Re: x",
        text="vale",
        in_reply_to=f"<{hilos_id}@tienda.example>",
        references=f"<older@example.org> <{hilos_id}@tienda.example>",
    )
    assert only_inbound(raw).thread_refs == [
        f"<{hilos_id}@tienda.example>",
        hilos_id,
        "<older@example.org>",
    ]


def test_too_large_and_senderless_messages_are_refused() -> None:
    with pytest.raises(BadPayload, match="larger than"):
        parse_email(b"x" * (MAX_EMAIL_BYTES + 1))
    with pytest.raises(BadPayload, match="no From"):
        parse_email(b"Subject: hola\r\n\r\nhola\r\n")


def test_mail_system_notices_are_ignored() -> None:
    raw = email_bytes(
        sender="MAILER-DAEMON@mx.example.org",
        to="t@tienda.example",
        subject="Warning: message delayed",
        text="Still trying.",
        sender_name="Mail Delivery System",
    )
    [item] = parse_email(raw).items
    assert isinstance(item, Ignored)


# --- replies through the business's relay ---------------------------------------------------


@pytest.fixture
async def smtp(app: Any) -> AsyncIterator[SmtpServer]:
    server = await inbound_server(app)
    yield server
    await server.close()


@pytest.fixture
async def relay() -> AsyncIterator[FakeRelay]:
    fake = FakeRelay()
    await fake.start()
    yield fake
    await fake.close()


def no_http(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"email is sent by SMTP, not to {request.url}")


async def customer_wrote(
    client: httpx.AsyncClient, tenant: TenantHandle, relay: FakeRelay, smtp: SmtpServer
) -> tuple[str, str, str]:
    """An email channel sending through ``relay``, and the sample email received on it."""
    address = unique_address()
    channel_id = await add_configured_channel(
        client, tenant, "email", relay.config(address), name="Atención al cliente"
    )
    await send_mail(smtp.port, SAMPLE, sender=CUSTOMER, to=[address])
    listed = await client.get("/v1/conversations", headers=tenant.headers)
    [conversation] = listed.json()["items"]
    return channel_id, address, conversation["id"]


async def agent_replies(
    client: httpx.AsyncClient, tenant: TenantHandle, conversation_id: str, **body: Any
) -> dict[str, Any]:
    response = await client.post(
        f"/v1/conversations/{conversation_id}/messages",
        json={"text": "Perfecto, te esperamos en Triana.", **body},
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    message: dict[str, Any] = response.json()
    return message


async def message_of(
    client: httpx.AsyncClient, tenant: TenantHandle, conversation_id: str, message_id: str
) -> dict[str, Any]:
    found: dict[str, Any] = next(
        m for m in await messages(client, tenant, conversation_id) if m["id"] == message_id
    )
    return found


async def test_a_reply_is_sent_in_the_customers_thread_and_their_answer_reopens_it(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    app: Any,
    relay: FakeRelay,
    smtp: SmtpServer,
    frozen_clock: Any,
) -> None:
    channel_id, address, conversation_id = await customer_wrote(client, tenant, relay, smtp)
    queued = await agent_replies(
        client,
        tenant,
        conversation_id,
        attachments=[
            {"type": "file", "name": "etiqueta.pdf", "url": "https://tienda.example/e.pdf"}
        ],
    )

    assert (await deliver(app, no_http, tenant))["sent"] == 1

    [envelope] = relay.received
    assert envelope.mail_from == address
    assert envelope.rcpt_tos == [CUSTOMER]
    sent = message_from_bytes(envelope.original_content or b"", policy=policy.default)
    domain = address.split("@")[1]
    expected_id = f"<{queued['id']}@{domain}>"
    assert sent["Message-ID"] == expected_id
    assert sent["From"].addresses[0].display_name == "Atención al cliente"
    assert sent["From"].addresses[0].addr_spec == address
    assert sent["To"] == CUSTOMER
    assert sent["Subject"] == "Re: Tu devolución 88213"
    assert sent["In-Reply-To"] == SAMPLE_ID
    assert sent["References"].split() == [
        "<conversation.3f9c@tienda.example>",
        "<conversation.3f9c/message.17@tienda.example>",
        SAMPLE_ID,
    ]
    assert sent["Date"] is not None
    body = sent.get_body(preferencelist=("plain",))
    assert body is not None
    text = body.get_content()
    assert "Perfecto, te esperamos en Triana." in text
    assert "etiqueta.pdf: https://tienda.example/e.pdf" in text
    stored = await message_of(client, tenant, conversation_id, queued["id"])
    assert stored["status"] == "sent"
    assert stored["external_id"] == expected_id

    # The agent closes the conversation; the customer answers days later, long after the
    # tenant's reopen window, from their mail program's "Reply".
    closed = await client.patch(
        f"/v1/conversations/{conversation_id}",
        json={"status": "resolved"},
        headers=tenant.headers,
    )
    assert closed.json()["status"] == "resolved"
    frozen_clock.advance(days=10)
    answer = email_bytes(
        sender=CUSTOMER,
        to=address,
        subject="Re: Tu devolución 88213",
        text=f"¡Gracias! Ya la he dejado.\n\nEl sáb, Atención al cliente <{address}> escribió:\n"
        "> Perfecto, te esperamos en Triana.\n",
        message_id="<rosa-2@mail.example.org>",
        in_reply_to=expected_id,
        references=f"{SAMPLE_ID} {expected_id}",
        date=None,
    )
    await send_mail(smtp.port, answer, sender=CUSTOMER, to=[address])

    conversation = await client.get(f"/v1/conversations/{conversation_id}", headers=tenant.headers)
    assert conversation.json()["status"] == "open"
    texts = [m["text"] for m in await messages(client, tenant, conversation_id)]
    assert texts[-1] == "¡Gracias! Ya la he dejado."

    # Without the thread headers, the same late email starts a new conversation: it was the
    # reply headers that brought the answer back.
    await client.patch(
        f"/v1/conversations/{conversation_id}", json={"status": "resolved"}, headers=tenant.headers
    )
    frozen_clock.advance(days=10)
    fresh = email_bytes(
        sender=CUSTOMER,
        to=address,
        subject="Otra cosa",
        text="¿Abrís el domingo?",
        message_id="<rosa-3@mail.example.org>",
    )
    await send_mail(smtp.port, fresh, sender=CUSTOMER, to=[address])
    listed = (await client.get("/v1/conversations", headers=tenant.headers)).json()["items"]
    assert len(listed) == 2
    assert listed[0]["id"] != conversation_id
    [fresh_message] = await messages(client, tenant, listed[0]["id"])
    assert fresh_message["text"] == "¿Abrís el domingo?"
    assert fresh_message["channel_id"] == channel_id


async def test_a_second_reply_continues_the_thread_of_the_first(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, relay: FakeRelay, smtp: SmtpServer
) -> None:
    _channel_id, address, conversation_id = await customer_wrote(client, tenant, relay, smtp)
    first = await agent_replies(client, tenant, conversation_id)
    await deliver(app, no_http, tenant)
    second = await agent_replies(client, tenant, conversation_id, text="Y otra cosa.")
    await deliver(app, no_http, tenant)

    first_sent, second_sent = (
        message_from_bytes(e.original_content or b"", policy=policy.default) for e in relay.received
    )
    assert first_sent["In-Reply-To"] == SAMPLE_ID
    first_id = f"<{first['id']}@{address.split('@')[1]}>"
    assert second_sent["In-Reply-To"] == first_id
    assert second_sent["References"].split()[-2:] == [SAMPLE_ID, first_id]
    assert second_sent["Subject"] == "Re: Tu devolución 88213"
    assert second_sent["Message-ID"] == f"<{second['id']}@{address.split('@')[1]}>"


async def test_a_relay_refusal_fails_the_reply_with_the_relays_words(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, relay: FakeRelay, smtp: SmtpServer
) -> None:
    _channel_id, _address, conversation_id = await customer_wrote(client, tenant, relay, smtp)
    relay.rcpt_reply = "550 5.1.1 <rosa.navarro@example.org>: Recipient address rejected"
    queued = await agent_replies(client, tenant, conversation_id)

    assert (await deliver(app, no_http, tenant))["failed"] == 1

    failed = await message_of(client, tenant, conversation_id, queued["id"])
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "smtp_550"
    assert failed["error"]["message"] == (
        "550 5.1.1 <rosa.navarro@example.org>: Recipient address rejected"
    )
    assert relay.received == []


async def test_a_deferral_or_an_unreachable_relay_is_retried(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    app: Any,
    relay: FakeRelay,
    smtp: SmtpServer,
    frozen_clock: Any,
) -> None:
    channel_id, _address, conversation_id = await customer_wrote(client, tenant, relay, smtp)
    relay.data_reply = "451 4.7.1 Greylisted, please try again later"
    queued = await agent_replies(client, tenant, conversation_id)

    assert (await deliver(app, no_http, tenant))["retried"] == 1
    waiting = await message_of(client, tenant, conversation_id, queued["id"])
    assert waiting["status"] == "queued"
    assert waiting["error"]["message"] == "451 4.7.1 Greylisted, please try again later"

    # The relay is down: a lost connection is worth another try too.
    await relay.close()
    frozen_clock.advance(minutes=5)
    assert (await deliver(app, no_http, tenant))["retried"] == 1

    fresh = FakeRelay()
    await fresh.start()
    try:
        await client.patch(
            f"/v1/channels/{channel_id}",
            json={"config": {"smtp_port": fresh.port}},
            headers=tenant.headers,
        )
        frozen_clock.advance(minutes=5)
        assert (await deliver(app, no_http, tenant))["sent"] == 1
        assert len(fresh.received) == 1
    finally:
        await fresh.close()
    sent = await message_of(client, tenant, conversation_id, queued["id"])
    assert sent["status"] == "sent"


async def test_a_bounce_marks_the_reply_failed(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, relay: FakeRelay, smtp: SmtpServer
) -> None:
    _channel_id, address, conversation_id = await customer_wrote(client, tenant, relay, smtp)
    queued = await agent_replies(client, tenant, conversation_id)
    await deliver(app, no_http, tenant)
    message_id = f"<{queued['id']}@{address.split('@')[1]}>"

    bounce = (
        f"From: Mail Delivery System <MAILER-DAEMON@mx.example.org>\r\n"
        f"To: {address}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Message-ID: <bounce-1@mx.example.org>\r\n"
        "Date: Sat, 22 Nov 2026 12:05:00 +0000\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"\r\n\r\n'
        "--b1\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--b1\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.org\r\n\r\n"
        f"Final-Recipient: rfc822; {CUSTOMER}\r\n"
        "Action: failed\r\nStatus: 5.2.2\r\n"
        "Diagnostic-Code: smtp; 552 5.2.2 Mailbox full\r\n\r\n"
        "--b1\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: {address}\r\nTo: {CUSTOMER}\r\nMessage-ID: {message_id}\r\n"
        "Subject: Re: Tu devolución 88213\r\n\r\n"
        "--b1--\r\n"
    ).encode()
    await send_mail(smtp.port, bounce, sender="", to=[address])

    bounced = await message_of(client, tenant, conversation_id, queued["id"])
    assert bounced["status"] == "failed"
    assert bounced["error"] == {"code": "email_bounced", "message": "smtp; 552 5.2.2 Mailbox full"}
    # The report is not a message from a customer called MAILER-DAEMON.
    assert len(await messages(client, tenant, conversation_id)) == 2
    listed = (await client.get("/v1/conversations", headers=tenant.headers)).json()["items"]
    assert len(listed) == 1


def test_a_delivery_report_is_a_receipt_for_the_reported_message() -> None:
    raw = (
        b"From: postmaster@mx.example.org\r\nTo: t@tienda.example\r\nSubject: Delayed\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx\r\n\r\nFinal-Recipient: rfc822; a@b.c\r\n"
        b"Action: delayed\r\nStatus: 4.4.1\r\n\r\n"
        b"--b\r\nContent-Type: message/rfc822\r\n\r\n"
        b"From: t@tienda.example\r\nMessage-ID: <abc@tienda.example>\r\n\r\nhola\r\n"
        b"--b--\r\n"
    )
    [item] = parse_email(raw).items
    assert isinstance(item, Ignored)
    failed = raw.replace(b"Action: delayed", b"Action: failed")
    [receipt] = parse_email(failed).items
    assert isinstance(receipt, Receipt)
    assert receipt.external_id == "<abc@tienda.example>"
    assert receipt.status == "failed"


async def test_email_channels_have_no_webhook(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    channel_id = await add_configured_channel(
        client, tenant, "email", {"address": unique_address()}
    )
    response = await client.post(f"/webhooks/email/{channel_id}", content=b"From: x\r\n\r\nhola")
    assert response.status_code == 404
