"""Surveys: CSAT, NPS and CES asked on the customer's channels and answered on any of them.

What it owns: the tenant's survey settings, the invitations (``survey_invitations``: one per
survey, customer and subject, created by an outbox consumer and sent by the worker), the
answers (``survey_responses``, which KPIs read through ``responses``), the reading of a number
in a customer's message as an answer, and the signed links of the public answer page.

The scales: CSAT 1-5 (after a resolved conversation), CES 1-7 (after a resolved conversation),
NPS 0-10 (after an order is delivered or collected, and/or periodically after contacts).

The rule it enforces: one answer per survey per customer. "The same survey" is the same
invitation, the same kind about the same conversation or order, or (an answer about nothing in
particular) the same kind from the same customer within the kind's period — the NPS period
(``nps_period_days``) or one day for CSAT and CES. The response's ``dedupe_key`` carries that
identity under a unique constraint; a second answer is ``already_answered`` (409) and changes
nothing.

How invitations travel:

- ``conversation.resolved`` → CSAT (and CES) due ``delay_minutes`` later, sent in that
  conversation on the channel it ended on (``last_channel_id``: where the customer last wrote),
  to the customer's address there. A conversation reopened before then is not asked about
  until it is resolved again.
- ``order.delivered`` / ``order.collected`` → NPS due ``delay_days`` later; periodic NPS after
  a resolved conversation. Never two NPS invitations to a customer within the NPS period. NPS
  goes on the customer's preferred channel (``preferred_channel`` trait) or the one a reply
  would take, like any notice (``conversations.notify``).
- The worker sends what is due through the conversation outbox, marked automated (a service
  message: no marketing consent needed; a recorded refusal of service messages on a channel,
  WhatsApp's closed window or a missing address makes the invitation ``skipped`` with that
  reason). A customer gets one question at a time: an invitation due while another one waits
  for its answer waits too, until that one is answered or its answer window ends.
- Per channel: email carries a link to the answer page (a scale of links and a comment box
  that work without JavaScript); every other channel gets the question as text with "reply
  with a number". WhatsApp interactive buttons would fit CSAT, but the WhatsApp adapter sends
  only text, media and templates, so WhatsApp gets the text too; a button reply whose id or
  payload is ``survey:<invitation id>:<score>`` is read all the same, for the day it does.

How answers arrive: the API (``record_response``), the answer page, or a customer's message.
An outbox consumer on ``message.received`` looks for the customer's invitation sent within
the answer window (``answer_window_hours``) and reads a bare number in range at the start of
the message ("9", "un 9", "9/10", "I'd give it a 4") as the score and the rest as the comment;
a number out of range, or text that does not start with one, is not an answer. An answer
without a comment is thanked with an invitation to say why, and the customer's next message
within ``COMMENT_WINDOW`` becomes its comment. A message the survey took (an answer or that
comment) does not reopen the resolved conversation it arrived in: it is resolved again, so
"4" never lands in an agent's queue.

Every answer emits ``survey.answered`` and goes on the customer's timeline (type ``survey``);
a later comment emits ``survey.commented``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import re
import secrets
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import structlog
from sqlalchemy import Table, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.analytics.survey_models import SurveyInvitation, SurveyResponse, SurveySettings
from hilos.conversations import notify
from hilos.conversations import service as conversations
from hilos.conversations.models import ACTIVE_STATUSES, Conversation, Message
from hilos.core.clock import as_utc, now
from hilos.core.db import one_of
from hilos.core.errors import Conflict, HilosError, Invalid, NotFound
from hilos.core.ids import new_id
from hilos.core.models import OutboxEvent
from hilos.core.outbox import emit, register_consumer
from hilos.core.settings import get_settings as app_settings
from hilos.core.tenancy import TenantContext, get_owned, load_tenant, tenant_scope
from hilos.customers import service as customers
from hilos.routing import service as routing
from hilos.web.i18n import DEFAULT_LANGUAGE, supported_language, translations

log = structlog.get_logger(__name__)

# kind → (lowest, highest) score.
SCALES: dict[str, tuple[int, int]] = {"csat": (1, 5), "nps": (0, 10), "ces": (1, 7)}
KINDS = tuple(SCALES)
CHANNEL_SOURCES = ("message", "page", "api")

DEFAULT_CSAT_DELAY_MINUTES = 10
DEFAULT_CES_DELAY_MINUTES = 10
DEFAULT_NPS_DELAY_DAYS = 3
DEFAULT_NPS_PERIOD_DAYS = 90
DEFAULT_ANSWER_WINDOW_HOURS = 72
# The longest answer window a tenant may choose (the consumer looks back this far at most).
MAX_ANSWER_WINDOW_HOURS = 720
# After a bare-number answer, how long the customer's next message counts as its comment.
COMMENT_WINDOW = timedelta(hours=2)
# A CSAT or CES answer about no conversation: one per customer per this period.
UNANCHORED_PERIOD_DAYS = 1
MAX_COMMENT = 2000
BATCH = 200
PAGE_PATH = "/survey/"

_INVITATIONS = cast(Table, SurveyInvitation.__table__)
_RESPONSES = cast(Table, SurveyResponse.__table__)


def N_(message: str) -> str:
    """Mark ``message`` for the catalogs without translating it here."""
    return message


QUESTIONS = {
    "csat": N_("How would you rate the help you received?"),
    "ces": N_("How easy was it to get your request solved?"),
    "nps": N_("How likely are you to recommend %(business)s to a friend or colleague?"),
}
REPLY_WITH_A_NUMBER = {
    "csat": N_("Reply with a number from 1 (very poor) to 5 (excellent)."),
    "ces": N_("Reply with a number from 1 (very difficult) to 7 (very easy)."),
    "nps": N_("Reply with a number from 0 (not at all likely) to 10 (extremely likely)."),
}
SCALE_ENDS = {
    "csat": (N_("Very poor"), N_("Excellent")),
    "ces": (N_("Very difficult"), N_("Very easy")),
    "nps": (N_("Not at all likely"), N_("Extremely likely")),
}


# --- settings -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SurveySettingsView:
    csat_enabled: bool = False
    csat_delay_minutes: int = DEFAULT_CSAT_DELAY_MINUTES
    ces_enabled: bool = False
    ces_delay_minutes: int = DEFAULT_CES_DELAY_MINUTES
    nps_enabled: bool = False
    nps_after_order: bool = True
    nps_delay_days: int = DEFAULT_NPS_DELAY_DAYS
    nps_periodic: bool = False
    nps_period_days: int = DEFAULT_NPS_PERIOD_DAYS
    answer_window_hours: int = DEFAULT_ANSWER_WINDOW_HOURS

    @classmethod
    def of(cls, row: SurveySettings | None) -> SurveySettingsView:
        if row is None:
            return cls()
        return cls(
            csat_enabled=row.csat_enabled,
            csat_delay_minutes=row.csat_delay_minutes,
            ces_enabled=row.ces_enabled,
            ces_delay_minutes=row.ces_delay_minutes,
            nps_enabled=row.nps_enabled,
            nps_after_order=row.nps_after_order,
            nps_delay_days=row.nps_delay_days,
            nps_periodic=row.nps_periodic,
            nps_period_days=row.nps_period_days,
            answer_window_hours=row.answer_window_hours,
        )

    def enabled(self, kind: str) -> bool:
        return bool(getattr(self, f"{kind}_enabled"))

    @property
    def answer_window(self) -> timedelta:
        return timedelta(hours=self.answer_window_hours)


async def get_settings(session: AsyncSession, tenant: TenantContext) -> SurveySettingsView:
    return SurveySettingsView.of(await session.get(SurveySettings, tenant.id))


async def put_settings(
    session: AsyncSession, tenant: TenantContext, settings: SurveySettingsView
) -> SurveySettingsView:
    """Replace the tenant's survey settings (the first save also makes the link-signing key)."""
    row = await session.get(SurveySettings, tenant.id)
    if row is None:
        row = SurveySettings(tenant_id=tenant.id, signing_key=secrets.token_urlsafe(32))
        session.add(row)
    for field in SurveySettingsView.__dataclass_fields__:
        setattr(row, field, getattr(settings, field))
    row.updated_at = now()
    await session.flush()
    return SurveySettingsView.of(row)


