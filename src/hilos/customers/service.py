"""Customer profiles: real-time identity resolution, reversible merges, consents and timeline.

Resolution is deterministic: identities that share a normalised value are the same customer.
``identify`` finds every customer holding any of the given values; the oldest survives and the
others are merged into it, unless a merge would give the survivor more identities of one kind
than the tenant allows, in which case that customer stays apart and the call reports the
conflict. Every merge records exactly what it moved, so ``unmerge`` puts back exactly that.

Other domains move their own rows on a merge by registering a ``MergeParticipant``
(conversations does), so this module never touches their tables.
"""

from __future__ import annotations

import functools
import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, cast

from sqlalchemy import (
    Table,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    text,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql.elements import BindParameter

from hilos.core.clock import now
from hilos.core.errors import Conflict, Invalid, NotFound
from hilos.core.ids import new_id
from hilos.core.outbox import emit
from hilos.core.tenancy import TenantContext, get_owned, tenant_scope
from hilos.customers import identify_pg
from hilos.customers.identities import normalize, search_key
from hilos.customers.models import (
    BlockedValue,
    Consent,
    Customer,
    Identity,
    Merge,
    TimelineEvent,
)
from hilos.privacy import audit

MAX_REDIRECTS = 32
_IDENTITIES = cast(Table, Identity.__table__)
_CUSTOMERS = cast(Table, Customer.__table__)
_BLOCKED_VALUES = cast(Table, BlockedValue.__table__)


class MergeParticipant(Protocol):
    """A domain that owns rows keyed by customer and moves them when customers merge."""

    name: str

    async def absorb(
        self, session: AsyncSession, tenant: TenantContext, *, survivor_id: str, merged_id: str
    ) -> dict[str, Any]:
        """Move the merged customer's rows to the survivor; return what was moved."""

    async def restore(
        self,
        session: AsyncSession,
        tenant: TenantContext,
        *,
        survivor_id: str,
        merged_id: str,
        record: dict[str, Any],
    ) -> None:
        """Undo exactly what ``absorb`` recorded."""


MERGE_PARTICIPANTS: list[MergeParticipant] = []


def register_merge_participant(participant: MergeParticipant) -> None:
    if all(existing.name != participant.name for existing in MERGE_PARTICIPANTS):
        MERGE_PARTICIPANTS.append(participant)


class OwnedRowsParticipant:
    """The merge participant of a domain whose rows only change owner: on a merge the merged
    customer's rows of each model become the survivor's; on unmerge exactly those go back.

    The record names the rows moved, per table, so rows the survivor gained afterwards stay.
    """

    def __init__(self, name: str, *models: Any) -> None:
        self.name = name
        self.models = models

    async def absorb(
        self, session: AsyncSession, tenant: TenantContext, *, survivor_id: str, merged_id: str
    ) -> dict[str, Any]:
        return {
            model.__tablename__: await move_customer_rows(
                session,
                model,
                from_id=merged_id,
                to_id=survivor_id,
                where=model.tenant_id == tenant.id,
            )
            for model in self.models
        }

    async def restore(
        self,
        session: AsyncSession,
        tenant: TenantContext,
        *,
        survivor_id: str,
        merged_id: str,
        record: dict[str, Any],
    ) -> None:
        for model in self.models:
            ids = [str(i) for i in record.get(model.__tablename__) or []]
            if ids:
                await move_customer_rows(
                    session, model, from_id=survivor_id, to_id=merged_id, ids=ids
                )


def dialect_insert(session: AsyncSession, table: Any) -> Any:
    """``INSERT`` with ``ON CONFLICT`` support for the session's database."""
    return insert_for(session.get_bind().dialect.name, table)


def insert_for(dialect: str, table: Any) -> Any:
    """``INSERT`` with ``ON CONFLICT`` support for the named dialect."""
    return pg_insert(table) if dialect == "postgresql" else sqlite_insert(table)


# --- profiles -------------------------------------------------------------------------------


async def create_customer(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    name: str | None = None,
    language: str | None = None,
    traits: dict[str, Any] | None = None,
) -> Customer:
    moment = now()
    customer = Customer(
        id=new_id(),
        tenant_id=tenant.id,
        name=name,
        search_name=search_key(name) if name else None,
        language=language,
        traits=dict(traits or {}),
        created_at=moment,
        updated_at=moment,
    )
    session.add(customer)
    await session.flush()
    return customer


async def get_customer(session: AsyncSession, tenant: TenantContext, customer_id: str) -> Customer:
    return await get_owned(session, Customer, customer_id, tenant, what="customer")


async def live_customer(session: AsyncSession, tenant: TenantContext, customer_id: str) -> Customer:
    """The customer, or the survivor it was merged into (following chains of merges)."""
    customer = await get_customer(session, tenant, customer_id)
    for _ in range(MAX_REDIRECTS):
        if customer.merged_into_id is None:
            return customer
        customer = await get_customer(session, tenant, customer.merged_into_id)
    raise Conflict(f"customer {customer_id} has a merge chain longer than {MAX_REDIRECTS}")


def apply_profile(
    customer: Customer,
    *,
    name: str | None = None,
    language: str | None = None,
    traits: dict[str, Any] | None = None,
) -> None:
    changed = False
    if name and name != customer.name:
        customer.name, customer.search_name = name, search_key(name)
        changed = True
    if language and language != customer.language:
        customer.language = language
        changed = True
    if traits and any((customer.traits or {}).get(k, object()) != v for k, v in traits.items()):
        customer.traits = {**(customer.traits or {}), **traits}
        changed = True
    if changed:
        customer.updated_at = now()


async def set_trait(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    customer_id: str,
    key: str,
    value: Any,
    customer: Customer | None = None,
    flush: bool = True,
) -> bool:
    """Set one trait (``None`` removes it) and leave the others as they are; True if it changed.

    For a domain that keeps one trait up to date (loyalty keeps ``tier``, which routing reads).
    It changes the session's own copy of the customer, so a merge in progress keeps the traits
    it has filled in. A caller that loaded the customer in this session (a batch of journey
    runs) passes it as ``customer`` and may leave the write to its own flush.
    """
    if customer is None or customer.id != customer_id:
        customer = await get_customer(session, tenant, customer_id)
    traits = dict(customer.traits or {})
    if value is None:
        if key not in traits:
            return False
        del traits[key]
    elif key in traits and traits[key] == value:
        return False
    else:
        traits[key] = value
    customer.traits = traits
    customer.updated_at = now()
    if flush:
        await session.flush()
    return True


async def identities_of(
    session: AsyncSession, tenant: TenantContext, customer_id: str
) -> Sequence[Identity]:
    statement = tenant_scope(
        select(Identity).where(Identity.customer_id == customer_id).order_by(Identity.id),
        Identity,
        tenant,
    )
    return (await session.execute(statement)).scalars().all()


async def find_by_identity(
    session: AsyncSession, tenant: TenantContext, *, kind: str, value: str
) -> Customer | None:
    value = normalize(kind, value, region=tenant.default_region, field="identity")
    statement = tenant_scope(
        select(Customer)
        .join(Identity, Identity.customer_id == Customer.id)
        .where(Identity.kind == kind, Identity.value == value),
        Identity,
        tenant,
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def search_customers(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    q: str | None = None,
    before: str | None = None,
    limit: int = 50,
) -> Sequence[Customer]:
    """Live customers, newest first; ``q`` matches name word prefixes, emails and phone digits."""
    statement = tenant_scope(
        select(Customer).where(Customer.merged_into_id.is_(None)), Customer, tenant
    )
    if q:
        key = search_key(q)
        identity_match = select(Identity.customer_id).where(
            Identity.tenant_id == tenant.id,
            or_(
                and_(Identity.kind == "email", Identity.value.startswith(q.strip().lower())),
                *(
                    [
                        and_(
                            Identity.kind.in_(("phone", "whatsapp")),
                            Identity.value.contains(digits),
                        )
                    ]
                    if (digits := "".join(c for c in q if c.isdigit()))
                    else []
                ),
            ),
        )
        statement = statement.where(
            or_(
                Customer.search_name.startswith(key),
                Customer.search_name.contains(key),
                Customer.id.in_(identity_match),
            )
        )
    if before:
        statement = statement.where(Customer.id < before)
    statement = statement.order_by(Customer.id.desc()).limit(limit)
    return (await session.execute(statement)).scalars().all()


# --- resolution -----------------------------------------------------------------------------


@dataclass
class IdentifyResult:
    customer_id: str
    created: bool = False
    merged_ids: list[str] = field(default_factory=list)
    linked: list[tuple[str, str]] = field(default_factory=list)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    ignored: list[dict[str, Any]] = field(default_factory=list)


def normalize_all(
    tenant: TenantContext, identities: Sequence[tuple[str, str]], *, field_prefix: str
) -> list[tuple[str, str]]:
    seen: dict[tuple[str, str], None] = {}
    for index, (kind, value) in enumerate(identities):
        pair = (
            kind,
            normalize(kind, value, region=tenant.default_region, field=f"{field_prefix}[{index}]"),
        )
        seen.setdefault(pair, None)
    return list(seen)


_ADVISORY_LOCKS = text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS bigint[])) AS k")


