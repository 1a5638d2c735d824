"""Console pages of commerce: ``/console/commerce/price-parity``, the price-parity report, and
the form that edits the tenant's parity policy.

Only supervisors and admins open them (the API's parity policy needs a supervisor key too); an
agent gets the 403 page, as on the supervisor view.

The report is ``commerce.pricing``'s, as ``GET /v1/price-parity`` gives it: each SKU's
effective prices now, compared per currency with the lowest of them. The page lists the SKUs
where some channel is beyond its allowance, the largest gap first: by percent of the lowest
price, a free lowest price (which has no percent) before any other, then by SKU. It filters them
by a channel among those compared and by a piece of the SKU (any case). Amounts are integer
minor units: the page divides them by ten to the currency's digits in CLDR (2 for EUR, 0 for
JPY, 3 for KWD; Babel's ``get_currency_precision``) and writes them with Babel's
``format_currency`` in the reader's language, as it writes percentages with ``format_percent``.

The policy form sends what ``PUT /v1/price-parity/policy`` takes and is validated by the same
schema (``ParityPolicyIn``); numbers may be written with a decimal comma. A bad value redraws the
page (422) with a message beside the field and the values as typed, and stores nothing. The
form carries the session's CSRF token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated

from babel.numbers import format_currency, format_decimal, format_percent, get_currency_precision
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from hilos.commerce import catalog, pricing
from hilos.commerce.schemas import ParityPolicyIn
from hilos.core.clock import now
from hilos.core.deps import DbSession
from hilos.web.console import Agent, ConsoleError, ConsoleRoute, FormAgent, _language, _page
from hilos.web.i18n import N_, translations
from hilos.web.service import SignedInAgent

COMMERCE_ROLES = ("supervisor", "admin")
PARITY_PATH = "/console/commerce/price-parity"
# Empty allowance rows under the tenant's own, for new channels.
BLANK_ALLOWANCES = 3
MAX_ALLOWANCES = 200


def _may_manage_prices(agent: SignedInAgent) -> SignedInAgent:
    if agent.role not in COMMERCE_ROLES:
        raise ConsoleError(
            403, N_("Price parity is for supervisors and administrators."), back=None
        )
    return agent


async def _price_manager(agent: Agent) -> SignedInAgent:
    return _may_manage_prices(agent)


async def _price_manager_form(agent: FormAgent) -> SignedInAgent:
    return _may_manage_prices(agent)


PriceManager = Annotated[SignedInAgent, Depends(_price_manager, scope="function")]
# A supervisor's or an admin's form post that carried the session's CSRF token.
FormPriceManager = Annotated[SignedInAgent, Depends(_price_manager_form, scope="function")]

router = APIRouter(
    include_in_schema=False, route_class=ConsoleRoute, default_response_class=HTMLResponse
)


# --- numbers in the reader's language ---------------------------------------------------------


def money(amount: int, currency: str, language: str) -> str:
    """Integer minor units of ``currency`` as the reader writes money: ``12,50 €``, ``€12.50``."""
    major = Decimal(amount).scaleb(-get_currency_precision(currency))
    return format_currency(major, currency, locale=language)


def percent(value: float, language: str) -> str:
    """A percentage (``5.25`` is 5.25 %) as the reader writes it: ``5,25 %``, ``5.25%``."""
    return format_percent(Decimal(str(value)) / 100, locale=language, decimal_quantization=False)


def plain_number(value: float, language: str) -> str:
    """A number to edit in a form field: no grouping, the reader's decimal mark."""
    return format_decimal(Decimal(str(value)), format="0.##", locale=language)


def parse_number(text: str) -> float | str:
    """The number typed in a form field (``2.5`` or ``2,5``), or the text unchanged when it is
    not a finite number, for the schema to refuse."""
    try:
        value = Decimal(text.strip().replace(",", "."))
    except InvalidOperation:
        return text
    return float(value) if value.is_finite() else text


# --- the report ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PriceCell:
    channel: str
    amount: str
    # From the lowest price; None for the lowest itself and when the lowest is free.
    gap: str | None
    allowed: str
    exceeds: bool
    lowest: bool


@dataclass(frozen=True, slots=True)
class ParityRow:
    sku: str
    product: str | None
    # The variant's own name, when it says more than the product's.
    variant: str | None
    currency: str
    prices: list[PriceCell]
    gap_amount: str
    gap_percent: str | None
    missing_channels: list[str]


