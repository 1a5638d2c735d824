"""Mail servers for email tests: Hilos's own SMTP server, a business's relay, a mailbox.

- ``inbound_server`` starts the real inbound SMTP server (``hilos.channels.smtp_server``) on a
  free port, on the app's engine; tests talk to it with aiosmtplib, as any mail server would.
- ``FakeRelay`` is the business's outbound SMTP relay (what ``smtp_host`` points at): an
  aiosmtpd server that keeps what it was sent and answers what the test tells it to
  (``550 5.1.1 ... User unknown``, ``451 4.7.1 ... greylisted``), as relays do.
- ``Mailbox`` is an IMAP server: pymap's in-memory backend, served on a free port. Real
  IMAP4rev1 on the wire, so ``imaplib`` in the poller runs as it does against a provider.
"""

from __future__ import annotations

import asyncio
import uuid
from argparse import Namespace
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from typing import Any

import aiosmtplib
from aiosmtpd.smtp import SMTP, Envelope, Session
from proxyprotocol.reader import ProxyProtocolReader
from pymap.backend.dict import Config, DictBackend
from pymap.imap import IMAPServer
from pymap.parsing.message import AppendMessage

from hilos.channels.smtp_server import SmtpServer, start_smtp_server


def unique_address(local: str = "atencion") -> str:
    """Channel addresses are global (the SMTP server serves every tenant): one per test."""
    return f"{local}-{uuid.uuid4().hex[:10]}@tienda.example"


async def inbound_server(app: Any) -> SmtpServer:
    state = app.state
    return await start_smtp_server(
        engine=state.engine,
        sessionmaker=state.sessionmaker,
        wakeup=state.outbox_wakeup,
        host="127.0.0.1",
        port=0,
        hostname="mx.hilos.test",
    )


async def send_mail(
    port: int, raw: bytes, *, sender: str = "someone@example.org", to: list[str]
) -> str:
    """Deliver ``raw`` over SMTP and return the server's reply to DATA; a refusal raises
    aiosmtplib's error, which carries the server's code and text."""
    if sender:
        _refused, reply = await aiosmtplib.send(
            raw, sender=sender, recipients=to, hostname="127.0.0.1", port=port, timeout=30
        )
        return reply
    # The null sender (MAIL FROM:<>) of bounces and auto-replies, step by step.
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30)
    async with client:
        await client.mail("")
        for recipient in to:
            await client.rcpt(recipient)
        response = await client.data(raw)
    return response.message


@dataclass
class FakeRelay:
    """A business's SMTP relay that keeps what it receives."""

    received: list[Envelope] = field(default_factory=list)
    rcpt_reply: str = "250 2.1.5 OK"
    data_reply: str = "250 2.0.0 OK queued as 4F1A2B"
    server: asyncio.Server | None = None

    async def handle_RCPT(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if self.rcpt_reply.startswith("250"):
            envelope.rcpt_tos.append(address)
        return self.rcpt_reply

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        if self.data_reply.startswith("250"):
            self.received.append(envelope)
        return self.data_reply

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: SMTP(self, hostname="relay.tienda.example"), host="127.0.0.1", port=0
        )

    @property
    def port(self) -> int:
        assert self.server is not None
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def config(self, address: str) -> dict[str, Any]:
        """An email channel's settings that send through this relay."""
        return {
            "address": address,
            "smtp_host": "127.0.0.1",
            "smtp_port": self.port,
            "smtp_starttls": False,
            "smtp_timeout": 10,
        }


def email_bytes(
    *,
    sender: str,
    to: str,
    subject: str,
    text: str,
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: str | None = None,
    sender_name: str = "Rosa Navarro",
    date: str | None = "Sat, 22 Nov 2026 11:02:10 +0100",
    headers: dict[str, str] | None = None,
) -> bytes:
    message = EmailMessage(policy=SMTP_POLICY)
    message["From"] = f"{sender_name} <{sender}>"
    message["To"] = to
    message["Subject"] = subject
    if date:
        message["Date"] = date
    if message_id:
        message["Message-ID"] = message_id
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
    if references:
        message["References"] = references
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(text)
    return message.as_bytes()


class Mailbox:
    """An IMAP server with one user and its INBOX, in memory (pymap's dict backend)."""

    user = "tienda"
    password = "clave-imap"

    def __init__(self) -> None:
        self.backend: DictBackend | None = None
        self.config: Config | None = None
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        args = Namespace(
            passlib_cfg=None,
            demo_data=False,
            demo_user=self.user,
            demo_password=self.password,
            host="127.0.0.1",
            port=0,
            debug=False,
            cert=None,
            key=None,
            tls=False,
            proxy_protocol=None,
            inherited_sockets=None,
        )
        self.backend, self.config = await DictBackend.init(
            args, secure_auth=False, reject_dnsbl=False, invalid_user_sleep=0.0
        )
        self.config.apply_context()
        imap = IMAPServer(self.backend.login, self.config)
        callback = ProxyProtocolReader(self.config.proxy_protocol).get_callback(imap)
        self.server = await asyncio.start_server(callback, host="127.0.0.1", port=0)

    @property
    def port(self) -> int:
        assert self.server is not None
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def deliver(self, raw: bytes) -> None:
        """Put a message in the INBOX, as the provider's MX would."""
        assert self.backend is not None
        async with self.backend.login.demo_user_identity.new_session() as session:
            inbox = await session.mailbox_set.get_mailbox("INBOX")
            await inbox.append(AppendMessage(raw, datetime.now(UTC), frozenset()), recent=True)

    async def uid_validity(self) -> int:
        assert self.backend is not None
        async with self.backend.login.demo_user_identity.new_session() as session:
            inbox = await session.mailbox_set.get_mailbox("INBOX")
            return int(inbox.uid_validity)

    def recreate_inbox(self) -> None:
        """Throw the mailbox away: the next session gets a new INBOX with a new UIDVALIDITY
        (what a server does when it rebuilds its index)."""
        assert self.config is not None
        self.config.set_cache.pop(self.user, None)

    def config_for(self, address: str, **extra: Any) -> dict[str, Any]:
        return {
            "address": address,
            "imap_host": "127.0.0.1",
            "imap_port": self.port,
            "imap_ssl": False,
            "imap_username": self.user,
            "imap_password": self.password,
            **extra,
        }

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
