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
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import structlog
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles

from hilos import __version__
from hilos.channels import service as channels
from hilos.channels.kinds import REPLY_IDENTITY_KINDS
from hilos.channels.models import Channel
from hilos.conversations import service as conversations
from hilos.conversations.models import Conversation, Message
from hilos.core import service as core
from hilos.core.deps import DbSession
from hilos.core.errors import HilosError, NotFound
from hilos.core.tenancy import TenantContext
from hilos.customers import service as customers
from hilos.customers.api import customer_360
from hilos.customers.models import Identity
from hilos.web import service
from hilos.web.i18n import (
    LANGUAGE_COOKIE,
    LANGUAGES,
    N_,
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
# The inbox's tabs; "all" is every conversation that was not merged away.
INBOX_FILTERS = ("open", "pending", "snoozed", "resolved", "all")
# What an agent can set from the conversation page (snoozing needs a date: a later issue).
STATUS_ACTIONS = ("open", "pending", "resolved")
STATIC_DIR = Path(__file__).resolve().parent / "static"


# --- errors ---------------------------------------------------------------------------------


class ConsoleError(Exception):
    """A console request refused with ``status_code``; drawn as a page by the app's handler.

    ``message`` is English source text: the page shows it in the reader's language when the
    catalog has it (the console's own messages), as written otherwise (services' messages).
    """

    def __init__(self, status_code: int, message: str, *, back: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.back = back


class SignInRequired(ConsoleError):
    def __init__(self) -> None:
        super().__init__(303, N_("Sign in to continue."))


_ERROR_TITLES = {
    400: N_("This request could not be understood"),
    403: N_("Not allowed"),
    404: N_("Not found"),
    409: N_("That cannot be done now"),
    422: N_("Please check what you sent"),
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
                    error.status_code, error.message, back=_back_link(request)
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
    return _page(
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
    html = render(
        language,
        template,
        {
            "agent": agent,
            "csrf_token": agent.csrf_token if agent else None,
            "timezone": agent.tenant.timezone if agent else "Europe/Madrid",
            "language_links": _language_links(request),
            "version": __version__,
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


def static_files() -> StaticFiles:
    """The console's stylesheet and images, served by the app at ``/static``."""
    return StaticFiles(directory=STATIC_DIR)


# --- who is asking --------------------------------------------------------------------------


async def _signed_in(request: Request, session: DbSession) -> SignedInAgent:
    agent = await service.signed_in_agent(session, request.cookies.get(SESSION_COOKIE))
    if agent is None:
        raise SignInRequired()
    request.state.console_agent = agent
    return agent


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
    status: Annotated[str, Query(max_length=16)] = "open",
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    if status not in INBOX_FILTERS:
        raise ConsoleError(422, N_("There is no such inbox filter."), back="/console")
    rows, next_cursor = await conversations.list_conversations(
        session,
        agent.tenant,
        status=None if status == "all" else status,
        cursor=cursor or None,
        limit=INBOX_PAGE_SIZE,
    )
    kinds = await conversations.channel_kinds_for(session, agent.tenant, rows)
    cards = await _customer_cards(session, agent.tenant, (c.customer_id for c in rows))
    users = await _user_names(session, agent.tenant)
    return _page(
        request,
        "inbox.html",
        {
            "nav": "inbox",
            "status": status,
            "filters": INBOX_FILTERS,
            "conversations": [
                {
                    "conversation": c,
                    "customer": cards[c.customer_id],
                    "channel_kinds": _distinct(kinds.get(ch, "") for ch in c.channel_ids),
                    "assignee": users.get(c.assignee_id) if c.assignee_id else None,
                }
                for c in rows
            ],
            "next_page": f"/console?{urlencode({'status': status, 'cursor': next_cursor})}"
            if next_cursor
            else None,
            "first_page": f"/console?{urlencode({'status': status})}" if cursor else None,
        },
        agent=agent,
    )


def _distinct(values: Iterable[str]) -> list[str]:
    return [value for value in dict.fromkeys(values) if value]


# --- one conversation -----------------------------------------------------------------------


def _reply_channels(
    all_channels: Sequence[Channel], conversation: Conversation, identities: Sequence[Identity]
) -> list[Channel]:
    """Channels worth offering for a reply: the conversation's own, then any other channel
    that can reach one of the customer's identities (the service still has the last word)."""
    held = {identity.kind for identity in identities}
    usable = [
        channel
        for channel in all_channels
        if channel.disabled_at is None
        and REPLY_IDENTITY_KINDS.get(channel.kind)
        and (
            channel.id in conversation.channel_ids or held & set(REPLY_IDENTITY_KINDS[channel.kind])
        )
    ]
    return sorted(usable, key=lambda channel: channel.id not in conversation.channel_ids)


def _latest_inbound_channel(messages: Sequence[Message], conversation: Conversation) -> str | None:
    for message in reversed(messages):
        if message.direction == "inbound" and message.channel_id:
            return message.channel_id
    return conversation.last_channel_id


@router.get("/console/conversations/{conversation_id}")
async def conversation_page(
    request: Request,
    conversation_id: str,
    session: DbSession,
    agent: Agent,
    after: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    tenant = agent.tenant
    conversation = await conversations.get_conversation(session, tenant, conversation_id)
    messages, later = await conversations.messages_of(
        session, tenant, conversation.id, after=after or None, limit=MESSAGES_PAGE_SIZE
    )
    customer = await customers.get_customer(session, tenant, conversation.customer_id)
    identities = await customers.identities_of(session, tenant, customer.id)
    consents = customers.current_consents(
        await customers.consent_history(session, tenant, customer.id)
    )
    customer_conversations, _ = await conversations.list_conversations(
        session, tenant, customer_id=customer.id, limit=SIDEBAR_CONVERSATIONS + 1
    )
    activity = await customers.recent_timeline_events(
        session, tenant, customer.id, limit=SIDEBAR_ACTIVITY
    )
    tenant_channels = await channels.list_channels(session, tenant)
    users = await _user_names(session, tenant)
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
            "reply_channels": _reply_channels(tenant_channels, conversation, identities),
            "default_channel_id": _latest_inbound_channel(messages, conversation),
            "users": users,
            "status_actions": STATUS_ACTIONS,
        },
        agent=agent,
    )


@router.post("/console/conversations/{conversation_id}/reply")
async def reply(
    conversation_id: str,
    session: DbSession,
    agent: FormAgent,
    text: Annotated[str, Form()] = "",
    channel_id: Annotated[str, Form(max_length=32)] = "",
    private: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    back = f"/console/conversations/{conversation_id}"
    text = text.strip()
    if not text:
        raise ConsoleError(422, N_("Write a message before sending it."), back=back)
    if len(text) > MAX_REPLY_LENGTH:
        raise ConsoleError(
            422, N_("The message is too long: 20,000 characters at most."), back=back
        )
    is_note = bool(private)
    await conversations.reply(
        session,
        agent.tenant,
        conversation_id=conversation_id,
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
    if status not in STATUS_ACTIONS:
        raise ConsoleError(422, N_("Choose open, pending or resolved."), back=back)
    await conversations.update_conversation(
        session, agent.tenant, conversation_id=conversation_id, changes={"status": status}
    )
    return _redirect(back)


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
    return _page(
        request,
        "customer.html",
        {"nav": "customers", "customer": view},
        agent=agent,
    )
