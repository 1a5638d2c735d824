"""Predicted customer lifetime value: BG/NBD for how often a customer will buy, Gamma-Gamma for
how much, both fitted by PyMC-Marketing.

What it owns: turning purchases into the RFM summary the models read (``summarize``), fitting
the two models (``fit``), their predictions (``predict_purchases``, ``predict_clv``) and the
per-tenant figure the KPI shows (``tenant_prediction``), fitted by the worker (``fit_due``).

Why PyMC-Marketing (``pymc_marketing.clv``): the issue asks for a maintained library. The
classic one, ``lifetimes``, still installs and fits (tried: numpy 2.4, pandas 3.1, scipy 1.17),
but its author put it in maintenance mode in 2020 ("I won't be ... answering issues") and
names PyMC-Marketing as its successor; ``btyd``, its fork, was archived in 2024 pointing to the
same place. PyMC-Marketing is maintained by PyMC Labs, implements the same BG/NBD and
Gamma-Gamma models (its predictive formulas are adapted from ``lifetimes``) and documents its
fits of CDNOW against ``lifetimes``'s. The price, measured on this 2-core machine: about
700 MB more in the virtual environment (PyMC, PyTensor, ArviZ, xarray, numba, matplotlib,
scikit-learn, pandas, scipy), 17 s to install, 2.5 s to import (done lazily, on the first fit),
and PyTensor compiles its C code on the first fit of a process tree with an empty cache
(~15 s, kept in ``~/.pytensor``); afterwards a MAP fit of BG/NBD on the 2 357 customers of
CDNOW takes ~2 s and on 50 000 customers ~2 s, Gamma-Gamma about the same. Nothing is
downloaded at run time.

How the models are fitted: by maximum a posteriori (``method="map"``) with flat priors
(``HalfFlat``) on every parameter, which is the maximum-likelihood fit of Fader, Hardie and Lee
(2005): on CDNOW it gives their r = 0.243, α = 4.414, a = 0.793, b = 2.426, and Gamma-Gamma's
p = 6.25, q = 3.74, v = 15.45 (see ``tests/analytics/test_clv.py``). Full MCMC would give
uncertainty too but takes minutes, too slow behind an HTTP request.

The tenant's data: one purchase per customer and UTC day (the totals of that day's orders, not
cancelled, in the tenant's main currency: the one most of its orders are in), time in weeks,
observed up to ``as_of``. Fitting needs at least ``MIN_CUSTOMERS`` customers of whom
``MIN_REPEAT_CUSTOMERS`` bought twice or more; with less, the prediction says so instead of
inventing a figure. The prediction is the expected value of each customer's purchases over the
next ``HORIZON_MONTHS`` months (undiscounted), averaged over the tenant's customers.

Fits run in the worker, never in a web process (``fit_due``, a worker stage): the prediction
is stored per tenant, currency and horizon (``clv_fits``) and readers answer from the stored
row at once (``tenant_prediction``). A reader asking for a newer hour than the row observes
gets the row as it is, marked ``pending``, and leaves the new hour for the worker, which fits
it in a thread while its other stages go on. So a shop taking orders every minute refits at
most once an hour, only while someone reads its KPIs, and no dashboard waits for PyTensor to
compile (about 15 s on a process's first fit, see ``benchmarks/kpis.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import structlog
from sqlalchemy import Table, func, literal_column, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.analytics.clv_models import ClvFit
from hilos.commerce.order_models import Order
from hilos.core.clock import now
from hilos.core.tenancy import TenantContext
from hilos.customers.service import dialect_insert

if TYPE_CHECKING:  # pragma: no cover - the heavy imports wait for the first fit
    import pandas

HORIZON_MONTHS = 12
MIN_CUSTOMERS = 20
MIN_REPEAT_CUSTOMERS = 5
# Weeks: the unit the models' parameters are read in (as in the papers and the libraries' docs).
TIME_UNIT = "W"
_DAYS_PER_WEEK = 7

log = structlog.get_logger(__name__)

_ORDERS = Order.__table__
assert isinstance(_ORDERS, Table)
_FITS = cast(Table, ClvFit.__table__)


@dataclass(frozen=True, slots=True)
class Purchase:
    """One purchase: who, when and how much (minor units of one currency)."""

    customer_id: str
    at: datetime
    amount: int


@dataclass(slots=True)
class Fitted:
    """The two fitted models and the RFM summary they were fitted on.

    ``summary`` has one row per customer: ``customer_id``, ``frequency`` (repeat purchases),
    ``recency`` and ``T`` (weeks from the first purchase to the last one, and to ``as_of``)
    and ``monetary_value`` (mean value of the repeat purchases; 0 without any).
    """

    summary: pandas.DataFrame
    purchases_model: Any
    spend_model: Any | None
    params: dict[str, float]


def _pandas() -> Any:
    import pandas

    return pandas


def summarize(purchases: Sequence[Purchase], *, as_of: datetime) -> pandas.DataFrame:
    """The RFM summary of ``purchases`` observed up to ``as_of`` (PyMC-Marketing's
    ``rfm_summary``, by day, in weeks)."""
    with _quiet():  # the first import of PyMC-Marketing warns about ArviZ's next version
        from pymc_marketing.clv.utils import rfm_summary

    pandas = _pandas()
    frame = pandas.DataFrame(
        {
            "customer_id": [p.customer_id for p in purchases],
            "at": [p.at.astimezone(UTC).replace(tzinfo=None) for p in purchases],
            "amount": [float(p.amount) for p in purchases],
        }
    )
    return rfm_summary(
        frame,
        customer_id_col="customer_id",
        datetime_col="at",
        monetary_value_col="amount",
        observation_period_end=as_of.astimezone(UTC).replace(tzinfo=None),
        time_unit="D",
        time_scaler=_DAYS_PER_WEEK,
    )


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """PyMC and PyTensor warn about BLAS, deprecations and convergence details on every fit;
    none of it is for the people reading KPIs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


