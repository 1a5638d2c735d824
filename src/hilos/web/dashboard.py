"""Console pages of analytics: the KPI dashboard (``/console/dashboard``), its printable report
(``/console/dashboard/report``) and the omnichannel audit (``/console/audit``).

Only supervisors and admins open them (the API's ``/v1/kpis`` and ``/v1/audit`` need a
supervisor key too); an agent gets the 403 page, as on the supervisor view.

The dashboard shows, for a date range and filters (a channel, a store, a queue, an agent), the
KPIs of ``analytics.kpis`` as cards, the series of ``analytics.series`` as charts (conversations
and orders per day, first response per day, per messaging and sales channel) and, as a heat
map, the retention of the monthly cohorts of the twelve months up to the range's end (whatever
the range, so that a month's dashboard still shows how earlier customers come back).

The filters are a GET form that works without JavaScript; their meaning and their errors are
``kpis.resolve_filters``': a range upside down, too long, a date that is not one, or a filter
naming nothing of the tenant's is a 422 page saying so. Dates are UTC days, as in the API:
``to`` is the last day included.

Charts are inline SVG drawn on the server (``analytics.charts``); every chart has its numbers in
a table below it, and every table downloads as CSV with the same filters
(``?format=csv&table=<code>``): raw values (ISO dates, seconds, shares from 0 to 1, money in
minor units beside its currency) under headers in the reader's language.

"Today" holds the live figures of the tenant's day so far (``series.today``): its region
refreshes every minute (``static/dashboard.js`` fetches ``/console/dashboard/today``, that region
alone under the same filters, and swaps it in; without JavaScript, reloading does the same).
The report is the same figures on one page without controls, laid out for paper by
``static/dashboard-print.css``.

The audit page draws ``analytics.audit``: each area's score, level, gaps and next steps, and the
metrics in a table (also as CSV).
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import urlencode

from babel.dates import format_date, format_time
from babel.numbers import format_decimal, format_percent
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup
from sqlalchemy.ext.asyncio import AsyncSession

from hilos.analytics import audit, charts, kpis, series
from hilos.channels import service as channels
from hilos.commerce import catalog
from hilos.commerce.stock import SHARED_CHANNELS
from hilos.core import service as core
from hilos.core.clock import now
from hilos.core.deps import DbSession
from hilos.core.errors import HilosError
from hilos.core.tenancy import TenantContext
from hilos.routing import service as routing
from hilos.web.commerce_pages import money
from hilos.web.console import Agent, ConsoleError, ConsoleRoute, _language, _page
from hilos.web.i18n import N_, VOCABULARY, translations
from hilos.web.service import SignedInAgent

ANALYTICS_ROLES = ("supervisor", "admin")
DASHBOARD_PATH = "/console/dashboard"
REPORT_PATH = "/console/dashboard/report"
TODAY_PATH = "/console/dashboard/today"
AUDIT_PATH = "/console/audit"
AUDIT_DAY_OPTIONS = (7, 30, 90, 180, 365)
# Live figures refresh this often (static/dashboard.js).
LIVE_REFRESH_SECONDS = 60
DASHBOARD_TABLES = ("kpis", "today", "daily", "channels", "sales", "cohorts")
AUDIT_TABLES = ("metrics",)

_FILTER_ERRORS = {
    "invalid_range": N_("The range is upside down: the first day must come before the last."),
    "range_too_long": N_("The range is too long: it may cover 400 days at most."),
}
# The filters by name, as the KPIs list those a figure does not apply.
FILTER_NAMES = {
    "channel": N_("channel"),
    "store": N_("store"),
    "queue": N_("queue"),
    "agent": N_("agent"),
}
_BAD_DATE = N_("Write the dates as year-month-day, for example 2026-03-01.")
_UNKNOWN_FILTER = N_("That filter does not exist in your business: choose one from the list.")


def _may_analyse(agent: SignedInAgent) -> SignedInAgent:
    if agent.role not in ANALYTICS_ROLES:
        raise ConsoleError(
            403,
            N_("The dashboard and the audit are for supervisors and administrators."),
            back=None,
        )
    return agent


async def _analyst(agent: Agent) -> SignedInAgent:
    return _may_analyse(agent)


Analyst = Annotated[SignedInAgent, Depends(_analyst, scope="function")]

router = APIRouter(
    include_in_schema=False, route_class=ConsoleRoute, default_response_class=HTMLResponse
)


# --- numbers in the reader's language ---------------------------------------------------------

# Below the limit (seconds), a duration is written in units of that size.
_DURATION_UNITS = ((90, 1, "s"), (5400, 60, "min"), (172_800, 3600, "h"))


@dataclass(frozen=True, slots=True)
class Writer:
    """Writes figures the reader's way; ``—`` for a figure with nothing to count."""

    language: str

    def share(self, value: float | None) -> str:
        if value is None:
            return "—"
        rounded = Decimal(str(round(value, 3)))
        return format_percent(rounded, locale=self.language, decimal_quantization=False)

    def percent(self, value: float | None) -> str:
        """A figure already in percent (CSAT: 87.5)."""
        return "—" if value is None else self.share(value / 100)

    def count(self, value: float | None) -> str:
        return "—" if value is None else format_decimal(value, locale=self.language)

    def decimal(self, value: float | None) -> str:
        if value is None:
            return "—"
        return format_decimal(Decimal(str(value)), format="#,##0.0#", locale=self.language)

    def seconds(self, value: float | None) -> str:
        """A duration in the largest unit that keeps it readable: 45 s, 2,5 min, 1,5 h, 3 d
        (the symbols read the same in Spanish and English)."""
        if value is None:
            return "—"
        size, unit = next(
            ((size, unit) for limit, size, unit in _DURATION_UNITS if value < limit),
            (86_400, "d"),
        )
        amount = Decimal(str(round(value / size, 1)))
        return f"{format_decimal(amount, format='#,##0.#', locale=self.language)} {unit}"

    def money(self, amount: int | None, currency: str) -> str:
        return "—" if amount is None else money(amount, currency, self.language)

    def day(self, value: date) -> str:
        return format_date(value, format="medium", locale=self.language)

    def short_day(self, value: date) -> str:
        return format_date(value, format="d MMM", locale=self.language)


