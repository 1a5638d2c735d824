"""Console pages of privacy, for administrators: a customer's data exported or erased from their
360° page, and the audit log at ``/console/audit-log``.

They do what ``GET /v1/customers/{id}/export``, ``POST /v1/customers/{id}/erase`` and
``GET /v1/audit-log`` do, through the same services, as the signed-in administrator (the audit
log names them as a console user). Another role gets the 403 page; another tenant's customer
is the 404 page.

- Export is a form (it writes an audit entry, so it carries the CSRF token like every form);
  the answer is the JSON document as a download.
- Erase first shows what will happen and asks for a reason and an explicit confirmation; the
  erasure then runs in the request's one transaction and the 360° page says it was done.
- The log page filters by action (or family), actor, and a range of days in the tenant's time
  zone, newest first, a page at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from hilos.core import service as core
from hilos.core.deps import DbSession
from hilos.customers import service as customers
from hilos.privacy import audit
from hilos.privacy.erase import MAX_REASON_LENGTH, erase_customer
from hilos.privacy.export import export_customer
from hilos.privacy.models import AuditEntry
from hilos.web.console import Agent, ConsoleError, ConsoleRoute, FormAgent, _language, _page
from hilos.web.i18n import N_, translations
from hilos.web.service import SignedInAgent

AUDIT_LOG_PATH = "/console/audit-log"
AUDIT_PAGE_SIZE = 50

# The actions the log's filter offers, with how a person reads them.
ACTION_LABELS: dict[str, str] = {
    "api_key.created": N_("API key created"),
    "api_key.revoked": N_("API key revoked"),
    "user.created": N_("User created"),
    "tenant.updated": N_("Business settings changed"),
    "blocked_value.created": N_("Value blocked"),
    "blocked_value.deleted": N_("Value unblocked"),
    "customer.merged": N_("Customers merged"),
    "customer.unmerged": N_("Merge undone"),
    "customer.exported": N_("Customer data exported"),
    "customer.erased": N_("Customer data erased"),
    "customers.imported": N_("Customers imported"),
    "match_suggestion.accepted": N_("Possible duplicate accepted"),
    "match_suggestion.rejected": N_("Possible duplicate rejected"),
    "matching.settings_updated": N_("Duplicate thresholds changed"),
    "matching.trained": N_("Duplicate model trained"),
    "matching.deduplicated": N_("Duplicates merged in bulk"),
    # Every other admin or supervisor change (channels, queues, SLA policies...), as a family.
    "settings.*": N_("Settings changed"),
}
ACTOR_LABELS: dict[str, str] = {
    "system": N_("Hilos (automatic)"),
    "cli": N_("Command line"),
}


def _admin(agent: SignedInAgent) -> SignedInAgent:
    if agent.role != "admin":
        raise ConsoleError(403, N_("Only administrators can do this."), back=None)
    return agent


async def _admin_page(agent: Agent) -> SignedInAgent:
    return _admin(agent)


async def _admin_form(agent: FormAgent) -> SignedInAgent:
    return _admin(agent)


Admin = Annotated[SignedInAgent, Depends(_admin_page, scope="function")]
# An administrator's form post that carried the session's CSRF token.
FormAdmin = Annotated[SignedInAgent, Depends(_admin_form, scope="function")]

router = APIRouter(
    include_in_schema=False, route_class=ConsoleRoute, default_response_class=HTMLResponse
)


def _describe_action(action: str, gettext: Callable[[str], str]) -> str:
    if action in ACTION_LABELS:
        return gettext(ACTION_LABELS[action])
    if action.startswith("settings."):
        return f"{gettext(ACTION_LABELS['settings.*'])}: {action.removeprefix('settings.')}"
    return action


def actor_of(agent: SignedInAgent) -> audit.Actor:
    return audit.Actor.user(agent.tenant.id, user_id=agent.user_id, role=agent.role)


async def erasure_of(
    session: AsyncSession, agent: SignedInAgent, customer_id: str
) -> AuditEntry | None:
    """The erasure of this customer, if it was erased (for the 360° page)."""
    return await audit.latest(
        session,
        agent.tenant.id,
        action="customer.erased",
        subject_type="customer",
        subject_ids=[customer_id],
    )


# --- a customer's export and erasure ------------------------------------------------------------


@router.post("/console/customers/{customer_id}/export")
async def export_download(customer_id: str, session: DbSession, agent: FormAdmin) -> Response:
    document = await export_customer(
        session, agent.tenant, actor_of(agent), customer_id=customer_id
    )
    return JSONResponse(
        document,
        headers={
            "Content-Disposition": (
                f'attachment; filename="customer-{document["customer_id"]}.json"'
            ),
            "Cache-Control": "no-store",
        },
    )


async def _erase_page(
    request: Request,
    session: AsyncSession,
    agent: SignedInAgent,
    customer_id: str,
    *,
    reason: str = "",
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    customer = await customers.live_customer(session, agent.tenant, customer_id)
    if customer.id != customer_id:
        return RedirectResponse(f"/console/customers/{customer.id}/erase", status_code=303)
    erasure = await erasure_of(session, agent, customer.id)
    gettext = translations(_language(request, agent)).gettext
    return _page(
        request,
        "customer_erase.html",
        {
            "nav": "customers",
            "customer": customer,
            "erasure": erasure,
            "reason": reason,
            "max_reason": MAX_REASON_LENGTH,
            "error": gettext(error) if error else None,
        },
        agent=agent,
        status_code=status_code,
    )


@router.get("/console/customers/{customer_id}/erase")
async def erase_form(
    request: Request, customer_id: str, session: DbSession, agent: Admin
) -> Response:
    return await _erase_page(request, session, agent, customer_id)


@router.post("/console/customers/{customer_id}/erase")
async def erase(
    request: Request,
    customer_id: str,
    session: DbSession,
    agent: FormAdmin,
    reason: Annotated[str, Form(max_length=MAX_REASON_LENGTH)] = "",
    confirm: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    reason = reason.strip()
    if confirm != "yes":
        return await _erase_page(
            request,
            session,
            agent,
            customer_id,
            reason=reason,
            error=N_("Tick the box to confirm that the erasure cannot be undone."),
            status_code=422,
        )
    result = await erase_customer(
        session, agent.tenant, actor_of(agent), customer_id=customer_id, reason=reason or None
    )
    return RedirectResponse(f"/console/customers/{result.customer_id}", status_code=303)


# --- the audit log --------------------------------------------------------------------------------


def _day(value: str) -> date | None:
    if not value.strip():
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError as error:
        raise ConsoleError(
            422, N_("Write the dates as year-month-day."), back=AUDIT_LOG_PATH
        ) from error


def _start_of(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=zone)


def _actor_names(users: Sequence[Any], keys: Sequence[Any], gettext: Any) -> dict[str, str]:
    names = {user.id: user.name for user in users}
    key_label = gettext("API key")
    names.update({key.id: f"{key_label} {key.name} ({key.prefix}…)" for key in keys})
    names.update({kind: gettext(label) for kind, label in ACTOR_LABELS.items()})
    return names


def _describe_actor(entry: AuditEntry, names: dict[str, str]) -> str:
    if entry.actor_type in ACTOR_LABELS:
        return names[entry.actor_type]
    if entry.actor_user_id and entry.actor_user_id in names:
        who = names[entry.actor_user_id]
        if entry.actor_key_id:
            who += f" · {names.get(entry.actor_key_id, entry.actor_key_id)}"
        return who
    if entry.actor_key_id:
        return names.get(entry.actor_key_id, entry.actor_key_id)
    return entry.actor_user_id or entry.actor_type


def _describe_details(details: dict[str, Any]) -> str:
    parts = []
    for key, value in sorted(details.items()):
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in sorted(value.items()))
        elif isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        parts.append(f"{key}: {value}")
    return " · ".join(parts)


@router.get(AUDIT_LOG_PATH)
async def audit_log_page(
    request: Request,
    session: DbSession,
    agent: Admin,
    action: Annotated[str, Query(max_length=64)] = "",
    actor: Annotated[str, Query(max_length=32)] = "",
    since: Annotated[str, Query(max_length=10)] = "",
    until: Annotated[str, Query(max_length=10)] = "",
    cursor: Annotated[str, Query(max_length=32)] = "",
) -> Response:
    tenant = agent.tenant
    zone = ZoneInfo(tenant.timezone)
    first_day, last_day = _day(since), _day(until)
    if first_day and last_day and first_day > last_day:
        raise ConsoleError(
            422, N_("The first day must not be after the last one."), back=AUDIT_LOG_PATH
        )
    entries, next_cursor = await audit.list_entries(
        session,
        tenant,
        audit.AuditFilters(
            action=action or None,
            actor=actor or None,
            since=_start_of(first_day, zone) if first_day else None,
            # The last day is included: the range ends at the start of the next one.
            until=_start_of(last_day + timedelta(days=1), zone) if last_day else None,
        ),
        cursor=cursor or None,
        limit=AUDIT_PAGE_SIZE,
    )
    gettext = translations(_language(request, agent)).gettext
    users = await core.list_users(session, tenant=tenant)
    keys = await core.list_api_keys(session, tenant=tenant)
    names = _actor_names(users, keys, gettext)
    filters = {"action": action, "actor": actor, "since": since, "until": until}

    def link(**changes: str) -> str:
        query = {k: v for k, v in {**filters, **changes}.items() if v}
        return f"{AUDIT_LOG_PATH}?{urlencode(query)}" if query else AUDIT_LOG_PATH

    return _page(
        request,
        "audit_log.html",
        {
            "nav": "audit_log",
            "filters": filters,
            "actions": [(code, gettext(label)) for code, label in ACTION_LABELS.items()],
            "actors": [
                *((kind, gettext(label)) for kind, label in ACTOR_LABELS.items()),
                *((user.id, user.name) for user in users),
                *((key.id, names[key.id]) for key in keys),
            ],
            "entries": [
                {
                    "entry": entry,
                    "action": _describe_action(entry.action, gettext),
                    "actor": _describe_actor(entry, names),
                    "details": _describe_details(entry.details or {}),
                }
                for entry in entries
            ],
            "next_page": link(cursor=next_cursor) if next_cursor else None,
            "first_page": link(cursor="") if cursor else None,
        },
        agent=agent,
    )