_FIT_LOCK = threading.Lock()


def _estimates(idata: Any, names: Sequence[str]) -> dict[str, float]:
    """The fitted value of each parameter (a MAP fit has one draw)."""
    posterior = idata["posterior"]
    return {name: float(posterior[name].mean()) for name in names}


def fit(data: Sequence[Purchase] | pandas.DataFrame, *, as_of: datetime | None = None) -> Fitted:
    """Fit BG/NBD (and Gamma-Gamma, when some customers bought twice) on purchases observed up
    to ``as_of``, or on an RFM summary (``customer_id``, ``frequency``, ``recency``, ``T``, and
    optionally ``monetary_value``) as is."""
    pandas = _pandas()
    if isinstance(data, pandas.DataFrame):
        summary = data.copy()
    else:
        if as_of is None:
            raise ValueError("as_of is needed to summarize purchases")
        summary = summarize(data, as_of=as_of)
    # One fit at a time per process: PyTensor compiles into a shared cache, and two fits on
    # two cores would starve the server that is answering requests.
    with _FIT_LOCK, _quiet():
        from pymc_extras.prior import Prior
        from pymc_marketing.clv import BetaGeoModel, GammaGammaModel

        flat = {name: Prior("HalfFlat") for name in ("a", "b", "alpha", "r")}
        purchases_model = BetaGeoModel(model_config=flat)
        fitted_purchases = purchases_model.fit(
            data=summary[["customer_id", "frequency", "recency", "T"]],
            method="map",
            progressbar=False,
        )
        params = _estimates(fitted_purchases, ("r", "alpha", "a", "b"))
        spend_model = None
        if "monetary_value" in summary:
            repeat = summary[(summary["frequency"] > 0) & (summary["monetary_value"] > 0)]
            if len(repeat) > 0:
                spend_model = GammaGammaModel()
                fitted_spend = spend_model.fit(
                    data=repeat[["customer_id", "frequency", "monetary_value"]],
                    method="map",
                    progressbar=False,
                )
                params.update(_estimates(fitted_spend, ("p", "q", "v")))
    return Fitted(
        summary=summary,
        purchases_model=purchases_model,
        spend_model=spend_model,
        params=params,
    )


