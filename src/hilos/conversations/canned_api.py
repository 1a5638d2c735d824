"""HTTP API of canned responses (thin: ``canned`` does the work).

Every key of the tenant reads them and renders them for a conversation; creating, changing and
deleting them needs a supervisor. The request and response models live here: they are this
router's alone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from hilos.conversations import canned
from hilos.conversations import service as conversations
from hilos.core.deps import CurrentPrincipal, DbSession, SupervisorPrincipal
from hilos.core.models import User

router = APIRouter(prefix="/v1", tags=["canned responses"])

Shortcut = Annotated[
    str,
    Field(
        min_length=1,
        max_length=32,
        pattern=r"^[a-z0-9][a-z0-9_-]*$",
        description="typed as /shortcut in the composer: lowercase letters, digits, - and _",
    ),
]
Language = Annotated[
    str, Field(min_length=2, max_length=16, pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")
]
Title = Annotated[str, Field(min_length=1, max_length=200)]
Text = Annotated[
    str,
    Field(
        min_length=1,
        max_length=5000,
        description="variables: " + ", ".join(f"{{{{{name}}}}}" for name in canned.VARIABLES),
    ),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class CannedResponseIn(Strict):
    shortcut: Shortcut
    title: Title
    text: Text
    language: Language | None = Field(default=None, description="defaults to the tenant's")


class CannedResponseUpdate(Strict):
    shortcut: Shortcut | None = None
    title: Title | None = None
    text: Text | None = None
    language: Language | None = None


class CannedResponseOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    shortcut: str
    title: str
    text: str
    language: str
    created_at: datetime
    updated_at: datetime


class RenderIn(Strict):
    conversation_id: str = Field(min_length=1, max_length=32)


class RenderOut(BaseModel):
    id: str
    text: str


@router.get("/canned-responses", response_model=list[CannedResponseOut])
async def list_responses(
    session: DbSession,
    principal: CurrentPrincipal,
    language: Annotated[str | None, Query(max_length=16)] = None,
) -> object:
    """The tenant's canned responses by shortcut (at most 500)."""
    return await canned.list_responses(session, principal.tenant, language=language)


@router.post("/canned-responses", response_model=CannedResponseOut, status_code=201)
async def create_response(
    body: CannedResponseIn, session: DbSession, principal: SupervisorPrincipal
) -> object:
    return await canned.create_response(session, principal.tenant, **body.model_dump())


@router.get("/canned-responses/{response_id}", response_model=CannedResponseOut)
async def get_response(response_id: str, session: DbSession, principal: CurrentPrincipal) -> object:
    return await canned.get_response(session, principal.tenant, response_id)


@router.patch("/canned-responses/{response_id}", response_model=CannedResponseOut)
async def update_response(
    response_id: str,
    body: CannedResponseUpdate,
    session: DbSession,
    principal: SupervisorPrincipal,
) -> object:
    return await canned.update_response(
        session,
        principal.tenant,
        response_id=response_id,
        changes=body.model_dump(exclude_unset=True),
    )


@router.delete("/canned-responses/{response_id}", status_code=204)
async def delete_response(
    response_id: str, session: DbSession, principal: SupervisorPrincipal
) -> Response:
    await canned.delete_response(session, principal.tenant, response_id)
    return Response(status_code=204)


@router.post("/canned-responses/{response_id}/render", response_model=RenderOut)
async def render_response(
    response_id: str, body: RenderIn, session: DbSession, principal: CurrentPrincipal
) -> RenderOut:
    """The response's text with its variables filled in for a conversation; ``agent.name`` is
    the key's user, empty for a key that is no one's."""
    response = await canned.get_response(session, principal.tenant, response_id)
    conversation = await conversations.get_conversation(
        session, principal.tenant, body.conversation_id
    )
    agent_name = None
    if principal.user_id is not None:
        user = await session.get(User, principal.user_id)
        agent_name = user.name if user is not None else None
    context = await canned.context_for(
        session, principal.tenant, conversation=conversation, agent_name=agent_name
    )
    return RenderOut(id=response.id, text=canned.render(response.text, context))
