"""``hilos demo`` builds a tenant the real API can show: every channel, 200 customers, histories
that cross channels; a second run reuses it, ``reset`` rebuilds it.

The demo writes to its own SQLite file (it creates "Tienda Demo" by name, so it must not share
the suite's database) and is checked only through HTTP, the way a person trying Hilos sees it.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console
from sqlalchemy import func, select

from hilos.app import create_app
from hilos.channels.kinds import CHANNEL_KINDS
from hilos.core.db import make_engine, make_sessionmaker
from hilos.core.models import Tenant
from hilos.core.settings import Settings
from hilos.demo import (
    DEMO_PASSWORD,
    DEMO_TENANT_NAME,
    POSSIBLE_DUPLICATES,
    DemoInfo,
    run_demo,
)
from hilos.matching import online
from hilos.migrate import upgrade


@dataclass
class DemoDatabase:
    settings: Settings
    output: io.StringIO

    async def run(self, *, reset: bool = False, customer_count: int = 200) -> DemoInfo:
        console = Console(file=self.output, width=120)
        return await run_demo(
            self.settings, reset=reset, console=console, customer_count=customer_count
        )

    @asynccontextmanager
    async def client(self, info: DemoInfo) -> AsyncIterator[httpx.AsyncClient]:
        """A client of a fresh app (no API key cached from an earlier run)."""
        engine = make_engine(self.settings.database_url)
        app = create_app(self.settings, engine=engine)
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {info.api_key}"}
        try:
            async with httpx.AsyncClient(
                transport=transport, base_url="http://hilos.test", headers=headers
            ) as client:
                yield client
        finally:
            await engine.dispose()

    async def demo_tenant_count(self) -> int:
        engine = make_engine(self.settings.database_url)
        try:
            async with engine.connect() as connection:
                statement = select(func.count()).where(Tenant.name == DEMO_TENANT_NAME)
                return int((await connection.execute(statement)).scalar_one())
        finally:
            await engine.dispose()


async def new_database(path: Path) -> DemoDatabase:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{path}", bus_url="memory://")
    engine = make_engine(settings.database_url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
    return DemoDatabase(settings=settings, output=io.StringIO())


@pytest.fixture(scope="module")
async def full_demo(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[DemoDatabase, DemoInfo]:
    database = await new_database(tmp_path_factory.mktemp("demo") / "demo.db")
    return database, await database.run()


async def all_pages(client: httpx.AsyncClient, path: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 200, **({"cursor": cursor} if cursor else {})}
        response = await client.get(path, params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items


async def test_demo_tenant_has_a_channel_of_every_kind_and_its_staff(
    full_demo: tuple[DemoDatabase, DemoInfo],
) -> None:
    database, info = full_demo
    async with database.client(info) as client:
        tenant = (await client.get("/v1/tenant")).json()
        channels = (await client.get("/v1/channels")).json()
        users = (await client.get("/v1/users")).json()
    assert tenant["id"] == info.tenant_id
    assert tenant["name"] == DEMO_TENANT_NAME
    assert {channel["kind"] for channel in channels} == set(CHANNEL_KINDS)
    assert {c["name"] for c in channels} >= {"Tienda Madrid Centro", "Tienda Sevilla"}
    roles = sorted(user["role"] for user in users)
    assert roles == ["admin", "agent", "agent", "agent", "supervisor"]
    assert info.login_email in {user["email"] for user in users}
    assert info.login_password == DEMO_PASSWORD


async def test_demo_customers_have_histories_across_channels(
    full_demo: tuple[DemoDatabase, DemoInfo],
) -> None:
    database, info = full_demo
    async with database.client(info) as client:
        customers = await all_pages(client, "/v1/customers")
        conversations = await all_pages(client, "/v1/conversations")
        crossing = [
            c for c in conversations if len({channel["kind"] for channel in c["channels"]}) >= 2
        ]
        assert crossing, "no conversation crosses channels"
        view = (await client.get(f"/v1/customers/{crossing[0]['customer_id']}")).json()

    assert len(customers) >= 150
    assert len({c["id"] for c in customers}) == len(customers)
    names = " ".join(c["name"] or "" for c in customers)
    assert any(letter in names for letter in "áéíóúñÁÉÍÓÚÑ")
    phones = [i["value"] for c in customers for i in c["identities"] if i["kind"] == "phone"]
    assert any(p.startswith("+346") for p in phones)
    assert any(p.startswith("+52") for p in phones)

    assert {c["status"] for c in conversations} >= {"open", "pending", "resolved"}
    message_kinds = {item["channel_kind"] for item in view["timeline"] if item["type"] == "message"}
    assert len(message_kinds) >= 2, view["timeline"]
    assert len(view["identities"]) >= 2


async def test_demo_shop_sells_in_every_channel_without_overselling(
    full_demo: tuple[DemoDatabase, DemoInfo],
) -> None:
    database, info = full_demo
    async with database.client(info) as client:
        products = (await client.get("/v1/products", params={"limit": 200})).json()
        locations = (await client.get("/v1/locations")).json()
        parity = (await client.get("/v1/price-parity")).json()
        orders = (await client.get("/v1/orders", params={"limit": 200})).json()
        returned = (await client.get(f"/v1/orders/{orders[-1]['id']}/returns")).json()
        availability = (
            await client.get(
                "/v1/availability",
                params={"sku": products[0]["variants"][0]["sku"], "channel": "web"},
            )
        ).json()
        program = await client.get("/v1/loyalty/program")

    assert len(products) == 10
    assert {location["kind"] for location in locations} == {"warehouse", "store"}
    assert {item["sku"].split("-")[0] for item in parity["items"]} == {"CHQ"}
    assert len(orders) >= 20
    assert {order["channel"] for order in orders} >= {"web", "app", "callcenter", "marketplace"}
    assert any(order["channel"].startswith("store:") for order in orders)
    assert {order["status"] for order in orders} >= {"placed", "shipped", "delivered"}
    assert [r["location"] for r in returned] == ["MAD-SOL"]
    assert availability["total"] > 0
    assert program.status_code == 200


async def test_second_run_keeps_one_tenant_and_prints_a_new_working_key(
    full_demo: tuple[DemoDatabase, DemoInfo],
) -> None:
    database, first = full_demo
    second = await database.run()

    assert second.tenant_id == first.tenant_id
    assert second.api_key != first.api_key
    assert await database.demo_tenant_count() == 1
    assert "already exists" in database.output.getvalue()
    for info in (first, second):
        async with database.client(info) as client:
            response = await client.get("/v1/tenant")
            assert response.status_code == 200
            assert response.json()["id"] == first.tenant_id


async def test_reset_recreates_the_same_demo(
    full_demo: tuple[DemoDatabase, DemoInfo], tmp_path: Path
) -> None:
    original, first = full_demo
    async with original.client(first) as client:
        everyone = await all_pages(client, "/v1/customers")
    # Reset a copy, so the other tests keep the full demo whatever order they run in.
    source = Path(original.settings.database_url.split("///", 1)[1])
    for suffix in ("", "-wal"):
        if Path(f"{source}{suffix}").exists():
            shutil.copy(f"{source}{suffix}", tmp_path / f"demo.db{suffix}")
    database = DemoDatabase(
        settings=Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}"),
        output=io.StringIO(),
    )

    again = await database.run(reset=True, customer_count=20)

    assert again.tenant_id != first.tenant_id
    assert await database.demo_tenant_count() == 1
    async with database.client(first) as client:
        assert (await client.get("/v1/tenant")).status_code == 401
    async with database.client(again) as client:
        rebuilt = sorted(await all_pages(client, "/v1/customers"), key=lambda c: c["id"])
    # Seeded: the smaller demo brings back the same people with the same addresses.
    assert len(rebuilt) == 20 + len(POSSIBLE_DUPLICATES)
    assert {who(c) for c in rebuilt} <= {who(c) for c in everyone}


def who(customer: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    return customer["name"], tuple(sorted(i["value"] for i in customer["identities"]))


async def test_the_worker_finds_the_demos_possible_duplicates(
    full_demo: tuple[DemoDatabase, DemoInfo],
) -> None:
    database, info = full_demo
    engine = make_engine(database.settings.database_url)
    try:
        sessionmaker = make_sessionmaker(engine)
        # What the worker's matching stage does on its first passes over the demo.
        while (await online.check_due(sessionmaker, settle_seconds=0))["matching_checked"]:
            pass
    finally:
        await engine.dispose()
    async with database.client(info) as client:
        pending = await all_pages(client, "/v1/match-suggestions")
        names = {c["id"]: c["name"] for c in await all_pages(client, "/v1/customers") if c["name"]}
    pairs = {
        frozenset((names.get(s["left_customer_id"]), names.get(s["right_customer_id"])))
        for s in pending
    }
    # The store's and the web's María José, and the father and son (for a person to reject).
    assert frozenset(("María José Fernández", "Mª José Fernandez Ruiz")) in pairs
    assert frozenset(("José Luis García Pérez",)) in pairs
