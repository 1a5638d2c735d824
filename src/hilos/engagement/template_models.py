"""Tables of message templates: one message of the business with a rendering per channel kind
and language (see ``templates`` for what a rendering holds and which variables it may use)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hilos.core.db import Base, created_column, id_column, tenant_column


class MessageTemplate(Base):
    """A message written once and rendered per channel: ``variants`` maps a language ("es",
    "en") to its renderings (``email``, ``whatsapp``, ``sms``, ``text``)."""

    __tablename__ = "message_templates"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = tenant_column()
    name: Mapped[str] = mapped_column(String(100))
    # marketing (consent, quiet hours and the frequency cap apply) or service
    purpose: Mapped[str] = mapped_column(String(16))
    variants: Mapped[dict[str, Any]]
    # The variable paths the renderings use ("customer.first_name", "cart.url"), found at save.
    variables: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = created_column()
