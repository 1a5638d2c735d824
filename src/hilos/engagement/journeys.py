"""Journeys: a trigger, then steps (waits, conditions, actions) that each customer walks through
on their own, durably; and the exits that end a walk early.

Three moving parts, all on the database:

- **Entering** (``consume``, an outbox consumer): an event whose topic is an active journey's
  trigger starts a run for the event's customer, in the relay's transaction, once per event
  (unique ``(journey_id, trigger_event_id)``), under the journey's re-entry policy: ``never``
  (once per customer), ``after_exit`` (not while a run of theirs is still going) or ``always``.
  The same consumer ends runs whose journey exits on that topic for that customer (an abandoned
  cart's journey exits on ``order.placed``: the customer bought, in any channel, including a
  store's till) and wakes runs waiting for that event.
- **Walking** (``run_due``, a worker stage): active runs whose ``next_at`` has come are claimed
  in batches (``FOR UPDATE SKIP LOCKED`` and a short lease on PostgreSQL), and each walks its
  steps until it has to wait, ends, or is deferred (quiet hours). Every step writes a line to
  ``journey_step_log``. A run that fails is marked ``failed`` with the reason; the batch goes on.
  A send's idempotency key is the run, the step and the count of steps taken, so a batch that
  rolls back and runs again sends nothing twice.
- **Looking** (``runs_of_customer``, ``runs_of_journey``): where each customer is.

A journey waiting three days is a row with ``next_at`` three days ahead: a restart loses
nothing, and the definition is read when the step runs. Changing an active journey's steps
keeps runs where they are; a run whose step no longer exists ends (``step_removed``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from sqlalchemy import and_, func, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.core.clock import as_utc, now
from hilos.core.errors import Conflict, HilosError, Invalid, NotFound
from hilos.core.ids import new_id
from hilos.core.models import OutboxEvent
from hilos.core.outbox import emit, register_consumer
from hilos.core.tenancy import TenantContext, get_owned, load_tenant, tenant_scope
from hilos.customers import service as customers
from hilos.customers.models import Customer
from hilos.engagement.journey_definition import check_condition, check_definition
from hilos.engagement.journey_models import Journey, JourneyRun, JourneyStepLog

log = structlog.get_logger(__name__)

STATUSES = ("draft", "active", "paused", "archived")
REENTRY = ("never", "after_exit", "always")
BATCH = 500
LEASE = timedelta(seconds=60)
# Steps one run may take in one go before it yields to the others (definitions are acyclic,
# so this only bounds a very long straight line).
STEPS_PER_TURN = 25
# Events that start journeys carry the customer here.
_CUSTOMER_KEY = "customer_id"


# --- definitions -----------------------------------------------------------------------------


def _check_trigger(trigger: Any) -> dict[str, Any]:
    if not isinstance(trigger, dict) or not isinstance(trigger.get("event"), str):
        raise Invalid('trigger is {"event": "cart.abandoned"}', field="trigger.event")
    event = trigger["event"]
    if event.startswith("journey.") or "*" in event:
        raise Invalid(
            "a journey starts on one event topic of another domain", field="trigger.event"
        )
    if event in ("segment.entered", "segment.exited") and not isinstance(
        trigger.get("segment_id"), str
    ):
        raise Invalid("a segment trigger names its segment_id", field="trigger.segment_id")
    return trigger


def _check_exit(exit_on: Any) -> list[str]:
    if not isinstance(exit_on, list) or not all(isinstance(t, str) and t for t in exit_on):
        raise Invalid("exit_on is a list of event topics", field="exit_on")
    return list(exit_on)


async def create_journey(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    name: str,
    trigger: dict[str, Any],
    definition: dict[str, Any],
    exit_on: list[str],
    reentry: str = "after_exit",
) -> Journey:
    if reentry not in REENTRY:
        raise Invalid(f"reentry is one of {', '.join(REENTRY)}", field="reentry")
    await _check_references(session, tenant, check_definition(definition))
    moment = now()
    journey = Journey(
        id=new_id(),
        tenant_id=tenant.id,
        name=name,
        status="draft",
        trigger=_check_trigger(trigger),
        definition=definition,
        exit_on=_check_exit(exit_on),
        reentry=reentry,
        created_at=moment,
        updated_at=moment,
    )
    try:
        async with session.begin_nested():
            session.add(journey)
            await session.flush()
    except IntegrityError as error:
        raise Conflict(f"a journey called {name!r} exists", code="journey_exists") from error
    return journey


async def _check_references(
    session: AsyncSession, tenant: TenantContext, definition: dict[str, Any]
) -> None:
    """Templates and segments named by the steps must be the tenant's."""
    for index, step in enumerate(definition["steps"]):
        if step["type"] == "send":
            from hilos.engagement import templates

            try:
                await templates.get_template(session, tenant, step["template_id"])
            except NotFound as error:
                raise Invalid(
                    f"step {step['id']} sends template {step['template_id']}, which does not exist",
                    field=f"definition.steps.{index}.template_id",
                    code="unknown_template",
                ) from error
        if step["type"] == "webhook":
            from hilos.integrations import service as integrations

            try:
                await integrations.get_endpoint(session, tenant, step["endpoint_id"])
            except NotFound as error:
                raise Invalid(
                    f"step {step['id']} calls endpoint {step['endpoint_id']}, which does not exist",
                    field=f"definition.steps.{index}.endpoint_id",
                    code="unknown_endpoint",
                ) from error
        if step["type"] == "condition":
            for segment_id in _segments_in(step["if"]):
                await _check_segment(session, tenant, segment_id, f"definition.steps.{index}.if")


