"""Queues, agents, members and routing settings through the API: what is stored, what is shown,
what bad input answers, and who belongs to which queue."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.routing import service as routing
from hilos.routing.engine import DEFAULT_CAPACITY
from hilos.web import service as console
from tests.conftest import TenantHandle, add_channel, inbound
from tests.routing.helpers import (
    PASSWORD,
    create_agent,
    create_queue,
    offer_of,
)


async def test_a_queue_is_created_as_the_contract_says_and_read_back(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    response = await client.post(
        "/v1/queues",
        json={"name": "Soporte ES", "skills": ["es", "Billing"], "channel_kinds": ["whatsapp"]},
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    queue = response.json()
    assert {k: queue[k] for k in ("name", "skills", "skill_levels", "channel_kinds")} == {
        "name": "Soporte ES",
        "skills": ["billing", "es"],
        "skill_levels": {"es": 1, "billing": 1},
        "channel_kinds": ["whatsapp"],
    }
    assert (queue["priority"], queue["offer_timeout_seconds"], queue["rings"]) == (0, 30, [])
    assert (queue["overflow_queue_id"], queue["secondary_after_seconds"]) == (None, None)
    listed = (await client.get("/v1/queues", headers=tenant.headers)).json()
    assert [q["id"] for q in listed] == [queue["id"]]
    one = await client.get(f"/v1/queues/{queue['id']}", headers=tenant.headers)
    assert one.json() == queue

    general = await create_queue(client, tenant, "General", skills=[])
    changed = await client.patch(
        f"/v1/queues/{queue['id']}",
        json={
            "skills": {"es": 3},
            "channel_kinds": ["whatsapp", "email"],
            "priority": 2,
            "rings": [
                {"after_seconds": 60, "skills": {"es": 2}},
                {"after_seconds": 180, "skills": []},
            ],
            "overflow_queue_id": general["id"],
            "overflow_after_seconds": 600,
            "secondary_after_seconds": 120,
        },
        headers=tenant.headers,
    )
    assert changed.status_code == 200, changed.text
    queue = changed.json()
    assert queue["skill_levels"] == {"es": 3}
    assert queue["rings"] == [
        {"after_seconds": 60, "skills": ["es"], "skill_levels": {"es": 2}},
        {"after_seconds": 180, "skills": [], "skill_levels": {}},
    ]
    assert (queue["overflow_queue_id"], queue["overflow_after_seconds"]) == (general["id"], 600)
    # Names are unique per tenant, on creation and on renaming.
    twice = await client.post(
        "/v1/queues", json={"name": "General", "channel_kinds": ["email"]}, headers=tenant.headers
    )
    assert twice.status_code == 409
    renamed = await client.patch(
        f"/v1/queues/{queue['id']}", json={"name": "General"}, headers=tenant.headers
    )
    assert renamed.status_code == 409
    assert (await client.get(f"/v1/queues/{queue['id']}", headers=tenant.headers)).json()[
        "name"
    ] == "Soporte ES"


async def test_bad_queues_answer_422_naming_the_field_and_write_nothing(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    first = await create_queue(client, tenant, "Primera", skills=[])
    second = await create_queue(
        client,
        tenant,
        "Segunda",
        skills=[],
        overflow_queue_id=first["id"],
        overflow_after_seconds=60,
    )
    base = {"name": "Nueva", "channel_kinds": ["whatsapp"]}
    for body, field in (
        ({**base, "channel_kinds": ["fax"]}, "channel_kinds.0"),
        ({**base, "channel_kinds": []}, "channel_kinds"),
        ({**base, "channel_kinds": ["email", "email"]}, "channel_kinds"),
        ({**base, "skills": {"es": 0}}, "skills"),
        ({**base, "skills": ["es idioma"]}, "skills"),
        ({**base, "offer_timeout_seconds": 2}, "offer_timeout_seconds"),
        (
            {**base, "rings": [{"after_seconds": 90, "skills": []}, {"after_seconds": 30}]},
            "rings",
        ),
        ({**base, "overflow_queue_id": first["id"]}, "body"),
        ({**base, "name": ""}, "name"),
        ({**base, "colour": "red"}, "colour"),
    ):
        response = await client.post("/v1/queues", json=body, headers=tenant.headers)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["field"].startswith(field), (body, response.json())
    # Overflowing in a circle is refused.
    circle = await client.patch(
        f"/v1/queues/{first['id']}",
        json={"overflow_queue_id": second["id"], "overflow_after_seconds": 60},
        headers=tenant.headers,
    )
    assert circle.status_code == 422
    assert circle.json()["error"]["field"] == "overflow_queue_id"
    itself = await client.patch(
        f"/v1/queues/{first['id']}",
        json={"overflow_queue_id": first["id"], "overflow_after_seconds": 60},
        headers=tenant.headers,
    )
    assert itself.status_code == 422
    null_name = await client.patch(
        f"/v1/queues/{first['id']}", json={"name": None}, headers=tenant.headers
    )
    assert null_name.status_code == 422
    listed = (await client.get("/v1/queues", headers=tenant.headers)).json()
    assert sorted(q["name"] for q in listed) == ["Primera", "Segunda"]
    assert next(q for q in listed if q["name"] == "Primera")["overflow_queue_id"] is None


async def test_an_agent_is_a_user_with_the_agent_role_and_the_default_capacities(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    response = await client.post(
        "/v1/agents",
        json={
            "email": "Ana@Tienda.es",
            "name": "Ana",
            "skills": {"es": 3, "billing": 1},
            "capacity": {"whatsapp": 2},
        },
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    agent = response.json()
    assert (agent["email"], agent["name"], agent["role"]) == ("ana@tienda.es", "Ana", "agent")
    assert agent["skills"] == {"es": 3, "billing": 1}
    assert agent["capacity"] == {**DEFAULT_CAPACITY, "whatsapp": 2}
    assert (agent["capacity"]["phone"], agent["capacity"]["email"]) == (1, 5)
    assert agent["capacity"]["web_chat"] == agent["capacity"]["telegram"] == 3
    assert (agent["presence"], agent["load"], agent["queue_ids"]) == ("offline", {}, [])
    # No password was given: one was generated, shown once, and it opens the console.
    assert isinstance(agent["password"], str)
    assert len(agent["password"]) >= 12
    async with sessionmaker() as session:
        accounts = await console.accounts_for(
            session, email="ana@tienda.es", password=agent["password"]
        )
    assert [a.user_id for a in accounts] == [agent["id"]]
    users = (await client.get("/v1/users", headers=tenant.headers)).json()
    assert {u["id"]: u["role"] for u in users}[agent["id"]] == "agent"
    shown = (await client.get(f"/v1/agents/{agent['id']}", headers=tenant.headers)).json()
    assert "password" not in shown

    # A chosen password is not echoed; the same email twice is a conflict.
    chosen = await client.post(
        "/v1/agents",
        json={"email": "bruno@tienda.es", "name": "Bruno", "password": PASSWORD},
        headers=tenant.headers,
    )
    assert chosen.status_code == 201
    assert chosen.json()["password"] is None
    twice = await client.post(
        "/v1/agents",
        json={"email": "ana@tienda.es", "name": "Otra Ana", "password": PASSWORD},
        headers=tenant.headers,
    )
    assert twice.status_code == 409
    # An existing user (the admin, say) can be made an agent too, once.
    admin = await client.post(
        "/v1/users",
        json={"email": "jefa@tienda.es", "name": "Jefa", "role": "admin", "password": PASSWORD},
        headers=tenant.headers,
    )
    made = await client.post(
        "/v1/agents",
        json={"user_id": admin.json()["id"], "skills": {"en": 2}},
        headers=tenant.headers,
    )
    assert made.status_code == 201, made.text
    assert (made.json()["role"], made.json()["skills"]) == ("admin", {"en": 2})
    again = await client.post(
        "/v1/agents", json={"user_id": admin.json()["id"]}, headers=tenant.headers
    )
    assert again.status_code == 409
    listed = (await client.get("/v1/agents", headers=tenant.headers)).json()
    assert sorted(a["name"] for a in listed) == ["Ana", "Bruno", "Jefa"]


async def test_bad_agents_answer_422_naming_the_field_and_create_no_user(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    base = {"email": "carla@tienda.es", "name": "Carla", "password": PASSWORD}
    for body, field in (
        ({**base, "capacity": {"fax": 2}}, "capacity"),
        ({**base, "capacity": {"email": -1}}, "capacity.email"),
        ({**base, "skills": {"es": 11}}, "skills.es"),
        ({**base, "email": "no-es-un-correo"}, "email"),
        ({"email": "carla@tienda.es", "password": PASSWORD}, "body"),
        ({**base, "password": "corta"}, "password"),
        ({**base, "user_id": "0" * 32}, "body"),
    ):
        response = await client.post("/v1/agents", json=body, headers=tenant.headers)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["field"].startswith(field), (body, response.json())
    missing_user = await client.post(
        "/v1/agents", json={"user_id": "0" * 32}, headers=tenant.headers
    )
    assert missing_user.status_code == 404
    users = (await client.get("/v1/users", headers=tenant.headers)).json()
    assert users == []
    assert (await client.get("/v1/agents", headers=tenant.headers)).json() == []


async def test_changing_an_agent_replaces_skills_and_merges_capacities(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    agent_id = await create_agent(client, tenant, "ana@tienda.es", online=False)
    response = await client.patch(
        f"/v1/agents/{agent_id}",
        json={"skills": {"en": 2}, "secondary_skills": {"es": 1}, "capacity": {"email": 8}},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    agent = response.json()
    assert (agent["skills"], agent["secondary_skills"]) == ({"en": 2}, {"es": 1})
    assert agent["capacity"] == {**DEFAULT_CAPACITY, "email": 8}
    online = await client.get("/v1/agents?presence=online", headers=tenant.headers)
    assert online.json() == []


async def test_agents_belong_to_queues_by_skills_or_by_hand_and_see_only_those(
    app: Any,
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    spanish = await create_queue(client, tenant, "Soporte ES", secondary_after_seconds=300)
    billing = await create_queue(client, tenant, "Facturación", skills={"billing": 2})
    ana = await create_agent(client, tenant, "ana@tienda.es", skills={"es": 2})
    pablo = await create_agent(
        client, tenant, "pablo@tienda.es", skills={"en": 3}, secondary_skills={"es": 1}
    )
    zoe = await create_agent(client, tenant, "zoe@tienda.es", skills={"billing": 1})
    members = await client.get(f"/v1/queues/{spanish['id']}/members", headers=tenant.headers)
    assert {m["agent_id"]: m["how"] for m in members.json()} == {ana: "skills", pablo: "secondary"}
    assert (await client.get(f"/v1/agents/{zoe}", headers=tenant.headers)).json()["queue_ids"] == []

    # A conversation is moved to Facturación, where nobody qualifies (Zoe's billing is 1)...
    channel = await add_channel(client, tenant, "whatsapp")
    response = await inbound(
        client,
        tenant,
        channel_id=channel,
        external_id="wamid.m1",
        kind="whatsapp",
        value="+34600300400",
    )
    conversation_id = response.json()["conversation_id"]
    await app.state.worker.run_once()
    moved = await client.post(
        f"/v1/conversations/{conversation_id}/transfer",
        json={"queue_id": billing["id"]},
        headers=tenant.headers,
    )
    assert moved.status_code == 200, moved.text
    assert await offer_of(client, tenant, conversation_id) is None
    # ...until a supervisor adds Zoe to the queue by hand: the offer follows at once.
    added = await client.post(
        f"/v1/queues/{billing['id']}/members", json={"agent_id": zoe}, headers=tenant.headers
    )
    assert added.status_code == 201, added.text
    assert added.json()["members"] == [zoe]
    offer = await offer_of(client, tenant, conversation_id)
    assert offer is not None
    assert offer["agent_id"] == zoe
    listed = await client.get(f"/v1/queues/{billing['id']}/members", headers=tenant.headers)
    assert [(m["agent_id"], m["how"]) for m in listed.json()] == [(zoe, "member")]

    # What an agent signed in as a user sees: the queues they belong to, and the
    # conversations in them or offered to them.
    async with sessionmaker() as session:
        assert await routing.agent_queue_ids(session, tenant.context, ana) == {spanish["id"]}
        assert await routing.agent_queue_ids(session, tenant.context, zoe) == {billing["id"]}
        held = await routing.conversations.get_conversation(
            session, tenant.context, conversation_id
        )
        assert await routing.can_see_conversation(
            session, tenant.context, conversation=held, user_id=zoe
        )
        assert not await routing.can_see_conversation(
            session, tenant.context, conversation=held, user_id=ana
        )

    removed = await client.delete(
        f"/v1/queues/{billing['id']}/members/{zoe}", headers=tenant.headers
    )
    assert removed.status_code == 200
    assert removed.json()["members"] == []
    gone = await client.delete(f"/v1/queues/{billing['id']}/members/{zoe}", headers=tenant.headers)
    assert gone.status_code == 404


async def test_routing_settings_have_defaults_and_validate_changes(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    defaults = (await client.get("/v1/routing/settings", headers=tenant.headers)).json()
    assert defaults == {
        "sticky_window_seconds": 7 * 86_400,
        "ageing_seconds_per_priority": 120,
        "tier_priorities": {"vip": 3, "platinum": 3, "gold": 2, "silver": 1},
        "negative_sentiment_points": 2,
    }
    changed = await client.patch(
        "/v1/routing/settings",
        json={"sticky_window_seconds": 3600, "tier_priorities": {"Oro": 2}},
        headers=tenant.headers,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["tier_priorities"] == {"oro": 2}
    bad = await client.patch(
        "/v1/routing/settings", json={"sticky_window_seconds": -1}, headers=tenant.headers
    )
    assert bad.status_code == 422
    assert bad.json()["error"]["field"] == "sticky_window_seconds"
    kept = (await client.get("/v1/routing/settings", headers=tenant.headers)).json()
    assert kept["sticky_window_seconds"] == 3600
