"""The omnichannel audit (``GET /v1/audit``) on hand-made businesses whose every figure is known.

The main story, on a frozen clock (Monday 23 November 2026, 09:00 UTC): a shop with WhatsApp,
email and web chat. Ana writes on WhatsApp and, five minutes later, by email: one conversation
that followed her. Bruno writes on WhatsApp, is answered and resolved; two days later he
writes by email and starts over in a new conversation. Carla opens the web chat without
saying who she is. Ana has agreed to marketing. So 3 of the 4 conversations have a known
customer, 1 of the 2 customers who changed channel kept their conversation, 3 of the 9
common channel kinds are in use, and 1 of the 3 customers has a marketing decision.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.analytics import audit
from hilos.conversations import service as conversations
from hilos.core import clock
from tests.commerce.orders_helpers import location, product, receive
from tests.conftest import TenantHandle, add_channel, identify, inbound
from tests.routing.helpers import ManualClock

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.fixture
def frozen() -> Iterator[ManualClock]:
    moment = ManualClock(T0)
    clock.set_now(lambda: moment.now)
    yield moment
    clock.set_now(None)


@dataclass
class Shop:
    """A tenant's channels by kind, and a way to make its customers write."""

    client: httpx.AsyncClient
    tenant: TenantHandle
    channels: dict[str, str]
    # Conversations the story names, for later steps.
    named: dict[str, str] = field(default_factory=dict)

    async def writes(self, kind: str, sender: tuple[str, str], text: str = "Hola") -> str:
        response = await inbound(
            self.client,
            self.tenant,
            channel_id=self.channels[kind],
            external_id=f"ext-{uuid.uuid4().hex}",
            kind=sender[0],
            value=sender[1],
            text=text,
        )
        assert response.status_code == 200, response.text
        conversation_id: str = response.json()["conversation_id"]
        return conversation_id

    async def replies(self, conversation_id: str, text: str = "Enseguida le ayudo") -> None:
        response = await self.client.post(
            f"/v1/conversations/{conversation_id}/messages",
            json={"text": text},
            headers=self.tenant.headers,
        )
        assert response.status_code == 201, response.text

    async def resolves(self, conversation_id: str) -> None:
        response = await self.client.patch(
            f"/v1/conversations/{conversation_id}",
            json={"status": "resolved"},
            headers=self.tenant.headers,
        )
        assert response.status_code == 200, response.text


async def open_shop(
    client: httpx.AsyncClient, tenant: TenantHandle, kinds: tuple[str, ...]
) -> Shop:
    channels = {kind: await add_channel(client, tenant, kind, f"{kind} tienda") for kind in kinds}
    return Shop(client, tenant, channels)


def phone(n: int) -> str:
    return f"+3460000{n:04d}"


