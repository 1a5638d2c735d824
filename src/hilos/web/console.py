"""The agent console: server-rendered pages to sign in, work the inbox, answer a conversation and
look a customer up. It works without JavaScript and offline (no CDN, no web fonts).

Every page acts as the signed-in agent: reads and changes go through the conversations,
customers and channels services with the agent's ``TenantContext``, so another tenant's id is
a 404 page here exactly as it is a 404 in the API. A request is one transaction (the session
dependency of ``hilos.core.deps``); a refused request writes nothing.

Rules of the pages:

* A console page without a live session answers ``303`` to ``/login``.
* The session cookie is HttpOnly, SameSite=Lax, Secure when ``HILOS_BASE_URL`` is https, and
  lasts 12 hours (see ``hilos.web.service``).
* Every form posts the session's CSRF token and is refused with ``403`` without it. The sign-in
  form, which has no session yet, posts a token that must match a cookie set with the form
  (a double-submit token), so another site cannot sign a browser in to its own account.
* Errors are pages, not JSON: services' errors keep their 4xx status and message, and are
  raised as ``ConsoleError`` so that the request's transaction rolls back before
  ``render_console_error`` (installed by the app) draws the page.
* Who sees what: a supervisor or an admin sees every conversation of the tenant; an agent
  (role ``agent``) sees the conversations assigned or offered to them and those routed
  through a queue they belong to (``routing.service.can_see_conversation``; lists use the
  same rule as SQL, ``routing.service.visible_to``). Every page and every action on a
  conversation checks it on the server: another queue's conversation is a 404 page, exactly
  like another tenant's. The customer pages show an agent the conversations and timeline
  messages of that customer they may see, nothing of the others.
* The composer lists every channel that could carry the reply, each with the reason it
  cannot now (``conversations.service.reply_options``), defaults to the channel the customer
  last wrote on, and inserts canned responses rendered for the conversation (``canned``).
* A ringing call pops up on every console page of the people who may take it
  (``/console/calls/{id}``): supervisors and admins, agents who can see its conversation or
  who belong to a queue serving phone calls.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import structlog
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from sqlalchemy import ColumnElement
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles

from hilos import __version__
from hilos.channels import service as channels
from hilos.channels.kinds import CHANNEL_KINDS
from hilos.commerce.carts import format_money
from hilos.conversations import canned
from hilos.conversations import service as conversations
from hilos.conversations.models import ACTIVE_STATUSES, Conversation, Message
from hilos.core import service as core
from hilos.core.clock import now
from hilos.core.deps import DbSession
from hilos.core.errors import HilosError, NotFound
from hilos.core.ratelimit import rate_limits
from hilos.core.tenancy import TenantContext, get_owned
from hilos.customers import service as customers
from hilos.customers.api import customer_360
from hilos.privacy import audit
from hilos.routing import service as routing
from hilos.routing import sla
from hilos.routing.models import RoutingAgent
from hilos.web import service
from hilos.web.i18n import (
    LANGUAGE_COOKIE,
    LANGUAGES,
    N_,
    VOCABULARY,
    choose_language,
    render,
    requested_language,
    translations,
)
from hilos.web.service import SESSION_LIFETIME, SignedInAgent

log = structlog.get_logger(__name__)

SESSION_COOKIE = "hilos_session"
SIGN_IN_CSRF_COOKIE = "hilos_signin_csrf"
INBOX_PAGE_SIZE = 25
CUSTOMERS_PAGE_SIZE = 25
MESSAGES_PAGE_SIZE = 200
MAX_REPLY_LENGTH = 20_000
# The customer sidebar of a conversation: their other conversations and latest events.
SIDEBAR_CONVERSATIONS = 5
SIDEBAR_ACTIVITY = 5
# The inbox's status tabs; "all" is every conversation that was not merged away.
INBOX_FILTERS = ("open", "pending", "snoozed", "resolved", "all")
# The inbox's views: whose conversations (the status tabs apply to each but ``at_risk``, whose
# conversations have a running SLA clock whatever their status, soonest due first).
INBOX_VIEWS = ("all", "mine", "unassigned", "queues", "channel", "at_risk")
AT_RISK_PAGE_SIZE = 50
# What an agent can set from the conversation page with one button (snoozing has its form).
STATUS_ACTIONS = ("open", "pending", "resolved")
MAX_NOTE_LENGTH = 5000
# The routing decisions shown beside a conversation: the latest few.
SIDEBAR_ROUTING = 5
STATIC_DIR = Path(__file__).resolve().parent / "static"
# Why the composer cannot send on a channel now (``conversations.service.reply_options``).
UNAVAILABLE_REASONS = {
    conversations.CHANNEL_DISABLED: N_("This channel is disabled."),
    conversations.NO_ADDRESS: N_("The customer has no address on this channel."),
    conversations.NO_SERVICE_CONSENT: N_(
        "The customer asked not to receive service messages on this channel."
    ),
    conversations.WHATSAPP_WINDOW_CLOSED: N_(
        "WhatsApp's 24-hour window is closed: only an approved template can be sent there. "
        "Reply on another channel."
    ),
}
SEES_ALL_ROLES = ("admin", "supervisor")


# --- errors ---------------------------------------------------------------------------------


class ConsoleError(Exception):
    """A console request refused with ``status_code``; drawn as a page by the app's handler.

    ``message`` is English source text: the page shows it in the reader's language when the
    catalog has it (the console's own messages), as written otherwise (services' messages).
    """

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        back: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.back = back
        # Kept from the refusal it stands for (a rate limit's Retry-After).
        self.headers = headers or {}


class SignInRequired(ConsoleError):
    def __init__(self) -> None:
        super().__init__(303, N_("Sign in to continue."))


_ERROR_TITLES = {
    400: N_("This request could not be understood"),
    403: N_("Not allowed"),
    404: N_("Not found"),
    409: N_("That cannot be done now"),
    422: N_("Please check what you sent"),
    429: N_("Too many requests"),
}


def _back_link(request: Request) -> str | None:
    """Where a refused form sends the agent back to: the page the form was on."""
    if request.method == "POST" and request.url.path.startswith("/console/"):
        return request.url.path.rsplit("/", 1)[0]
    return None


class ConsoleRoute(APIRoute):
    """Turns every error of a console request into a ``ConsoleError`` raised from the handler.

    Raising (rather than answering) lets the error pass through the session dependency, which
    rolls the transaction back, before the app's handler draws the error page.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except ConsoleError:
                raise
            except NotFound as error:
                # Missing and another tenant's look the same; the service's words name an id.
                raise ConsoleError(
                    404, N_("It does not exist, or it is not part of your business."), back=None
                ) from error
            except HilosError as error:
                raise ConsoleError(
                    error.status_code,
                    error.message,
                    back=_back_link(request),
                    headers=getattr(error, "headers", None),
                ) from error
            except RequestValidationError as error:
                raise ConsoleError(
                    422, _describe_invalid(error), back=_back_link(request)
                ) from error
            except StarletteHTTPException as error:
                raise ConsoleError(
                    error.status_code, str(error.detail), back=_back_link(request)
                ) from error

        return console_handler


