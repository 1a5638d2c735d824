"""Whole data sets: importing customers from a CSV file, and de-duplicating a whole tenant.

**Import** (``hilos import customers FILE.csv``). Columns: ``external_id`` (required), ``name``
or ``given_name`` + ``surnames`` (one of them required), ``email``, ``phone``, ``birth_date``
(``YYYY-MM-DD``), ``street``, ``postcode``, ``city``; an unknown column is an error (a typo
such as ``postal_code`` would otherwise lose a column silently). Every row is checked before
anything is written, and the errors name their line; with errors nothing is imported, unless
``skip_invalid`` imports the good rows and reports the others. Each row goes through the
customers domain's ``identify`` with its external id (plus its email and phone), so a re-run
finds the same profiles and creates nothing twice, and a value another profile holds resolves
as it always does. Email and phone are kept as traits too: when the email cannot be linked (its
holder already has another external id: a shared family email) the matching still sees it. Rows
are written ``IMPORT_CHUNK`` per transaction; a file stopped half way is finished by running it
again.

**Dedupe** (``hilos dedupe``). Loads every live profile of the tenant, applies the over-merging
guard over the whole set, trains the tenant's model (unless told not to), blocks, scores, and
clusters at both thresholds with every rejected pair as a cannot-link (``engine.cluster``).
Clusters at the automatic threshold are merged (the oldest profile survives, reason
``probabilistic``); every other pair at or above the review threshold waits in the review
queue. The plan is stored (``match_runs``) before the first merge, and each chunk of merges
commits with the count of clusters done, so a run that stops (a crash, Ctrl-C, ``max_clusters``)
continues where it stopped the next time, and no merge is made twice. Before each cluster is
merged the rejections are read again: one a person made after the plan still holds.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.core.clock import now
from hilos.core.errors import Conflict, Invalid
from hilos.core.ids import new_id
from hilos.core.tenancy import TenantContext
from hilos.customers import service as customers
from hilos.customers.identities import normalize, normalize_email, normalize_phone
from hilos.customers.models import Customer
from hilos.matching import engine, service
from hilos.matching.models import MatchRun, MatchSuggestion
from hilos.matching.records import guarded, parse_date
from hilos.privacy import audit

COLUMNS = (
    "external_id",
    "name",
    "given_name",
    "surnames",
    "email",
    "phone",
    "birth_date",
    "street",
    "postcode",
    "city",
)
MAX_LENGTH = {"postcode": 16, "email": 320}
DEFAULT_MAX_LENGTH = 200
IMPORT_CHUNK = 200
MERGE_CHUNK = 25
SCORE_CHUNK = 20_000


class Progress(Protocol):
    """Where long work reports how far it got (the CLI draws Rich progress bars)."""

    def start(self, description: str, total: int | None) -> Callable[[int], None]:
        """Begin a task; the returned function advances it by so many steps."""


class _Silent:
    def start(self, description: str, total: int | None) -> Callable[[int], None]:
        return lambda _steps: None


# --- import -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImportRow:
    line: int
    external_id: str
    name: str | None
    emails: tuple[str, ...]
    phones: tuple[str, ...]
    traits: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    errors: tuple[str, ...]


@dataclass
class ImportReport:
    rows: int = 0
    created: int = 0
    existing: int = 0
    invalid: list[RowError] = field(default_factory=list)
    imported: bool = False

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["invalid"] = [{"line": e.line, "errors": list(e.errors)} for e in self.invalid]
        return data


def _check_row(raw: dict[str, str], line: int, region: str) -> ImportRow | RowError:
    values = {k: (raw.get(k) or "").strip() for k in COLUMNS}
    errors: list[str] = []
    for column, value in values.items():
        if len(value) > MAX_LENGTH.get(column, DEFAULT_MAX_LENGTH):
            errors.append(f"{column} is longer than {MAX_LENGTH.get(column, DEFAULT_MAX_LENGTH)}")
    external_id = values["external_id"]
    if not external_id:
        errors.append("external_id is empty")
    else:
        try:
            normalize("external", external_id, region=region, field="external_id")
        except Invalid as error:
            errors.append(f"external_id: {error.message}")
    if not (values["name"] or values["given_name"] or values["surnames"]):
        errors.append("a name is needed: name, or given_name and surnames")
    emails: tuple[str, ...] = ()
    if values["email"]:
        try:
            emails = (normalize_email(values["email"]),)
        except Invalid as error:
            errors.append(f"email: {error.message}")
    phones: tuple[str, ...] = ()
    if values["phone"]:
        try:
            phones = (normalize_phone(values["phone"], region=region),)
        except Invalid as error:
            errors.append(f"phone: {error.message}")
    birth_date: date | None = None
    if values["birth_date"]:
        birth_date = parse_date(values["birth_date"])
        if birth_date is None or len(values["birth_date"]) != 10:
            errors.append(f"birth_date {values['birth_date']!r} is not a date (YYYY-MM-DD)")
        elif not date(1900, 1, 1) <= birth_date <= now().date():
            errors.append(f"birth_date {values['birth_date']} is before 1900 or in the future")
    if errors:
        return RowError(line=line, errors=tuple(errors))
    name = values["name"] or " ".join(v for v in (values["given_name"], values["surnames"]) if v)
    traits: dict[str, Any] = {
        key: values[key]
        for key in ("given_name", "surnames", "street", "postcode", "city")
        if values[key]
    }
    if birth_date is not None:
        traits["birth_date"] = birth_date.isoformat()
    if emails:
        traits["email"] = emails[0]
    if phones:
        traits["phone"] = phones[0]
    return ImportRow(
        line=line,
        external_id=external_id,
        name=name,
        emails=emails,
        phones=phones,
        traits=traits,
    )


def read_csv(path: Path, tenant: TenantContext) -> tuple[list[ImportRow], list[RowError]]:
    """Every row of the file checked: the good rows, and the bad ones with their line."""
    rows: list[ImportRow] = []
    bad: list[RowError] = []
    seen: dict[str, int] = {}
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [column.strip() for column in reader.fieldnames or []]
        unknown = [column for column in header if column not in COLUMNS]
        missing = "external_id" not in header or not (
            "name" in header or "given_name" in header or "surnames" in header
        )
        if unknown or missing:
            problems = [f"unknown column {column!r}" for column in unknown]
            if missing:
                problems.append("the header needs external_id and name (or given_name, surnames)")
            problems.append(f"the columns are: {', '.join(COLUMNS)}")
            return [], [RowError(line=1, errors=tuple(problems))]
        reader.fieldnames = header
        for raw in reader:
            line = reader.line_num
            if None in raw:
                bad.append(RowError(line=line, errors=("more fields than columns",)))
                continue
            checked = _check_row(raw, line, tenant.default_region)
            if isinstance(checked, ImportRow):
                if checked.external_id in seen:
                    checked = RowError(
                        line=line,
                        errors=(
                            f"external_id {checked.external_id} is on line "
                            f"{seen[checked.external_id]} too",
                        ),
                    )
                else:
                    seen[checked.external_id] = line
            if isinstance(checked, RowError):
                bad.append(checked)
            else:
                rows.append(checked)
    return rows, bad


async def import_customers(
    sessionmaker: async_sessionmaker[AsyncSession],
    tenant: TenantContext,
    path: Path,
    *,
    skip_invalid: bool = False,
    progress: Progress | None = None,
) -> ImportReport:
    progress = progress or _Silent()
    rows, bad = read_csv(path, tenant)
    report = ImportReport(rows=len(rows) + len(bad), invalid=bad)
    if bad and not skip_invalid:
        return report
    advance = progress.start("Importing customers", len(rows))
    for start in range(0, len(rows), IMPORT_CHUNK):
        chunk = rows[start : start + IMPORT_CHUNK]
        async with sessionmaker() as session, session.begin():
            for row in chunk:
                result = await customers.identify(
                    session,
                    tenant,
                    identities=[
                        ("external", row.external_id),
                        *(("email", e) for e in row.emails),
                        *(("phone", p) for p in row.phones),
                    ],
                    name=row.name,
                    traits=row.traits,
                    reason="import",
                )
                if result.created:
                    report.created += 1
                else:
                    report.existing += 1
        advance(len(chunk))
    report.imported = True
    async with sessionmaker() as session, session.begin():
        await audit.record(
            session,
            audit.Actor.cli(tenant.id),
            "customers.imported",
            subject_type="tenant",
            subject_id=tenant.id,
            details={
                "rows": report.rows,
                "created": report.created,
                "existing": report.existing,
                "invalid": len(report.invalid),
            },
        )
    return report


# --- dedupe -----------------------------------------------------------------------------------


async def _roots(session: AsyncSession, tenant: TenantContext) -> dict[str, str]:
    """Each merged-away profile of the tenant -> the live customer it now belongs to."""
    rows = await session.execute(
        select(Customer.id, Customer.merged_into_id).where(
            Customer.tenant_id == tenant.id, Customer.merged_into_id.is_not(None)
        )
    )
    parent = {row.id: row.merged_into_id for row in rows.all()}

    def root(customer_id: str) -> str:
        for _ in range(customers.MAX_REDIRECTS):
            if customer_id not in parent:
                break
            customer_id = parent[customer_id]
        return customer_id

    return {customer_id: root(customer_id) for customer_id in parent}


async def _decided_pairs(
    session: AsyncSession, tenant: TenantContext
) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """The rejected pairs (mapped onto live customers) and every decided pair as stored."""
    roots = await _roots(session, tenant)
    rows = await session.execute(
        select(
            MatchSuggestion.left_customer_id,
            MatchSuggestion.right_customer_id,
            MatchSuggestion.status,
        ).where(
            MatchSuggestion.tenant_id == tenant.id,
            MatchSuggestion.status.in_(service.DECIDED),
        )
    )
    rejected: set[tuple[str, str]] = set()
    decided: set[tuple[str, str]] = set()
    for left, right, status in rows.all():
        decided.add((left, right))
        if status == "rejected":
            a, b = roots.get(left, left), roots.get(right, right)
            if a != b:
                rejected.add(service.canonical(a, b))
    return rejected, decided


async def _latest_unfinished(session: AsyncSession, tenant: TenantContext) -> MatchRun | None:
    statement = (
        select(MatchRun)
        .where(MatchRun.tenant_id == tenant.id, MatchRun.status != "done")
        .order_by(MatchRun.id.desc())
        .limit(1)
    )
    return (await session.execute(statement)).scalar_one_or_none()


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def _plan(
    sessionmaker: async_sessionmaker[AsyncSession],
    tenant: TenantContext,
    *,
    train: bool,
    progress: Progress,
) -> str:
    """Score the whole tenant, queue the suggestions and store the merge plan; the run's id."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    async with sessionmaker() as session, session.begin():
        settings = await service.settings_of(session, tenant)
        review, auto = settings.review_threshold, settings.auto_merge_threshold
        profiles: list[service.Profile] = []
        advance = progress.start("Reading profiles", None)
        async for page in service.live_profile_pages(session, tenant):
            profiles.extend(page)
            advance(len(page))
        blocked = await service.blocked_values(session, tenant)
        rejected, decided = await _decided_pairs(session, tenant)
    excluded = service.excluded_in_memory(tenant, (p.record for p in profiles), blocked)
    records = [guarded(p.record, excluded) for p in profiles]
    timings["read"] = time.perf_counter() - started

    started = time.perf_counter()
    trained = train and len(records) >= 2
    model = engine.train(records, seed=0) if trained else service.model_of(settings)
    timings["train"] = time.perf_counter() - started

    started = time.perf_counter()
    pairs = list(engine.candidate_pairs(records))
    advance = progress.start("Scoring candidate pairs", len(pairs))
    above: list[engine.ScoredPair] = []
    for chunk in _chunks(pairs, SCORE_CHUNK):
        above.extend(
            s for s in engine.score_pairs(model, records, chunk) if s.probability >= review
        )
        advance(len(chunk))
    above = [
        s
        for s in above
        if service.canonical(s.left_id, s.right_id) not in decided
        and service.canonical(s.left_id, s.right_id) not in rejected
    ]
    timings["score"] = time.perf_counter() - started

    started = time.perf_counter()
    found = engine.cluster(above, threshold=review, cannot_link=rejected)
    # Conflicting birth dates (a father and son?) are a person's decision: never merged here.
    mergeable = [s for s in above if not engine.has_conflict(s)]
    to_merge = engine.cluster(mergeable, threshold=auto, cannot_link=rejected) if auto else []
    created = {p.id: (p.created_at, p.id) for p in profiles}
    plan = [sorted(cluster, key=lambda i: created[i]) for cluster in to_merge]
    timings["cluster"] = time.perf_counter() - started

    async with sessionmaker() as session, session.begin():
        if trained:
            await service.store_model(session, tenant, model, len(records))
        existing = await service.suggestions_between(
            session, tenant, [service.canonical(s.left_id, s.right_id) for s in above]
        )
        for scored in above:
            pair = service.canonical(scored.left_id, scored.right_id)
            suggestion = existing.get(pair)
            if suggestion is None:
                suggestion = existing[pair] = service.new_suggestion(
                    tenant, pair, scored, "pending"
                )
                session.add(suggestion)
            elif suggestion.status not in service.DECIDED:
                service.rescore(suggestion, scored)
                suggestion.status = "pending"
        run = MatchRun(
            id=new_id(),
            tenant_id=tenant.id,
            status="merging",
            plan=plan,
            merged_clusters=0,
            report={
                "profiles": len(records),
                "candidate_pairs": len(pairs),
                "pairs_above_review": len(above),
                "clusters_found": len(found),
                "profiles_in_clusters": sum(len(c) for c in found),
                "clusters_to_merge": len(plan),
                "clusters_merged": 0,
                "clusters_skipped": 0,
                "profiles_merged": 0,
                "trained": trained,
                "review_threshold": review,
                "auto_merge_threshold": auto,
                "excluded_values": len(excluded),
                "seconds": {k: round(v, 3) for k, v in timings.items()},
            },
            started_at=now(),
        )
        session.add(run)
        await session.flush()
        return run.id