# --- tables and their CSV -----------------------------------------------------------------------


@dataclass(slots=True)
class TableView:
    """A table of the page and its CSV: what people read, and the raw values behind it."""

    code: str
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    raw: list[list[Any]] = field(default_factory=list)
    # Columns aligned as numbers (all but the first, unless told).
    numeric: tuple[int, ...] | None = None

    def add(self, shown: Sequence[str], values: Sequence[Any]) -> None:
        self.rows.append(list(shown))
        self.raw.append(list(values))

    def is_numeric(self, index: int) -> bool:
        return index > 0 if self.numeric is None else index in self.numeric


def csv_response(table: TableView, filename: str) -> Response:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(table.columns)
    for values in table.raw:
        writer.writerow(["" if value is None else value for value in values])
    return Response(
        # A byte-order mark, so spreadsheet programs read the accents right.
        "\ufeff" + buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )


def _link(path: str, params: Mapping[str, str], **more: str) -> str:
    query = {**{k: v for k, v in params.items() if v}, **more}
    return f"{path}?{urlencode(query)}" if query else path


# --- the filters --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Option:
    value: str
    label: str


@dataclass(slots=True)
class FilterForm:
    """The filter form as shown: the values asked for and the choices offered."""

    start: str
    last_day: str
    channel: str
    store: str
    queue: str
    agent: str
    messaging: list[Option] = field(default_factory=list)
    sales: list[Option] = field(default_factory=list)
    stores: list[Option] = field(default_factory=list)
    queues: list[Option] = field(default_factory=list)
    agents: list[Option] = field(default_factory=list)

    @property
    def params(self) -> dict[str, str]:
        """The query of the page, to keep in links (CSV, report)."""
        return {
            "from": self.start,
            "to": self.last_day,
            "channel": self.channel,
            "store": self.store,
            "queue": self.queue,
            "agent": self.agent,
        }

    def chosen(self, gettext: Callable[[str], str]) -> list[str]:
        """The filters applied, in words, for the report's heading."""
        labels = [
            (gettext("Channel"), self.channel, self.messaging + self.sales),
            (gettext("Store"), self.store, self.stores),
            (gettext("Queue"), self.queue, self.queues),
            (gettext("Agent"), self.agent, self.agents),
        ]
        found = []
        for name, value, options in labels:
            if value:
                label = next((o.label for o in options if o.value == value), value)
                found.append(f"{name}: {label}")
        return found


