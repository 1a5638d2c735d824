"""Tables of canned responses: the team's prepared answers, with variables (see ``canned``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hilos.core.db import Base, created_column, id_column, tenant_column


class CannedResponse(Base):
    """One prepared answer in one language, found by its ``shortcut`` (typed as ``/shortcut``).

    A shortcut is unique per tenant and language, so ``/saludo`` can have a Spanish and an
    English text and the composer picks the customer's.
    """

    __tablename__ = "canned_responses"
    __table_args__ = (UniqueConstraint("tenant_id", "shortcut", "language"),)

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = tenant_column()
    shortcut: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(200))
    # With variables such as {{customer.name}}: rendered by ``canned.render``.
    text: Mapped[str] = mapped_column(Text)
    # A language tag ("es", "en", "pt-BR").
    language: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = created_column()