async def _merge_cluster(
    session: AsyncSession, tenant: TenantContext, cluster: Sequence[str]
) -> int | None:
    """Merge one planned cluster into its first profile; how many profiles it merged, or
    None when a rejection (made since the plan) forbids it."""
    survivor_id, others = cluster[0], cluster[1:]
    merged = 0
    merge_ids: dict[str, str] = {}
    try:
        async with session.begin_nested():
            for other in others:
                record = await service.merge_pair(
                    session, tenant, survivor_id, other, reason=service.PROBABILISTIC
                )
                if record is not None:
                    merged += 1
                    merge_ids[record.merged_id] = record.id
    except Conflict:
        return None
    members = list(cluster)
    rows = await session.execute(
        select(MatchSuggestion).where(
            MatchSuggestion.tenant_id == tenant.id,
            MatchSuggestion.left_customer_id.in_(members),
            MatchSuggestion.right_customer_id.in_(members),
            or_(MatchSuggestion.status == "pending", MatchSuggestion.status == "superseded"),
        )
    )
    for suggestion in rows.scalars():
        suggestion.merge_id = merge_ids.get(suggestion.right_customer_id) or merge_ids.get(
            suggestion.left_customer_id
        )
        service.decide(suggestion, "auto_merged", "cli")
    return merged


