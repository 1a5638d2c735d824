"""HTTP API of matching: the review queue of possible duplicates and the tenant's settings.

Any key reads the queue; accepting or rejecting needs a supervisor (as undoing a merge does);
the thresholds and training need an admin. Decisions and settings go to the audit log.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from hilos.core.auth import Principal
from hilos.core.deps import AdminPrincipal, CurrentPrincipal, DbSession, SupervisorPrincipal
from hilos.core.errors import Invalid
from hilos.matching import service
from hilos.matching.models import MatchSettings, MatchSuggestion
from hilos.matching.schemas import (
    DecisionOut,
    MatchingSettingsOut,
    MatchingSettingsUpdate,
    ProfileOut,
    SuggestionDetail,
    SuggestionOut,
    SuggestionPage,
    SuggestionStatus,
    TrainOut,
)
from hilos.privacy import audit

router = APIRouter(prefix="/v1", tags=["matching"])


def decided_by(principal: Principal) -> str:
    return f"user:{principal.user_id}" if principal.user_id else f"key:{principal.key_id}"


def profile_out(profile: service.Profile) -> ProfileOut:
    record = profile.record
    return ProfileOut(
        id=profile.id,
        name=profile.name,
        given_name=record.given_name,
        surnames=record.surnames,
        birth_date=record.birth_date,
        street=record.street,
        postcode=record.postcode,
        city=record.city,
        emails=list(record.emails),
        phones=list(record.phones),
        created_at=profile.created_at,
        merged_into_id=profile.merged_into_id,
    )


def settings_out(row: MatchSettings) -> MatchingSettingsOut:
    return MatchingSettingsOut(
        review_threshold=row.review_threshold,
        auto_merge_threshold=row.auto_merge_threshold,
        trained_at=row.trained_at,
        trained_profiles=row.trained_profiles,
    )


@router.get("/match-suggestions", response_model=SuggestionPage)
async def list_suggestions(
    session: DbSession,
    principal: CurrentPrincipal,
    status: SuggestionStatus | None = "pending",
    customer_id: Annotated[str | None, Query(max_length=32)] = None,
    cursor: Annotated[str | None, Query(max_length=80)] = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 50,
) -> SuggestionPage:
    rows, next_cursor = await service.list_suggestions(
        session,
        principal.tenant,
        status=status,
        customer_id=customer_id,
        cursor=cursor,
        limit=limit,
    )
    return SuggestionPage(
        items=[SuggestionOut.model_validate(row) for row in rows], next_cursor=next_cursor
    )


@router.get("/match-suggestions/{suggestion_id}", response_model=SuggestionDetail)
async def get_suggestion(
    suggestion_id: str, session: DbSession, principal: CurrentPrincipal
) -> SuggestionDetail:
    row = await service.get_suggestion(session, principal.tenant, suggestion_id)
    profiles = await service.load_profiles(
        session, principal.tenant, [row.left_customer_id, row.right_customer_id]
    )
    return SuggestionDetail(
        **SuggestionOut.model_validate(row).model_dump(),
        left=profile_out(profiles[row.left_customer_id]),
        right=profile_out(profiles[row.right_customer_id]),
    )


async def _decided(
    session: DbSession, principal: Principal, row: MatchSuggestion, changed: bool, action: str
) -> DecisionOut:
    """The answer to an accept or reject; the audit log records it only when it changed
    something (a repeated decision is not a second one)."""
    if changed:
        await _record_decision(session, principal, row, action)
    else:
        audit.nothing_to_record(session)
    return DecisionOut(**SuggestionOut.model_validate(row).model_dump(), changed=changed)


async def _record_decision(
    session: DbSession, principal: Principal, row: MatchSuggestion, action: str
) -> None:
    await audit.record(
        session,
        principal,
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


@router.post("/match-suggestions/{suggestion_id}/accept", response_model=DecisionOut)
async def accept(
    suggestion_id: str, session: DbSession, principal: SupervisorPrincipal
) -> DecisionOut:
    row, changed = await service.accept(
        session, principal.tenant, suggestion_id, decided_by=decided_by(principal)
    )
    return await _decided(session, principal, row, changed, "match_suggestion.accepted")


@router.post("/match-suggestions/{suggestion_id}/reject", response_model=DecisionOut)
async def reject(
    suggestion_id: str, session: DbSession, principal: SupervisorPrincipal
) -> DecisionOut:
    row, changed = await service.reject(
        session, principal.tenant, suggestion_id, decided_by=decided_by(principal)
    )
    return await _decided(session, principal, row, changed, "match_suggestion.rejected")


@router.get("/matching/settings", response_model=MatchingSettingsOut)
async def get_settings(session: DbSession, principal: AdminPrincipal) -> MatchingSettingsOut:
    return settings_out(await service.settings_of(session, principal.tenant))


@router.patch("/matching/settings", response_model=MatchingSettingsOut)
async def update_settings(
    body: MatchingSettingsUpdate, session: DbSession, principal: AdminPrincipal
) -> MatchingSettingsOut:
    changes = body.model_dump(exclude_unset=True)
    if "review_threshold" in changes and changes["review_threshold"] is None:
        raise Invalid("review_threshold cannot be null", field="review_threshold")
    row = await service.update_settings(session, principal.tenant, changes)
    await audit.record(
        session,
        principal,
        "matching.settings_updated",
        subject_type="tenant",
        subject_id=principal.tenant.id,
        details={
            "review_threshold": row.review_threshold,
            "auto_merge_threshold": row.auto_merge_threshold,
        },
    )
    return settings_out(row)


@router.post("/matching/train", response_model=TrainOut)
async def train(session: DbSession, principal: AdminPrincipal) -> TrainOut:
    row = await service.train_model(session, principal.tenant)
    await audit.record(
        session,
        principal,
        "matching.trained",
        subject_type="tenant",
        subject_id=principal.tenant.id,
        details={"profiles": row.trained_profiles},
    )
    return TrainOut(**settings_out(row).model_dump())