def _describe_invalid(error: RequestValidationError) -> str:
    parts = []
    for problem in list(error.errors())[:3]:
        field = ".".join(str(p) for p in problem.get("loc", ()) if p not in ("body", "query"))
        parts.append(f"{field}: {problem.get('msg', '')}")
    return "; ".join(parts) or N_("Please check what you sent")


async def render_console_error(request: Request, error: Exception) -> Response:
    """The app's handler for ``ConsoleError``: a redirect to sign in, or an error page."""
    assert isinstance(error, ConsoleError)
    if isinstance(error, SignInRequired):
        return RedirectResponse("/login", status_code=303)
    agent: SignedInAgent | None = getattr(request.state, "console_agent", None)
    language = _language(request, agent)
    gettext = translations(language).gettext
    title = _ERROR_TITLES.get(error.status_code, N_("This request could not be understood"))
    page = _page(
        request,
        "error.html",
        {
            "title": gettext(title),
            "message": gettext(error.message),
            "back": error.back,
            "status_code": error.status_code,
        },
        agent=agent,
        status_code=error.status_code,
    )
    page.headers.update(error.headers)
    return page


# --- pages and cookies ----------------------------------------------------------------------


def _language(request: Request, agent: SignedInAgent | None) -> str:
    return choose_language(
        request,
        user_locale=agent.locale if agent else None,
        tenant_locale=agent.tenant.locale if agent else None,
    )


def _secure_cookies(request: Request) -> bool:
    base_url: str = request.app.state.settings.base_url
    return base_url.startswith("https://")


def _language_links(request: Request) -> dict[str, str]:
    if request.method != "GET":
        return {language: f"/console?lang={language}" for language in LANGUAGES}
    links = {}
    for language in LANGUAGES:
        url = request.url.include_query_params(lang=language)
        links[language] = f"{url.path}?{url.query}"
    return links