async def _lock_values(
    session: AsyncSession, tenant: TenantContext, pairs: Sequence[tuple[str, str]]
) -> None:
    """Serialise concurrent resolutions that touch the same values (PostgreSQL advisory locks).

    SQLite needs nothing: every transaction there already holds the database's write lock.
    """
    if session.get_bind().dialect.name != "postgresql" or not pairs:
        return
    keys = sorted(
        int.from_bytes(
            hashlib.blake2b(f"{tenant.id}|{k}|{v}".encode(), digest_size=8).digest(),
            "big",
            signed=True,
        )
        for k, v in pairs
    )
    connection = await session.connection()
    await connection.execute(_ADVISORY_LOCKS, {"keys": keys})


async def _identity_counts(
    session: AsyncSession, customer_ids: Sequence[str]
) -> dict[str, Counter[str]]:
    counts: dict[str, Counter[str]] = {customer_id: Counter() for customer_id in customer_ids}
    if not customer_ids:
        return counts
    statement = (
        select(Identity.customer_id, Identity.kind, func.count())
        .where(Identity.customer_id.in_(customer_ids))
        .group_by(Identity.customer_id, Identity.kind)
    )
    for customer_id, kind, count in (await session.execute(statement)).all():
        counts[customer_id][kind] = count
    return counts


