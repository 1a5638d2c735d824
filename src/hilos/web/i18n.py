"""The console's languages: Spanish (the default) and English, from Babel catalogs.

This module owns the catalogs, the choice of a request's language and the Jinja2 environments
that render in each language.

Catalogs are the ``.po`` files in ``hilos/locale/<language>/LC_MESSAGES/messages.po``: the source
strings are English, written in the templates and the code. Each process reads them once with
Babel's ``read_po`` and compiles them in memory into ``gettext`` translations. No compiled
``.mo`` file is committed or built: a committed binary can drift from the ``.po`` a translator
edits, and an editable install (``pip install -e``, what ``make demo`` does) runs no build step
that could produce one. Compiling two small catalogs in memory takes milliseconds.

A request's language is, in order: ``?lang=es|en`` (which the console then remembers in a
cookie), that cookie, the agent's own ``locale``, the tenant's ``locale``, the browser's
``Accept-Language``, and finally Spanish.

Each language has its own Jinja2 environment with the ``jinja2.ext.i18n`` extension and that
language's translations installed (new-style gettext: ``_("Hello %(name)s", name=...)``, which
escapes its variables), so requests in different languages never share mutable state.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import datetime
from io import BytesIO
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError
from babel.dates import format_skeleton, format_time, format_timedelta
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from jinja2 import Environment, PackageLoader, pass_context
from jinja2.runtime import Context
from starlette.requests import Request

from hilos.core.clock import now

LANGUAGES = ("es", "en")
DEFAULT_LANGUAGE = "es"
LANGUAGE_COOKIE = "hilos_lang"
LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"


def N_(message: str) -> str:
    """Mark ``message`` for extraction (``pybabel extract``) without translating it yet."""
    return message


# The business's words that the services store as codes, shown to agents in their language.
VOCABULARY: Mapping[str, Mapping[str, str]] = {
    "status": {
        "open": N_("Open"),
        "pending": N_("Pending"),
        "snoozed": N_("Snoozed"),
        "resolved": N_("Resolved"),
        "merged": N_("Merged"),
    },
    "direction": {
        "inbound": N_("Customer"),
        "outbound": N_("Reply"),
        "note": N_("Private note"),
    },
    "delivery": {
        "received": N_("received"),
        "queued": N_("queued"),
        "sending": N_("sending"),
        "sent": N_("sent"),
        "delivered": N_("delivered"),
        "read": N_("read"),
        "failed": N_("failed"),
    },
    "attachment": {
        "image": N_("Image"),
        "audio": N_("Audio"),
        "video": N_("Video"),
        "file": N_("File"),
        "location": N_("Location"),
        "contact": N_("Contact"),
        "sticker": N_("Sticker"),
    },
    "channel": {
        "web_chat": N_("Web chat"),
        "email": N_("Email"),
        "whatsapp": N_("WhatsApp"),
        "messenger": N_("Messenger"),
        "instagram": N_("Instagram"),
        "telegram": N_("Telegram"),
        "sms": N_("SMS"),
        "phone": N_("Phone"),
        "store": N_("Store"),
        "api": N_("API"),
    },
    "identity": {
        "email": N_("Email"),
        "phone": N_("Phone"),
        "whatsapp": N_("WhatsApp"),
        "messenger": N_("Messenger"),
        "instagram": N_("Instagram"),
        "telegram": N_("Telegram"),
        "loyalty": N_("Loyalty card"),
        "external": N_("External id"),
        "anonymous": N_("Anonymous device"),
    },
    "purpose": {
        "marketing": N_("Marketing"),
        "service": N_("Service messages"),
    },
    "event": {
        "message": N_("Message"),
        "track": N_("Event"),
        "page": N_("Page view"),
        "screen": N_("Screen view"),
        "identify": N_("Profile update"),
        "alias": N_("Identities linked"),
        "order": N_("Order"),
        "return": N_("Return"),
        "loyalty": N_("Loyalty"),
        "survey": N_("Survey"),
        "review": N_("Review"),
    },
    "order_status": {
        "placed": N_("Placed"),
        "allocated": N_("Allocated"),
        "picked": N_("Picked"),
        "ready_for_pickup": N_("Ready for pickup"),
        "shipped": N_("Shipped"),
        "collected": N_("Collected"),
        "delivered": N_("Delivered"),
        "cancelled": N_("Cancelled"),
    },
    "journey_status": {
        "active": N_("In progress"),
        "done": N_("Completed"),
        "exited": N_("Left"),
        "failed": N_("Failed"),
    },
    "role": {
        "admin": N_("Administrator"),
        "supervisor": N_("Supervisor"),
        "agent": N_("Agent"),
    },
}


@functools.cache
def translations(language: str) -> Translations:
    """The gettext translations of ``language``, compiled in memory from its ``.po`` file."""
    if language not in LANGUAGES:
        raise ValueError(f"unsupported language {language!r}")
    path = LOCALE_DIR / language / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as source:
        catalog = read_po(source, locale=language)
    compiled = BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(fp=compiled)


def supported_language(value: str | None) -> str | None:
    """``es``/``en`` for a tag such as ``es-MX`` or ``en_GB``; ``None`` for anything else."""
    if not value:
        return None
    primary = value.strip().replace("_", "-").split("-", 1)[0].lower()
    return primary if primary in LANGUAGES else None


def language_from_accept(header: str | None) -> str | None:
    """The supported language the browser prefers most (``Accept-Language`` with q-values)."""
    if not header:
        return None
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")):
        tag, _, params = part.partition(";")
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                continue
        language = supported_language(tag)
        if language is not None and quality > 0:
            ranked.append((-quality, position, language))
    return min(ranked)[2] if ranked else None


def requested_language(request: Request) -> str | None:
    """The language the person chose explicitly with ``?lang=``, if it is one we speak."""
    return supported_language(request.query_params.get("lang"))


def choose_language(
    request: Request, *, user_locale: str | None = None, tenant_locale: str | None = None
) -> str:
    return (
        requested_language(request)
        or supported_language(request.cookies.get(LANGUAGE_COOKIE))
        or supported_language(user_locale)
        or supported_language(tenant_locale)
        or language_from_accept(request.headers.get("accept-language"))
        or DEFAULT_LANGUAGE
    )


# --- rendering ------------------------------------------------------------------------------


def _zone(context: Context) -> ZoneInfo:
    return ZoneInfo(context.get("timezone") or "Europe/Madrid")


def environment(language: str) -> Environment:
    """The Jinja2 environment that renders the console's templates in ``language``."""
    return _environments()[language]


