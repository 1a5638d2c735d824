"""The virtual assistant: answers customers' messages on the messaging channels, in Spanish and
English, and hands a conversation to people when it should not answer it.

What it owns: the assistant's settings per tenant, its turns (one per inbound message it
considered, with what it did and why), its hand-offs, and the rules below. It answers:

- **order status** ("¿dónde está mi pedido 1234?", "where is my order AB12CD34"): the order is
  looked for by its number (``orders.order_number``) among the orders of the customer who
  wrote, and nowhere else, so another customer's number gets exactly the answer an unknown
  number gets. A pickup says where, and from when.
- **store stock and opening hours** ("¿tenéis la talla M en la tienda de Sol?"): the store by
  name or code, the product by name (rapidfuzz, word by word, so typos and plurals pass) or
  SKU, here or in the customer's earlier messages of the conversation, the size by attribute
  value; availability is ``stock.availability`` at that store, and today's hours are the
  store's ``opening_hours`` in the tenant's time zone.
- **frequent questions** from the knowledge base (``knowledge.search``), when the best
  article's confidence reaches the tenant's threshold.
- greetings and thanks, briefly.

It hands off, in this order of precedence: when the customer asks for a person, when the
message sounds upset (``analytics.sentiment.score`` at or below routing's ``UPSET_AT``), and
when it is not confident (no intent, and no article above the threshold). A hand-off tells the
customer, leaves a private note with a summary for the agent (the question, what the assistant
understood and answered before, the order, store and product it found, the sentiment), asks
routing for a human (``routing.request_routing``), and silences the assistant in that
conversation until it is resolved. It never answers a conversation assigned to an agent, or
one where an agent wrote the latest reply.

Durability, and never answering twice: an outbox consumer on ``message.received`` (in the
relay's transaction, like routing's) inserts a ``pending`` turn per inbound message of an
enabled tenant and channel kind, unique on the message id. The worker's ``answer_due`` takes
each pending turn in a transaction of its own (``FOR UPDATE SKIP LOCKED`` on PostgreSQL),
queues the reply through ``conversations.reply`` (automated: it stops no SLA clock) and marks
the turn ``done`` in that same transaction. A crash before the commit leaves the turn pending
for the next run; a commit leaves it done. A turn that fails is retried ``MAX_ATTEMPTS`` times,
then handed off. The consumer reads the message's text straight from ``messages`` (read only),
as ``analytics.sentiment`` does: conversations offers no lookup of one message by id.

The optional model: an OpenAI-compatible ``/chat/completions`` endpoint (``llm_base_url`` and
``llm_model`` in the settings, the key in ``HILOS_ASSISTANT_LLM_API_KEY``) may rewrite a
knowledge-base answer from the best articles, or decline it (then the assistant hands off).
It is called outside any database transaction; any failure of it leaves the article's own
text as the answer. Everything works without it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

import httpx
import structlog
from babel import Locale
from babel.dates import format_date
from babel.lists import format_list
from rapidfuzz import fuzz, process
from sqlalchemy import Table, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.analytics import sentiment, surveys
from hilos.commerce import catalog, orders, stock
from hilos.commerce.models import Location, Product, Variant
from hilos.commerce.order_models import Order
from hilos.conversations import service as conversations
from hilos.conversations.models import Conversation, Message
from hilos.core.clock import now
from hilos.core.errors import HilosError, Invalid
from hilos.core.ids import new_id
from hilos.core.models import OutboxEvent
from hilos.core.outbox import emit, register_consumer
from hilos.core.tenancy import TenantContext, load_tenant, tenant_scope
from hilos.customers import service as customers
from hilos.customers.service import insert_for
from hilos.engagement import knowledge
from hilos.engagement.assistant_models import AssistantHandoff, AssistantSettings, AssistantTurn
from hilos.routing import service as routing
from hilos.web.i18n import (
    DEFAULT_LANGUAGE,
    N_,
    VOCABULARY,
    supported_language,
    translations,
)

log = structlog.get_logger(__name__)

CHANNEL_KINDS = ("web_chat", "whatsapp", "messenger", "instagram", "telegram")
DEFAULT_CONFIDENCE_THRESHOLD = 0.5
MAX_ATTEMPTS = 3
RETRY_SECONDS = 30
BATCH = 100
LLM_KEY_ENV = "HILOS_ASSISTANT_LLM_API_KEY"
LLM_TIMEOUT_SECONDS = 15.0
# The model declines with this word when the articles do not answer the question.
LLM_DECLINES = "HANDOFF"
MAX_ANSWER_CHARS = 1500
# Earlier turns of a conversation read for context (a product named before) and the summary.
CONTEXT_TURNS = 5
MAX_PRODUCTS = 2000
MAX_VARIANTS_LISTED = 12
# Negative enough that routing ranks the customer as upset: a person should answer.
UPSET_AT = routing.UPSET_AT

_TURNS = cast(Table, AssistantTurn.__table__)


# --- settings --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SettingsView:
    enabled: bool = False
    channel_kinds: tuple[str, ...] = CHANNEL_KINDS
    confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD
    llm_base_url: str | None = None
    llm_model: str | None = None


def _view(row: AssistantSettings | None) -> SettingsView:
    if row is None:
        return SettingsView()
    return SettingsView(
        enabled=row.enabled,
        channel_kinds=tuple(row.channel_kinds or ()),
        confidence_threshold=row.confidence_threshold,
        llm_base_url=row.llm_base_url,
        llm_model=row.llm_model,
    )


async def get_settings(session: AsyncSession, tenant: TenantContext) -> SettingsView:
    """The tenant's settings; the assistant is off until someone turns it on."""
    return _view(await session.get(AssistantSettings, tenant.id))


