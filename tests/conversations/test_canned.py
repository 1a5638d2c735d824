"""Canned responses: the API that keeps them, and the rendering of their variables."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from hilos.conversations import canned
from hilos.conversations.canned import RenderContext, render
from hilos.conversations.canned_models import CannedResponse
from tests.conftest import TenantHandle, add_channel, inbound


async def create(client: httpx.AsyncClient, tenant: TenantHandle, **fields: Any) -> httpx.Response:
    body = {
        "shortcut": "saludo",
        "title": "Saludo",
        "text": "Hola {{customer.first_name}}, soy {{agent.name}} de {{business.name}}.",
        **fields,
    }
    return await client.post("/v1/canned-responses", json=body, headers=tenant.headers)


async def agent_key(client: httpx.AsyncClient, tenant: TenantHandle) -> dict[str, str]:
    response = await client.post(
        "/v1/api-keys", json={"name": "agente", "role": "agent"}, headers=tenant.headers
    )
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['key']}"}


# --- rendering --------------------------------------------------------------------------------


def test_variables_are_filled_in_and_a_missing_value_is_empty() -> None:
    context = RenderContext(
        customer_name="Ana García",
        agent_name="Lucía Martín",
        conversation_id="c123",
        business_name="Tienda Sol",
    )
    text = "Hola {{customer.first_name}} ({{ customer.name }}), soy {{agent.first_name}}."

    assert render(text, context) == "Hola Ana (Ana García), soy Lucía."
    assert (
        render("Ref. {{conversation.id}} · {{business.name}}", context) == "Ref. c123 · Tienda Sol"
    )
    assert render("Hola {{customer.first_name}}.", RenderContext()) == "Hola ."


def test_a_value_is_never_rendered_again_nor_run_as_a_template() -> None:
    # A customer may call themselves anything in a WhatsApp profile.
    context = RenderContext(
        customer_name="{{agent.name}} {{ 7*7 }} {% for x in y %}", agent_name="Lucía"
    )

    rendered = render("Hola {{customer.name}}, soy {{agent.name}}", context)

    assert rendered == "Hola {{agent.name}} {{ 7*7 }} {% for x in y %}, soy Lucía"


def test_names_that_are_not_variables_stay_as_written() -> None:
    context = RenderContext(customer_name="Ana")
    text = "{{customer.__class__}} {{ config }} {{customer.name.upper}} {{customer.name}}"

    assert (
        render(text, context) == "{{customer.__class__}} {{ config }} {{customer.name.upper}} Ana"
    )
    assert canned.variables_in(text) == [
        "customer.__class__",
        "config",
        "customer.name.upper",
        "customer.name",
    ]


def test_the_customers_language_is_picked_then_the_agents() -> None:
    def response(shortcut: str, language: str) -> CannedResponse:
        return CannedResponse(id=f"{shortcut}-{language}", shortcut=shortcut, language=language)

    responses = [
        response("adios", "en"),
        response("saludo", "en"),
        response("saludo", "es"),
        response("gracias", "pt-BR"),
    ]

    picked = canned.pick_for(responses, languages=["es-ES", "en"])
    assert [r.id for r in picked] == ["adios-en", "gracias-pt-BR", "saludo-es"]
    picked = canned.pick_for(responses, languages=[None, "en"])
    assert [r.id for r in picked] == ["adios-en", "gracias-pt-BR", "saludo-en"]


# --- the API ----------------------------------------------------------------------------------


async def test_a_supervisor_creates_lists_changes_and_deletes_canned_responses(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    created = await create(client, tenant)
    assert created.status_code == 201, created.text
    body = created.json()
    # The tenant's language unless told.
    assert (body["shortcut"], body["language"]) == ("saludo", "es")
    english = await create(client, tenant, language="en", text="Hi {{customer.first_name}}!")
    assert english.status_code == 201, english.text

    listed = await client.get("/v1/canned-responses", headers=tenant.headers)
    assert [(r["shortcut"], r["language"]) for r in listed.json()] == [
        ("saludo", "en"),
        ("saludo", "es"),
    ]
    only_en = await client.get("/v1/canned-responses?language=en", headers=tenant.headers)
    assert [r["id"] for r in only_en.json()] == [english.json()["id"]]

    changed = await client.patch(
        f"/v1/canned-responses/{body['id']}",
        json={"title": "Bienvenida", "shortcut": "hola"},
        headers=tenant.headers,
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["title"], changed.json()["shortcut"]) == ("Bienvenida", "hola")
    assert changed.json()["text"] == body["text"]

    deleted = await client.delete(f"/v1/canned-responses/{body['id']}", headers=tenant.headers)
    assert deleted.status_code == 204
    gone = await client.get(f"/v1/canned-responses/{body['id']}", headers=tenant.headers)
    assert gone.status_code == 404


async def test_bad_input_is_refused_naming_the_field_and_nothing_is_stored(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    unknown = await create(client, tenant, text="Hola {{customer.email}}")
    assert unknown.status_code == 422
    error = unknown.json()["error"]
    assert error["code"] == "unknown_variable"
    assert "text" in str(error)
    assert "{{customer.email}}" in error["message"]
    assert "{{customer.name}}" in error["message"]

    bad_shortcut = await create(client, tenant, shortcut="/Saludo Largo")
    assert bad_shortcut.status_code == 422
    assert "shortcut" in bad_shortcut.text
    empty = await create(client, tenant, text="")
    assert empty.status_code == 422
    assert "text" in empty.text
    extra = await create(client, tenant, colour="red")
    assert extra.status_code == 422

    assert (await client.get("/v1/canned-responses", headers=tenant.headers)).json() == []


async def test_a_shortcut_is_unique_per_language(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    first = await create(client, tenant)
    assert first.status_code == 201
    again = await create(client, tenant, title="Otro saludo")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "shortcut_taken"
    other = await create(client, tenant, shortcut="adios", text="Adiós")
    renamed = await client.patch(
        f"/v1/canned-responses/{other.json()['id']}",
        json={"shortcut": "saludo"},
        headers=tenant.headers,
    )
    assert renamed.status_code == 409
    patched_text = await client.patch(
        f"/v1/canned-responses/{other.json()['id']}",
        json={"text": "{{nope}}"},
        headers=tenant.headers,
    )
    assert patched_text.status_code == 422
    kept = await client.get(f"/v1/canned-responses/{other.json()['id']}", headers=tenant.headers)
    assert (kept.json()["shortcut"], kept.json()["text"]) == ("adios", "Adiós")


async def test_agents_read_and_render_but_only_supervisors_change(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    created = (await create(client, tenant)).json()
    agent = await agent_key(client, tenant)

    assert (await client.get("/v1/canned-responses", headers=agent)).status_code == 200
    refused = await client.post(
        "/v1/canned-responses",
        json={"shortcut": "x", "title": "x", "text": "x"},
        headers=agent,
    )
    assert refused.status_code == 403
    for method in ("PATCH", "DELETE"):
        answer = await client.request(
            method,
            f"/v1/canned-responses/{created['id']}",
            json={"title": "y"} if method == "PATCH" else None,
            headers=agent,
        )
        assert answer.status_code == 403
    assert (await client.get("/v1/canned-responses", headers=tenant.headers)).json()[0][
        "title"
    ] == "Saludo"


async def test_rendering_for_a_conversation(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    channel = await add_channel(client, tenant, "whatsapp")
    received = await inbound(
        client,
        tenant,
        channel_id=channel,
        external_id=f"wa-{uuid.uuid4().hex}",
        kind="whatsapp",
        value="+34600111333",
        name="Marta Ruiz",
    )
    conversation_id = received.json()["conversation_id"]
    created = (
        await create(client, tenant, text="Hola {{customer.first_name}} ({{conversation.id}})")
    ).json()

    rendered = await client.post(
        f"/v1/canned-responses/{created['id']}/render",
        json={"conversation_id": conversation_id},
        headers=tenant.headers,
    )

    assert rendered.status_code == 200, rendered.text
    assert rendered.json()["text"] == f"Hola Marta ({conversation_id})"


async def test_another_tenants_canned_responses_and_conversations_are_not_found(
    client: httpx.AsyncClient, tenant: TenantHandle, make_tenant: Any
) -> None:
    other = await make_tenant("Otra tienda")
    theirs = (await create(client, other)).json()
    ours = (await create(client, tenant)).json()
    channel = await add_channel(client, other, "whatsapp")
    their_conversation = (
        await inbound(
            client,
            other,
            channel_id=channel,
            external_id=f"wa-{uuid.uuid4().hex}",
            kind="whatsapp",
            value="+34600111444",
        )
    ).json()["conversation_id"]

    for method, path, body in (
        ("GET", f"/v1/canned-responses/{theirs['id']}", None),
        ("PATCH", f"/v1/canned-responses/{theirs['id']}", {"title": "mío"}),
        ("DELETE", f"/v1/canned-responses/{theirs['id']}", None),
        ("POST", f"/v1/canned-responses/{theirs['id']}/render", {"conversation_id": "x"}),
        (
            "POST",
            f"/v1/canned-responses/{ours['id']}/render",
            {"conversation_id": their_conversation},
        ),
    ):
        answer = await client.request(method, path, json=body, headers=tenant.headers)
        assert answer.status_code == 404, (method, path)
    listed = await client.get("/v1/canned-responses", headers=tenant.headers)
    assert [r["id"] for r in listed.json()] == [ours["id"]]
    assert (await client.get(f"/v1/canned-responses/{theirs['id']}", headers=other.headers)).json()[
        "title"
    ] == "Saludo"