def predict_purchases(
    fitted: Fitted, *, weeks: float, data: pandas.DataFrame | None = None
) -> pandas.Series[float]:
    """Expected purchases of each customer (of ``data``, default: the fitted ones) in the next
    ``weeks`` weeks, by customer id."""
    frame = fitted.summary if data is None else data
    with _quiet():
        expected = fitted.purchases_model.expected_purchases(
            data=frame[["customer_id", "frequency", "recency", "T"]], future_t=weeks
        )
    series: pandas.Series[float] = expected.mean(("chain", "draw")).to_series()
    return series


def predict_spend(fitted: Fitted, data: pandas.DataFrame | None = None) -> pandas.Series[float]:
    """Gamma-Gamma's expected value of each customer's future purchases, by customer id."""
    if fitted.spend_model is None:
        raise ValueError("no customer bought twice: there is no spend model")
    frame = fitted.summary if data is None else data
    with _quiet():
        spend = fitted.spend_model.expected_customer_spend(
            data=frame[["customer_id", "frequency", "monetary_value"]]
        )
    series: pandas.Series[float] = spend.mean(("chain", "draw")).to_series()
    return series


def predict_clv(
    fitted: Fitted,
    *,
    months: int = HORIZON_MONTHS,
    discount_rate: float = 0.0,
    data: pandas.DataFrame | None = None,
) -> pandas.Series[float]:
    """Each customer's expected value over the next ``months`` months (discounted monthly by
    ``discount_rate``), in the purchases' money, by customer id: PyMC-Marketing's
    ``expected_customer_lifetime_value`` on the two fitted models."""
    if fitted.spend_model is None:
        raise ValueError("no customer bought twice: there is no spend model")
    frame = (fitted.summary if data is None else data).copy()
    with _quiet():
        values = fitted.spend_model.expected_customer_lifetime_value(
            transaction_model=fitted.purchases_model,
            data=frame,
            future_t=months,
            discount_rate=discount_rate,
            time_unit=TIME_UNIT,
        )
    dims = [dim for dim in ("chain", "draw") if dim in values.dims]
    series: pandas.Series[float] = (values.mean(dims) if dims else values).to_series()
    return series


# --- the tenant's figure ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TenantPrediction:
    currency: str
    # The hour up to which orders were observed; None while the first fit is pending.
    as_of: datetime | None
    months: int
    customers: int
    repeat_customers: int
    # Minor units of ``currency`` per customer; None with ``reason`` when it cannot be fitted
    # or is not fitted yet (``pending``).
    average: int | None
    total: int | None
    params: dict[str, float]
    reason: str | None = None
    # True while the worker has a newer moment to fit than the figures answer for.
    pending: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "model": "BG/NBD + Gamma-Gamma (PyMC-Marketing, MAP)",
            "currency": self.currency,
            "as_of": self.as_of.isoformat() if self.as_of is not None else None,
            "horizon_months": self.months,
            "customers": self.customers,
            "repeat_customers": self.repeat_customers,
            "average": self.average,
            "total": self.total,
            "params": {name: round(value, 4) for name, value in self.params.items()},
            "reason": self.reason,
            "pending": self.pending,
        }


def _predict(
    purchases: Sequence[Purchase], *, currency: str, as_of: datetime, months: int
) -> TenantPrediction:
    customers = len({p.customer_id for p in purchases})
    days: dict[str, set[Any]] = {}
    for purchase in purchases:
        days.setdefault(purchase.customer_id, set()).add(purchase.at.date())
    repeat = sum(1 for seen in days.values() if len(seen) > 1)
    if customers < MIN_CUSTOMERS or repeat < MIN_REPEAT_CUSTOMERS:
        return TenantPrediction(
            currency=currency,
            as_of=as_of,
            months=months,
            customers=customers,
            repeat_customers=repeat,
            average=None,
            total=None,
            params={},
            reason=(
                f"needs at least {MIN_CUSTOMERS} customers of whom {MIN_REPEAT_CUSTOMERS} "
                f"bought on two days or more; has {customers} and {repeat}"
            ),
        )
    fitted = fit(purchases, as_of=as_of)
    values = predict_clv(fitted, months=months)
    total = float(values.sum())
    return TenantPrediction(
        currency=currency,
        as_of=as_of,
        months=months,
        customers=customers,
        repeat_customers=repeat,
        average=round(total / customers),
        total=round(total),
        params=fitted.params,
    )


