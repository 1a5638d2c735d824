"""The inbound SMTP server: a real SMTP conversation in, a stored message out."""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosmtplib
import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.app import create_app
from hilos.channels.models import StoredFile
from hilos.channels.smtp_server import SmtpServer, start_smtp_server
from hilos.conversations.models import Message
from hilos.core.bus import InProcessBus
from hilos.core.db import make_engine, make_sessionmaker
from hilos.core.settings import Settings
from tests.channels.conftest import add_configured_channel, messages
from tests.channels.email_fakes import email_bytes, inbound_server, send_mail, unique_address
from tests.conftest import TenantHandle

SAMPLES = Path(__file__).resolve().parent / "samples"
SAMPLE = (SAMPLES / "email-reply.eml").read_bytes()
SAMPLE_ID = "<CAB4q2+rosa.88213@mail.example.org>"
TICKET_JPG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAP//////////////////////////////////////////////////////"
    "////////////////////////////////wAALCAABAAEBAREA/8QAFAABAAAAAAAAAAAAAAAAAAAACf/EABQQAQAA"
    "AAAAAAAAAAAAAAAAAAD/2gAIAQEAAD8AKp//2Q=="
)


@pytest.fixture
async def smtp(app: Any) -> AsyncIterator[SmtpServer]:
    server = await inbound_server(app)
    yield server
    await server.close()


async def email_channel(client: httpx.AsyncClient, tenant: TenantHandle) -> tuple[str, str]:
    address = unique_address()
    channel_id = await add_configured_channel(
        client, tenant, "email", {"address": address}, name="Atención al cliente"
    )
    return channel_id, address


async def conversations(client: httpx.AsyncClient, tenant: TenantHandle) -> list[Any]:
    response = await client.get("/v1/conversations", headers=tenant.headers)
    assert response.status_code == 200, response.text
    items: list[Any] = response.json()["items"]
    return items


async def stored_count(
    sessionmaker: async_sessionmaker[AsyncSession], tenant: TenantHandle, external_id: str
) -> int:
    async with sessionmaker() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(Message)
            .where(Message.tenant_id == tenant.id, Message.external_id == external_id)
        )
    return int(count or 0)


async def test_an_email_is_stored_with_its_reply_text_history_and_attachment(
    client: httpx.AsyncClient, tenant: TenantHandle, make_tenant: Any, smtp: SmtpServer
) -> None:
    channel_id, address = await email_channel(client, tenant)

    reply = await send_mail(
        smtp.port, SAMPLE, sender="rosa.navarro@example.org", to=[address.upper()]
    )

    assert SAMPLE_ID in reply
    [conversation] = await conversations(client, tenant)
    [message] = await messages(client, tenant, conversation["id"])
    assert message["channel_id"] == channel_id
    assert message["external_id"] == SAMPLE_ID
    assert message["address"] == "email:rosa.navarro@example.org"
    # What the customer wrote now, without the quoted history.
    assert message["text"] == (
        "Perfecto, la llevo mañana a la tienda de Triana. Adjunto el ticket.\n\nRosa"
    )
    data = message["data"]
    assert "> Hola Rosa, puedes devolverla en cualquier tienda." in data["full_text"]
    assert data["subject"] == "Re: Tu devolución 88213"
    assert data["in_reply_to"] == "<conversation.3f9c/message.17@tienda.example>"
    assert "<blockquote>" in data["html"]
    customer = await client.get(
        f"/v1/customers/{conversation['customer_id']}", headers=tenant.headers
    )
    assert customer.json()["name"] == "Rosa Navarro"

    [attachment] = message["attachments"]
    assert attachment["type"] == "image"
    assert attachment["name"] == "ticket.jpg"
    assert attachment["mime_type"] == "image/jpeg"
    assert attachment["size"] == len(TICKET_JPG)
    download = await client.get(attachment["url"], headers=tenant.headers)
    assert download.status_code == 200
    assert download.content == TICKET_JPG
    assert download.headers["content-type"] == "image/jpeg"
    assert download.headers["content-disposition"].startswith('attachment; filename="ticket.jpg"')
    assert download.headers["x-content-type-options"] == "nosniff"

    other = await make_tenant("Otra tienda")
    assert (await client.get(attachment["url"], headers=other.headers)).status_code == 404
    assert (await client.get(attachment["url"])).status_code == 401
    assert (await client.get("/v1/files/nope", headers=tenant.headers)).status_code == 404


