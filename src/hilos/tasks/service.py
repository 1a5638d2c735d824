"""Tasks: follow-up work for people, opened by what happened (a missed call) and closed by them.

A task is unique on ``(tenant, kind, source_id)``: whatever opens one (a provider retrying a
missed-call callback, two workers seeing the same call) opens it once, through one
``INSERT ... ON CONFLICT DO NOTHING``. ``task.created`` and ``task.updated`` leave through the
outbox. Tasks follow their customer through merges (``TasksMergeParticipant``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hilos.conversations.service import decode_cursor, encode_cursor
from hilos.core.clock import now
from hilos.core.ids import new_id
from hilos.core.models import User
from hilos.core.outbox import emit
from hilos.core.tenancy import TenantContext, get_owned, tenant_scope
from hilos.customers import service as customers
from hilos.tasks.models import Task

CALL_BACK = "call_back"
CLOSED_STATUSES = ("done", "cancelled")
_TASKS = cast(Table, Task.__table__)


def _payload(task_id: str, values: dict[str, Any]) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "kind": values["kind"],
        "status": values["status"],
        "customer_id": values["customer_id"],
        "conversation_id": values["conversation_id"],
        "source_id": values["source_id"],
        "assignee_id": values.get("assignee_id"),
    }


async def open_task(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    kind: str,
    source_id: str,
    title: str,
    customer_id: str | None,
    conversation_id: str | None,
    data: dict[str, Any],
    due_at: datetime | None = None,
) -> str | None:
    """Open the task ``source_id`` causes, once; the new task's id, or ``None`` if it exists."""
    moment = now()
    values: dict[str, Any] = {
        "id": new_id(),
        "tenant_id": tenant.id,
        "kind": kind,
        "status": "open",
        "customer_id": customer_id,
        "conversation_id": conversation_id,
        "source_id": source_id,
        "assignee_id": None,
        "title": title[:300],
        "data": data,
        "due_at": due_at or moment,
        "created_at": moment,
        "completed_at": None,
    }
    connection = await session.connection()
    inserted = await connection.execute(
        customers.insert_for(connection.dialect.name, _TASKS)
        .on_conflict_do_nothing(index_elements=["tenant_id", "kind", "source_id"])
        .returning(_TASKS.c.id),
        values,
    )
    if inserted.first() is None:
        return None
    await emit(
        session,
        connection=connection,
        tenant_id=tenant.id,
        topic="task.created",
        payload=_payload(values["id"], values),
    )
    return str(values["id"])


async def get_task(session: AsyncSession, tenant: TenantContext, task_id: str) -> Task:
    return await get_owned(session, Task, task_id, tenant, what="task")


async def list_tasks(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    status: str | None = None,
    kind: str | None = None,
    customer_id: str | None = None,
    assignee_id: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> tuple[Sequence[Task], str | None]:
    """Tasks, the most recently due first, one page at a time."""
    statement = tenant_scope(select(Task), Task, tenant)
    if status is not None:
        statement = statement.where(Task.status == status)
    if kind is not None:
        statement = statement.where(Task.kind == kind)
    if customer_id is not None:
        statement = statement.where(Task.customer_id == customer_id)
    if assignee_id is not None:
        statement = statement.where(Task.assignee_id == assignee_id)
    if cursor is not None:
        moment, row_id = decode_cursor(cursor)
        statement = statement.where(
            or_(Task.due_at < moment, and_(Task.due_at == moment, Task.id < row_id))
        )
    statement = statement.order_by(Task.due_at.desc(), Task.id.desc()).limit(limit + 1)
    rows = list((await session.execute(statement)).scalars().all())
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].due_at, rows[-1].id)
    return rows, next_cursor


async def update_task(
    session: AsyncSession, tenant: TenantContext, *, task_id: str, changes: dict[str, Any]
) -> Task:
    """Apply ``changes`` (``status``, ``assignee_id``); an id of another tenant is a 404."""
    task = await get_task(session, tenant, task_id)
    before = (task.status, task.assignee_id)
    if "assignee_id" in changes:
        assignee_id = changes["assignee_id"]
        if assignee_id is not None:
            await get_owned(session, User, assignee_id, tenant, what="user")
        task.assignee_id = assignee_id
    status = changes.get("status")
    if status is not None and status != task.status:
        task.status = status
        task.completed_at = now() if status in CLOSED_STATUSES else None
    await session.flush()
    if (task.status, task.assignee_id) != before:
        await emit(
            session,
            tenant_id=tenant.id,
            topic="task.updated",
            payload={
                **_payload(
                    task.id,
                    {
                        "kind": task.kind,
                        "status": task.status,
                        "customer_id": task.customer_id,
                        "conversation_id": task.conversation_id,
                        "source_id": task.source_id,
                        "assignee_id": task.assignee_id,
                    },
                ),
                "previous_status": before[0],
            },
        )
    return task


class TasksMergeParticipant:
    """Moves the merged customer's tasks to the survivor, and back on unmerge."""

    name = "tasks"

    async def absorb(
        self, session: AsyncSession, tenant: TenantContext, *, survivor_id: str, merged_id: str
    ) -> dict[str, Any]:
        moved = await customers.move_customer_rows(
            session, Task, from_id=merged_id, to_id=survivor_id, where=Task.tenant_id == tenant.id
        )
        return {"moved": moved}

    async def restore(
        self,
        session: AsyncSession,
        tenant: TenantContext,
        *,
        survivor_id: str,
        merged_id: str,
        record: dict[str, Any],
    ) -> None:
        if record.get("moved"):
            await session.execute(
                update(Task)
                .where(Task.id.in_(record["moved"]), Task.customer_id == survivor_id)
                .values(customer_id=merged_id),
                execution_options={"synchronize_session": False},
            )


customers.register_merge_participant(TasksMergeParticipant())
