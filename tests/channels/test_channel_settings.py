"""Channel settings: provider names, what is missing, secret rotation, secrets never shown."""

from __future__ import annotations

import json

import httpx

from tests.channels import fake_twilio, fake_whatsapp
from tests.conftest import TenantHandle


async def test_provider_names_create_the_medium_with_its_carrier(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    created = await client.post(
        "/v1/channels",
        json={"kind": "twilio_sms", "name": "SMS", "config": {"account_sid": "AC1"}},
        headers=tenant.headers,
    )
    assert created.status_code == 201, created.text
    channel = created.json()
    assert channel["kind"] == "sms"
    assert channel["config"]["provider"] == "twilio"
    assert channel["missing_config"] == ["auth_token", "from_number"]
    webchat = await client.post(
        "/v1/channels", json={"kind": "webchat", "name": "Web"}, headers=tenant.headers
    )
    assert webchat.json()["kind"] == "web_chat"
    unknown = await client.post(
        "/v1/channels",
        json={"kind": "whatsapp", "name": "W", "config": {"provider": "carrier-pigeon"}},
        headers=tenant.headers,
    )
    assert unknown.status_code == 422
    assert "provider" in unknown.json()["error"]["message"]


async def test_secrets_are_written_never_read_back(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    created = await client.post(
        "/v1/channels",
        json={"kind": "whatsapp", "name": "W", "config": fake_whatsapp.CONFIG},
        headers=tenant.headers,
    )
    config = created.json()["config"]
    assert config["app_secret"] == "***"
    assert config["access_token"] == "***"
    assert config["phone_number_id"] == fake_whatsapp.PHONE_NUMBER_ID
    assert created.json()["missing_config"] == []


async def test_a_rotated_app_secret_applies_at_once(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    created = await client.post(
        "/v1/channels",
        json={"kind": "whatsapp", "name": "W", "config": fake_whatsapp.CONFIG},
        headers=tenant.headers,
    )
    channel_id = created.json()["id"]
    body = json.dumps(
        fake_whatsapp.text_webhook(wa_id="34600000001", wamid="wamid.rot", text="x", timestamp=1)
    ).encode()
    url = f"/webhooks/whatsapp/{channel_id}"
    old = {"X-Hub-Signature-256": fake_whatsapp.sign(body)}
    new = {"X-Hub-Signature-256": fake_whatsapp.sign(body, "rotated-secret")}
    assert (await client.post(url, content=body, headers=new)).status_code == 401
    rotated = await client.patch(
        f"/v1/channels/{channel_id}",
        json={"config": {"app_secret": "rotated-secret"}},
        headers=tenant.headers,
    )
    assert rotated.status_code == 200
    assert rotated.json()["config"]["phone_number_id"] == fake_whatsapp.PHONE_NUMBER_ID
    assert (await client.post(url, content=body, headers=old)).status_code == 401
    assert (await client.post(url, content=body, headers=new)).status_code == 200


async def test_another_tenants_channel_cannot_be_changed(
    client: httpx.AsyncClient, tenant: TenantHandle, make_tenant: object
) -> None:
    created = await client.post(
        "/v1/channels", json={"kind": "sms", "name": "S"}, headers=tenant.headers
    )
    other = await make_tenant("Otra")  # type: ignore[operator]
    response = await client.patch(
        f"/v1/channels/{created.json()['id']}", json={"name": "mío"}, headers=other.headers
    )
    assert response.status_code == 404


async def test_a_webhook_path_may_use_the_providers_channel_name(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    channel_id = (
        await client.post(
            "/v1/channels",
            json={"kind": "twilio_sms", "name": "SMS", "config": fake_twilio.SMS_CONFIG},
            headers=tenant.headers,
        )
    ).json()["id"]
    form = fake_twilio.sms_form(sid="SMalias1", body="Hola")
    url = f"{client.base_url}/webhooks/twilio_sms/{channel_id}"
    response = await client.post(
        url, data=dict(form), headers={"X-Twilio-Signature": fake_twilio.sign(url, form)}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/xml")