def _kind_label(kind: str, gettext: Callable[[str], str]) -> str:
    words = VOCABULARY["channel"].get(kind)
    return gettext(words) if words else kind


async def _form(
    session: AsyncSession,
    tenant: TenantContext,
    gettext: Callable[[str], str],
    *,
    start: str,
    last_day: str,
    channel: str,
    store: str,
    queue: str,
    agent: str,
) -> FilterForm:
    kinds = sorted({c.kind for c in await channels.list_channels(session, tenant)})
    stores = await catalog.list_locations(session, tenant, kind="store", limit=catalog.MAX_PAGE)
    return FilterForm(
        start=start,
        last_day=last_day,
        channel=channel,
        store=store,
        queue=queue,
        agent=agent,
        messaging=[Option(kind, _kind_label(kind, gettext)) for kind in kinds],
        sales=[Option(code, code) for code in SHARED_CHANNELS]
        + [Option(f"store:{s.code}", f"{s.name} (store:{s.code})") for s in stores],
        stores=[Option(s.code, f"{s.name} ({s.code})") for s in stores],
        queues=[Option(q.id, q.name) for q in await routing.list_queues(session, tenant)],
        agents=[Option(u.id, u.name) for u in await core.list_users(session, tenant=tenant)],
    )


async def _resolve(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    start: str,
    last_day: str,
    channel: str,
    store: str,
    queue: str,
    agent: str,
) -> kpis.KpiFilters:
    """The KPI filters the form asks for; a 422 page saying what is wrong otherwise."""
    try:
        default_start, default_end = kpis.default_range(now())
        begin = kpis.parse_moment(start, field="from", end=False) if start else default_start
        end = kpis.parse_moment(last_day, field="to", end=True) if last_day else default_end
        return await kpis.resolve_filters(
            session,
            tenant,
            start=begin,
            end=end,
            channel=channel or None,
            store=store or None,
            queue=queue or None,
            agent=agent or None,
        )
    except HilosError as error:
        field_name = error.details.get("field") if isinstance(error.details, dict) else None
        message = _FILTER_ERRORS.get(error.code)
        if message is None:
            message = _BAD_DATE if field_name in ("from", "to") else _UNKNOWN_FILTER
        raise ConsoleError(422, message, back=DASHBOARD_PATH) from error


# --- the dashboard's content --------------------------------------------------------------------

# The heat map's cohorts: the months of the year up to the range's end, whatever the range, so
# that a month's range still shows how earlier customers came back.
COHORT_MONTHS = 12


