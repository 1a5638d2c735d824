"""Requests and responses of the routing API: queues, agents, presence, offers, transfers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from hilos.channels.kinds import ChannelKind


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


SkillName = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, to_lower=True, min_length=1, max_length=64, pattern=r"^[\w.\-]+$"
    ),
]
Level = Annotated[int, Field(ge=1, le=10)]
Id = Annotated[str, StringConstraints(min_length=1, max_length=32)]
# A requirement: skill names (each at level 1 or more), or skill → minimum level.
Requirement = list[SkillName] | dict[SkillName, Level]


def as_levels(requirement: Requirement) -> dict[str, int]:
    if isinstance(requirement, dict):
        return dict(requirement)
    return dict.fromkeys(requirement, 1)


class RingIn(Strict):
    after_seconds: int = Field(ge=1, le=7 * 86_400)
    skills: Requirement = Field(default_factory=list)


def _check_rings(rings: list[RingIn] | None) -> list[RingIn] | None:
    if rings is None:
        return None
    afters = [ring.after_seconds for ring in rings]
    if afters != sorted(set(afters)):
        raise ValueError("rings need strictly increasing after_seconds")
    return rings


def _check_kinds(kinds: list[ChannelKind] | None) -> list[ChannelKind] | None:
    if kinds is not None and len(set(kinds)) != len(kinds):
        raise ValueError("a channel kind is listed twice")
    return kinds


class QueueCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    skills: Requirement = Field(default_factory=list)
    channel_kinds: list[ChannelKind] = Field(min_length=1, max_length=10)
    priority: int = Field(default=0, ge=0, le=10)
    offer_timeout_seconds: int = Field(default=30, ge=5, le=3600)
    # True (the default): the chosen agent is assigned at once, as messaging inboxes do.
    # False: the agent is offered the conversation and must accept it within
    # offer_timeout_seconds, else it goes to the next agent (as phone queues ring).
    auto_assign: bool = True
    rings: list[RingIn] = Field(default_factory=list, max_length=10)
    overflow_queue_id: Id | None = None
    overflow_after_seconds: int | None = Field(default=None, ge=1, le=7 * 86_400)
    secondary_after_seconds: int | None = Field(default=None, ge=0, le=7 * 86_400)

    _rings = field_validator("rings")(_check_rings)
    _kinds = field_validator("channel_kinds")(_check_kinds)

    @model_validator(mode="after")
    def _overflow_pair(self) -> QueueCreate:
        if (self.overflow_queue_id is None) != (self.overflow_after_seconds is None):
            raise ValueError("overflow_queue_id and overflow_after_seconds go together")
        return self


class QueueUpdate(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    skills: Requirement | None = None
    channel_kinds: list[ChannelKind] | None = Field(default=None, min_length=1, max_length=10)
    priority: int | None = Field(default=None, ge=0, le=10)
    offer_timeout_seconds: int | None = Field(default=None, ge=5, le=3600)
    auto_assign: bool | None = None
    rings: list[RingIn] | None = Field(default=None, max_length=10)
    overflow_queue_id: Id | None = None
    overflow_after_seconds: int | None = Field(default=None, ge=1, le=7 * 86_400)
    secondary_after_seconds: int | None = Field(default=None, ge=0, le=7 * 86_400)

    _rings = field_validator("rings")(_check_rings)
    _kinds = field_validator("channel_kinds")(_check_kinds)

    @model_validator(mode="after")
    def _not_null(self) -> QueueUpdate:
        for name in ("name", "skills", "channel_kinds", "priority", "offer_timeout_seconds"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        for name in ("auto_assign", "rings"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class RingOut(BaseModel):
    after_seconds: int
    skills: list[str]
    skill_levels: dict[str, int]


class QueueOut(BaseModel):
    id: str
    name: str
    skills: list[str]
    skill_levels: dict[str, int]
    channel_kinds: list[str]
    priority: int
    offer_timeout_seconds: int
    auto_assign: bool
    rings: list[RingOut]
    overflow_queue_id: str | None
    overflow_after_seconds: int | None
    secondary_after_seconds: int | None
    # Agents added by hand; agents whose skills meet the queue belong to it too.
    members: list[str]
    created_at: datetime
    updated_at: datetime


class MemberIn(Strict):
    agent_id: Id


class QueueMemberOut(BaseModel):
    agent_id: str
    name: str
    # member (added by hand), skills (primary skills meet the queue), secondary.
    how: str
    presence: str


class AgentLoadOut(BaseModel):
    id: str
    name: str
    presence: str
    load: dict[str, int]
    capacity: dict[str, int]


class QueueStats(BaseModel):
    queue_id: str
    # Conversations in the queue not yet assigned (with or without an outstanding offer).
    waiting: int
    offered: int
    longest_wait_seconds: int
    agents_online: int
    # Online members with room for at least one of the queue's channel kinds.
    agents_available: int
    agents: list[AgentLoadOut]


Capacity = dict[ChannelKind, Annotated[int, Field(ge=0, le=100)]]


class AgentCreate(Strict):
    """A new agent user (``email`` and ``name``), or an existing user made an agent
    (``user_id``)."""

    email: EmailStr | None = None
    name: str | None = Field(default=None, min_length=1, max_length=200)
    user_id: Id | None = None
    password: str | None = Field(default=None, min_length=8, max_length=200)
    locale: Literal["es", "en"] | None = None
    skills: dict[SkillName, Level] = Field(default_factory=dict)
    secondary_skills: dict[SkillName, Level] = Field(default_factory=dict)
    capacity: Capacity = Field(default_factory=dict)

    @model_validator(mode="after")
    def _who(self) -> AgentCreate:
        if self.user_id is None and (self.email is None or self.name is None):
            raise ValueError("an agent needs email and name (or the user_id of an existing user)")
        if self.user_id is not None and (self.email is not None or self.password is not None):
            raise ValueError("give either user_id or email, name and password, not both")
        return self


class AgentUpdate(Strict):
    skills: dict[SkillName, Level] | None = None
    secondary_skills: dict[SkillName, Level] | None = None
    # Kinds given replace the current figures; others stay.
    capacity: Capacity | None = None


class AgentOut(BaseModel):
    id: str
    email: str
    name: str
    role: str
    skills: dict[str, int]
    secondary_skills: dict[str, int]
    capacity: dict[str, int]
    presence: str
    presence_at: datetime
    # Conversations held now per channel kind: assigned and open, plus outstanding offers.
    load: dict[str, int]
    queue_ids: list[str]


class AgentCreated(AgentOut):
    password: str | None = Field(
        default=None, description="The generated initial password; shown only in this response."
    )


class PresenceIn(Strict):
    status: Literal["online", "away", "offline"]


class OfferOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    conversation_id: str
    agent_id: str
    queue_id: str | None
    status: str
    offered_at: datetime
    expires_at: datetime
    answered_at: datetime | None


class TransferIn(Strict):
    agent_id: Id | None = None
    queue_id: Id | None = None
    note: str = Field(default="", max_length=5000)

    @model_validator(mode="after")
    def _one_target(self) -> TransferIn:
        if (self.agent_id is None) == (self.queue_id is None):
            raise ValueError("transfer to exactly one of agent_id or queue_id")
        return self


class TransferOut(BaseModel):
    conversation_id: str
    assignee: str | None
    queue: str | None
    note_message_id: str | None


class DecisionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    at: datetime
    action: str
    queue_id: str | None
    agent_id: str | None
    reason: str
    details: dict[str, Any]


class RoutingSettingsOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    sticky_window_seconds: int
    ageing_seconds_per_priority: int
    tier_priorities: dict[str, int]
    negative_sentiment_points: int


class RoutingSettingsUpdate(Strict):
    sticky_window_seconds: int | None = Field(default=None, ge=0, le=365 * 86_400)
    ageing_seconds_per_priority: int | None = Field(default=None, ge=0, le=86_400)
    tier_priorities: dict[SkillName, Annotated[int, Field(ge=0, le=10)]] | None = None
    negative_sentiment_points: int | None = Field(default=None, ge=0, le=10)