def _segments_in(condition: dict[str, Any]) -> list[str]:
    if "segment" in condition:
        return [condition["segment"]]
    parts = condition.get("all") or condition.get("any") or []
    if "not" in condition:
        parts = [condition["not"]]
    return [segment for part in parts for segment in _segments_in(part)]


async def _check_segment(
    session: AsyncSession, tenant: TenantContext, segment_id: str, field: str
) -> None:
    from hilos.engagement import segments

    try:
        await segments.get_segment(session, tenant, segment_id)
    except NotFound as error:
        raise Invalid(
            f"segment {segment_id} does not exist", field=field, code="unknown_segment"
        ) from error


async def get_journey(session: AsyncSession, tenant: TenantContext, journey_id: str) -> Journey:
    return await get_owned(session, Journey, journey_id, tenant, what="journey")


async def list_journeys(session: AsyncSession, tenant: TenantContext) -> list[Journey]:
    rows = await session.scalars(
        tenant_scope(select(Journey), Journey, tenant).order_by(Journey.id)
    )
    return list(rows.all())


async def update_journey(
    session: AsyncSession, tenant: TenantContext, journey_id: str, changes: dict[str, Any]
) -> Journey:
    journey = await get_journey(session, tenant, journey_id)
    if "definition" in changes:
        await _check_references(session, tenant, check_definition(changes["definition"]))
        journey.definition = changes["definition"]
    if "trigger" in changes:
        journey.trigger = _check_trigger(changes["trigger"])
    if "exit_on" in changes:
        journey.exit_on = _check_exit(changes["exit_on"])
    if "reentry" in changes:
        if changes["reentry"] not in REENTRY:
            raise Invalid(f"reentry is one of {', '.join(REENTRY)}", field="reentry")
        journey.reentry = changes["reentry"]
    if "name" in changes:
        journey.name = changes["name"]
    if "status" in changes:
        if changes["status"] not in STATUSES:
            raise Invalid(f"status is one of {', '.join(STATUSES)}", field="status")
        journey.status = changes["status"]
    journey.updated_at = now()
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as error:
        raise Conflict(
            f"a journey called {journey.name!r} exists", code="journey_exists"
        ) from error
    return journey


# --- entering, exiting, waking (the outbox consumer) ----------------------------------------