# When linking everything a call names would break a limit, identifiers are dropped from the
# call lowest priority first (as Segment's identity resolution does): a shared family email
# gives way before a customer number does.
IDENTITY_PRIORITY = (
    "external",
    "loyalty",
    "email",
    "phone",
    "whatsapp",
    "messenger",
    "instagram",
    "telegram",
    "anonymous",
)


def _exceeded(
    tenant: TenantContext, counts: Counter[str], parts: Sequence[Counter[str]]
) -> list[str]:
    """Kinds where ``counts`` (the sum of ``parts`` and new values) breaks the tenant's limit.

    A customer who already holds more than the limit (the tenant lowered it later) is not
    broken up or refused: only growth past both the limit and that customer's count is.
    """
    return sorted(
        kind
        for kind, count in counts.items()
        if count > max([tenant.identity_limit(kind), *(part[kind] for part in parts)])
    )


_PAIRS: BindParameter[Any] = bindparam("pairs", expanding=True)
# One round trip answers both "which of these values are blocked" and "who holds the others".
_BLOCKED_AND_OWNERS = union_all(
    select(
        literal("blocked").label("what"),
        _BLOCKED_VALUES.c.kind,
        _BLOCKED_VALUES.c.value,
        null().label("customer_id"),
    ).where(
        _BLOCKED_VALUES.c.tenant_id == bindparam("tenant_id"),
        tuple_(_BLOCKED_VALUES.c.kind, _BLOCKED_VALUES.c.value).in_(_PAIRS),
    ),
    select(
        literal("owner").label("what"),
        _IDENTITIES.c.kind,
        _IDENTITIES.c.value,
        _IDENTITIES.c.customer_id,
    ).where(
        _IDENTITIES.c.tenant_id == bindparam("tenant_id"),
        tuple_(_IDENTITIES.c.kind, _IDENTITIES.c.value).in_(_PAIRS),
    ),
)


async def _owners_and_blocked(
    connection: AsyncConnection, tenant: TenantContext, pairs: Sequence[tuple[str, str]]
) -> tuple[dict[tuple[str, str], str], set[tuple[str, str]]]:
    """Who holds each of ``pairs``, and which are blocked: one round trip."""
    owners: dict[tuple[str, str], str] = {}
    blocked: set[tuple[str, str]] = set()
    if not pairs:
        return owners, blocked
    rows = await connection.execute(_BLOCKED_AND_OWNERS, {"tenant_id": tenant.id, "pairs": pairs})
    for what, kind, value, customer_id in rows.all():
        if what == "blocked":
            blocked.add((kind, value))
        else:
            owners[(kind, value)] = customer_id
    return owners, blocked