@functools.cache
def _environments() -> dict[str, Environment]:
    return {language: _build_environment(language) for language in LANGUAGES}


def _build_environment(language: str) -> Environment:
    env = Environment(
        loader=PackageLoader("hilos.web", "templates"),
        autoescape=True,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    catalog = translations(language)
    env.install_gettext_translations(catalog, newstyle=True)  # type: ignore[attr-defined]

    def label(value: str | None, group: str) -> str:
        """A stored code (``open``, ``whatsapp``...) in the reader's words."""
        if value is None:
            return ""
        words = VOCABULARY[group].get(value)
        return catalog.gettext(words) if words is not None else value

    @pass_context
    def moment(context: Context, value: datetime | None, style: str = "full") -> str:
        """A date and time in the tenant's zone, written the reader's way.

        ``full``: with the year; ``short``: without it; ``date``: the day alone.
        """
        if value is None:
            return ""
        return format_moment(value, style=style, zone=_zone(context), language=language)

    def ago(value: datetime | None) -> str:
        """How long ago, roughly ("hace 3 horas", "3 hours ago")."""
        if value is None:
            return ""
        elapsed = value - now()
        if abs(elapsed.total_seconds()) < 60:
            return catalog.gettext("just now")
        return format_timedelta(elapsed, granularity="minute", add_direction=True, locale=language)

    def language_name(code: str | None) -> str:
        """A language code (``es``, ``pt-BR``) by its name in the reader's language."""
        if not code:
            return ""
        try:
            name = Locale.parse(code.replace("-", "_")).get_display_name(language)
        except (UnknownLocaleError, ValueError, TypeError):
            return code
        return name or code

    env.filters.update(label=label, moment=moment, ago=ago, language_name=language_name)
    env.globals.update(language=language, languages=LANGUAGES)
    return env


# CLDR skeletons of the date part of each style.
_DATE_SKELETONS = {"full": "yMMMd", "short": "MMMd", "date": "yMMMd"}


def format_moment(value: datetime, *, style: str, zone: ZoneInfo, language: str) -> str:
    locale = Locale.parse(language)
    day = format_skeleton(_DATE_SKELETONS[style], value, tzinfo=zone, locale=locale)
    if style == "date":
        return day
    time = format_time(value, "short", tzinfo=zone, locale=locale)
    # The locale's own way of joining a date ({1}) and a time ({0}), e.g. "{1}, {0}".
    return str(locale.datetime_formats["medium"]).format(time, day)


def render(language: str, template: str, context: Mapping[str, Any]) -> str:
    return environment(language).get_template(template).render(context)
