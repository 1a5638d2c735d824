"""HTTP API of tasks: the call-backs (and later other to-dos) waiting for someone."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from hilos.core.deps import CurrentPrincipal, DbSession
from hilos.tasks import service
from hilos.tasks.schemas import TaskOut, TaskPage, TaskStatus, TaskUpdate

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])


@router.get("", response_model=TaskPage)
async def list_tasks(
    session: DbSession,
    principal: CurrentPrincipal,
    status: TaskStatus | None = None,
    kind: Annotated[str | None, Query(max_length=32, description="e.g. call_back")] = None,
    customer_id: Annotated[str | None, Query(max_length=32)] = None,
    assignee_id: Annotated[str | None, Query(max_length=32)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> TaskPage:
    rows, next_cursor = await service.list_tasks(
        session,
        principal.tenant,
        status=status,
        kind=kind,
        customer_id=customer_id,
        assignee_id=assignee_id,
        cursor=cursor,
        limit=limit,
    )
    return TaskPage(items=[TaskOut.model_validate(t) for t in rows], next_cursor=next_cursor)


@router.get("/{task_id}", response_model=TaskOut)
async def get_task(task_id: str, session: DbSession, principal: CurrentPrincipal) -> object:
    return await service.get_task(session, principal.tenant, task_id)


@router.patch("/{task_id}", response_model=TaskOut)
async def update_task(
    task_id: str, body: TaskUpdate, session: DbSession, principal: CurrentPrincipal
) -> object:
    return await service.update_task(
        session,
        principal.tenant,
        task_id=task_id,
        changes=body.model_dump(exclude_unset=True),
    )
