"""Console pages of possible duplicates, for supervisors and administrators: the review queue at
``/console/duplicates`` and one pair at ``/console/duplicates/{id}``, the two profiles side by
side with why they look alike, and the buttons to accept (merge) or reject (remember).

They do what ``/v1/match-suggestions`` does, through ``hilos.matching.service``, as the
signed-in person (the audit log names them as a console user). An agent gets the 403 page;
another tenant's suggestion is the 404 page. Decisions are forms carrying the session's CSRF
token; a refused one (a pair rejected meanwhile) is a page with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from hilos.core.deps import DbSession
from hilos.core.errors import Conflict
from hilos.core.tenancy import get_owned
from hilos.customers import service as customers
from hilos.customers.models import Merge
from hilos.matching import service
from hilos.matching.models import MatchSuggestion
from hilos.privacy import audit
from hilos.web.console import Agent, ConsoleError, ConsoleRoute, FormAgent, _language, _page
from hilos.web.i18n import N_, translations
from hilos.web.service import SignedInAgent

QUEUE_PATH = "/console/duplicates"
PAGE_SIZE = 25

STATUS_LABELS = {
    "pending": N_("Waiting for review"),
    "accepted": N_("Accepted: merged"),
    "rejected": N_("Rejected: different people"),
    "auto_merged": N_("Merged automatically"),
    "superseded": N_("No longer likely"),
}
FIELD_LABELS = {
    "given_name": N_("Given name"),
    "surnames": N_("Surnames"),
    "birth_date": N_("Birth date"),
    "postcode": N_("Postcode"),
    "street": N_("Street"),
    "city": N_("City"),
    "phone": N_("Phone"),
    "email": N_("Email"),
    "national_id": N_("National id"),
}
LEVEL_LABELS = {
    "exact": N_("the same"),
    "close": N_("almost the same (a typo)"),
    "partial": N_("one name of several"),
    "initial": N_("an initial"),
    "similar": N_("similar"),
    "swapped": N_("the same, in another order"),
    "same_year": N_("the same year"),
    "area": N_("the same area"),
    "same_street": N_("the same street, another number"),
    "same_number": N_("the same number, another street"),
    "same_local": N_("the same name before the @"),
    "different": N_("different"),
    "missing": N_("missing on one side"),
    # The engine's birth-date rule: a generation apart, so never merged without a person.
    "conflict": N_("a generation apart: a person decides"),
}


def _may_review(agent: SignedInAgent) -> SignedInAgent:
    if agent.role not in ("supervisor", "admin"):
        raise ConsoleError(
            403,
            N_("Possible duplicates are reviewed by supervisors and administrators."),
            back=None,
        )
    return agent


# Named as the console's other supervisor gates, which the security sweep recognises.
async def _supervisor(agent: Agent) -> SignedInAgent:
    return _may_review(agent)


async def _supervisor_form(agent: FormAgent) -> SignedInAgent:
    return _may_review(agent)


Supervisor = Annotated[SignedInAgent, Depends(_supervisor, scope="function")]
SupervisorForm = Annotated[SignedInAgent, Depends(_supervisor_form, scope="function")]

router = APIRouter(
    include_in_schema=False, route_class=ConsoleRoute, default_response_class=HTMLResponse
)


def _actor(agent: SignedInAgent) -> audit.Actor:
    return audit.Actor.user(agent.tenant.id, user_id=agent.user_id, role=agent.role)


def _percent(probability: float) -> str:
    # Never "100 %": a probability is never certainty, and the reader should not think so.
    value = probability * 100
    return f"{min(value, 99.9):.1f} %" if value >= 99 else f"{value:.0f} %"


@router.get(QUEUE_PATH)
async def queue_page(
    request: Request,
    session: DbSession,
    agent: Supervisor,
    status: Annotated[str, Query(max_length=16)] = "pending",
    cursor: Annotated[str, Query(max_length=80)] = "",
) -> Response:
    rows, next_cursor = await service.list_suggestions(
        session,
        agent.tenant,
        status=status,
        cursor=cursor or None,
        limit=PAGE_SIZE,
    )
    ids = {i for row in rows for i in (row.left_customer_id, row.right_customer_id)}
    profiles = await service.load_profiles(session, agent.tenant, ids)
    gettext = translations(_language(request, agent)).gettext
    return _page(
        request,
        "matching_queue.html",
        {
            "nav": "duplicates",
            "status": status,
            "statuses": [(code, gettext(label)) for code, label in STATUS_LABELS.items()],
            "items": [
                {
                    "suggestion": row,
                    "likelihood": _percent(row.probability),
                    "left": profiles.get(row.left_customer_id),
                    "right": profiles.get(row.right_customer_id),
                }
                for row in rows
            ],
            "next_page": f"{QUEUE_PATH}?status={status}&cursor={next_cursor}"
            if next_cursor
            else None,
            "first_page": f"{QUEUE_PATH}?status={status}" if cursor else None,
        },
        agent=agent,
    )


def _label(gettext: Callable[[str], str], labels: Mapping[str, str], code: str) -> str:
    """A code of the engine (a field, a level) in the reader's words; unknown codes as they are."""
    return gettext(labels[code]) if code in labels else code


