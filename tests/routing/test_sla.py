"""SLA policies on conversations: due dates in business hours, pauses, warnings and breaches
fired once by the worker, timers that outlive the worker, and the API's validation."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from hilos.core import clock
from hilos.core.bus import InProcessBus
from hilos.core.db import make_engine, make_sessionmaker
from hilos.core.models import OutboxEvent
from hilos.core.outbox import relay
from hilos.routing import sla
from hilos.worker import Worker
from tests.conftest import TenantHandle, add_channel, identify, inbound

MADRID = ZoneInfo("Europe/Madrid")
SHOP_HOURS = {
    "timezone": "Europe/Madrid",
    "weekly": {
        **{day: [["09:00", "14:00"], ["16:00", "19:00"]] for day in ("mon", "tue", "wed")},
        **{day: [["09:00", "14:00"], ["16:00", "19:00"]] for day in ("thu", "fri")},
        "sat": [["10:00", "14:00"]],
    },
    "holidays": ["2026-12-25"],
}


def madrid(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=MADRID).astimezone(UTC)  # type: ignore[misc]


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def frozen() -> Iterator[Clock]:
    moment = Clock()
    clock.set_now(lambda: moment.now)
    yield moment
    clock.set_now(None)


def refuse_everything(request: httpx.Request) -> httpx.Response:
    return httpx.Response(503, json={"error": "the provider is a test double"})


class Desk:
    """One tenant's API-channel conversations, driven through the public API, and the part of
    the worker's round that concerns SLAs (due timers, then the outbox relay)."""

    def __init__(
        self, client: httpx.AsyncClient, tenant: TenantHandle, app: Any, channel: str
    ) -> None:
        self.client, self.tenant, self.app, self.channel = client, tenant, app, channel
        self._count = 0

    async def run_worker(self) -> int:
        fired = await sla.fire_due(self.app.state.sessionmaker)
        while await relay(self.app.state.sessionmaker, self.app.state.bus):
            pass
        return fired

    async def customer_writes(self, customer: str, kind: str = "external") -> str:
        self._count += 1
        response = await inbound(
            self.client,
            self.tenant,
            channel_id=self.channel,
            external_id=f"m{self._count}-{customer}",
            kind=kind,
            value=customer,
        )
        assert response.status_code == 200, response.text
        await self.run_worker()
        conversation_id: str = response.json()["conversation_id"]
        return conversation_id

    async def agent_replies(self, conversation_id: str, *, private: bool = False) -> None:
        response = await self.client.post(
            f"/v1/conversations/{conversation_id}/messages",
            json={"text": "Le ayudo", "private": private},
            headers=self.tenant.headers,
        )
        assert response.status_code == 201, response.text
        await self.run_worker()

    async def set_status(self, conversation_id: str, status: str) -> None:
        response = await self.client.patch(
            f"/v1/conversations/{conversation_id}",
            json={"status": status},
            headers=self.tenant.headers,
        )
        assert response.status_code == 200, response.text
        await self.run_worker()

    async def sla(self, conversation_id: str) -> dict[str, Any]:
        response = await self.client.get(
            f"/v1/conversations/{conversation_id}", headers=self.tenant.headers
        )
        assert response.status_code == 200, response.text
        sla: dict[str, Any] = response.json()["sla"]
        return sla

    async def policy(self, **body: Any) -> str:
        response = await self.client.post(
            "/v1/sla-policies",
            json={"name": f"policy {body}", **body},
            headers=self.tenant.headers,
        )
        assert response.status_code == 201, response.text
        policy_id: str = response.json()["id"]
        return policy_id


@pytest.fixture
async def desk(client: httpx.AsyncClient, tenant: TenantHandle, app: Any) -> Desk:
    return Desk(client, tenant, app, await add_channel(client, tenant, "api"))