def _order(item: pricing.ParityItem) -> tuple[int, float, str, str]:
    if item.gap_percent is None:
        return (0, 0.0, item.sku, item.currency)
    return (1, -item.gap_percent, item.sku, item.currency)


def report_rows(
    items: Sequence[pricing.ParityItem],
    names: Mapping[str, tuple[str, str]],
    *,
    language: str,
    channel: str | None = None,
    sku: str | None = None,
) -> list[ParityRow]:
    """The rows of the page: ``items`` narrowed by ``channel`` and ``sku``, largest gap first."""
    found = [
        item
        for item in items
        if (channel is None or any(p.channel == channel for p in item.prices))
        and (sku is None or sku.casefold() in item.sku.casefold())
    ]
    rows = []
    for item in sorted(found, key=_order):
        product, variant = names.get(item.sku, (None, None))
        highest = max(p.amount for p in item.prices)
        rows.append(
            ParityRow(
                sku=item.sku,
                product=product,
                variant=variant if variant and variant not in (product, item.sku) else None,
                currency=item.currency,
                prices=[
                    PriceCell(
                        channel=p.channel,
                        amount=money(p.amount, p.currency, language),
                        gap=percent(p.gap_percent, language) if p.gap_percent else None,
                        allowed=percent(p.allowed_percent, language),
                        exceeds=p.exceeds,
                        lowest=p.amount == item.reference_amount,
                    )
                    for p in item.prices
                ],
                gap_amount=money(highest - item.reference_amount, item.currency, language),
                gap_percent=None
                if item.gap_percent is None
                else percent(item.gap_percent, language),
                missing_channels=item.missing_channels,
            )
        )
    return rows


def policy_sentences(policy: pricing.ParityPolicyView, language: str) -> list[str]:
    """The tenant's policy in the reader's words, one sentence per rule."""
    gettext = translations(language).gettext
    if policy.max_gap_percent:
        sentences = [
            gettext("Every channel may be up to %(percent)s higher than the cheapest channel.")
            % {"percent": percent(policy.max_gap_percent, language)}
        ]
    else:
        sentences = [gettext("A SKU must cost the same in every channel.")]
    for channel, allowed in sorted(policy.allowances.items()):
        if allowed:
            sentence = gettext(
                "%(channel)s may be up to %(percent)s higher than the cheapest channel."
            ) % {"channel": channel, "percent": percent(allowed, language)}
        else:
            sentence = gettext("%(channel)s must match the cheapest channel.") % {
                "channel": channel
            }
        sentences.append(sentence)
    return sentences


# --- the policy form --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AllowanceField:
    channel: str
    percent: str
    error: str | None = None


@dataclass(frozen=True, slots=True)
class PolicyForm:
    """The policy form's fields as shown: the values stored, or as typed with their errors."""

    max_gap_percent: str
    allowances: list[AllowanceField]
    max_gap_error: str | None = None

    @property
    def errors(self) -> list[str]:
        found = [self.max_gap_error] if self.max_gap_error else []
        return found + [a.error for a in self.allowances if a.error]


def _form_of(policy: pricing.ParityPolicyView, language: str) -> PolicyForm:
    rows = [
        AllowanceField(channel, plain_number(allowed, language))
        for channel, allowed in sorted(policy.allowances.items())
    ]
    return PolicyForm(
        max_gap_percent=plain_number(policy.max_gap_percent, language),
        allowances=rows + [AllowanceField("", "")] * BLANK_ALLOWANCES,
    )