async def set_settings(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    enabled: bool,
    channel_kinds: Sequence[str],
    confidence_threshold: float,
    llm_base_url: str | None = None,
    llm_model: str | None = None,
) -> SettingsView:
    unknown = [kind for kind in channel_kinds if kind not in CHANNEL_KINDS]
    if unknown:
        raise Invalid(
            f"the assistant does not answer on {unknown[0]}; it answers on "
            f"{', '.join(CHANNEL_KINDS)}",
            field="channel_kinds",
        )
    if not 0.0 <= confidence_threshold <= 1.0:
        raise Invalid("confidence_threshold must be between 0 and 1", field="confidence_threshold")
    if (llm_base_url is None) != (llm_model is None):
        raise Invalid(
            "give both llm.base_url and llm.model, or neither",
            field="llm.model" if llm_model is None else "llm.base_url",
        )
    row = await session.get(AssistantSettings, tenant.id)
    if row is None:
        row = AssistantSettings(tenant_id=tenant.id)
        session.add(row)
    row.enabled = enabled
    row.channel_kinds = list(dict.fromkeys(channel_kinds))
    row.confidence_threshold = confidence_threshold
    row.llm_base_url = llm_base_url
    row.llm_model = llm_model
    row.updated_at = now()
    await session.flush()
    return _view(row)


# --- the relay's consumer ---------------------------------------------------------------------


async def consume(session: AsyncSession, events: Sequence[OutboxEvent]) -> None:
    """Note a pending turn for each customer message the assistant should consider, and end
    the hand-offs of resolved conversations; in the relay's transaction."""
    received = [
        event
        for event in events
        if event.topic == "message.received"
        and event.payload.get("kind", "message") == "message"
        and event.payload.get("channel_kind") in CHANNEL_KINDS
        and all(
            isinstance(event.payload.get(key), str)
            for key in ("message_id", "conversation_id", "customer_id", "channel_id")
        )
    ]
    resolved = sorted(
        {
            str(event.payload["conversation_id"])
            for event in events
            if event.topic == "conversation.resolved"
            and isinstance(event.payload.get("conversation_id"), str)
        }
    )
    if received:
        await _note_turns(session, received)
    if resolved:
        await session.execute(
            update(AssistantHandoff)
            .where(
                AssistantHandoff.conversation_id.in_(resolved), AssistantHandoff.ended_at.is_(None)
            )
            .values(ended_at=now())
        )


async def _note_turns(session: AsyncSession, events: Sequence[OutboxEvent]) -> None:
    settings = {
        row.tenant_id: row
        for row in (
            await session.execute(
                select(AssistantSettings).where(
                    AssistantSettings.tenant_id.in_(sorted({e.tenant_id for e in events})),
                    AssistantSettings.enabled.is_(True),
                )
            )
        ).scalars()
    }
    moment = now()
    values = []
    for event in events:
        row = settings.get(event.tenant_id)
        if row is None or event.payload["channel_kind"] not in (row.channel_kinds or ()):
            continue
        values.append(
            {
                "id": new_id(),
                "tenant_id": event.tenant_id,
                "message_id": event.payload["message_id"],
                "conversation_id": event.payload["conversation_id"],
                "customer_id": event.payload["customer_id"],
                "channel_id": event.payload["channel_id"],
                "channel_kind": event.payload["channel_kind"],
                "status": "pending",
                "attempts": 0,
                "due_at": moment,
                "details": {},
                "created_at": moment,
            }
        )
    if values:
        dialect = session.get_bind().dialect.name
        await session.execute(
            insert_for(dialect, _TURNS).on_conflict_do_nothing(index_elements=["message_id"]),
            values,
        )


register_consumer(
    "assistant", topics=("message.received", "conversation.resolved"), consume=consume
)


async def hold_arrivals(session: AsyncSession, events: Sequence[OutboxEvent]) -> set[str]:
    """Bot first: the new and reopened conversations the assistant answers before any queue
    (its channels, enabled, not handed off, nobody assigned). Routing leaves them alone until
    the assistant hands one off — or, when a turn finds it must stay quiet, routes it then."""
    candidates = [
        e
        for e in events
        if e.payload.get("kind", "message") == "message"
        and e.payload.get("channel_kind") in CHANNEL_KINDS
        and isinstance(e.payload.get("conversation_id"), str)
    ]
    if not candidates:
        return set()
    enabled = {
        row.tenant_id: set(row.channel_kinds or ())
        for row in (
            await session.execute(
                select(AssistantSettings).where(
                    AssistantSettings.tenant_id.in_(sorted({e.tenant_id for e in candidates})),
                    AssistantSettings.enabled.is_(True),
                )
            )
        ).scalars()
    }
    wanted = {
        str(e.payload["conversation_id"])
        for e in candidates
        if e.payload["channel_kind"] in enabled.get(e.tenant_id, set())
    }
    if not wanted:
        return set()
    handed_off = set(
        (
            await session.scalars(
                select(AssistantHandoff.conversation_id).where(
                    AssistantHandoff.conversation_id.in_(sorted(wanted)),
                    AssistantHandoff.ended_at.is_(None),
                )
            )
        ).all()
    )
    assigned = set(
        (
            await session.scalars(
                select(Conversation.id).where(
                    Conversation.id.in_(sorted(wanted)), Conversation.assignee_id.is_not(None)
                )
            )
        ).all()
    )
    return wanted - handed_off - assigned


routing.register_arrival_hold("assistant", hold_arrivals)


# --- the worker's part -----------------------------------------------------------------------


async def answer_due(
    sessionmaker: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient | None = None,
    *,
    wakeup: Callable[[], None] | None = None,
) -> int:
    """Take every pending turn that is due, each in a transaction of its own; return how many
    were done. ``http`` reaches the optional model; ``wakeup`` is called when replies were
    queued, so the worker sends them without waiting for its next tick."""
    moment = now()
    async with sessionmaker() as session:
        due = list(
            (
                await session.scalars(
                    select(AssistantTurn.id)
                    .where(AssistantTurn.status == "pending", AssistantTurn.due_at <= moment)
                    .order_by(AssistantTurn.due_at, AssistantTurn.id)
                    .limit(BATCH)
                )
            ).all()
        )
    done = 0
    for turn_id in due:
        if await _take(sessionmaker, turn_id, http):
            done += 1
    if done and wakeup is not None:
        wakeup()
    return done