def cohorts_start(end: datetime) -> datetime:
    """The first day (UTC) of the ``COHORT_MONTHS``-th month before the one ``end`` falls in."""
    last = (end - timedelta(microseconds=1)).astimezone(UTC)
    year, month = divmod(last.year * 12 + last.month - 1 - (COHORT_MONTHS - 1), 12)
    return datetime(year, month + 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Card:
    code: str
    label: str
    value: str
    detail: str | None
    # The given filters this figure does not apply (it counts the whole business there).
    unfiltered: list[str]


@dataclass(slots=True)
class Dashboard:
    filters: kpis.KpiFilters
    cards: list[Card]
    tables: dict[str, TableView]
    charts: dict[str, Markup]
    today: series.Today
    today_figures: list[tuple[str, str]]


def _get(figures: Mapping[str, Any], *path: str) -> Any:
    value: Any = figures
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _per_currency(values: Any, write: Callable[[int, str], str], key: str) -> str | None:
    if not isinstance(values, Mapping) or not values:
        return None
    return " · ".join(
        write(int(v[key]), currency)
        for currency, v in sorted(values.items())
        if isinstance(v, Mapping) and v.get(key) is not None
    )


def _cards(figures: Mapping[str, Any], w: Writer, gettext: Callable[[str], str]) -> list[Card]:
    unfiltered = figures.get("unfiltered") or {}

    def card(code: str, label: str, value: str, detail: str | None = None) -> Card:
        left = [gettext(FILTER_NAMES.get(name, name)) for name in unfiltered.get(code, [])]
        return Card(code, gettext(label), value, detail, left)

    def answers(kind: str) -> str:
        count = _get(figures, "surveys", kind, "answers") or 0
        return gettext("%(count)s answers") % {"count": w.count(count)}

    first = figures.get("first_response_seconds") or {}
    following = figures.get("next_response_seconds") or {}
    resolution = figures.get("resolution_seconds") or {}
    predicted = _get(figures, "clv", "predicted")
    predicted_value = None
    if isinstance(predicted, Mapping) and predicted.get("average") is not None:
        predicted_value = gettext("%(amount)s in %(months)s months") % {
            "amount": w.money(int(predicted["average"]), str(predicted.get("currency"))),
            "months": predicted.get("horizon_months"),
        }
    elif isinstance(predicted, Mapping) and predicted.get("pending"):
        predicted_value = gettext("being calculated")
    sessions = _get(figures, "conversion", "sessions", "rate")
    return [
        card("nps", N_("Net Promoter Score (NPS)"), w.count(figures.get("nps")), answers("nps")),
        card(
            "csat",
            N_("Customer satisfaction (CSAT)"),
            w.percent(figures.get("csat")),
            answers("csat"),
        ),
        card("ces", N_("Customer effort (CES)"), w.decimal(figures.get("ces")), answers("ces")),
        card(
            "first_response_seconds",
            N_("First response (median)"),
            w.seconds(first.get("median")),
            gettext("90th percentile: %(value)s") % {"value": w.seconds(first.get("p90"))},
        ),
        card(
            "next_response_seconds",
            N_("Next response (median)"),
            w.seconds(following.get("median")),
            gettext("90th percentile: %(value)s") % {"value": w.seconds(following.get("p90"))},
        ),
        card(
            "resolution_seconds",
            N_("Resolution (median)"),
            w.seconds(resolution.get("median")),
            gettext("In business hours: %(value)s")
            % {"value": w.seconds(_get(resolution, "business_hours", "median"))},
        ),
        card("sla_attainment", N_("SLA attainment"), w.share(figures.get("sla_attainment"))),
        card("backlog", N_("Backlog"), w.count(figures.get("backlog"))),
        card(
            "repeat_contact_rate",
            N_("Repeat contacts (7 days)"),
            w.share(figures.get("repeat_contact_rate")),
        ),
        card(
            "channel_switches_per_conversation",
            N_("Channel switches per conversation"),
            w.decimal(figures.get("channel_switches_per_conversation")),
        ),
        card(
            "average_handle_time_seconds",
            N_("Average handle time (calls)"),
            w.seconds(figures.get("average_handle_time_seconds")),
        ),
        card("missed_call_rate", N_("Missed calls"), w.share(figures.get("missed_call_rate"))),
        card(
            "conversion_rate",
            N_("Conversion (carts to orders)"),
            w.share(figures.get("conversion_rate")),
            gettext("Sessions to orders: %(value)s") % {"value": w.share(sessions)},
        ),
        card(
            "average_order_value",
            N_("Average order value"),
            _per_currency(figures.get("average_order_value"), w.money, "amount") or "—",
        ),
        card("bopis_share", N_("Picked up in store"), w.share(figures.get("bopis_share"))),
        card("churn_rate", N_("Churn"), w.share(figures.get("churn_rate"))),
        card(
            "clv",
            N_("Customer lifetime value"),
            _per_currency(_get(figures, "clv", "historic"), w.money, "average") or "—",
            gettext("Predicted: %(value)s") % {"value": predicted_value or "—"},
        ),
        card(
            "multichannel_customer_share",
            N_("Customers in two or more channels"),
            w.share(figures.get("multichannel_customer_share")),
        ),
        card(
            "price_parity_score",
            N_("Price parity"),
            w.share(figures.get("price_parity_score")),
        ),
        card("stock_out_rate", N_("Stock-outs"), w.share(figures.get("stock_out_rate"))),
    ]


def _kpi_table(cards: Sequence[Card], figures: Mapping[str, Any], title: str) -> TableView:
    table = TableView("kpis", title, [], numeric=(1,))
    for card in cards:
        raw = figures.get(card.code)
        if isinstance(raw, Mapping):
            raw = raw.get("median", raw.get("historic"))
        if isinstance(raw, Mapping):
            raw = None
        table.add([card.label, card.value, card.detail or ""], [card.code, card.label, raw])
    return table


def _today_figures(
    day: series.Today, w: Writer, gettext: Callable[[str], str]
) -> list[tuple[str, str]]:
    revenue = " · ".join(w.money(amount, currency) for currency, amount in day.revenue.items())
    return [
        (gettext("Conversations started"), w.count(day.conversations)),
        (gettext("Customer messages"), w.count(day.messages)),
        (gettext("Orders"), w.count(day.orders)),
        (gettext("Revenue"), revenue or "—"),
        (gettext("First response (median)"), w.seconds(day.first_response_median)),
        (gettext("SLA attainment"), w.share(day.sla_attainment)),
        (gettext("Open conversations"), w.count(day.backlog)),
    ]


async def build_dashboard(
    session: AsyncSession, tenant: TenantContext, filters: kpis.KpiFilters, language: str
) -> Dashboard:
    gettext = translations(language).gettext
    w = Writer(language)
    figures = (await kpis.compute(session, tenant, filters)).as_json()
    days = await series.daily(session, tenant, filters)
    by_kind = await series.by_messaging_channel(session, tenant, filters)
    by_sales = await series.by_sales_channel(session, tenant, filters)
    day = await series.today(session, tenant, filters)
    cards = _cards(figures, w, gettext)

    tables: dict[str, TableView] = {"kpis": _kpi_table(cards, figures, gettext("All KPIs"))}
    tables["kpis"].columns = [gettext("Figure"), gettext("Value"), gettext("Detail")]
    today_figures = _today_figures(day, w, gettext)
    today_table = TableView("today", gettext("Today"), [gettext("Figure"), gettext("Value")])
    raw_today: list[Any] = [
        day.conversations,
        day.messages,
        day.orders,
        " ".join(f"{amount} {currency}" for currency, amount in day.revenue.items()),
        day.first_response_median,
        day.sla_attainment,
        day.backlog,
    ]
    for (label, shown), value in zip(today_figures, raw_today, strict=True):
        today_table.add([label, shown], [label, value])
    tables["today"] = today_table

    currencies = list(days.orders)
    daily = TableView(
        "daily",
        gettext("Per day"),
        [gettext("Day"), gettext("Conversations"), gettext("First response (median)")]
        + [gettext("Orders (%(currency)s)") % {"currency": c} for c in currencies]
        + [gettext("Revenue (%(currency)s, minor units)") % {"currency": c} for c in currencies],
    )
    for n, when in enumerate(days.days):
        daily.add(
            [w.day(when), w.count(days.conversations[n]), w.seconds(days.first_response_median[n])]
            + [w.count(days.orders[c][n]) for c in currencies]
            + [w.money(days.revenue[c][n], c) for c in currencies],
            [when.isoformat(), days.conversations[n], days.first_response_median[n]]
            + [days.orders[c][n] for c in currencies]
            + [days.revenue[c][n] for c in currencies],
        )
    tables["daily"] = daily

    kinds = TableView(
        "channels",
        gettext("Per messaging channel"),
        [
            gettext("Channel"),
            gettext("Conversations"),
            gettext("Answered"),
            gettext("First response (median)"),
        ],
    )
    for row in by_kind:
        kinds.add(
            [
                _kind_label(row.kind, gettext),
                w.count(row.conversations),
                w.count(row.first_responses),
                w.seconds(row.first_response_median),
            ],
            [row.kind, row.conversations, row.first_responses, row.first_response_median],
        )
    tables["channels"] = kinds

    carts = {
        entry["channel"]: entry
        for entry in _get(figures, "conversion", "carts", "by_channel") or []
        if isinstance(entry, Mapping)
    }
    sales = TableView(
        "sales",
        gettext("Per sales channel"),
        [
            gettext("Sales channel"),
            gettext("Currency"),
            gettext("Orders"),
            gettext("Revenue"),
            gettext("Carts"),
            gettext("Conversion (carts to orders)"),
        ],
        numeric=(2, 3, 4, 5),
    )
    seen = set()
    for sale in by_sales:
        cart = carts.get(sale.channel) or {}
        seen.add(sale.channel)
        sales.add(
            [
                sale.channel,
                sale.currency,
                w.count(sale.orders),
                w.money(sale.revenue, sale.currency),
                w.count(cart.get("carts")),
                w.share(cart.get("rate")),
            ],
            [
                sale.channel,
                sale.currency,
                sale.orders,
                sale.revenue,
                cart.get("carts"),
                cart.get("rate"),
            ],
        )
    for channel, cart in sorted(carts.items()):
        if channel not in seen:
            sales.add(
                [
                    channel,
                    "",
                    w.count(0),
                    "—",
                    w.count(cart.get("carts")),
                    w.share(cart.get("rate")),
                ],
                [channel, None, 0, None, cart.get("carts"), cart.get("rate")],
            )
    tables["sales"] = sales

    window = dataclasses.replace(filters, start=cohorts_start(filters.end))
    cohorts = [c for c in await kpis.retention(session, tenant, window) if isinstance(c, Mapping)]
    width = max((len(c.get("retention") or []) for c in cohorts), default=0)
    months = [gettext("Month %(number)s") % {"number": n} for n in range(width)]
    cohort_table = TableView(
        "cohorts",
        gettext("Retention by monthly cohort"),
        [gettext("Cohort"), gettext("Customers"), *months],
    )
    for cohort in cohorts:
        shares = list(cohort.get("retention") or [])
        cohort_table.add(
            [str(cohort.get("cohort")), w.count(cohort.get("customers"))]
            + [w.share(s) for s in shares]
            + [""] * (width - len(shares)),
            [cohort.get("cohort"), cohort.get("customers"), *shares]
            + [None] * (width - len(shares)),
        )
    tables["cohorts"] = cohort_table

    nothing = gettext("Nothing in this range.")
    labels = [w.short_day(d) for d in days.days]
    orders_per_day = [sum(days.orders[c][n] for c in currencies) for n in range(len(days.days))]
    drawn = {
        "daily": charts.line_chart(
            title=gettext("Conversations and orders per day"),
            labels=labels,
            series=[
                charts.Series(gettext("Conversations"), [float(v) for v in days.conversations]),
                charts.Series(gettext("Orders"), [float(v) for v in orders_per_day]),
            ],
            fmt=lambda v: w.count(round(v, 1)),
            empty=nothing,
            counts=True,
        ),
        "first_response": charts.line_chart(
            title=gettext("First response per day (median)"),
            labels=labels,
            series=[charts.Series(gettext("First response (median)"), days.first_response_median)],
            fmt=w.seconds,
            empty=nothing,
        ),
        "channels": charts.bar_chart(
            title=gettext("Conversations per messaging channel"),
            bars=[(_kind_label(r.kind, gettext), float(r.conversations)) for r in by_kind],
            fmt=lambda v: w.count(round(v)),
            empty=nothing,
        ),
        "channel_response": charts.bar_chart(
            title=gettext("First response per messaging channel (median)"),
            bars=[(_kind_label(r.kind, gettext), r.first_response_median) for r in by_kind],
            fmt=w.seconds,
            empty=nothing,
        ),
        "sales": charts.bar_chart(
            title=gettext("Orders per sales channel"),
            bars=[(f"{s.channel} ({s.currency})", float(s.orders)) for s in by_sales],
            fmt=lambda v: w.count(round(v)),
            empty=nothing,
        ),
        "cohorts": charts.heat_map(
            title=gettext("Retention by monthly cohort"),
            rows=[str(c.get("cohort")) for c in cohorts],
            columns=months,
            values=[list(c.get("retention") or []) for c in cohorts],
            fmt=lambda v: w.share(v),
            empty=nothing,
        ),
    }
    return Dashboard(
        filters=filters,
        cards=cards,
        tables=tables,
        charts=drawn,
        today=day,
        today_figures=today_figures,
    )


# --- the pages ----------------------------------------------------------------------------------


FromDay = Annotated[str, Query(alias="from", max_length=40)]
ToDay = Annotated[str, Query(alias="to", max_length=40)]
Filter = Annotated[str, Query(max_length=80)]
Format = Annotated[str, Query(max_length=8)]
TableCode = Annotated[str, Query(max_length=40)]


async def _dashboard_response(
    request: Request,
    session: AsyncSession,
    agent: SignedInAgent,
    *,
    report: bool,
    start: str,
    last_day: str,
    channel: str,
    store: str,
    queue: str,
    agent_id: str,
    output: str,
    table: str,
) -> Response:
    language = _language(request, agent)
    gettext = translations(language).gettext
    tenant = agent.tenant
    values = {
        "start": start.strip(),
        "last_day": last_day.strip(),
        "channel": channel.strip(),
        "store": store.strip(),
        "queue": queue.strip(),
        "agent": agent_id.strip(),
    }
    if output not in ("", "html", "csv"):
        raise ConsoleError(422, N_("The format is html or csv."), back=DASHBOARD_PATH)
    if output == "csv" and table not in DASHBOARD_TABLES:
        raise ConsoleError(
            422, N_("Choose one of the page's tables to download."), back=DASHBOARD_PATH
        )
    filters = await _resolve(session, tenant, **values)
    form = await _form(
        session,
        tenant,
        gettext,
        **{
            **values,
            "start": filters.start.date().isoformat(),
            "last_day": (filters.end - timedelta(microseconds=1)).date().isoformat(),
        },
    )
    board = await build_dashboard(session, tenant, filters, language)
    if output == "csv":
        name = f"hilos-{table}-{form.start}-{form.last_day}.csv"
        return csv_response(board.tables[table], name)
    w = Writer(language)
    params = form.params
    return _page(
        request,
        "dashboard.html",
        {
            "nav": "dashboard",
            "report": report,
            "board": board,
            "form": form,
            "chosen": form.chosen(gettext),
            "range_text": gettext("From %(start)s to %(end)s (UTC days)")
            % {
                "start": w.day(filters.start.date()),
                "end": w.day((filters.end - timedelta(microseconds=1)).date()),
            },
            "today_at": format_time(board.today.at, "short", locale=language),
            "csv_links": {
                code: _link(DASHBOARD_PATH, params, format="csv", table=code)
                for code in DASHBOARD_TABLES
            },
            "report_link": _link(REPORT_PATH, params),
            "today_link": _link(TODAY_PATH, params),
            "today_figures": board.today_figures,
            "dashboard_link": _link(DASHBOARD_PATH, params),
            "refresh_seconds": LIVE_REFRESH_SECONDS,
            "generated_at": now(),
        },
        agent=agent,
    )


@router.get(DASHBOARD_PATH)
async def dashboard_page(
    request: Request,
    session: DbSession,
    agent: Analyst,
    start: FromDay = "",
    last_day: ToDay = "",
    channel: Filter = "",
    store: Filter = "",
    queue: Filter = "",
    agent_id: Annotated[str, Query(alias="agent", max_length=80)] = "",
    output: Annotated[str, Query(alias="format", max_length=8)] = "",
    table: TableCode = "",
) -> Response:
    return await _dashboard_response(
        request,
        session,
        agent,
        report=False,
        start=start,
        last_day=last_day,
        channel=channel,
        store=store,
        queue=queue,
        agent_id=agent_id,
        output=output,
        table=table,
    )


@router.get(REPORT_PATH)
async def report_page(
    request: Request,
    session: DbSession,
    agent: Analyst,
    start: FromDay = "",
    last_day: ToDay = "",
    channel: Filter = "",
    store: Filter = "",
    queue: Filter = "",
    agent_id: Annotated[str, Query(alias="agent", max_length=80)] = "",
) -> Response:
    return await _dashboard_response(
        request,
        session,
        agent,
        report=True,
        start=start,
        last_day=last_day,
        channel=channel,
        store=store,
        queue=queue,
        agent_id=agent_id,
        output="",
        table="",
    )


@router.get(TODAY_PATH)
async def today_region(
    request: Request,
    session: DbSession,
    agent: Analyst,
    start: FromDay = "",
    last_day: ToDay = "",
    channel: Filter = "",
    store: Filter = "",
    queue: Filter = "",
    agent_id: Annotated[str, Query(alias="agent", max_length=80)] = "",
) -> Response:
    """Today's figures alone (the dashboard's live region), under the dashboard's filters."""
    language = _language(request, agent)
    values = {
        "start": start.strip(),
        "last_day": last_day.strip(),
        "channel": channel.strip(),
        "store": store.strip(),
        "queue": queue.strip(),
        "agent": agent_id.strip(),
    }
    filters = await _resolve(session, agent.tenant, **values)
    day = await series.today(session, agent.tenant, filters)
    params = {**values, "from": values["start"], "to": values["last_day"]}
    del params["start"], params["last_day"]
    return _page(
        request,
        "dashboard_today.html",
        {
            "report": False,
            "today_figures": _today_figures(day, Writer(language), translations(language).gettext),
            "today_at": format_time(day.at, "short", locale=language),
            "csv_links": {"today": _link(DASHBOARD_PATH, params, format="csv", table="today")},
        },
        agent=agent,
    )


# --- the audit page -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MetricRow:
    code: str
    name: str
    value: str
    target: str
    score: int
    counted: str


def _metric_value(name: str, value: float | None, w: Writer) -> str:
    if value is None:
        return "—"
    return w.share(value) if audit.RULES[name].share else w.decimal(value)


@router.get(AUDIT_PATH)
async def audit_page(
    request: Request,
    session: DbSession,
    agent: Analyst,
    days: Annotated[int, Query(ge=1, le=audit.MAX_DAYS)] = audit.DEFAULT_DAYS,
    output: Annotated[str, Query(alias="format", max_length=8)] = "",
) -> Response:
    language = _language(request, agent)
    gettext = translations(language).gettext
    w = Writer(language)
    if output not in ("", "html", "csv"):
        raise ConsoleError(422, N_("The format is html or csv."), back=AUDIT_PATH)
    found = await audit.compute(session, agent.tenant, language=language, days=days)
    metrics = [
        MetricRow(
            code=name,
            name=metric.label,
            value=_metric_value(name, metric.value, w),
            target=_metric_value(name, metric.target, w),
            score=metric.score,
            counted=(
                f"{w.count(metric.numerator)} / {w.count(metric.denominator)}"
                if metric.numerator is not None and metric.denominator is not None
                else "—"
            ),
        )
        for name, metric in found.metrics.items()
    ]
    if output == "csv":
        table = TableView(
            "metrics",
            gettext("Metrics"),
            [
                "code",
                gettext("Metric"),
                gettext("Value"),
                gettext("Target"),
                gettext("Score"),
                gettext("Counted"),
                gettext("Out of"),
            ],
        )
        for name, metric in found.metrics.items():
            table.add(
                [],
                [
                    name,
                    metric.label,
                    metric.value,
                    metric.target,
                    metric.score,
                    metric.numerator,
                    metric.denominator,
                ],
            )
        return csv_response(table, f"hilos-audit-{found.computed_at.date().isoformat()}.csv")
    areas = [
        {
            "code": code,
            "name": area.label,
            "score": area.score,
            "level": area.level,
            "level_name": area.level_name,
            "gaps": area.gaps,
            "next_steps": area.next_steps,
        }
        for code, area in found.areas.items()
    ]
    chart = charts.bar_chart(
        title=gettext("Score of each area"),
        bars=[(area.label, float(area.score)) for area in found.areas.values()],
        fmt=lambda v: f"{round(v)} / 100",
        width=560,
        bar_height=20,
    )
    return _page(
        request,
        "audit.html",
        {
            "nav": "audit",
            "audit": found,
            "areas": areas,
            "metrics": metrics,
            "chart": chart,
            "day_options": sorted({*AUDIT_DAY_OPTIONS, found.days}),
            "csv_link": _link(AUDIT_PATH, {"days": str(found.days)}, format="csv"),
        },
        agent=agent,
    )