async def sla_events(
    sessionmaker: async_sessionmaker[AsyncSession], conversation_id: str
) -> list[tuple[str, str]]:
    async with sessionmaker() as session:
        rows = (
            await session.execute(
                select(OutboxEvent)
                .where(OutboxEvent.topic.in_(("sla.warning", "sla.breached")))
                .order_by(OutboxEvent.id)
            )
        ).scalars()
        return [
            (row.topic, row.payload["target"])
            for row in rows
            if row.payload["conversation_id"] == conversation_id
        ]


def parse(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).astimezone(UTC)


@pytest.mark.parametrize(
    ("opened", "target", "due", "why"),
    [
        (madrid(2026, 11, 23, 13, 0), 2 * 3600, madrid(2026, 11, 23, 17, 0), "lunch skipped"),
        (madrid(2026, 11, 23, 18, 30), 3600, madrid(2026, 11, 24, 9, 30), "night skipped"),
        (madrid(2026, 11, 22, 12, 0), 1800, madrid(2026, 11, 23, 9, 30), "closed Sunday"),
        (madrid(2026, 12, 24, 18, 0), 2 * 3600, madrid(2026, 12, 26, 11, 0), "Christmas"),
        (madrid(2026, 3, 28, 13, 0), 2 * 3600, madrid(2026, 3, 30, 10, 0), "spring forward"),
        (madrid(2026, 10, 24, 13, 0), 2 * 3600, madrid(2026, 10, 26, 10, 0), "fall back"),
    ],
)
async def test_first_response_due_counts_the_tenants_business_hours(
    desk: Desk,
    frozen: Clock,
    opened: datetime,
    target: int,
    due: datetime,
    why: str,
) -> None:
    hours = await desk.client.put(
        "/v1/business-hours", json=SHOP_HOURS, headers=desk.tenant.headers
    )
    assert hours.status_code == 200, hours.text
    await desk.policy(first_response_seconds=target, business_hours=True)
    frozen.now = opened
    conversation = await desk.customer_writes("c-1")
    sla = await desk.sla(conversation)
    assert parse(sla["first_response_due_at"]) == due, why
    assert sla["state"] == "ok"
    assert sla["remaining_seconds"] == target
    # Around the clock the same target would fall due at wall-clock time.
    assert due != opened + timedelta(seconds=target)