def observed_hour(moment: datetime) -> datetime:
    """The hour a prediction for ``moment`` observes orders up to (fits are hourly)."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


async def main_currency(
    session: AsyncSession, tenant: TenantContext, *, as_of: datetime
) -> str | None:
    """The currency most of the tenant's orders before ``as_of`` are in; None without orders."""
    o = _ORDERS.c
    return (
        await session.execute(
            select(o.currency)
            .where(o.tenant_id == tenant.id, o.status != "cancelled", o.created_at < as_of)
            .group_by(o.currency)
            .order_by(func.count().desc(), o.currency)
            .limit(1)
        )
    ).scalar_one_or_none()


async def tenant_prediction(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    as_of: datetime,
    months: int = HORIZON_MONTHS,
) -> TenantPrediction | None:
    """The tenant's predicted CLV per customer over the next ``months`` months, as the worker
    last fitted it; None when the tenant has no order before ``as_of``.

    Never fits: when the stored fit observes another hour than ``as_of``'s, it is answered as
    it is (``pending``, its own ``as_of`` saying which hour) and the worker is asked for
    ``as_of``'s. The request is written in ``session``, which the caller commits.
    """
    wanted = observed_hour(as_of)
    currency = await main_currency(session, tenant, as_of=wanted)
    if currency is None:
        return None
    c = _FITS.c
    key = [c.tenant_id == tenant.id, c.currency == currency, c.months == months]
    row = (await session.execute(select(_FITS).where(*key))).one_or_none()
    if row is None:
        await session.execute(
            dialect_insert(session, _FITS)
            .values(
                tenant_id=tenant.id,
                currency=currency,
                months=months,
                wanted_as_of=wanted,
                customers=0,
                repeat_customers=0,
                params={},
            )
            .on_conflict_do_nothing()
        )
        return TenantPrediction(
            currency=currency,
            as_of=None,
            months=months,
            customers=0,
            repeat_customers=0,
            average=None,
            total=None,
            params={},
            reason="being fitted by the worker; ask again in a minute",
            pending=True,
        )
    if row.wanted_as_of != wanted:
        # One write per tenant and hour, however many dashboards are open.
        await session.execute(
            update(_FITS).where(*key, c.wanted_as_of != wanted).values(wanted_as_of=wanted)
        )
    pending = row.as_of != wanted
    fitted = row.as_of is not None
    return TenantPrediction(
        currency=currency,
        as_of=row.as_of,
        months=months,
        customers=row.customers,
        repeat_customers=row.repeat_customers,
        average=row.average,
        total=row.total,
        params=dict(row.params or {}),
        reason=row.reason if fitted else "being fitted by the worker; ask again in a minute",
        pending=pending,
    )


# --- fitting in the worker ----------------------------------------------------------------------

LEASE = timedelta(minutes=15)
# After a failed fit the row waits this long before the next attempt.
RETRY_AFTER = timedelta(hours=1)
# The fits running in this process (one at a time: a fit takes both cores for seconds).
_RUNNING: set[asyncio.Task[Any]] = set()


