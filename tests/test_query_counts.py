"""Hot paths run a fixed, small number of SQL statements, whatever the data behind them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import httpx
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import TenantHandle, add_channel, identify, inbound


@contextlib.contextmanager
def statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """Collect the SQL statements run on ``engine``, transaction control left out."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if (
            not statement.lstrip()
            .upper()
            .startswith(("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE"))
        ):
            seen.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


async def test_an_inbound_message_from_a_known_customer_takes_few_statements(
    client: httpx.AsyncClient, tenant: TenantHandle, engine: AsyncEngine
) -> None:
    """Six statements for a new sender and five for a known one on SQLite. On PostgreSQL one
    statement of data-modifying CTEs does each, sent to asyncpg directly: SQLAlchemy sees none."""
    channel = await add_channel(client, tenant, "whatsapp")
    await inbound(
        client,
        tenant,
        channel_id=channel,
        external_id="other",
        kind="whatsapp",
        value="34600700801",
    )
    with statements(engine) as first_message:
        await inbound(
            client,
            tenant,
            channel_id=channel,
            external_id="warm-up",
            kind="whatsapp",
            value="34600700800",
        )
    assert len(first_message) == (0 if engine.dialect.name == "postgresql" else 6), first_message
    with statements(engine) as seen:
        response = await inbound(
            client,
            tenant,
            channel_id=channel,
            external_id="second",
            kind="whatsapp",
            value="34600700800",
        )
    assert response.status_code == 200
    expected = 0 if engine.dialect.name == "postgresql" else 5
    assert len(seen) == expected, seen
    with statements(engine) as again:
        duplicate = await inbound(
            client,
            tenant,
            channel_id=channel,
            external_id="second",
            kind="whatsapp",
            value="34600700800",
        )
    assert duplicate.json()["duplicate"] is True
    assert duplicate.json()["message_id"] == response.json()["message_id"]
    assert len(again) <= expected + 1


async def test_the_360_view_does_not_grow_with_history(
    client: httpx.AsyncClient, tenant: TenantHandle, engine: AsyncEngine
) -> None:
    kinds = ("whatsapp", "email", "sms")
    channels = {kind: await add_channel(client, tenant, kind) for kind in kinds}
    customer = await identify(
        client,
        tenant,
        ("whatsapp", "34600900900"),
        ("email", "h@example.es"),
        ("phone", "+34600900900"),
    )
    url = f"/v1/customers/{customer['customer_id']}"
    await inbound(
        client,
        tenant,
        channel_id=channels["whatsapp"],
        external_id="m0",
        kind="whatsapp",
        value="34600900900",
    )
    with statements(engine) as small:
        assert (await client.get(url, headers=tenant.headers)).status_code == 200
    values = {"whatsapp": "34600900900", "email": "h@example.es", "sms": "+34600900900"}
    for n in range(30):
        kind = kinds[n % 3]
        identity_kind = "phone" if kind == "sms" else kind
        await inbound(
            client,
            tenant,
            channel_id=channels[kind],
            external_id=f"m{n + 1}",
            kind=identity_kind,
            value=values[kind],
        )
    await client.post(
        f"{url}/consents",
        json={"purpose": "marketing", "channel_kind": "email", "granted": True},
        headers=tenant.headers,
    )
    with statements(engine) as large:
        view = await client.get(url, headers=tenant.headers)
    assert {item["channel_kind"] for item in view.json()["timeline"]} == set(kinds)
    # The open cart with its lines, the loyalty summary, the latest orders and the journeys
    # are one statement each of the twelve, and so is the recommendations' catalog (empty
    # here: see tests/engagement/test_recommend.py for a shop's).
    assert 5 <= len(large) == len(small) <= 12, large
