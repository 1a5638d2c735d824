"""Known senders' messages arriving at once are stored together on PostgreSQL (one statement
for many, ``inbound_pg.InboundBatcher``) with exactly the outcome of storing them one by one:
each message once, the conversation brought up to date, one event each, redeliveries answered
with the first ids, and a batch that fails writing nothing while its messages are stored alone.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from hilos.conversations import inbound_pg
from hilos.conversations.models import Conversation, Message
from hilos.core.models import OutboxEvent
from hilos.customers.identities import normalize
from tests.conftest import TenantHandle, add_channel, inbound


@pytest.fixture
def postgres_only(engine: AsyncEngine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("the batched statement is PostgreSQL's (SQLite stores one by one)")


async def counts(
    sessionmaker: async_sessionmaker[AsyncSession], tenant: TenantHandle
) -> tuple[int, int]:
    async with sessionmaker() as session:
        messages = await session.scalar(
            select(func.count()).select_from(Message).where(Message.tenant_id == tenant.id)
        )
        events = await session.scalar(
            select(func.count())
            .select_from(OutboxEvent)
            .where(OutboxEvent.tenant_id == tenant.id, OutboxEvent.topic == "message.received")
        )
    return int(messages or 0), int(events or 0)


def known_sender(
    tenant: TenantHandle,
    *,
    channel_id: str,
    sender: str,
    external_id: str,
    channel_kind: str = "whatsapp",
    sender_kind: str = "whatsapp",
    text: str = "hola",
) -> inbound_pg.KnownSenderMessage:
    """A message for the batcher from a sender the tenant knows."""
    return inbound_pg.KnownSenderMessage(
        tenant_id=tenant.id,
        channel_id=channel_id,
        channel_kind=channel_kind,
        sender_kind=sender_kind,
        sender_value=normalize(sender_kind, sender, region="ES"),
        external_id=external_id,
        text=text,
        attachments=[],
        sent_at=datetime(2026, 11, 20, 10, 0, tzinfo=UTC),
        extra_identities=(),
    )


async def first_messages(
    client: httpx.AsyncClient, tenant: TenantHandle, channel_id: str, senders: list[str]
) -> dict[str, dict[str, Any]]:
    """Each sender's first WhatsApp message, one by one: known senders with a conversation."""
    firsts = {}
    for sender in senders:
        first = await inbound(
            client,
            tenant,
            channel_id=channel_id,
            external_id=f"{sender}-0",
            kind="whatsapp",
            value=sender,
        )
        assert first.status_code == 200, first.text
        firsts[sender] = first.json()
    return firsts


