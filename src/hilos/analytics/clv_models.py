"""The fitted CLV prediction of each tenant, kept so that no web process fits models.

One row per tenant, main currency and horizon: the last prediction the worker fitted (its
moment ``as_of``, its figures and the models' parameters) and the moment readers last asked
for (``wanted_as_of``). A reader that finds ``as_of`` behind what it wants answers with the
row as it is and moves ``wanted_as_of``; the worker claims rows whose two moments differ
(``lease_until`` keeps a second worker off a fit in progress), fits and writes the result.
See ``hilos.analytics.clv``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from hilos.core.db import Base, UtcDateTime


class ClvFit(Base):
    __tablename__ = "clv_fits"

    tenant_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    months: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The hour up to which orders were observed; None until the first fit is written.
    as_of: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # The hour the latest reader asked for: the next fit observes orders up to it.
    wanted_as_of: Mapped[datetime] = mapped_column(UtcDateTime)
    customers: Mapped[int] = mapped_column(Integer, default=0)
    repeat_customers: Mapped[int] = mapped_column(Integer, default=0)
    # Minor units of ``currency`` per customer and in all; None with ``reason`` when the data
    # cannot be fitted.
    average: Mapped[int | None] = mapped_column(BigInteger)
    total: Mapped[int | None] = mapped_column(BigInteger)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    reason: Mapped[str | None] = mapped_column(Text)
    fitted_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # A worker fitting this row holds it until then; a crashed worker's lease runs out.
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Why the last attempt failed (an exception's text), kept for the operator.
    error: Mapped[str | None] = mapped_column(Text)
