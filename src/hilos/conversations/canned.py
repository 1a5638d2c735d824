"""Canned responses: the team's prepared answers, with variables filled in for a conversation.

A canned response is a text in one language with a ``shortcut`` an agent types as
``/shortcut`` in the composer. Its text may name variables, written ``{{customer.name}}``:

======================== ===============================================================
``customer.name``        the customer's name (empty when unknown)
``customer.first_name``  the first word of it
``agent.name``           the agent who inserts the response
``agent.first_name``     the first word of it
``conversation.id``      the conversation's id
``business.name``        the tenant's name
======================== ===============================================================

Rendering is a single pass of one regular expression over the stored text that replaces those
names and nothing else; it is not a template engine on purpose. Canned texts are written by
people through the API and the values come from customers (a name is whatever a customer typed
into a form or a WhatsApp profile), so a template language (Jinja, ``str.format``) would let
either side reach attributes, call code or loop; here a variable is a fixed key into a dict of
strings, and a value is never scanned again, so a customer called ``{{agent.name}}`` is printed
as such. Unknown variables are refused when a response is saved, naming the ``text`` field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from hilos.conversations.canned_models import CannedResponse
from hilos.conversations.models import Conversation
from hilos.core.clock import now
from hilos.core.errors import Conflict, Invalid
from hilos.core.ids import new_id
from hilos.core.tenancy import TenantContext, get_owned, tenant_scope
from hilos.customers import service as customers

VARIABLES = (
    "customer.name",
    "customer.first_name",
    "agent.name",
    "agent.first_name",
    "conversation.id",
    "business.name",
)
_VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*\}\}")
# The responses a tenant can have (the composer lists them all).
MAX_RESPONSES = 500


@dataclass(frozen=True, slots=True)
class RenderContext:
    """The values of a rendering: who writes, to whom, in which conversation."""

    customer_name: str | None = None
    agent_name: str | None = None
    conversation_id: str | None = None
    business_name: str | None = None

    def values(self) -> dict[str, str]:
        def first(name: str | None) -> str:
            return (name or "").split(" ", 1)[0]

        return {
            "customer.name": self.customer_name or "",
            "customer.first_name": first(self.customer_name),
            "agent.name": self.agent_name or "",
            "agent.first_name": first(self.agent_name),
            "conversation.id": self.conversation_id or "",
            "business.name": self.business_name or "",
        }


def variables_in(text: str) -> list[str]:
    """The variables ``text`` names, in order of first appearance."""
    return list(dict.fromkeys(match.group(1) for match in _VARIABLE.finditer(text)))


def check_variables(text: str) -> None:
    unknown = [name for name in variables_in(text) if name not in VARIABLES]
    if unknown:
        raise Invalid(
            f"unknown variable {{{{{unknown[0]}}}}}; use "
            + ", ".join(f"{{{{{name}}}}}" for name in VARIABLES),
            field="text",
            code="unknown_variable",
        )


def render(text: str, context: RenderContext) -> str:
    """``text`` with its variables replaced by ``context``'s values (one pass; see the module
    docstring). A name that is not a variable is left as written."""
    values = context.values()
    return _VARIABLE.sub(lambda match: values.get(match.group(1), match.group(0)), text)


# --- storing ------------------------------------------------------------------------------------


async def list_responses(
    session: AsyncSession, tenant: TenantContext, *, language: str | None = None
) -> Sequence[CannedResponse]:
    """The tenant's canned responses by shortcut (then language)."""
    statement = tenant_scope(select(CannedResponse), CannedResponse, tenant)
    if language is not None:
        statement = statement.where(CannedResponse.language == language)
    statement = statement.order_by(
        CannedResponse.shortcut, CannedResponse.language, CannedResponse.id
    ).limit(MAX_RESPONSES)
    return (await session.execute(statement)).scalars().all()


async def get_response(
    session: AsyncSession, tenant: TenantContext, response_id: str
) -> CannedResponse:
    return await get_owned(session, CannedResponse, response_id, tenant, what="canned response")


async def _check_shortcut_free(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    shortcut: str,
    language: str,
    except_id: str | None = None,
) -> None:
    statement = tenant_scope(
        select(CannedResponse.id).where(
            CannedResponse.shortcut == shortcut, CannedResponse.language == language
        ),
        CannedResponse,
        tenant,
    )
    taken = (await session.execute(statement)).scalar_one_or_none()
    if taken is not None and taken != except_id:
        raise Conflict(
            f"shortcut /{shortcut} is already canned response {taken} in {language}",
            code="shortcut_taken",
            details={"field": "shortcut"},
        )


async def create_response(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    shortcut: str,
    title: str,
    text: str,
    language: str | None,
) -> CannedResponse:
    """A new canned response; its language defaults to the tenant's."""
    language = language or tenant.locale
    check_variables(text)
    await _check_shortcut_free(session, tenant, shortcut=shortcut, language=language)
    count = await session.scalar(
        tenant_scope(select(func.count(CannedResponse.id)), CannedResponse, tenant)
    )
    if (count or 0) >= MAX_RESPONSES:
        raise Conflict(
            f"a business can keep {MAX_RESPONSES} canned responses; delete one first",
            code="too_many_canned_responses",
        )
    moment = now()
    response = CannedResponse(
        id=new_id(),
        tenant_id=tenant.id,
        shortcut=shortcut,
        title=title,
        text=text,
        language=language,
        created_at=moment,
        updated_at=moment,
    )
    session.add(response)
    await session.flush()
    return response


async def update_response(
    session: AsyncSession, tenant: TenantContext, *, response_id: str, changes: Mapping[str, Any]
) -> CannedResponse:
    response = await get_response(session, tenant, response_id)
    if changes.get("text") is not None:
        check_variables(changes["text"])
    shortcut = changes.get("shortcut") or response.shortcut
    language = changes.get("language") or response.language
    if (shortcut, language) != (response.shortcut, response.language):
        await _check_shortcut_free(
            session, tenant, shortcut=shortcut, language=language, except_id=response.id
        )
    for field in ("shortcut", "title", "text", "language"):
        if changes.get(field) is not None:
            setattr(response, field, changes[field])
    response.updated_at = now()
    await session.flush()
    return response


async def delete_response(session: AsyncSession, tenant: TenantContext, response_id: str) -> None:
    response = await get_response(session, tenant, response_id)
    await session.delete(response)
    await session.flush()


def pick_for(
    responses: Sequence[CannedResponse], *, languages: Sequence[str | None]
) -> list[CannedResponse]:
    """One response per shortcut: in the first of ``languages`` it exists in (the customer's,
    then the agent's...), else its first by language. Sorted by shortcut."""
    wanted = [language for language in languages if language]
    chosen: dict[str, CannedResponse] = {}
    for response in responses:
        current = chosen.get(response.shortcut)
        if current is None or _rank(response.language, wanted) < _rank(current.language, wanted):
            chosen[response.shortcut] = response
    return [chosen[shortcut] for shortcut in sorted(chosen)]


def _rank(language: str, wanted: Sequence[str]) -> int:
    primary = language.split("-", 1)[0].lower()
    for position, candidate in enumerate(wanted):
        if language == candidate or primary == candidate.split("-", 1)[0].lower():
            return position
    return len(wanted)


async def context_for(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    conversation: Conversation,
    agent_name: str | None,
) -> RenderContext:
    """The values for rendering in ``conversation`` as ``agent_name``."""
    customer = await customers.get_customer(session, tenant, conversation.customer_id)
    return RenderContext(
        customer_name=customer.name,
        agent_name=agent_name,
        conversation_id=conversation.id,
        business_name=tenant.name,
    )