async def test_unknown_recipient_is_refused_and_nothing_is_stored(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    smtp: SmtpServer,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await email_channel(client, tenant)

    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
        await send_mail(smtp.port, SAMPLE, to=[unique_address("nadie")])

    [recipient] = refused.value.recipients
    assert recipient.code == 550
    assert "5.1.1 mailbox unavailable" in recipient.message
    assert await stored_count(sessionmaker, tenant, SAMPLE_ID) == 0
    assert await conversations(client, tenant) == []


async def test_the_same_email_delivered_twice_or_at_once_is_one_message(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    smtp: SmtpServer,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    _channel_id, address = await email_channel(client, tenant)

    await send_mail(smtp.port, SAMPLE, to=[address])
    await send_mail(smtp.port, SAMPLE, to=[address])
    raw = email_bytes(
        sender="ana@example.org",
        to=address,
        subject="¿Tenéis la talla 40?",
        text="Hola, ¿tenéis las botas en la 40?",
        message_id="<tallas-40@example.org>",
        sender_name="Ana",
    )
    await asyncio.gather(*(send_mail(smtp.port, raw, to=[address]) for _ in range(3)))

    assert await stored_count(sessionmaker, tenant, SAMPLE_ID) == 1
    assert await stored_count(sessionmaker, tenant, "<tallas-40@example.org>") == 1
    async with sessionmaker() as session:
        files = await session.scalar(
            select(func.count()).select_from(StoredFile).where(StoredFile.tenant_id == tenant.id)
        )
    assert files == 1


async def test_a_message_without_a_sender_is_refused_with_554(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    smtp: SmtpServer,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    _channel_id, address = await email_channel(client, tenant)
    raw = b"To: x@example.org\r\nSubject: hola\r\nMessage-ID: <no-from@example.org>\r\n\r\nhola\r\n"

    with pytest.raises(aiosmtplib.SMTPDataError) as refused:
        await send_mail(smtp.port, raw, sender="", to=[address])

    assert refused.value.code == 554
    assert "no From address" in refused.value.message
    assert await stored_count(sessionmaker, tenant, "<no-from@example.org>") == 0


async def test_a_message_over_the_size_limit_is_refused(
    client: httpx.AsyncClient, tenant: TenantHandle, smtp: SmtpServer
) -> None:
    _channel_id, address = await email_channel(client, tenant)
    ehlo = await _ehlo(smtp.port)
    assert "SIZE 26214400" in ehlo

    raw = email_bytes(
        sender="ana@example.org", to=address, subject="grande", text="x" * (26 * 1024 * 1024)
    )
    with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
        await send_mail(smtp.port, raw, to=[address])

    assert refused.value.code == 552
    assert await conversations(client, tenant) == []


async def _ehlo(port: int) -> str:
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=10)
    await smtp.connect()
    response = await smtp.ehlo()
    await smtp.quit()
    return response.message


async def test_an_auto_reply_is_stored_and_marked(
    client: httpx.AsyncClient, tenant: TenantHandle, smtp: SmtpServer
) -> None:
    _channel_id, address = await email_channel(client, tenant)
    raw = email_bytes(
        sender="ana@example.org",
        to=address,
        subject="Fuera de la oficina",
        text="Estoy de vacaciones hasta el lunes.",
        message_id="<ooo-1@example.org>",
        headers={"Auto-Submitted": "auto-replied"},
    )

    await send_mail(smtp.port, raw, sender="", to=[address])

    [conversation] = await conversations(client, tenant)
    [message] = await messages(client, tenant, conversation["id"])
    assert message["text"] == "Estoy de vacaciones hasta el lunes."
    assert message["data"]["auto_submitted"] == "auto-replied"


async def test_a_database_outage_is_a_temporary_failure(tmp_path: Path) -> None:
    # A database that cannot be opened: the sender is told to try again later (4xx), so
    # the mail stays in its queue instead of being lost or bounced.
    broken = make_engine(f"sqlite+aiosqlite:///{tmp_path}/missing/dir/hilos.db")
    server = await start_smtp_server(
        engine=broken,
        sessionmaker=make_sessionmaker(broken),
        wakeup=lambda: None,
        host="127.0.0.1",
        port=0,
        hostname="mx.hilos.test",
    )
    try:
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
            await send_mail(server.port, SAMPLE, to=[unique_address()])
        [recipient] = refused.value.recipients
        assert recipient.code == 451
    finally:
        await server.close()
        await broken.dispose()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_the_app_serves_smtp_when_asked(
    engine: Any,
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    # ``hilos serve`` builds the app with run_smtp=True: its lifespan listens on
    # HILOS_SMTP_HOST:HILOS_SMTP_PORT and stops listening when the app stops.
    port = _free_port()
    settings = Settings(
        database_url=str(engine.url), bus_url="memory://", smtp_host="127.0.0.1", smtp_port=port
    )
    served = create_app(settings, engine=engine, bus=InProcessBus(), run_smtp=True)
    _channel_id, address = await email_channel(client, tenant)

    async with served.router.lifespan_context(served):
        await send_mail(port, SAMPLE, to=[address])

    assert await stored_count(sessionmaker, tenant, SAMPLE_ID) == 1
    with pytest.raises(aiosmtplib.SMTPConnectError):
        await send_mail(port, SAMPLE, to=[address])