async def identify(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    identities: Sequence[tuple[str, str]],
    name: str | None = None,
    language: str | None = None,
    traits: dict[str, Any] | None = None,
    reason: str = "identify",
    field_prefix: str = "identities",
    enforce_limits: bool = True,
) -> IdentifyResult:
    """The one customer these identities belong to, creating or merging customers as needed.

    Every customer holding one of the values is merged into the oldest of them, and the values
    nobody holds yet are linked to it. If that would give the customer more identities of a
    kind than the tenant allows, the lowest-priority value that adds to the excess is left out
    (and reported as a conflict), until the rest fits. ``enforce_limits=False`` is for
    explicit instructions that these values are one person (Segment's ``alias``).

    The common call (values a customer already holds, nothing new) costs one round trip and
    takes no lock, so identify can sit on the path of every page view; on PostgreSQL a
    customer nobody knows yet is created by one statement (``identify_pg``).
    """
    pairs = normalize_all(tenant, identities, field_prefix=field_prefix)
    connection = await session.connection()
    owners, blocked = await _owners_and_blocked(connection, tenant, pairs)
    # The commonest call names values one customer already holds and changes nothing: it
    # needs no lock, since it writes nothing and its answer is true of a committed state.
    if pairs and not blocked and len(owners) == len(pairs) and not (name or language or traits):
        holders = set(owners.values())
        if len(holders) == 1:
            return IdentifyResult(customer_id=holders.pop())
    await _lock_values(session, tenant, pairs)
    unknown = pairs and not owners and not blocked
    within_limits = not enforce_limits or not _exceeded(tenant, Counter(k for k, _ in pairs), [])
    if unknown and within_limits and connection.dialect.name == "postgresql":
        created = await identify_pg.create_unless_known(
            connection,
            tenant_id=tenant.id,
            pairs=pairs,
            name=name,
            search_name=search_key(name) if name else None,
            language=language,
            traits=traits,
            moment=now(),
        )
        if created is not None and created.complete:
            return IdentifyResult(customer_id=created.customer_id, created=True, linked=list(pairs))
    if pairs and connection.dialect.name == "postgresql":
        # Again under the lock: another call may have linked these values meanwhile. (SQLite
        # let no other writer in since this transaction began.)
        owners, blocked = await _owners_and_blocked(connection, tenant, pairs)
    usable = sorted(
        (pair for pair in pairs if pair not in blocked),
        key=lambda pair: IDENTITY_PRIORITY.index(pair[0]),
    )
    ignored = [{"kind": k, "value": v, "reason": "blocked"} for k, v in pairs if (k, v) in blocked]
    customer_ids = {owners[pair] for pair in usable if pair in owners}
    new_values = [pair for pair in usable if pair not in owners]
    conflicts: list[dict[str, Any]] = []
    if len(customer_ids) > 1 or new_values:
        usable, conflicts = await _within_limits(
            session, tenant, usable, owners, enforce_limits=enforce_limits
        )
        customer_ids = {owners[pair] for pair in usable if pair in owners}
        new_values = [pair for pair in usable if pair not in owners]

    if not customer_ids:
        # Core, not the ORM: a new profile is the commonest write of identify.
        moment, customer_id = now(), new_id()
        await connection.execute(
            _INSERT_CUSTOMER,
            {
                "id": customer_id,
                "tenant_id": tenant.id,
                "name": name,
                "search_name": search_key(name) if name else None,
                "language": language,
                "traits": dict(traits or {}),
                "created_at": moment,
                "updated_at": moment,
            },
        )
        result = IdentifyResult(customer_id=customer_id, created=True)
    else:
        if len(customer_ids) == 1 and not (name or language or traits):
            result = IdentifyResult(customer_id=next(iter(customer_ids)))
        else:
            # One query for every profile involved; the oldest survives.
            profiles = sorted(
                (
                    await session.execute(
                        tenant_scope(
                            select(Customer).where(Customer.id.in_(customer_ids)),
                            Customer,
                            tenant,
                        )
                    )
                ).scalars(),
                key=lambda c: (c.created_at, c.id),
            )
            customer, others = profiles[0], profiles[1:]
            result = IdentifyResult(customer_id=customer.id)
            for other in others:
                await merge(session, tenant, survivor=customer, merged=other, reason=reason)
                result.merged_ids.append(other.id)
            apply_profile(customer, name=name, language=language, traits=traits)
    result.conflicts, result.ignored = conflicts, ignored
    if new_values:
        moment = now()
        await connection.execute(
            insert(_IDENTITIES),
            [
                {
                    "id": new_id(),
                    "tenant_id": tenant.id,
                    "customer_id": result.customer_id,
                    "kind": kind,
                    "value": value,
                    "created_at": moment,
                }
                for kind, value in new_values
            ],
        )
        result.linked = list(new_values)
    await session.flush()
    return result


