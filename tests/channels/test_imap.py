"""Polling a mailbox over IMAP: against a real IMAP server (pymap, in memory)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.channels.models import ChannelState
from tests.channels.conftest import add_configured_channel, messages
from tests.channels.email_fakes import Mailbox, email_bytes, unique_address
from tests.conftest import TenantHandle

SAMPLES = Path(__file__).resolve().parent / "samples"
SAMPLE = (SAMPLES / "email-reply.eml").read_bytes()


@pytest.fixture
async def mailbox() -> AsyncIterator[Mailbox]:
    server = Mailbox()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def channels_made(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> AsyncIterator[list[str]]:
    """Channels a test creates, disabled afterwards: the worker polls every tenant's
    mailboxes, and other tests should not find this test's (closed) mail server."""
    made: list[str] = []
    yield made
    for channel_id in made:
        await client.patch(
            f"/v1/channels/{channel_id}", json={"disabled": True}, headers=tenant.headers
        )


async def imap_channel(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    mailbox: Mailbox,
    made: list[str],
    **extra: Any,
) -> str:
    channel_id = await add_configured_channel(
        client, tenant, "email", mailbox.config_for(unique_address(), **extra)
    )
    made.append(channel_id)
    return channel_id


def mail(number: int, **extra: Any) -> bytes:
    return email_bytes(
        sender="ana@example.org",
        to="tienda@tienda.example",
        subject=f"Consulta {number}",
        text=f"Pregunta número {number}",
        message_id=f"<consulta-{number}@example.org>",
        sender_name="Ana",
        **extra,
    )


async def all_texts(client: httpx.AsyncClient, tenant: TenantHandle) -> list[str]:
    listed = (await client.get("/v1/conversations", headers=tenant.headers)).json()["items"]
    texts: list[str] = []
    for conversation in listed:
        texts.extend(m["text"] for m in await messages(client, tenant, conversation["id"]))
    return sorted(texts)


async def state_of(
    sessionmaker: async_sessionmaker[AsyncSession], channel_id: str
) -> dict[str, Any]:
    async with sessionmaker() as session:
        row = await session.get(ChannelState, channel_id)
        assert row is not None
        return dict(row.state)


async def test_new_mail_is_read_once_and_the_mailbox_is_polled_at_its_pace(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    app: Any,
    mailbox: Mailbox,
    frozen_clock: Any,
    channels_made: list[str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await mailbox.deliver(SAMPLE)
    await mailbox.deliver(mail(1))
    channel_id = await imap_channel(client, tenant, mailbox, channels_made, imap_poll_seconds=120)

    await app.state.worker.run_once()

    assert await all_texts(client, tenant) == [
        "Perfecto, la llevo mañana a la tienda de Triana. Adjunto el ticket.\n\nRosa",
        "Pregunta número 1",
    ]
    state = await state_of(sessionmaker, channel_id)
    assert state["uidvalidity"] == await mailbox.uid_validity()
    first_last_uid = state["last_uid"]

    # New mail, but the mailbox was polled a minute ago: it waits for the next poll.
    await mailbox.deliver(mail(2))
    frozen_clock.advance(seconds=60)
    await app.state.worker.run_once()
    assert "Pregunta número 2" not in await all_texts(client, tenant)

    frozen_clock.advance(seconds=61)
    await app.state.worker.run_once()
    texts = await all_texts(client, tenant)
    assert "Pregunta número 2" in texts
    assert len(texts) == 3
    assert (await state_of(sessionmaker, channel_id))["last_uid"] > first_last_uid

    # Nothing new: another poll stores nothing again.
    frozen_clock.advance(seconds=121)
    await app.state.worker.run_once()
    assert len(await all_texts(client, tenant)) == 3


async def test_a_new_uidvalidity_rereads_the_mailbox_without_duplicates(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    app: Any,
    mailbox: Mailbox,
    frozen_clock: Any,
    channels_made: list[str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await mailbox.deliver(mail(1))
    await mailbox.deliver(mail(2))
    channel_id = await imap_channel(client, tenant, mailbox, channels_made)
    await app.state.worker.run_once()
    old_validity = (await state_of(sessionmaker, channel_id))["uidvalidity"]

    # The server rebuilt the mailbox: UIDs start again and mean other messages now.
    mailbox.recreate_inbox()
    await mailbox.deliver(mail(2))
    await mailbox.deliver(mail(3))
    frozen_clock.advance(seconds=61)
    await app.state.worker.run_once()

    assert await all_texts(client, tenant) == [
        "Pregunta número 1",
        "Pregunta número 2",
        "Pregunta número 3",
    ]
    state = await state_of(sessionmaker, channel_id)
    assert state["uidvalidity"] == await mailbox.uid_validity() != old_validity


async def test_a_mailbox_that_refuses_the_login_does_not_stop_the_worker(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    app: Any,
    mailbox: Mailbox,
    frozen_clock: Any,
    channels_made: list[str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await mailbox.deliver(mail(1))
    wrong = await imap_channel(
        client, tenant, mailbox, channels_made, imap_password="not-the-password"
    )
    right = await imap_channel(client, tenant, mailbox, channels_made)

    done = await app.state.worker.run_once()

    assert done["mail_read"] >= 1
    assert "LOGIN failed" in (await state_of(sessionmaker, wrong))["last_error"]
    assert "last_error" not in await state_of(sessionmaker, right)
    assert await all_texts(client, tenant) == ["Pregunta número 1"]
