"""Email in MIME: reading a customer's message, and writing an agent's reply.

``parse_email`` turns the raw bytes of one RFC 5322 message (as the SMTP server or an IMAP
mailbox hands them over) into what ``channels.ingest`` stores, without touching the database
(it is CPU work: callers on an event loop run it in a thread):

- An ``Inbound`` from the ``From`` address (identity ``email``, its display name as the
  sender's name). Its ``external_id`` is the ``Message-ID`` (a stable one made from a hash of
  the bytes when the header is missing, so a redelivery is still recognised). ``thread_refs``
  are the ids of ``In-Reply-To`` and ``References``, plus the bare Hilos message id of any
  that Hilos generated itself (``<{message_id}@{domain}>``), so a reply joins the conversation
  of the message it answers. ``text`` is the new part of the reply: quoted history and the
  signature are cut off by mail-parser-reply; the whole text is kept in ``data["full_text"]``.
- The attachments as ``MailFile`` parts: their bytes become ``StoredFile`` rows when the message
  is stored (``channels.email_inbox``), since that needs a session.
- Delivery reports (bounces, RFC 3464) are not customer messages: a report that a message Hilos
  sent has failed becomes a ``failed`` ``Receipt`` for it, anything else from a mail system
  (delays, a mailer-daemon's notices) is ``Ignored``. Automatic replies (RFC 3834
  ``Auto-Submitted``, ``X-Autoreply``, ``Precedence: auto_reply``; out-of-office notices) come
  from the customer's own address and may say something useful ("back on Monday"), so they are
  stored, marked with ``data["auto_submitted"]``: automations must not answer them, or two
  robots write to each other forever.

Decoding (quoted-printable, base64, RFC 2047 headers, charsets) is the standard library's
``email`` package with ``policy.default``; a part whose declared charset is unknown or wrong is
decoded as UTF-8, then Latin-1, rather than rejected.

Two things are written here because no library fits:

- ``html_to_text``: a message that has only HTML needs its text. The usual converters are
  either GPL (html2text) or a large dependency for this one use (BeautifulSoup); the standard
  library's ``html.parser`` already gives the tag stream, and what is needed on top is small:
  line breaks for block elements, nothing from ``<script>``/``<style>``, and (for the reply)
  nothing from quoted history (``<blockquote>``, Gmail's ``gmail_quote``, Thunderbird's
  ``moz-cite-prefix``, Outlook's ``divRplyFwdMsg``).
- ``_cut_trailing_quote``: mail-parser-reply 1.36 cuts at the English "On ... wrote:" line, but
  its Spanish pattern (``El ... escribió:``) never matches (its negative lookahead repeats the
  pattern itself), so a Gmail reply in Spanish would keep its history. After the library has
  run, a trailing block of ``>`` lines and the attribution line just above it (one ending in
  ``:`` with a date or an address in it) are cut as well.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import format_datetime, getaddresses, parseaddr, parsedate_to_datetime
from html.parser import HTMLParser
from typing import Any

import structlog
from mailparser_reply import EmailMessage as ReplyParser  # type: ignore[import-untyped]

from hilos.channels.base import BadPayload, Ignored, Inbound, Item, Receipt
from hilos.core.clock import now

log = structlog.get_logger(__name__)

# The largest message accepted, by SMTP (its SIZE limit) and from a mailbox.
MAX_EMAIL_BYTES = 25 * 1024 * 1024
# What is kept of the HTML body and of the whole text in the message's data.
MAX_HTML_CHARS = 200_000
MAX_FULL_TEXT_CHARS = 200_000
MAX_REPLY_SCAN = 100_000
# Message ids longer than the external id column are replaced by a hash of themselves.
MAX_ID_LENGTH = 200
# The newest references are enough to find the conversation; some threads carry hundreds.
MAX_THREAD_REFS = 50
# Languages whose reply headers and signatures mail-parser-reply knows, tried on every message.
REPLY_LANGUAGES = ("es", "en", "pt", "fr", "de", "it")

_HILOS_MESSAGE_ID = re.compile(r"^<([0-9a-f]{32})@[^<>@\s]+>$")
_MESSAGE_ID = re.compile(r"<[^<>\s]+>")
_MAIL_SYSTEM_SENDERS = ("mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon")
_AUTO_PRECEDENCE = ("auto_reply", "bulk", "junk", "list")


@dataclass(slots=True)
class MailFile:
    """An attachment as it arrived: stored as a ``StoredFile`` when the message is stored."""

    filename: str
    content_type: str
    content: bytes

    @property
    def kind(self) -> str:
        major = self.content_type.split("/", 1)[0]
        return major if major in ("image", "audio", "video") else "file"


@dataclass(slots=True)
class ParsedEmail:
    """What one raw message holds: the items to store and the files of its ``Inbound``."""

    items: list[Item]
    files: list[MailFile] = field(default_factory=list)
    message_id: str = ""


def parse_email(raw: bytes, *, envelope_from: str | None = None) -> ParsedEmail:
    """Read one RFC 5322 message; ``BadPayload`` when it is too large, has no sender, or
    trips the parser: a message that cannot be read now never will be, so it is refused for
    good (SMTP 554, skipped in a mailbox) rather than retried."""
    if len(raw) > MAX_EMAIL_BYTES:
        raise BadPayload(
            f"the message is larger than {MAX_EMAIL_BYTES} bytes", code="message_too_large"
        )
    if not raw.strip():
        raise BadPayload("the message is empty")
    try:
        return _parse(raw, envelope_from)
    except BadPayload:
        raise
    except Exception as error:  # hostile or broken MIME can fail anywhere in the parser
        log.warning("email.unreadable", error=repr(error))
        raise BadPayload(
            f"the message cannot be read as an email ({type(error).__name__})"
        ) from error


def _parse(raw: bytes, envelope_from: str | None) -> ParsedEmail:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    message_id = _message_id(message, raw)
    sender_name, sender = _sender(message, envelope_from)
    if _is_delivery_report(message) or _is_mail_system(sender):
        return ParsedEmail(items=[_delivery_report(message, sender)], message_id=message_id)
    if not sender:
        raise BadPayload("the message has no From address")

    plain, html, files = _bodies_and_files(message)
    full_text = plain if plain is not None else (html_to_text(html) if html else "")
    if plain is not None:
        text = reply_text(plain)
    elif html:
        text = reply_text(html_to_text(html, skip_quotes=True))
    else:
        text = ""
    in_reply_to = _ids(_header(message, "In-Reply-To"))
    references = _ids(_header(message, "References"))
    data: dict[str, Any] = {
        "subject": _header(message, "Subject"),
        "message_id": message_id,
        "in_reply_to": in_reply_to[0] if in_reply_to else None,
        "references": references,
        "to": _addresses(message, "To"),
        "cc": _addresses(message, "Cc"),
        "full_text": full_text[:MAX_FULL_TEXT_CHARS],
    }
    if html:
        data["html"] = html[:MAX_HTML_CHARS]
        if len(html) > MAX_HTML_CHARS:
            data["html_truncated"] = True
    automatic = _auto_submitted(message)
    if automatic:
        data["auto_submitted"] = automatic
    inbound = Inbound(
        external_id=message_id,
        sender_kind="email",
        sender_value=sender,
        sender_name=sender_name or None,
        sent_at=_sent_at(message),
        text=text,
        data=data,
        thread_refs=thread_refs(in_reply_to, references),
    )
    return ParsedEmail(items=[inbound], files=files, message_id=message_id)


def thread_refs(in_reply_to: list[str], references: list[str]) -> list[str]:
    """The ids a message answers, newest first, with the bare Hilos id of any Hilos made."""
    refs: list[str] = []
    for ref in [*in_reply_to, *reversed(references)]:
        if ref in refs:
            continue
        refs.append(ref)
        hilos = _HILOS_MESSAGE_ID.match(ref)
        if hilos and hilos.group(1) not in refs:
            refs.append(hilos.group(1))
        if len(refs) >= MAX_THREAD_REFS:
            break
    return refs


def hilos_message_id(message_id: str, address: str) -> str:
    """The ``Message-ID`` of a message Hilos sends from ``address``."""
    domain = address.rpartition("@")[2] or "hilos.invalid"
    return f"<{message_id}@{domain}>"


# --- headers --------------------------------------------------------------------------------


def _header(message: Message, name: str) -> str:
    """A header's decoded value (RFC 2047), or "" when it is missing; a header the policy
    cannot parse is taken as it was written."""
    try:
        value: Any = message.get(name)
    except (ValueError, TypeError, IndexError):
        wanted = name.lower()
        value = next((v for k, v in message.raw_items() if k.lower() == wanted), "")
    return " ".join(str(value or "").split())


def _message_id(message: Message, raw: bytes) -> str:
    found = _MESSAGE_ID.findall(_header(message, "Message-ID"))
    if found and len(found[0]) <= MAX_ID_LENGTH:
        return str(found[0])
    basis = found[0].encode() if found else raw
    return f"<{hashlib.sha256(basis).hexdigest()[:40]}@hilos.generated>"


def _ids(value: str) -> list[str]:
    return [ref for ref in _MESSAGE_ID.findall(value) if len(ref) <= MAX_ID_LENGTH]


def _sender(message: Message, envelope_from: str | None) -> tuple[str, str]:
    """The display name and address of ``From`` (``Reply-To`` is not trusted for identity)."""
    raw = _header(message, "From")
    try:
        header = message.get("From")
        addresses = getattr(header, "addresses", ()) if header is not None else ()
    except (ValueError, TypeError, IndexError):
        addresses = ()
    for address in addresses:
        if isinstance(address, Address) and address.addr_spec and "@" in address.addr_spec:
            return address.display_name, address.addr_spec
    name, addr = parseaddr(raw)
    if "@" in addr:
        return name, addr
    return "", (envelope_from or "").strip("<> ")


def _addresses(message: Message, name: str) -> list[str]:
    found: list[str] = []
    try:
        headers = message.get_all(name) or []
    except (ValueError, TypeError, IndexError):
        headers = []
    for header in headers:
        addresses = getattr(header, "addresses", None)
        if addresses is not None:
            found.extend(a.addr_spec for a in addresses if a.addr_spec)
        else:
            found.extend(addr for _name, addr in getaddresses([str(header)]) if addr)
    return found


def _sent_at(message: Message) -> datetime:
    value = _header(message, "Date")
    if value:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            moment = None
        if moment is not None:
            return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return now()


def _auto_submitted(message: Message) -> str | None:
    """Why the message looks written by a program (RFC 3834 and common practice), if it does."""
    auto = _header(message, "Auto-Submitted").lower()
    if auto and auto != "no":
        return auto.split(";")[0].strip()
    if _header(message, "X-Autoreply") or _header(message, "X-Autorespond"):
        return "auto-replied"
    precedence = _header(message, "Precedence").lower()
    if precedence in _AUTO_PRECEDENCE:
        return precedence
    return None


# --- bounces --------------------------------------------------------------------------------


def _is_delivery_report(message: Message) -> bool:
    return (
        message.get_content_type() == "multipart/report"
        and str(message.get_param("report-type", "")).lower() == "delivery-status"
    )


def _is_mail_system(sender: str) -> bool:
    # Not the empty envelope sender (MAIL FROM:<>): RFC 3834 asks out-of-office replies to
    # use it too, and those are the customer's.
    return sender.partition("@")[0].lower() in _MAIL_SYSTEM_SENDERS


def _delivery_report(message: Message, sender: str) -> Item:
    """A failed ``Receipt`` for the message a bounce reports on, else ``Ignored``."""
    action, diagnostic, original = "", "", ""
    for part in message.walk():
        content_type = part.get_content_type()
        if content_type == "message/delivery-status":
            fields = _delivery_status_fields(part)
            action = action or fields.get("action", "")
            diagnostic = diagnostic or fields.get("diagnostic-code", "") or fields.get("status", "")
        elif content_type in ("message/rfc822", "text/rfc822-headers") and not original:
            original = _original_message_id(part)
    if not original:
        subject = _header(message, "Subject")
        return Ignored(f"mail system message from {sender or 'unknown'}: {subject[:120]}")
    if action and action.lower() != "failed":
        return Ignored(f"delivery report {action} for {original}")
    reason = diagnostic or _header(message, "Subject") or "the message bounced"
    return Receipt(
        external_id=original,
        status="failed",
        occurred_at=_sent_at(message),
        error={"code": "email_bounced", "message": reason[:500]},
    )


def _delivery_status_fields(part: Message) -> dict[str, str]:
    """The per-recipient fields of a ``message/delivery-status`` part (RFC 3464)."""
    fields: dict[str, str] = {}
    payload = part.get_payload()
    blocks = payload if isinstance(payload, list) else []
    if not blocks:
        text = part.get_payload(decode=True)
        if isinstance(text, bytes):
            parsed = BytesParser(policy=policy.compat32).parsebytes(text.replace(b"\n\n", b"\n"))
            blocks = [parsed]
    for block in blocks:
        if not isinstance(block, Message):
            continue
        for key, value in block.items():
            fields.setdefault(key.lower(), " ".join(str(value).split()))
    return fields


def _original_message_id(part: Message) -> str:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return _first_id(_header(payload[0], "Message-ID"))
    raw = part.get_payload(decode=True)
    if isinstance(raw, bytes):
        headers = BytesParser(policy=policy.default).parsebytes(raw, headersonly=True)
        return _first_id(_header(headers, "Message-ID"))
    return ""


def _first_id(value: str) -> str:
    found = _ids(value)
    return found[0] if found else ""


# --- bodies and attachments -----------------------------------------------------------------


def _bodies_and_files(message: EmailMessage) -> tuple[str | None, str | None, list[MailFile]]:
    """The text/plain and text/html bodies and the attached files of a message."""
    plain_part = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    plain = _part_text(plain_part) if plain_part is not None else None
    html = _part_text(html_part) if html_part is not None else None
    bodies = {id(plain_part), id(html_part)}
    files: list[MailFile] = []
    for part in _leaves(message):
        if id(part) in bodies:
            continue
        disposition = part.get_content_disposition()
        filename = part.get_filename()
        content_type = part.get_content_type()
        if not filename and disposition in (None, "inline"):
            continue
        content = _part_bytes(part)
        if content is None:
            continue
        if not filename:
            extension = "eml" if content_type == "message/rfc822" else "bin"
            filename = f"attachment-{len(files) + 1}.{extension}"
        files.append(
            MailFile(filename=_safe_filename(filename), content_type=content_type, content=content)
        )
    return plain, html, files


def _leaves(part: Message) -> list[Message]:
    """Every non-multipart part; an attached message is one part, not opened."""
    if part.get_content_type() == "message/rfc822" or not part.is_multipart():
        return [part]
    leaves: list[Message] = []
    for child in part.get_payload():
        if isinstance(child, Message):
            leaves.extend(_leaves(child))
    return leaves


def _part_bytes(part: Message) -> bytes | None:
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload()
        if isinstance(inner, list) and inner and isinstance(inner[0], Message):
            return inner[0].as_bytes(policy=policy.SMTP)
        return None
    content = part.get_payload(decode=True)
    return content if isinstance(content, bytes) else None


def _part_text(part: Message) -> str:
    """A text part's content, whatever its transfer encoding and charset.

    The declared charset is tried strictly, then UTF-8 (undeclared 8-bit text is nearly always
    UTF-8 today), then Latin-1, which decodes any byte,
    so a wrong or unknown declaration garbles at worst a few characters instead of losing the
    message. Latin-1 declarations are read as Windows-1252, as browsers do: that is what the
    mail programs that declare it actually write (curly quotes, the euro sign).
    """
    raw = part.get_payload(decode=True)
    if not isinstance(raw, bytes):
        return str(part.get_payload() or "")
    declared = (part.get_content_charset() or "").lower()
    if declared in ("iso-8859-1", "latin-1", "latin1"):
        candidates = ["cp1252", "utf-8"]
    elif declared in ("", "us-ascii", "ascii"):
        candidates = ["utf-8", "cp1252"]
    else:
        candidates = [declared, "utf-8"]
    for charset in candidates:
        try:
            return raw.decode(charset)
        except (LookupError, UnicodeDecodeError):
            continue
    return raw.decode("latin-1")


def _safe_filename(name: str) -> str:
    """A file name without paths or control characters, at most 200 characters."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip().strip(".")
    if len(name) > 200:
        stem, dot, extension = name.rpartition(".")
        name = (stem[:190] + dot + extension[:9]) if dot and len(extension) < 10 else name[:200]
    return name or "attachment"


