"""Email channels: replies out through the business's SMTP relay, threaded as replies.

Mail comes in through the SMTP server (``channels.smtp_server``) or by polling the business's
mailbox over IMAP (``channels.imap``), never through ``/webhooks/email/...``: that path answers
404 (``verify`` raises ``NotFound``), as for a provider Hilos has no webhook for.

Sending: ``prepare`` finds the latest email in the conversation (the customer's, or an earlier
reply) and takes its ``Subject`` (as ``Re: ...``), ``Message-ID`` (as ``In-Reply-To``) and
``References``, so the reply lands in the customer's thread in their mail program. ``send``
writes the MIME message — ``From`` the channel's ``address`` with the channel's name (or
``from_name``) as display name, ``Message-ID`` ``<{hilos message id}@{domain of address}>``,
so the customer's answer names the Hilos message it replies to — and hands it to the relay
with aiosmtplib. Attachments are sent as links in the text.

Settings (the channel's ``config``): ``address``; ``smtp_host``, ``smtp_port`` (default by
mode: 465, 587 or 25), ``smtp_username``, ``smtp_password``, ``smtp_tls`` (implicit TLS,
default false), ``smtp_starttls`` (true requires it, false never tries it, unset uses it when
offered), ``smtp_timeout`` (seconds, default 30); ``imap_*`` are read by ``channels.imap``.

The relay's ``4xx`` and lost connections are ``TemporaryFailure`` (retried with backoff),
``5xx`` is ``PermanentFailure`` with the relay's own reply as the reason.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import aiosmtplib
import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hilos.channels.base import (
    ChannelInfo,
    Item,
    Outgoing,
    PermanentFailure,
    Sent,
    TemporaryFailure,
    WebhookRequest,
)
from hilos.channels.email_mime import build_message, hilos_message_id, reply_subject
from hilos.channels.models import Channel
from hilos.channels.registry import register
from hilos.conversations.models import Message
from hilos.core.errors import NotFound

DEFAULT_TIMEOUT_SECONDS = 30.0
# How far back in a conversation to look for the email a reply answers.
THREAD_LOOKBACK = 50


def config_flag(config: Any, key: str, default: bool | None) -> bool | None:
    """A yes/no setting, written as JSON true/false or as text ("true", "0", ...)."""
    value = config.get(key)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def config_number(config: Any, key: str) -> float | None:
    value = config.get(key)
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise PermanentFailure(
            f"the channel's {key} setting is not a number", code="channel_not_configured"
        ) from None


def _smtp_reply(code: int, message: str) -> str:
    return f"{code} {' '.join(str(message).split())}"


class EmailChannel:
    provider: ClassVar[str] = "email"
    kinds: ClassVar[tuple[str, ...]] = ("email",)

    def verify(self, channel: ChannelInfo, request: WebhookRequest) -> None:
        raise NotFound("email channels receive mail by SMTP or IMAP, not by webhook")

    def parse(self, channel: ChannelInfo, request: WebhookRequest) -> list[Item]:
        raise NotFound("email channels receive mail by SMTP or IMAP, not by webhook")

    async def prepare(
        self, session: AsyncSession, channel: ChannelInfo, outgoing: Outgoing
    ) -> Outgoing:
        """Add the thread headers of the latest email in the conversation, and the sender's
        display name."""
        rows = (
            await session.execute(
                select(Message.direction, Message.data, Message.external_id)
                .join(Channel, Channel.id == Message.channel_id)
                .where(
                    Message.tenant_id == channel.tenant.id,
                    Message.conversation_id == outgoing.conversation_id,
                    Message.id != outgoing.message_id,
                    Channel.kind == "email",
                    Message.direction.in_(("inbound", "outbound")),
                )
                .order_by(Message.sent_at.desc(), Message.id.desc())
                .limit(THREAD_LOOKBACK)
            )
        ).all()
        context: dict[str, Any] = dict(outgoing.context)
        for row in rows:
            email = row.data or {}
            message_id = email.get("message_id") or (
                row.external_id if row.direction == "outbound" else None
            )
            if not message_id:
                continue
            references = [str(ref) for ref in email.get("references") or []]
            context.update(
                # A subject of the message's own (a campaign's) wins over "Re: ..." of the thread.
                subject=outgoing.context.get("subject") or reply_subject(email.get("subject")),
                in_reply_to=message_id,
                references=[*(ref for ref in references if ref != message_id), message_id],
            )
            break
        name = (
            await session.execute(select(Channel.name).where(Channel.id == channel.id))
        ).scalar_one_or_none()
        context["from_name"] = channel.config.get("from_name") or name
        return dataclasses.replace(outgoing, context=context)

    async def send(
        self, channel: ChannelInfo, client: httpx.AsyncClient, outgoing: Outgoing
    ) -> Sent:
        address = channel.setting("address")
        host = channel.setting("smtp_host")
        if outgoing.to_kind != "email" or "@" not in outgoing.to_value:
            raise PermanentFailure(
                f"an email cannot go to {outgoing.to_kind}:{outgoing.to_value}", code="no_address"
            )
        text = _text_with_links(outgoing)
        if not text.strip():
            raise PermanentFailure("nothing to send: no text and no attachment with a url")
        context = outgoing.context
        message_id = hilos_message_id(outgoing.message_id, address)
        subject = context.get("subject") or _subject_from(outgoing.text)
        references = list(context.get("references") or [])
        mime = build_message(
            from_address=address,
            from_name=context.get("from_name"),
            to=outgoing.to_value,
            message_id=message_id,
            subject=subject,
            text=text,
            in_reply_to=context.get("in_reply_to"),
            references=references,
            html=context.get("html"),
            list_unsubscribe=context.get("list_unsubscribe"),
        )
        port = config_number(channel.config, "smtp_port")
        timeout = config_number(channel.config, "smtp_timeout") or DEFAULT_TIMEOUT_SECONDS
        try:
            await aiosmtplib.send(
                mime,
                sender=address,
                recipients=[outgoing.to_value],
                hostname=host,
                port=int(port) if port else None,
                username=channel.config.get("smtp_username") or None,
                password=channel.config.get("smtp_password") or None,
                use_tls=bool(config_flag(channel.config, "smtp_tls", False)),
                start_tls=config_flag(channel.config, "smtp_starttls", None),
                timeout=timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as error:
            refused = error.recipients[0] if error.recipients else None
            if refused is None:
                raise PermanentFailure("the relay refused the recipient") from error
            _raise_for_reply(refused.code, refused.message)
        except aiosmtplib.SMTPResponseException as error:
            _raise_for_reply(error.code, error.message)
        except aiosmtplib.SMTPNotSupported as error:
            # STARTTLS or authentication the settings ask for and the relay does not offer.
            raise PermanentFailure(
                f"the relay does not support what the channel asks: {error}",
                code="channel_not_configured",
            ) from error
        except (aiosmtplib.SMTPException, OSError) as error:
            raise TemporaryFailure(
                f"{type(error).__name__}: {error}", code="relay_unavailable"
            ) from error
        return Sent(
            external_id=message_id,
            data={
                "subject": subject,
                "message_id": message_id,
                "in_reply_to": context.get("in_reply_to"),
                "references": references,
            },
        )


def _raise_for_reply(code: int, message: str) -> None:
    reply = _smtp_reply(code, message)
    if 400 <= code < 500:
        raise TemporaryFailure(reply, code="relay_deferred")
    raise PermanentFailure(reply, code=f"smtp_{code}")


def _text_with_links(outgoing: Outgoing) -> str:
    links = [
        f"{attachment.get('name') or attachment['url']}: {attachment['url']}"
        for attachment in outgoing.attachments
        if attachment.get("url")
    ]
    if not links:
        return outgoing.text
    return "\n\n".join(part for part in (outgoing.text, "\n".join(links)) if part)


def _subject_from(text: str) -> str:
    """A subject for the first email of a conversation: the start of its first line."""
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first if len(first) <= 78 else first[:75].rstrip() + "..."


register(EmailChannel(), sends=(("email", None),))