async def consume(session: AsyncSession, events: Sequence[OutboxEvent]) -> None:
    """Start, end and wake runs for the relay's events, in the relay's transaction.

    Every relayed batch passes here, so the work is a fixed number of queries per batch: the
    batch's tenants' journeys, then — only for events some journey exits on or waits for —
    the active runs of those events' customers.
    """
    by_tenant: dict[str, list[OutboxEvent]] = defaultdict(list)
    for event in events:
        if isinstance(event.payload.get(_CUSTOMER_KEY), str) and not event.topic.startswith(
            "journey."
        ):
            by_tenant[event.tenant_id].append(event)
    if not by_tenant:
        return
    journeys = (
        await session.scalars(select(Journey).where(Journey.tenant_id.in_(sorted(by_tenant))))
    ).all()
    if not journeys:
        return
    by_id = {journey.id: journey for journey in journeys}
    watched: dict[str, set[str]] = defaultdict(set)
    for journey in journeys:
        watched[journey.tenant_id].update(journey.exit_on or ())
        watched[journey.tenant_id].update(
            str(step["event"])
            for step in journey.definition.get("steps", [])
            if step.get("type") == "wait" and step.get("event")
        )
    runs_of = await _active_runs(
        session,
        [
            (event.tenant_id, event.payload[_CUSTOMER_KEY])
            for tenant_events in by_tenant.values()
            for event in tenant_events
            if event.topic in watched[event.tenant_id]
        ],
    )
    for tenant_id, tenant_events in by_tenant.items():
        for event in tenant_events:
            pair = (tenant_id, event.payload[_CUSTOMER_KEY])
            if runs_of.get(pair):
                await _exit_and_wake(session, event, runs_of[pair], by_id)
            for journey in journeys:
                if journey.tenant_id == tenant_id and _triggers(journey, event):
                    entered = await _enter(session, journey, event)
                    if entered is not None:
                        # A later event of this batch (the purchase) may end it at once.
                        runs_of.setdefault(pair, []).append(entered)


async def _active_runs(
    session: AsyncSession, pairs: list[tuple[str, str]]
) -> dict[tuple[str, str], list[JourneyRun]]:
    """The active runs of each (tenant, customer), in one query."""
    if not pairs:
        return {}
    found: dict[tuple[str, str], list[JourneyRun]] = defaultdict(list)
    rows = await session.scalars(
        select(JourneyRun).where(
            JourneyRun.tenant_id.in_({tenant_id for tenant_id, _ in pairs}),
            JourneyRun.customer_id.in_({customer_id for _, customer_id in pairs}),
            JourneyRun.status == "active",
        )
    )
    wanted = set(pairs)
    for run in rows.all():
        if (run.tenant_id, run.customer_id) in wanted:
            found[(run.tenant_id, run.customer_id)].append(run)
    return found


def _triggers(journey: Journey, event: OutboxEvent) -> bool:
    if journey.status != "active":
        return False
    trigger = journey.trigger
    if trigger.get("event") != event.topic:
        return False
    segment_id = trigger.get("segment_id")
    return segment_id is None or event.payload.get("segment_id") == segment_id


async def _enter(session: AsyncSession, journey: Journey, event: OutboxEvent) -> JourneyRun | None:
    """Start the customer's run of ``journey`` for ``event``, unless the re-entry policy or an
    earlier relay of the same event already did. It is entered when the event happened, so an
    exit event that happened after it ends it even if both are relayed together."""
    customer_id = event.payload[_CUSTOMER_KEY]
    if journey.reentry != "always":
        if session.get_bind().dialect.name == "postgresql":
            # Two workers relaying two of the customer's events at once would both find no
            # run and both enter: the second waits here for the first's commit, then sees it.
            await session.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                {"key": f"journey-entry:{journey.id}:{customer_id}"},
            )
        statuses = ("active",) if journey.reentry == "after_exit" else None
        condition = [JourneyRun.journey_id == journey.id, JourneyRun.customer_id == customer_id]
        if statuses is not None:
            condition.append(JourneyRun.status.in_(statuses))
        if (await session.execute(select(JourneyRun.id).where(*condition).limit(1))).first():
            return None
    moment = now()
    run = JourneyRun(
        id=new_id(),
        tenant_id=journey.tenant_id,
        journey_id=journey.id,
        customer_id=customer_id,
        trigger_event_id=event.id,
        status="active",
        step_id=journey.definition["start"],
        next_at=moment,
        context={"trigger": event.topic, **event.payload},
        steps_taken=0,
        entered_at=as_utc(event.created_at),
        updated_at=moment,
    )
    try:
        async with session.begin_nested():
            session.add(run)
            await session.flush()
    except IntegrityError:
        return None  # this event already started this journey (a relay that ran twice)
    await emit(
        session,
        tenant_id=journey.tenant_id,
        topic="journey.entered",
        payload={"journey_id": journey.id, "run_id": run.id, _CUSTOMER_KEY: customer_id},
    )
    return run


