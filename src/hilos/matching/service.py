"""Duplicate suggestions: blocking keys, scoring a profile against its candidates, the review
queue's decisions, automatic merges, the tenant's thresholds and trained model.

How a profile is checked (``check_profiles``, run by the worker for new and changed profiles,
never on the request that changed them):

1. Its record (``records.to_record``) gives ``=kind:value`` keys (one per email and phone) and,
   after the guard took out values held by more profiles than the tenant's limit and blocked
   values, the engine's blocking keys; both replace the profile's rows in ``match_keys``.
2. Candidates are the profiles sharing a blocking key, at most ``MAX_CANDIDATES`` of them, the
   ones sharing most keys first; a key shared by more than ``MAX_KEY_HOLDERS`` profiles is an
   oversized block and is skipped.
3. Each pair is scored by the tenant's model (``MatchModel.default()`` until trained). At or
   above the review threshold it becomes a pending suggestion; at or above the automatic
   threshold (off unless the tenant sets one) the two are merged through
   ``customers.service.merge`` (reason ``probabilistic``, which the audit log records),
   unless their birth dates conflict (``engine.has_conflict``: a father and son share name,
   address and phone), which only a person decides.

A pair a person rejected is never suggested again nor merged; neither is a pair whose merge
would put two profiles a person rejected into one customer (the clusters of both sides, every
profile merged into each, are checked), so no merge chains through a third profile.
Probabilistic merges do not check the per-kind identity counts that ``identify`` enforces: two
profiles from one old CRM hold one external id each, and merging them is the point.

Undoing a merge (``customers.service.unmerge``) rejects the pair: the relay hands this module
``customer.unmerged`` and it records the rejection, so the next check does not merge the two
again. ``customer.merged`` drops the merged profile's keys and supersedes its pending
suggestions (the survivor is checked again, its ``updated_at`` having moved).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hilos.core.clock import now
from hilos.core.errors import Conflict, Invalid, NotFound
from hilos.core.ids import new_id
from hilos.core.models import OutboxEvent
from hilos.core.outbox import register_consumer
from hilos.core.tenancy import TenantContext, tenant_scope
from hilos.customers import service as customers
from hilos.customers.models import BlockedValue, Customer, Identity, Merge
from hilos.matching import engine
from hilos.matching.models import (
    DEFAULT_REVIEW_THRESHOLD,
    SUGGESTION_STATUSES,
    MatchKey,
    MatchSettings,
    MatchSuggestion,
)
from hilos.matching.records import (
    EMAIL_KINDS,
    PHONE_KINDS,
    VALUE_KEY_PREFIX,
    guarded,
    over_limit,
    record_values,
    to_record,
    value_key,
    value_keys,
)
from hilos.privacy.rows import profile_ids

MAX_CANDIDATES = 30
MAX_KEY_HOLDERS = 1000
# Profiles a tenant's model is trained on at most (the newest ones) when trained over HTTP.
TRAIN_LIMIT = 200_000
MAX_PAGE = 200
# Statuses that are a person's (or an automatic merge's) decision: checks leave them alone.
DECIDED = ("accepted", "rejected", "auto_merged")
PROBABILISTIC = "probabilistic"
_KEY_LENGTH = 200
_IN_CHUNK = 500
_MATCH_KEYS = cast(Table, MatchKey.__table__)


# --- settings and the model -------------------------------------------------------------------


def default_settings(tenant: TenantContext) -> MatchSettings:
    return MatchSettings(
        tenant_id=tenant.id,
        review_threshold=DEFAULT_REVIEW_THRESHOLD,
        auto_merge_threshold=None,
        model=None,
        trained_at=None,
        trained_profiles=None,
        updated_at=now(),
    )


async def settings_of(session: AsyncSession, tenant: TenantContext) -> MatchSettings:
    """The tenant's settings; the defaults (not stored) for a tenant that never changed them."""
    row = await session.get(MatchSettings, tenant.id)
    return row if row is not None else default_settings(tenant)


async def _settings_row(session: AsyncSession, tenant: TenantContext) -> MatchSettings:
    row = await session.get(MatchSettings, tenant.id)
    if row is None:
        row = default_settings(tenant)
        session.add(row)
    return row


