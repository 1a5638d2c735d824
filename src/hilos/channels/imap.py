"""Polling a business's mailbox over IMAP: for email channels whose mail stays at their provider.

An email channel with ``imap_host`` in its config is polled by the worker (``poll_mailboxes``
in ``Worker.run_once``) at most every ``imap_poll_seconds`` (default 60). Settings:
``imap_host``, ``imap_port`` (default 993, or 143 without SSL), ``imap_username``,
``imap_password``, ``imap_ssl`` (default true), ``imap_mailbox`` (default ``INBOX``).

The mailbox is opened read-only (``EXAMINE``) and bodies are fetched with ``BODY.PEEK[]``, so
Hilos changes nothing in it: the business's own mail program still sees unread mail as unread.
What has been read is remembered in the channel's ``ChannelState.state``: ``uidvalidity`` and
``last_uid``, the highest UID stored. Each poll fetches the messages with a greater UID, stores
each (``channels.email_inbox``, idempotent on the ``Message-ID``) and advances ``last_uid``
after it, so a poll that dies half-way starts again at the first message not stored. When the
server's ``UIDVALIDITY`` changes, UIDs mean other messages now, and the mailbox is read again
from the start (``Message-ID``s keep that from storing anything twice). A message larger than
``MAX_EMAIL_BYTES``, or one that is not an email, is logged and skipped.

Several workers may run (PostgreSQL): a poll is claimed by writing ``polled_at`` under a row
lock taken with ``SKIP LOCKED``, so one mailbox is read by one worker at a time.

imaplib (standard library, blocking) runs in a thread through ``asyncio.to_thread``: it is
complete and well tested, and a poll is a handful of commands a minute, where a thread costs
nothing; aioimaplib would add a dependency for no gain here.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from hilos.channels.base import BadPayload, ChannelInfo
from hilos.channels.email import config_flag
from hilos.channels.email_inbox import store_email
from hilos.channels.email_mime import MAX_EMAIL_BYTES, parse_email
from hilos.channels.models import Channel, ChannelState
from hilos.channels.service import channels_of_kind
from hilos.core.clock import now
from hilos.core.errors import HilosError
from hilos.core.tenancy import load_tenant
from hilos.customers.service import insert_for

log = structlog.get_logger(__name__)

DEFAULT_POLL_SECONDS = 60.0
# Messages fetched over one connection, and at most per poll of one mailbox.
BATCH = 25
MAX_PER_POLL = 500
# Bytes fetched over one connection before the batch is stored.
BATCH_BYTES = 50 * 1024 * 1024
TIMEOUT_SECONDS = 30.0
# Mailboxes polled at the same time by one worker.
CONCURRENT_POLLS = 4

_UID = re.compile(rb"UID (\d+)")
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")


class MailboxError(Exception):
    """The mailbox could not be read (connection, login, a command refused)."""


@dataclass(frozen=True, slots=True)
class MailboxSettings:
    host: str
    port: int
    username: str
    password: str
    ssl: bool
    mailbox: str

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> MailboxSettings:
        use_ssl = bool(config_flag(config, "imap_ssl", True))
        port = config.get("imap_port")
        try:
            port_number = int(port) if port not in (None, "") else (993 if use_ssl else 143)
        except (TypeError, ValueError):
            raise MailboxError("imap_port is not a number") from None
        return cls(
            host=str(config["imap_host"]),
            port=port_number,
            username=str(config.get("imap_username") or config.get("address") or ""),
            password=str(config.get("imap_password") or ""),
            ssl=use_ssl,
            mailbox=str(config.get("imap_mailbox") or "INBOX"),
        )


@dataclass(slots=True)
class FetchedBatch:
    uidvalidity: int
    # (uid, raw message or None when it is too large to take).
    messages: list[tuple[int, bytes | None]] = field(default_factory=list)
    # Whether more messages are waiting after these.
    more: bool = False


def _quote(mailbox: str) -> str:
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _words(error: Exception) -> str:
    """The server's text in an imaplib error (which shows it as ``b'...'``)."""
    text = str(error)
    if text.startswith(("b'", 'b"')) and text.endswith(text[1]):
        text = text[2:-1]
    return text


def _check(result: tuple[str, Any], what: str) -> Any:
    status, data = result
    if status != "OK":
        detail = b" ".join(d for d in data if isinstance(d, bytes)).decode(errors="replace")
        raise MailboxError(f"{what} failed: {detail or status}")
    return data