# --- signed links of the answer page --------------------------------------------------------


def _signature(key: str, invitation_id: str) -> str:
    digest = hmac.new(key.encode(), f"survey:{invitation_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def token_for(key: str, invitation_id: str) -> str:
    return f"{invitation_id}.{_signature(key, invitation_id)}"


def answer_url(key: str, invitation_id: str) -> str:
    return app_settings().base_url.rstrip("/") + PAGE_PATH + token_for(key, invitation_id)


async def invitation_for_token(
    session: AsyncSession, token: str
) -> tuple[TenantContext, SurveyInvitation]:
    """The invitation a link names, if its signature is right; else ``NotFound`` (a forged or
    mangled link is told nothing more than a link to nothing)."""
    invitation_id, _, signature = token.partition(".")
    missing = NotFound("this survey link is not valid", code="survey_not_found")
    if not re.fullmatch(r"[0-9a-f]{32}", invitation_id) or not signature:
        raise missing
    invitation = await session.get(SurveyInvitation, invitation_id)
    if invitation is None:
        raise missing
    row = await session.get(SurveySettings, invitation.tenant_id)
    if row is None or not hmac.compare_digest(
        _signature(row.signing_key, invitation_id).encode(), signature.encode()
    ):
        raise missing
    return await load_tenant(session, invitation.tenant_id), invitation


# --- reading an answer in a message ---------------------------------------------------------

_NUMBER_FIRST = re.compile(
    r"^\s*(?P<lead>(?:[^\W\d_]+['’]?[^\W\d_]*[\s:]+){0,4}?)"
    r"(?P<score>\d{1,2})(?!\d)"
    r"(?:\s*(?:/|de|sobre|out\s+of|of)\s*(?P<out_of>\d{1,2})(?!\d))?"
    r"(?P<rest>.*)$",
    re.DOTALL | re.IGNORECASE,
)
# Words that may come before the number: "un 9", "le doy un 8", "I'd give it a 4", "nota: 7".
_LEAD_WORDS = frozenset(
    {
        # Spanish
        "un", "una", "uno", "el", "la", "mi", "nota", "puntuacion", "puntuo", "puntuaria",
        "valoro", "valoracion", "doy", "daria", "le", "te", "os", "les", "yo", "pues", "diria",
        "creo", "que",
        # English
        "a", "an", "my", "score", "rating", "rate", "i", "id", "give", "would", "it", "its",
        "say", "about",
    }
)  # fmt: skip
_COMMENT_START = re.compile(r"^[\s,.;:!?¡¿\-–—)*]+")
_BUTTON = re.compile(r"^survey:(?P<invitation>[0-9a-f]{32}):(?P<score>\d{1,2})$")


def _plain(word: str) -> str:
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).replace("'", "")


def in_range(kind: str, score: int) -> bool:
    low, high = SCALES[kind]
    return low <= score <= high


