"""The price-parity page of the console: who may open it, the SKUs it lists for prices loaded
through the API (formatted in the reader's language, largest gap first), its filters, its
empty state, and the form that changes the policy with the API's validation.

The shop: a policy where prices must match, except the marketplace, which may be up to 5 %
above the cheapest channel.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.conftest import TenantHandle
from tests.web.test_console import browser, csrf_of
from tests.web.test_supervisor import make_user, signed_in

PAGE = "/console/commerce/price-parity"
POLICY_FORM = f"{PAGE}/policy"
NBSP = "\xa0"


async def add_product(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sku: str,
    product: str,
    variant: str | None = None,
) -> None:
    body: dict[str, Any] = {"name": product, "variants": [{"sku": sku, "name": variant}]}
    response = await client.post("/v1/products", json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text


async def set_price(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sku: str,
    channel: str,
    amount: int,
    currency: str = "EUR",
) -> None:
    response = await client.put(
        "/v1/prices",
        json={"sku": sku, "channel": channel, "amount": amount, "currency": currency},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text


async def set_policy(
    client: httpx.AsyncClient, tenant: TenantHandle, max_gap: float, allowances: dict[str, float]
) -> None:
    response = await client.put(
        "/v1/price-parity/policy",
        json={"max_gap_percent": max_gap, "allowances": allowances},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text


async def policy_of(client: httpx.AsyncClient, tenant: TenantHandle) -> dict[str, Any]:
    response = await client.get("/v1/price-parity/policy", headers=tenant.headers)
    assert response.status_code == 200, response.text
    policy: dict[str, Any] = response.json()
    return policy


async def open_shop(client: httpx.AsyncClient, tenant: TenantHandle) -> None:
    """Five SKUs: three beyond the policy (a jacket 16.67 % dearer in the Madrid store, a
    T-shirt 10.01 % dearer on the marketplace, a book 10 % dearer in the Japanese app), a gift
    free on the web but not in the app, and trainers within the marketplace's 5 %; plus a cap
    priced on the web only."""
    await set_policy(client, tenant, 0, {"marketplace": 5})
    await add_product(client, tenant, "CHAQ-VAQ-L", "Chaqueta vaquera", "Talla L")
    await set_price(client, tenant, "CHAQ-VAQ-L", "web", 5999)
    await set_price(client, tenant, "CHAQ-VAQ-L", "store:MAD01", 6999)
    await add_product(client, tenant, "CAM-BAS-M", "Camiseta básica")
    await set_price(client, tenant, "CAM-BAS-M", "web", 1999)
    await set_price(client, tenant, "CAM-BAS-M", "marketplace", 2199)
    await add_product(client, tenant, "LIBRO-JP", "Libro de cocina")
    await set_price(client, tenant, "LIBRO-JP", "web-jp", 1500, "JPY")
    await set_price(client, tenant, "LIBRO-JP", "app-jp", 1650, "JPY")
    await add_product(client, tenant, "REGALO", "Bolsa de regalo")
    await set_price(client, tenant, "REGALO", "web", 0)
    await set_price(client, tenant, "REGALO", "app", 150)
    await add_product(client, tenant, "ZAP-RUN-42", "Zapatillas running")
    await set_price(client, tenant, "ZAP-RUN-42", "web", 8999)
    await set_price(client, tenant, "ZAP-RUN-42", "marketplace", 9399)
    await add_product(client, tenant, "GORRA", "Gorra")
    await set_price(client, tenant, "GORRA", "web", 1500)


def rows_of(html: str) -> dict[str, str]:
    """The report's rows by SKU, in the page's order (dicts keep it)."""
    return {
        sku: row
        for sku, row in re.findall(
            r'<tr class="parity-row" data-sku="([^"]+)".*?>(.*?)</tr>', html, re.S
        )
    }


def text_of(html: str) -> str:
    """The words of ``html``; spaces folded, but the non-breaking ones Babel writes kept."""
    return re.sub(r"[ \t\r\n]+", " ", re.sub(r"<[^>]+>", " ", html)).strip()


def cell(row: str, name: str) -> str:
    match = re.search(rf'class="number {name}"><span class="value">(.*?)</span></td>', row, re.S)
    assert match is not None, f"no {name} in {row}"
    return text_of(match.group(1))


def price_of(row: str, channel: str) -> str:
    match = re.search(
        rf'<li class="price[^"]*" data-channel="{re.escape(channel)}">(.*?)</li>', row, re.S
    )
    assert match is not None, f"no price of {channel} in {row}"
    return text_of(match.group(1))


# --- who may open it --------------------------------------------------------------------------


async def test_only_supervisors_and_admins_open_price_parity(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    await open_shop(client, tenant)
    agent = await make_user(client, tenant, "Ana", "agent")
    supervisor = await make_user(client, tenant, "Sara", "supervisor")
    admin = await make_user(client, tenant, "Alba", "admin")

    async with browser(app) as anonymous:
        refused = await anonymous.get(PAGE)
        assert refused.status_code == 303
        assert refused.headers["location"] == "/login"

    async with browser(app) as ana:
        await signed_in(ana, agent["email"])
        page = await ana.get(PAGE)
        assert page.status_code == 403
        assert "La paridad de precios es para supervisores y administradores." in page.text
        assert "CHAQ-VAQ-L" not in page.text
        inbox = await ana.get("/console")
        assert f'href="{PAGE}"' not in inbox.text
        # Her own valid token does not let her change the policy either.
        posted = await ana.post(
            POLICY_FORM, data={"csrf_token": csrf_of(inbox), "max_gap_percent": "50"}
        )
        assert posted.status_code == 403
    assert (await policy_of(client, tenant))["max_gap_percent"] == 0

    for user in (supervisor, admin):
        async with browser(app) as person:
            await signed_in(person, user["email"])
            inbox = await person.get("/console")
            assert f'href="{PAGE}"' in inbox.text
            page = await person.get(PAGE)
            assert page.status_code == 200, page.text
            assert f'<a href="{PAGE}" aria-current="page">Paridad de precios</a>' in page.text
            assert "CHAQ-VAQ-L" in page.text


# --- the report -------------------------------------------------------------------------------


async def test_the_skus_beyond_the_policy_largest_gap_first_in_both_languages(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, make_tenant: Any
) -> None:
    await open_shop(client, tenant)
    # Another shop's prices never show.
    other = await make_tenant("Otra tienda")
    await add_product(client, other, "AJENO", "Producto ajeno")
    await set_price(client, other, "AJENO", "web", 100)
    await set_price(client, other, "AJENO", "app", 900)
    supervisor = await make_user(client, tenant, "Sara", "supervisor")

    async with browser(app) as sara:
        await signed_in(sara, supervisor["email"])
        spanish = (await sara.get(PAGE)).text
        english = (await sara.get(f"{PAGE}?lang=en")).text

    # The same SKUs as the API's report; the gift whose lowest price is free comes first, then
    # by the gap in percent.
    api = await client.get("/v1/price-parity", headers=tenant.headers)
    assert sorted(item["sku"] for item in api.json()["items"]) == sorted(rows_of(spanish))
    assert list(rows_of(spanish)) == ["REGALO", "CHAQ-VAQ-L", "CAM-BAS-M", "LIBRO-JP"]
    assert "AJENO" not in spanish

    rows = rows_of(spanish)
    jacket = rows["CHAQ-VAQ-L"]
    assert "Chaqueta vaquera" in jacket
    assert "Talla L" in jacket
    assert price_of(jacket, "web") == f"web 59,99{NBSP}€ el más bajo"
    assert price_of(jacket, "store:MAD01") == (
        f"store:MAD01 69,99{NBSP}€ +16,67{NBSP}% supera el 0{NBSP}% permitido"
    )
    assert cell(jacket, "gap-amount") == f"10,00{NBSP}€"
    assert cell(jacket, "gap-percent") == f"16,67{NBSP}%"
    tshirt = rows["CAM-BAS-M"]
    assert price_of(tshirt, "marketplace") == (
        f"marketplace 21,99{NBSP}€ +10,01{NBSP}% supera el 5{NBSP}% permitido"
    )
    assert (cell(tshirt, "gap-amount"), cell(tshirt, "gap-percent")) == (
        f"2,00{NBSP}€",
        f"10,01{NBSP}%",
    )
    # Yen have no minor unit: 150 is ¥150.
    book = rows["LIBRO-JP"]
    assert price_of(book, "app-jp") == (
        f"app-jp 1.650{NBSP}JPY +10{NBSP}% supera el 0{NBSP}% permitido"
    )
    assert cell(book, "gap-amount") == f"150{NBSP}JPY"
    gift = rows["REGALO"]
    assert price_of(gift, "app") == f"app 1,50{NBSP}€ supera el 0{NBSP}% permitido"
    assert cell(gift, "gap-percent") == "—"
    # Channels that price other SKUs but not this one.
    assert "Sin precio en: app, app-jp, store:MAD01, web-jp" in text_of(tshirt)
    # The policy, in words.
    assert "Un SKU debe costar lo mismo en todos los canales." in spanish
    assert f"marketplace puede estar hasta un 5{NBSP}% por encima del canal más barato." in spanish
    assert '<span class="chip" id="beyond-count">4</span>' in spanish

    rows = rows_of(english)
    assert list(rows) == ["REGALO", "CHAQ-VAQ-L", "CAM-BAS-M", "LIBRO-JP"]
    assert price_of(rows["CAM-BAS-M"], "marketplace") == (
        "marketplace €21.99 +10.01% beyond the 5% allowed"
    )
    assert price_of(rows["CAM-BAS-M"], "web") == "web €19.99 lowest"
    assert (cell(rows["CHAQ-VAQ-L"], "gap-amount"), cell(rows["CHAQ-VAQ-L"], "gap-percent")) == (
        "€10.00",
        "16.67%",
    )
    assert cell(rows["LIBRO-JP"], "gap-amount") == "¥150"
    assert "A SKU must cost the same in every channel." in english
    assert "marketplace may be up to 5% higher than the cheapest channel." in english
    assert '<span class="chip" id="beyond-count">4</span>' in english


async def test_the_report_filters_by_channel_and_by_sku(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    await open_shop(client, tenant)
    supervisor = await make_user(client, tenant, "Sara", "supervisor")
    async with browser(app) as sara:
        await signed_in(sara, supervisor["email"])
        marketplace = (await sara.get(PAGE, params={"channel": "marketplace"})).text
        assert list(rows_of(marketplace)) == ["CAM-BAS-M"]
        assert '<option value="marketplace" selected>' in marketplace
        assert "Se muestran 1 de los 4 SKU fuera de la política." in text_of(marketplace)
        web = (await sara.get(PAGE, params={"channel": "web"})).text
        assert list(rows_of(web)) == ["REGALO", "CHAQ-VAQ-L", "CAM-BAS-M"]
        # A piece of the SKU, in any case.
        books = (await sara.get(PAGE, params={"sku": "jp"})).text
        assert list(rows_of(books)) == ["LIBRO-JP"]
        nothing = (await sara.get(PAGE, params={"channel": "marketplace", "sku": "chaq"})).text
        assert rows_of(nothing) == {}
        assert "Ningún SKU fuera de la política coincide con estos filtros." in nothing
        assert f'href="{PAGE}"' in nothing
        # Empty filters filter nothing; an absurd one is a page that says so.
        everything = (await sara.get(PAGE, params={"channel": "", "sku": " "})).text
        assert len(rows_of(everything)) == 4
        too_long = await sara.get(PAGE, params={"sku": "x" * 65})
        assert too_long.status_code == 422


async def test_every_price_within_the_policy_is_an_empty_report(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    await set_policy(client, tenant, 2, {"marketplace": 5})
    await add_product(client, tenant, "ZAP-RUN-42", "Zapatillas running")
    await set_price(client, tenant, "ZAP-RUN-42", "web", 8999)
    await set_price(client, tenant, "ZAP-RUN-42", "app", 9100)
    await set_price(client, tenant, "ZAP-RUN-42", "marketplace", 9399)
    supervisor = await make_user(client, tenant, "Sara", "supervisor")
    async with browser(app) as sara:
        await signed_in(sara, supervisor["email"])
        spanish = (await sara.get(PAGE)).text
        english = (await sara.get(f"{PAGE}?lang=en")).text
    assert rows_of(spanish) == {}
    assert "Todos los precios están dentro de la política." in spanish
    assert (
        f"Cualquier canal puede estar hasta un 2{NBSP}% por encima del canal más barato." in spanish
    )
    assert "Every price is within the policy." in english
    assert "Every channel may be up to 2% higher than the cheapest channel." in english


# --- the policy form --------------------------------------------------------------------------


async def test_the_policy_form_validates_like_the_api_and_saves(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    await open_shop(client, tenant)
    supervisor = await make_user(client, tenant, "Sara", "supervisor")
    stored = {"max_gap_percent": 0.0, "allowances": {"marketplace": 5.0}}
    assert await policy_of(client, tenant) == stored

    async with browser(app) as sara:
        await signed_in(sara, supervisor["email"])
        page = await sara.get(PAGE)
        token = csrf_of(page)
        # The form shows the policy stored.
        assert (
            'name="max_gap_percent" type="text" inputmode="decimal" maxlength="40" value="0"'
            in (page.text)
        )
        assert 'value="marketplace"' in page.text

        # Without the form's token: refused, nothing changes.
        forged = await sara.post(POLICY_FORM, data={"max_gap_percent": "50"})
        assert forged.status_code == 403
        assert "Este formulario ha caducado" in forged.text

        # Bad values: the page again, each message beside its field, the values as typed.
        cases: list[tuple[dict[str, Any], str]] = [
            (
                {"max_gap_percent": "mucho"},
                "La diferencia permitida a todos los canales debe ser un número de 0 a 1000.",
            ),
            (
                {"max_gap_percent": "-1"},
                "La diferencia permitida a todos los canales debe ser un número de 0 a 1000.",
            ),
            (
                {"allowance_channel": ["Marketplace"], "allowance_percent": ["5"]},
                "«Marketplace» no es un código de canal",
            ),
            (
                {"allowance_channel": ["marketplace"], "allowance_percent": ["2000"]},
                "El margen de marketplace debe ser un número de 0 a 1000.",
            ),
            (
                {
                    "allowance_channel": ["marketplace", "marketplace"],
                    "allowance_percent": ["5", "7"],
                },
                "marketplace tiene dos márgenes: deja solo uno.",
            ),
            (
                {"allowance_channel": ["app"], "allowance_percent": [""]},
                "Cada margen necesita un canal y un porcentaje.",
            ),
        ]
        for fields, message in cases:
            data: dict[str, Any] = {"csrf_token": token, "max_gap_percent": "0", **fields}
            refused = await sara.post(POLICY_FORM, data=data)
            assert refused.status_code == 422, (fields, refused.text)
            assert message in refused.text, fields
            assert 'aria-invalid="true"' in refused.text
            assert "No se ha guardado la política:" in refused.text
            typed = fields.get("max_gap_percent") or fields["allowance_channel"][0]
            assert f'value="{typed}"' in refused.text
            # The report is still there under the form.
            assert "CHAQ-VAQ-L" in refused.text
        assert await policy_of(client, tenant) == stored

        # A decimal comma, a store's own allowance, and the marketplace's row left empty.
        saved = await sara.post(
            POLICY_FORM,
            data={
                "csrf_token": token,
                "max_gap_percent": "2,5",
                "allowance_channel": ["", "store:MAD01", ""],
                "allowance_percent": ["", "20", ""],
            },
        )
        assert saved.status_code == 303, saved.text
        assert saved.headers["location"] == f"{PAGE}?saved=true"
        after = (await sara.get(saved.headers["location"])).text
        english = (await sara.get(f"{PAGE}?lang=en")).text

    assert await policy_of(client, tenant) == {
        "max_gap_percent": 2.5,
        "allowances": {"store:MAD01": 20.0},
    }
    assert "Se ha guardado la política de precios." in after
    assert (
        f"Cualquier canal puede estar hasta un 2,5{NBSP}% por encima del canal más barato." in after
    )
    assert f"store:MAD01 puede estar hasta un 20{NBSP}% por encima del canal más barato." in after
    # The jacket is within the store's 20 % now; without the marketplace's 5 %, the trainers'
    # 4.45 % there is beyond 2.5 %.
    assert list(rows_of(after)) == ["REGALO", "CAM-BAS-M", "LIBRO-JP", "ZAP-RUN-42"]
    assert 'value="2,5"' in after
    assert 'value="2.5"' in english
    assert "store:MAD01 may be up to 20% higher than the cheapest channel." in english