def fetch_batch(
    settings: MailboxSettings, *, uidvalidity: int | None, last_uid: int
) -> FetchedBatch:
    """One connection: the messages after ``last_uid`` (from the start when the server's
    UIDVALIDITY is not ``uidvalidity``). Blocking: run it in a thread."""
    try:
        if settings.ssl:
            connection: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                settings.host,
                settings.port,
                ssl_context=ssl.create_default_context(),
                timeout=TIMEOUT_SECONDS,
            )
        else:
            connection = imaplib.IMAP4(settings.host, settings.port, timeout=TIMEOUT_SECONDS)
    except (OSError, imaplib.IMAP4.error) as error:
        raise MailboxError(f"cannot connect to {settings.host}:{settings.port}: {error}") from error
    try:
        try:
            try:
                _check(connection.login(settings.username, settings.password), "LOGIN")
            except imaplib.IMAP4.error as error:
                raise MailboxError(f"LOGIN failed: {_words(error)}") from error
            _check(connection.select(_quote(settings.mailbox), readonly=True), "EXAMINE")
            validity = connection.untagged_responses.get("UIDVALIDITY") or [b"0"]
            last_validity = validity[-1]
            server_validity = int(last_validity if isinstance(last_validity, bytes) else b"0")
            if server_validity != uidvalidity:
                last_uid = 0
            batch = FetchedBatch(uidvalidity=server_validity)
            found = _check(connection.uid("SEARCH", "UID", f"{last_uid + 1}:*"), "UID SEARCH")
            # "n:*" always includes the highest UID, even when it is below n.
            uids = sorted(
                {int(u) for u in b" ".join(found).split() if u.isdigit() and int(u) > last_uid}
            )
            taken = uids[:BATCH]
            batch.more = len(uids) > len(taken)
            if not taken:
                return batch
            sizes = _sizes(connection, taken)
            budget = BATCH_BYTES
            for uid in taken:
                size = sizes.get(uid, 0)
                if size > MAX_EMAIL_BYTES:
                    batch.messages.append((uid, None))
                    continue
                if size > budget and batch.messages:
                    batch.more = True
                    break
                budget -= size
                batch.messages.append((uid, _body(connection, uid)))
            return batch
        except (OSError, imaplib.IMAP4.error) as error:
            raise MailboxError(f"{type(error).__name__}: {error}") from error
    finally:
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            connection.logout()


def _sizes(connection: imaplib.IMAP4, uids: list[int]) -> dict[int, int]:
    data = _check(
        connection.uid("FETCH", ",".join(str(u) for u in uids), "(UID RFC822.SIZE)"), "UID FETCH"
    )
    sizes: dict[int, int] = {}
    for line in data:
        text = line[0] if isinstance(line, tuple) else line
        if not isinstance(text, bytes):
            continue
        uid, size = _UID.search(text), _SIZE.search(text)
        if uid and size:
            sizes[int(uid.group(1))] = int(size.group(1))
    return sizes


def _body(connection: imaplib.IMAP4, uid: int) -> bytes | None:
    data = _check(connection.uid("FETCH", str(uid), "(BODY.PEEK[])"), "UID FETCH")
    for item in data:
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], bytes):
            return item[1]
    return None


# --- the worker's side ----------------------------------------------------------------------


def _poll_seconds(config: Mapping[str, Any]) -> float:
    try:
        return max(float(config.get("imap_poll_seconds") or DEFAULT_POLL_SECONDS), 1.0)
    except (TypeError, ValueError):
        return DEFAULT_POLL_SECONDS


def _due(state: Mapping[str, Any] | None, config: Mapping[str, Any]) -> bool:
    polled_at = (state or {}).get("polled_at")
    if not polled_at:
        return True
    next_poll = datetime.fromisoformat(polled_at) + timedelta(seconds=_poll_seconds(config))
    return next_poll <= now()


async def _claim(session: AsyncSession, channel: Channel) -> dict[str, Any] | None:
    """Mark the mailbox as being polled now; ``None`` when it is not due or another worker
    has it."""
    connection = await session.connection()
    moment = now()
    await connection.execute(
        insert_for(connection.dialect.name, ChannelState.__table__).on_conflict_do_nothing(
            index_elements=["channel_id"]
        ),
        {
            "channel_id": channel.id,
            "tenant_id": channel.tenant_id,
            "state": {},
            "updated_at": moment,
        },
    )
    statement = select(ChannelState).where(ChannelState.channel_id == channel.id)
    if connection.dialect.name == "postgresql":
        statement = statement.with_for_update(skip_locked=True)
    row = (await session.execute(statement)).scalar_one_or_none()
    if row is None:
        return None
    state = dict(row.state or {})
    if not _due(state, channel.config):  # another worker polled it a moment ago
        return None
    state["polled_at"] = moment.isoformat()
    row.state = state
    row.updated_at = moment
    await session.flush()
    return state


