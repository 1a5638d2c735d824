"""Tables of the web domain: the agent console's sign-in sessions.

A session is found by the SHA-256 of the random token in the browser's cookie, so the database
never holds a token a thief could replay. Each session carries its own CSRF token, which every
form the console renders sends back.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from hilos.core.db import Base, created_column, id_column, tenant_column


class ConsoleSession(Base):
    __tablename__ = "console_sessions"

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = tenant_column()
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = created_column()
    expires_at: Mapped[datetime]
    # Set by signing out; a revoked session never signs anyone in again.
    revoked_at: Mapped[datetime | None]
