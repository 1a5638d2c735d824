"""Identity kinds and how their values are normalised before anyone compares them.

Emails are validated and lower-cased (email-validator); phones become E.164 (phonenumbers, with
the tenant's default region for numbers written without a country code). A WhatsApp id is the
international number without "+", so it is read as international first.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Literal

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from hilos.core.errors import Invalid

IdentityKind = Literal[
    "email",
    "phone",
    "whatsapp",
    "messenger",
    "instagram",
    "telegram",
    "loyalty",
    "external",
    "anonymous",
]
IDENTITY_KINDS: tuple[str, ...] = (
    "email",
    "phone",
    "whatsapp",
    "messenger",
    "instagram",
    "telegram",
    "loyalty",
    "external",
    "anonymous",
)
_OPAQUE_ID = re.compile(r"^[A-Za-z0-9_.:@+\-]{1,200}$")


def normalize(kind: str, value: str, *, region: str, field: str = "value") -> str:
    """The canonical form of ``value`` for ``kind``, or ``Invalid`` naming ``field``."""
    try:
        return _normalize_cached(kind, value, region)
    except Invalid as error:
        raise Invalid(error.message, field=field) from None


@functools.lru_cache(maxsize=65_536)
def _normalize_cached(kind: str, value: str, region: str) -> str:
    """Parsing a phone number costs more than the rest of an inbound message's Python: the same
    senders write again and again, so valid results are remembered (failures are not)."""
    return _normalize(kind, value, region=region, field="value")


def _normalize(kind: str, value: str, *, region: str, field: str) -> str:
    if kind not in IDENTITY_KINDS:
        raise Invalid(
            f"unknown identity kind {kind!r}; use one of {', '.join(IDENTITY_KINDS)}",
            field=field,
        )
    value = value.strip() if isinstance(value, str) else ""
    if not value:
        raise Invalid(f"{kind} must not be empty", field=field)
    if kind == "email":
        return normalize_email(value, field=field)
    if kind == "phone":
        return normalize_phone(value, region=region, field=field)
    if kind == "whatsapp":
        if value.isdigit():
            try:
                return normalize_phone("+" + value, region=region, field=field)
            except Invalid:
                pass
        return normalize_phone(value, region=region, field=field)
    if not _OPAQUE_ID.match(value):
        raise Invalid(
            f"{kind} id {value!r} has characters other than letters, digits and _.:@+- "
            "or is longer than 200",
            field=field,
        )
    if kind == "loyalty":
        return value.upper()
    return value


def normalize_email(value: str, *, field: str = "email") -> str:
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as error:
        raise Invalid(f"{value!r} is not a valid email address: {error}", field=field) from error
    return result.normalized.lower()


def normalize_phone(value: str, *, region: str, field: str = "phone") -> str:
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException as error:
        raise Invalid(f"{value!r} is not a phone number: {error}", field=field) from error
    if not phonenumbers.is_valid_number(number):
        raise Invalid(
            f"{value!r} is not a valid phone number (default region {region})", field=field
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def search_key(text: str) -> str:
    """Lower-case, accents removed, single spaces, with a leading space (for word prefixes)."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).lower()
    return " " + " ".join(plain.split())