# --- reply text -----------------------------------------------------------------------------


def reply_text(text: str) -> str:
    """The new part of a reply: without quoted history, signature and disclaimers.

    Only the start of a very long body is searched (``MAX_REPLY_SCAN``): the new part is at
    the top, and the parser's regular expressions take seconds on megabytes.
    """
    text = text[:MAX_REPLY_SCAN]
    if not text.strip():
        return ""
    parsed = ReplyParser(text=text, languages=list(REPLY_LANGUAGES), keep_hyphen_lists=True).read()
    reply = parsed.replies[0].body if parsed.replies else text
    reply = _cut_trailing_quote(reply).strip()
    return reply or text.strip()


_ATTRIBUTION_HINT = re.compile(r"\d|@")
_STOPS = (".", "!", "?", "…")


def _cut_trailing_quote(text: str) -> str:
    lines = text.split("\n")
    end = len(lines)
    while end and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith(">")):
        end -= 1
    if end == len(lines) or not any(line.lstrip().startswith(">") for line in lines[end:]):
        return text
    if end and lines[end - 1].rstrip().endswith(":"):
        hinted = bool(_ATTRIBUTION_HINT.search(lines[end - 1]))
        previous = lines[end - 2].strip() if end >= 2 else ""
        # Gmail wraps a long attribution: "El vie, 21 nov ..., Ana <\nana@x.org> escribió:".
        if previous and _ATTRIBUTION_HINT.search(previous) and not previous.endswith(_STOPS):
            end -= 2
        elif hinted:
            end -= 1
    return "\n".join(lines[:end])


