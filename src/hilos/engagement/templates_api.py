"""HTTP API of message templates (thin: ``templates`` does the work).

Every key of the tenant reads and previews templates; creating, changing and deleting them
needs a supervisor. The request and response models live here: they are this router's alone
(the shape of a variant is ``templates.Variant``, shared with the service's own check).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from hilos.core.deps import CurrentPrincipal, DbSession, SupervisorPrincipal
from hilos.core.tenancy import TenantContext
from hilos.engagement import templates
from hilos.engagement.template_models import MessageTemplate

router = APIRouter(prefix="/v1", tags=["templates"])

Purpose = Literal["marketing", "service"]
Name = Annotated[str, Field(min_length=1, max_length=100)]
Variants = Annotated[
    dict[str, templates.Variant],
    Field(
        min_length=1,
        max_length=20,
        description="per language (es, en, pt-BR): email, whatsapp, sms and text renderings; "
        "variables: " + templates.KNOWN_VARIABLES,
    ),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class TemplateIn(_Strict):
    name: Name
    purpose: Purpose
    variants: Variants


class TemplateUpdate(_Strict):
    name: Name | None = None
    purpose: Purpose | None = None
    variants: Variants | None = Field(default=None, description="replaces every variant")


class SmsSample(BaseModel):
    encoding: Literal["GSM-7", "UCS-2"]
    characters: int
    length: int = Field(description="septets (GSM-7) or UTF-16 units (UCS-2)")
    segments: int
    sample: str = Field(description="the SMS rendered with sample values")


class TemplateOut(BaseModel):
    id: str
    name: str
    purpose: str
    variants: dict[str, Any]
    variables: list[str]
    sms: dict[str, SmsSample] = Field(
        description="per language, the SMS (or text) rendering's length and segments"
    )
    created_at: datetime
    updated_at: datetime


class PreviewIn(_Strict):
    channel_kind: Literal[
        "web_chat", "email", "whatsapp", "messenger", "instagram", "telegram", "sms", "api"
    ]
    language: str | None = Field(default=None, max_length=16)
    customer_id: str | None = Field(default=None, max_length=32)
    data: dict[str, Any] | None = None


class SmsInfoOut(BaseModel):
    encoding: Literal["GSM-7", "UCS-2"]
    characters: int
    length: int
    segments: int


class WhatsAppTemplateOut(BaseModel):
    name: str
    language: str
    parameters: list[str]


class PreviewOut(BaseModel):
    channel_kind: str
    language: str
    subject: str | None
    text: str
    html: str | None
    whatsapp_template: WhatsAppTemplateOut | None
    sms: SmsInfoOut | None
    problem: str | None = Field(
        description="why a real send with these values would fail (a missing value), if it would"
    )


def _out(template: MessageTemplate, tenant: TenantContext) -> TemplateOut:
    return TemplateOut(
        id=template.id,
        name=template.name,
        purpose=template.purpose,
        variants=template.variants,
        variables=list(template.variables or []),
        sms={
            language: SmsSample(**info)
            for language, info in templates.sms_samples(template, tenant).items()
        },
        created_at=template.created_at,
        updated_at=template.updated_at,
    )


@router.get("/templates", response_model=list[TemplateOut])
async def list_templates(
    session: DbSession,
    principal: CurrentPrincipal,
    purpose: Annotated[Purpose | None, Query()] = None,
) -> list[TemplateOut]:
    """The tenant's templates by name."""
    found = await templates.list_templates(session, principal.tenant, purpose=purpose)
    return [_out(template, principal.tenant) for template in found]


@router.post("/templates", response_model=TemplateOut, status_code=201)
async def create_template(
    body: TemplateIn, session: DbSession, principal: SupervisorPrincipal
) -> TemplateOut:
    """A new template. Every rendering is parsed and its variables checked: an unknown variable
    or a syntax error is a 422 naming the rendering (``variants.es.email.subject``)."""
    template = await templates.create_template(
        session,
        principal.tenant,
        name=body.name,
        purpose=body.purpose,
        variants={k: v.model_dump(exclude_none=True) for k, v in body.variants.items()},
    )
    return _out(template, principal.tenant)


@router.get("/templates/{template_id}", response_model=TemplateOut)
async def get_template(
    template_id: str, session: DbSession, principal: CurrentPrincipal
) -> TemplateOut:
    template = await templates.get_template(session, principal.tenant, template_id)
    return _out(template, principal.tenant)


@router.patch("/templates/{template_id}", response_model=TemplateOut)
async def update_template(
    template_id: str, body: TemplateUpdate, session: DbSession, principal: SupervisorPrincipal
) -> TemplateOut:
    changes: dict[str, Any] = body.model_dump(exclude_unset=True, exclude={"variants"})
    if body.variants is not None:
        changes["variants"] = {k: v.model_dump(exclude_none=True) for k, v in body.variants.items()}
    template = await templates.update_template(
        session, principal.tenant, template_id=template_id, changes=changes
    )
    return _out(template, principal.tenant)


@router.delete("/templates/{template_id}", status_code=204)
async def delete_template(
    template_id: str, session: DbSession, principal: SupervisorPrincipal
) -> Response:
    await templates.delete_template(session, principal.tenant, template_id)
    return Response(status_code=204)


@router.post("/templates/{template_id}/preview", response_model=PreviewOut)
async def preview_template(
    template_id: str, body: PreviewIn, session: DbSession, principal: CurrentPrincipal
) -> PreviewOut:
    """The template rendered for one channel: with sample values, or with a real customer's
    (``customer_id``) and the ``data`` given. A value nobody gave shows as ``[name]``."""
    result = await templates.preview(
        session,
        principal.tenant,
        template_id=template_id,
        channel_kind=body.channel_kind,
        language=body.language,
        customer_id=body.customer_id,
        data=body.data,
    )
    return PreviewOut(**result.rendered.as_dict(), problem=result.problem)