async def test_a_first_response_in_time_is_met_and_a_late_one_is_breached(
    desk: Desk, frozen: Clock, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await desk.policy(first_response_seconds=600)
    start = frozen.now
    on_time = await desk.customer_writes("on-time")
    late = await desk.customer_writes("late")
    assert parse((await desk.sla(on_time))["first_response_due_at"]) == start + timedelta(
        minutes=10
    )

    frozen.advance(minutes=5)
    await desk.agent_replies(on_time, private=True)  # a private note answers nobody
    assert (await desk.sla(on_time))["first_responded_at"] is None
    await desk.agent_replies(on_time)
    frozen.advance(minutes=6)
    await desk.run_worker()

    met = await desk.sla(on_time)
    assert parse(met["first_responded_at"]) == start + timedelta(minutes=5)
    assert (met["state"], met["breached"], met["remaining_seconds"]) == ("met", False, None)
    assert await sla_events(sessionmaker, on_time) == []  # answered before the 80 % warning

    broken = await desk.sla(late)
    assert (broken["state"], broken["breached"], broken["remaining_seconds"]) == (
        "breached",
        True,
        -60,
    )
    # The worker did not run between the warning (8 min) and the due time: only the breach
    # goes out, as a warning about a promise already broken would be noise.
    assert await sla_events(sessionmaker, late) == [("sla.breached", "first_response")]
    # Answering late does not undo the breach.
    await desk.agent_replies(late)
    answered = await desk.sla(late)
    assert (answered["state"], answered["breached"]) == ("breached", True)
    assert answered["first_responded_at"] is not None


async def test_a_reply_in_time_counts_even_when_the_worker_gets_to_it_after_the_due_time(
    desk: Desk, frozen: Clock, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await desk.policy(first_response_seconds=600)
    conversation = await desk.customer_writes("just-in-time")
    frozen.advance(minutes=9, seconds=59)
    replied = await desk.client.post(
        f"/v1/conversations/{conversation}/messages",
        json={"text": "Aquí estoy"},
        headers=desk.tenant.headers,
    )
    assert replied.status_code == 201
    # The worker wakes up late: the timer is due, but the reply is still in the outbox.
    frozen.advance(minutes=5)
    # The 80 % warning (at 8 min) was due before the reply; the breach never was.
    await sla.fire_due(desk.app.state.sessionmaker)
    assert await sla_events(sessionmaker, conversation) == [("sla.warning", "first_response")]
    await desk.run_worker()
    await desk.run_worker()
    sla_now = await desk.sla(conversation)
    assert (sla_now["state"], sla_now["breached"]) == ("met", False)
    assert await sla_events(sessionmaker, conversation) == [("sla.warning", "first_response")]


async def test_warning_then_breach_each_once_however_often_the_worker_runs(
    desk: Desk, frozen: Clock, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await desk.policy(first_response_seconds=1000, warning_share=0.5)
    conversation = await desk.customer_writes("impatient")

    frozen.advance(seconds=499)
    await desk.run_worker()
    assert await sla_events(sessionmaker, conversation) == []
    assert (await desk.sla(conversation))["state"] == "ok"

    frozen.advance(seconds=1)
    await desk.run_worker()
    await desk.run_worker()
    assert await sla_events(sessionmaker, conversation) == [("sla.warning", "first_response")]
    warned = await desk.sla(conversation)
    assert (warned["state"], warned["remaining_seconds"]) == ("warning", 500)

    frozen.advance(seconds=500)
    for _ in range(3):
        await desk.run_worker()
    assert await sla_events(sessionmaker, conversation) == [
        ("sla.warning", "first_response"),
        ("sla.breached", "first_response"),
    ]


async def test_the_clock_stops_while_the_conversation_waits_on_the_customer(
    desk: Desk, frozen: Clock, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await desk.policy(first_response_seconds=3600, resolution_seconds=7200)
    start = frozen.now
    conversation = await desk.customer_writes("asks-for-a-photo")

    frozen.advance(minutes=10)
    await desk.set_status(conversation, "pending")
    frozen.advance(hours=2)  # past both targets on the wall clock
    await desk.run_worker()
    paused = await desk.sla(conversation)
    assert (paused["state"], paused["breached"]) == ("paused", False)
    assert paused["remaining_seconds"] == 50 * 60  # frozen where it stopped
    assert await sla_events(sessionmaker, conversation) == []

    # The customer answers: everything resumes with the time it had left.
    resumed_at = start + timedelta(hours=2, minutes=10)
    await desk.customer_writes("asks-for-a-photo")
    resumed = await desk.sla(conversation)
    assert resumed["state"] == "ok"
    assert parse(resumed["first_response_due_at"]) == resumed_at + timedelta(minutes=50)
    assert parse(resumed["resolution_due_at"]) == resumed_at + timedelta(minutes=110)

    # Pending again, then reopened by an agent: the same.
    frozen.advance(minutes=20)
    await desk.set_status(conversation, "pending")
    frozen.advance(hours=5)
    await desk.set_status(conversation, "open")
    again = await desk.sla(conversation)
    assert parse(again["first_response_due_at"]) == frozen.now + timedelta(minutes=30)
    assert await sla_events(sessionmaker, conversation) == []


async def test_a_pause_under_business_hours_keeps_the_open_time_left(
    desk: Desk, frozen: Clock
) -> None:
    await desk.client.put("/v1/business-hours", json=SHOP_HOURS, headers=desk.tenant.headers)
    await desk.policy(first_response_seconds=3 * 3600, business_hours=True)
    frozen.now = madrid(2026, 11, 23, 17, 0)  # Monday: 2 h left today, 1 h more on Tuesday
    conversation = await desk.customer_writes("night-owl")
    assert parse((await desk.sla(conversation))["first_response_due_at"]) == madrid(
        2026, 11, 24, 10, 0
    )
    frozen.now = madrid(2026, 11, 23, 18, 0)
    await desk.set_status(conversation, "pending")
    # Back on Wednesday at 12:00: the 2 open hours left run 12:00–14:00.
    frozen.now = madrid(2026, 11, 25, 12, 0)
    await desk.customer_writes("night-owl")
    sla = await desk.sla(conversation)
    assert parse(sla["first_response_due_at"]) == madrid(2026, 11, 25, 14, 0)
    assert sla["remaining_seconds"] == 2 * 3600


async def test_next_response_after_the_customer_writes_again(
    desk: Desk, frozen: Clock, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await desk.policy(first_response_seconds=600, next_response_seconds=300)
    conversation = await desk.customer_writes("chatty")
    frozen.advance(minutes=1)
    await desk.agent_replies(conversation)
    assert (await desk.sla(conversation))["next_response_due_at"] is None

    frozen.advance(minutes=1)
    wrote_again = frozen.now
    await desk.customer_writes("chatty")
    frozen.advance(minutes=1)
    await desk.customer_writes("chatty")  # writing more does not move the promise
    sla = await desk.sla(conversation)
    assert parse(sla["next_response_due_at"]) == wrote_again + timedelta(minutes=5)
    assert sla["remaining_seconds"] == 4 * 60

    frozen.advance(minutes=5)
    await desk.run_worker()
    assert ("sla.breached", "next_response") in await sla_events(sessionmaker, conversation)
    await desk.agent_replies(conversation)
    answered = await desk.sla(conversation)
    assert answered["next_response_due_at"] is None
    assert (answered["state"], answered["breached"]) == ("breached", True)


async def test_resolving_stops_the_clock_and_reopening_starts_a_new_one(
    desk: Desk, frozen: Clock, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await desk.policy(first_response_seconds=600, resolution_seconds=3600)
    conversation = await desk.customer_writes("quick-question")
    frozen.advance(minutes=3)
    await desk.agent_replies(conversation)
    await desk.set_status(conversation, "resolved")
    frozen.advance(hours=2)
    await desk.run_worker()
    done = await desk.sla(conversation)
    assert (done["state"], done["breached"]) == ("met", False)
    assert await sla_events(sessionmaker, conversation) == []

    # Within the reopen window the customer's next message reopens it: a fresh cycle.
    reopened_at = frozen.now
    assert await desk.customer_writes("quick-question") == conversation
    fresh = await desk.sla(conversation)
    assert fresh["state"] == "ok"
    assert fresh["first_responded_at"] is None
    assert parse(fresh["first_response_due_at"]) == reopened_at + timedelta(minutes=10)


async def test_a_conversation_merged_into_another_stops_its_clock(
    desk: Desk, frozen: Clock, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await desk.policy(first_response_seconds=600)
    kept = await desk.customer_writes("merge-a")
    folded = await desk.customer_writes("merge-b@example.com", kind="email")
    # The two profiles turn out to be one person: the newer conversation folds into the older.
    await identify(
        desk.client, desk.tenant, ("external", "merge-a"), ("email", "merge-b@example.com")
    )
    await desk.run_worker()
    frozen.advance(minutes=11)
    await desk.run_worker()
    assert await sla_events(sessionmaker, kept) == [("sla.breached", "first_response")]
    assert await sla_events(sessionmaker, folded) == []


async def test_timers_survive_a_restart_of_the_worker(
    desk: Desk, frozen: Clock, engine: AsyncEngine
) -> None:
    await desk.policy(first_response_seconds=900)
    conversation = await desk.customer_writes("patient")
    frozen.advance(minutes=16)

    # A new process: its own engine, sessions and worker, nothing in memory from the first.
    other_engine = make_engine(engine.url.render_as_string(hide_password=False))
    other_sessions = make_sessionmaker(other_engine)
    restarted = Worker(sessionmaker=other_sessions, bus=InProcessBus(), interval=1)
    restarted.http = httpx.AsyncClient(transport=httpx.MockTransport(refuse_everything))
    try:
        done = await restarted.run_once()
        assert done["sla_fired"] >= 1
        assert await sla_events(other_sessions, conversation) == [
            ("sla.breached", "first_response")
        ]
        await restarted.run_once()  # and fired once only
        assert await sla_events(other_sessions, conversation) == [
            ("sla.breached", "first_response")
        ]
    finally:
        await restarted.close()
        await other_engine.dispose()
    assert (await desk.sla(conversation))["breached"] is True


async def test_the_most_specific_policy_applies(
    client: httpx.AsyncClient, tenant: TenantHandle, desk: Desk, frozen: Clock
) -> None:
    everything = await desk.policy(first_response_seconds=3600)
    whatsapp = await desk.policy(first_response_seconds=300, channel_kinds=["whatsapp"])
    messaging = await desk.policy(first_response_seconds=600, channel_kinds=["whatsapp", "email"])
    await desk.policy(first_response_seconds=60, priority="urgent")  # not this priority
    email_channel = await add_channel(client, tenant, "email")
    whatsapp_channel = await add_channel(client, tenant, "whatsapp")

    async def policy_for(channel: str, kind: str, value: str) -> str | None:
        response = await inbound(
            client, tenant, channel_id=channel, external_id=f"x-{value}", kind=kind, value=value
        )
        await desk.run_worker()
        policy_id: str | None = (await desk.sla(response.json()["conversation_id"]))["policy_id"]
        return policy_id

    assert await policy_for(whatsapp_channel, "whatsapp", "34600111222") == whatsapp
    assert await policy_for(email_channel, "email", "ana@example.com") == messaging
    assert await policy_for(desk.channel, "external", "crm-7") == everything
    # A policy naming the priority beats one naming only the channel.
    normal = await desk.policy(first_response_seconds=120, priority="normal")
    assert await policy_for(whatsapp_channel, "whatsapp", "34600111333") == normal


async def test_without_a_policy_the_sla_is_empty_and_lists_show_it_too(
    desk: Desk, frozen: Clock
) -> None:
    conversation = await desk.customer_writes("no-promise")
    assert await desk.sla(conversation) == {
        "policy_id": None,
        "state": None,
        "breached": False,
        "remaining_seconds": None,
        "first_response_due_at": None,
        "first_responded_at": None,
        "next_response_due_at": None,
        "resolution_due_at": None,
    }
    await desk.policy(first_response_seconds=60)
    other = await desk.customer_writes("promised")
    page = await desk.client.get("/v1/conversations", headers=desk.tenant.headers)
    slas = {item["id"]: item["sla"] for item in page.json()["items"]}
    assert slas[other]["state"] == "ok"
    assert slas[conversation]["state"] is None


# --- the API --------------------------------------------------------------------------------


async def test_business_hours_round_trip(client: httpx.AsyncClient, tenant: TenantHandle) -> None:
    before = await client.get("/v1/business-hours", headers=tenant.headers)
    assert before.json()["configured"] is False
    assert before.json()["weekly"]["sun"] == [["00:00", "24:00"]]
    saved = await client.put(
        "/v1/business-hours",
        json={"weekly": {"mon": [["16:00", "19:00"], ["09:00", "14:00"]]}, "holidays": []},
        headers=tenant.headers,
    )
    assert saved.status_code == 200, saved.text
    body = saved.json()
    assert body["timezone"] == tenant.context.timezone  # null follows the tenant's zone
    assert body["weekly"]["mon"] == [["09:00", "14:00"], ["16:00", "19:00"]]
    assert body["weekly"]["tue"] == []
    assert (await client.get("/v1/business-hours", headers=tenant.headers)).json() == body


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"weekly": {"mon": [["25:00", "26:00"]]}}, "weekly.mon.0.0"),
        ({"weekly": {"mon": [["14:00", "09:00"]]}}, "weekly.mon.0"),
        ({"weekly": {"mon": [["09:00"]]}}, "weekly.mon.0"),
        ({"weekly": {"fri": [["09:00", "14:00"], ["12:00", "15:00"]]}}, "weekly.fri.1"),
        ({"weekly": {}}, "weekly"),
        ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"holidays": ["2026-13-01"]}, "holidays.0"),
        ({"weekly": {"monday": [["09:00", "14:00"]]}}, "weekly.monday"),
    ],
)
async def test_unusable_business_hours_are_refused_naming_the_field(
    client: httpx.AsyncClient, tenant: TenantHandle, change: dict[str, Any], field: str
) -> None:
    good = {"timezone": "Europe/Madrid", "weekly": {"mon": [["09:00", "14:00"]]}, "holidays": []}
    await client.put("/v1/business-hours", json=good, headers=tenant.headers)
    response = await client.put(
        "/v1/business-hours", json={**good, **change}, headers=tenant.headers
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"].startswith(field)
    kept = await client.get("/v1/business-hours", headers=tenant.headers)
    assert kept.json()["weekly"]["mon"] == [["09:00", "14:00"]]


async def test_policies_crud_and_another_tenants_policy_is_not_found(
    client: httpx.AsyncClient, tenant: TenantHandle, make_tenant: Any
) -> None:
    created = await client.post(
        "/v1/sla-policies",
        json={"name": "WhatsApp", "channel_kinds": ["whatsapp"], "first_response_seconds": 300},
        headers=tenant.headers,
    )
    assert created.status_code == 201, created.text
    policy = created.json()
    assert (policy["warning_share"], policy["business_hours"], policy["priority"]) == (
        0.8,
        False,
        None,
    )
    url = f"/v1/sla-policies/{policy['id']}"
    changed = await client.patch(
        url, json={"resolution_seconds": 86400, "priority": "high"}, headers=tenant.headers
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["resolution_seconds"], changed.json()["priority"]) == (86400, "high")
    listed = await client.get("/v1/sla-policies", headers=tenant.headers)
    assert [p["id"] for p in listed.json()["items"]] == [policy["id"]]

    other = await make_tenant("Otra tienda")
    for method in ("GET", "PATCH", "DELETE"):
        response = await client.request(
            method,
            url,
            headers=other.headers,
            **({"json": {"name": "mine now"}} if method == "PATCH" else {}),
        )
        assert response.status_code == 404, (method, response.text)
    assert (await client.get("/v1/sla-policies", headers=other.headers)).json()["items"] == []

    assert (await client.delete(url, headers=tenant.headers)).status_code == 204
    assert (await client.get(url, headers=tenant.headers)).status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"name": "nothing promised"}, 422, "first_response_seconds"),
        ({"name": "x", "first_response_seconds": 0}, 422, "first_response_seconds"),
        ({"name": "x", "first_response_seconds": 60, "warning_share": 1.5}, 422, "warning_share"),
        ({"name": "x", "first_response_seconds": 60, "priority": "asap"}, 422, "priority"),
        ({"name": "x", "first_response_seconds": 60, "channel_kinds": ["fax"]}, 422, "channel"),
        ({"name": "x", "first_response_seconds": 60, "channel_kinds": []}, 422, "channel_kinds"),
        ({"name": "", "first_response_seconds": 60}, 422, "name"),
    ],
)
async def test_bad_policies_are_refused_naming_the_field(
    client: httpx.AsyncClient, tenant: TenantHandle, body: dict[str, Any], status: int, field: str
) -> None:
    response = await client.post("/v1/sla-policies", json=body, headers=tenant.headers)
    assert response.status_code == status, response.text
    assert response.json()["error"]["field"].startswith(field)
    assert (await client.get("/v1/sla-policies", headers=tenant.headers)).json()["items"] == []