def _page(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    agent: SignedInAgent | None,
    status_code: int = 200,
) -> HTMLResponse:
    language = _language(request, agent)
    # Read when the session was live: an error page is drawn after the rollback.
    presence: str | None = getattr(request.state, "console_presence", None)
    html = render(
        language,
        template,
        {
            "agent": agent,
            "csrf_token": agent.csrf_token if agent else None,
            "timezone": agent.tenant.timezone if agent else "Europe/Madrid",
            "language_links": _language_links(request),
            "version": __version__,
            # The presence switch of the top bar, for a user with an agent profile.
            "presence": presence,
            "presences": routing.PRESENCES,
            "here": _here(request),
            **context,
        },
    )
    response = HTMLResponse(html, status_code=status_code)
    # Pages hold customers' data: no shared caches, no framing, nothing from elsewhere.
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    if requested_language(request) is not None:
        response.set_cookie(
            LANGUAGE_COOKIE,
            language,
            max_age=365 * 86_400,
            httponly=True,
            samesite="lax",
            secure=_secure_cookies(request),
        )
    return response


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _here(request: Request) -> str:
    """The page a form on it comes back to (the presence switch): this console page."""
    if request.method != "GET" or not request.url.path.startswith("/console"):
        return "/console"
    return f"{request.url.path}?{request.url.query}" if request.url.query else request.url.path


def _console_path(value: str) -> str:
    """``value`` if it is a path of the console, else the inbox: never a redirect elsewhere."""
    if value.startswith("/console") and "//" not in value and "\\" not in value:
        return value
    return "/console"


def static_files() -> StaticFiles:
    """The console's stylesheet and images, served by the app at ``/static``."""
    return StaticFiles(directory=STATIC_DIR)


# --- who is asking --------------------------------------------------------------------------


async def _signed_in(request: Request, session: DbSession) -> SignedInAgent:
    agent = await service.signed_in_agent(session, request.cookies.get(SESSION_COOKIE))
    if agent is None:
        raise SignInRequired()
    request.state.console_agent = agent
    rate_limits(request.app).admit_console_user(agent.user_id)
    profile = await _agent_profile(session, agent)
    request.state.console_presence = profile.presence if profile is not None else None
    return agent


async def _agent_profile(session: AsyncSession, agent: SignedInAgent) -> RoutingAgent | None:
    """The user's routing profile (presence, skills), if they take conversations."""
    try:
        return await routing.get_agent(session, agent.tenant, agent.user_id)
    except NotFound:
        return None


def _sees_all(agent: SignedInAgent) -> bool:
    return agent.role in SEES_ALL_ROLES


async def _visibility(session: AsyncSession, agent: SignedInAgent) -> list[ColumnElement[bool]]:
    """The conditions that narrow a list of conversations to what ``agent`` may see."""
    if _sees_all(agent):
        return []
    return [await routing.visible_to(session, agent.tenant, agent.user_id)]


async def _can_see(session: AsyncSession, agent: SignedInAgent, conversation: Conversation) -> bool:
    return _sees_all(agent) or await routing.can_see_conversation(
        session, agent.tenant, conversation=conversation, user_id=agent.user_id
    )


async def _visible_conversation(
    session: AsyncSession, agent: SignedInAgent, conversation_id: str
) -> Conversation:
    """The conversation if ``agent`` may see it; ``NotFound`` (a 404 page) otherwise, the same
    answer as for an id of another tenant."""
    conversation = await conversations.get_conversation(session, agent.tenant, conversation_id)
    if not await _can_see(session, agent, conversation):
        raise NotFound(f"conversation {conversation_id} not found")
    return conversation


async def _visible_ids(
    session: AsyncSession, agent: SignedInAgent, conversation_ids: Iterable[str]
) -> set[str]:
    """Which of ``conversation_ids`` ``agent`` may see (one query)."""
    ids = sorted(set(conversation_ids))
    if _sees_all(agent) or not ids:
        return set(ids)
    rows, _ = await conversations.list_conversations(
        session,
        agent.tenant,
        where=[Conversation.id.in_(ids), *await _visibility(session, agent)],
        limit=len(ids),
    )
    return {row.id for row in rows}


Agent = Annotated[SignedInAgent, Depends(_signed_in, scope="function")]


async def _signed_in_form(
    request: Request, agent: Agent, csrf_token: Annotated[str | None, Form()] = None
) -> SignedInAgent:
    if not service.tokens_match(agent.csrf_token, csrf_token):
        raise ConsoleError(
            403,
            N_("This form has expired. Reload the page and try again."),
            back=_back_link(request) or "/console",
        )
    return agent


# The agent behind a form post that carried the session's CSRF token.
FormAgent = Annotated[SignedInAgent, Depends(_signed_in_form, scope="function")]

router = APIRouter(
    include_in_schema=False, route_class=ConsoleRoute, default_response_class=HTMLResponse
)


# --- signing in and out ---------------------------------------------------------------------


@router.get("/")
async def home(request: Request, session: DbSession) -> Response:
    agent = await service.signed_in_agent(session, request.cookies.get(SESSION_COOKIE))
    return _redirect("/console" if agent else "/login")