async def _claim(session: AsyncSession, turn_id: str) -> AssistantTurn | None:
    statement = select(AssistantTurn).where(
        AssistantTurn.id == turn_id, AssistantTurn.status == "pending"
    )
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update(skip_locked=True)
    return (await session.scalars(statement)).one_or_none()


async def _take(
    sessionmaker: async_sessionmaker[AsyncSession], turn_id: str, http: httpx.AsyncClient | None
) -> bool:
    try:
        async with sessionmaker() as session, session.begin():
            turn = await _claim(session, turn_id)
            if turn is None:
                return False
            tenant = await load_tenant(session, turn.tenant_id)
            plan = await plan_turn(session, tenant, turn)
            if plan.ask_model is None or http is None:
                await carry_out(session, tenant, turn, plan)
                return True
        # The model is asked outside any transaction: an HTTP call may take seconds.
        written = await ask_model(http, plan.ask_model)
        async with sessionmaker() as session, session.begin():
            turn = await _claim(session, turn_id)
            if turn is None:
                return False
            tenant = await load_tenant(session, turn.tenant_id)
            plan = with_model_answer(await plan_turn(session, tenant, turn), written)
            await carry_out(session, tenant, turn, plan)
            return True
    except Exception:
        log.exception("assistant.turn_failed", turn_id=turn_id)
        await _failed(sessionmaker, turn_id)
        return False


async def _failed(sessionmaker: async_sessionmaker[AsyncSession], turn_id: str) -> None:
    """Retry later; after ``MAX_ATTEMPTS`` give up and hand the conversation to people."""
    try:
        async with sessionmaker() as session, session.begin():
            turn = await _claim(session, turn_id)
            if turn is None:
                return
            turn.attempts += 1
            if turn.attempts < MAX_ATTEMPTS:
                turn.due_at = now() + timedelta(seconds=RETRY_SECONDS * turn.attempts)
                return
            outcome = "failed"
            try:
                async with session.begin_nested():
                    tenant = await load_tenant(session, turn.tenant_id)
                    language = supported_language(tenant.locale) or DEFAULT_LANGUAGE
                    plan = Plan("handed_off", None, language, handoff="assistant_error")
                    await carry_out(session, tenant, turn, plan)
                    outcome = "handed_off"
            except Exception:
                log.exception("assistant.handoff_failed", turn_id=turn_id)
            turn.status, turn.outcome, turn.processed_at = "failed", outcome, now()
    except Exception:
        log.exception("assistant.retry_failed", turn_id=turn_id)


# --- deciding ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """What the optional model is asked: the question and the best articles."""

    base_url: str
    model: str
    language: str
    question: str
    articles: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Plan:
    """What the assistant will do with a turn."""

    # answered, handed_off, skipped
    outcome: str
    intent: str | None
    language: str
    answer: str | None = None
    confidence: float | None = None
    handoff: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    ask_model: ModelRequest | None = None


def with_model_answer(plan: Plan, written: str | None) -> Plan:
    """The plan with the model's answer: its text, or a hand-off when it declined."""
    if plan.ask_model is None or written is None:
        return replace(plan, ask_model=None)
    if written.strip().strip(".").upper() == LLM_DECLINES:
        return replace(
            plan,
            outcome="handed_off",
            answer=None,
            handoff="low_confidence",
            ask_model=None,
            details={**plan.details, "model": "declined"},
        )
    return replace(
        plan,
        answer=written.strip()[:MAX_ANSWER_CHARS],
        ask_model=None,
        details={**plan.details, "model": plan.ask_model.model},
    )


async def _message_text(session: AsyncSession, turn: AssistantTurn) -> str | None:
    row = (
        await session.execute(
            select(Message.text, Message.kind).where(
                Message.id == turn.message_id, Message.tenant_id == turn.tenant_id
            )
        )
    ).first()
    if row is None or row.kind != "message":
        return None
    return str(row.text or "").strip() or None


# Why a turn may be skipped while nobody is looking after the conversation yet.
_PEOPLE_TAKE_OVER = frozenset(
    {"assistant_disabled", "channel_disabled", "agent_replied", "no_text"}
)


async def _quiet_because(
    session: AsyncSession, tenant: TenantContext, turn: AssistantTurn, settings: SettingsView
) -> str | None:
    """Why the assistant must not answer this turn, if it must not."""
    if not settings.enabled:
        return "assistant_disabled"
    if turn.channel_kind not in settings.channel_kinds:
        return "channel_disabled"
    if await surveys.took_message(session, tenant, turn.message_id):
        # The customer answered a survey ("4"): nothing to answer, nobody to call.
        return "survey_answer"
    conversation = await conversations.get_conversation(session, tenant, turn.conversation_id)
    if conversation.status == "merged":
        return "conversation_merged"
    if conversation.assignee_id is not None:
        return "assigned_to_agent"
    if await active_handoff(session, tenant, conversation.id) is not None:
        return "handed_off"
    # The latest reply in the conversation that was not a system notice (an order's status):
    # the assistant's own lets it go on; one a person (or an integration) wrote means people
    # are talking with the customer.
    recent = await conversations.recent_messages_of_customer(
        session, tenant, conversation.customer_id, limit=20
    )
    for message, _kind in recent:
        if message.conversation_id != conversation.id or message.direction != "outbound":
            continue
        automated = (message.data or {}).get("automated")
        if not automated:
            return "agent_replied"
        if isinstance(automated, dict) and automated.get("by") == "assistant":
            break
    return None


def _language_of(text: str, customer_language: str | None, tenant: TenantContext) -> str:
    return (
        knowledge.detect_language(text)
        or supported_language(customer_language)
        or supported_language(tenant.locale)
        or DEFAULT_LANGUAGE
    )