async def test_messages_arriving_at_once_are_stored_together_each_once(
    postgres_only: None,
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    whatsapp = await add_channel(client, tenant, "whatsapp")
    senders = [f"3466500{n:04d}" for n in range(8)]
    firsts = await first_messages(client, tenant, whatsapp, senders)
    batches_before = inbound_pg.batcher_for(engine).batches_stored

    # Five messages from each sender at once, the third of each delivered twice.
    calls = [
        inbound(
            client,
            tenant,
            channel_id=whatsapp,
            external_id=f"{sender}-{n}",
            kind="whatsapp",
            value=sender,
            text=f"mensaje {n}",
        )
        for sender in senders
        for n in (1, 2, 3, 3, 4, 5)
    ]
    answers = await asyncio.gather(*calls)
    assert all(answer.status_code == 200 for answer in answers), answers

    batches = inbound_pg.batcher_for(engine).batches_stored - batches_before
    assert 0 < batches < len(calls), "messages that arrive together share statements"
    by_external: dict[str, list[dict[str, Any]]] = {}
    for call_answer, (sender, n) in zip(
        answers, [(s, n) for s in senders for n in (1, 2, 3, 3, 4, 5)], strict=True
    ):
        body = call_answer.json()
        assert body["conversation_id"] == firsts[sender]["conversation_id"]
        assert body["customer_id"] == firsts[sender]["customer_id"]
        by_external.setdefault(f"{sender}-{n}", []).append(body)
    for external_id, bodies in by_external.items():
        # The redelivery answers the first delivery's message id.
        assert len({body["message_id"] for body in bodies}) == 1, external_id
        if len(bodies) == 2:
            assert sorted(body["duplicate"] for body in bodies) == [False, True]
    assert await counts(sessionmaker, tenant) == (len(senders) * 6, len(senders) * 6)

    async with sessionmaker() as session:
        conversation = await session.get(Conversation, firsts[senders[0]]["conversation_id"])
        assert conversation is not None
        latest = await session.scalar(
            select(func.max(Message.created_at)).where(Message.conversation_id == conversation.id)
        )
    assert conversation.last_message_at == latest
    assert conversation.channel_ids == [whatsapp]


async def test_one_conversation_written_on_two_channels_in_one_batch_keeps_both(
    postgres_only: None,
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    whatsapp = await add_channel(client, tenant, "whatsapp")
    sms = await add_channel(client, tenant, "sms")
    first = await inbound(
        client, tenant, channel_id=whatsapp, external_id="w0", kind="phone", value="+34655000111"
    )
    assert first.status_code == 200, first.text
    # Read once so this process knows the SMS channel's kind (the batch needs it).
    warm = await inbound(
        client, tenant, channel_id=sms, external_id="s0", kind="phone", value="+34655000111"
    )
    assert warm.status_code == 200, warm.text
    conversation_id = first.json()["conversation_id"]
    async with sessionmaker() as session, session.begin():
        row = await session.get(Conversation, conversation_id)
        assert row is not None
        row.channel_ids = [whatsapp]

    batcher = inbound_pg.InboundBatcher(engine, in_flight=1)
    receipts = await asyncio.gather(
        *(
            batcher.store(
                known_sender(
                    tenant,
                    channel_id=channel,
                    channel_kind=kind,
                    sender_kind="phone",
                    sender="+34655000111",
                    external_id=external_id,
                )
            )
            for channel, kind, external_id in (
                (whatsapp, "whatsapp", "w1"),
                (sms, "sms", "s1"),
                (whatsapp, "whatsapp", "w2"),
            )
        )
    )
    assert all(r is not None and r.conversation_id == conversation_id for r in receipts)
    assert batcher.batches_stored == 1
    async with sessionmaker() as session:
        row = await session.get(Conversation, conversation_id)
        assert row is not None
        assert sorted(row.channel_ids) == sorted([whatsapp, sms])
        assert row.last_channel_id == whatsapp, "the latest message's channel"


async def test_a_batch_that_fails_writes_nothing_and_says_so(
    postgres_only: None,
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    whatsapp = await add_channel(client, tenant, "whatsapp")
    await first_messages(client, tenant, whatsapp, ["34655000201", "34655000202"])
    before = await counts(sessionmaker, tenant)
    # One batch at a time: both messages wait for, and go in, the same statement.
    batcher = inbound_pg.InboundBatcher(engine, in_flight=1)

    def message(sender: str, text: str) -> inbound_pg.KnownSenderMessage:
        return known_sender(
            tenant, channel_id=whatsapp, sender=sender, external_id=f"{sender}-bad", text=text
        )

    # PostgreSQL refuses a NUL character in text: the whole statement, and so the good
    # message beside it, writes nothing; each request then stores its message alone.
    outcomes = await asyncio.gather(
        batcher.store(message("34655000201", "bien")),
        batcher.store(message("34655000202", "mal\x00")),
        return_exceptions=True,
    )
    assert all(isinstance(outcome, inbound_pg.BatchFailed) for outcome in outcomes), outcomes
    assert await counts(sessionmaker, tenant) == before

    # The batcher goes on working after a failed batch.
    receipt = await batcher.store(message("34655000201", "bien"))
    assert receipt is not None
    assert receipt.message_id is not None
    assert await counts(sessionmaker, tenant) == (before[0] + 1, before[1] + 1)


async def test_the_batch_statement_is_planned_once_and_the_pool_gets_its_connection_back_as_it_was(
    postgres_only: None,
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    engine: AsyncEngine,
) -> None:
    whatsapp = await add_channel(client, tenant, "whatsapp")
    senders = [f"3466510{n:04d}" for n in range(3)]
    await first_messages(client, tenant, whatsapp, senders)
    # One connection, so that the batcher's statements and the checks below share it.
    single = create_async_engine(engine.url, pool_size=1, max_overflow=0)
    try:
        batcher = inbound_pg.InboundBatcher(single, in_flight=1)
        for round_ in range(8):
            receipts = await asyncio.gather(
                *(
                    batcher.store(
                        known_sender(
                            tenant,
                            channel_id=whatsapp,
                            sender=sender,
                            external_id=f"{sender}-plan-{round_}",
                        )
                    )
                    # Batches of different sizes, which PostgreSQL would plan one by one.
                    for sender in senders[: 1 + round_ % len(senders)]
                )
            )
            assert all(r is not None and r.message_id is not None for r in receipts)
        async with single.connect() as connection:
            mode = await connection.exec_driver_sql("SHOW plan_cache_mode")
            assert mode.scalar() == "auto", "the setting stays with the batcher"
            plans = (
                await connection.exec_driver_sql(
                    "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                    " WHERE statement ~ '^\\s*WITH inbound AS'"
                )
            ).one()
        assert plans.generic_plans == 8
        assert plans.custom_plans == 0
    finally:
        await single.dispose()
