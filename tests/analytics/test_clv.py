"""Predicted CLV comes from PyMC-Marketing's fitted BG/NBD and Gamma-Gamma models.

On CDNOW (the 2 357 customers of Fader, Hardie and Lee's sample, in weeks; the summary that
``lifetimes`` ships as ``cdnow_customers_summary_with_transactions.csv`` and PyMC-Marketing's
notebooks load, kept in ``data/cdnow_summary.csv`` because PyMC-Marketing's wheel ships no data
and nothing may be downloaded) the fits must give the figures the library's documentation
gives:

- BG/NBD: r = 0.243, α = 4.414, a = 0.793, b = 2.426 — "BG/NBD Model",
  https://www.pymc-marketing.io/en/stable/notebooks/clv/bg_nbd.html (the maximum-likelihood
  fit it compares with; also Fader, Hardie & Lee 2005, and lifetimes' Quickstart,
  https://lifetimes.readthedocs.io/en/latest/Quickstart.html, "a: 0.79, alpha: 4.41, b: 2.43,
  r: 0.24").
- Gamma-Gamma: p = 6.249, q = 3.745, v = 15.45, and the expected spend of customers 1-10
  (24.658616, 18.911480, 35.171002, ...; mean 35.25295817604995) — "Gamma-gamma model",
  https://www.pymc-marketing.io/en/stable/notebooks/clv/gamma_gamma.html.
- Expected purchases in the next week of the five best customers (1516: 0.710623, 157:
  0.662396, 1981: 0.486526, 841: 0.474738, 509: 0.424877) — lifetimes' Quickstart, whose
  formulas PyMC-Marketing's ``expected_purchases`` adapts.

Then a tenant's predicted CLV (the KPI) is checked to be those models' prediction on its own
orders.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.analytics import clv
from hilos.analytics.clv_models import ClvFit
from tests.analytics.test_kpis import Shop
from tests.conftest import TenantHandle

CDNOW = Path(__file__).parent / "data" / "cdnow_summary.csv"


@pytest.fixture(scope="module")
def cdnow() -> clv.Fitted:
    summary = pandas.read_csv(CDNOW)
    assert len(summary) == 2357
    return clv.fit(summary)


def test_bg_nbd_fit_on_cdnow_gives_the_documented_parameters(cdnow: clv.Fitted) -> None:
    documented = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
    for name, value in documented.items():
        assert cdnow.params[name] == pytest.approx(value, abs=0.002), name


def test_gamma_gamma_fit_on_cdnow_gives_the_documented_parameters(cdnow: clv.Fitted) -> None:
    documented = {"p": 6.249, "q": 3.745, "v": 15.45}
    for name, value in documented.items():
        assert cdnow.params[name] == pytest.approx(value, rel=0.002), name


def test_expected_spend_on_cdnow_matches_the_documentation(cdnow: clv.Fitted) -> None:
    spend = clv.predict_spend(cdnow)
    documented = [
        24.658616,
        18.911480,
        35.171002,
        35.171002,
        35.171002,
        71.462851,
        18.911480,
        35.171002,
        27.282408,
        35.171002,
    ]
    assert [spend[i] for i in range(1, 11)] == pytest.approx(documented, rel=1e-4)
    assert spend.mean() == pytest.approx(35.25295817604995, rel=1e-4)


def test_expected_purchases_on_cdnow_match_the_documentation(cdnow: clv.Fitted) -> None:
    best = clv.predict_purchases(cdnow, weeks=1).sort_values().tail(5)
    assert list(best.index) == [509, 841, 1981, 157, 1516]
    assert list(best) == pytest.approx([0.424877, 0.474738, 0.486526, 0.662396, 0.710623], rel=1e-4)


def test_clv_is_expected_purchases_times_expected_spend(cdnow: clv.Fitted) -> None:
    """Undiscounted, a year's value is the purchases expected in 12 months (52.14 weeks) times
    the spend expected per purchase: the prediction is the two fitted models', nothing else."""
    values = clv.predict_clv(cdnow, months=12)
    purchases = clv.predict_purchases(cdnow, weeks=12 * 4.345)
    spend = clv.predict_spend(cdnow)
    for customer_id in (1, 6, 9, 1516):
        expected = purchases[customer_id] * spend[customer_id]
        assert values[customer_id] == pytest.approx(expected, rel=1e-3)
    # Discounting lowers every value.
    discounted = clv.predict_clv(cdnow, months=12, discount_rate=0.01)
    assert (discounted < values).all()


async def _seed_buyers(
    sessionmaker: async_sessionmaker[AsyncSession], tenant: TenantHandle
) -> list[clv.Purchase]:
    """40 customers over 2025: every third one buys monthly, the others once or twice."""
    purchases = []
    async with sessionmaker() as session, session.begin():
        shop = Shop(session=session, tenant=tenant)
        for n in range(40):
            customer_id = await shop.customer(f"Cliente {n}")
            first = datetime(2025, 1, 1 + n % 28, 12, tzinfo=UTC)
            visits = 10 if n % 3 == 0 else 1 + n % 2
            for k in range(visits):
                moment = first + timedelta(days=30 * k + n % 5)
                amount = 1500 + 500 * (n % 4) + 100 * k
                await shop.order(customer_id, moment, amount)
                purchases.append(clv.Purchase(customer_id=customer_id, at=moment, amount=amount))
        await shop.order(customer_id, datetime(2025, 6, 1, tzinfo=UTC), 99, status="cancelled")
    return purchases