async def _within_limits(
    session: AsyncSession,
    tenant: TenantContext,
    usable: list[tuple[str, str]],
    owners: dict[tuple[str, str], str],
    *,
    enforce_limits: bool,
) -> tuple[list[tuple[str, str]], list[dict[str, Any]]]:
    """The values that can be linked together within the tenant's limits, and the conflicts."""
    usable = list(usable)
    held = await _identity_counts(session, sorted(set(owners.values())))
    conflicts: list[dict[str, Any]] = []
    while enforce_limits:
        customer_ids = {owners[pair] for pair in usable if pair in owners}
        counts: Counter[str] = Counter()
        for customer_id in customer_ids:
            counts += held[customer_id]
        counts.update(pair[0] for pair in usable if pair not in owners)
        exceeded = _exceeded(tenant, counts, [held[c] for c in customer_ids])
        contributing = [
            pair
            for pair in usable
            if (pair not in owners and pair[0] in exceeded)
            or (pair in owners and any(held[owners[pair]][kind] for kind in exceeded))
        ]
        if not exceeded or not contributing:
            break
        dropped = contributing[-1]
        usable.remove(dropped)
        conflicts.append(
            {
                "kind": dropped[0],
                "value": dropped[1],
                "customer_id": owners.get(dropped),
                "reason": "identity_limit",
                "message": (
                    f"not linked: it would give one customer more {', '.join(exceeded)} "
                    "identities than the tenant allows"
                ),
            }
        )
    return usable, conflicts


# Built once: the hot path then pays no statement construction or cache-key cost per request.
_OWNER_OF_VALUE = select(_IDENTITIES.c.customer_id).where(
    _IDENTITIES.c.tenant_id == bindparam("tenant_id"),
    _IDENTITIES.c.kind == bindparam("kind"),
    _IDENTITIES.c.value == bindparam("value"),
)
# The owner of a value, or the empty string when the value is blocked; no row for a new value.
_OWNER_OR_BLOCKED = union_all(
    _OWNER_OF_VALUE,
    select(literal("").label("customer_id")).where(
        _BLOCKED_VALUES.c.tenant_id == bindparam("tenant_id"),
        _BLOCKED_VALUES.c.kind == bindparam("kind"),
        _BLOCKED_VALUES.c.value == bindparam("value"),
    ),
)
_INSERT_CUSTOMER = insert(_CUSTOMERS)
_DELETE_CUSTOMER = delete(_CUSTOMERS).where(_CUSTOMERS.c.id == bindparam("customer_id"))


@functools.cache
def _link_identity_once(dialect: str) -> Any:
    return (
        insert_for(dialect, _IDENTITIES)
        .on_conflict_do_nothing(index_elements=["tenant_id", "kind", "value"])
        .returning(_IDENTITIES.c.id)
    )


async def resolve_sender(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    kind: str,
    value: str,
    name: str | None,
    connection: AsyncConnection | None = None,
) -> tuple[str, bool]:
    """The customer id for the sender of an inbound message, and whether it was created.

    The hot path of every inbound message: one indexed lookup when the sender is known. A new
    sender gets a new customer; if another request linked the same value at the same moment,
    ours is dropped inside this transaction and theirs is used. A blocked value (a shop's own
    phone) links nobody: its message goes to a fresh customer of its own. ``connection`` is the
    session's connection when the caller already holds it.
    """
    connection = connection or await session.connection()
    lookup = {"tenant_id": tenant.id, "kind": kind, "value": value}
    found = {row[0] for row in await connection.execute(_OWNER_OR_BLOCKED, lookup)}
    blocked = "" in found
    found.discard("")
    if found:
        return found.pop(), False
    moment = now()
    customer_id = new_id()
    await connection.execute(
        _INSERT_CUSTOMER,
        {
            "id": customer_id,
            "tenant_id": tenant.id,
            "name": name,
            "search_name": search_key(name) if name else None,
            "traits": {},
            "created_at": moment,
            "updated_at": moment,
        },
    )
    if blocked:
        return customer_id, True
    linked = await connection.execute(
        _link_identity_once(connection.dialect.name),
        {"id": new_id(), "customer_id": customer_id, "created_at": moment, **lookup},
    )
    if linked.first() is not None:
        return customer_id, True
    await connection.execute(_DELETE_CUSTOMER, {"customer_id": customer_id})
    return (await connection.execute(_OWNER_OF_VALUE, lookup)).scalar_one(), False


