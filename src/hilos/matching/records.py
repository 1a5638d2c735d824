"""A customer profile read as the engine's ``MatchRecord``, and the over-merging guard.

What is read, and from where (the first one present wins):

- names: traits ``given_name`` / ``first_name`` / ``firstName`` and ``surnames`` /
  ``last_name`` / ``lastName`` when the profile has them split (the CSV import writes
  ``given_name`` and ``surnames``); otherwise the profile's ``name``, which the engine splits.
- birth date: traits ``birth_date`` / ``birthday`` (Segment's spec) / ``date_of_birth``, an ISO
  date (``1980-05-17``; a timestamp's date part is read too).
- address: traits ``street`` / ``address`` (text), ``postcode`` / ``postal_code`` /
  ``postalCode``, ``city``; or Segment's ``address`` object (``street``, ``postalCode``,
  ``city``).
- emails and phones: the profile's identities (``email``; ``phone`` and ``whatsapp``, both
  E.164) plus the traits ``email`` and ``phone`` (Segment's identify keeps them in traits, and
  the import keeps them there when the value already belongs to another profile), normalised
  as identities are; a trait that does not parse is left out.

The guard: a value (email or phone) that more profiles hold than the tenant's per-identifier
limit (``TenantContext.identity_limit``, the setting that caps identities per customer), or a
blocked value, is removed from every record before blocking and scoring, so it neither makes a
pair a candidate nor adds evidence. ``value_keys`` are what ``match_keys`` stores to count the
holders of each value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from hilos.core.errors import Invalid
from hilos.core.tenancy import TenantContext
from hilos.customers.identities import normalize_email, normalize_phone
from hilos.matching.engine import MatchRecord

GIVEN_NAME_TRAITS = ("given_name", "first_name", "firstName")
SURNAMES_TRAITS = ("surnames", "last_name", "lastName")
BIRTH_DATE_TRAITS = ("birth_date", "birthday", "date_of_birth")
STREET_TRAITS = ("street", "address")
POSTCODE_TRAITS = ("postcode", "postal_code", "postalCode")
CITY_TRAITS = ("city",)
# Identity kinds read as emails and as phones.
EMAIL_KINDS = ("email",)
PHONE_KINDS = ("phone", "whatsapp")
VALUE_KEY_PREFIX = "="


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return " ".join(value.split())
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _first(traits: Mapping[str, Any], names: Sequence[str]) -> str | None:
    for name in names:
        found = _text(traits.get(name))
        if found is not None:
            return found
    return None


def parse_date(value: Any) -> date | None:
    """An ISO date, or the date of an ISO timestamp; None for anything else."""
    text = _text(value)
    if text is None:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        try:
            return datetime.fromisoformat(text).date()
        except ValueError:
            return None


def _address(traits: Mapping[str, Any]) -> Mapping[str, Any]:
    address = traits.get("address")
    return address if isinstance(address, Mapping) else {}


def _normalised(kind: str, value: Any, region: str) -> str | None:
    text = _text(value)
    if text is None:
        return None
    try:
        if kind == "email":
            return normalize_email(text)
        return normalize_phone(text, region=region)
    except Invalid:
        return None


def to_record(
    *,
    customer_id: str,
    name: str | None,
    traits: Mapping[str, Any] | None,
    identities: Iterable[tuple[str, str]],
    region: str,
) -> MatchRecord:
    """The record of one profile: its name, traits and identities ``(kind, value)``."""
    traits = traits or {}
    address = _address(traits)
    given_name = _first(traits, GIVEN_NAME_TRAITS)
    surnames = _first(traits, SURNAMES_TRAITS)
    emails: dict[str, None] = {}
    phones: dict[str, None] = {}
    for kind, value in identities:
        if kind in EMAIL_KINDS:
            emails[value] = None
        elif kind in PHONE_KINDS:
            phones[value] = None
    if (email := _normalised("email", traits.get("email"), region)) is not None:
        emails[email] = None
    if (phone := _normalised("phone", traits.get("phone"), region)) is not None:
        phones[phone] = None
    street = _first(traits, ("street",))
    if street is None and isinstance(traits.get("address"), str):
        street = _text(traits.get("address"))
    return MatchRecord(
        id=customer_id,
        given_name=given_name,
        surnames=surnames,
        full_name=None if (given_name or surnames) else _text(name),
        birth_date=next(
            (d for t in BIRTH_DATE_TRAITS if (d := parse_date(traits.get(t))) is not None), None
        ),
        street=street or _text(address.get("street")),
        postcode=_first(traits, POSTCODE_TRAITS)
        or _text(address.get("postalCode") or address.get("postal_code")),
        city=_first(traits, CITY_TRAITS) or _text(address.get("city")),
        phones=tuple(sorted(phones)),
        emails=tuple(sorted(emails)),
    )


def record_values(record: MatchRecord) -> set[tuple[str, str]]:
    """The shared-value candidates of a record: ``(kind, value)`` of its emails and phones."""
    return {("email", e) for e in record.emails} | {("phone", p) for p in record.phones}


def value_key(kind: str, value: str) -> str:
    return f"{VALUE_KEY_PREFIX}{kind}:{value}"


def value_keys(record: MatchRecord) -> set[str]:
    return {value_key(kind, value) for kind, value in record_values(record)}


def over_limit(
    tenant: TenantContext, holders: Mapping[tuple[str, str], int]
) -> set[tuple[str, str]]:
    """The values held by more profiles than the tenant's limit for their kind."""
    return {
        (kind, value)
        for (kind, value), count in holders.items()
        if count > tenant.identity_limit(kind)
    }


def guarded(record: MatchRecord, excluded: Collection[tuple[str, str]]) -> MatchRecord:
    """``record`` without the excluded (over-limit or blocked) emails and phones."""
    if not excluded:
        return record
    emails = tuple(e for e in record.emails if ("email", e) not in excluded)
    phones = tuple(p for p in record.phones if ("phone", p) not in excluded)
    if len(emails) == len(record.emails) and len(phones) == len(record.phones):
        return record
    return dataclasses.replace(record, emails=emails, phones=phones)