async def _prediction(
    sessionmaker: async_sessionmaker[AsyncSession], tenant: TenantHandle, as_of: datetime
) -> clv.TenantPrediction | None:
    """What a reader of the KPIs gets, its request for a fit committed as the API's is."""
    async with sessionmaker() as session, session.begin():
        return await clv.tenant_prediction(session, tenant.context, as_of=as_of)


async def test_a_tenants_predicted_clv_is_the_fitted_models_prediction(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    purchases = await _seed_buyers(sessionmaker, tenant)
    as_of = datetime(2026, 1, 1, tzinfo=UTC)
    # The reader never fits: the first one learns the figure is on its way...
    waiting = await _prediction(sessionmaker, tenant, as_of)
    assert waiting is not None
    assert waiting.pending
    assert waiting.average is None
    assert waiting.reason is not None
    assert "worker" in waiting.reason
    # ...and the worker fits it once; a second pass has nothing left to do.
    assert await clv.fit_due(sessionmaker, background=False) == 1
    assert await clv.fit_due(sessionmaker, background=False) == 0
    prediction = await _prediction(sessionmaker, tenant, as_of)
    assert prediction is not None
    assert not prediction.pending
    assert prediction.as_of == as_of
    assert (prediction.customers, prediction.repeat_customers) == (40, 27)
    assert set(prediction.params) == {"r", "alpha", "a", "b", "p", "q", "v"}
    # The same figure straight from the library's models on the same purchases.
    fitted = clv.fit(purchases, as_of=as_of)
    values = clv.predict_clv(fitted, months=clv.HORIZON_MONTHS)
    assert prediction.average == round(float(values.sum()) / 40)
    assert prediction.average is not None
    assert prediction.average > 0
    response = await client.get(
        "/v1/kpis", params={"from": "2025-12-01", "to": "2025-12-31"}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    predicted: dict[str, Any] = response.json()["clv"]["predicted"]
    assert predicted["average"] == prediction.average
    assert predicted["currency"] == "EUR"
    assert predicted["horizon_months"] == 12
    assert predicted["pending"] is False


async def test_too_few_customers_give_a_reason_instead_of_a_figure(
    tenant: TenantHandle, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with sessionmaker() as session, session.begin():
        shop = Shop(session=session, tenant=tenant)
        for n in range(3):
            await shop.order(await shop.customer(), datetime(2025, 3, 1 + n, tzinfo=UTC), 1000)
    as_of = datetime(2025, 4, 1, tzinfo=UTC)
    await _prediction(sessionmaker, tenant, as_of)
    assert await clv.fit_due(sessionmaker, background=False) == 1
    prediction = await _prediction(sessionmaker, tenant, as_of)
    assert prediction is not None
    assert prediction.average is None
    assert not prediction.pending
    assert prediction.reason is not None
    assert "20 customers" in prediction.reason
    assert await _prediction(sessionmaker, tenant, datetime(2025, 1, 1, tzinfo=UTC)) is None


async def test_an_older_fit_answers_at_once_while_the_new_hour_is_fitted_behind(
    tenant: TenantHandle, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await _seed_buyers(sessionmaker, tenant)
    first_hour = datetime(2026, 1, 1, tzinfo=UTC)
    next_hour = first_hour + timedelta(hours=1)
    await _prediction(sessionmaker, tenant, first_hour)
    await clv.fit_due(sessionmaker, background=False)
    fitted = await _prediction(sessionmaker, tenant, first_hour)
    # An hour later the dashboard does not wait for a new fit: it gets the last one, marked...
    stale = await _prediction(sessionmaker, tenant, next_hour + timedelta(minutes=20))
    assert fitted is not None
    assert stale is not None
    assert (stale.as_of, stale.average, stale.pending) == (first_hour, fitted.average, True)
    # ...while the worker fits the new hour in a thread, its other stages going on.
    assert await clv.fit_due(sessionmaker) == 1
    await clv.fits_finished()
    fresh = await _prediction(sessionmaker, tenant, next_hour)
    assert fresh is not None
    assert (fresh.as_of, fresh.pending) == (next_hour, False)


async def test_a_failed_fit_keeps_the_last_figure_and_waits_before_trying_again(
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await _seed_buyers(sessionmaker, tenant)
    first_hour = datetime(2026, 1, 1, tzinfo=UTC)
    await _prediction(sessionmaker, tenant, first_hour)
    await clv.fit_due(sessionmaker, background=False)
    fitted = await _prediction(sessionmaker, tenant, first_hour)

    def broken(*_args: Any, **_kwargs: Any) -> clv.TenantPrediction:
        raise FloatingPointError("the sampler diverged")

    monkeypatch.setattr(clv, "_predict", broken)
    await _prediction(sessionmaker, tenant, first_hour + timedelta(hours=1))
    assert await clv.fit_due(sessionmaker, background=False) == 1
    # Not retried on every pass of the worker: the row waits (RETRY_AFTER).
    assert await clv.fit_due(sessionmaker, background=False) == 0
    after = await _prediction(sessionmaker, tenant, first_hour + timedelta(hours=1))
    assert fitted is not None
    assert after is not None
    assert (after.average, after.as_of, after.pending) == (fitted.average, first_hour, True)
    async with sessionmaker() as session:
        error = await session.scalar(select(ClvFit.error).where(ClvFit.tenant_id == tenant.id))
    assert error == "FloatingPointError: the sampler diverged"
