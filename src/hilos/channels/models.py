"""Tables of the channels domain."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from hilos.core.db import Base, created_column, id_column


class Channel(Base):
    __tablename__ = "channels"

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = created_column()
    disabled_at: Mapped[datetime | None]


class ChannelState(Base):
    """What a channel's poller remembers between runs (an IMAP mailbox's last seen UID)."""

    __tablename__ = "channel_states"

    channel_id: Mapped[str] = mapped_column(ForeignKey("channels.id"), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(32))
    state: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = created_column()


class StoredFile(Base):
    """The bytes of an attachment that arrived with a message (an email's files).

    Providers that host media (Meta, Telegram, Twilio) are referenced by URL or media id
    instead; only what would otherwise be lost is kept here.
    """

    __tablename__ = "stored_files"

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = mapped_column(String(32), index=True)
    filename: Mapped[str] = mapped_column(String(300))
    content_type: Mapped[str] = mapped_column(String(200))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = created_column()


class WebchatVisitor(Base):
    """A browser that opened the web chat: its secret token (hashed) and its customer."""

    __tablename__ = "webchat_visitors"

    id: Mapped[str] = id_column()
    tenant_id: Mapped[str] = mapped_column(String(32))
    channel_id: Mapped[str] = mapped_column(ForeignKey("channels.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"))
    locale: Mapped[str] = mapped_column(String(8), default="es")
    created_at: Mapped[datetime] = created_column()
    last_seen_at: Mapped[datetime] = created_column()