# --- merges ---------------------------------------------------------------------------------


async def move_customer_rows(
    session: AsyncSession,
    model: Any,
    *,
    from_id: str,
    to_id: str,
    ids: Sequence[str] | None = None,
    where: Any = None,
) -> list[str]:
    """Move rows of ``model`` from one customer to another in one ``UPDATE ... RETURNING``;
    ``ids`` limits which ones, ``where`` adds a condition. For merge participants too."""
    condition = model.customer_id == from_id
    if ids is not None:
        if not ids:
            return []
        condition = and_(condition, model.id.in_(ids))
    if where is not None:
        condition = and_(condition, where)
    moved = await session.execute(
        update(model).where(condition).values(customer_id=to_id).returning(model.id),
        execution_options={"synchronize_session": False},
    )
    return list(moved.scalars().all())


# PostgreSQL moves the three tables in one statement (data-modifying CTEs).
_MOVE_OWN_ROWS_PG = text(
    """
WITH moved_identities AS (
    UPDATE identities SET customer_id = :to_id WHERE customer_id = :from_id RETURNING id
), moved_events AS (
    UPDATE timeline_events SET customer_id = :to_id WHERE customer_id = :from_id RETURNING id
), moved_consents AS (
    UPDATE consents SET customer_id = :to_id WHERE customer_id = :from_id RETURNING id
)
SELECT 'identities' AS what, id FROM moved_identities
UNION ALL SELECT 'timeline_events', id FROM moved_events
UNION ALL SELECT 'consents', id FROM moved_consents
"""
)


async def _move_own_rows(session: AsyncSession, *, from_id: str, to_id: str) -> dict[str, Any]:
    """Move this domain's rows (identities, timeline, consents) to the survivor."""
    if session.get_bind().dialect.name != "postgresql":
        return {
            "identities": await move_customer_rows(session, Identity, from_id=from_id, to_id=to_id),
            "timeline_events": await move_customer_rows(
                session, TimelineEvent, from_id=from_id, to_id=to_id
            ),
            "consents": await move_customer_rows(session, Consent, from_id=from_id, to_id=to_id),
        }
    moved: dict[str, Any] = {"identities": [], "timeline_events": [], "consents": []}
    rows = await session.execute(_MOVE_OWN_ROWS_PG, {"from_id": from_id, "to_id": to_id})
    for what, row_id in rows.all():
        moved[what].append(row_id)
    return moved


async def merge(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    survivor: Customer,
    merged: Customer,
    reason: str,
) -> Merge:
    """Merge ``merged`` into ``survivor`` and log exactly what moved."""
    if survivor.id == merged.id:
        raise Invalid("a customer cannot be merged into itself", field="customer_id")
    moved: dict[str, Any] = await _move_own_rows(session, from_id=merged.id, to_id=survivor.id)
    filled = {
        key: value
        for key, value in (merged.traits or {}).items()
        if key not in (survivor.traits or {})
    }
    moved["filled_traits"] = sorted(filled)
    moved["filled_name"] = bool(merged.name and not survivor.name)
    moved["filled_language"] = bool(merged.language and not survivor.language)
    if filled:
        survivor.traits = {**(survivor.traits or {}), **filled}
    if moved["filled_name"]:
        survivor.name, survivor.search_name = merged.name, merged.search_name
    if moved["filled_language"]:
        survivor.language = merged.language
    for participant in MERGE_PARTICIPANTS:
        moved[participant.name] = await participant.absorb(
            session, tenant, survivor_id=survivor.id, merged_id=merged.id
        )
    merged.merged_into_id = survivor.id
    survivor.updated_at = merged.updated_at = now()
    record = Merge(
        id=new_id(),
        tenant_id=tenant.id,
        survivor_id=survivor.id,
        merged_id=merged.id,
        reason=reason,
        moved=moved,
        created_at=now(),
    )
    session.add(record)
    await session.flush()
    # Merges happen on their own (an identify naming two customers' values): Hilos is the actor.
    await audit.record(
        session,
        audit.Actor.system(tenant.id),
        "customer.merged",
        subject_type="customer",
        subject_id=survivor.id,
        details={"merge_id": record.id, "merged_id": merged.id, "reason": reason},
    )
    await emit(
        session,
        tenant_id=tenant.id,
        topic="customer.merged",
        payload={"merge_id": record.id, "survivor_id": survivor.id, "merged_id": merged.id},
    )
    return record