async def plan_turn(session: AsyncSession, tenant: TenantContext, turn: AssistantTurn) -> Plan:
    """Decide what to do with ``turn``: nothing (and why), an answer, or a hand-off."""
    language = supported_language(tenant.locale) or DEFAULT_LANGUAGE
    text = await _message_text(session, turn)
    if text is None:
        return Plan("skipped", None, language, details={"reason": "no_text"})
    settings = await get_settings(session, tenant)
    reason = await _quiet_because(session, tenant, turn, settings)
    if reason is not None:
        return Plan("skipped", None, language, details={"reason": reason})
    conversation = await conversations.get_conversation(session, tenant, turn.conversation_id)
    customer = await customers.live_customer(session, tenant, conversation.customer_id)
    language = _language_of(text, customer.language, tenant)
    mood = sentiment.score(text)
    base = {"sentiment": mood}
    found = knowledge.words(text)
    if _asks_for_person(found):
        return Plan("handed_off", "handoff_request", language, handoff="requested", details=base)
    if mood <= UPSET_AT:
        return Plan("handed_off", None, language, handoff="negative_sentiment", details=base)
    gettext = translations(language).gettext
    if _only(found, _GREETINGS, _GREETING_CORE):
        return Plan("answered", "greeting", language, answer=gettext(GREETING), details=base)
    if _only(found, _THANKS, _THANKS_CORE):
        return Plan(
            "answered", "thanks", language, answer=gettext("You're welcome! Anything else?")
        )
    context = _Context(session, tenant, turn, conversation.customer_id, language, text, found)
    if _is_order_question(text, found):
        answer, details = await context.order_status()
        return Plan("answered", "order_status", language, answer=answer, details=base | details)
    store_answer = await context.store_question()
    if store_answer is not None:
        intent, answer, details = store_answer
        return Plan("answered", intent, language, answer=answer, details=base | details)
    return await _faq(session, tenant, text, language, settings, base)


async def _faq(
    session: AsyncSession,
    tenant: TenantContext,
    text: str,
    language: str,
    settings: SettingsView,
    details: dict[str, Any],
) -> Plan:
    matches = await knowledge.search(session, tenant, text=text, language=language)
    if not matches:
        return Plan(
            "handed_off", None, language, confidence=0.0, handoff="low_confidence", details=details
        )
    best = matches[0]
    details = details | {"article_id": best.article_id, "article": best.title}
    if best.confidence < settings.confidence_threshold:
        return Plan(
            "handed_off",
            "faq",
            language,
            confidence=best.confidence,
            handoff="low_confidence",
            details=details,
        )
    ask = None
    if settings.llm_base_url and settings.llm_model:
        ask = ModelRequest(
            base_url=settings.llm_base_url,
            model=settings.llm_model,
            language=language,
            question=text,
            articles=tuple((m.title, m.body) for m in matches),
        )
    return Plan(
        "answered",
        "faq",
        language,
        answer=best.body[:MAX_ANSWER_CHARS],
        confidence=best.confidence,
        details=details,
        ask_model=ask,
    )


# --- understanding a message --------------------------------------------------------------------

GREETING = N_(
    "Hello! I am the virtual assistant. I can tell you where your order is, whether a store "
    "has a product and when it opens, and answer frequent questions. Write “talk to a person” "
    "whenever you want a person to answer."
)


def _vocabulary(text: str) -> frozenset[str]:
    """A set of folded words written as one string."""
    return frozenset(text.split())


_PERSON_WORDS = _vocabulary(
    """persona agente humano humana operador operadora asesor asesora alguien responsable
    human person agent representative operator someone somebody"""
)
_PERSON_VERBS = _vocabulary(
    """hablar habla hablo pasame pasar pasa paseis contactar llamar quiero quisiera prefiero
    atienda atender talk speak connect transfer want need chat put"""
)
_GREETING_CORE = _vocabulary("hola buenas buenos hi hello hey saludos")
_GREETINGS = _GREETING_CORE | _vocabulary("dias tardes noches good morning afternoon there")
_THANKS_CORE = _vocabulary("gracias thanks thank")
_THANKS = _THANKS_CORE | _vocabulary(
    "muchas mil vale ok okay perfecto genial you very much great many cheers"
)
_ORDER_WORDS = _vocabulary(
    """pedido pedidos compra paquete envio orden
    order orders package parcel shipment purchase"""
)
_STATUS_WORDS = _vocabulary(
    """donde estado llega llegara llegado cuando seguimiento situacion
    where status track tracking arrive arrived arriving when"""
)
_STORE_WORDS = _vocabulary("tienda tiendas local store stores shop shops")
_STOCK_WORDS = _vocabulary(
    """teneis tienen tienes hay queda quedan disponible disponibles stock talla tallas numero
    existencias have has available size sizes left carry"""
)
_HOURS_WORDS = _vocabulary(
    """horario horarios abre abris abren abierto abierta cierra cerrais cierran
    hours open opens opening close closes closing"""
)
_SIZE_WORDS = _vocabulary("talla numero num tamano color size colour")
_ORDER_NUMBER = re.compile(r"\b(?=[A-Za-z0-9]*\d)[A-Za-z0-9]{4,12}\b")
_AFTER_ORDER_WORD = re.compile(
    r"\b(?:pedido|order|orden|compra)\s*(?:n[º°o.]*\s*|#\s*|number\s+|n[uú]mero\s+)?"
    r"([A-Za-z0-9]{4,12})\b",
    re.IGNORECASE,
)
_HEX_NUMBER = re.compile(r"[0-9A-Fa-f]{8}")
_GENERIC_NAME_WORDS = _vocabulary("tienda store shop local")


def _asks_for_person(found: Sequence[str]) -> bool:
    """Whether the customer asks for a person: "hablar con una persona", or just "agente"."""
    present = set(found)
    if not present & _PERSON_WORDS:
        return False
    return bool(present & _PERSON_VERBS) or len(found) <= 4


def _only(found: Sequence[str], allowed: frozenset[str], core: frozenset[str]) -> bool:
    return bool(found) and set(found) <= allowed and bool(set(found) & core)


