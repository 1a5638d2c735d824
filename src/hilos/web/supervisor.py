"""The supervisor view of the console: ``/console/supervisor``, the live picture of the contact
center, and moving a conversation to another agent or queue.

Only supervisors and admins open these pages; an agent gets the 403 page. The figures are
``routing.supervisor``'s (its docstring says how each is counted); moving a conversation is
``routing.service.transfer``, as the API's transfer is, with the supervisor as its author.

The page follows the console's rules (``hilos.web.console``): a request is one transaction, the
move is a form carrying the session's CSRF token, bad input is a page with a message. It
updates live through the console's event stream (``hilos.web.live``): ``static/supervisor.js``
hears that conversations, presence or SLAs changed and fetches the page again, replacing its
figures; between two changes it counts the waiting and idle times up by itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from hilos.conversations import service as conversations
from hilos.conversations.models import ACTIVE_STATUSES
from hilos.core import service as core
from hilos.core.deps import DbSession
from hilos.core.errors import NotFound
from hilos.core.tenancy import TenantContext
from hilos.customers import service as customers
from hilos.routing import service as routing
from hilos.routing import supervisor
from hilos.web.console import Agent, ConsoleError, ConsoleRoute, FormAgent, _page
from hilos.web.i18n import N_
from hilos.web.service import SignedInAgent

SUPERVISOR_ROLES = ("supervisor", "admin")
# Conversations listed on the page: the longest waiting, and the latest active held by agents.
LINE_LIMIT = 50
IN_PROGRESS_LIMIT = 100
MAX_NOTE_LENGTH = 5000


def _may_supervise(agent: SignedInAgent) -> SignedInAgent:
    if agent.role not in SUPERVISOR_ROLES:
        raise ConsoleError(
            403, N_("The supervisor view is for supervisors and administrators."), back=None
        )
    return agent


async def _supervisor(agent: Agent) -> SignedInAgent:
    return _may_supervise(agent)


async def _supervisor_form(agent: FormAgent) -> SignedInAgent:
    return _may_supervise(agent)


Supervisor = Annotated[SignedInAgent, Depends(_supervisor, scope="function")]
# A supervisor's form post that carried the session's CSRF token.
FormSupervisor = Annotated[SignedInAgent, Depends(_supervisor_form, scope="function")]

router = APIRouter(
    include_in_schema=False, route_class=ConsoleRoute, default_response_class=HTMLResponse
)


@dataclass(frozen=True, slots=True)
class CustomerName:
    id: str
    name: str | None
    detail: str | None


async def _customer_names(
    session: AsyncSession, tenant: TenantContext, customer_ids: Iterable[str]
) -> dict[str, CustomerName]:
    # One lookup per customer: customers.service has no batch read yet; the page lists at most
    # LINE_LIMIT + IN_PROGRESS_LIMIT conversations.
    names = {}
    for customer_id in sorted(set(customer_ids)):
        customer = await customers.get_customer(session, tenant, customer_id)
        detail = None
        if not customer.name:
            identities = await customers.identities_of(session, tenant, customer_id)
            detail = identities[0].value if identities else None
        names[customer_id] = CustomerName(id=customer.id, name=customer.name, detail=detail)
    return names


async def _user_names(session: AsyncSession, tenant: TenantContext) -> dict[str, str]:
    return {user.id: user.name for user in await core.list_users(session, tenant=tenant)}


def _kinds_by_agent(view: supervisor.Overview) -> dict[str, list[str]]:
    """The channel kinds worth showing for each agent: those their queues serve, and any they
    hold conversations in."""
    served = {queue.id: queue.channel_kinds for queue in view.queues}
    return {
        agent.id: sorted(
            {kind for queue_id in agent.queue_ids for kind in served.get(queue_id, [])}
            | set(agent.load)
        )
        for agent in view.agents
    }


@router.get("/console/supervisor")
async def supervisor_page(
    request: Request,
    session: DbSession,
    agent: Supervisor,
    # The conversation just moved, to link to (an id: letters and digits).
    moved: Annotated[str | None, Query(pattern="^[0-9A-Za-z]{1,32}$")] = None,
) -> Response:
    view = await supervisor.overview(
        session, agent.tenant, line_limit=LINE_LIMIT, in_progress_limit=IN_PROGRESS_LIMIT
    )
    customer_ids = [c.customer_id for c in view.line] + [c.customer_id for c in view.in_progress]
    return _page(
        request,
        "supervisor.html",
        {
            "nav": "supervisor",
            "view": view,
            "queue_names": {queue.id: queue.name for queue in view.queues},
            "agent_kinds": _kinds_by_agent(view),
            "user_names": await _user_names(session, agent.tenant),
            "customers": await _customer_names(session, agent.tenant, customer_ids),
            "moved": moved,
        },
        agent=agent,
    )


@router.get("/console/supervisor/conversations/{conversation_id}")
async def reassign_form(
    request: Request, conversation_id: str, session: DbSession, agent: Supervisor
) -> Response:
    tenant = agent.tenant
    conversation = await conversations.get_conversation(session, tenant, conversation_id)
    view = await supervisor.overview(session, tenant, line_limit=0, in_progress_limit=0)
    agents, queues = supervisor.options_for_transfer(view, exclude_agent=conversation.assignee_id)
    return _page(
        request,
        "supervisor_move.html",
        {
            "nav": "supervisor",
            "conversation": conversation,
            "customer": (await _customer_names(session, tenant, [conversation.customer_id]))[
                conversation.customer_id
            ],
            "queue_id": await routing.queue_of(session, tenant, conversation.id),
            "queue_names": {queue.id: queue.name for queue in view.queues},
            "user_names": await _user_names(session, tenant),
            "agents": agents,
            "queues": queues,
            "movable": conversation.status in ACTIVE_STATUSES,
        },
        agent=agent,
    )


@router.post("/console/supervisor/conversations/{conversation_id}/move")
async def move(
    conversation_id: str,
    session: DbSession,
    agent: FormSupervisor,
    target: Annotated[str, Form(max_length=40)] = "",
    note: Annotated[str, Form()] = "",
) -> Response:
    """Hand the conversation to an agent (assigned at once) or put it in a queue's line."""
    back = f"/console/supervisor/conversations/{conversation_id}"
    tenant = agent.tenant
    conversation = await conversations.get_conversation(session, tenant, conversation_id)
    kind, _, target_id = target.partition(":")
    if kind not in ("agent", "queue") or not target_id:
        raise ConsoleError(422, N_("Choose an agent or a queue to move it to."), back=back)
    note = note.strip()
    if len(note) > MAX_NOTE_LENGTH:
        raise ConsoleError(422, N_("The note is too long: 5,000 characters at most."), back=back)
    if conversation.status not in ACTIVE_STATUSES:
        raise ConsoleError(
            409, N_("This conversation is closed: there is nothing to move."), back=back
        )
    try:
        if kind == "agent":
            await routing.get_agent(session, tenant, target_id)
        else:
            await routing.get_queue(session, tenant, target_id)
    except NotFound as error:
        raise ConsoleError(
            422, N_("That agent or queue does not exist any more. Choose another."), back=back
        ) from error
    await routing.transfer(
        session,
        tenant,
        conversation_id=conversation.id,
        agent_id=target_id if kind == "agent" else None,
        queue_id=target_id if kind == "queue" else None,
        note=note,
        by_user_id=agent.user_id,
        by_agent=False,
    )
    return RedirectResponse(f"/console/supervisor?moved={conversation.id}", status_code=303)
