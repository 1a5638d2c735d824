"""Storing a received email on an email channel: its files, then its message.

The SMTP server (``channels.smtp_server``) and the IMAP poller (``channels.imap``) both end
here. Each attachment becomes a ``StoredFile`` of the channel's tenant, committed before the
message that names it, so a message never points at a file that is not there; the message
then goes through ``channels.ingest`` like every other channel's (idempotent on the
``Message-ID``). A file whose bytes the tenant already holds (a redelivery, the same PDF sent
twice) is not stored again. Two deliveries of one email at the very same moment may each store
its files once; the message refers to one of them and the other is an unused copy.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from hilos.channels import ingest
from hilos.channels.base import ChannelInfo, Inbound, Item, sha256_hex
from hilos.channels.email_mime import MailFile, ParsedEmail
from hilos.channels.models import StoredFile
from hilos.core.clock import now
from hilos.core.ids import new_id
from hilos.core.tenancy import TenantContext


def file_url(file_id: str) -> str:
    return f"/v1/files/{file_id}"


async def store_files(
    session: AsyncSession, tenant: TenantContext, files: list[MailFile]
) -> list[dict[str, Any]]:
    """Keep each file (once per tenant and content) and return the attachments that name them."""
    attachments: list[dict[str, Any]] = []
    for mail_file in files:
        digest = sha256_hex(mail_file.content)
        existing = (
            await session.execute(
                select(StoredFile.id)
                .where(
                    StoredFile.tenant_id == tenant.id,
                    StoredFile.sha256 == digest,
                    StoredFile.filename == mail_file.filename[:300],
                    StoredFile.content_type == mail_file.content_type[:200],
                )
                .limit(1)
            )
        ).scalar_one_or_none()
        file_id = existing or new_id()
        if existing is None:
            session.add(
                StoredFile(
                    id=file_id,
                    tenant_id=tenant.id,
                    filename=mail_file.filename[:300],
                    content_type=mail_file.content_type[:200],
                    size=len(mail_file.content),
                    sha256=digest,
                    content=mail_file.content,
                    created_at=now(),
                )
            )
        attachments.append(
            {
                "type": mail_file.kind,
                "name": mail_file.filename,
                "mime_type": mail_file.content_type,
                "size": len(mail_file.content),
                "url": file_url(file_id),
            }
        )
    await session.flush()
    return attachments


async def store_email(
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    channel: ChannelInfo,
    parsed: ParsedEmail,
    *,
    wakeup: Any,
) -> ingest.Stored:
    """Store one parsed email on ``channel``; a redelivery changes nothing."""
    items: list[Item] = []
    for item in parsed.items:
        if isinstance(item, Inbound):
            # A copy per channel: the same email to two channels is stored in each tenant.
            item = dataclasses.replace(item, attachments=[], identities=list(item.identities))
            ingest.check_senders(channel, [item])
            if parsed.files:
                async with sessionmaker() as session, session.begin():
                    item.attachments = await store_files(session, channel.tenant, parsed.files)
        items.append(item)
    return await ingest.store(engine, sessionmaker, channel, items, wakeup=wakeup)
