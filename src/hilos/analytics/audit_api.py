"""HTTP API of the omnichannel audit: ``GET /v1/audit`` (thin: ``analytics.audit`` computes it
and its docstring says how each metric, score and level is reached).

Supervisor and admin keys only: the audit describes the whole business. The texts (area and
level names, gaps, next steps) are in the tenant's locale, or in ``?lang=es|en``. Bad input is
a 422 that names it: an unsupported ``lang``, ``days`` outside 1–365, or a query parameter the
audit does not take. The response models live here: they are this router's alone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from hilos.analytics import audit
from hilos.core.deps import DbSession, SupervisorPrincipal
from hilos.core.errors import Invalid

router = APIRouter(prefix="/v1", tags=["analytics"])

QUERY_PARAMETERS = ("lang", "days")


class GapOut(BaseModel):
    code: str = Field(description="<metric>_below_target, or <metric>_no_data")
    message: str
    metric: str
    value: float | None
    target: float


class NextStepOut(BaseModel):
    code: str = Field(description="the metric the step would improve")
    message: str


class AreaOut(BaseModel):
    name: str = Field(description="the area's name in the response's language")
    score: int = Field(description="0–100: the weighted mean of its metrics' scores")
    level: int = Field(
        description="1–5: 1 from 0 points, 2 from 20, 3 from 40, 4 from 60, 5 from 80"
    )
    level_name: str
    weights: dict[str, float] = Field(description="the area's metrics and their weights")
    gaps: list[GapOut] = Field(description="its metrics below target, largest loss first")
    next_steps: list[NextStepOut]


class MetricOut(BaseModel):
    name: str = Field(description="the metric's name in the response's language")
    value: float | None = Field(description="a share 0–1 (a ratio for response_time_consistency)")
    target: float
    score: int
    numerator: int | None
    denominator: int | None
    detail: dict[str, Any]


class AuditOut(BaseModel):
    computed_at: datetime
    since: datetime = Field(description="start of the window the conversation metrics count")
    days: int
    language: str
    areas: dict[str, AreaOut] = Field(
        description="customer_view, engagement, fulfilment, cost_to_serve"
    )
    metrics: dict[str, MetricOut]


def check_parameters(request: Request, allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(request.query_params) - set(allowed))
    if unknown:
        raise Invalid(
            f"unknown query parameter {unknown[0]!r}: this takes {', '.join(allowed)}",
            field=unknown[0],
            code="unknown_parameter",
        )


def audit_out(found: audit.Audit) -> AuditOut:
    return AuditOut(
        computed_at=found.computed_at,
        since=found.since,
        days=found.days,
        language=found.language,
        areas={
            name: AreaOut(
                name=area.label,
                score=area.score,
                level=area.level,
                level_name=area.level_name,
                weights=area.weights,
                gaps=[
                    GapOut(
                        code=gap.code,
                        message=gap.message,
                        metric=gap.metric,
                        value=gap.value,
                        target=gap.target,
                    )
                    for gap in area.gaps
                ],
                next_steps=[
                    NextStepOut(code=step.code, message=step.message) for step in area.next_steps
                ],
            )
            for name, area in found.areas.items()
        },
        metrics={
            name: MetricOut(
                name=metric.label,
                value=metric.value,
                target=metric.target,
                score=metric.score,
                numerator=metric.numerator,
                denominator=metric.denominator,
                detail=metric.detail,
            )
            for name, metric in found.metrics.items()
        },
    )


@router.get("/audit", response_model=AuditOut)
async def get_audit(
    request: Request,
    session: DbSession,
    principal: SupervisorPrincipal,
    lang: Annotated[str | None, Query(max_length=16)] = None,
    days: Annotated[int, Query(ge=1, le=audit.MAX_DAYS)] = audit.DEFAULT_DAYS,
) -> AuditOut:
    """The omnichannel audit of the caller's business, computed from its data now."""
    check_parameters(request, QUERY_PARAMETERS)
    language = audit.audit_language(lang, principal.tenant)
    found = await audit.compute(session, principal.tenant, language=language, days=days)
    return audit_out(found)