def _is_order_question(text: str, found: Sequence[str]) -> bool:
    present = set(found)
    if not present & _ORDER_WORDS:
        return False
    return bool(present & _STATUS_WORDS) or _order_number_in(text) is not None


def _order_number_in(text: str) -> str | None:
    """The order number in the message: the word after "pedido"/"order" when it looks like
    one (it has a digit, or is eight hex digits as ``order_number`` makes), else the first
    word of 4 to 12 letters and digits with a digit in it."""
    for match in _AFTER_ORDER_WORD.finditer(text):
        candidate = match.group(1)
        if any(ch.isdigit() for ch in candidate) or _HEX_NUMBER.fullmatch(candidate):
            return candidate.upper()
    anywhere = _ORDER_NUMBER.search(text)
    return anywhere.group(0).upper() if anywhere else None


def _name_words(name: str) -> list[str]:
    stop = knowledge.stop_words("es") | knowledge.stop_words("en") | _GENERIC_NAME_WORDS
    return [w for w in knowledge.words(name) if w not in stop and len(w) >= 2]


def _name_score(name_words: Sequence[str], found: Sequence[str]) -> tuple[float, int]:
    """The share of a name's words the message has (short words exactly, longer ones within a
    typo or a plural), and how many."""
    if not name_words:
        return 0.0, 0
    exact = set(found)
    longer = [w for w in found if len(w) > 4]
    hits = 0
    for word in name_words:
        if len(word) <= 4:
            hits += word in exact
        elif process.extractOne(word, longer, scorer=fuzz.ratio, score_cutoff=85) is not None:
            hits += 1
    return hits / len(name_words), hits


def _best(scored: Sequence[tuple[tuple[float, int], Any]]) -> list[Any]:
    """The candidates with the best score (several when it is a tie), if it is good enough."""
    good = [(score, item) for score, item in scored if score[1] >= 1 and score[0] >= 0.5]
    if not good:
        return []
    top = max(score for score, _item in good)
    return [item for score, item in good if score == top]


def _size_in(text: str) -> str | None:
    """The value after "talla", "size", "número"... as written: ``M``, ``42``."""
    found = knowledge.words(text)
    for position, word in enumerate(found[:-1]):
        if word in _SIZE_WORDS:
            return found[position + 1]
    return None