def read_policy_form(
    max_gap_percent: str, channels: Sequence[str], percents: Sequence[str], language: str
) -> ParityPolicyIn | PolicyForm:
    """The policy the form asks for, or the form again with a message beside each bad field."""
    gettext = translations(language).gettext
    typed = [
        (channel.strip(), share.strip())
        for channel, share in zip(channels, percents, strict=False)
        if channel.strip() or share.strip()
    ]
    errors: dict[int, str] = {}
    seen: dict[str, int] = {}
    for index, (channel, share) in enumerate(typed):
        if not channel or not share:
            errors[index] = gettext("Each allowance needs a channel and a percentage.")
        elif channel in seen:
            errors[index] = gettext("%(channel)s has two allowances: keep one.") % {
                "channel": channel
            }
        else:
            seen[channel] = index
    max_gap_error = None
    if len(typed) > MAX_ALLOWANCES:
        max_gap_error = gettext("A policy has 200 allowances at most.")
    policy: ParityPolicyIn | None = None
    if not errors and max_gap_error is None:
        try:
            policy = ParityPolicyIn.model_validate(
                {
                    "max_gap_percent": parse_number(max_gap_percent),
                    "allowances": {channel: parse_number(share) for channel, share in typed},
                }
            )
        except ValidationError as error:
            for problem in error.errors():
                where = problem["loc"]
                if where[0] == "allowances" and len(where) >= 2 and str(where[1]) in seen:
                    channel = str(where[1])
                    if where[-1] == "[key]":
                        message = gettext(
                            "“%(channel)s” is not a channel code: lowercase letters, digits, "
                            "- and _ (web, marketplace), or store: and a store's code "
                            "(store:MAD01)."
                        )
                    else:
                        message = gettext(
                            "The allowance of %(channel)s must be a number from 0 to 1000."
                        )
                    errors.setdefault(seen[channel], message % {"channel": channel})
                else:
                    max_gap_error = gettext(
                        "The gap every channel may have must be a number from 0 to 1000."
                    )
    if policy is not None:
        return policy
    return PolicyForm(
        max_gap_percent=max_gap_percent.strip(),
        allowances=[
            AllowanceField(channel, share, errors.get(index))
            for index, (channel, share) in enumerate(typed)
        ]
        + [AllowanceField("", "")] * BLANK_ALLOWANCES,
        max_gap_error=max_gap_error,
    )


# --- the page -----------------------------------------------------------------------------------


async def _parity_page(
    request: Request,
    session: AsyncSession,
    agent: SignedInAgent,
    *,
    channel: str | None,
    sku: str | None,
    form: PolicyForm | None = None,
    saved: bool = False,
    status_code: int = 200,
) -> Response:
    language = _language(request, agent)
    tenant = agent.tenant
    moment: datetime = now()
    policy = await pricing.get_policy(session, tenant)
    prices = await pricing.effective_prices(session, tenant, at=moment)
    items = pricing.compare(prices, policy)
    names = await catalog.names_by_sku(session, tenant, [item.sku for item in items])
    channels = sorted({c for by_channel in prices.values() for c in by_channel})
    return _page(
        request,
        "price_parity.html",
        {
            "nav": "price_parity",
            "at": moment,
            "policy": policy_sentences(policy, language),
            "form": form or _form_of(policy, language),
            "rows": report_rows(items, names, language=language, channel=channel, sku=sku),
            "beyond_policy": len(items),
            "channels": channels,
            "channel": channel,
            "sku": sku or "",
            "filtered": channel is not None or bool(sku),
            "saved": saved,
        },
        agent=agent,
        status_code=status_code,
    )


def _filter(value: str | None) -> str | None:
    """A filter of the page's address; an empty one filters nothing."""
    if value is None:
        return None
    return value.strip() or None


@router.get(PARITY_PATH)
async def price_parity_page(
    request: Request,
    session: DbSession,
    agent: PriceManager,
    channel: Annotated[str | None, Query(max_length=64)] = None,
    sku: Annotated[str | None, Query(max_length=64)] = None,
    saved: Annotated[bool, Query()] = False,
) -> Response:
    return await _parity_page(
        request, session, agent, channel=_filter(channel), sku=_filter(sku), saved=saved
    )


@router.post(f"{PARITY_PATH}/policy")
async def save_policy(
    request: Request,
    session: DbSession,
    agent: FormPriceManager,
    max_gap_percent: Annotated[str, Form(max_length=40)] = "",
    allowance_channel: Annotated[list[str], Form()] = [],  # noqa: B006 - FastAPI copies it
    allowance_percent: Annotated[list[str], Form()] = [],  # noqa: B006 - FastAPI copies it
) -> Response:
    """Replace the tenant's parity policy, as ``PUT /v1/price-parity/policy`` does."""
    language = _language(request, agent)
    read = read_policy_form(max_gap_percent, allowance_channel, allowance_percent, language)
    if isinstance(read, PolicyForm):
        return await _parity_page(
            request, session, agent, channel=None, sku=None, form=read, status_code=422
        )
    await pricing.set_policy(
        session,
        agent.tenant,
        max_gap_percent=read.max_gap_percent,
        allowances=dict(read.allowances),
    )
    return RedirectResponse(f"{PARITY_PATH}?saved=true", status_code=303)
