"""A customer's data as one JSON document (GDPR article 15: the right of access).

The document has every part of ``spec`` (each table's rows about the customer, all columns but
secrets, in primary-key order), the files attached to their messages (name, type, size, digest
and the URL that serves the bytes), and what Hilos derives about them now (recommendations).
It covers the customer's merged profiles too: they are the same person.

It is built in memory inside the request's transaction rather than streamed: on SQLite a
transaction holds the only connection, and a stream paced by a slow client would hold it too.
Rows are read a page at a time (``rows.pages``), so the number of statements grows with the
number of pages, never with the number of rows one by one. The export is recorded in the audit
log (``customer.exported``) in the same transaction.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hilos.channels.models import StoredFile
from hilos.core.auth import Principal
from hilos.core.clock import now
from hilos.core.tenancy import TenantContext
from hilos.customers import service as customers
from hilos.engagement import recommend
from hilos.privacy import audit
from hilos.privacy.audit import Actor
from hilos.privacy.rows import iso, jsonable, pages, profile_ids, rows_of
from hilos.privacy.spec import PARTS, STORED_FILES

FORMAT = "hilos.customer-export"
VERSION = 1
# How a message names a file Hilos keeps (``channels.email_inbox.file_url``).
FILE_URL = re.compile(r"/v1/files/([0-9a-f]{32})")
RECOMMENDATIONS = 10


def files_named(messages: Iterable[dict[str, Any]]) -> set[str]:
    """The ids of the stored files that these messages' attachments point at."""
    found: set[str] = set()
    for message in messages:
        for attachment in message.get("attachments") or []:
            if isinstance(attachment, dict) and isinstance(attachment.get("url"), str):
                found.update(FILE_URL.findall(attachment["url"]))
    return found


async def _stored_files(
    session: AsyncSession, tenant: TenantContext, file_ids: set[str]
) -> list[dict[str, Any]]:
    if not file_ids:
        return []
    statement = (
        select(
            StoredFile.id,
            StoredFile.filename,
            StoredFile.content_type,
            StoredFile.size,
            StoredFile.sha256,
            StoredFile.created_at,
        )
        .where(StoredFile.tenant_id == tenant.id, StoredFile.id.in_(sorted(file_ids)))
        .order_by(StoredFile.id)
    )
    return [
        {**{key: jsonable(value) for key, value in row.items()}, "url": f"/v1/files/{row['id']}"}
        for row in (await session.execute(statement)).mappings()
    ]


async def export_customer(
    session: AsyncSession,
    tenant: TenantContext,
    actor: Actor | Principal,
    *,
    customer_id: str,
) -> dict[str, Any]:
    """Everything Hilos holds about the customer (or the survivor it was merged into)."""
    customer = await customers.live_customer(session, tenant, customer_id)
    ids = await profile_ids(session, tenant, customer.id)
    erasure = await audit.latest(
        session, tenant.id, action="customer.erased", subject_type="customer", subject_ids=ids
    )
    data: dict[str, list[dict[str, Any]]] = {}
    for spec in PARTS:
        rows: list[dict[str, Any]] = []
        async for page in pages(session, spec.table, rows_of(spec, tenant, ids)):
            rows.extend(
                {key: jsonable(value) for key, value in row.items() if key not in spec.omit}
                for row in page
            )
        data[spec.table_name] = rows
    data[STORED_FILES] = await _stored_files(session, tenant, files_named(data["messages"]))
    # What Hilos would recommend now: derived from the rows above, kept nowhere.
    recommended = (
        []
        if erasure is not None
        else await recommend.recommend_for(session, tenant, customer, limit=RECOMMENDATIONS)
    )
    counts = {name: len(rows) for name, rows in data.items()}
    await audit.record(
        session,
        actor,
        "customer.exported",
        subject_type="customer",
        subject_id=customer.id,
        details={"customer_ids": ids, "rows": counts},
    )
    return {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": iso(now()),
        "tenant_id": tenant.id,
        "customer_id": customer.id,
        "customer_ids": ids,
        "erased_at": iso(erasure.occurred_at) if erasure is not None else None,
        "rows": counts,
        "data": data,
        "derived": {
            "recommendations": [dataclasses.asdict(item) for item in recommended],
        },
    }