async def test_policy_names_are_unique_and_a_patch_cannot_remove_every_target(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    body = {"name": "Email", "first_response_seconds": 3600}
    first = await client.post("/v1/sla-policies", json=body, headers=tenant.headers)
    again = await client.post("/v1/sla-policies", json=body, headers=tenant.headers)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "name_taken"
    emptied = await client.patch(
        f"/v1/sla-policies/{first.json()['id']}",
        json={"first_response_seconds": None},
        headers=tenant.headers,
    )
    assert emptied.status_code == 422
    assert emptied.json()["error"]["field"] == "first_response_seconds"


async def test_agents_read_policies_but_only_supervisors_change_them(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    key = await client.post(
        "/v1/api-keys", json={"name": "agent", "role": "agent"}, headers=tenant.headers
    )
    agent = {"Authorization": f"Bearer {key.json()['key']}"}
    assert (await client.get("/v1/sla-policies", headers=agent)).status_code == 200
    refused = await client.post(
        "/v1/sla-policies", json={"name": "mine", "first_response_seconds": 60}, headers=agent
    )
    assert refused.status_code == 403
    hours = {"weekly": {"mon": [["09:00", "14:00"]]}}
    assert (await client.put("/v1/business-hours", json=hours, headers=agent)).status_code == 403


async def test_staffing_figures(client: httpx.AsyncClient, tenant: TenantHandle) -> None:
    response = await client.get(
        "/v1/staffing",
        params={"calls": 100, "period_seconds": 1800, "aht_seconds": 180, "target_seconds": 20},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["traffic_erlangs"], body["agents_needed"]) == (10, 14)
    levels = {row["agents"]: row["service_level"] for row in body["rows"]}
    assert levels[11] == pytest.approx(0.3896, abs=1e-3)
    assert levels[14] >= 0.8 > levels[13]
    too_much = await client.get(
        "/v1/staffing",
        params={"calls": 9_000_000, "period_seconds": 60, "aht_seconds": 3600},
        headers=tenant.headers,
    )
    assert too_much.status_code == 422
    assert too_much.json()["error"]["field"] == "calls"


async def test_an_order_notice_in_the_conversation_answers_nobody(
    desk: Desk, frozen: Clock, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    from tests.commerce.orders_helpers import location, product, receive

    await desk.policy(first_response_seconds=600)
    conversation_id = await desk.customer_writes("comprador")
    customer_id = (
        await desk.client.get(f"/v1/conversations/{conversation_id}", headers=desk.tenant.headers)
    ).json()["customer_id"]
    await location(desk.client, desk.tenant, "ALM")
    await product(desk.client, desk.tenant, "TAZA")
    await receive(desk.client, desk.tenant, "TAZA", "ALM", 1)

    placed = await desk.client.post(
        "/v1/orders",
        json={
            "customer": {"id": customer_id},
            "channel": "web",
            "lines": [{"sku": "TAZA", "quantity": 1}],
            "idempotency_key": "pedido-1",
        },
        headers=desk.tenant.headers,
    )
    assert placed.status_code == 201, placed.text
    notice = placed.json()["history"][0]["notification"]
    assert (notice["conversation_id"], notice["channel_id"]) == (conversation_id, desk.channel)
    await desk.run_worker()
    # The customer's question still waits for a person.
    assert (await desk.sla(conversation_id))["first_responded_at"] is None
    await desk.agent_replies(conversation_id)
    assert (await desk.sla(conversation_id))["first_responded_at"] is not None