_BLOCK_TAGS = frozenset(
    [
        "address",
        "article",
        "aside",
        "blockquote",
        "br",
        "dd",
        "div",
        "dl",
        "dt",
        "footer",
        "form",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "li",
        "main",
        "nav",
        "ol",
        "p",
        "pre",
        "section",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "ul",
    ]
)
_SKIPPED_TAGS = frozenset(("script", "style", "head", "title", "template"))
_QUOTE_CLASSES = ("gmail_quote", "moz-cite-prefix", "yahoo_quoted", "protonmail_quote")
_QUOTE_IDS = ("divrplyfwdmsg", "appendonsend")
_VOID_TAGS = frozenset(
    [
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "source",
        "track",
        "wbr",
    ]
)


class _TextCollector(HTMLParser):
    def __init__(self, *, skip_quotes: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.skip_quotes = skip_quotes
        self.parts: list[str] = []
        # Depths of open elements whose content is skipped (a script, a quote).
        self._stack: list[tuple[str, bool]] = []
        self._skipping = 0
        self._after_quote_marker = False

    def _is_quote(self, tag: str, attrs: list[tuple[str, str | None]]) -> bool:
        if not self.skip_quotes:
            return False
        if tag == "blockquote":
            return True
        values = dict(attrs)
        classes = (values.get("class") or "").lower().split()
        element_id = (values.get("id") or "").lower()
        return any(name in classes for name in _QUOTE_CLASSES) or element_id in _QUOTE_IDS

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID_TAGS:
            if tag in _BLOCK_TAGS and not self._skipping:
                self.parts.append("\n")
            return
        skip = tag in _SKIPPED_TAGS or self._is_quote(tag, attrs)
        if skip and (values := dict(attrs)) and (values.get("id") or "").lower() in _QUOTE_IDS:
            # Outlook's quoted history is everything after this marker, not only inside it.
            self._after_quote_marker = True
        self._stack.append((tag, skip))
        if skip:
            self._skipping += 1
        if tag in _BLOCK_TAGS and not self._skipping:
            self.parts.append("\n")
        if tag == "li" and not self._skipping:
            self.parts.append("- ")

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self._stack) - 1, -1, -1):
            if self._stack[index][0] == tag:
                for _name, skipped in self._stack[index:]:
                    if skipped:
                        self._skipping -= 1
                del self._stack[index:]
                break
        if tag in _BLOCK_TAGS and not self._skipping:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping and not self._after_quote_marker:
            self.parts.append(re.sub(r"\s+", " ", data))