def parse_answer(text: str, kind: str) -> tuple[int, str | None] | None:
    """The score and comment a message gives on ``kind``'s scale, or ``None`` if it gives none.

    The message must start with the number (a few words such as "un" or "I'd give it a" may
    come first); "9/10" and "4 de 5" name the scale, which must be the kind's. What follows the
    number is the comment.
    """
    match = _NUMBER_FIRST.match(text)
    if match is None:
        return None
    lead = [_plain(word) for word in re.split(r"[\s:]+", match["lead"]) if word]
    if any(word.replace("’", "") not in _LEAD_WORDS for word in lead):
        return None
    score = int(match["score"])
    if not in_range(kind, score):
        return None
    if match["out_of"] is not None and int(match["out_of"]) != SCALES[kind][1]:
        return None
    comment = _COMMENT_START.sub("", match["rest"]).strip()
    return score, comment[:MAX_COMMENT] or None


def button_answer(data: dict[str, Any] | None) -> tuple[str, int] | None:
    """``(invitation id, score)`` of a tapped survey button (WhatsApp, Twilio), if it is one."""
    reply = (data or {}).get("reply")
    if not isinstance(reply, dict):
        return None
    for key in ("id", "payload"):
        value = reply.get(key)
        if isinstance(value, str) and (match := _BUTTON.match(value)):
            return match["invitation"], int(match["score"])
    return None


# --- recording answers ----------------------------------------------------------------------


def check_score(kind: str, score: int) -> None:
    if kind not in SCALES:
        raise Invalid(f"kind must be one of {', '.join(KINDS)}", field="kind")
    if not in_range(kind, score):
        low, high = SCALES[kind]
        raise Invalid(
            f"score {score} is out of range: a {kind} answer is a whole number from {low} to "
            f"{high}",
            field="score",
            code="score_out_of_range",
        )