async def fit_due(
    sessionmaker: async_sessionmaker[AsyncSession], *, background: bool = True
) -> int:
    """Claim one tenant whose prediction readers want for a newer hour, fit it and store it.

    The worker's stage: with ``background`` the fit runs in a thread while the worker's other
    stages go on (one fit per process at a time); without, it is awaited (tests, the CLI).
    Returns how many fits were started.
    """
    if any(not task.done() for task in _RUNNING):
        return 0
    claimed = await _claim(sessionmaker)
    if claimed is None:
        return 0
    if background:
        task = asyncio.create_task(_fit_and_store(sessionmaker, *claimed))
        _RUNNING.add(task)
        task.add_done_callback(_RUNNING.discard)
    else:
        await _fit_and_store(sessionmaker, *claimed)
    return 1


async def fits_finished() -> None:
    """Wait for this process's background fits (tests and shutdown)."""
    await asyncio.gather(*_RUNNING, return_exceptions=True)


async def _claim(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> tuple[str, str, int, datetime] | None:
    c = _FITS.c
    moment = now()
    async with sessionmaker() as session, session.begin():
        statement = (
            select(c.tenant_id, c.currency, c.months, c.wanted_as_of)
            .where(
                or_(c.as_of.is_(None), c.as_of != c.wanted_as_of),
                or_(c.lease_until.is_(None), c.lease_until < moment),
            )
            .order_by(c.wanted_as_of.desc())
            .limit(1)
        )
        if session.get_bind().dialect.name == "postgresql":
            statement = statement.with_for_update(skip_locked=True)
        row = (await session.execute(statement)).one_or_none()
        if row is None:
            return None
        await session.execute(
            update(_FITS)
            .where(c.tenant_id == row.tenant_id, c.currency == row.currency, c.months == row.months)
            .values(lease_until=moment + LEASE)
        )
    return row.tenant_id, row.currency, row.months, row.wanted_as_of


async def _fit_and_store(
    sessionmaker: async_sessionmaker[AsyncSession],
    tenant_id: str,
    currency: str,
    months: int,
    as_of: datetime,
) -> None:
    c = _FITS.c
    key = [c.tenant_id == tenant_id, c.currency == currency, c.months == months]
    try:
        async with sessionmaker() as session:
            purchases = await _purchases(session, tenant_id, currency=currency, as_of=as_of)
        prediction = await asyncio.to_thread(
            _predict, purchases, currency=currency, as_of=as_of, months=months
        )
    except Exception as error:
        log.exception("clv.fit_failed", tenant_id=tenant_id, currency=currency)
        async with sessionmaker() as session, session.begin():
            await session.execute(
                update(_FITS)
                .where(*key)
                .values(lease_until=now() + RETRY_AFTER, error=f"{type(error).__name__}: {error}")
            )
        return
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(_FITS)
            .where(*key)
            .values(
                as_of=prediction.as_of,
                customers=prediction.customers,
                repeat_customers=prediction.repeat_customers,
                average=prediction.average,
                total=prediction.total,
                params=prediction.params,
                reason=prediction.reason,
                fitted_at=now(),
                lease_until=None,
                error=None,
            )
        )
    log.info(
        "clv.fitted",
        tenant_id=tenant_id,
        currency=currency,
        as_of=as_of.isoformat(),
        customers=prediction.customers,
    )


async def _purchases(
    session: AsyncSession, tenant_id: str, *, currency: str, as_of: datetime
) -> list[Purchase]:
    """The tenant's purchases in ``currency`` up to ``as_of``, one per customer and day."""
    o = _ORDERS.c
    observed = [o.tenant_id == tenant_id, o.status != "cancelled", o.created_at < as_of]
    dialect = session.get_bind().dialect.name
    day = (
        func.date_trunc(
            literal_column("'day'"), func.timezone(literal_column("'UTC'"), o.created_at)
        )
        if dialect == "postgresql"
        else func.substr(o.created_at, literal_column("1"), literal_column("10"))
    )
    rows = (
        await session.execute(
            select(o.customer_id, day.label("day"), func.sum(o.total).label("amount"))
            .where(*observed, o.currency == currency)
            .group_by(o.customer_id, day)
        )
    ).all()
    return [
        Purchase(customer_id=row.customer_id, at=_as_day(row.day), amount=int(row.amount))
        for row in rows
    ]


def _as_day(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)