@dataclass
class _Context:
    """One message being understood: who wrote, in which language, and its words."""

    session: AsyncSession
    tenant: TenantContext
    turn: AssistantTurn
    customer_id: str
    language: str
    text: str
    found: list[str]

    @property
    def gettext(self) -> Callable[[str], str]:
        return translations(self.language).gettext

    # --- orders ------------------------------------------------------------------------------

    async def order_status(self) -> tuple[str, dict[str, Any]]:
        gettext = self.gettext
        number = _order_number_in(self.text)
        order = await self._own_order(number)
        if order is None:
            if number is not None:
                text = gettext(
                    "I cannot find an order %(number)s among your orders. Please check the "
                    "number in your order confirmation."
                ) % {"number": number}
                return text, {"order_number": number, "order_found": False}
            return (
                gettext(
                    "I cannot find any order of yours. If you ordered with other contact "
                    "details, tell me and a person will help you."
                ),
                {"order_found": False},
            )
        lines = await orders.lines_of(self.session, self.tenant, order.id)
        number = orders.order_number(order.id)
        details = {"order_number": number, "order_found": True, "order_status": order.status}
        return await self._order_text(order, number, lines), details

    async def _own_order(self, number: str | None) -> Order | None:
        """The customer's order with ``number`` (their latest without one); only theirs."""
        after = None
        for _page in range(10):
            page = await orders.list_orders(
                self.session, self.tenant, customer_id=self.customer_id, after=after, limit=200
            )
            if number is None:
                return page[0] if page else None
            for order in page:
                if orders.order_number(order.id) == number:
                    return order
            if len(page) < 200:
                return None
            after = page[-1].id
        return None

    async def _order_text(self, order: Order, number: str, lines: Sequence[Any]) -> str:
        gettext = self.gettext
        pickup_codes = sorted({line.pickup_location for line in lines if line.pickup_location})
        store = ", ".join([await self._location_name(code) for code in pickup_codes])
        values = {"number": number, "store": store}
        texts = {
            "placed": gettext("We have received your order %(number)s and will prepare it soon."),
            "allocated": gettext("Your order %(number)s is being prepared."),
            "picked": gettext("Your order %(number)s is being prepared."),
            "ready_for_pickup": gettext("Your order %(number)s is ready for pickup at %(store)s."),
            "shipped": gettext("Your order %(number)s is on its way."),
            "collected": gettext("Your order %(number)s has been collected."),
            "delivered": gettext("Your order %(number)s has been delivered."),
            "cancelled": gettext("Your order %(number)s has been cancelled."),
        }
        text = texts.get(order.status, texts["placed"]) % values
        if pickup_codes and order.status in ("placed", "allocated", "picked"):
            ready = [line.ready_by for line in lines if line.ready_by is not None]
            if ready:
                day = format_date(
                    max(ready).astimezone(ZoneInfo(self.tenant.timezone)),
                    format="long",
                    locale=self.language,
                )
                text += " " + gettext("It will be ready for pickup at %(store)s from %(day)s.") % {
                    **values,
                    "day": day,
                }
            else:
                text += (
                    " "
                    + gettext(
                        "You will collect it at %(store)s; we will tell you when it is ready."
                    )
                    % values
                )
        return text

    async def _location_name(self, code: str) -> str:
        try:
            return (await catalog.location_by_code(self.session, self.tenant, code)).name
        except HilosError:
            return code

    # --- stores ------------------------------------------------------------------------------

    async def store_question(self) -> tuple[str, str, dict[str, Any]] | None:
        """(intent, answer, details) for a question about a store's stock or hours.

        The store is the one the message names; a follow-up that names a size but no store
        ("¿y en talla M?") means the store of the conversation's latest store question.
        """
        present = set(self.found)
        asks_stock = bool(present & _STOCK_WORDS)
        asks_hours = bool(present & _HOURS_WORDS)
        if not asks_stock and not asks_hours:
            return None
        stores = list(
            await catalog.list_locations(self.session, self.tenant, kind="store", limit=500)
        )
        named = _best([(self._store_score(store), store) for store in stores])
        if not named and not present & _STORE_WORDS:
            earlier = await self._earlier_store(stores) if _size_in(self.text) else None
            if earlier is None:
                return None
            named = [earlier]
        gettext = self.gettext
        intent = "store_stock" if asks_stock else "store_hours"
        if not stores:
            return intent, gettext("We have no physical stores."), {}
        if not named and len(stores) == 1:
            named = stores
        if len(named) != 1:
            listing = format_list(
                [s.name for s in (named or stores)][:10], style="or", locale=self.language
            )
            text = gettext("Which store do you mean? Our stores: %(stores)s.")
            return intent, text % {"stores": listing}, {"store_found": False}
        store: Location = named[0]
        details: dict[str, Any] = {"store": store.code}
        hours = self._hours_today(store)
        if not asks_stock:
            if hours is None:
                hours = gettext("%(store)s does not publish its opening hours.") % {
                    "store": store.name
                }
            return intent, hours, details
        product = await self._product()
        if product is None:
            text = gettext(
                "Which product are you asking about? Tell me its name or reference and I will "
                "check %(store)s."
            ) % {"store": store.name}
            return intent, text, details | {"product_found": False}
        answer, found = await self._stock_answer(store, *product)
        return intent, " ".join(part for part in (answer, hours) if part), details | found

    async def _earlier_store(self, stores: Sequence[Location]) -> Location | None:
        rows = await self.session.scalars(
            select(AssistantTurn.details)
            .where(
                AssistantTurn.tenant_id == self.tenant.id,
                AssistantTurn.conversation_id == self.turn.conversation_id,
                AssistantTurn.id < self.turn.id,
                AssistantTurn.intent.in_(("store_stock", "store_hours")),
            )
            .order_by(AssistantTurn.id.desc())
            .limit(1)
        )
        earlier = rows.first()
        code = (earlier or {}).get("store")
        return next((store for store in stores if store.code == code), None)

    def _store_score(self, store: Location) -> tuple[float, int]:
        return max(
            _name_score(_name_words(store.name), self.found),
            _name_score(_name_words(store.code), self.found),
        )

    def _hours_today(self, store: Location) -> str | None:
        if not store.opening_hours:
            return None
        local = now().astimezone(ZoneInfo(self.tenant.timezone))
        day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[local.weekday()]
        ranges = store.opening_hours.get(day) or []
        gettext = self.gettext
        if not ranges:
            return gettext("Today %(store)s is closed.") % {"store": store.name}
        spans = format_list([f"{opens}–{closes}" for opens, closes in ranges], locale=self.language)
        return gettext("Today %(store)s is open %(hours)s.") % {"store": store.name, "hours": spans}

    async def _product(self) -> tuple[Product, list[Variant], Variant | None] | None:
        """The product asked about, its variants, and the variant a SKU named: in this message,
        else in the customer's latest earlier messages of the conversation."""
        catalog_rows: list[tuple[Product, list[Variant]]] = []
        after = None
        while len(catalog_rows) < MAX_PRODUCTS:
            page = await catalog.list_products(self.session, self.tenant, after=after, limit=500)
            catalog_rows.extend(page)
            if len(page) < 500:
                break
            after = page[-1][0].id
        if not catalog_rows:
            return None
        for text in [self.text, *await self._earlier_questions()]:
            found = knowledge.words(text)
            skus = {w.upper() for w in re.findall(r"[A-Za-z0-9][A-Za-z0-9._-]*", text)}
            for product, variants in catalog_rows:
                for variant in variants:
                    if variant.sku.upper() in skus:
                        return product, variants, variant
            named = _best(
                [(_name_score(_name_words(p.name), found), (p, vs)) for p, vs in catalog_rows]
            )
            if len(named) == 1:
                product, variants = named[0]
                return product, variants, None
        return None

    async def _earlier_questions(self) -> list[str]:
        rows = await self.session.scalars(
            select(AssistantTurn.question)
            .where(
                AssistantTurn.tenant_id == self.tenant.id,
                AssistantTurn.conversation_id == self.turn.conversation_id,
                AssistantTurn.id < self.turn.id,
                AssistantTurn.question.is_not(None),
            )
            .order_by(AssistantTurn.id.desc())
            .limit(CONTEXT_TURNS)
        )
        return [str(question) for question in rows.all()]

    async def _stock_answer(
        self, store: Location, product: Product, variants: list[Variant], chosen: Variant | None
    ) -> tuple[str, dict[str, Any]]:
        gettext = self.gettext
        ngettext = translations(self.language).ngettext
        size = _size_in(self.text)
        details: dict[str, Any] = {"product": product.name}
        if chosen is None and len(variants) == 1:
            chosen = variants[0]
        if chosen is None and size is not None:
            fitting = [v for v in variants if _has_value(v, size)]
            if not fitting:
                values = format_list(
                    [_label(v) for v in variants][:MAX_VARIANTS_LISTED], locale=self.language
                )
                return gettext(
                    "%(product)s does not come in %(size)s. It comes in: %(values)s."
                ) % {"product": product.name, "size": size.upper(), "values": values}, details
            chosen = fitting[0]
        if chosen is None:
            counts = [
                f"{_label(v)}: {await self._available(v, store)}"
                for v in variants[:MAX_VARIANTS_LISTED]
            ]
            return gettext("At %(store)s we have %(product)s in: %(counts)s.") % {
                "store": store.name,
                "product": product.name,
                "counts": "; ".join(counts),
            }, details
        label = f"{product.name} ({_label(chosen)})" if _label(chosen) else product.name
        count = await self._available(chosen, store)
        details |= {"sku": chosen.sku, "available": count}
        if count > 0:
            text = ngettext(
                "Yes, %(store)s has %(count)d unit of %(product)s.",
                "Yes, %(store)s has %(count)d units of %(product)s.",
                count,
            ) % {"store": store.name, "count": count, "product": label}
            return text, details
        text = gettext("Right now %(store)s has no %(product)s left.") % {
            "store": store.name,
            "product": label,
        }
        elsewhere = await self._stores_with(chosen, store)
        if elsewhere:
            text += " " + gettext("You can find it at %(stores)s.") % {
                "stores": format_list(elsewhere, locale=self.language)
            }
        return text, details

    async def _available(self, variant: Variant, store: Location) -> int:
        answer = await stock.availability(
            self.session, self.tenant, sku=variant.sku, channel=store.code
        )
        return int(sum(entry["available"] for entry in answer["locations"]))

    async def _stores_with(self, variant: Variant, besides: Location) -> list[str]:
        answer = await stock.availability(self.session, self.tenant, sku=variant.sku, channel="web")
        codes = [
            entry["location"]
            for entry in answer["locations"]
            if entry["kind"] == "store"
            and entry["available"] > 0
            and entry["location"] != besides.code
        ]
        return [await self._location_name(code) for code in codes[:5]]