async def dedupe(
    sessionmaker: async_sessionmaker[AsyncSession],
    tenant: TenantContext,
    *,
    train: bool = True,
    max_clusters: int | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """De-duplicate the tenant (see the module docstring); the run's report."""
    progress = progress or _Silent()
    async with sessionmaker() as session:
        unfinished = await _latest_unfinished(session, tenant)
    resumed = unfinished is not None
    run_id = (
        unfinished.id
        if unfinished is not None
        else await _plan(sessionmaker, tenant, train=train, progress=progress)
    )
    async with sessionmaker() as session:
        run = await session.get(MatchRun, run_id)
        assert run is not None
        plan: list[list[str]] = [list(cluster) for cluster in run.plan]
        position = run.merged_clusters
    advance = progress.start("Merging clusters", len(plan))
    advance(position)
    stop = len(plan) if max_clusters is None else min(len(plan), position + max_clusters)
    started = time.perf_counter()
    while position < stop:
        chunk = plan[position : min(stop, position + MERGE_CHUNK)]
        async with sessionmaker() as session, session.begin():
            run = await session.get(MatchRun, run_id)
            assert run is not None
            report = dict(run.report)
            for cluster in chunk:
                merged = await _merge_cluster(session, tenant, cluster)
                if merged is None:
                    report["clusters_skipped"] += 1
                else:
                    report["clusters_merged"] += 1
                    report["profiles_merged"] += merged
            position += len(chunk)
            run.merged_clusters = position
            run.report = report
        advance(len(chunk))
    async with sessionmaker() as session, session.begin():
        run = await session.get(MatchRun, run_id)
        assert run is not None
        report = dict(run.report)
        seconds = dict(report.get("seconds", {}))
        seconds["merge"] = round(seconds.get("merge", 0.0) + time.perf_counter() - started, 3)
        report["seconds"] = seconds
        report["left_for_review"] = await service.count_pending(session, tenant)
        if position >= len(plan):
            run.status, run.finished_at = "done", now()
            await audit.record(
                session,
                audit.Actor.cli(tenant.id),
                "matching.deduplicated",
                subject_type="tenant",
                subject_id=tenant.id,
                details={
                    "run_id": run.id,
                    "clusters_found": report["clusters_found"],
                    "clusters_merged": report["clusters_merged"],
                    "profiles_merged": report["profiles_merged"],
                    "left_for_review": report["left_for_review"],
                },
            )
        run.report = report
        return {
            "run_id": run.id,
            "tenant_id": tenant.id,
            "status": run.status,
            "resumed": resumed,
            **report,
        }
