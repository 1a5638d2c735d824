"""The omnichannel audit: how mature a business's omnichannel service is, computed from its own
data rather than from a questionnaire.

What it owns: eight metrics measured on the tenant's data, the rules that score them, the four
areas they add up to (single customer view, engagement, fulfilment, cost to serve), each
area's maturity level, the gaps found and the next steps recommended, in Spanish or English.
It reads and never writes. Where a domain's service answers the question it asks that service
(channels, locations, prices and the parity policy); the counts no service offers (how many
conversations reach a known customer, which stores moved stock today) it reads as aggregates
with one query each, scoped to the tenant, as an analytics read model does.

The metrics (``docs/audit.md`` has the same list with the reasons for each target). The window
is the last ``days`` days (30 unless asked) before the audit's moment:

* **channel_coverage**: of the common channel kinds (every kind but ``api``), the share that
  the tenant has set up (an enabled channel) *and* used (a message in the window).
* **identified_customer_rate**: of the conversations started in the window (merged ones left
  out), the share whose customer has at least one identity that is not ``anonymous``.
* **cross_channel_continuity**: of the customers whose conversations in the window crossed two
  or more channel kinds, the share with at least one conversation that itself crossed two kinds
  (it continued when they changed channel) rather than one conversation per kind (split).
* **response_time_consistency**: the coefficient of variation (population standard deviation
  over mean) of the median first response of each channel kind, by the clock: the first
  responses are the KPIs' (``kpis.response_times``: a conversation's first customer message in
  the window to the first reply that was not automated), on the channels of that kind; a kind
  counts once it has ``MIN_ANSWERED_PER_KIND`` answered ones, and the metric needs two such
  kinds. Lower is better.
* **price_parity**: of the SKUs priced in two or more channels in one currency now, the share
  within the tenant's parity policy (``commerce.pricing``'s rule).
* **stock_visibility**: of the stores (locations of kind ``store``), the share whose stock
  changed through a movement (a receipt, a sale, a count...) in the last 24 hours.
* **consent_coverage**: of the live customers (not merged away), the share with a recorded
  marketing consent decision, granted or refused, on any channel.
* **survey_coverage**: of the conversations resolved in the window, the share with a survey
  answer about them (``survey_responses``, whichever way it came: a reply, the answer page,
  the API).

Scoring: a metric's score is 0 at its ``floor`` value, 100 at its ``target`` and linear between
(clamped); a metric with no value (nothing to measure yet) scores 0, because an audit credits
only what the data shows. An area's score is the weighted mean of its metrics' scores, rounded;
its level is 1 to 5 by steps of 20 points. A gap is a metric of the area below its target (or
without a value); gaps come largest weighted loss first, each with its next step.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from babel.numbers import format_decimal, format_percent
from sqlalchemy import case, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from hilos.analytics import kpis
from hilos.analytics.survey_models import SurveyResponse
from hilos.channels import service as channels
from hilos.channels.kinds import CHANNEL_KINDS
from hilos.commerce import catalog, pricing
from hilos.commerce.stock_models import StockMovement
from hilos.conversations.models import Conversation, Message
from hilos.core.clock import now
from hilos.core.errors import Invalid
from hilos.core.tenancy import TenantContext
from hilos.customers.models import Consent, Customer, Identity
from hilos.web.i18n import LANGUAGES, N_, VOCABULARY, supported_language, translations

DEFAULT_DAYS = 30
MAX_DAYS = 365
# Every channel kind a customer can reach a business on; ``api`` is an integration, not one.
COMMON_KINDS: tuple[str, ...] = tuple(kind for kind in CHANNEL_KINDS if kind != "api")
MIN_ANSWERED_PER_KIND = 3
STOCK_FRESH = timedelta(hours=24)
AREAS: tuple[str, ...] = ("customer_view", "engagement", "fulfilment", "cost_to_serve")

AREA_NAMES: Mapping[str, str] = {
    "customer_view": N_("Single customer view"),
    "engagement": N_("Engagement"),
    "fulfilment": N_("Fulfilment"),
    "cost_to_serve": N_("Cost to serve"),
}
# Level n is reached from LEVEL_STEP * (n - 1) points.
LEVEL_STEP = 20
LEVEL_NAMES: Mapping[int, str] = {
    1: N_("Single channel"),
    2: N_("Multichannel"),
    3: N_("Cross-channel"),
    4: N_("Integrated"),
    5: N_("Omnichannel"),
}


@dataclass(frozen=True, slots=True)
class MetricRule:
    """How a metric is scored and explained. ``floor`` scores 0 and ``target`` 100; a target
    below its floor means lower is better."""

    name: str
    label: str
    target: float
    floor: float
    # Shown when the value is short of the target; formatted with value, target and details.
    gap: str
    # Shown when there is nothing to measure.
    no_data: str
    next_step: str
    # A share (0–1, written as a percentage) or a ratio (the coefficient of variation).
    share: bool = True

    @property
    def lower_is_better(self) -> bool:
        return self.target < self.floor

    def score(self, value: float | None) -> int:
        if value is None:
            return 0
        ratio = (value - self.floor) / (self.target - self.floor)
        return round(100 * min(1.0, max(0.0, ratio)))

    def meets(self, value: float | None) -> bool:
        if value is None:
            return False
        return value <= self.target if self.lower_is_better else value >= self.target


RULES: Mapping[str, MetricRule] = {
    rule.name: rule
    for rule in (
        MetricRule(
            name="channel_coverage",
            label=N_("Channel coverage"),
            target=0.5,
            floor=0.1,
            gap=N_(
                "%(value)s of the common channels were set up and used in the last %(days)s "
                "days; the target is %(target)s. Not in use: %(missing)s."
            ),
            no_data=N_("No channel is set up."),
            next_step=N_(
                "Connect the channels your customers already use (%(missing)s) and answer "
                "them from the same inbox."
            ),
        ),
        MetricRule(
            name="identified_customer_rate",
            label=N_("Identified customers"),
            target=0.8,
            floor=0.2,
            gap=N_(
                "%(value)s of the conversations have a known customer (an email, a phone or "
                "another identity, not only an anonymous device); the target is %(target)s."
            ),
            no_data=N_("No conversation started in the last %(days)s days: nothing to measure."),
            next_step=N_(
                "Ask for an email or a phone number in the web chat and link loyalty cards, "
                "so that every conversation reaches a known customer."
            ),
        ),
        MetricRule(
            name="cross_channel_continuity",
            label=N_("Cross-channel continuity"),
            target=0.9,
            floor=0.2,
            gap=N_(
                "%(value)s of the customers who used two or more channels kept one "
                "conversation across them; the others started over. The target is %(target)s."
            ),
            no_data=N_(
                "No customer used two or more channels in the last %(days)s days: continuity "
                "cannot be shown yet."
            ),
            next_step=N_(
                "Keep a customer's conversation open when they change channel: answer on the "
                "channel they last used and resolve only when the matter is settled."
            ),
        ),
        MetricRule(
            name="response_time_consistency",
            label=N_("Response-time consistency"),
            target=0.25,
            floor=1.0,
            share=False,
            gap=N_(
                "The median first response varies between channels by a coefficient of "
                "variation of %(value)s (slowest: %(slowest)s, fastest: %(fastest)s); the "
                "target is %(target)s at most."
            ),
            no_data=N_(
                "Fewer than two channels have %(minimum)s answered conversations each: "
                "response times cannot be compared."
            ),
            next_step=N_(
                "Serve every channel alike: route the slow channels (%(slowest)s) to a staffed "
                "queue with SLA targets."
            ),
        ),
        MetricRule(
            name="price_parity",
            label=N_("Price parity"),
            target=0.95,
            floor=0.5,
            gap=N_(
                "%(value)s of the SKUs sold in several channels are priced within your parity "
                "policy; the target is %(target)s."
            ),
            no_data=N_("No SKU is priced in two or more channels: parity cannot be checked."),
            next_step=N_(
                "Align the prices beyond your policy (see the price-parity report), or widen "
                "the policy where a channel's difference is intended."
            ),
        ),
        MetricRule(
            name="stock_visibility",
            label=N_("Live stock in stores"),
            target=0.9,
            floor=0.0,
            gap=N_(
                "%(value)s of your stores recorded stock movements in the last 24 hours; the "
                "target is %(target)s."
            ),
            no_data=N_("No store is set up: customers cannot see stock in stores."),
            next_step=N_(
                "Send each store's stock movements as they happen (point of sale, or a CSV "
                "import at least daily) so that every channel can promise store stock."
            ),
        ),
        MetricRule(
            name="consent_coverage",
            label=N_("Consent coverage"),
            target=0.7,
            floor=0.1,
            gap=N_(
                "%(value)s of the customers have a recorded marketing consent decision; the "
                "target is %(target)s."
            ),
            no_data=N_("No customer yet."),
            next_step=N_(
                "Ask for marketing consent when customers identify themselves (checkout, "
                "loyalty sign-up, chat) and record the answer."
            ),
        ),
        MetricRule(
            name="survey_coverage",
            label=N_("Survey coverage"),
            target=0.3,
            floor=0.0,
            gap=N_(
                "%(value)s of the resolved conversations got a survey answer; the target is "
                "%(target)s."
            ),
            no_data=N_("No conversation was resolved in the last %(days)s days."),
            next_step=N_(
                "Send a satisfaction survey (CSAT) after each resolved conversation, on the "
                "channel it ended on."
            ),
        ),
    )
}

# Each area's metrics and their weights (each area's weights add up to 1).
AREA_WEIGHTS: Mapping[str, Mapping[str, float]] = {
    "customer_view": {
        "identified_customer_rate": 0.4,
        "cross_channel_continuity": 0.3,
        "consent_coverage": 0.3,
    },
    "engagement": {
        "channel_coverage": 0.35,
        "response_time_consistency": 0.25,
        "survey_coverage": 0.2,
        "consent_coverage": 0.2,
    },
    "fulfilment": {
        "stock_visibility": 0.5,
        "price_parity": 0.5,
    },
    "cost_to_serve": {
        "response_time_consistency": 0.4,
        "cross_channel_continuity": 0.35,
        "identified_customer_rate": 0.25,
    },
}


# --- what the audit answers -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Measure:
    """A metric's value with what it was computed from."""

    value: float | None
    numerator: int | None = None
    denominator: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    label: str
    value: float | None
    target: float
    score: int
    numerator: int | None
    denominator: int | None
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Gap:
    code: str
    message: str
    metric: str
    value: float | None
    target: float