def _period_number(moment: datetime, days: int) -> int:
    return int(moment.timestamp() // 86_400) // max(days, 1)


async def _served_by(
    session: AsyncSession, tenant: TenantContext, conversation: Conversation
) -> tuple[str | None, str | None]:
    """The agent and queue that served ``conversation``."""
    queues = await routing.queues_for(session, tenant, [conversation.id])
    return conversation.assignee_id, queues.get(conversation.id)


async def _open_invitation(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    customer_id: str,
    kind: str,
    conversation_id: str | None,
    window: timedelta,
) -> SurveyInvitation | None:
    """The invitation an answer without ``invitation_id`` answers: the one about this
    conversation, else (NPS) the customer's latest NPS waiting for its answer."""
    base = tenant_scope(select(SurveyInvitation), SurveyInvitation, tenant).where(
        SurveyInvitation.kind == kind
    )
    if conversation_id is not None and kind in ("csat", "ces"):
        key = f"{kind}:conversation:{conversation_id}"
        return (
            await session.execute(base.where(SurveyInvitation.subject_key == key))
        ).scalar_one_or_none()
    if conversation_id is not None:
        return None
    return (
        await session.execute(
            base.where(
                SurveyInvitation.customer_id == customer_id,
                SurveyInvitation.status == "sent",
                SurveyInvitation.sent_at >= now() - window,
            )
            .order_by(SurveyInvitation.sent_at.desc())
            .limit(1)
        )
    ).scalar_one_or_none()


async def invitation_of(
    session: AsyncSession, tenant: TenantContext, invitation_id: str
) -> SurveyInvitation:
    return await get_owned(
        session, SurveyInvitation, invitation_id, tenant, what="survey invitation"
    )


def _already(what: str) -> Conflict:
    return Conflict(f"the customer has already answered {what}", code="already_answered")


async def record_response(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    customer_id: str,
    kind: str,
    score: int,
    channel: str,
    conversation_id: str | None = None,
    comment: str | None = None,
    invitation_id: str | None = None,
    source: str = "api",
    message_id: str | None = None,
) -> SurveyResponse:
    """Record one answer; ``already_answered`` (409) if the customer answered this survey.

    Checks come before any write, so a refused answer leaves nothing behind.
    """
    check_score(kind, score)
    comment = (comment or "").strip()[:MAX_COMMENT] or None
    settings = await get_settings(session, tenant)
    moment = now()
    invitation: SurveyInvitation | None = None
    if invitation_id is not None:
        invitation = await invitation_of(session, tenant, invitation_id)
        if invitation.kind != kind:
            raise Invalid(
                f"invitation {invitation_id} is a {invitation.kind} survey, not {kind}",
                field="kind",
            )
        if invitation.customer_id != customer_id:
            raise Invalid(
                f"invitation {invitation_id} was sent to another customer",
                field="invitation_id",
            )
    conversation: Conversation | None = None
    if conversation_id is not None:
        conversation = await conversations.get_conversation(session, tenant, conversation_id)
        if conversation.customer_id != customer_id:
            raise Invalid(
                f"conversation {conversation_id} is another customer's",
                field="conversation_id",
            )
        if invitation is not None and invitation.conversation_id not in (None, conversation_id):
            raise Invalid(
                f"invitation {invitation.id} is about another conversation",
                field="conversation_id",
            )
    if invitation is None:
        invitation = await _open_invitation(
            session,
            tenant,
            customer_id=customer_id,
            kind=kind,
            conversation_id=conversation_id,
            window=settings.answer_window,
        )
        if invitation is not None and invitation.customer_id != customer_id:
            invitation = None
    if invitation is not None and invitation.status == "answered":
        raise _already(f"this {kind} survey")

    agent_id = queue_id = order_id = None
    if invitation is not None:
        dedupe_key = invitation.subject_key
        conversation_id = conversation_id or invitation.conversation_id
        agent_id, queue_id, order_id = (
            invitation.agent_id,
            invitation.queue_id,
            invitation.order_id,
        )
    elif conversation is not None:
        dedupe_key = f"{kind}:conversation:{conversation.id}"
        agent_id, queue_id = await _served_by(session, tenant, conversation)
    else:
        days = settings.nps_period_days if kind == "nps" else UNANCHORED_PERIOD_DAYS
        earlier = await session.scalar(
            select(func.count(SurveyResponse.id)).where(
                SurveyResponse.tenant_id == tenant.id,
                SurveyResponse.customer_id == customer_id,
                SurveyResponse.kind == kind,
                SurveyResponse.answered_at > moment - timedelta(days=days),
            )
        )
        if earlier:
            raise _already(f"a {kind} survey in the last {days} day{'s' if days != 1 else ''}")
        dedupe_key = f"{kind}:period:{customer_id}:{days}:{_period_number(moment, days)}"

    response_id = new_id()
    dialect = session.get_bind().dialect.name
    inserted = await session.execute(
        customers.insert_for(dialect, _RESPONSES)
        .values(
            id=response_id,
            tenant_id=tenant.id,
            customer_id=customer_id,
            kind=kind,
            score=score,
            comment=comment,
            channel=channel,
            conversation_id=conversation_id,
            order_id=order_id,
            agent_id=agent_id,
            queue_id=queue_id,
            invitation_id=invitation.id if invitation is not None else None,
            source=source,
            message_id=message_id,
            dedupe_key=dedupe_key,
            answered_at=moment,
            created_at=moment,
        )
        .on_conflict_do_nothing(index_elements=["tenant_id", "dedupe_key"])
        .returning(_RESPONSES.c.id)
    )
    if inserted.first() is None:
        raise _already(f"this {kind} survey")
    if invitation is not None:
        invitation.status = "answered"
        invitation.answered_at = moment
        invitation.response_id = response_id
        invitation.comment_until = (
            moment + COMMENT_WINDOW if source == "message" and comment is None else None
        )
    # Invitations that waited for this one's answer may go now.
    await session.execute(
        update(SurveyInvitation)
        .where(
            SurveyInvitation.tenant_id == tenant.id,
            SurveyInvitation.customer_id == customer_id,
            SurveyInvitation.status == "pending",
            SurveyInvitation.postponed_at.is_not(None),
            SurveyInvitation.due_at > moment,
        )
        .values(due_at=moment),
        execution_options={"synchronize_session": False},
    )
    await session.flush()
    payload = {
        "response_id": response_id,
        "invitation_id": invitation.id if invitation is not None else None,
        "kind": kind,
        "score": score,
        "comment": comment,
        "customer_id": customer_id,
        "channel": channel,
        "conversation_id": conversation_id,
        "order_id": order_id,
        "source": source,
        "answered_at": moment.isoformat(),
    }
    await emit(session, tenant_id=tenant.id, topic="survey.answered", payload=payload)
    await customers.add_timeline_event(
        session,
        tenant,
        customer_id=customer_id,
        type="survey",
        name=kind,
        properties={k: v for k, v in payload.items() if k not in ("customer_id", "answered_at")},
        context={"channel": channel},
        occurred_at=moment,
        source_message_id=None,
    )
    response = await session.get(SurveyResponse, response_id)
    assert response is not None
    return response


async def add_comment(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    invitation: SurveyInvitation,
    comment: str,
    channel: str,
) -> SurveyResponse | None:
    """Keep ``comment`` on the answer of ``invitation`` (the customer's next message after a
    bare-number answer); ``None`` if that answer has a comment already."""
    response = (
        await session.get(SurveyResponse, invitation.response_id)
        if invitation.response_id
        else None
    )
    invitation.comment_until = None
    if response is None or response.comment:
        return None
    response.comment = comment.strip()[:MAX_COMMENT]
    await session.flush()
    payload = {
        "response_id": response.id,
        "invitation_id": invitation.id,
        "kind": response.kind,
        "score": response.score,
        "comment": response.comment,
        "customer_id": response.customer_id,
        "channel": channel,
        "conversation_id": response.conversation_id,
    }
    await emit(session, tenant_id=tenant.id, topic="survey.commented", payload=payload)
    await customers.add_timeline_event(
        session,
        tenant,
        customer_id=response.customer_id,
        type="survey",
        name="comment",
        properties={k: v for k, v in payload.items() if k != "customer_id"},
        context={"channel": channel},
        occurred_at=now(),
        source_message_id=None,
    )
    return response


# --- reading answers ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResponseRow:
    """One answer as KPIs read it."""

    score: int
    channel: str
    conversation_id: str | None
    customer_id: str
    answered_at: datetime
    agent_id: str | None = None
    queue_id: str | None = None
    order_id: str | None = None


async def responses(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    kind: str,
    start: datetime,
    end: datetime,
    channel: str | None = None,
) -> list[ResponseRow]:
    """The tenant's answers of ``kind`` with ``start <= answered_at < end``, oldest first."""
    statement = select(
        SurveyResponse.score,
        SurveyResponse.channel,
        SurveyResponse.conversation_id,
        SurveyResponse.customer_id,
        SurveyResponse.answered_at,
        SurveyResponse.agent_id,
        SurveyResponse.queue_id,
        SurveyResponse.order_id,
    ).where(
        SurveyResponse.tenant_id == tenant.id,
        SurveyResponse.kind == kind,
        SurveyResponse.answered_at >= start,
        SurveyResponse.answered_at < end,
    )
    if channel is not None:
        statement = statement.where(SurveyResponse.channel == channel)
    rows = await session.execute(statement.order_by(SurveyResponse.answered_at))
    return [
        ResponseRow(
            score=row.score,
            channel=row.channel,
            conversation_id=row.conversation_id,
            customer_id=row.customer_id,
            answered_at=as_utc(row.answered_at),
            agent_id=row.agent_id,
            queue_id=row.queue_id,
            order_id=row.order_id,
        )
        for row in rows.all()
    ]


async def list_responses(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    kind: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    channel: str | None = None,
    customer_id: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> tuple[list[SurveyResponse], str | None]:
    """Answers, newest first, one page at a time."""
    statement = tenant_scope(select(SurveyResponse), SurveyResponse, tenant)
    if kind is not None:
        statement = statement.where(SurveyResponse.kind == kind)
    if start is not None:
        statement = statement.where(SurveyResponse.answered_at >= start)
    if end is not None:
        statement = statement.where(SurveyResponse.answered_at < end)
    if channel is not None:
        statement = statement.where(SurveyResponse.channel == channel)
    if customer_id is not None:
        statement = statement.where(SurveyResponse.customer_id == customer_id)
    if cursor is not None:
        moment, row_id = conversations.decode_cursor(cursor)
        statement = statement.where(
            or_(
                SurveyResponse.answered_at < moment,
                and_(SurveyResponse.answered_at == moment, SurveyResponse.id < row_id),
            )
        )
    statement = statement.order_by(
        SurveyResponse.answered_at.desc(), SurveyResponse.id.desc()
    ).limit(limit + 1)
    rows = list((await session.execute(statement)).scalars().all())
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = conversations.encode_cursor(rows[-1].answered_at, rows[-1].id)
    return rows, next_cursor


async def list_invitations(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    kind: str | None = None,
    status: str | None = None,
    customer_id: str | None = None,
    conversation_id: str | None = None,
    limit: int = 100,
) -> list[SurveyInvitation]:
    """Invitations, newest first."""
    statement = tenant_scope(select(SurveyInvitation), SurveyInvitation, tenant)
    if kind is not None:
        statement = statement.where(SurveyInvitation.kind == kind)
    if status is not None:
        statement = statement.where(SurveyInvitation.status == status)
    if customer_id is not None:
        statement = statement.where(SurveyInvitation.customer_id == customer_id)
    if conversation_id is not None:
        statement = statement.where(SurveyInvitation.conversation_id == conversation_id)
    statement = statement.order_by(SurveyInvitation.id.desc()).limit(limit)
    return list((await session.execute(statement)).scalars().all())


# --- invitations from events ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Wanted:
    kind: str
    subject_key: str
    trigger: str
    customer_id: str
    due_at: datetime
    conversation_id: str | None = None
    order_id: str | None = None


async def _nps_asked_recently(
    session: AsyncSession, tenant_id: str, customer_id: str, since: datetime
) -> bool:
    asked = await session.scalar(
        select(func.count(SurveyInvitation.id)).where(
            SurveyInvitation.tenant_id == tenant_id,
            SurveyInvitation.customer_id == customer_id,
            SurveyInvitation.kind == "nps",
            SurveyInvitation.status != "skipped",
            SurveyInvitation.created_at > since,
        )
    )
    return bool(asked)


async def _invite(session: AsyncSession, tenant: TenantContext, wanted: Sequence[_Wanted]) -> None:
    """Store the invitations (one per subject: a repeat changes nothing), and give a CSAT or
    CES skipped because its conversation was reopened another chance now that it is resolved."""
    moment = now()
    dialect = session.get_bind().dialect.name
    for item in wanted:
        agent_id = queue_id = None
        if item.conversation_id is not None and item.kind in ("csat", "ces"):
            conversation = await conversations.get_conversation(
                session, tenant, item.conversation_id
            )
            agent_id, queue_id = await _served_by(session, tenant, conversation)
        inserted = await session.execute(
            customers.insert_for(dialect, _INVITATIONS)
            .values(
                id=new_id(),
                tenant_id=tenant.id,
                customer_id=item.customer_id,
                kind=item.kind,
                subject_key=item.subject_key,
                trigger=item.trigger,
                conversation_id=item.conversation_id,
                order_id=item.order_id,
                agent_id=agent_id,
                queue_id=queue_id,
                status="pending",
                due_at=item.due_at,
                created_at=moment,
            )
            .on_conflict_do_nothing(index_elements=["tenant_id", "subject_key"])
            .returning(_INVITATIONS.c.id)
        )
        if inserted.first() is None:
            await session.execute(
                update(SurveyInvitation)
                .where(
                    SurveyInvitation.tenant_id == tenant.id,
                    SurveyInvitation.subject_key == item.subject_key,
                    SurveyInvitation.status == "skipped",
                    SurveyInvitation.reason == "conversation_reopened",
                )
                .values(
                    status="pending",
                    reason=None,
                    due_at=item.due_at,
                    agent_id=agent_id,
                    queue_id=queue_id,
                ),
                execution_options={"synchronize_session": False},
            )


async def _wanted_for(
    session: AsyncSession, event: OutboxEvent, settings: SurveySettingsView
) -> list[_Wanted]:
    payload = event.payload
    customer_id = payload.get("customer_id")
    if not isinstance(customer_id, str):
        return []
    # Delays run from when it happened, however late the relay got to it.
    moment = as_utc(event.created_at)
    wanted: list[_Wanted] = []
    nps_due = moment + timedelta(days=settings.nps_delay_days)
    period = timedelta(days=settings.nps_period_days)
    if event.topic == "conversation.resolved":
        conversation_id = payload.get("conversation_id")
        if not isinstance(conversation_id, str):
            return []
        for kind, delay in (
            ("csat", settings.csat_delay_minutes),
            ("ces", settings.ces_delay_minutes),
        ):
            if settings.enabled(kind):
                wanted.append(
                    _Wanted(
                        kind=kind,
                        subject_key=f"{kind}:conversation:{conversation_id}",
                        trigger=event.topic,
                        customer_id=customer_id,
                        # CES after CSAT when both are on (one question at a time anyway).
                        due_at=moment + timedelta(minutes=delay, seconds=len(wanted)),
                        conversation_id=conversation_id,
                    )
                )
        if (
            settings.nps_enabled
            and settings.nps_periodic
            and not await _nps_asked_recently(
                session, event.tenant_id, customer_id, moment - period
            )
        ):
            number = _period_number(moment, settings.nps_period_days)
            wanted.append(
                _Wanted(
                    kind="nps",
                    subject_key=f"nps:periodic:{customer_id}:{number}",
                    trigger=event.topic,
                    customer_id=customer_id,
                    due_at=nps_due,
                )
            )
    elif event.topic in ("order.delivered", "order.collected"):
        order_id = payload.get("order_id")
        if (
            isinstance(order_id, str)
            and settings.nps_enabled
            and settings.nps_after_order
            and not await _nps_asked_recently(
                session, event.tenant_id, customer_id, moment - period
            )
        ):
            wanted.append(
                _Wanted(
                    kind="nps",
                    subject_key=f"nps:order:{order_id}",
                    trigger=event.topic,
                    customer_id=customer_id,
                    due_at=nps_due,
                    order_id=order_id,
                )
            )
    return wanted


async def _settings_of(
    session: AsyncSession, tenant_ids: Sequence[str]
) -> dict[str, SurveySettingsView]:
    rows = (
        await session.execute(
            select(SurveySettings).where(
                SurveySettings.tenant_id.in_(sorted(set(tenant_ids))),
                or_(
                    SurveySettings.csat_enabled.is_(True),
                    SurveySettings.ces_enabled.is_(True),
                    SurveySettings.nps_enabled.is_(True),
                ),
            )
        )
    ).scalars()
    return {row.tenant_id: SurveySettingsView.of(row) for row in rows}


TRIGGERS = ("conversation.resolved", "order.delivered", "order.collected")


async def consume(session: AsyncSession, events: Sequence[OutboxEvent]) -> None:
    """The relay's consumer: invitations for resolved conversations and delivered or collected
    orders, and answers (or comments) in customers' messages."""
    triggers = [event for event in events if event.topic in TRIGGERS]
    received = [
        event
        for event in events
        if event.topic == "message.received"
        and event.payload.get("kind", "message") == "message"
        and all(
            isinstance(event.payload.get(key), str)
            for key in ("message_id", "conversation_id", "customer_id")
        )
    ]
    if triggers:
        await _consume_triggers(session, triggers)
    if received:
        await _consume_messages(session, received)


async def _consume_triggers(session: AsyncSession, events: Sequence[OutboxEvent]) -> None:
    settings = await _settings_of(session, [event.tenant_id for event in events])
    tenants: dict[str, TenantContext] = {}
    for event in events:
        tenant_settings = settings.get(event.tenant_id)
        if tenant_settings is None:
            continue
        try:
            async with session.begin_nested():
                wanted = await _wanted_for(session, event, tenant_settings)
                if not wanted:
                    continue
                if event.tenant_id not in tenants:
                    tenants[event.tenant_id] = await load_tenant(session, event.tenant_id)
                await _invite(session, tenants[event.tenant_id], wanted)
        except Exception:
            log.exception("surveys.invite_failed", topic=event.topic, event_id=event.id)


async def _consume_messages(session: AsyncSession, events: Sequence[OutboxEvent]) -> None:
    moment = now()
    customer_ids = sorted({str(event.payload["customer_id"]) for event in events})
    dialect = session.get_bind().dialect.name
    # One indexed look-up for the whole batch: most messages have no survey waiting.
    open_rows = (
        (
            await session.execute(
                select(SurveyInvitation)
                .where(
                    one_of(dialect, SurveyInvitation.customer_id, customer_ids),
                    or_(
                        and_(
                            SurveyInvitation.status == "sent",
                            SurveyInvitation.sent_at
                            >= moment - timedelta(hours=MAX_ANSWER_WINDOW_HOURS),
                        ),
                        and_(
                            SurveyInvitation.status == "answered",
                            SurveyInvitation.comment_until >= moment,
                        ),
                    ),
                )
                .order_by(SurveyInvitation.sent_at.desc())
            )
        )
        .scalars()
        .all()
    )
    if not open_rows:
        return
    waiting: dict[tuple[str, str], list[SurveyInvitation]] = {}
    for row in open_rows:
        waiting.setdefault((row.tenant_id, row.customer_id), []).append(row)
    mine = [e for e in events if (e.tenant_id, str(e.payload["customer_id"])) in waiting]
    if not mine:
        return
    # The message's text and data (what a survey answer is read from).
    messages = {
        row.id: row
        for row in (
            await session.execute(
                select(Message.id, Message.text, Message.data, Message.channel_id).where(
                    one_of(dialect, Message.id, [str(e.payload["message_id"]) for e in mine]),
                    Message.direction == "inbound",
                )
            )
        ).all()
    }
    settings = {
        row.tenant_id: SurveySettingsView.of(row)
        for row in (
            await session.execute(
                select(SurveySettings).where(
                    SurveySettings.tenant_id.in_(sorted({e.tenant_id for e in mine}))
                )
            )
        ).scalars()
    }
    for event in mine:
        message = messages.get(str(event.payload["message_id"]))
        if message is None:
            continue
        window = settings.get(event.tenant_id, SurveySettingsView()).answer_window
        invitations = waiting[(event.tenant_id, str(event.payload["customer_id"]))]
        try:
            async with session.begin_nested():
                await _read_message(session, event, message, invitations, window)
        except Exception:
            log.exception("surveys.answer_failed", message_id=event.payload["message_id"])


async def _read_message(
    session: AsyncSession,
    event: OutboxEvent,
    message: Any,
    invitations: list[SurveyInvitation],
    window: timedelta,
) -> None:
    payload = event.payload
    moment = now()
    channel = str(payload.get("channel_kind") or "api")
    conversation_id = str(payload["conversation_id"])
    text = str(message.text or "")
    answered: SurveyInvitation | None = None
    score: int | None = None
    comment: str | None = None
    button = button_answer(message.data)
    if button is not None:
        answered = next((i for i in invitations if i.id == button[0]), None)
        score = button[1]
        if answered is None or answered.status != "sent" or not in_range(answered.kind, score):
            return
    else:
        candidates = [
            i
            for i in invitations
            if i.status == "sent" and i.sent_at is not None and i.sent_at >= moment - window
        ]
        # The invitation in this very conversation first, else the latest one sent.
        candidates.sort(key=lambda i: (i.conversation_id != conversation_id, -_stamp(i.sent_at)))
        if candidates:
            parsed = parse_answer(text, candidates[0].kind)
            if parsed is not None:
                answered, (score, comment) = candidates[0], parsed
                if (message.data or {}).get("reply"):
                    comment = None  # a button's title is no comment
    tenant = await load_tenant(session, event.tenant_id)
    took = False
    if answered is not None and score is not None:
        try:
            await record_response(
                session,
                tenant,
                customer_id=answered.customer_id,
                kind=answered.kind,
                score=score,
                channel=channel,
                comment=comment,
                invitation_id=answered.id,
                source="message",
                message_id=str(payload["message_id"]),
            )
        except Conflict:
            return  # answered already (a redelivered event, or the answer page first)
        took = True
        await _thank(session, tenant, event, language=answered.language, ask_why=comment is None)
    elif text.strip():
        follow_up = next(
            (
                i
                for i in invitations
                if i.status == "answered"
                and i.comment_until is not None
                and as_utc(i.comment_until) >= moment
            ),
            None,
        )
        if follow_up is not None:
            took = (
                await add_comment(
                    session, tenant, invitation=follow_up, comment=text, channel=channel
                )
                is not None
            )
    if took and payload.get("conversation") in ("reopened", "new"):
        # The message only answered a survey: the conversation stays resolved, and resolving
        # it again asks nothing about it (a CSAT about a "9" would never end).
        await _ask_nothing_about(session, tenant, conversation_id, str(payload["customer_id"]))
        try:
            await conversations.update_conversation(
                session, tenant, conversation_id=conversation_id, changes={"status": "resolved"}
            )
        except HilosError as error:
            log.info("surveys.kept_open", conversation_id=conversation_id, reason=error.message)


async def _ask_nothing_about(
    session: AsyncSession, tenant: TenantContext, conversation_id: str, customer_id: str
) -> None:
    """Mark CSAT and CES about ``conversation_id`` as not to be asked (unless they exist)."""
    moment = now()
    dialect = session.get_bind().dialect.name
    for kind in ("csat", "ces"):
        await session.execute(
            customers.insert_for(dialect, _INVITATIONS)
            .values(
                id=new_id(),
                tenant_id=tenant.id,
                customer_id=customer_id,
                kind=kind,
                subject_key=f"{kind}:conversation:{conversation_id}",
                trigger="message.received",
                conversation_id=conversation_id,
                status="skipped",
                reason="survey_reply_only",
                due_at=moment,
                created_at=moment,
            )
            .on_conflict_do_nothing(index_elements=["tenant_id", "subject_key"])
        )


def _stamp(value: datetime | None) -> float:
    return as_utc(value).timestamp() if value is not None else 0.0


async def _thank(
    session: AsyncSession,
    tenant: TenantContext,
    event: OutboxEvent,
    *,
    language: str | None,
    ask_why: bool,
) -> None:
    """Thank the customer on the channel they answered by (and ask why, if they said not)."""
    gettext = translations(_language(language, tenant)).gettext
    text = gettext("Thank you for your answer!")
    if ask_why:
        text += " " + gettext("If you like, tell us why in your next message.")
    channel_id = event.payload.get("channel_id")
    kind = event.payload.get("channel_kind")
    if not isinstance(channel_id, str) or not isinstance(kind, str):
        return
    try:
        conversation = await conversations.get_conversation(
            session, tenant, str(event.payload["conversation_id"])
        )
        await notify.queue_notice(
            session,
            tenant,
            conversation=conversation,
            channel_id=channel_id,
            channel_kind=kind,
            text=text,
            about={"by": "surveys", "thanks": True},
        )
    except HilosError as error:
        log.info("surveys.not_thanked", reason=error.message)


register_consumer("surveys", topics=(*TRIGGERS, "message.received"), consume=consume)


# --- sending --------------------------------------------------------------------------------


def _language(language: str | None, tenant: TenantContext) -> str:
    return supported_language(language) or supported_language(tenant.locale) or DEFAULT_LANGUAGE


def compose(
    kind: str, channel_kind: str, language: str, *, business: str, url: str
) -> tuple[str, dict[str, Any] | None]:
    """The question's text for ``channel_kind`` in ``language``, and (email) its subject and
    HTML with a link per score and one to the answer page."""
    gettext = translations(language).gettext
    question = gettext(QUESTIONS[kind]) % {"business": business}
    if channel_kind != "email":
        return f"{question} {gettext(REPLY_WITH_A_NUMBER[kind])}", None
    low, high = SCALES[kind]
    subject = gettext("A quick question about your experience")
    answer_here = gettext("Answer with one click:")
    text = f"{question}\n\n{answer_here} {url}"
    lowest, highest = (gettext(end) for end in SCALE_ENDS[kind])
    links = " ".join(
        f'<a href="{html.escape(url)}?score={n}" style="display:inline-block;'
        "min-width:2em;padding:.4em;margin:.1em;border:1px solid #888;border-radius:4px;"
        f'text-align:center;text-decoration:none">{n}</a>'
        for n in range(low, high + 1)
    )
    body = (
        f"<p>{html.escape(question)}</p>"
        f"<p>{links}</p>"
        f"<p><small>{html.escape(f'{low}: {lowest} · {high}: {highest}')}</small></p>"
        f'<p>{html.escape(answer_here)} <a href="{html.escape(url)}">{html.escape(url)}</a></p>'
    )
    return text, {"subject": subject, "html": body}


async def send_due(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    wakeup: Callable[[], None] | None = None,
) -> int:
    """Send every invitation that is due, each in a transaction of its own; return how many
    were sent. ``wakeup`` is called when messages were queued, so delivery need not wait."""
    async with sessionmaker() as session:
        due = list(
            (
                await session.scalars(
                    select(SurveyInvitation.id)
                    .where(SurveyInvitation.status == "pending", SurveyInvitation.due_at <= now())
                    .order_by(SurveyInvitation.due_at, SurveyInvitation.id)
                    .limit(BATCH)
                )
            ).all()
        )
    sent = 0
    for invitation_id in due:
        try:
            async with sessionmaker() as session, session.begin():
                if await _send_one(session, invitation_id):
                    sent += 1
        except Exception:
            log.exception("surveys.send_failed", invitation_id=invitation_id)
    if sent and wakeup is not None:
        wakeup()
    return sent


async def _send_one(session: AsyncSession, invitation_id: str) -> bool:
    statement = select(SurveyInvitation).where(
        SurveyInvitation.id == invitation_id, SurveyInvitation.status == "pending"
    )
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update(skip_locked=True)
    invitation = (await session.scalars(statement)).one_or_none()
    if invitation is None:
        return False
    moment = now()
    row = await session.get(SurveySettings, invitation.tenant_id)
    settings = SurveySettingsView.of(row)
    if row is None or not settings.enabled(invitation.kind):
        invitation.status, invitation.reason = "skipped", "survey_off"
        return False
    tenant = await load_tenant(session, invitation.tenant_id)
    waiting_for = (
        await session.execute(
            select(SurveyInvitation.sent_at)
            .where(
                SurveyInvitation.tenant_id == tenant.id,
                SurveyInvitation.customer_id == invitation.customer_id,
                SurveyInvitation.status == "sent",
                SurveyInvitation.sent_at > moment - settings.answer_window,
            )
            .order_by(SurveyInvitation.sent_at.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    if waiting_for is not None:
        # One question at a time: this one goes when that one's answer window ends (or as soon
        # as it is answered: ``record_response`` brings postponed invitations forward).
        invitation.due_at = as_utc(waiting_for) + settings.answer_window
        invitation.postponed_at = moment
        return False
    chosen = await _route(session, tenant, invitation)
    if isinstance(chosen, str):
        invitation.status, invitation.reason = "skipped", chosen
        return False
    conversation, option = chosen
    customer = await customers.get_customer(session, tenant, invitation.customer_id)
    language = _language(customer.language, tenant)
    text, data = compose(
        invitation.kind,
        option.kind,
        language,
        business=tenant.name,
        url=answer_url(row.signing_key, invitation.id),
    )
    try:
        notified = await notify.queue_notice(
            session,
            tenant,
            conversation=conversation,
            channel_id=option.channel_id,
            channel_kind=option.kind,
            text=text,
            about={"by": "surveys", "invitation_id": invitation.id, "kind": invitation.kind},
            data=data,
        )
    except HilosError as error:
        invitation.status, invitation.reason = "skipped", error.code[:40]
        return False
    invitation.status = "sent"
    invitation.sent_at = moment
    invitation.channel_id = option.channel_id
    invitation.channel_kind = option.kind
    invitation.message_id = notified.message_id
    invitation.conversation_id = invitation.conversation_id or notified.conversation_id
    invitation.language = language
    await session.flush()
    return True


async def _route(
    session: AsyncSession, tenant: TenantContext, invitation: SurveyInvitation
) -> tuple[Conversation, conversations.ReplyOption] | str:
    """The conversation and channel the question goes by, or why it cannot go."""
    if invitation.kind in ("csat", "ces") and invitation.conversation_id is not None:
        conversation = await conversations.get_conversation(
            session, tenant, invitation.conversation_id
        )
        if conversation.status in ACTIVE_STATUSES:
            return "conversation_reopened"
        if conversation.status == "merged":
            return "conversation_merged"
        options = await conversations.reply_options(session, tenant, conversation)
        option = next((o for o in options if o.channel_id == conversation.last_channel_id), None)
        if option is None:
            return "channel_cannot_reply"
        if not option.available:
            return option.reason or "channel_unavailable"
        return conversation, option
    conversation = await notify.conversation_for_notice(session, tenant, invitation.customer_id)
    usable = [
        o for o in await conversations.reply_options(session, tenant, conversation) if o.available
    ]
    if not usable:
        return "no_reachable_channel"
    customer = await customers.get_customer(session, tenant, invitation.customer_id)
    preferred = (customer.traits or {}).get("preferred_channel")
    option = next((o for o in usable if o.kind == preferred), None)
    option = option or next((o for o in usable if o.default), usable[0])
    return conversation, option


# --- merges ---------------------------------------------------------------------------------

# A merged customer's invitations and answers become the survivor's; ``dedupe_key`` keeps the
# identity each answer was given under, so two answers never collide in a merge.
customers.register_merge_participant(
    customers.OwnedRowsParticipant("surveys", SurveyInvitation, SurveyResponse)
)


async def took_message(session: AsyncSession, tenant: TenantContext, message_id: str) -> bool:
    """Whether the customer's message ``message_id`` was read as a survey answer (the
    assistant leaves such a "4" alone)."""
    found = await session.execute(
        select(SurveyResponse.id)
        .where(SurveyResponse.tenant_id == tenant.id, SurveyResponse.message_id == message_id)
        .limit(1)
    )
    return found.first() is not None