def check_thresholds(review: float, auto: float | None) -> None:
    if not 0 < review <= 1:
        raise Invalid("review_threshold must be above 0 and at most 1", field="review_threshold")
    if auto is not None and not review <= auto <= 1:
        raise Invalid(
            "auto_merge_threshold must be at least review_threshold and at most 1 "
            "(or null: no automatic merges)",
            field="auto_merge_threshold",
        )


async def update_settings(
    session: AsyncSession, tenant: TenantContext, changes: Mapping[str, Any]
) -> MatchSettings:
    """Change ``review_threshold`` and/or ``auto_merge_threshold`` (None turns merges off)."""
    unknown = set(changes) - {"review_threshold", "auto_merge_threshold"}
    if unknown:
        raise Invalid(f"unknown settings: {', '.join(sorted(unknown))}")
    row = await _settings_row(session, tenant)
    review = float(changes.get("review_threshold", row.review_threshold))
    auto = changes.get("auto_merge_threshold", row.auto_merge_threshold)
    auto = None if auto is None else float(auto)
    check_thresholds(review, auto)
    row.review_threshold, row.auto_merge_threshold = review, auto
    row.updated_at = now()
    await session.flush()
    return row


_MODELS: dict[tuple[str, datetime | None], engine.MatchModel] = {}


def model_of(settings: MatchSettings) -> engine.MatchModel:
    """The tenant's trained model, or the engine's defaults; parsed once per training."""
    if settings.model is None:
        return engine.MatchModel.default()
    key = (settings.tenant_id, settings.trained_at)
    model = _MODELS.get(key)
    if model is None:
        if len(_MODELS) > 256:
            _MODELS.clear()
        model = _MODELS[key] = engine.MatchModel.from_json(settings.model)
    return model


# --- records ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Profile:
    """A customer as matching sees it: the record and what the review queue shows beside it."""

    id: str
    name: str | None
    created_at: datetime
    merged_into_id: str | None
    record: engine.MatchRecord


def _chunks(items: Sequence[str], size: int = _IN_CHUNK) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def _identities_by_customer(
    session: AsyncSession, tenant: TenantContext, customer_ids: Sequence[str]
) -> dict[str, list[tuple[str, str]]]:
    found: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for chunk in _chunks(customer_ids):
        rows = await session.execute(
            select(Identity.customer_id, Identity.kind, Identity.value).where(
                Identity.tenant_id == tenant.id,
                Identity.customer_id.in_(chunk),
                Identity.kind.in_((*EMAIL_KINDS, *PHONE_KINDS)),
            )
        )
        for customer_id, kind, value in rows.all():
            found[customer_id].append((kind, value))
    return found


def _profiles(
    tenant: TenantContext, rows: Iterable[Any], identities: Mapping[str, list[tuple[str, str]]]
) -> dict[str, Profile]:
    return {
        row.id: Profile(
            id=row.id,
            name=row.name,
            created_at=row.created_at,
            merged_into_id=row.merged_into_id,
            record=to_record(
                customer_id=row.id,
                name=row.name,
                traits=row.traits,
                identities=identities.get(row.id, ()),
                region=tenant.default_region,
            ),
        )
        for row in rows
    }


_PROFILE_COLUMNS = (
    Customer.id,
    Customer.name,
    Customer.traits,
    Customer.created_at,
    Customer.merged_into_id,
)


async def load_profiles(
    session: AsyncSession, tenant: TenantContext, customer_ids: Collection[str]
) -> dict[str, Profile]:
    """The profiles of these ids in this tenant (merged ones too: see ``merged_into_id``)."""
    ids = sorted(set(customer_ids))
    rows: list[Any] = []
    for chunk in _chunks(ids):
        result = await session.execute(
            select(*_PROFILE_COLUMNS).where(Customer.tenant_id == tenant.id, Customer.id.in_(chunk))
        )
        rows.extend(result.all())
    return _profiles(tenant, rows, await _identities_by_customer(session, tenant, ids))


async def live_profile_pages(
    session: AsyncSession, tenant: TenantContext, *, page: int = 5000, limit: int | None = None
) -> AsyncIterator[list[Profile]]:
    """Every live profile of the tenant, a page at a time, oldest first."""
    after = ""
    seen = 0
    while limit is None or seen < limit:
        size = page if limit is None else min(page, limit - seen)
        rows = (
            await session.execute(
                select(*_PROFILE_COLUMNS)
                .where(
                    Customer.tenant_id == tenant.id,
                    Customer.merged_into_id.is_(None),
                    Customer.id > after,
                )
                .order_by(Customer.id)
                .limit(size)
            )
        ).all()
        if not rows:
            return
        ids = [row.id for row in rows]
        profiles = _profiles(tenant, rows, await _identities_by_customer(session, tenant, ids))
        yield [profiles[i] for i in ids]
        seen += len(rows)
        after = ids[-1]