def _label(variant: Variant) -> str:
    return " ".join(str(value) for value in (variant.attributes or {}).values())


def _has_value(variant: Variant, size: str) -> bool:
    wanted = knowledge.fold(size)
    return any(
        knowledge.fold(str(value)) == wanted for value in (variant.attributes or {}).values()
    )


# --- the optional model ----------------------------------------------------------------------


def _model_prompt(request: ModelRequest) -> str:
    language = "Spanish" if request.language == "es" else "English"
    articles = "\n\n".join(f"# {title}\n{body}" for title, body in request.articles)
    return (
        "You are the customer service assistant of a shop. Answer the customer's question in "
        f"{language}, briefly and kindly, using only the articles below. If they do not answer "
        f"the question, reply with the single word {LLM_DECLINES}.\n\n{articles}"
    )


async def ask_model(http: httpx.AsyncClient, request: ModelRequest) -> str | None:
    """The model's answer, or ``None`` when it cannot be had (any error: the caller keeps the
    article's text)."""
    headers = {}
    key = os.environ.get(LLM_KEY_ENV)
    if key:
        headers["Authorization"] = f"Bearer {key}"
    body = {
        "model": request.model,
        "messages": [
            {"role": "system", "content": _model_prompt(request)},
            {"role": "user", "content": request.question},
        ],
        "temperature": 0.2,
    }
    try:
        response = await http.post(
            request.base_url.rstrip("/") + "/chat/completions",
            json=body,
            headers=headers,
            timeout=LLM_TIMEOUT_SECONDS,
        )
        response.raise_for_status()
        content = response.json()["choices"][0]["message"]["content"]
    except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as error:
        log.warning("assistant.model_failed", error=repr(error))
        return None
    if not isinstance(content, str) or not content.strip():
        return None
    return content


# --- acting --------------------------------------------------------------------------------


async def carry_out(
    session: AsyncSession, tenant: TenantContext, turn: AssistantTurn, plan: Plan
) -> None:
    """Queue the answer or hand off, and close the turn, in the caller's transaction."""
    question = await _message_text(session, turn)
    details = dict(plan.details)
    reply_id = None
    answer = plan.answer
    if plan.outcome == "handed_off":
        answer = translations(plan.language).gettext(
            "I am passing you to a person from our team; they will answer you here."
        )
    if plan.outcome in ("answered", "handed_off") and answer:
        try:
            async with session.begin_nested():
                reply = await conversations.reply(
                    session,
                    tenant,
                    conversation_id=turn.conversation_id,
                    text=answer,
                    attachments=[],
                    private=False,
                    channel_id=turn.channel_id,
                    author_user_id=None,
                    automated={"by": "assistant", "turn_id": turn.id, "intent": plan.intent},
                )
            reply_id = reply.id
        except HilosError as error:
            details["reply_refused"] = error.message
            if plan.outcome == "answered":
                plan = replace(plan, outcome="skipped")
    if plan.outcome == "skipped" and details.get("reason") in _PEOPLE_TAKE_OVER:
        # Routing held the conversation for the assistant, which will not answer it: people
        # must (it does nothing to a conversation already in line or assigned).
        await routing.request_routing(
            session, tenant, conversation_id=turn.conversation_id, why="new conversation"
        )
    turn.status = "done"
    turn.outcome = plan.outcome
    turn.intent = plan.intent
    turn.language = plan.language
    turn.question = question
    turn.answer = answer if reply_id is not None else None
    turn.confidence = plan.confidence
    turn.reply_message_id = reply_id
    turn.processed_at = now()
    if plan.outcome == "handed_off":
        details |= await _hand_off(session, tenant, turn, plan, details)
    turn.details = details
    await session.flush()
    if plan.outcome == "answered":
        await emit(
            session,
            tenant_id=tenant.id,
            topic="assistant.answered",
            payload={
                "turn_id": turn.id,
                "conversation_id": turn.conversation_id,
                "customer_id": turn.customer_id,
                "message_id": turn.message_id,
                "reply_message_id": reply_id,
                "intent": plan.intent,
                "language": plan.language,
            },
        )


