"""Finding a customer's rows: the profiles that are one person, and each part's rows of them.

A customer is the survivor of its merges: the export and the erasure cover the survivor and
every profile merged into it (directly or through a chain), since all of them are that person.

Rows are read a page at a time by primary key (one statement per page, however many rows a
part has), so a customer with tens of thousands of messages is read in a few dozen statements
and never row by row.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from hilos.core.clock import as_utc
from hilos.core.tenancy import TenantContext
from hilos.customers.models import Customer
from hilos.customers.service import MAX_REDIRECTS
from hilos.privacy.spec import Part, Through, part

PAGE_SIZE = 1000


async def profile_ids(session: AsyncSession, tenant: TenantContext, survivor_id: str) -> list[str]:
    """``survivor_id`` and every profile merged into it, through chains of merges."""
    ids = [survivor_id]
    frontier = [survivor_id]
    for _ in range(MAX_REDIRECTS):
        if not frontier:
            break
        found = await session.execute(
            select(Customer.id)
            .where(Customer.tenant_id == tenant.id, Customer.merged_into_id.in_(frontier))
            .order_by(Customer.id)
        )
        frontier = [row for row in found.scalars() if row not in ids]
        ids.extend(frontier)
    return ids


def rows_of(spec: Part, tenant: TenantContext, customer_ids: Sequence[str]) -> ColumnElement[bool]:
    """The condition that selects ``spec``'s rows about these customers, in this tenant."""
    table = spec.table
    link = spec.link
    if isinstance(link, Through):
        parent = part(link.parent)
        condition: ColumnElement[bool] = table.c[link.column].in_(
            select(parent.table.c[link.parent_column]).where(rows_of(parent, tenant, customer_ids))
        )
    else:
        condition = or_(*(table.c[column].in_(customer_ids) for column in (link, *spec.also)))
    return and_(
        table.c.tenant_id == tenant.id,
        condition,
        *(table.c[column] == value for column, value in spec.only),
    )


async def pages(
    session: AsyncSession,
    table: Table,
    condition: ColumnElement[bool],
    *,
    columns: Sequence[str] | None = None,
) -> AsyncIterator[list[dict[str, Any]]]:
    """The rows of ``table`` meeting ``condition`` in primary-key order, a page at a time."""
    selected = [table.c[name] for name in columns] if columns else list(table.c)
    key = list(table.primary_key.columns)
    if len(key) != 1:
        # Composite keys belong to small tables (one row per segment, per cart line): one read.
        statement = select(*selected).where(condition).order_by(*key)
        rows = (await session.execute(statement)).mappings().all()
        if rows:
            yield [dict(row) for row in rows]
        return
    (column,) = key
    if column not in selected:
        selected.append(column)
    after: Any = None
    while True:
        statement = select(*selected).where(condition)
        if after is not None:
            statement = statement.where(column > after)
        statement = statement.order_by(column).limit(PAGE_SIZE)
        rows = (await session.execute(statement)).mappings().all()
        if not rows:
            return
        yield [dict(row) for row in rows]
        if len(rows) < PAGE_SIZE:
            return
        after = rows[-1][column.name]


def iso(moment: datetime) -> str:
    """A moment in ISO 8601 as the rest of the API writes it (UTC, with ``Z``)."""
    return as_utc(moment).isoformat().replace("+00:00", "Z")


def jsonable(value: Any) -> Any:
    """A column's value as JSON: times in ISO 8601 (UTC), bytes in base64."""
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    return value