def _sign_in_page(
    request: Request,
    *,
    csrf_token: str,
    email: str = "",
    error: str | None = None,
    accounts: Sequence[service.Account] = (),
    status_code: int = 200,
) -> HTMLResponse:
    gettext = translations(_language(request, None)).gettext
    response = _page(
        request,
        "login.html",
        {
            "sign_in_csrf": csrf_token,
            "email": email,
            "error": gettext(error) if error else None,
            "accounts": accounts,
        },
        agent=None,
        status_code=status_code,
    )
    response.set_cookie(
        SIGN_IN_CSRF_COOKIE,
        csrf_token,
        max_age=3600,
        httponly=True,
        samesite="lax",
        secure=_secure_cookies(request),
    )
    return response


@router.get("/login")
async def sign_in_form(request: Request, session: DbSession) -> Response:
    if await service.signed_in_agent(session, request.cookies.get(SESSION_COOKIE)):
        return _redirect("/console")
    csrf_token = request.cookies.get(SIGN_IN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    return _sign_in_page(request, csrf_token=csrf_token)


@router.post("/login")
async def sign_in(
    request: Request,
    session: DbSession,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=200)] = "",
    tenant_id: Annotated[str, Form(max_length=32)] = "",
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    expected = request.cookies.get(SIGN_IN_CSRF_COOKIE)
    if expected is None or not service.tokens_match(expected, csrf_token):
        raise ConsoleError(
            403, N_("This form has expired. Reload the page and try again."), back="/login"
        )
    email = email.strip().lower()
    if not email or not password:
        return _sign_in_page(
            request,
            csrf_token=expected,
            email=email,
            error=N_("Type your email and your password."),
            status_code=422,
        )
    accounts = await service.accounts_for(session, email=email, password=password)
    if tenant_id:
        accounts = [account for account in accounts if account.tenant_id == tenant_id]
    if not accounts:
        log.info("console.sign_in_refused")
        return _sign_in_page(
            request,
            csrf_token=expected,
            email=email,
            error=N_("The email or the password is not right."),
            status_code=401,
        )
    if len(accounts) > 1:
        return _sign_in_page(request, csrf_token=expected, email=email, accounts=accounts)
    token = await service.sign_in(session, account=accounts[0])
    log.info("console.signed_in", user_id=accounts[0].user_id, tenant_id=accounts[0].tenant_id)
    response = _redirect("/console")
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(SESSION_LIFETIME.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=_secure_cookies(request),
    )
    response.delete_cookie(SIGN_IN_CSRF_COOKIE)
    return response


@router.post("/logout")
async def sign_out(session: DbSession, agent: FormAgent) -> Response:
    await service.sign_out(session, agent=agent)
    response = _redirect("/login")
    response.delete_cookie(SESSION_COOKIE)
    return response


# --- inbox ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CustomerCard:
    """How a customer is named on a page: their name, else an identity, else nothing."""

    id: str
    name: str | None
    detail: str | None


async def _customer_cards(
    session: AsyncSession, tenant: TenantContext, customer_ids: Iterable[str]
) -> dict[str, CustomerCard]:
    # One lookup per customer: customers.service has no batch read yet (a page holds <= 25).
    cards = {}
    for customer_id in sorted(set(customer_ids)):
        customer = await customers.get_customer(session, tenant, customer_id)
        detail = None
        if not customer.name:
            identities = await customers.identities_of(session, tenant, customer_id)
            detail = identities[0].value if identities else None
        cards[customer_id] = CustomerCard(id=customer.id, name=customer.name, detail=detail)
    return cards


async def _user_names(session: AsyncSession, tenant: TenantContext) -> dict[str, str]:
    return {user.id: user.name for user in await core.list_users(session, tenant=tenant)}