async def merges_of(
    session: AsyncSession, tenant: TenantContext, customer_id: str
) -> Sequence[Merge]:
    statement = tenant_scope(
        select(Merge)
        .where(or_(Merge.survivor_id == customer_id, Merge.merged_id == customer_id))
        .order_by(Merge.id.desc()),
        Merge,
        tenant,
    )
    return (await session.execute(statement)).scalars().all()


async def unmerge(
    session: AsyncSession, tenant: TenantContext, *, customer_id: str, merge_id: str | None
) -> Merge:
    """Undo one merge exactly: by id, or the merge that took ``customer_id`` away, or the
    latest merge into ``customer_id``."""
    customer = await get_customer(session, tenant, customer_id)
    statement = tenant_scope(select(Merge).where(Merge.undone_at.is_(None)), Merge, tenant)
    if merge_id is not None:
        statement = statement.where(
            Merge.id == merge_id,
            or_(Merge.survivor_id == customer.id, Merge.merged_id == customer.id),
        )
    elif customer.merged_into_id is not None:
        statement = statement.where(Merge.merged_id == customer.id)
    else:
        statement = statement.where(Merge.survivor_id == customer.id)
    record = (
        await session.execute(statement.order_by(Merge.id.desc()).limit(1))
    ).scalar_one_or_none()
    if record is None:
        if merge_id is not None:
            raise NotFound(f"merge {merge_id} of customer {customer_id} not found or undone")
        raise Conflict(f"customer {customer_id} has no merge to undo", code="nothing_to_unmerge")
    survivor = await get_customer(session, tenant, record.survivor_id)
    merged = await get_customer(session, tenant, record.merged_id)
    if survivor.merged_into_id is not None:
        raise Conflict(
            f"customer {survivor.id} was itself merged into {survivor.merged_into_id} later; "
            "undo that merge first",
            code="merge_not_last",
        )
    moved = record.moved
    for participant in reversed(MERGE_PARTICIPANTS):
        if participant.name in moved:
            await participant.restore(
                session,
                tenant,
                survivor_id=survivor.id,
                merged_id=merged.id,
                record=moved[participant.name],
            )
    await move_customer_rows(
        session, Identity, from_id=survivor.id, to_id=merged.id, ids=moved["identities"]
    )
    await move_customer_rows(
        session, TimelineEvent, from_id=survivor.id, to_id=merged.id, ids=moved["timeline_events"]
    )
    await move_customer_rows(
        session, Consent, from_id=survivor.id, to_id=merged.id, ids=moved["consents"]
    )
    traits = dict(survivor.traits or {})
    for key in moved.get("filled_traits", []):
        if key in traits and traits[key] == (merged.traits or {}).get(key):
            del traits[key]
    survivor.traits = traits
    if moved.get("filled_name") and survivor.name == merged.name:
        survivor.name = survivor.search_name = None
    if moved.get("filled_language") and survivor.language == merged.language:
        survivor.language = None
    merged.merged_into_id = None
    survivor.updated_at = merged.updated_at = record.undone_at = now()
    await session.flush()
    await emit(
        session,
        tenant_id=tenant.id,
        topic="customer.unmerged",
        payload={"merge_id": record.id, "survivor_id": survivor.id, "merged_id": merged.id},
    )
    return record


# --- blocked values -------------------------------------------------------------------------


async def block_value(
    session: AsyncSession, tenant: TenantContext, *, kind: str, value: str, reason: str | None
) -> BlockedValue:
    """Block a value from linking anyone; identities already holding it are unlinked."""
    value = normalize(kind, value, region=tenant.default_region)
    existing = (
        await session.execute(
            select(BlockedValue).where(
                BlockedValue.tenant_id == tenant.id,
                BlockedValue.kind == kind,
                BlockedValue.value == value,
            )
        )
    ).scalar_one_or_none()
    if existing is not None:
        return existing
    row = BlockedValue(
        id=new_id(), tenant_id=tenant.id, kind=kind, value=value, reason=reason, created_at=now()
    )
    session.add(row)
    await session.execute(
        delete(Identity).where(
            Identity.tenant_id == tenant.id, Identity.kind == kind, Identity.value == value
        )
    )
    await session.flush()
    return row