async def consent(
    client: httpx.AsyncClient, tenant: TenantHandle, customer_id: str, granted: bool = True
) -> None:
    response = await client.post(
        f"/v1/customers/{customer_id}/consents",
        json={"purpose": "marketing", "channel_kind": "email", "granted": granted},
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text


async def three_customers_story(
    client: httpx.AsyncClient, tenant: TenantHandle, frozen: ManualClock
) -> Shop:
    """The module's story; the clock ends two days and an hour after T0."""
    shop = await open_shop(client, tenant, ("whatsapp", "email", "web_chat"))
    tag = uuid.uuid4().hex[:6]
    ana = await identify(client, tenant, ("whatsapp", phone(1)), ("email", f"ana-{tag}@correo.es"))
    await identify(client, tenant, ("whatsapp", phone(2)), ("email", f"bruno-{tag}@correo.es"))
    await consent(client, tenant, ana["customer_id"])

    first = await shop.writes("whatsapp", ("whatsapp", phone(1)), "¿Tenéis la talla M?")
    bruno_first = await shop.writes("whatsapp", ("whatsapp", phone(2)), "¿Dónde está mi pedido?")
    await shop.writes("web_chat", ("anonymous", f"dev-{tag}"), "Hola, una pregunta")
    frozen.advance(minutes=5)
    assert await shop.writes("email", ("email", f"ana-{tag}@correo.es"), "Os lo escribo aquí") == (
        first
    )
    await shop.replies(bruno_first)
    frozen.advance(minutes=5)
    await shop.resolves(bruno_first)
    frozen.advance(days=2)
    bruno_again = await shop.writes("email", ("email", f"bruno-{tag}@correo.es"), "Otra cosa")
    assert bruno_again != bruno_first
    frozen.advance(hours=1)
    shop.named.update(bruno_first=bruno_first, bruno_tag=tag)
    return shop


async def get_audit(
    client: httpx.AsyncClient, tenant: TenantHandle, **params: Any
) -> dict[str, Any]:
    response = await client.get("/v1/audit", params=params, headers=tenant.headers)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def gap_codes(area: dict[str, Any]) -> list[str]:
    return [gap["code"] for gap in area["gaps"]]


async def test_the_audit_measures_the_business_from_its_own_conversations(
    client: httpx.AsyncClient, tenant: TenantHandle, frozen: ManualClock
) -> None:
    await three_customers_story(client, tenant, frozen)

    found = await get_audit(client, tenant)
    metrics = found["metrics"]

    assert metrics["identified_customer_rate"]["value"] == 0.75
    assert (
        metrics["identified_customer_rate"]["numerator"],
        metrics["identified_customer_rate"]["denominator"],
    ) == (3, 4)
    assert metrics["cross_channel_continuity"]["value"] == 0.5
    assert metrics["cross_channel_continuity"]["detail"]["split"] == 1
    assert metrics["channel_coverage"]["value"] == pytest.approx(3 / 9)
    assert metrics["channel_coverage"]["detail"]["active"] == ["web_chat", "email", "whatsapp"]
    assert metrics["consent_coverage"]["value"] == pytest.approx(1 / 3)
    # Nothing to measure: one answered conversation is not enough to compare channels, there are
    # no prices and no stores.
    assert metrics["response_time_consistency"]["value"] is None
    assert metrics["price_parity"]["value"] is None
    assert metrics["stock_visibility"]["value"] is None
    assert found["computed_at"].startswith("2026-11-25T10:10")
    assert found["days"] == 30

    # Scores: 0.75 identified is (0.75 - 0.2) / (0.8 - 0.2) of the way to the target, and so on.
    assert metrics["identified_customer_rate"]["score"] == 92
    assert metrics["cross_channel_continuity"]["score"] == 43
    assert metrics["consent_coverage"]["score"] == 39
    view = found["areas"]["customer_view"]
    assert view["score"] == round(0.4 * 92 + 0.3 * 43 + 0.3 * 39) == 61
    assert (view["level"], view["level_name"]) == (4, "Integrado")
    assert gap_codes(view) == [
        "consent_coverage_below_target",
        "cross_channel_continuity_below_target",
        "identified_customer_rate_below_target",
    ]
    assert [step["code"] for step in view["next_steps"]] == [
        "consent_coverage",
        "cross_channel_continuity",
        "identified_customer_rate",
    ]
    identified = view["gaps"][2]
    assert (identified["metric"], identified["value"], identified["target"]) == (
        "identified_customer_rate",
        0.75,
        0.8,
    )
    # The tenant speaks Spanish: so does the audit.
    assert "75" in identified["message"]
    assert "conversaciones" in identified["message"]
    fulfilment = found["areas"]["fulfilment"]
    assert (fulfilment["score"], fulfilment["level"]) == (0, 1)
    assert gap_codes(fulfilment) == ["price_parity_no_data", "stock_visibility_no_data"]


async def test_the_audit_speaks_the_language_asked_for(
    client: httpx.AsyncClient, tenant: TenantHandle, frozen: ManualClock
) -> None:
    await three_customers_story(client, tenant, frozen)

    english = await get_audit(client, tenant, lang="en")
    spanish = await get_audit(client, tenant, lang="es")

    assert english["language"] == "en"
    assert english["areas"]["customer_view"]["name"] == "Single customer view"
    assert spanish["areas"]["customer_view"]["name"] == "Visión única del cliente"
    assert english["areas"]["customer_view"]["level_name"] == "Integrated"
    message = english["areas"]["customer_view"]["gaps"][2]["message"]
    assert message.startswith("75% of the conversations have a known customer")
    coverage = next(
        gap for gap in english["areas"]["engagement"]["gaps"] if gap["metric"] == "channel_coverage"
    )
    assert "Not in use: Messenger, Instagram, Telegram, SMS, Phone, Store." in coverage["message"]
    # Figures are the same whatever the language.
    assert english["metrics"] == {
        name: {**metric, "name": english["metrics"][name]["name"]}
        for name, metric in spanish["metrics"].items()
    }


async def test_a_tenant_whose_locale_is_english_gets_english(
    client: httpx.AsyncClient, make_tenant: Any
) -> None:
    tenant = await make_tenant(locale="en")

    found = await get_audit(client, tenant)

    assert found["language"] == "en"
    assert found["areas"]["fulfilment"]["name"] == "Fulfilment"
    assert found["areas"]["fulfilment"]["level_name"] == "Single channel"


async def test_response_times_are_compared_between_channels(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    frozen: ManualClock,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    shop = await open_shop(client, tenant, ("whatsapp", "email", "web_chat"))
    # WhatsApp answered in 1, 2 and 3 minutes (median 2); email in 10, 10 and 15 (median 10);
    # the web chat twice only, too few to count.
    answers = {"whatsapp": (60, 120, 180), "email": (600, 600, 900), "web_chat": (5, 5)}
    senders = {"whatsapp": "whatsapp", "email": "email", "web_chat": "anonymous"}
    for kind, delays in answers.items():
        for n, delay in enumerate(delays):
            value = phone(n + 10) if kind == "whatsapp" else f"{kind}-{n}-{uuid.uuid4().hex[:6]}"
            if kind == "email":
                value = f"{value}@correo.es"
            conversation_id = await shop.writes(kind, (senders[kind], value))
            if kind == "whatsapp" and n == 0:
                # An automatic notice is no answer: it stops no clock.
                frozen.advance(seconds=10)
                async with sessionmaker() as session, session.begin():
                    await conversations.reply(
                        session,
                        tenant.context,
                        conversation_id=conversation_id,
                        text="Hemos recibido tu mensaje",
                        attachments=[],
                        private=False,
                        channel_id=None,
                        author_user_id=None,
                        automated={"by": "test"},
                    )
                frozen.advance(seconds=delay - 10)
            else:
                frozen.advance(seconds=delay)
            await shop.replies(conversation_id)
            frozen.advance(minutes=30)

    found = await get_audit(client, tenant, lang="en")
    consistency = found["metrics"]["response_time_consistency"]

    assert consistency["detail"]["median_first_response_seconds"] == {
        "email": 600.0,
        "whatsapp": 120.0,
    }
    assert consistency["detail"]["answered"] == {"email": 3, "web_chat": 2, "whatsapp": 3}
    # Medians 120 and 600: mean 360, standard deviation 240.
    assert consistency["value"] == pytest.approx(240 / 360, abs=1e-4)
    assert consistency["score"] == 44
    gap = next(
        gap
        for gap in found["areas"]["cost_to_serve"]["gaps"]
        if gap["metric"] == "response_time_consistency"
    )
    assert "slowest: Email, fastest: WhatsApp" in gap["message"]
    step = next(
        step
        for step in found["areas"]["cost_to_serve"]["next_steps"]
        if step["code"] == "response_time_consistency"
    )
    assert "(Email)" in step["message"]


async def test_fulfilment_counts_price_parity_and_stores_with_live_stock(
    client: httpx.AsyncClient, tenant: TenantHandle, frozen: ManualClock
) -> None:
    await location(client, tenant, "MAD01", "store")
    await location(client, tenant, "BCN01", "store")
    await location(client, tenant, "ALM", "warehouse")
    # Same price everywhere; 20 % dearer in the app (the policy allows no gap); sold on the web
    # only (nothing to compare).
    await product(client, tenant, "CAMISETA-M", prices={"web": 1999, "store:MAD01": 1999})
    await product(client, tenant, "ZAPATILLA-42", prices={"web": 5000, "app": 6000})
    await product(client, tenant, "GORRA", prices={"web": 1500})
    await receive(client, tenant, "CAMISETA-M", "BCN01", 5)
    frozen.advance(days=2)
    await receive(client, tenant, "CAMISETA-M", "MAD01", 10)
    await receive(client, tenant, "CAMISETA-M", "ALM", 100)
    frozen.advance(hours=3)

    found = await get_audit(client, tenant, lang="en")
    metrics = found["metrics"]

    assert (metrics["price_parity"]["numerator"], metrics["price_parity"]["denominator"]) == (1, 2)
    assert metrics["price_parity"]["detail"]["beyond_policy"] == ["ZAPATILLA-42"]
    # Barcelona's stock last moved two days ago.
    assert metrics["stock_visibility"]["value"] == 0.5
    assert metrics["stock_visibility"]["detail"]["stale_stores"] == ["BCN01"]
    fulfilment = found["areas"]["fulfilment"]
    # Live stock: 0.5 of a 0.9 target is 56 points; parity at its floor (0.5) is 0.
    assert metrics["stock_visibility"]["score"] == 56
    assert metrics["price_parity"]["score"] == 0
    assert (fulfilment["score"], fulfilment["level"], fulfilment["level_name"]) == (
        28,
        2,
        "Multichannel",
    )
    assert gap_codes(fulfilment) == ["price_parity_below_target", "stock_visibility_below_target"]

    # The app's price is aligned: every compared SKU is within the policy, and the gap is gone.
    response = await client.put(
        "/v1/prices",
        json={"sku": "ZAPATILLA-42", "channel": "app", "amount": 5000, "currency": "EUR"},
        headers=tenant.headers,
    )
    assert response.status_code in (200, 201), response.text
    found = await get_audit(client, tenant, lang="en")
    assert found["metrics"]["price_parity"]["value"] == 1.0
    assert gap_codes(found["areas"]["fulfilment"]) == ["stock_visibility_below_target"]


async def test_survey_coverage_counts_resolved_conversations_with_an_answer(
    client: httpx.AsyncClient, tenant: TenantHandle, frozen: ManualClock
) -> None:
    shop = await three_customers_story(client, tenant, frozen)

    before = (await get_audit(client, tenant, lang="en"))["metrics"]["survey_coverage"]
    # Bruno rates the conversation that was resolved (the only one) from WhatsApp.
    answer = await client.post(
        "/v1/surveys/responses",
        json={
            "customer": {"identities": [{"kind": "whatsapp", "value": phone(2)}]},
            "kind": "csat",
            "score": 5,
            "channel": "whatsapp",
            "conversation_id": shop.named["bruno_first"],
        },
        headers=tenant.headers,
    )
    assert answer.status_code == 201, answer.text
    after = await get_audit(client, tenant, lang="en")

    assert (before["value"], before["numerator"], before["denominator"]) == (0.0, 0, 1)
    surveys = after["metrics"]["survey_coverage"]
    assert (surveys["value"], surveys["numerator"], surveys["denominator"]) == (1.0, 1, 1)
    assert "survey_coverage" not in [gap["metric"] for gap in after["areas"]["engagement"]["gaps"]]


async def test_another_tenants_data_is_never_counted(
    client: httpx.AsyncClient, tenant: TenantHandle, make_tenant: Any, frozen: ManualClock
) -> None:
    await three_customers_story(client, tenant, frozen)
    await location(client, tenant, "MAD01", "store")
    await receive_stock(client, tenant)
    other = await make_tenant(name="Otra tienda")

    empty = await get_audit(client, other, lang="en")
    metrics = empty["metrics"]

    assert metrics["channel_coverage"]["value"] == 0
    assert metrics["channel_coverage"]["detail"]["configured"] == []
    for name in ("identified_customer_rate", "cross_channel_continuity", "consent_coverage"):
        assert metrics[name]["value"] is None, name
        assert metrics[name]["denominator"] == 0, name
    assert metrics["stock_visibility"]["denominator"] == 0
    assert {area["score"] for area in empty["areas"].values()} == {0}
    assert {area["level"] for area in empty["areas"].values()} == {1}
    # And the first tenant's audit is as if the other did not exist.
    mine = await get_audit(client, tenant)
    assert mine["metrics"]["identified_customer_rate"]["denominator"] == 4


async def receive_stock(client: httpx.AsyncClient, tenant: TenantHandle) -> None:
    await product(client, tenant, "CALCETIN", prices={"web": 500})
    await receive(client, tenant, "CALCETIN", "MAD01", 3)


async def test_the_window_is_the_days_asked_for(
    client: httpx.AsyncClient, tenant: TenantHandle, frozen: ManualClock
) -> None:
    await three_customers_story(client, tenant, frozen)

    # One day back reaches only Bruno's second conversation (by email, identified).
    found = await get_audit(client, tenant, days=1)

    assert found["days"] == 1
    assert found["since"].startswith("2026-11-24T10:10")
    rate = found["metrics"]["identified_customer_rate"]
    assert (rate["numerator"], rate["denominator"]) == (1, 1)
    assert found["metrics"]["channel_coverage"]["detail"]["active"] == ["email"]


@pytest.mark.parametrize(
    ("params", "field", "code"),
    [
        ({"lang": "xx"}, "lang", "unsupported_language"),
        ({"days": "0"}, "days", "invalid"),
        ({"days": "366"}, "days", "invalid"),
        ({"days": "many"}, "days", "invalid"),
        ({"channel": "whatsapp"}, "channel", "unknown_parameter"),
    ],
)
async def test_bad_input_is_a_422_that_names_it(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    params: dict[str, str],
    field: str,
    code: str,
) -> None:
    response = await client.get("/v1/audit", params=params, headers=tenant.headers)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert field in error["field"]
    assert field in error["message"]


async def test_agents_keys_may_not_read_the_audit(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    key = await client.post(
        "/v1/api-keys", json={"name": "agente", "role": "agent"}, headers=tenant.headers
    )
    assert key.status_code == 201, key.text

    response = await client.get(
        "/v1/audit", headers={"Authorization": f"Bearer {key.json()['key']}"}
    )

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert (await client.get("/v1/audit")).status_code == 401


def test_levels_are_steps_of_twenty_points() -> None:
    assert [audit.level_of(score) for score in (0, 19, 20, 39, 40, 59, 60, 79, 80, 100)] == [
        1,
        1,
        2,
        2,
        3,
        3,
        4,
        4,
        5,
        5,
    ]
    for weights in audit.AREA_WEIGHTS.values():
        assert sum(weights.values()) == pytest.approx(1.0)


def test_lower_is_better_for_the_coefficient_of_variation() -> None:
    rule = audit.RULES["response_time_consistency"]
    assert (rule.score(0.1), rule.score(0.25), rule.score(1.0), rule.score(2.0)) == (
        100,
        100,
        0,
        0,
    )
    assert rule.meets(0.2)
    assert not rule.meets(0.3)
