"""The inbound SMTP server: mail to an email channel's address becomes a message.

An aiosmtpd ``SMTP`` protocol served on the running event loop (``loop.create_server``, not
aiosmtpd's ``Controller``, which runs its own loop in a thread and so could not share the
app's database engine). ``hilos serve`` starts it inside the app's lifespan on
``HILOS_SMTP_HOST``:``HILOS_SMTP_PORT`` (``create_app(..., run_smtp=True)``); put it behind the
domain's MX (a relay such as Postfix forwarding to it, or the port published as 25).

The conversation, in SMTP's words:

- ``RCPT TO`` must be the ``address`` of an enabled email channel (any tenant, compared
  without case), else ``550 5.1.1 mailbox unavailable``. The address book is cached and
  read again on a miss, and at the latest every ``ADDRESS_BOOK_SECONDS``.
- ``DATA`` is parsed (``channels.email_mime``) and stored for each channel it was addressed to
  (``channels.email_inbox``, the same ingest as webhooks). ``250`` is answered only once the
  message is committed, so a crash never loses a message the sender was told was accepted;
  ``451 4.3.0`` on a temporary failure (the database is down: the sender retries later);
  ``554 5.6.0`` for a message that cannot be read as an email (no sender, an invalid one).
- Messages over ``MAX_EMAIL_BYTES`` are refused with ``552`` by aiosmtpd's SIZE limit.
- A bounce or delivery report is accepted (``250``): it marks the message it reports on as
  failed, or is logged and dropped (see ``email_mime``).

The same email delivered twice (a sender that did not see the ``250``) is stored once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import structlog
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from hilos.channels.base import BadPayload, ChannelInfo
from hilos.channels.email_inbox import store_email
from hilos.channels.email_mime import MAX_EMAIL_BYTES, parse_email
from hilos.channels.service import channels_of_kind
from hilos.core.errors import HilosError
from hilos.core.settings import Settings
from hilos.core.tenancy import TenantContext, load_tenant

log = structlog.get_logger(__name__)

ADDRESS_BOOK_SECONDS = 30.0


class AddressBook:
    """Email channels by address (lowercase), in every tenant."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker
        self._channels: dict[str, list[ChannelInfo]] = {}
        self._read_at = -1e9
        self._lock = asyncio.Lock()

    async def lookup(self, address: str) -> list[ChannelInfo]:
        key = address.strip().strip("<>").lower()
        found = self._channels.get(key)
        if found and time.monotonic() - self._read_at < ADDRESS_BOOK_SECONDS:
            return found
        await self.refresh()
        return self._channels.get(key, [])

    async def refresh(self) -> None:
        read_before = self._read_at
        async with self._lock:
            if self._read_at != read_before:  # another session just read it
                return
            book: dict[str, list[ChannelInfo]] = {}
            tenants: dict[str, TenantContext] = {}
            async with self.sessionmaker() as session:
                for channel in await channels_of_kind(session, "email"):
                    address = channel.config.get("address")
                    if not isinstance(address, str) or "@" not in address:
                        continue
                    if channel.tenant_id not in tenants:
                        tenants[channel.tenant_id] = await load_tenant(session, channel.tenant_id)
                    info = ChannelInfo(
                        id=channel.id,
                        tenant=tenants[channel.tenant_id],
                        kind=channel.kind,
                        config=dict(channel.config),
                    )
                    book.setdefault(address.strip().lower(), []).append(info)
            self._channels = book
            self._read_at = time.monotonic()