async def list_blocked(session: AsyncSession, tenant: TenantContext) -> Sequence[BlockedValue]:
    statement = tenant_scope(select(BlockedValue).order_by(BlockedValue.id), BlockedValue, tenant)
    return (await session.execute(statement)).scalars().all()


async def unblock_value(session: AsyncSession, tenant: TenantContext, blocked_id: str) -> None:
    row = await get_owned(session, BlockedValue, blocked_id, tenant, what="blocked value")
    await session.delete(row)
    await session.flush()


# --- consents -------------------------------------------------------------------------------


async def record_consent(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    customer_id: str,
    purpose: str,
    channel_kind: str,
    granted: bool,
    source: str,
    recorded_at: datetime | None = None,
) -> Consent:
    customer = await live_customer(session, tenant, customer_id)
    row = Consent(
        id=new_id(),
        tenant_id=tenant.id,
        customer_id=customer.id,
        purpose=purpose,
        channel_kind=channel_kind,
        granted=granted,
        source=source,
        recorded_at=recorded_at or now(),
    )
    session.add(row)
    await session.flush()
    await emit(
        session,
        tenant_id=tenant.id,
        topic="consent.changed",
        payload={
            "customer_id": customer.id,
            "purpose": purpose,
            "channel_kind": channel_kind,
            "granted": granted,
        },
    )
    return row


async def consent_history(
    session: AsyncSession, tenant: TenantContext, customer_id: str
) -> Sequence[Consent]:
    statement = tenant_scope(
        select(Consent)
        .where(Consent.customer_id == customer_id)
        .order_by(Consent.recorded_at, Consent.id),
        Consent,
        tenant,
    )
    return (await session.execute(statement)).scalars().all()


def current_consents(history: Sequence[Consent]) -> list[Consent]:
    """The latest decision per (purpose, channel kind), from a history in time order."""
    latest: dict[tuple[str, str], Consent] = {}
    for consent in history:
        latest[(consent.purpose, consent.channel_kind)] = consent
    return sorted(latest.values(), key=lambda c: (c.purpose, c.channel_kind))


# --- timeline -------------------------------------------------------------------------------


async def add_timeline_event(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    customer_id: str,
    type: str,
    name: str | None,
    properties: dict[str, Any],
    context: dict[str, Any],
    occurred_at: datetime,
    source_message_id: str | None,
) -> tuple[str, bool]:
    """Append an event; a repeated ``source_message_id`` returns the first event's id."""
    event_id = new_id()
    statement = dialect_insert(session, TimelineEvent).values(
        id=event_id,
        tenant_id=tenant.id,
        customer_id=customer_id,
        type=type,
        name=name,
        properties=properties,
        context=context,
        occurred_at=occurred_at,
        received_at=now(),
        source_message_id=source_message_id,
    )
    if source_message_id is None:
        await session.execute(statement)
        return event_id, False
    inserted = await session.execute(
        statement.on_conflict_do_nothing(
            index_elements=["tenant_id", "source_message_id"]
        ).returning(TimelineEvent.id)
    )
    if inserted.first() is not None:
        return event_id, False
    existing = await session.execute(
        select(TimelineEvent.id).where(
            TimelineEvent.tenant_id == tenant.id,
            TimelineEvent.source_message_id == source_message_id,
        )
    )
    return existing.scalar_one(), True


async def timeline_event_by_source_id(
    session: AsyncSession, tenant: TenantContext, source_message_id: str
) -> TimelineEvent | None:
    statement = tenant_scope(
        select(TimelineEvent).where(TimelineEvent.source_message_id == source_message_id),
        TimelineEvent,
        tenant,
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def recent_timeline_events(
    session: AsyncSession, tenant: TenantContext, customer_id: str, *, limit: int = 50
) -> Sequence[TimelineEvent]:
    statement = tenant_scope(
        select(TimelineEvent)
        .where(TimelineEvent.customer_id == customer_id)
        .order_by(TimelineEvent.occurred_at.desc(), TimelineEvent.id.desc())
        .limit(limit),
        TimelineEvent,
        tenant,
    )
    return (await session.execute(statement)).scalars().all()