@dataclass(frozen=True, slots=True)
class NextStep:
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Area:
    name: str
    label: str
    score: int
    level: int
    level_name: str
    weights: dict[str, float]
    gaps: list[Gap]
    next_steps: list[NextStep]


@dataclass(frozen=True, slots=True)
class Audit:
    computed_at: datetime
    since: datetime
    days: int
    language: str
    areas: dict[str, Area]
    metrics: dict[str, Metric]


def audit_language(requested: str | None, tenant: TenantContext) -> str:
    """The language of the audit's texts: ``requested`` (es or en), else the tenant's locale."""
    if requested is not None:
        language = requested.strip().lower()
        if language not in LANGUAGES:
            raise Invalid(
                f"unsupported language {requested!r}: use one of {', '.join(LANGUAGES)}",
                field="lang",
                code="unsupported_language",
            )
        return language
    return supported_language(tenant.locale) or LANGUAGES[0]


def level_of(score: int) -> int:
    return min(5, 1 + score // LEVEL_STEP)


async def compute(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    language: str,
    days: int = DEFAULT_DAYS,
    at: datetime | None = None,
) -> Audit:
    """The tenant's audit at ``at`` (now unless given) over the last ``days`` days."""
    if not 1 <= days <= MAX_DAYS:
        raise Invalid(f"days must be from 1 to {MAX_DAYS}", field="days")
    moment = at or now()
    since = moment - timedelta(days=days)
    measures = await measure_all(session, tenant, since=since, at=moment)
    metrics = {
        name: Metric(
            name=name,
            label=translations(language).gettext(RULES[name].label),
            value=measure.value,
            target=RULES[name].target,
            score=RULES[name].score(measure.value),
            numerator=measure.numerator,
            denominator=measure.denominator,
            detail=measure.detail,
        )
        for name, measure in measures.items()
    }
    areas = {area: _area(area, metrics, measures, language=language, days=days) for area in AREAS}
    return Audit(
        computed_at=moment,
        since=since,
        days=days,
        language=language,
        areas=areas,
        metrics=metrics,
    )


async def measure_all(
    session: AsyncSession, tenant: TenantContext, *, since: datetime, at: datetime
) -> dict[str, Measure]:
    """Every metric's measure (the same order as ``RULES``)."""
    kinds = {channel.id: channel.kind for channel in await channels.list_channels(session, tenant)}
    found = {
        "channel_coverage": await channel_coverage(session, tenant, since=since, at=at),
        "identified_customer_rate": await identified_customer_rate(
            session, tenant, since=since, at=at
        ),
        "cross_channel_continuity": await cross_channel_continuity(
            session, tenant, since=since, at=at, kinds=kinds
        ),
        "response_time_consistency": await response_time_consistency(
            session, tenant, since=since, at=at, kinds=kinds
        ),
        "price_parity": await price_parity(session, tenant, at=at),
        "stock_visibility": await stock_visibility(session, tenant, at=at),
        "consent_coverage": await consent_coverage(session, tenant),
        "survey_coverage": await survey_coverage(session, tenant, since=since, at=at),
    }
    return {name: found[name] for name in RULES}


# --- the metrics ------------------------------------------------------------------------------


def _share(numerator: int, denominator: int) -> float | None:
    return None if denominator == 0 else numerator / denominator


def _count_where(condition: Any) -> Any:
    """How many rows meet ``condition`` (SUM of a CASE: portable to every SQLite)."""
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _window_conversations(tenant: TenantContext, since: datetime, at: datetime) -> Any:
    """The conditions of the conversations started in the window, merged ones left out."""
    return (
        Conversation.tenant_id == tenant.id,
        Conversation.created_at >= since,
        Conversation.created_at < at,
        Conversation.status != "merged",
    )


async def channel_coverage(
    session: AsyncSession, tenant: TenantContext, *, since: datetime, at: datetime
) -> Measure:
    configured = {
        channel.id: channel.kind
        for channel in await channels.list_channels(session, tenant)
        if channel.disabled_at is None and channel.kind in COMMON_KINDS
    }
    used_ids = set(
        (
            await session.execute(
                select(Message.channel_id)
                .where(
                    Message.tenant_id == tenant.id,
                    Message.sent_at >= since,
                    Message.sent_at < at,
                    Message.channel_id.is_not(None),
                )
                .distinct()
            )
        )
        .scalars()
        .all()
    )
    set_up = sorted(set(configured.values()), key=COMMON_KINDS.index)
    active = sorted(
        {kind for channel_id, kind in configured.items() if channel_id in used_ids},
        key=COMMON_KINDS.index,
    )
    return Measure(
        value=len(active) / len(COMMON_KINDS),
        numerator=len(active),
        denominator=len(COMMON_KINDS),
        detail={
            "configured": set_up,
            "active": active,
            "missing": [kind for kind in COMMON_KINDS if kind not in active],
        },
    )


async def identified_customer_rate(
    session: AsyncSession, tenant: TenantContext, *, since: datetime, at: datetime
) -> Measure:
    known = exists().where(
        Identity.tenant_id == tenant.id,
        Identity.customer_id == Conversation.customer_id,
        Identity.kind != "anonymous",
    )
    row = (
        await session.execute(
            select(
                func.count(),
                _count_where(known),
            ).where(*_window_conversations(tenant, since, at))
        )
    ).one()
    total, identified = int(row[0]), int(row[1] or 0)
    return Measure(value=_share(identified, total), numerator=identified, denominator=total)


async def cross_channel_continuity(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    since: datetime,
    at: datetime,
    kinds: Mapping[str, str],
) -> Measure:
    rows = await session.execute(
        select(Conversation.customer_id, Conversation.channel_ids).where(
            *_window_conversations(tenant, since, at)
        )
    )
    used: dict[str, set[str]] = defaultdict(set)
    continued: set[str] = set()
    for customer_id, channel_ids in rows.all():
        crossed = {kinds[c] for c in channel_ids or [] if c in kinds}
        used[customer_id] |= crossed
        if len(crossed) >= 2:
            continued.add(customer_id)
    across = {customer_id for customer_id, found in used.items() if len(found) >= 2}
    kept = len(continued & across)
    return Measure(
        value=_share(kept, len(across)),
        numerator=kept,
        denominator=len(across),
        detail={"split": len(across) - kept},
    )


async def response_time_consistency(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    since: datetime,
    at: datetime,
    kinds: Mapping[str, str],
) -> Measure:
    medians: dict[str, float] = {}
    answered: dict[str, int] = {}
    for kind in sorted(set(kinds.values())):
        ids = tuple(sorted(channel_id for channel_id, k in kinds.items() if k == kind))
        window = kpis.KpiFilters(
            start=since,
            end=at,
            channel=kpis.ChannelFilter(value=kind, kind=kind, channel_ids=ids),
        )
        # Wall-clock time: the customer waits the same on every channel, open or closed.
        first = (await kpis.response_times(session, tenant, window, None))["first_response_seconds"]
        if first["count"]:
            answered[kind] = int(first["count"])
        if first["count"] >= MIN_ANSWERED_PER_KIND and first["median"] is not None:
            medians[kind] = float(first["median"])
    detail: dict[str, Any] = {"median_first_response_seconds": medians, "answered": answered}
    if len(medians) < 2:
        return Measure(value=None, denominator=len(medians), detail=detail)
    mean = statistics.fmean(medians.values())
    variation = 0.0 if mean == 0 else statistics.pstdev(medians.values()) / mean
    detail["slowest"] = max(medians, key=lambda kind: (medians[kind], kind))
    detail["fastest"] = min(medians, key=lambda kind: (medians[kind], kind))
    return Measure(value=round(variation, 4), denominator=len(medians), detail=detail)


async def price_parity(session: AsyncSession, tenant: TenantContext, *, at: datetime) -> Measure:
    prices = await pricing.effective_prices(session, tenant, at=at)
    policy = await pricing.get_policy(session, tenant)
    compared = set()
    for sku, by_channel in prices.items():
        currencies = [price.currency for price in by_channel.values()]
        if any(currencies.count(currency) >= 2 for currency in set(currencies)):
            compared.add(sku)
    beyond = {item.sku for item in pricing.compare(prices, policy) if item.exceeds}
    within = len(compared - beyond)
    return Measure(
        value=_share(within, len(compared)),
        numerator=within,
        denominator=len(compared),
        detail={"beyond_policy": sorted(beyond)[:20]},
    )


async def _stores(session: AsyncSession, tenant: TenantContext) -> dict[str, str]:
    """``{location id: code}`` of every store of the tenant."""
    found: dict[str, str] = {}
    after: str | None = None
    while True:
        page = await catalog.list_locations(
            session, tenant, kind="store", after=after, limit=catalog.MAX_PAGE
        )
        found.update({location.id: location.code for location in page})
        if len(page) < catalog.MAX_PAGE:
            return found
        after = page[-1].id


async def stock_visibility(
    session: AsyncSession, tenant: TenantContext, *, at: datetime
) -> Measure:
    stores = await _stores(session, tenant)
    moved = set(
        (
            await session.execute(
                select(StockMovement.location_id)
                .where(
                    StockMovement.tenant_id == tenant.id,
                    StockMovement.created_at >= at - STOCK_FRESH,
                    StockMovement.created_at <= at,
                )
                .distinct()
            )
        )
        .scalars()
        .all()
    )
    fresh = sorted(code for location_id, code in stores.items() if location_id in moved)
    stale = sorted(code for location_id, code in stores.items() if location_id not in moved)
    return Measure(
        value=_share(len(fresh), len(stores)),
        numerator=len(fresh),
        denominator=len(stores),
        detail={"stale_stores": stale[:20]},
    )


async def consent_coverage(session: AsyncSession, tenant: TenantContext) -> Measure:
    decided = exists().where(
        Consent.tenant_id == tenant.id,
        Consent.customer_id == Customer.id,
        Consent.purpose == "marketing",
    )
    row = (
        await session.execute(
            select(func.count(), _count_where(decided)).where(
                Customer.tenant_id == tenant.id, Customer.merged_into_id.is_(None)
            )
        )
    ).one()
    total, with_decision = int(row[0]), int(row[1] or 0)
    return Measure(value=_share(with_decision, total), numerator=with_decision, denominator=total)


async def survey_coverage(
    session: AsyncSession, tenant: TenantContext, *, since: datetime, at: datetime
) -> Measure:
    answered = exists().where(
        SurveyResponse.tenant_id == tenant.id, SurveyResponse.conversation_id == Conversation.id
    )
    row = (
        await session.execute(
            select(func.count(), _count_where(answered)).where(
                Conversation.tenant_id == tenant.id,
                Conversation.status == "resolved",
                Conversation.resolved_at >= since,
                Conversation.resolved_at < at,
            )
        )
    ).one()
    total, with_answer = int(row[0]), int(row[1] or 0)
    return Measure(value=_share(with_answer, total), numerator=with_answer, denominator=total)


# --- areas, gaps and next steps -----------------------------------------------------------------


def _percent(value: float, language: str) -> str:
    return format_percent(Decimal(str(value)), locale=language)


def _ratio(value: float, language: str) -> str:
    return format_decimal(Decimal(str(value)), format="0.00", locale=language)


def _kinds(codes: Sequence[str], gettext: Callable[[str], str]) -> str:
    names = VOCABULARY["channel"]
    return ", ".join(gettext(names[code]) if code in names else code for code in codes) or "—"


def _values(
    rule: MetricRule, measure: Measure, *, language: str, days: int
) -> dict[str, str | int]:
    gettext = translations(language).gettext
    write = _percent if rule.share else _ratio
    detail = measure.detail
    return {
        "value": write(measure.value, language) if measure.value is not None else "—",
        "target": write(rule.target, language),
        "days": days,
        "minimum": MIN_ANSWERED_PER_KIND,
        "missing": _kinds(detail.get("missing", []), gettext),
        "slowest": _kinds([detail["slowest"]] if "slowest" in detail else [], gettext),
        "fastest": _kinds([detail["fastest"]] if "fastest" in detail else [], gettext),
    }


def _area(
    area: str,
    metrics: Mapping[str, Metric],
    measures: Mapping[str, Measure],
    *,
    language: str,
    days: int,
) -> Area:
    gettext = translations(language).gettext
    weights = AREA_WEIGHTS[area]
    score = round(sum(weight * metrics[name].score for name, weight in weights.items()))
    short = [name for name in weights if not RULES[name].meets(metrics[name].value)]
    short.sort(key=lambda name: (-weights[name] * (100 - metrics[name].score), name))
    gaps = []
    steps = []
    for name in short:
        rule, measure = RULES[name], measures[name]
        values = _values(rule, measure, language=language, days=days)
        text = rule.gap if measure.value is not None else rule.no_data
        gaps.append(
            Gap(
                code=f"{name}_below_target" if measure.value is not None else f"{name}_no_data",
                message=gettext(text) % values,
                metric=name,
                value=measure.value,
                target=rule.target,
            )
        )
        steps.append(NextStep(code=name, message=gettext(rule.next_step) % values))
    level = level_of(score)
    return Area(
        name=area,
        label=gettext(AREA_NAMES[area]),
        score=score,
        level=level,
        level_name=gettext(LEVEL_NAMES[level]),
        weights=dict(weights),
        gaps=gaps,
        next_steps=steps,
    )
