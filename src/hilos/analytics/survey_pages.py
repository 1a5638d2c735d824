"""The public answer page of a survey: the link an email invitation carries.

No login: the link's token is the invitation id signed with the tenant's key
(``surveys.invitation_for_token``), so only the customer it was sent to can open it, and a
forged or mangled link answers 404 like a link to nothing. The page shows the question, the
scale as a row of choices and a comment box; it is a plain form (no JavaScript), in the
customer's language (``?lang=es|en`` switches), rendered through the console's Jinja and Babel
setup (``web.i18n``). The links in the email carry ``?score=N``, which preselects that score:
opening the link records nothing (a mail scanner following it answers nothing); sending the
form does.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse

from hilos.analytics import surveys
from hilos.analytics.survey_models import SurveyInvitation
from hilos.core.deps import DbSession
from hilos.core.errors import Conflict, Invalid, NotFound
from hilos.core.tenancy import TenantContext
from hilos.web.i18n import render, requested_language, supported_language, translations

router = APIRouter(tags=["surveys"], include_in_schema=False)


def _language(request: Request, invitation: SurveyInvitation | None, tenant: Any) -> str:
    return (
        requested_language(request)
        or supported_language(invitation.language if invitation else None)
        or supported_language(tenant.locale if tenant else None)
        or "es"
    )


def _page(
    request: Request,
    *,
    state: str,
    status_code: int = 200,
    tenant: TenantContext | None = None,
    invitation: SurveyInvitation | None = None,
    selected: int | None = None,
    comment: str = "",
    error: str | None = None,
) -> HTMLResponse:
    language = _language(request, invitation, tenant)
    gettext = translations(language).gettext
    context: dict[str, Any] = {
        "state": state,
        "business": tenant.name if tenant else "",
        "selected": selected,
        "comment": comment,
        "error": error,
        "action": request.url.path + (f"?lang={language}" if requested_language(request) else ""),
        "language_links": {code: f"{request.url.path}?lang={code}" for code in ("es", "en")},
    }
    if invitation is not None:
        low, high = surveys.SCALES[invitation.kind]
        lowest, highest = (gettext(end) for end in surveys.SCALE_ENDS[invitation.kind])
        context.update(
            kind=invitation.kind,
            question=gettext(surveys.QUESTIONS[invitation.kind])
            % {"business": tenant.name if tenant else ""},
            scale=list(range(low, high + 1)),
            low=low,
            high=high,
            lowest=lowest,
            highest=highest,
        )
    return HTMLResponse(render(language, "survey.html", context), status_code=status_code)


def _score(value: str | None, invitation: SurveyInvitation) -> int | None:
    try:
        score = int(value or "")
    except ValueError:
        return None
    return score if surveys.in_range(invitation.kind, score) else None


@router.get("/survey/{token}", response_class=HTMLResponse)
async def survey_page(token: str, request: Request, session: DbSession) -> HTMLResponse:
    try:
        tenant, invitation = await surveys.invitation_for_token(session, token)
    except NotFound:
        return _page(request, state="invalid", status_code=404)
    if invitation.status == "answered":
        return _page(request, state="answered", tenant=tenant, invitation=invitation)
    selected = _score(request.query_params.get("score"), invitation)
    return _page(request, state="form", tenant=tenant, invitation=invitation, selected=selected)


@router.post("/survey/{token}", response_class=HTMLResponse)
async def answer(
    token: str,
    request: Request,
    session: DbSession,
    score: Annotated[str, Form()] = "",
    comment: Annotated[str, Form(max_length=surveys.MAX_COMMENT)] = "",
) -> HTMLResponse:
    try:
        tenant, invitation = await surveys.invitation_for_token(session, token)
    except NotFound:
        return _page(request, state="invalid", status_code=404)
    chosen = _score(score, invitation)
    if chosen is None:
        low, high = surveys.SCALES[invitation.kind]
        language = _language(request, invitation, tenant)
        error = translations(language).gettext("Choose a score from %(low)s to %(high)s.") % {
            "low": low,
            "high": high,
        }
        return _page(
            request,
            state="form",
            status_code=422,
            tenant=tenant,
            invitation=invitation,
            comment=comment,
            error=error,
        )
    try:
        await surveys.record_response(
            session,
            tenant,
            customer_id=invitation.customer_id,
            kind=invitation.kind,
            score=chosen,
            channel=invitation.channel_kind or "email",
            comment=comment,
            invitation_id=invitation.id,
            source="page",
        )
    except Conflict:
        await session.rollback()
        await session.refresh(invitation)
        return _page(
            request, state="answered", status_code=409, tenant=tenant, invitation=invitation
        )
    except Invalid as error:
        await session.rollback()
        await session.refresh(invitation)
        return _page(
            request,
            state="form",
            status_code=422,
            tenant=tenant,
            invitation=invitation,
            comment=comment,
            error=error.message,
        )
    return _page(request, state="thanks", tenant=tenant, invitation=invitation, selected=chosen)
