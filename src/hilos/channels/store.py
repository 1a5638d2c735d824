"""Physical stores: visits and conversations at the counter, recorded by staff or a POS.

A store channel has no provider: the shop's own staff app or point-of-sale system calls
``POST /v1/stores/{channel_id}/interactions``. The customer is named by any identities the
clerk has at hand (phone, email, loyalty card); the interaction becomes an entry (kind
``visit``) in the customer's one conversation, with the store and the clerk, so an agent
answering the customer's next WhatsApp sees that they were at the counter yesterday. The
POS's own id for the interaction makes a retry change nothing.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from hilos.channels.service import get_channel
from hilos.conversations.service import receive_committed
from hilos.core.clock import now
from hilos.core.deps import CurrentPrincipal
from hilos.core.errors import Invalid
from hilos.core.ids import new_id
from hilos.core.models import User
from hilos.core.tenancy import get_owned
from hilos.customers.identities import normalize
from hilos.customers.schemas import IdentityIn

router = APIRouter(prefix="/v1/stores", tags=["stores"])


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class StoreCustomer(Strict):
    identities: list[IdentityIn] = Field(min_length=1, max_length=10)
    name: str | None = Field(default=None, max_length=200)


class Clerk(Strict):
    user_id: str | None = Field(default=None, max_length=32)
    name: str | None = Field(default=None, max_length=200)


class StoreInteractionIn(Strict):
    # visit: the customer came in (to buy, pick up, return); conversation: a talk at the counter.
    kind: Literal["visit", "conversation"] = "visit"
    customer: StoreCustomer
    clerk: Clerk | None = None
    # What the clerk wants colleagues on other channels to know.
    notes: str = Field(default="", max_length=5_000)
    # The POS's or staff app's id for this interaction: a retry with it changes nothing.
    external_id: str | None = Field(default=None, min_length=1, max_length=200)
    occurred_at: AwareDatetime | None = None
    # Anything else the POS knows (ticket number, products looked at, purpose).
    details: dict[str, object] = Field(default_factory=dict)


class StoreInteractionOut(BaseModel):
    message_id: str
    conversation_id: str
    customer_id: str
    duplicate: bool


@router.post("/{channel_id}/interactions", response_model=StoreInteractionOut, status_code=201)
async def record_interaction(
    channel_id: str,
    body: StoreInteractionIn,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
) -> StoreInteractionOut:
    state = request.app.state
    tenant = principal.tenant
    async with state.sessionmaker() as session:
        store = await get_channel(session, tenant, channel_id)
        if store.kind != "store":
            raise Invalid(f"channel {channel_id} is a {store.kind} channel, not a store")
        clerk: dict[str, object] = {}
        if body.clerk is not None:
            if body.clerk.user_id is not None:
                user = await get_owned(session, User, body.clerk.user_id, tenant, what="user")
                clerk = {"user_id": user.id, "name": body.clerk.name or user.name}
            elif body.clerk.name:
                clerk = {"name": body.clerk.name}
    identities = [
        (
            identity.kind,
            normalize(
                identity.kind,
                identity.value,
                region=tenant.default_region,
                field=f"customer.identities[{index}].value",
            ),
        )
        for index, identity in enumerate(body.customer.identities)
    ]
    (sender_kind, sender_value), *others = identities
    received = await receive_committed(
        state.engine,
        state.sessionmaker,
        tenant,
        wakeup=state.outbox_wakeup,
        channel_id=channel_id,
        external_id=body.external_id or new_id(),
        sender_kind=sender_kind,
        sender_value=sender_value,
        sender_name=body.customer.name,
        text=body.notes,
        attachments=[],
        sent_at=body.occurred_at or now(),
        kind="visit",
        data={
            "interaction": body.kind,
            "store": {"channel_id": store.id, "name": store.name},
            "clerk": clerk or None,
            "details": body.details,
        },
        identities=others,
    )
    if received.duplicate:
        response.status_code = 200
    return StoreInteractionOut(
        message_id=received.message_id,
        conversation_id=received.conversation_id,
        customer_id=received.customer_id,
        duplicate=received.duplicate,
    )