def _side(profile: service.Profile | None) -> dict[str, Any]:
    if profile is None:
        return {}
    record = profile.record
    return {
        "id": profile.id,
        "name": profile.name,
        "merged_into_id": profile.merged_into_id,
        "created_at": profile.created_at,
        "given_name": record.given_name,
        "surnames": record.surnames,
        "birth_date": record.birth_date.isoformat() if record.birth_date else None,
        "street": record.street,
        "postcode": record.postcode,
        "city": record.city,
        "emails": ", ".join(record.emails),
        "phones": ", ".join(record.phones),
    }


async def _detail(
    request: Request, session: AsyncSession, agent: SignedInAgent, row: MatchSuggestion
) -> Response:
    profiles = await service.load_profiles(
        session, agent.tenant, [row.left_customer_id, row.right_customer_id]
    )
    gettext = translations(_language(request, agent)).gettext
    evidence = [
        {
            "field": _label(gettext, FIELD_LABELS, e["field"]),
            "level": _label(gettext, LEVEL_LABELS, e["level"]),
            "weight": float(e["weight"]),
        }
        for e in row.evidence or []
    ]
    return _page(
        request,
        "matching_detail.html",
        {
            "nav": "duplicates",
            "suggestion": row,
            "status_label": gettext(STATUS_LABELS.get(row.status, row.status)),
            "likelihood": _percent(row.probability),
            "left": _side(profiles.get(row.left_customer_id)),
            "right": _side(profiles.get(row.right_customer_id)),
            "rows": [
                ("name", gettext("Name")),
                ("given_name", gettext("Given name")),
                ("surnames", gettext("Surnames")),
                ("birth_date", gettext("Birth date")),
                ("street", gettext("Street")),
                ("postcode", gettext("Postcode")),
                ("city", gettext("City")),
                ("emails", gettext("Email")),
                ("phones", gettext("Phone")),
            ],
            "evidence": evidence,
            "decidable": row.status in ("pending", "superseded"),
        },
        agent=agent,
    )


@router.get(QUEUE_PATH + "/{suggestion_id}")
async def detail_page(
    request: Request, suggestion_id: str, session: DbSession, agent: Supervisor
) -> Response:
    row = await service.get_suggestion(session, agent.tenant, suggestion_id)
    return await _detail(request, session, agent, row)


async def _record(
    session: AsyncSession, agent: SignedInAgent, row: MatchSuggestion, action: str
) -> None:
    await audit.record(
        session,
        _actor(agent),
        action,
        subject_type="match_suggestion",
        subject_id=row.id,
        details={
            "left_customer_id": row.left_customer_id,
            "right_customer_id": row.right_customer_id,
            "probability": round(row.probability, 4),
            **({"merge_id": row.merge_id} if row.merge_id else {}),
        },
    )


@router.post(QUEUE_PATH + "/{suggestion_id}/accept")
async def accept(suggestion_id: str, session: DbSession, agent: SupervisorForm) -> Response:
    row, changed = await service.accept(
        session, agent.tenant, suggestion_id, decided_by=f"user:{agent.user_id}"
    )
    if changed:
        await _record(session, agent, row, "match_suggestion.accepted")
    return RedirectResponse(f"{QUEUE_PATH}/{row.id}", status_code=303)


@router.post(QUEUE_PATH + "/{suggestion_id}/reject")
async def reject(suggestion_id: str, session: DbSession, agent: SupervisorForm) -> Response:
    row, changed = await service.reject(
        session, agent.tenant, suggestion_id, decided_by=f"user:{agent.user_id}"
    )
    if changed:
        await _record(session, agent, row, "match_suggestion.rejected")
    return RedirectResponse(f"{QUEUE_PATH}/{row.id}", status_code=303)


@router.post(QUEUE_PATH + "/{suggestion_id}/undo")
async def undo(suggestion_id: str, session: DbSession, agent: SupervisorForm) -> Response:
    """Undo the merge the pair's acceptance (or the automatic merge) made; the relay then
    rejects the pair, so it is not merged again."""
    row = await service.get_suggestion(session, agent.tenant, suggestion_id)
    if row.merge_id is None or row.status not in ("accepted", "auto_merged"):
        raise Conflict("this pair has no merge to undo", code="nothing_to_unmerge")
    merge = await get_owned(session, Merge, row.merge_id, agent.tenant, what="merge")
    record = await customers.unmerge(
        session, agent.tenant, customer_id=merge.survivor_id, merge_id=merge.id
    )
    await audit.record(
        session,
        _actor(agent),
        "customer.unmerged",
        subject_type="customer",
        subject_id=record.survivor_id,
        details={"merge_id": record.id, "merged_id": record.merged_id},
    )
    return RedirectResponse(f"{QUEUE_PATH}/{row.id}", status_code=303)