async def _exit_and_wake(
    session: AsyncSession,
    event: OutboxEvent,
    candidates: Sequence[JourneyRun],
    journeys: dict[str, Journey],
) -> None:
    """End the runs whose journey exits on ``event``; move on those that wait for it."""
    moment = now()
    for run in candidates:
        journey = journeys.get(run.journey_id)
        if journey is None or run.status != "active":
            continue
        if event.topic in journey.exit_on and as_utc(event.created_at) >= as_utc(run.entered_at):
            await _end(session, run, "exited", reason=event.topic, moment=moment)
            continue
        step = _step(journey, run.step_id)
        if (
            step is not None
            and step["type"] == "wait"
            and step.get("event") == event.topic
            and (run.context or {}).get("waiting_since") is not None
        ):
            run.step_id = step.get("on_event")
            run.next_at = moment
            run.updated_at = moment
            run.context = {**run.context, "waiting_since": None}
            if run.step_id is None:
                await _end(session, run, "done", reason=None, moment=moment)
    await session.flush()


async def _end(
    session: AsyncSession, run: JourneyRun, status: str, *, reason: str | None, moment: datetime
) -> None:
    run.status = status
    run.exit_reason = reason
    run.next_at = None
    run.ended_at = moment
    run.updated_at = moment
    await emit(
        session,
        tenant_id=run.tenant_id,
        topic=f"journey.{status}",
        payload={
            "journey_id": run.journey_id,
            "run_id": run.id,
            _CUSTOMER_KEY: run.customer_id,
            "reason": reason,
        },
    )


register_consumer("journeys", topics=("*",), consume=consume)


# --- walking (the worker stage) --------------------------------------------------------------


def _step(journey: Journey, step_id: str | None) -> dict[str, Any] | None:
    if step_id is None:
        return None
    for step in journey.definition.get("steps", []):
        if step.get("id") == step_id:
            return cast(dict[str, Any], step)
    return None