async def _hand_off(
    session: AsyncSession,
    tenant: TenantContext,
    turn: AssistantTurn,
    plan: Plan,
    details: dict[str, Any],
) -> dict[str, Any]:
    """The note for the agent, the hand-off record, and routing; what was done."""
    note_text = await summary(session, tenant, turn, plan, details)
    note = await conversations.reply(
        session,
        tenant,
        conversation_id=turn.conversation_id,
        text=note_text,
        attachments=[],
        private=True,
        channel_id=None,
        author_user_id=None,
    )
    handoff = AssistantHandoff(
        id=new_id(),
        tenant_id=tenant.id,
        conversation_id=turn.conversation_id,
        turn_id=turn.id,
        reason=plan.handoff or "low_confidence",
        note_message_id=note.id,
        created_at=now(),
    )
    session.add(handoff)
    await session.flush()
    await routing.request_routing(
        session,
        tenant,
        conversation_id=turn.conversation_id,
        why=f"assistant hand-off ({handoff.reason})",
    )
    handoff.queue_id = await routing.queue_of(session, tenant, turn.conversation_id)
    await emit(
        session,
        tenant_id=tenant.id,
        topic="assistant.handed_off",
        payload={
            "turn_id": turn.id,
            "conversation_id": turn.conversation_id,
            "customer_id": turn.customer_id,
            "message_id": turn.message_id,
            "reason": handoff.reason,
            "queue_id": handoff.queue_id,
            "note_message_id": note.id,
        },
    )
    return {"handoff_reason": handoff.reason, "note_message_id": note.id}


async def summary(
    session: AsyncSession,
    tenant: TenantContext,
    turn: AssistantTurn,
    plan: Plan,
    details: dict[str, Any],
) -> str:
    """The private note an agent reads on taking the conversation, in the tenant's language:
    why, what the customer wrote, what the assistant understood and said before."""
    language = supported_language(tenant.locale) or DEFAULT_LANGUAGE
    gettext = translations(language).gettext
    reasons = {
        "requested": gettext("the customer asked for a person"),
        "negative_sentiment": gettext("the customer sounds upset"),
        "low_confidence": gettext("the assistant was not sure of the answer"),
        "assistant_error": gettext("the assistant could not process the message"),
    }
    intents = {
        "order_status": gettext("order status"),
        "store_stock": gettext("store stock"),
        "store_hours": gettext("store opening hours"),
        "faq": gettext("frequent question"),
        "greeting": gettext("greeting"),
        "thanks": gettext("thanks"),
        "handoff_request": gettext("talk to a person"),
    }
    lines = [
        gettext("Virtual assistant: handed over to a person (%(reason)s).")
        % {"reason": reasons.get(plan.handoff or "", plan.handoff or "")}
    ]
    if turn.question:
        lines.append(gettext("The customer wrote: “%(text)s”") % {"text": turn.question})
    facts = [
        gettext("Language: %(language)s")
        % {"language": Locale.parse(plan.language).get_language_name(language)}
    ]
    if plan.intent:
        facts.append(gettext("Intent: %(intent)s") % {"intent": intents.get(plan.intent, "")})
    mood = details.get("sentiment")
    if isinstance(mood, int | float):
        label = {
            "negative": gettext("negative"),
            "neutral": gettext("neutral"),
            "positive": gettext("positive"),
        }[sentiment.label_of(float(mood))]
        facts.append(
            gettext("Sentiment: %(score)+.2f (%(label)s)") % {"score": mood, "label": label}
        )
    if plan.confidence is not None:
        facts.append(
            gettext("Confidence: %(percent)d%%") % {"percent": round(plan.confidence * 100)}
        )
    lines.append(" · ".join(facts))
    earlier = (
        await session.execute(
            select(AssistantTurn.question, AssistantTurn.answer, AssistantTurn.details)
            .where(
                AssistantTurn.tenant_id == tenant.id,
                AssistantTurn.conversation_id == turn.conversation_id,
                AssistantTurn.id < turn.id,
                AssistantTurn.outcome == "answered",
            )
            .order_by(AssistantTurn.id.desc())
            .limit(CONTEXT_TURNS)
        )
    ).all()
    # What the assistant found, in this message or (the latest first) in earlier ones.
    found: dict[str, Any] = {}
    for facts_of in [details, *(row.details or {} for row in earlier)]:
        if "order_number" not in found and facts_of.get("order_number"):
            found["order_number"] = facts_of["order_number"]
            found["order_status"] = facts_of.get("order_status")
        for key in ("store", "product"):
            if key not in found and facts_of.get(key):
                found[key] = facts_of[key]
    if found.get("order_number"):
        status = str(found.get("order_status") or "")
        names = VOCABULARY["order_status"]
        if status in names:
            lines.append(
                gettext("Order: %(number)s (%(status)s)")
                % {"number": found["order_number"], "status": gettext(names[status])}
            )
        else:
            lines.append(
                gettext("Order %(number)s: not among the customer's orders")
                % {"number": found["order_number"]}
            )
    if found.get("store"):
        lines.append(gettext("Store: %(store)s") % {"store": found["store"]})
    if found.get("product"):
        lines.append(gettext("Product: %(product)s") % {"product": found["product"]})
    if details.get("article"):
        lines.append(gettext("Closest article: %(title)s") % {"title": details["article"]})
    if earlier:
        lines.append(gettext("Earlier, the assistant answered:"))
        for row in reversed(earlier):
            lines.append(f"– “{row.question}” → “{row.answer}”")
    return "\n".join(lines)


# --- reading ---------------------------------------------------------------------------------


async def turns_of(
    session: AsyncSession, tenant: TenantContext, *, conversation_id: str, limit: int = 100
) -> list[AssistantTurn]:
    """The assistant's turns in a conversation, oldest first (404 for another tenant's)."""
    await conversations.get_conversation(session, tenant, conversation_id)
    rows = await session.scalars(
        tenant_scope(
            select(AssistantTurn).where(AssistantTurn.conversation_id == conversation_id),
            AssistantTurn,
            tenant,
        )
        .order_by(AssistantTurn.id)
        .limit(limit)
    )
    return list(rows.all())


async def active_handoff(
    session: AsyncSession, tenant: TenantContext, conversation_id: str
) -> AssistantHandoff | None:
    return (
        await session.scalars(
            tenant_scope(
                select(AssistantHandoff).where(
                    AssistantHandoff.conversation_id == conversation_id,
                    AssistantHandoff.ended_at.is_(None),
                ),
                AssistantHandoff,
                tenant,
            )
        )
    ).one_or_none()
