"""HTTP API of the virtual assistant (thin: ``assistant`` and ``knowledge`` do the work).

The knowledge base: every key of the tenant reads and searches it; writing needs a
supervisor. The assistant's settings: every key reads them, an admin changes them. What the
assistant did in a conversation (its turns and hand-off) is readable by every key. The request
and response models live here: they are this router's alone.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from hilos.core.deps import AdminPrincipal, CurrentPrincipal, DbSession, SupervisorPrincipal
from hilos.engagement import assistant, knowledge
from hilos.engagement.assistant_models import AssistantHandoff, AssistantTurn
from hilos.web.i18n import DEFAULT_LANGUAGE, supported_language

router = APIRouter(prefix="/v1", tags=["assistant"])

Language = Literal["es", "en"]
Title = Annotated[str, Field(min_length=1, max_length=200)]
Body = Annotated[str, Field(min_length=1, max_length=20_000)]
Tag = Annotated[str, Field(min_length=1, max_length=50)]
Tags = Annotated[list[Tag], Field(max_length=30, description="more words it answers to")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ArticleIn(Strict):
    title: Title
    body: Body
    language: Language
    tags: Tags = Field(default_factory=list)


class ArticleUpdate(Strict):
    title: Title | None = None
    body: Body | None = None
    language: Language | None = None
    tags: Tags | None = None


class ArticleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    title: str
    body: str
    language: str
    tags: list[str]
    created_at: datetime
    updated_at: datetime


class SearchMatch(BaseModel):
    article_id: str
    title: str
    score: float
    confidence: float


class SearchOut(BaseModel):
    language: str
    confidence_threshold: float
    # Whether the assistant would answer with the first match.
    answers: bool
    matches: list[SearchMatch]


class ModelIn(Strict):
    base_url: HttpUrl = Field(description="an OpenAI-compatible API, e.g. https://host/v1")
    model: str = Field(min_length=1, max_length=200)


class ModelOut(BaseModel):
    base_url: str
    model: str
    key_configured: bool = Field(description=f"whether {assistant.LLM_KEY_ENV} is set")


class SettingsIn(Strict):
    enabled: bool
    channel_kinds: list[str] = Field(
        default_factory=lambda: list(assistant.CHANNEL_KINDS),
        max_length=len(assistant.CHANNEL_KINDS),
        description="among " + ", ".join(assistant.CHANNEL_KINDS),
    )
    confidence_threshold: float = Field(
        default=assistant.DEFAULT_CONFIDENCE_THRESHOLD,
        ge=0,
        le=1,
        description="the knowledge-base confidence below which the assistant hands off",
    )
    llm: ModelIn | None = None


class SettingsOut(BaseModel):
    enabled: bool
    channel_kinds: list[str]
    confidence_threshold: float
    llm: ModelOut | None


class TurnOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    message_id: str
    channel_kind: str
    status: str
    outcome: str | None
    intent: str | None
    language: str | None
    question: str | None
    answer: str | None
    confidence: float | None
    details: dict[str, Any]
    reply_message_id: str | None
    created_at: datetime
    processed_at: datetime | None


class HandoffOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    turn_id: str
    reason: str
    note_message_id: str | None
    queue_id: str | None
    created_at: datetime


class ConversationAssistantOut(BaseModel):
    conversation_id: str
    handed_off: bool
    handoff: HandoffOut | None
    turns: list[TurnOut]


def _settings_out(view: assistant.SettingsView) -> SettingsOut:
    model = None
    if view.llm_base_url and view.llm_model:
        model = ModelOut(
            base_url=view.llm_base_url,
            model=view.llm_model,
            key_configured=bool(os.environ.get(assistant.LLM_KEY_ENV)),
        )
    return SettingsOut(
        enabled=view.enabled,
        channel_kinds=list(view.channel_kinds),
        confidence_threshold=view.confidence_threshold,
        llm=model,
    )


# --- knowledge base -------------------------------------------------------------------------


@router.post("/knowledge/articles", response_model=ArticleOut, status_code=201)
async def create_article(
    body: ArticleIn, session: DbSession, principal: SupervisorPrincipal
) -> object:
    return await knowledge.create_article(session, principal.tenant, **body.model_dump())


@router.get("/knowledge/articles", response_model=list[ArticleOut])
async def list_articles(
    session: DbSession,
    principal: CurrentPrincipal,
    language: Language | None = None,
    tag: Annotated[str | None, Query(max_length=50)] = None,
    after: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> object:
    """Articles in creation order, ``limit`` after the id ``after``."""
    return await knowledge.list_articles(
        session, principal.tenant, language=language, tag=tag, after=after, limit=limit
    )


@router.get("/knowledge/articles/{article_id}", response_model=ArticleOut)
async def get_article(article_id: str, session: DbSession, principal: CurrentPrincipal) -> object:
    return await knowledge.get_article(session, principal.tenant, article_id)


@router.patch("/knowledge/articles/{article_id}", response_model=ArticleOut)
async def update_article(
    article_id: str, body: ArticleUpdate, session: DbSession, principal: SupervisorPrincipal
) -> object:
    return await knowledge.update_article(
        session,
        principal.tenant,
        article_id=article_id,
        changes=body.model_dump(exclude_unset=True),
    )


@router.delete("/knowledge/articles/{article_id}", status_code=204)
async def delete_article(
    article_id: str, session: DbSession, principal: SupervisorPrincipal
) -> Response:
    await knowledge.delete_article(session, principal.tenant, article_id)
    return Response(status_code=204)


@router.get("/knowledge/search", response_model=SearchOut)
async def search(
    session: DbSession,
    principal: CurrentPrincipal,
    q: Annotated[str, Query(min_length=1, max_length=2000)],
    language: Language | None = None,
) -> SearchOut:
    """The articles the assistant would consider for a question, with their confidence: how a
    supervisor checks an article or tunes the threshold."""
    tenant = principal.tenant
    chosen = (
        language
        or knowledge.detect_language(q)
        or supported_language(tenant.locale)
        or DEFAULT_LANGUAGE
    )
    settings = await assistant.get_settings(session, tenant)
    matches = await knowledge.search(session, tenant, text=q, language=chosen, limit=5)
    return SearchOut(
        language=chosen,
        confidence_threshold=settings.confidence_threshold,
        answers=bool(matches) and matches[0].confidence >= settings.confidence_threshold,
        matches=[
            SearchMatch(
                article_id=m.article_id, title=m.title, score=m.score, confidence=m.confidence
            )
            for m in matches
        ],
    )


# --- settings and what the assistant did ----------------------------------------------------


@router.get("/assistant/settings", response_model=SettingsOut)
async def get_settings(session: DbSession, principal: CurrentPrincipal) -> SettingsOut:
    return _settings_out(await assistant.get_settings(session, principal.tenant))


@router.put("/assistant/settings", response_model=SettingsOut)
async def put_settings(
    body: SettingsIn, session: DbSession, principal: AdminPrincipal
) -> SettingsOut:
    view = await assistant.set_settings(
        session,
        principal.tenant,
        enabled=body.enabled,
        channel_kinds=body.channel_kinds,
        confidence_threshold=body.confidence_threshold,
        llm_base_url=str(body.llm.base_url) if body.llm else None,
        llm_model=body.llm.model if body.llm else None,
    )
    return _settings_out(view)


@router.get("/assistant/conversations/{conversation_id}", response_model=ConversationAssistantOut)
async def conversation_turns(
    conversation_id: str, session: DbSession, principal: CurrentPrincipal
) -> ConversationAssistantOut:
    """What the assistant did with each customer message of the conversation, and whether it
    has handed the conversation to people."""
    turns: list[AssistantTurn] = await assistant.turns_of(
        session, principal.tenant, conversation_id=conversation_id
    )
    handoff: AssistantHandoff | None = await assistant.active_handoff(
        session, principal.tenant, conversation_id
    )
    return ConversationAssistantOut(
        conversation_id=conversation_id,
        handed_off=handoff is not None,
        handoff=HandoffOut.model_validate(handoff) if handoff else None,
        turns=[TurnOut.model_validate(turn) for turn in turns],
    )