async def run_due(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    """Walk every run whose next step is due; return how many steps were taken.

    Runs are claimed in batches with a lease (their own short transaction), then walked
    together in one transaction that loads their journeys and customers once. If a step
    fails, that transaction rolls back and the batch is walked again run by run, each in a
    savepoint, so only the broken run is marked ``failed``.
    """
    taken = 0
    while True:
        lease = now() + LEASE
        async with sessionmaker() as session, session.begin():
            claimed = await _claim(session, lease)
        if not claimed:
            return taken
        try:
            async with sessionmaker() as session, session.begin():
                taken += await _walk_batch(session, claimed, lease, isolate=False)
        except Exception:
            log.warning("journeys.batch_retried_run_by_run", runs=len(claimed))
            async with sessionmaker() as session, session.begin():
                taken += await _walk_batch(session, claimed, lease, isolate=True)
        if len(claimed) < BATCH:
            return taken


def _why(error: Exception) -> str:
    if isinstance(error, HilosError):
        return f"{error.code}: {error.message}"[:200]
    return type(error).__name__


async def _claim(session: AsyncSession, lease: datetime) -> list[str]:
    """Ids of up to ``BATCH`` due runs, leased to this worker until ``lease``."""
    moment = now()
    due = (
        select(JourneyRun.id)
        .where(
            JourneyRun.status == "active",
            JourneyRun.next_at <= moment,
            or_(JourneyRun.claimed_until.is_(None), JourneyRun.claimed_until < moment),
        )
        .order_by(JourneyRun.next_at)
        .limit(BATCH)
    )
    if session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    ids = list((await session.scalars(due)).all())
    if ids:
        await session.execute(
            update(JourneyRun)
            .where(JourneyRun.id.in_(ids))
            .values(claimed_until=lease)
            .execution_options(synchronize_session=False)
        )
    return ids


async def _walk_batch(
    session: AsyncSession, run_ids: list[str], lease: datetime, *, isolate: bool
) -> int:
    runs = list(
        (
            await session.scalars(
                select(JourneyRun).where(
                    JourneyRun.id.in_(run_ids),
                    JourneyRun.status == "active",
                    JourneyRun.claimed_until == lease,
                )
            )
        ).all()
    )
    if not runs:
        return 0
    journeys_by_id = {
        j.id: j
        for j in (
            await session.scalars(
                select(Journey).where(Journey.id.in_({r.journey_id for r in runs}))
            )
        ).all()
    }
    # The customers of the batch, loaded once: conditions and trait steps read and change
    # these objects, and the batch's flush writes them.
    loaded = {
        c.id: c
        for c in (
            await session.scalars(
                select(Customer).where(Customer.id.in_({r.customer_id for r in runs}))
            )
        ).all()
    }
    # The tenants' real settings (time zone, language, name): sends and time windows use them.
    tenants = {
        tenant_id: await load_tenant(session, tenant_id)
        for tenant_id in sorted({r.tenant_id for r in runs})
    }
    taken = 0
    for run in runs:
        batch = _Batch(loaded, tenants[run.tenant_id])
        if not isolate:
            taken += await _walk(session, journeys_by_id[run.journey_id], run, batch)
            continue
        try:
            async with session.begin_nested():
                taken += await _walk(session, journeys_by_id[run.journey_id], run, batch)
                await session.flush()
        except Exception as error:  # one broken run must not stop the others
            log.exception("journeys.run_failed", run_id=run.id)
            await session.refresh(run)
            for customer in loaded.values():
                await session.refresh(customer)
            await _end(session, run, "failed", reason=_why(error), moment=now())
            run.claimed_until = None
    await session.flush()
    return taken


class _Batch:
    """What the runs of one batch share: the customers loaded for them, and their tenant."""

    def __init__(self, customers: dict[str, Customer], tenant: TenantContext) -> None:
        self.customers = customers
        self.tenant = tenant


async def _walk(
    session: AsyncSession, journey: Journey, run: JourneyRun, batch: _Batch | None = None
) -> int:
    """Take the run's due steps until it waits or ends; return the steps taken."""
    tenant = batch.tenant if batch is not None else await load_tenant(session, run.tenant_id)
    taken = 0
    moment = now()
    if journey.status != "active":
        # A paused journey keeps its runs where they are; an archived one ends them.
        if journey.status == "archived":
            await _end(session, run, "exited", reason="journey_archived", moment=moment)
        else:
            run.next_at = moment + timedelta(minutes=5)
        run.claimed_until = None
        return 0
    while taken < STEPS_PER_TURN:
        step = _step(journey, run.step_id)
        if step is None:
            await _end(
                session,
                run,
                "done" if run.step_id is None else "exited",
                reason=None if run.step_id is None else "step_removed",
                moment=moment,
            )
            break
        outcome, detail, goes_to, wait_until = await _take(
            session, tenant, journey, run, step, batch
        )
        taken += 1
        run.steps_taken += 1
        session.add(
            JourneyStepLog(
                id=new_id(),
                tenant_id=run.tenant_id,
                run_id=run.id,
                step_id=step["id"],
                step_type=step["type"],
                outcome=outcome,
                detail=detail,
                at=moment,
            )
        )
        if wait_until is not None:
            run.next_at = wait_until
            if goes_to is not None:
                run.step_id = goes_to
            break
        run.step_id = goes_to
        if goes_to is None:
            await _end(session, run, "done", reason=None, moment=moment)
            break
    run.claimed_until = None
    run.updated_at = moment
    return taken


Taken = tuple[str, dict[str, Any] | None, str | None, datetime | None]


async def _take(
    session: AsyncSession,
    tenant: TenantContext,
    journey: Journey,
    run: JourneyRun,
    step: dict[str, Any],
    batch: _Batch | None = None,
) -> Taken:
    """Do one step: (outcome, detail, the step it leads to, when to go on if it waits)."""
    kind = step["type"]
    moment = now()
    context = dict(run.context or {})
    if kind == "wait":
        return await _wait(session, tenant, run, step, context, moment)
    if kind == "condition":
        holds = await evaluate(session, tenant, run, step["if"], batch)
        return (
            f"branched:{'then' if holds else 'else'}",
            None,
            step.get("then" if holds else "else"),
            None,
        )
    if kind == "send":
        from hilos.engagement import sending

        result = await sending.send(
            session,
            tenant,
            customer_id=run.customer_id,
            template_id=step["template_id"],
            context={"data": context},
            channel_order=list(step.get("channel_order", [])),
            source={"journey_id": journey.id, "run_id": run.id, "step_id": step["id"]},
            idempotency_key=f"journey:{run.id}:{step['id']}:{run.steps_taken}",
        )
        detail = {
            "send_id": result.send_id,
            "channel_kind": result.channel_kind,
            "reason": result.reason,
        }
        if result.status == "deferred" and result.retry_at is not None:
            # Same step again once the quiet hours are over.
            return ("deferred", detail, step["id"], as_utc(result.retry_at))
        return (result.status, detail, step.get("next"), None)
    if kind == "set_trait":
        await customers.set_trait(
            session,
            tenant,
            customer_id=run.customer_id,
            key=step["key"],
            value=step["value"],
            customer=_loaded(batch, run),
            flush=False,
        )
        return ("set", {"key": step["key"]}, step.get("next"), None)
    if kind == "add_tag":
        customer = _loaded(batch, run) or await customers.get_customer(
            session, tenant, run.customer_id
        )
        tags = list((customer.traits or {}).get("tags") or [])
        if step["tag"] not in tags:
            tags.append(step["tag"])
            await customers.set_trait(
                session,
                tenant,
                customer_id=run.customer_id,
                key="tags",
                value=tags,
                customer=customer,
                flush=False,
            )
        return ("tagged", {"tag": step["tag"]}, step.get("next"), None)
    if kind == "open_conversation":
        from hilos.conversations.notify import open_for_agent

        conversation_id = await open_for_agent(
            session,
            tenant,
            customer_id=run.customer_id,
            note=step["note"],
            about={"journey_id": journey.id, "run_id": run.id},
        )
        return ("opened", {"conversation_id": conversation_id}, step.get("next"), None)
    if kind == "webhook":
        await emit(
            session,
            tenant_id=tenant.id,
            topic="journey.webhook",
            payload={
                "endpoint_id": step["endpoint_id"],
                "journey_id": journey.id,
                "run_id": run.id,
                "step_id": step["id"],
                _CUSTOMER_KEY: run.customer_id,
                "context": context,
            },
        )
        return ("called", {"endpoint_id": step["endpoint_id"]}, step.get("next"), None)
    raise Invalid(f"unknown step type {kind}", field="type")


async def _wait(
    session: AsyncSession,
    tenant: TenantContext,
    run: JourneyRun,
    step: dict[str, Any],
    context: dict[str, Any],
    moment: datetime,
) -> Taken:
    if "seconds" in step:
        if context.get("waiting_since") is None:
            # First visit: sleep; the next visit (once due) goes on.
            run.context = {**context, "waiting_since": moment.isoformat()}
            return (
                "waiting",
                {"seconds": step["seconds"]},
                None,
                moment + timedelta(seconds=step["seconds"]),
            )
        run.context = {**context, "waiting_since": None}
        return ("waited", None, step.get("next"), None)
    if "until" in step:
        zone = await _zone_of(session, tenant, run.customer_id)
        opens = next_window(moment, zone, step["until"]["start"], step["until"]["end"])
        if opens <= moment:
            return ("in_window", None, step.get("next"), None)
        return ("waiting", {"until": opens.isoformat()}, step.get("next"), opens)
    # An event wait: the consumer moves the run on when the event comes; else the timeout.
    if context.get("waiting_since") is None:
        run.context = {**context, "waiting_since": moment.isoformat()}
        timeout = moment + timedelta(seconds=step["timeout_seconds"])
        return ("waiting", {"event": step["event"]}, None, timeout)
    run.context = {**context, "waiting_since": None}
    return ("timed_out", {"event": step["event"]}, step.get("next"), None)


async def _zone_of(session: AsyncSession, tenant: TenantContext, customer_id: str) -> ZoneInfo:
    customer = await customers.get_customer(session, tenant, customer_id)
    for name in ((customer.traits or {}).get("timezone"), tenant.timezone, "Europe/Madrid"):
        if isinstance(name, str):
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def next_window(moment: datetime, zone: ZoneInfo, start: str, end: str) -> datetime:
    """``moment`` if it is inside the daily window [start, end) in ``zone``, else when the
    window next opens. A window may cross midnight (22:00-06:00)."""
    local = moment.astimezone(zone)
    clock_time = local.strftime("%H:%M")
    inside = start <= clock_time < end if start < end else clock_time >= start or clock_time < end
    if inside:
        return moment
    hour, minute = (int(part) for part in start.split(":"))
    opens = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if opens <= local:
        opens = (local + timedelta(days=1)).replace(
            hour=hour, minute=minute, second=0, microsecond=0
        )
    # Re-attach the zone so a DST change between now and then is applied to the wall time.
    return opens.replace(tzinfo=None).replace(tzinfo=zone).astimezone(moment.tzinfo)


def _loaded(batch: _Batch | None, run: JourneyRun) -> Customer | None:
    return None if batch is None else batch.customers.get(run.customer_id)


async def evaluate(
    session: AsyncSession,
    tenant: TenantContext,
    run: JourneyRun,
    condition: dict[str, Any],
    batch: _Batch | None = None,
) -> bool:
    """Whether ``condition`` holds for the run's customer now."""
    if "all" in condition:
        for part in condition["all"]:
            if not await evaluate(session, tenant, run, part, batch):
                return False
        return True
    if "any" in condition:
        for part in condition["any"]:
            if await evaluate(session, tenant, run, part, batch):
                return True
        return False
    if "not" in condition:
        return not await evaluate(session, tenant, run, condition["not"], batch)
    if "segment" in condition:
        from hilos.engagement import segments

        return bool(
            await segments.is_member(session, tenant, condition["segment"], run.customer_id)
        )
    if "trait" in condition:
        customer = _loaded(batch, run) or await customers.get_customer(
            session, tenant, run.customer_id
        )
        return trait_holds(customer.traits or {}, condition)
    if "cart_open" in condition:
        return (await _cart_open(session, tenant, run)) is bool(condition["cart_open"])
    if "ordered_since_entry" in condition:
        wanted = bool(condition["ordered_since_entry"])
        return (await _ordered_since(session, tenant, run)) is wanted
    check_condition(condition, "if")
    return False


def trait_holds(traits: dict[str, Any], condition: dict[str, Any]) -> bool:
    op = condition.get("op", "eq")
    present = condition["trait"] in traits
    value = traits.get(condition["trait"])
    wanted = condition.get("value")
    if op == "exists":
        return present == bool(wanted if "value" in condition else True)
    if op == "eq":
        return present and value == wanted
    if op == "neq":
        return value != wanted
    if op == "in":
        return present and isinstance(wanted, list) and value in wanted
    if not isinstance(value, int | float) or not isinstance(wanted, int | float):
        return False
    return {
        "gt": value > wanted,
        "gte": value >= wanted,
        "lt": value < wanted,
        "lte": value <= wanted,
    }[op]


async def _cart_open(session: AsyncSession, tenant: TenantContext, run: JourneyRun) -> bool:
    from hilos.commerce import carts

    cart_id = (run.context or {}).get("cart_id")
    if isinstance(cart_id, str):
        try:
            cart = await carts.get_cart(session, tenant, cart_id)
        except NotFound:
            return False
        return cart.status in ("active", "abandoned") and bool(cart.lines)
    cart_view = await carts.active_cart(session, tenant, run.customer_id)
    return cart_view is not None and bool(cart_view.lines)


async def _ordered_since(session: AsyncSession, tenant: TenantContext, run: JourneyRun) -> bool:
    from hilos.commerce.order_models import Order

    found = await session.execute(
        select(Order.id)
        .where(
            Order.tenant_id == tenant.id,
            Order.customer_id == run.customer_id,
            Order.created_at >= run.entered_at,
            Order.status != "cancelled",
        )
        .limit(1)
    )
    return found.first() is not None


# --- looking -------------------------------------------------------------------------------


async def runs_of_customer(
    session: AsyncSession, tenant: TenantContext, customer_id: str
) -> list[JourneyRun]:
    await customers.get_customer(session, tenant, customer_id)
    rows = await session.scalars(
        tenant_scope(select(JourneyRun), JourneyRun, tenant)
        .where(JourneyRun.customer_id == customer_id)
        .order_by(JourneyRun.entered_at.desc())
    )
    return list(rows.all())


async def places_of_customer(
    session: AsyncSession, tenant: TenantContext, customer_id: str, *, limit: int = 5
) -> list[tuple[JourneyRun, str]]:
    """The customer's latest runs with their journey's name (one query; the 360 view)."""
    rows = await session.execute(
        select(JourneyRun, Journey.name)
        .join(Journey, Journey.id == JourneyRun.journey_id)
        .where(JourneyRun.tenant_id == tenant.id, JourneyRun.customer_id == customer_id)
        .order_by(JourneyRun.entered_at.desc())
        .limit(limit)
    )
    return [(run, name) for run, name in rows.all()]


async def runs_of_journey(
    session: AsyncSession,
    tenant: TenantContext,
    journey_id: str,
    *,
    status: str | None = None,
    after: str | None = None,
    limit: int = 100,
) -> list[JourneyRun]:
    await get_journey(session, tenant, journey_id)
    statement = tenant_scope(select(JourneyRun), JourneyRun, tenant).where(
        JourneyRun.journey_id == journey_id
    )
    if status is not None:
        statement = statement.where(JourneyRun.status == status)
    if after is not None:
        statement = statement.where(JourneyRun.id > after)
    rows = await session.scalars(statement.order_by(JourneyRun.id).limit(min(limit, 500)))
    return list(rows.all())


async def steps_of_run(
    session: AsyncSession, tenant: TenantContext, run_id: str
) -> list[JourneyStepLog]:
    rows = await session.scalars(
        select(JourneyStepLog)
        .where(JourneyStepLog.tenant_id == tenant.id, JourneyStepLog.run_id == run_id)
        .order_by(JourneyStepLog.id)
    )
    return list(rows.all())


async def journey_counts(
    session: AsyncSession, tenant: TenantContext, journey_id: str
) -> dict[str, int]:
    """How many runs of the journey are in each status, and how many wait at each step."""
    rows = await session.execute(
        select(JourneyRun.status, JourneyRun.step_id, func.count())
        .where(and_(JourneyRun.tenant_id == tenant.id, JourneyRun.journey_id == journey_id))
        .group_by(JourneyRun.status, JourneyRun.step_id)
    )
    counts: dict[str, int] = defaultdict(int)
    for status, step_id, count in rows.all():
        counts[status] += count
        if status == "active" and step_id is not None:
            counts[f"at:{step_id}"] += count
    return dict(counts)


# --- merges: a merged customer's runs continue as the survivor's, and go back on unmerge ---


customers.register_merge_participant(customers.OwnedRowsParticipant("journeys", JourneyRun))