class InboundMailHandler:
    """aiosmtpd's handler: which recipients exist, and what to do with a message."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        sessionmaker: async_sessionmaker[AsyncSession],
        wakeup: Callable[[], None],
    ) -> None:
        self.engine = engine
        self.sessionmaker = sessionmaker
        self.wakeup = wakeup
        self.addresses = AddressBook(sessionmaker)

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook name)
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        try:
            channels = await self.addresses.lookup(address)
        except Exception:
            log.exception("smtp.address_book_failed")
            return "451 4.3.0 temporary failure, try again later"
        if not channels:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        raw = envelope.original_content
        if raw is None:
            content = envelope.content
            raw = content.encode() if isinstance(content, str) else (content or b"")
        mail_from = envelope.mail_from or ""
        try:
            parsed = await asyncio.to_thread(parse_email, raw, envelope_from=mail_from)
            channels: dict[str, ChannelInfo] = {}
            for recipient in envelope.rcpt_tos:
                for channel in await self.addresses.lookup(recipient):
                    channels.setdefault(channel.id, channel)
            for channel in channels.values():
                await store_email(
                    self.engine, self.sessionmaker, channel, parsed, wakeup=self.wakeup
                )
        except BadPayload as error:
            log.info("smtp.rejected", reason=error.message, mail_from=mail_from)
            return f"554 5.6.0 {_one_line(error.message)}"
        except HilosError as error:
            log.warning("smtp.rejected", reason=error.message, mail_from=mail_from)
            return f"554 5.6.0 {_one_line(error.message)}"
        except Exception:
            log.exception("smtp.store_failed", mail_from=mail_from)
            return "451 4.3.0 temporary failure, try again later"
        log.info("smtp.received", message_id=parsed.message_id, channels=list(channels))
        return f"250 2.0.0 OK {parsed.message_id}"


def _one_line(text: str) -> str:
    return " ".join(text.split())[:200]


@dataclass
class SmtpServer:
    server: asyncio.Server
    handler: InboundMailHandler

    @property
    def port(self) -> int:
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        self.server.close()
        await self.server.wait_closed()


async def start_smtp_server(
    *,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    wakeup: Callable[[], None],
    host: str,
    port: int,
    hostname: str | None = None,
    reuse_port: bool = False,
) -> SmtpServer:
    """Listen on ``host``:``port`` (0 picks a free port) in the running loop.

    ``hostname`` is the name the server greets with; given explicitly, because aiosmtpd's
    default asks the resolver for this machine's name, which can hang without DNS.
    ``reuse_port`` lets several ``hilos serve`` processes share the port.
    """
    handler = InboundMailHandler(engine=engine, sessionmaker=sessionmaker, wakeup=wakeup)

    def protocol() -> SMTP:
        return SMTP(
            handler,
            data_size_limit=MAX_EMAIL_BYTES,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=hostname or "localhost",
            timeout=300,
        )

    loop = asyncio.get_running_loop()
    options: dict[str, Any] = {"reuse_port": True} if reuse_port else {}
    server = await loop.create_server(protocol, host=host, port=port, **options)
    log.info("smtp.listening", host=host, port=server.sockets[0].getsockname()[1])
    return SmtpServer(server=server, handler=handler)


def greeting_name(base_url: str) -> str:
    """The host name of the public URL, which the SMTP server greets with."""
    return urlparse(base_url).hostname or "localhost"


async def serve_smtp(
    settings: Settings,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    wakeup: Callable[[], None],
) -> SmtpServer | None:
    """The server ``hilos serve`` runs, on ``HILOS_SMTP_HOST``:``HILOS_SMTP_PORT``.

    A port that cannot be bound (another process has it) is logged as an error and the rest
    of the app serves on: the API and console should not go down for the mail port.
    """
    try:
        return await start_smtp_server(
            engine=engine,
            sessionmaker=sessionmaker,
            wakeup=wakeup,
            host=settings.smtp_host,
            port=settings.smtp_port,
            hostname=greeting_name(settings.base_url),
            # Several ``hilos serve`` processes (PostgreSQL) each accept on the same port.
            reuse_port=not settings.is_sqlite,
        )
    except OSError as error:
        log.error(
            "smtp.not_started", host=settings.smtp_host, port=settings.smtp_port, error=str(error)
        )
        return None