async def _blocked_among(
    session: AsyncSession, tenant: TenantContext, values: Collection[tuple[str, str]]
) -> set[tuple[str, str]]:
    """Which of these ``(email|phone, value)`` the tenant blocked (a phone blocked as a
    WhatsApp id is the same number)."""
    wanted = sorted({value for _, value in values})
    blocked: set[tuple[str, str]] = set()
    for chunk in _chunks(wanted):
        rows = await session.execute(
            select(BlockedValue.kind, BlockedValue.value).where(
                BlockedValue.tenant_id == tenant.id, BlockedValue.value.in_(chunk)
            )
        )
        for kind, value in rows.all():
            blocked.add(("phone" if kind in PHONE_KINDS else kind, value))
    return {pair for pair in values if pair in blocked}


def _stored_key(key: str) -> str:
    """Keys longer than the column (a very long email) keep a prefix and a digest."""
    if len(key) <= _KEY_LENGTH:
        return key
    digest = hashlib.blake2b(key.encode(), digest_size=12).hexdigest()
    return f"{key[: _KEY_LENGTH - 25]}#{digest}"


async def _holders(
    session: AsyncSession, tenant: TenantContext, values: Collection[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    """How many profiles hold each value (from their ``=kind:value`` keys)."""
    by_key = {_stored_key(value_key(kind, value)): (kind, value) for kind, value in values}
    counts: dict[tuple[str, str], int] = {}
    for chunk in _chunks(sorted(by_key)):
        rows = await session.execute(
            select(MatchKey.key, func.count())
            .where(MatchKey.tenant_id == tenant.id, MatchKey.key.in_(chunk))
            .group_by(MatchKey.key)
        )
        for key, count in rows.all():
            counts[by_key[key]] = int(count)
    return counts


async def excluded_values(
    session: AsyncSession, tenant: TenantContext, records: Iterable[engine.MatchRecord]
) -> set[tuple[str, str]]:
    """The values of these records that must link nobody: shared above the limit, or blocked."""
    values: set[tuple[str, str]] = set()
    for record in records:
        values |= record_values(record)
    if not values:
        return set()
    return over_limit(tenant, await _holders(session, tenant, values)) | await _blocked_among(
        session, tenant, values
    )


def excluded_in_memory(
    tenant: TenantContext, records: Iterable[engine.MatchRecord], blocked: Collection[Any] = ()
) -> set[tuple[str, str]]:
    """``excluded_values`` for a whole tenant held in memory (the batch de-duplication)."""
    holders: Counter[tuple[str, str]] = Counter()
    for record in records:
        holders.update(record_values(record))
    return over_limit(tenant, holders) | {pair for pair in holders if pair in blocked}


async def blocked_values(session: AsyncSession, tenant: TenantContext) -> set[tuple[str, str]]:
    rows = await session.execute(
        select(BlockedValue.kind, BlockedValue.value).where(BlockedValue.tenant_id == tenant.id)
    )
    return {("phone" if kind in PHONE_KINDS else kind, value) for kind, value in rows.all()}


# --- keys -------------------------------------------------------------------------------------


async def drop_keys(
    session: AsyncSession, tenant: TenantContext, customer_ids: Sequence[str]
) -> None:
    for chunk in _chunks(customer_ids):
        await session.execute(
            delete(MatchKey).where(MatchKey.tenant_id == tenant.id, MatchKey.customer_id.in_(chunk))
        )


async def _insert_keys(
    session: AsyncSession, tenant: TenantContext, keys: Mapping[str, Iterable[str]]
) -> None:
    rows = [
        {"customer_id": customer_id, "key": key, "tenant_id": tenant.id}
        for customer_id, found in keys.items()
        for key in sorted({_stored_key(k) for k in found})
    ]
    for start in range(0, len(rows), 1000):
        await session.execute(insert(_MATCH_KEYS), rows[start : start + 1000])


def blocking_keys(record: engine.MatchRecord) -> set[str]:
    """The engine's blocking keys as stored (never starting like a value key)."""
    return {
        _stored_key(key)
        for key in engine.blocking_keys(record)
        if not key.startswith(VALUE_KEY_PREFIX)
    }


async def refresh_keys(
    session: AsyncSession, tenant: TenantContext, profiles: Mapping[str, Profile]
) -> tuple[dict[str, engine.MatchRecord], dict[str, set[str]]]:
    """Replace these live profiles' keys; return their guarded records and blocking keys."""
    ids = sorted(profiles)
    await drop_keys(session, tenant, ids)
    await _insert_keys(session, tenant, {i: value_keys(profiles[i].record) for i in ids})
    excluded = await excluded_values(session, tenant, (p.record for p in profiles.values()))
    records = {i: guarded(profiles[i].record, excluded) for i in ids}
    keys = {i: blocking_keys(records[i]) for i in ids}
    await _insert_keys(session, tenant, keys)
    return records, keys


async def _candidates(
    session: AsyncSession, tenant: TenantContext, keys: Mapping[str, set[str]]
) -> dict[str, list[str]]:
    """For each profile, the profiles sharing one of its blocking keys (bounded, see above)."""
    wanted = sorted(set().union(*keys.values())) if keys else []
    sizes: dict[str, int] = {}
    for chunk in _chunks(wanted):
        rows = await session.execute(
            select(MatchKey.key, func.count())
            .where(MatchKey.tenant_id == tenant.id, MatchKey.key.in_(chunk))
            .group_by(MatchKey.key)
        )
        sizes.update({key: int(count) for key, count in rows.all()})
    usable = [key for key in wanted if 1 < sizes.get(key, 0) <= MAX_KEY_HOLDERS]
    holders: dict[str, list[str]] = defaultdict(list)
    for chunk in _chunks(usable):
        held = await session.execute(
            select(MatchKey.key, MatchKey.customer_id).where(
                MatchKey.tenant_id == tenant.id, MatchKey.key.in_(chunk)
            )
        )
        for key, holder in held.all():
            holders[key].append(holder)
    found: dict[str, list[str]] = {}
    for customer_id, own in keys.items():
        shared: Counter[str] = Counter()
        for key in own:
            shared.update(h for h in holders.get(key, ()) if h != customer_id)
        ranked = sorted(shared.items(), key=lambda item: (-item[1], item[0]))
        found[customer_id] = [other for other, _ in ranked[:MAX_CANDIDATES]]
    return found


# --- suggestions ------------------------------------------------------------------------------


def canonical(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)


def evidence_json(pair: engine.ScoredPair) -> list[dict[str, Any]]:
    items = sorted(pair.evidence, key=lambda e: -abs(e.weight))
    return [{"field": e.field, "level": e.level, "weight": round(e.weight, 3)} for e in items]


async def suggestions_between(
    session: AsyncSession, tenant: TenantContext, pairs: Collection[tuple[str, str]]
) -> dict[tuple[str, str], MatchSuggestion]:
    """The stored suggestions of these canonical pairs."""
    by_left: dict[str, set[str]] = defaultdict(set)
    for left, right in pairs:
        by_left[left].add(right)
    found: dict[tuple[str, str], MatchSuggestion] = {}
    lefts = sorted(by_left)
    for chunk in _chunks(lefts):
        rows = await session.execute(
            select(MatchSuggestion).where(
                MatchSuggestion.tenant_id == tenant.id,
                MatchSuggestion.left_customer_id.in_(chunk),
            )
        )
        for row in rows.scalars():
            if row.right_customer_id in by_left[row.left_customer_id]:
                found[(row.left_customer_id, row.right_customer_id)] = row
    return found


def new_suggestion(
    tenant: TenantContext, pair: tuple[str, str], scored: engine.ScoredPair | None, status: str
) -> MatchSuggestion:
    moment = now()
    return MatchSuggestion(
        id=new_id(),
        tenant_id=tenant.id,
        left_customer_id=pair[0],
        right_customer_id=pair[1],
        probability=scored.probability if scored else 0.0,
        match_weight=scored.match_weight if scored else 0.0,
        evidence=evidence_json(scored) if scored else [],
        status=status,
        created_at=moment,
        updated_at=moment,
    )


def rescore(suggestion: MatchSuggestion, scored: engine.ScoredPair) -> None:
    suggestion.probability = scored.probability
    suggestion.match_weight = scored.match_weight
    suggestion.evidence = evidence_json(scored)
    suggestion.updated_at = now()


def decide(suggestion: MatchSuggestion, status: str, decided_by: str) -> None:
    suggestion.status = status
    suggestion.decided_by = decided_by
    suggestion.decided_at = suggestion.updated_at = now()


async def rejected_between(
    session: AsyncSession, tenant: TenantContext, left: Collection[str], right: Collection[str]
) -> bool:
    """Whether a person rejected a pair with one profile in ``left`` and one in ``right``."""
    a, b = sorted(left), sorted(right)
    statement = (
        select(MatchSuggestion.id)
        .where(
            MatchSuggestion.tenant_id == tenant.id,
            MatchSuggestion.status == "rejected",
            or_(
                and_(
                    MatchSuggestion.left_customer_id.in_(a),
                    MatchSuggestion.right_customer_id.in_(b),
                ),
                and_(
                    MatchSuggestion.left_customer_id.in_(b),
                    MatchSuggestion.right_customer_id.in_(a),
                ),
            ),
        )
        .limit(1)
    )
    return (await session.execute(statement)).first() is not None


async def _root(session: AsyncSession, tenant: TenantContext, customer_id: str) -> Customer:
    return await customers.live_customer(session, tenant, customer_id)


async def merge_pair(
    session: AsyncSession, tenant: TenantContext, a_id: str, b_id: str, *, reason: str
) -> Merge | None:
    """Merge the customers these two profiles now belong to (the older survives), unless they
    are one already (None) or a person rejected a pair across the two (``Conflict``)."""
    a, b = await _root(session, tenant, a_id), await _root(session, tenant, b_id)
    if a.id == b.id:
        return None
    if await rejected_between(
        session,
        tenant,
        await profile_ids(session, tenant, a.id),
        await profile_ids(session, tenant, b.id),
    ):
        raise Conflict(
            "a person said that a profile of one of these customers is not a profile of the "
            "other; merging them would join the two",
            code="rejected_pair",
        )
    survivor, merged = sorted((a, b), key=lambda c: (c.created_at, c.id))
    record = await customers.merge(session, tenant, survivor=survivor, merged=merged, reason=reason)
    await drop_keys(session, tenant, [merged.id])
    return record


@dataclass
class CheckOutcome:
    checked: int = 0
    compared: int = 0
    suggested: int = 0
    auto_merged: int = 0
    superseded: int = 0
    merges: list[str] = field(default_factory=list)

    def add(self, other: CheckOutcome) -> None:
        self.checked += other.checked
        self.compared += other.compared
        self.suggested += other.suggested
        self.auto_merged += other.auto_merged
        self.superseded += other.superseded
        self.merges.extend(other.merges)


async def check_profiles(
    session: AsyncSession, tenant: TenantContext, customer_ids: Collection[str]
) -> CheckOutcome:
    """Check new or changed profiles against their candidates (see the module docstring)."""
    outcome = CheckOutcome()
    profiles = await load_profiles(session, tenant, customer_ids)
    gone = sorted(set(customer_ids) - {i for i, p in profiles.items() if p.merged_into_id is None})
    await drop_keys(session, tenant, gone)
    live = {i: p for i, p in profiles.items() if p.merged_into_id is None}
    if not live:
        return outcome
    outcome.checked = len(live)
    settings = await settings_of(session, tenant)
    model = model_of(settings)
    records, keys = await refresh_keys(session, tenant, live)
    candidates = await _candidates(session, tenant, keys)
    others = {c for found in candidates.values() for c in found} - set(records)
    if others:
        loaded = {
            i: p
            for i, p in (await load_profiles(session, tenant, others)).items()
            if p.merged_into_id is None
        }
        excluded = await excluded_values(session, tenant, (p.record for p in loaded.values()))
        records.update({i: guarded(p.record, excluded) for i, p in loaded.items()})
    scored: dict[tuple[str, str], engine.ScoredPair] = {}
    for customer_id, found in candidates.items():
        for other in found:
            pair = canonical(customer_id, other)
            if pair in scored or other not in records:
                continue
            scored[pair] = engine.score(model, records[pair[0]], records[pair[1]])
    outcome.compared = len(scored)
    existing = await suggestions_between(session, tenant, scored)
    review, auto = settings.review_threshold, settings.auto_merge_threshold
    for pair, result in sorted(scored.items(), key=lambda item: -item[1].probability):
        suggestion = existing.get(pair)
        if suggestion is not None and suggestion.status in DECIDED:
            continue
        if result.probability < review:
            if suggestion is not None and suggestion.status == "pending":
                rescore(suggestion, result)
                suggestion.status = "superseded"
                outcome.superseded += 1
            continue
        left, right = await _root(session, tenant, pair[0]), await _root(session, tenant, pair[1])
        if left.id == right.id:
            continue
        if await rejected_between(
            session,
            tenant,
            await profile_ids(session, tenant, left.id),
            await profile_ids(session, tenant, right.id),
        ):
            # Joining these would chain two profiles a person said are different people.
            if suggestion is not None and suggestion.status == "pending":
                suggestion.status = "superseded"
                outcome.superseded += 1
            continue
        if suggestion is None:
            suggestion = new_suggestion(tenant, pair, result, "pending")
            session.add(suggestion)
        else:
            rescore(suggestion, result)
            suggestion.status = "pending"
        # Conflicting birth dates (a father and son?) are a person's decision, never ours.
        if auto is not None and result.probability >= auto and not engine.has_conflict(result):
            merge = await merge_pair(session, tenant, left.id, right.id, reason=PROBABILISTIC)
            if merge is not None:
                suggestion.merge_id = merge.id
                outcome.merges.append(merge.id)
            decide(suggestion, "auto_merged", "system")
            outcome.auto_merged += 1
        else:
            outcome.suggested += 1
    await session.flush()
    return outcome


# --- the review queue -------------------------------------------------------------------------


def _parse_cursor(cursor: str) -> tuple[float, str]:
    probability, sep, suggestion_id = cursor.partition("_")
    try:
        value = float(probability)
    except ValueError:
        value = -1.0
    if not sep or not 0 <= value <= 1 or len(suggestion_id) != 32:
        raise Invalid("cursor is not one this list gave", field="cursor")
    return value, suggestion_id


async def list_suggestions(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    status: str | None = "pending",
    customer_id: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> tuple[list[MatchSuggestion], str | None]:
    """A page of suggestions, most probable first, and the cursor of the next page."""
    if status is not None and status not in SUGGESTION_STATUSES:
        raise Invalid(f"status must be one of {', '.join(SUGGESTION_STATUSES)}", field="status")
    if not 1 <= limit <= MAX_PAGE:
        raise Invalid(f"limit must be between 1 and {MAX_PAGE}", field="limit")
    statement = tenant_scope(select(MatchSuggestion), MatchSuggestion, tenant)
    if status is not None:
        statement = statement.where(MatchSuggestion.status == status)
    if customer_id is not None:
        statement = statement.where(
            or_(
                MatchSuggestion.left_customer_id == customer_id,
                MatchSuggestion.right_customer_id == customer_id,
            )
        )
    if cursor:
        probability, after = _parse_cursor(cursor)
        statement = statement.where(
            or_(
                MatchSuggestion.probability < probability,
                and_(MatchSuggestion.probability == probability, MatchSuggestion.id < after),
            )
        )
    statement = statement.order_by(
        MatchSuggestion.probability.desc(), MatchSuggestion.id.desc()
    ).limit(limit + 1)
    rows = list((await session.execute(statement)).scalars())
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], f"{last.probability!r}_{last.id}"


async def count_pending(session: AsyncSession, tenant: TenantContext) -> int:
    statement = select(func.count()).where(
        MatchSuggestion.tenant_id == tenant.id, MatchSuggestion.status == "pending"
    )
    return int((await session.execute(statement)).scalar_one())


async def get_suggestion(
    session: AsyncSession, tenant: TenantContext, suggestion_id: str, *, for_update: bool = False
) -> MatchSuggestion:
    statement = tenant_scope(
        select(MatchSuggestion).where(MatchSuggestion.id == suggestion_id), MatchSuggestion, tenant
    )
    if for_update and session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update()
    row = (await session.execute(statement)).scalar_one_or_none()
    if row is None:
        raise NotFound(f"match suggestion {suggestion_id} not found")
    return row


async def accept(
    session: AsyncSession, tenant: TenantContext, suggestion_id: str, *, decided_by: str
) -> tuple[MatchSuggestion, bool]:
    """Merge the pair (reversibly: ``unmerge`` with the suggestion's ``merge_id``); True when
    this call changed something, False when it was accepted already."""
    suggestion = await get_suggestion(session, tenant, suggestion_id, for_update=True)
    if suggestion.status in ("accepted", "auto_merged"):
        return suggestion, False
    if suggestion.status == "rejected":
        raise Conflict(
            f"match suggestion {suggestion_id} was rejected; it cannot be accepted",
            code="suggestion_rejected",
        )
    merge = await merge_pair(
        session,
        tenant,
        suggestion.left_customer_id,
        suggestion.right_customer_id,
        reason=PROBABILISTIC,
    )
    suggestion.merge_id = merge.id if merge is not None else None
    decide(suggestion, "accepted", decided_by)
    await session.flush()
    return suggestion, True


async def reject(
    session: AsyncSession, tenant: TenantContext, suggestion_id: str, *, decided_by: str
) -> tuple[MatchSuggestion, bool]:
    """Remember that the two are different people; True when this call changed something."""
    suggestion = await get_suggestion(session, tenant, suggestion_id, for_update=True)
    if suggestion.status == "rejected":
        return suggestion, False
    if suggestion.status in ("accepted", "auto_merged"):
        raise Conflict(
            f"match suggestion {suggestion_id} was merged; undo the merge "
            f"(POST /v1/customers/{suggestion.left_customer_id}/unmerge with its merge_id), "
            "which rejects the pair",
            code="suggestion_merged",
        )
    decide(suggestion, "rejected", decided_by)
    await session.flush()
    return suggestion, True


# --- training ---------------------------------------------------------------------------------


async def train_model(
    session: AsyncSession, tenant: TenantContext, *, limit: int | None = TRAIN_LIMIT
) -> MatchSettings:
    """Learn the tenant's weights from its live profiles (the newest ``limit``) and keep them."""
    profiles: list[engine.MatchRecord] = []
    async for page in live_profile_pages(session, tenant, limit=limit):
        profiles.extend(p.record for p in page)
    excluded = excluded_in_memory(tenant, profiles, await blocked_values(session, tenant))
    records = [guarded(record, excluded) for record in profiles]
    if len(records) < 2:
        raise Invalid("training needs at least two profiles", code="too_few_profiles")
    # Training is seconds of CPU for a large tenant: in a thread, so the server keeps answering.
    model = await asyncio.to_thread(engine.train, records, seed=0)
    return await store_model(session, tenant, model, len(records))


async def store_model(
    session: AsyncSession, tenant: TenantContext, model: engine.MatchModel, profiles: int
) -> MatchSettings:
    row = await _settings_row(session, tenant)
    row.model = model.to_json()
    row.trained_at = row.updated_at = now()
    row.trained_profiles = profiles
    await session.flush()
    return row


# --- keeping step with merges (an outbox consumer) --------------------------------------------


async def consume(session: AsyncSession, events: Sequence[OutboxEvent]) -> None:
    """``customer.merged``: the merged profile's keys go and its pending suggestions are
    superseded. ``customer.unmerged``: a person undid the merge, so the pair is rejected."""
    for event in events:
        tenant = TenantContext(id=event.tenant_id)
        survivor_id = str(event.payload.get("survivor_id") or "")
        merged_id = str(event.payload.get("merged_id") or "")
        if not survivor_id or not merged_id:
            continue
        if event.topic == "customer.merged":
            await drop_keys(session, tenant, [merged_id])
            await session.execute(
                update(MatchSuggestion)
                .where(
                    MatchSuggestion.tenant_id == tenant.id,
                    MatchSuggestion.status == "pending",
                    or_(
                        MatchSuggestion.left_customer_id == merged_id,
                        MatchSuggestion.right_customer_id == merged_id,
                    ),
                )
                .values(status="superseded", updated_at=now())
            )
        elif event.topic == "customer.unmerged":
            await session.execute(
                update(MatchSuggestion)
                .where(
                    MatchSuggestion.tenant_id == tenant.id,
                    MatchSuggestion.merge_id == str(event.payload.get("merge_id") or ""),
                    MatchSuggestion.status.in_(("accepted", "auto_merged")),
                )
                .values(status="rejected", decided_by="unmerge", decided_at=now(), updated_at=now())
            )
            pair = canonical(survivor_id, merged_id)
            found = (await suggestions_between(session, tenant, [pair])).get(pair)
            if found is None:
                found = new_suggestion(tenant, pair, None, "rejected")
                session.add(found)
            if found.status != "rejected":
                decide(found, "rejected", "unmerge")
    await session.flush()


register_consumer("matching", topics=("customer.merged", "customer.unmerged"), consume=consume)