@router.get("/console")
async def inbox(
    request: Request,
    session: DbSession,
    agent: Agent,
    view: Annotated[str, Query(max_length=16)] = "all",
    status: Annotated[str, Query(max_length=16)] = "open",
    channel: Annotated[str, Query(max_length=16)] = "",
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    if view not in INBOX_VIEWS:
        raise ConsoleError(422, N_("There is no such inbox view."), back="/console")
    if status not in INBOX_FILTERS:
        raise ConsoleError(422, N_("There is no such inbox filter."), back="/console")
    tenant = agent.tenant
    tenant_channels = await channels.list_channels(session, tenant)
    channel_kinds = [kind for kind in CHANNEL_KINDS if any(c.kind == kind for c in tenant_channels)]
    if view == "channel":
        channel = channel or (channel_kinds[0] if channel_kinds else "")
        if channel and channel not in CHANNEL_KINDS:
            raise ConsoleError(422, N_("There is no such channel."), back="/console?view=channel")
    where = await _visibility(session, agent)
    queue_ids: set[str] = set()
    if view == "queues":
        queue_ids = await routing.agent_queue_ids(session, tenant, agent.user_id)
        where.append(routing.in_queues(tenant, queue_ids))
    rows: Sequence[Conversation]
    next_cursor = None
    if view == "at_risk":
        risky = await sla.at_risk(session, tenant, where=where, limit=AT_RISK_PAGE_SIZE)
        order = {conversation_id: n for n, (conversation_id, _) in enumerate(risky)}
        found, _ = await conversations.list_conversations(
            session, tenant, where=[Conversation.id.in_(list(order))], limit=len(order) or 1
        )
        rows = sorted(found, key=lambda c: order[c.id]) if order else []
    elif view == "channel" and not channel:
        rows = []
    else:
        rows, next_cursor = await conversations.list_conversations(
            session,
            tenant,
            status=None if status == "all" else status,
            assignee_id=agent.user_id if view == "mine" else None,
            unassigned=view == "unassigned",
            channel_kind=channel if view == "channel" else None,
            cursor=cursor or None,
            limit=INBOX_PAGE_SIZE,
            where=where,
        )
    ids = [c.id for c in rows]
    kinds = await conversations.channel_kinds_for(session, tenant, rows)
    cards = await _customer_cards(session, tenant, (c.customer_id for c in rows))
    users = await _user_names(session, tenant)
    slas = await sla.sla_states(session, tenant, ids)
    queue_names = {queue.id: queue.name for queue in await routing.list_queues(session, tenant)}
    in_queue = await routing.queues_for(session, tenant, ids)

    def link(**changes: str | None) -> str:
        query: dict[str, str | None] = {
            "view": view,
            "status": status,
            "channel": channel if view == "channel" else "",
        }
        query.update(changes)
        return "/console?" + urlencode({k: v for k, v in query.items() if v})

    return _page(
        request,
        "inbox.html",
        {
            "nav": "inbox",
            "view": view,
            "views": [(name, link(view=name, channel=None, cursor=None)) for name in INBOX_VIEWS],
            "status": status,
            "filters": [(name, link(status=name, cursor=None)) for name in INBOX_FILTERS],
            "channel": channel,
            "channel_links": [(kind, link(channel=kind)) for kind in channel_kinds],
            "no_queues": view == "queues" and not queue_ids,
            "conversations": [
                {
                    "conversation": c,
                    "customer": cards[c.customer_id],
                    "channel_kinds": _distinct(kinds.get(ch, "") for ch in c.channel_ids),
                    "assignee": users.get(c.assignee_id) if c.assignee_id else None,
                    "queue": queue_names.get(in_queue.get(c.id) or ""),
                    "sla": slas[c.id],
                    "sla_due": _sla_due(slas[c.id]),
                }
                for c in rows
            ],
            "next_page": link(cursor=next_cursor) if next_cursor else None,
            "first_page": link(cursor=None) if cursor else None,
        },
        agent=agent,
    )


def _sla_due(view: sla.SlaView) -> datetime | None:
    """When the nearest running target falls due, as a moment to say "in 5 minutes" of (the
    remaining time counts business hours under such a policy, so it is not a wall-clock date)."""
    if view.remaining_seconds is None or view.state in (None, "met"):
        return None
    return now() + timedelta(seconds=view.remaining_seconds)


def _distinct(values: Iterable[str]) -> list[str]:
    return [value for value in dict.fromkeys(values) if value]


# --- one conversation -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CannedChoice:
    """A canned response as the composer offers it: rendered for this conversation."""

    id: str
    shortcut: str
    title: str
    text: str


async def _canned_choices(
    session: AsyncSession,
    agent: SignedInAgent,
    conversation: Conversation,
    *,
    languages: Sequence[str | None],
) -> list[CannedChoice]:
    responses = canned.pick_for(
        await canned.list_responses(session, agent.tenant), languages=languages
    )
    if not responses:
        return []
    context = await canned.context_for(
        session, agent.tenant, conversation=conversation, agent_name=agent.name
    )
    return [
        CannedChoice(
            id=r.id, shortcut=r.shortcut, title=r.title, text=canned.render(r.text, context)
        )
        for r in responses
    ]


def _local_input(moment: datetime, zone: ZoneInfo) -> str:
    """``moment`` as a ``datetime-local`` field's value in the tenant's zone."""
    return moment.astimezone(zone).strftime("%Y-%m-%dT%H:%M")


@router.get("/console/conversations/{conversation_id}")
async def conversation_page(
    request: Request,
    conversation_id: str,
    session: DbSession,
    agent: Agent,
    after: Annotated[str | None, Query(max_length=200)] = None,
    canned_id: Annotated[str | None, Query(alias="canned", max_length=32)] = None,
) -> Response:
    tenant = agent.tenant
    conversation = await _visible_conversation(session, agent, conversation_id)
    messages, later = await conversations.messages_of(
        session, tenant, conversation.id, after=after or None, limit=MESSAGES_PAGE_SIZE
    )
    customer = await customers.get_customer(session, tenant, conversation.customer_id)
    identities = await customers.identities_of(session, tenant, customer.id)
    consents = customers.current_consents(
        await customers.consent_history(session, tenant, customer.id)
    )
    customer_conversations, _ = await conversations.list_conversations(
        session,
        tenant,
        customer_id=customer.id,
        limit=SIDEBAR_CONVERSATIONS + 1,
        where=await _visibility(session, agent),
    )
    activity = await customers.recent_timeline_events(
        session, tenant, customer.id, limit=SIDEBAR_ACTIVITY
    )
    tenant_channels = await channels.list_channels(session, tenant)
    users = await _user_names(session, tenant)
    options = await conversations.reply_options(session, tenant, conversation)
    language = _language(request, agent)
    choices = await _canned_choices(
        session, agent, conversation, languages=[customer.language, language, tenant.locale]
    )
    draft = ""
    if canned_id:
        # Without JavaScript the picker reloads the page with the response in the composer.
        response = await canned.get_response(session, tenant, canned_id)
        context = await canned.context_for(
            session, tenant, conversation=conversation, agent_name=agent.name
        )
        draft = canned.render(response.text, context)
    takes_conversations = request.state.console_presence is not None
    active = conversation.status in ACTIVE_STATUSES
    sees_all = _sees_all(agent)
    queue_id = await routing.queue_of(session, tenant, conversation.id)
    queues = await routing.list_queues(session, tenant)
    zone = ZoneInfo(tenant.timezone)
    moment = now()
    decisions = list(await routing.routing_log(session, tenant, conversation.id))
    sla_view = (await sla.sla_states(session, tenant, [conversation.id]))[conversation.id]
    return _page(
        request,
        "conversation.html",
        {
            "nav": "inbox",
            "conversation": conversation,
            "messages": messages,
            "later_messages": f"{request.url.path}?{urlencode({'after': later})}"
            if later
            else None,
            "customer": customer,
            "identities": identities,
            "consents": consents,
            "other_conversations": [
                other for other in customer_conversations if other.id != conversation.id
            ][:SIDEBAR_CONVERSATIONS],
            "activity": activity,
            "channels": {channel.id: channel for channel in tenant_channels},
            "reply_options": options,
            "default_channel_id": next((o.channel_id for o in options if o.default), None),
            "last_channel_id": conversation.last_channel_id,
            "unavailable_reasons": UNAVAILABLE_REASONS,
            "canned": choices,
            "draft": draft,
            "users": users,
            "status_actions": STATUS_ACTIONS,
            "sla": sla_view,
            "sla_due": _sla_due(sla_view),
            "queue_name": next((q.name for q in queues if q.id == queue_id), None),
            "assignee_name": users.get(conversation.assignee_id or ""),
            # Supervisors assign and transfer anything; an agent transfers what is theirs, and
            # takes what nobody has yet.
            "can_transfer": active and (sees_all or conversation.assignee_id == agent.user_id),
            "can_take": active
            and takes_conversations
            and conversation.assignee_id != agent.user_id
            and (sees_all or conversation.assignee_id is None),
            "transfer_agents": [
                (row.id, user.name, row.presence)
                for row, user in await routing.list_agents(session, tenant)
            ],
            "transfer_queues": [(queue.id, queue.name) for queue in queues],
            "snooze_min": _local_input(moment, zone),
            "snooze_default": _local_input(
                (moment.astimezone(zone) + timedelta(days=1)).replace(
                    hour=9, minute=0, second=0, microsecond=0
                ),
                zone,
            ),
            "routing_decisions": decisions[-SIDEBAR_ROUTING:],
        },
        agent=agent,
    )


@router.post("/console/conversations/{conversation_id}/reply")
async def reply(
    request: Request,
    conversation_id: str,
    session: DbSession,
    agent: FormAgent,
    text: Annotated[str, Form()] = "",
    channel_id: Annotated[str, Form(max_length=32)] = "",
    private: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    back = f"/console/conversations/{conversation_id}"
    conversation = await _visible_conversation(session, agent, conversation_id)
    text = text.strip()
    if not text:
        raise ConsoleError(422, N_("Write a message before sending it."), back=back)
    if len(text) > MAX_REPLY_LENGTH:
        raise ConsoleError(
            422, N_("The message is too long: 20,000 characters at most."), back=back
        )
    is_note = bool(private)
    if not is_note:
        options = await conversations.reply_options(session, agent.tenant, conversation)
        wanted = channel_id or next((o.channel_id for o in options if o.default), "")
        chosen = next((o for o in options if o.channel_id == wanted), None)
        # A channel that is no option (a phone line, another tenant's) is the service's to refuse.
        if chosen is not None and not chosen.available and chosen.reason is not None:
            gettext = translations(_language(request, agent)).gettext
            words = VOCABULARY["channel"].get(chosen.kind, chosen.kind)
            kind = gettext(words)
            why = gettext(UNAVAILABLE_REASONS[chosen.reason])
            raise ConsoleError(422, f"{kind} · {chosen.name}: {why}", back=back)
        channel_id = wanted
    await conversations.reply(
        session,
        agent.tenant,
        conversation_id=conversation.id,
        text=text,
        attachments=[],
        private=is_note,
        channel_id=None if is_note else (channel_id or None),
        author_user_id=agent.user_id,
    )
    return _redirect(f"{back}#latest")


@router.post("/console/conversations/{conversation_id}/status")
async def change_status(
    conversation_id: str,
    session: DbSession,
    agent: FormAgent,
    status: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    back = f"/console/conversations/{conversation_id}"
    conversation = await _visible_conversation(session, agent, conversation_id)
    if status not in STATUS_ACTIONS:
        raise ConsoleError(422, N_("Choose open, pending or resolved."), back=back)
    await conversations.update_conversation(
        session, agent.tenant, conversation_id=conversation.id, changes={"status": status}
    )
    return _redirect(back)


def _parse_local(value: str, zone: ZoneInfo) -> datetime | None:
    """A ``datetime-local`` value (``2026-11-24T09:00``) in the tenant's zone, as UTC."""
    try:
        local = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if local.tzinfo is not None:
        return None
    try:
        return local.replace(tzinfo=zone).astimezone(UTC)
    except OverflowError:  # the first or last day of the calendar
        return None


@router.post("/console/conversations/{conversation_id}/snooze")
async def snooze(
    conversation_id: str,
    session: DbSession,
    agent: FormAgent,
    until: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    """Snooze until a moment typed in the tenant's time zone (the zone the page shows)."""
    back = f"/console/conversations/{conversation_id}"
    conversation = await _visible_conversation(session, agent, conversation_id)
    moment = _parse_local(until, ZoneInfo(agent.tenant.timezone)) if until else None
    if moment is None:
        raise ConsoleError(422, N_("Choose the day and time to snooze until."), back=back)
    if moment <= now():
        raise ConsoleError(422, N_("Choose a moment in the future to snooze until."), back=back)
    await conversations.update_conversation(
        session,
        agent.tenant,
        conversation_id=conversation.id,
        changes={"status": "snoozed", "snoozed_until": moment},
    )
    return _redirect(back)


@router.post("/console/conversations/{conversation_id}/transfer")
async def transfer(
    conversation_id: str,
    session: DbSession,
    agent: FormAgent,
    target: Annotated[str, Form(max_length=40)] = "",
    note: Annotated[str, Form()] = "",
) -> Response:
    """Assign to an agent, or put in a queue's line, with a note (routing's ``transfer``)."""
    back = f"/console/conversations/{conversation_id}"
    conversation = await _visible_conversation(session, agent, conversation_id)
    kind, _, target_id = target.partition(":")
    if kind not in ("agent", "queue") or not target_id:
        raise ConsoleError(422, N_("Choose an agent or a queue."), back=back)
    note = note.strip()
    if len(note) > MAX_NOTE_LENGTH:
        raise ConsoleError(422, N_("The note is too long: 5,000 characters at most."), back=back)
    await routing.transfer(
        session,
        agent.tenant,
        conversation_id=conversation.id,
        agent_id=target_id if kind == "agent" else None,
        queue_id=target_id if kind == "queue" else None,
        note=note,
        by_user_id=agent.user_id,
        by_agent=not _sees_all(agent),
    )
    # An agent who handed it to another queue may no longer see it.
    return _redirect(back if await _can_see(session, agent, conversation) else "/console")


@router.post("/console/conversations/{conversation_id}/take")
async def take(conversation_id: str, session: DbSession, agent: FormAgent) -> Response:
    """The agent assigns the conversation to themselves (it waits in one of their queues)."""
    back = f"/console/conversations/{conversation_id}"
    conversation = await _visible_conversation(session, agent, conversation_id)
    if await _agent_profile(session, agent) is None:
        raise ConsoleError(409, N_("Only agents take conversations."), back=back)
    if conversation.assignee_id == agent.user_id:
        return _redirect(back)
    if conversation.assignee_id is not None and not _sees_all(agent):
        raise ConsoleError(409, N_("Someone else already has this conversation."), back=back)
    await routing.transfer(
        session,
        agent.tenant,
        conversation_id=conversation.id,
        agent_id=agent.user_id,
        queue_id=None,
        note="",
        by_user_id=agent.user_id,
        by_agent=False,
    )
    return _redirect(back)


# --- presence and calls ---------------------------------------------------------------------


@router.post("/console/presence")
async def change_presence(
    session: DbSession,
    agent: FormAgent,
    status: Annotated[str, Form(max_length=16)] = "",
    next_page: Annotated[str, Form(alias="next", max_length=2000)] = "/console",
) -> Response:
    """The presence switch of the top bar: online, away or offline (routing's presence)."""
    back = _console_path(next_page)
    if status not in routing.PRESENCES:
        raise ConsoleError(422, N_("Choose online, away or offline."), back=back)
    if await _agent_profile(session, agent) is None:
        raise ConsoleError(409, N_("Only agents have a presence."), back=back)
    await routing.set_presence(session, agent.tenant, agent_id=agent.user_id, status=status)
    return _redirect(back)


async def _takes_calls(session: AsyncSession, agent: SignedInAgent) -> bool:
    queues = await routing.list_queues(session, agent.tenant, visible_to=agent.user_id)
    return any("phone" in queue.channel_kinds for queue in queues)


@router.get("/console/calls/{message_id}")
async def call_pop(request: Request, message_id: str, session: DbSession, agent: Agent) -> Response:
    """The screen pop of a ringing call (a fragment the page shows over itself): who calls,
    with links to their conversation and their 360° view. A 404 for anyone who may not take
    the call (see the module docstring) and once the call stopped ringing."""
    tenant = agent.tenant
    call = await get_owned(session, Message, message_id, tenant, what="call")
    if call.kind != "call" or (call.data or {}).get("status") != "ringing":
        raise NotFound(f"call {message_id} not found")
    conversation = await conversations.get_conversation(session, tenant, call.conversation_id)
    can_open = await _can_see(session, agent, conversation)
    if not can_open and not await _takes_calls(session, agent):
        raise NotFound(f"call {message_id} not found")
    customer = await customers.get_customer(session, tenant, conversation.customer_id)
    caller = (call.address or "").split(":", 1)[-1]
    return _page(
        request,
        "call_pop.html",
        {
            "call": call,
            "caller": caller,
            "customer": customer,
            "conversation": conversation if can_open else None,
        },
        agent=agent,
    )


# --- customers ------------------------------------------------------------------------------


@router.get("/console/customers")
async def customer_search(
    request: Request,
    session: DbSession,
    agent: Agent,
    q: Annotated[str, Query(max_length=200)] = "",
    before: Annotated[str | None, Query(max_length=32)] = None,
) -> Response:
    q = q.strip()
    rows = list(
        await customers.search_customers(
            session, agent.tenant, q=q or None, before=before or None, limit=CUSTOMERS_PAGE_SIZE + 1
        )
    )
    next_before = rows[CUSTOMERS_PAGE_SIZE - 1].id if len(rows) > CUSTOMERS_PAGE_SIZE else None
    rows = rows[:CUSTOMERS_PAGE_SIZE]
    # One lookup per customer: customers.service has no batch read of identities yet.
    identities = {c.id: await customers.identities_of(session, agent.tenant, c.id) for c in rows}
    return _page(
        request,
        "customers.html",
        {
            "nav": "customers",
            "q": q,
            "customers": [{"customer": c, "identities": identities[c.id]} for c in rows],
            "next_page": f"/console/customers?{urlencode({'q': q, 'before': next_before})}"
            if next_before
            else None,
        },
        agent=agent,
    )


@router.get("/console/customers/{customer_id}")
async def customer_page(
    request: Request, customer_id: str, session: DbSession, agent: Agent
) -> Response:
    customer = await customers.get_customer(session, agent.tenant, customer_id)
    if customer.merged_into_id is not None:
        survivor = await customers.live_customer(session, agent.tenant, customer_id)
        return _redirect(f"/console/customers/{survivor.id}")
    view = await customer_360(session, agent.tenant, customer)
    if not _sees_all(agent):
        # An agent sees the customer, and of their conversations only those they may open.
        visible = await _visible_ids(
            session,
            agent,
            [c.id for c in view.open_conversations]
            + [item.conversation_id for item in view.timeline if item.conversation_id],
        )
        view = view.model_copy(
            update={
                "open_conversations": [c for c in view.open_conversations if c.id in visible],
                "timeline": [
                    item
                    for item in view.timeline
                    if item.conversation_id is None or item.conversation_id in visible
                ],
            }
        )
    # Shown on the page, with the administrator's export and erase buttons (privacy_pages).
    erasure = await audit.latest(
        session,
        agent.tenant.id,
        action="customer.erased",
        subject_type="customer",
        subject_ids=[customer.id],
    )
    return _page(
        request,
        "customer.html",
        {
            "nav": "customers",
            "customer": view,
            "erasure": erasure,
            "money": functools.partial(format_money, language=_language(request, agent)),
        },
        agent=agent,
    )