async def _save_state(
    sessionmaker: async_sessionmaker[AsyncSession], channel_id: str, **changes: Any
) -> None:
    async with sessionmaker() as session, session.begin():
        row = await session.get(ChannelState, channel_id)
        if row is None:
            return
        state = {**(row.state or {}), **changes}
        await session.execute(
            update(ChannelState)
            .where(ChannelState.channel_id == channel_id)
            .values(state={k: v for k, v in state.items() if v is not None}, updated_at=now())
        )


async def poll_mailbox(
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    channel: ChannelInfo,
    state: Mapping[str, Any],
    *,
    wakeup: Callable[[], None],
) -> int:
    """Store the mailbox's new messages; return how many were read."""
    settings = MailboxSettings.of(channel.config)
    uidvalidity = state.get("uidvalidity")
    last_uid = int(state.get("last_uid") or 0)
    read = 0
    while read < MAX_PER_POLL:
        batch = await asyncio.to_thread(
            fetch_batch, settings, uidvalidity=uidvalidity, last_uid=last_uid
        )
        if batch.uidvalidity != uidvalidity:
            if uidvalidity is not None:
                log.warning(
                    "imap.uidvalidity_changed",
                    channel_id=channel.id,
                    old=uidvalidity,
                    new=batch.uidvalidity,
                )
            uidvalidity, last_uid = batch.uidvalidity, 0
            await _save_state(sessionmaker, channel.id, uidvalidity=uidvalidity, last_uid=0)
        for uid, raw in batch.messages:
            if raw is None:
                log.warning("imap.skipped", channel_id=channel.id, uid=uid, reason="too large")
            else:
                try:
                    parsed = await asyncio.to_thread(parse_email, raw)
                    await store_email(engine, sessionmaker, channel, parsed, wakeup=wakeup)
                except (BadPayload, HilosError) as error:
                    log.warning(
                        "imap.skipped", channel_id=channel.id, uid=uid, reason=error.message
                    )
            last_uid = uid
            read += 1
            await _save_state(sessionmaker, channel.id, uidvalidity=uidvalidity, last_uid=uid)
        if not batch.more:
            break
    return read


async def poll_mailboxes(
    sessionmaker: async_sessionmaker[AsyncSession], *, wakeup: Callable[[], None]
) -> int:
    """Poll every due IMAP mailbox once; a mailbox that fails is logged and left for later."""
    engine = sessionmaker.kw["bind"]
    async with sessionmaker() as session:
        channels = [
            channel
            for channel in await channels_of_kind(session, "email")
            if isinstance(channel.config.get("imap_host"), str) and channel.config["imap_host"]
        ]
        if not channels:
            return 0
        # One read of every mailbox's state, so only due ones are claimed (a row lock each).
        rows = await session.execute(
            select(ChannelState.channel_id, ChannelState.state).where(
                ChannelState.channel_id.in_([c.id for c in channels])
            )
        )
        states = {row.channel_id: row.state for row in rows}
    channels = [c for c in channels if _due(states.get(c.id), c.config)]
    claimed: list[tuple[ChannelInfo, dict[str, Any]]] = []
    for channel in channels:
        async with sessionmaker() as session, session.begin():
            state = await _claim(session, channel)
            if state is None:
                continue
            tenant = await load_tenant(session, channel.tenant_id)
        info = ChannelInfo(
            id=channel.id, tenant=tenant, kind=channel.kind, config=dict(channel.config)
        )
        claimed.append((info, state))
    limit = asyncio.Semaphore(CONCURRENT_POLLS)

    async def one(info: ChannelInfo, state: dict[str, Any]) -> int:
        async with limit:
            try:
                read = await poll_mailbox(engine, sessionmaker, info, state, wakeup=wakeup)
            except MailboxError as error:
                log.warning("imap.failed", channel_id=info.id, reason=str(error))
                await _save_state(sessionmaker, info.id, last_error=str(error)[:500])
                return 0
            except Exception:
                log.exception("imap.failed", channel_id=info.id)
                return 0
            if state.get("last_error"):
                await _save_state(sessionmaker, info.id, last_error=None)
            return read

    return sum(await asyncio.gather(*(one(info, state) for info, state in claimed)))