def html_to_text(html: str, *, skip_quotes: bool = False) -> str:
    """Readable text of an HTML body; with ``skip_quotes``, without quoted history."""
    collector = _TextCollector(skip_quotes=skip_quotes)
    collector.feed(html)
    collector.close()
    lines = [" ".join(line.split()) for line in "".join(collector.parts).split("\n")]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


# --- writing replies ------------------------------------------------------------------------


def reply_subject(subject: str | None) -> str | None:
    """``Re: <subject>``, without piling up prefixes."""
    if not subject:
        return None
    if re.match(r"^\s*(re|aw|sv|rv)\s*:", subject, flags=re.IGNORECASE):
        return subject
    return f"Re: {subject}"


def build_message(
    *,
    from_address: str,
    from_name: str | None,
    to: str,
    message_id: str,
    subject: str,
    text: str,
    in_reply_to: str | None = None,
    references: list[str] | None = None,
    sent_at: datetime | None = None,
    html: str | None = None,
    list_unsubscribe: str | None = None,
) -> EmailMessage:
    """An agent's reply, or a message from a template, as a MIME message (``policy.default``:
    RFC 2047 headers, UTF-8 body): text, plus an HTML alternative when there is one, and a
    one-click ``List-Unsubscribe`` (RFC 2369 and 8058) for marketing."""
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = Address(display_name=from_name or "", addr_spec=from_address)
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(sent_at or now())
    message["Message-ID"] = message_id
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
    if references:
        message["References"] = " ".join(references[-MAX_THREAD_REFS:])
    if list_unsubscribe:
        message["List-Unsubscribe"] = f"<{list_unsubscribe}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(text, charset="utf-8", cte="quoted-printable")
    if html:
        message.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    return message
