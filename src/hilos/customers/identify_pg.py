"""PostgreSQL's one-statement path for identify's commonest write: a customer nobody knows yet.

``service.identify`` is the reference; it costs a round trip per step (lock, owners, insert
the customer, insert the identities). Measured on two cores, statements, not PostgreSQL, set
identify's latency (DESIGN.md's performance notes), so when none of the values is anyone's
the customer and its identities are written by one statement of data-modifying CTEs, sent to
asyncpg directly inside the session's transaction (after identify's advisory locks).

The statement creates nothing if any value has become someone's or is blocked; and if a value
is linked at the same moment by a path that takes no lock (an inbound message's first
statement), its identity is skipped (``ON CONFLICT DO NOTHING``) and the caller, seeing fewer
identities linked than asked, takes the reference path, which merges what now overlaps.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from hilos.core.ids import new_id
from hilos.core.rawsql import numbered

_CREATE_UNLESS_KNOWN = numbered(
    """
WITH taken AS (
    SELECT 1
    FROM unnest(CAST(:kinds AS varchar[]), CAST(:values AS varchar[])) AS wanted(kind, value)
    -- One index probe per value (LATERAL ... LIMIT 1), whatever plan PostgreSQL caches.
    CROSS JOIN LATERAL (
        SELECT 1 FROM identities AS i
        WHERE i.tenant_id = CAST(:tenant_id AS varchar) AND i.kind = wanted.kind
          AND i.value = wanted.value
        UNION ALL
        SELECT 1 FROM blocked_values AS b
        WHERE b.tenant_id = CAST(:tenant_id AS varchar) AND b.kind = wanted.kind
          AND b.value = wanted.value
        LIMIT 1
    ) AS hit
),
customer AS (
    INSERT INTO customers (
        id, tenant_id, name, search_name, language, traits, created_at, updated_at, merged_into_id
    )
    SELECT :customer_id, CAST(:tenant_id AS varchar), :name, :search_name, :language,
        CAST(:traits AS json), :now, :now, NULL
    WHERE NOT EXISTS (SELECT 1 FROM taken)
    RETURNING id
),
linked AS (
    INSERT INTO identities (id, tenant_id, customer_id, kind, value, created_at)
    SELECT wanted.id, CAST(:tenant_id AS varchar), customer.id, wanted.kind, wanted.value, :now
    FROM customer, unnest(
        CAST(:ids AS varchar[]), CAST(:kinds AS varchar[]), CAST(:values AS varchar[])
    ) AS wanted(id, kind, value)
    ON CONFLICT (tenant_id, kind, value) DO NOTHING
    RETURNING id
)
SELECT (SELECT id FROM customer) AS customer_id, (SELECT count(*) FROM linked) AS linked
"""
)


@dataclass(frozen=True, slots=True)
class Created:
    customer_id: str
    # False when a value was linked elsewhere at the same moment: resolve again.
    complete: bool


async def create_unless_known(
    connection: AsyncConnection,
    *,
    tenant_id: str,
    pairs: Sequence[tuple[str, str]],
    name: str | None,
    search_name: str | None,
    language: str | None,
    traits: dict[str, Any] | None,
    moment: datetime,
) -> Created | None:
    """A new customer holding ``pairs``, or ``None`` (nothing written) if one is known."""
    values = {
        "tenant_id": tenant_id,
        "kinds": [kind for kind, _ in pairs],
        "values": [value for _, value in pairs],
        "ids": [new_id() for _ in pairs],
        "customer_id": new_id(),
        "name": name,
        "search_name": search_name,
        "language": language,
        "traits": json.dumps(traits or {}),
        "now": moment,
    }
    statement, parameters = _CREATE_UNLESS_KNOWN
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection
    row = await driver.fetchrow(statement, *(values[name] for name in parameters))
    if row is None or row["customer_id"] is None:
        return None
    return Created(row["customer_id"], complete=row["linked"] == len(pairs))
