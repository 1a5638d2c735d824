"""Segments: named rules over customers, checked when saved, evaluated as one SQL query, and a
membership kept by the worker that announces who entered and who left.

A rule is a JSON tree. ``{"all": [...]}``, ``{"any": [...]}`` and ``{"not": {...}}`` combine
conditions; each condition is an object with exactly one of these keys:

==================== ======================================================================
``trait``            ``{"trait": "city", "op": "eq", "value": "Madrid"}`` over the profile's
                     free-form traits (a dotted name reaches into nested objects);
                     operators ``eq neq in contains exists gt gte lt lte``
``field``            the same over the profile's own columns: ``name``, ``language``,
                     ``created_at`` (compared with an ISO 8601 time)
``event``            ``{"event": {"type": "track", "name": "Product Viewed", "where":
                     {"properties.category": "zapatillas"}}, "within_days": 7,
                     "count_gte": 1}``: timeline events (Segment calls, orders, carts...)
``orders``           ``{"orders": {"count_gte": 2, "within_days": 90, "channel":
                     "store:MAD01", "total_gte": 10000, "currency": "EUR"}}``: orders from
                     any channel, cancelled ones left out; ``total_*`` is the sum of the
                     matching orders' totals in minor units of ``currency``
``channel_used``     ``{"channel_used": "whatsapp", "within_days": 30}``: the customer wrote
                     (an inbound message, a store visit) on a channel of that kind
``loyalty_tier``     ``{"loyalty_tier": "oro"}`` or a list of tier codes
``consent``          ``{"consent": {"purpose": "marketing", "channel_kind": "email",
                     "granted": true}}``: the latest decision for that purpose and channel
                     kind; ``granted: false`` means "no current grant" (never asked, or
                     withdrawn)
``has_identity``     ``{"has_identity": "email"}`` or a list of identity kinds
==================== ======================================================================

``{"all": []}`` is every customer. Rules are refused when saved (``Invalid``, code
``invalid_rule``) with the path of the offending part, for example
``rule.all.1.orders.count_gte``: an unknown condition, key or operator, a value of the wrong
kind, a loyalty tier the program does not have, or a tree deeper than ``MAX_DEPTH`` or larger
than ``MAX_CONDITIONS``.

**One query.** ``_Compiler`` turns a rule into one boolean SQLAlchemy Core expression over
``customers``: profile conditions compare columns and JSON values, every other condition is a
correlated ``EXISTS`` (or a correlated count or sum where a rule needs one). The query is
scoped by tenant and leaves merged customers out; a count is ``SELECT count(*)`` of it, a page
of members adds ``id > :after ORDER BY id LIMIT``, and ``is_member`` adds ``id = :customer``.
Every leaf is two-valued (a missing trait is false, never NULL), so ``not`` means exactly the
complement. JSON is read through each database's own functions (``json_typeof`` and ``#>>`` on
PostgreSQL, ``json_type`` and ``json_extract`` on SQLite): a value is compared only when its
JSON type fits the operand (a text trait never meets a numeric comparison), which also keeps
PostgreSQL from casting text to a number. Segments read the tables of customers, commerce,
conversations and channels without writing them: a rule that crossed service functions would
be one query per customer.

**Membership.** ``refresh_due`` (a worker stage) claims one due segment at a time (``FOR
UPDATE SKIP LOCKED`` on PostgreSQL), evaluates its rule and diffs the result against
``segment_members``: each row inserted emits ``segment.entered`` and each row deleted
``segment.exited`` ``{"segment_id", "customer_id"}`` in the same transaction, and only rows
the statement actually inserted or deleted (``RETURNING``) are announced, so every change is
announced exactly once. A segment is due when it was never refreshed, when its rule changed,
or ``REFRESH_SECONDS`` after its last refresh. One call makes at most ``REFRESH_BUDGET``
changes; a segment with more keeps its place and goes on at the next call.

**Merges.** The merged customer's membership rows are dropped without events (the profile no
longer exists on its own) and the segments concerned become due, so the survivor is evaluated
at the next refresh; unmerging puts the rows back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast, get_args

import structlog
from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    case,
    delete,
    exists,
    false,
    func,
    literal,
    not_,
    null,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.channels.kinds import CHANNEL_KINDS
from hilos.channels.models import Channel
from hilos.commerce import loyalty
from hilos.commerce.loyalty_models import LoyaltyBalance
from hilos.commerce.order_models import Order
from hilos.commerce.stock import SHARED_CHANNELS
from hilos.conversations.models import Conversation, Message
from hilos.core.clock import now
from hilos.core.errors import Conflict, Invalid
from hilos.core.ids import new_id
from hilos.core.outbox import emit
from hilos.core.tenancy import TenantContext, get_owned, tenant_scope
from hilos.customers import service as customers
from hilos.customers.identities import IDENTITY_KINDS
from hilos.customers.models import Consent, Customer, Identity, TimelineEvent
from hilos.customers.schemas import Purpose
from hilos.engagement.segment_models import Segment, SegmentMember

log = structlog.get_logger(__name__)

MAX_DEPTH = 8
MAX_CONDITIONS = 50
MAX_LIST = 100
MAX_DAYS = 3650
MAX_PAGE = 1000
MAX_SEGMENTS = 500
REFRESH_SECONDS = 300
REFRESH_BUDGET = 5000
# Rows per DELETE ... IN (...) when members leave.
_CHUNK = 500

COMBINATORS = ("all", "any", "not")
CONDITIONS = (
    "trait",
    "field",
    "event",
    "orders",
    "channel_used",
    "loyalty_tier",
    "consent",
    "has_identity",
)
OPERATORS = ("eq", "neq", "in", "contains", "exists", "gt", "gte", "lt", "lte")
ORDERING = ("gt", "gte", "lt", "lte")
PROFILE_FIELDS = ("name", "language", "created_at")
# The ``type`` of timeline events that Hilos writes (Segment calls and commerce's entries).
EVENT_TYPES = (
    "track",
    "page",
    "screen",
    "identify",
    "alias",
    "cart",
    "order",
    "loyalty",
    "return",
)
EVENT_FIELDS = ("properties", "context")
PURPOSES: tuple[str, ...] = get_args(Purpose)
# One name of a trait or a JSON property: no quotes, commas, braces or spaces, which the
# databases' JSON paths would read as syntax.
_JSON_KEY = re.compile(r"^[\w\-:@$]{1,100}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_STORE_CHANNEL = re.compile(r"^store:[A-Za-z0-9_.\-]{1,58}$")

Op = Literal["eq", "neq", "in", "contains", "exists", "gt", "gte", "lt", "lte"]
Scalar = str | int | float | bool


# --- the parsed rule --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Comparison:
    op: Op
    value: Any


@dataclass(frozen=True, slots=True)
class AllOf:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class NotOf:
    child: Node


@dataclass(frozen=True, slots=True)
class TraitIs:
    keys: tuple[str, ...]
    comparison: Comparison


@dataclass(frozen=True, slots=True)
class FieldIs:
    field: str
    comparison: Comparison


@dataclass(frozen=True, slots=True)
class PropertyIs:
    column: str
    keys: tuple[str, ...]
    comparison: Comparison


@dataclass(frozen=True, slots=True)
class EventsDone:
    type: str
    name: str | None
    where: tuple[PropertyIs, ...]
    within_days: int | None
    count_gte: int | None
    count_lte: int | None


@dataclass(frozen=True, slots=True)
class OrdersPlaced:
    within_days: int | None
    channel: str | None
    currency: str | None
    count_gte: int | None
    count_lte: int | None
    total_gte: int | None
    total_lte: int | None


@dataclass(frozen=True, slots=True)
class ChannelUsed:
    kinds: tuple[str, ...]
    within_days: int | None


@dataclass(frozen=True, slots=True)
class LoyaltyTier:
    codes: tuple[str, ...]
    # Where each code was written, to name it when it is not one of the program's tiers.
    paths: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ConsentIs:
    purpose: str
    channel_kind: str
    granted: bool


@dataclass(frozen=True, slots=True)
class HasIdentity:
    kinds: tuple[str, ...]


Node = (
    AllOf
    | AnyOf
    | NotOf
    | TraitIs
    | FieldIs
    | EventsDone
    | OrdersPlaced
    | ChannelUsed
    | LoyaltyTier
    | ConsentIs
    | HasIdentity
)


# --- parsing and checking ---------------------------------------------------------------------


def _fail(path: str, message: str) -> Invalid:
    return Invalid(f"{path}: {message}", field=path, code="invalid_rule")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | bool) or _is_number(value)


def _object(value: Any, path: str, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path, f"must be an object ({what})")
    return value


def _only_keys(condition: dict[str, Any], allowed: Iterable[str], path: str) -> None:
    allowed = tuple(allowed)
    for key in condition:
        if key not in allowed:
            raise _fail(f"{path}.{key}", f"unknown key {key!r}; use {', '.join(allowed)}")


def _whole(value: Any, path: str, *, minimum: int, maximum: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise _fail(path, f"must be a whole number of at least {minimum}")
    if maximum is not None and value > maximum:
        raise _fail(path, f"must be at most {maximum}")
    return value


def _optional_whole(
    condition: dict[str, Any], key: str, path: str, *, minimum: int, maximum: int | None = None
) -> int | None:
    if key not in condition or condition[key] is None:
        return None
    return _whole(condition[key], f"{path}.{key}", minimum=minimum, maximum=maximum)


def _choice(value: Any, path: str, choices: Sequence[str], what: str) -> str:
    if not isinstance(value, str) or value not in choices:
        raise _fail(path, f"unknown {what} {value!r}; use one of {', '.join(choices)}")
    return value


def _choices(value: Any, path: str, choices: Sequence[str], what: str) -> tuple[str, ...]:
    """One choice, or a non-empty list of them (each checked under its index)."""
    if isinstance(value, list):
        if not value or len(value) > MAX_LIST:
            raise _fail(path, f"must list between 1 and {MAX_LIST} {what}s")
        return tuple(
            dict.fromkeys(_choice(v, f"{path}.{i}", choices, what) for i, v in enumerate(value))
        )
    return (_choice(value, path, choices, what),)


def _text(value: Any, path: str, *, limit: int = 200) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise _fail(path, f"must be a non-empty text of at most {limit} characters")
    return value


def _json_keys(value: Any, path: str) -> tuple[str, ...]:
    if not isinstance(value, str) or not value:
        raise _fail(path, "must name a trait, such as city or address.city")
    keys = tuple(value.split("."))
    if len(keys) > 8 or not all(_JSON_KEY.match(key) for key in keys):
        raise _fail(
            path,
            f"{value!r} is not a usable name: letters, digits, _ - : @ $, with dots between "
            "the names of nested objects",
        )
    return keys


def _comparison(condition: dict[str, Any], path: str, *, dates: bool = False) -> Comparison:
    """The ``op`` and ``value`` of a trait, field or property condition (``op`` defaults to
    ``eq``); with ``dates`` the ordering operators compare ISO 8601 times."""
    op = condition.get("op", "eq")
    if op not in OPERATORS:
        raise _fail(f"{path}.op", f"unknown operator {op!r}; use one of {', '.join(OPERATORS)}")
    value_path = f"{path}.value"
    if op == "exists":
        value = condition.get("value", True)
        if not isinstance(value, bool):
            raise _fail(value_path, "must be true or false for exists")
        return Comparison(op, value)
    if "value" not in condition:
        raise _fail(value_path, f"is required with op {op}")
    value = condition["value"]
    if op == "in":
        if not isinstance(value, list) or not value or len(value) > MAX_LIST:
            raise _fail(value_path, f"must list between 1 and {MAX_LIST} values for in")
        for index, item in enumerate(value):
            if not _is_scalar(item):
                raise _fail(f"{value_path}.{index}", "must be a text, a number or true/false")
        return Comparison(op, tuple(value))
    if op == "contains":
        if not isinstance(value, str) or not value:
            raise _fail(value_path, "must be a non-empty text for contains")
        return Comparison(op, value)
    if op in ORDERING:
        if dates:
            return Comparison(op, _moment(value, value_path))
        if not (_is_number(value) or isinstance(value, str)):
            raise _fail(value_path, f"must be a number or a text for {op}")
        return Comparison(op, value)
    if not _is_scalar(value):
        raise _fail(value_path, f"must be a text, a number or true/false for {op}")
    return Comparison(op, value)


def _moment(value: Any, path: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None:
        raise _fail(path, "must be an ISO 8601 time such as 2026-01-31T00:00:00Z")
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class _Parser:
    def __init__(self) -> None:
        self.conditions = 0

    def node(self, value: Any, path: str, depth: int) -> Node:
        condition = _object(value, path, "a condition, or all / any / not")
        if depth > MAX_DEPTH:
            raise _fail(path, f"the rule nests deeper than {MAX_DEPTH} levels")
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            raise _fail(path, f"a rule has at most {MAX_CONDITIONS} conditions")
        kinds = [key for key in condition if key in COMBINATORS or key in CONDITIONS]
        if not kinds:
            known = ", ".join(COMBINATORS + CONDITIONS)
            if not condition:
                raise _fail(path, f"an empty condition; use one of {known}")
            first = next(iter(condition))
            raise _fail(f"{path}.{first}", f"unknown condition {first!r}; use one of {known}")
        if len(kinds) > 1:
            raise _fail(
                path,
                f"one condition per object, found {' and '.join(kinds)}: wrap them in all or any",
            )
        kind = kinds[0]
        here = f"{path}.{kind}"
        if kind in ("all", "any"):
            _only_keys(condition, (kind,), path)
            items = condition[kind]
            if not isinstance(items, list):
                raise _fail(here, "must be a list of conditions")
            if kind == "any" and not items:
                raise _fail(here, "lists no condition, so nobody would match")
            children = tuple(
                self.node(item, f"{here}.{index}", depth + 1) for index, item in enumerate(items)
            )
            return AllOf(children) if kind == "all" else AnyOf(children)
        if kind == "not":
            _only_keys(condition, ("not",), path)
            return NotOf(self.node(condition["not"], here, depth + 1))
        parse = getattr(self, f"_{kind}")
        return cast(Node, parse(condition, path))

    def _trait(self, condition: dict[str, Any], path: str) -> Node:
        _only_keys(condition, ("trait", "op", "value"), path)
        keys = _json_keys(condition["trait"], f"{path}.trait")
        return TraitIs(keys, _comparison(condition, path))

    def _field(self, condition: dict[str, Any], path: str) -> Node:
        _only_keys(condition, ("field", "op", "value"), path)
        field = _choice(condition["field"], f"{path}.field", PROFILE_FIELDS, "field")
        comparison = _comparison(condition, path, dates=field == "created_at")
        if field == "created_at" and comparison.op not in (*ORDERING, "exists"):
            raise _fail(f"{path}.op", "created_at is compared with gt, gte, lt or lte")
        if field != "created_at":
            values = comparison.value if comparison.op == "in" else (comparison.value,)
            if comparison.op != "exists" and not all(isinstance(v, str) for v in values):
                raise _fail(f"{path}.value", f"{field} is a text: compare it with texts")
        return FieldIs(field, comparison)

    def _event(self, condition: dict[str, Any], path: str) -> Node:
        _only_keys(condition, ("event", "within_days", "count_gte", "count_lte"), path)
        here = f"{path}.event"
        event = _object(condition["event"], here, "type, name and where")
        _only_keys(event, ("type", "name", "where"), here)
        type_ = _choice(event.get("type", "track"), f"{here}.type", EVENT_TYPES, "event type")
        name = None
        if event.get("name") is not None:
            name = _text(event["name"], f"{here}.name")
        where: list[PropertyIs] = []
        raw_where = _object(event.get("where", {}), f"{here}.where", "property: value")
        for key, expected in raw_where.items():
            key_path = f"{here}.where.{key}"
            column, _, rest = str(key).partition(".")
            if column not in EVENT_FIELDS or not rest:
                raise _fail(key_path, "name a property as properties.<name> or context.<name>")
            keys = _json_keys(rest, key_path)
            if isinstance(expected, dict):
                _only_keys(expected, ("op", "value"), key_path)
                comparison = _comparison(expected, key_path)
            elif isinstance(expected, list):
                comparison = _comparison({"op": "in", "value": expected}, key_path)
            else:
                comparison = _comparison({"op": "eq", "value": expected}, key_path)
            where.append(PropertyIs(column, keys, comparison))
        count_gte, count_lte = self._counts(condition, path)
        return EventsDone(
            type=type_,
            name=name,
            where=tuple(where),
            within_days=_optional_whole(
                condition, "within_days", path, minimum=1, maximum=MAX_DAYS
            ),
            count_gte=count_gte,
            count_lte=count_lte,
        )

    @staticmethod
    def _counts(condition: dict[str, Any], path: str) -> tuple[int | None, int | None]:
        count_gte = _optional_whole(condition, "count_gte", path, minimum=1)
        count_lte = _optional_whole(condition, "count_lte", path, minimum=0)
        if count_gte is not None and count_lte is not None and count_lte < count_gte:
            raise _fail(f"{path}.count_lte", "is below count_gte, so nobody would match")
        return count_gte, count_lte

    def _orders(self, condition: dict[str, Any], path: str) -> Node:
        _only_keys(condition, ("orders",), path)
        here = f"{path}.orders"
        orders = _object(condition["orders"], here, "count_gte, within_days, channel...")
        _only_keys(
            orders,
            (
                "count_gte",
                "count_lte",
                "within_days",
                "channel",
                "currency",
                "total_gte",
                "total_lte",
            ),
            here,
        )
        channel = orders.get("channel")
        if channel is not None and not (
            channel in (*SHARED_CHANNELS, "store")
            or (isinstance(channel, str) and _STORE_CHANNEL.match(channel))
        ):
            raise _fail(
                f"{here}.channel",
                f"unknown sales channel {channel!r}; use {', '.join(SHARED_CHANNELS)}, store "
                "(any store) or store:<a store's location code>",
            )
        currency = orders.get("currency")
        if currency is not None and not (isinstance(currency, str) and _CURRENCY.match(currency)):
            raise _fail(f"{here}.currency", "must be an ISO 4217 code such as EUR")
        total_gte = _optional_whole(orders, "total_gte", here, minimum=0)
        total_lte = _optional_whole(orders, "total_lte", here, minimum=0)
        if (total_gte is not None or total_lte is not None) and currency is None:
            raise _fail(
                f"{here}.currency",
                "is required with total_gte or total_lte: totals are minor units of a currency",
            )
        count_gte, count_lte = self._counts(orders, here)
        return OrdersPlaced(
            within_days=_optional_whole(orders, "within_days", here, minimum=1, maximum=MAX_DAYS),
            channel=channel,
            currency=currency,
            count_gte=count_gte,
            count_lte=count_lte,
            total_gte=total_gte,
            total_lte=total_lte,
        )

    def _channel_used(self, condition: dict[str, Any], path: str) -> Node:
        _only_keys(condition, ("channel_used", "within_days"), path)
        kinds = _choices(
            condition["channel_used"], f"{path}.channel_used", CHANNEL_KINDS, "channel kind"
        )
        within = _optional_whole(condition, "within_days", path, minimum=1, maximum=MAX_DAYS)
        return ChannelUsed(kinds, within)

    def _loyalty_tier(self, condition: dict[str, Any], path: str) -> Node:
        _only_keys(condition, ("loyalty_tier",), path)
        here = f"{path}.loyalty_tier"
        raw = condition["loyalty_tier"]
        values = raw if isinstance(raw, list) else [raw]
        if not values or len(values) > MAX_LIST:
            raise _fail(here, f"must list between 1 and {MAX_LIST} tier codes")
        paths = tuple(f"{here}.{i}" if isinstance(raw, list) else here for i in range(len(values)))
        codes = tuple(_text(v, where, limit=32) for v, where in zip(values, paths, strict=True))
        return LoyaltyTier(codes, paths)

    def _consent(self, condition: dict[str, Any], path: str) -> Node:
        _only_keys(condition, ("consent",), path)
        here = f"{path}.consent"
        consent = _object(condition["consent"], here, "purpose, channel_kind and granted")
        _only_keys(consent, ("purpose", "channel_kind", "granted"), here)
        granted = consent.get("granted", True)
        if not isinstance(granted, bool):
            raise _fail(f"{here}.granted", "must be true or false")
        return ConsentIs(
            purpose=_choice(consent.get("purpose"), f"{here}.purpose", PURPOSES, "purpose"),
            channel_kind=_choice(
                consent.get("channel_kind"), f"{here}.channel_kind", CHANNEL_KINDS, "channel kind"
            ),
            granted=granted,
        )

    def _has_identity(self, condition: dict[str, Any], path: str) -> Node:
        _only_keys(condition, ("has_identity",), path)
        kinds = _choices(
            condition["has_identity"], f"{path}.has_identity", IDENTITY_KINDS, "identity kind"
        )
        return HasIdentity(kinds)


def parse_rule(rule: Any, *, path: str = "rule") -> Node:
    """The rule as a tree of conditions, or ``Invalid`` naming the path of what is wrong."""
    return _Parser().node(rule, path, 1)


def _walk(node: Node) -> Iterable[Node]:
    yield node
    if isinstance(node, AllOf | AnyOf):
        for child in node.children:
            yield from _walk(child)
    elif isinstance(node, NotOf):
        yield from _walk(node.child)


async def check_rule(session: AsyncSession, tenant: TenantContext, rule: Any) -> Node:
    """``parse_rule`` plus what needs the tenant's data: the loyalty tiers a rule names exist."""
    node = parse_rule(rule)
    tiers = [n for n in _walk(node) if isinstance(n, LoyaltyTier)]
    if tiers:
        program = await loyalty.get_program(session, tenant)
        known = [tier.code for tier in program.tiers] if program is not None else []
        for condition in tiers:
            for code, path in zip(condition.codes, condition.paths, strict=True):
                if code not in known:
                    raise _fail(
                        path,
                        f"unknown loyalty tier {code!r}; the program's tiers are "
                        + (", ".join(known) if known else "none (no loyalty program yet)"),
                    )
    return node


# --- compiling --------------------------------------------------------------------------------

# Names of JSON types, as each database's type function spells them.
_JSON_TYPES: dict[str, dict[str, tuple[str, ...]]] = {
    "postgresql": {
        "string": ("string",),
        "number": ("number",),
        "true": ("boolean",),
        "false": ("boolean",),
        "array": ("array",),
        "null": ("null",),
    },
    "sqlite": {
        "string": ("text",),
        "number": ("integer", "real"),
        "true": ("true",),
        "false": ("false",),
        "array": ("array",),
        "null": ("null",),
    },
}


class _JsonValue:
    """A value inside a JSON column, read with the database's own JSON functions."""

    def __init__(self, dialect: str, column: Any, keys: tuple[str, ...]) -> None:
        self.postgresql = dialect == "postgresql"
        self.types = _JSON_TYPES["postgresql" if self.postgresql else "sqlite"]
        self.column = column
        self.keys = keys
        self.path = "$" + "".join(f'."{key}"' for key in keys)

    def _json(self) -> Any:
        return self.column[self.keys]

    def type_is(self, kind: str) -> ColumnElement[bool]:
        """Whether the value is of a JSON ``kind``: two-valued, false when absent."""
        return func.coalesce(self._type(), "").in_(self.types[kind])

    def text(self) -> Any:
        if self.postgresql:
            return self._json().as_string()
        return func.json_extract(self.column, self.path)

    def number(self) -> Any:
        if self.postgresql:
            return self._json().as_float()
        return func.json_extract(self.column, self.path)

    def boolean_is(self, value: bool) -> ColumnElement[bool]:
        kind = "true" if value else "false"
        if self.postgresql:
            return and_(self.type_is(kind), self.text() == kind)
        return self.type_is(kind)

    def has_element(self, value: str) -> ColumnElement[bool]:
        """Whether the value is an array holding the text ``value``."""
        if self.postgresql:
            # json_array_elements_text fails on anything but an array; NULL gives no rows.
            array = case((self.type_is("array"), self._json()), else_=null())
            elements = func.json_array_elements_text(array).table_valued("value")
            return exists(select(literal(1)).select_from(elements).where(elements.c.value == value))
        each = func.json_each(self.column, self.path).table_valued("value", "type")
        return and_(
            self.type_is("array"),
            exists(
                select(literal(1))
                .select_from(each)
                .where(each.c.type == "text", each.c.value == value)
            ),
        )

    def equals(self, value: Scalar) -> ColumnElement[bool]:
        if isinstance(value, bool):
            return self.boolean_is(value)
        if isinstance(value, str):
            return and_(self.type_is("string"), self.text() == value)
        return _guarded(self.type_is("number"), self.number() == value)

    def compare(self, comparison: Comparison) -> ColumnElement[bool]:
        op, value = comparison.op, comparison.value
        if op == "eq":
            return self.equals(value)
        if op == "neq":
            return not_(self.equals(value))
        if op == "in":
            texts = [v for v in value if isinstance(v, str)]
            numbers = [v for v in value if _is_number(v)]
            tests: list[ColumnElement[bool]] = [
                self.boolean_is(v) for v in dict.fromkeys(v for v in value if isinstance(v, bool))
            ]
            if texts:
                tests.append(and_(self.type_is("string"), self.text().in_(texts)))
            if numbers:
                tests.append(_guarded(self.type_is("number"), self.number().in_(numbers)))
            return or_(*tests)
        if op == "contains":
            return or_(
                and_(self.type_is("string"), self.text().icontains(value, autoescape=True)),
                self.has_element(value),
            )
        if op == "exists":
            present = func.coalesce(self._type(), "null").not_in(self.types["null"])
            return present if value else not_(present)
        if isinstance(value, str):
            return and_(self.type_is("string"), _ordered(self.text(), op, value))
        return _guarded(self.type_is("number"), _ordered(self.number(), op, value))

    def _type(self) -> Any:
        if self.postgresql:
            return func.json_typeof(self._json())
        return func.json_type(self.column, self.path)


def _guarded(guard: ColumnElement[bool], test: ColumnElement[bool]) -> ColumnElement[bool]:
    """``test`` only where ``guard`` holds, else false; evaluated in that order (PostgreSQL does
    not promise to evaluate ``AND`` left to right, and a cast of text to a number would fail)."""
    return cast(ColumnElement[bool], case((guard, test), else_=false()))


def _ordered(left: Any, op: str, right: Any) -> ColumnElement[bool]:
    if op == "gt":
        return cast(ColumnElement[bool], left > right)
    if op == "gte":
        return cast(ColumnElement[bool], left >= right)
    if op == "lt":
        return cast(ColumnElement[bool], left < right)
    return cast(ColumnElement[bool], left <= right)


def _column_compare(column: Any, comparison: Comparison) -> ColumnElement[bool]:
    """A comparison of a nullable profile column; NULL compares false (so ``not`` is exact)."""
    op, value = comparison.op, comparison.value
    present = column.is_not(None)
    if op == "exists":
        return cast(ColumnElement[bool], present if value else column.is_(None))
    if op == "eq":
        test = column == value
    elif op == "neq":
        return not_(and_(present, column == value))
    elif op == "in":
        test = column.in_(list(value))
    elif op == "contains":
        test = column.icontains(value, autoescape=True)
    else:
        test = _ordered(column, op, value)
    return and_(present, test)


@dataclass(frozen=True, slots=True)
class _Compiler:
    """Turns a parsed rule into one boolean expression over ``customers``."""

    dialect: str
    tenant_id: str
    at: datetime

    def since(self, days: int) -> datetime:
        return self.at - timedelta(days=days)

    def predicate(self, node: Node) -> ColumnElement[bool]:
        if isinstance(node, AllOf):
            return and_(true(), *(self.predicate(child) for child in node.children))
        if isinstance(node, AnyOf):
            return or_(*(self.predicate(child) for child in node.children))
        if isinstance(node, NotOf):
            return not_(self.predicate(node.child))
        if isinstance(node, TraitIs):
            return _JsonValue(self.dialect, Customer.traits, node.keys).compare(node.comparison)
        if isinstance(node, FieldIs):
            return _column_compare(getattr(Customer, node.field), node.comparison)
        if isinstance(node, EventsDone):
            return self.events(node)
        if isinstance(node, OrdersPlaced):
            return self.orders(node)
        if isinstance(node, ChannelUsed):
            return self.channel_used(node)
        if isinstance(node, LoyaltyTier):
            return exists(
                select(literal(1)).where(
                    LoyaltyBalance.tenant_id == self.tenant_id,
                    LoyaltyBalance.customer_id == Customer.id,
                    LoyaltyBalance.tier.in_(node.codes),
                )
            )
        if isinstance(node, ConsentIs):
            return self.consent(node)
        return exists(
            select(literal(1)).where(
                Identity.customer_id == Customer.id,
                Identity.tenant_id == self.tenant_id,
                Identity.kind.in_(node.kinds),
            )
        )

    @staticmethod
    def counted(
        conditions: list[ColumnElement[bool]],
        *,
        count_gte: int | None,
        count_lte: int | None,
        sums: Sequence[tuple[Any, int | None, int | None]] = (),
    ) -> ColumnElement[bool]:
        """Rows matching ``conditions``: at least one (``EXISTS``) unless counts or sums are
        asked for, then correlated aggregates compared with their bounds."""
        bounded = [(lo, hi) for _, lo, hi in sums if lo is not None or hi is not None]
        if count_lte is None and count_gte in (None, 1) and not bounded:
            return exists(select(literal(1)).where(*conditions))
        tests: list[ColumnElement[bool]] = []
        if count_gte is not None or count_lte is not None:
            count = select(func.count()).where(*conditions).scalar_subquery()
            if count_gte is not None:
                tests.append(count >= count_gte)
            if count_lte is not None:
                tests.append(count <= count_lte)
        for column, lowest, highest in sums:
            total = select(func.coalesce(func.sum(column), 0)).where(*conditions).scalar_subquery()
            if lowest is not None:
                tests.append(total >= lowest)
            if highest is not None:
                tests.append(total <= highest)
        return and_(*tests)

    def events(self, node: EventsDone) -> ColumnElement[bool]:
        conditions: list[ColumnElement[bool]] = [
            TimelineEvent.customer_id == Customer.id,
            TimelineEvent.tenant_id == self.tenant_id,
            TimelineEvent.type == node.type,
        ]
        if node.name is not None:
            conditions.append(TimelineEvent.name == node.name)
        if node.within_days is not None:
            conditions.append(TimelineEvent.occurred_at >= self.since(node.within_days))
        for where in node.where:
            column = getattr(TimelineEvent, where.column)
            conditions.append(
                _JsonValue(self.dialect, column, where.keys).compare(where.comparison)
            )
        return self.counted(conditions, count_gte=node.count_gte, count_lte=node.count_lte)

    def orders(self, node: OrdersPlaced) -> ColumnElement[bool]:
        conditions: list[ColumnElement[bool]] = [
            Order.tenant_id == self.tenant_id,
            Order.customer_id == Customer.id,
            Order.status != "cancelled",
        ]
        if node.within_days is not None:
            conditions.append(Order.created_at >= self.since(node.within_days))
        if node.channel == "store":
            conditions.append(Order.channel.startswith("store:"))
        elif node.channel is not None:
            conditions.append(Order.channel == node.channel)
        if node.currency is not None:
            conditions.append(Order.currency == node.currency)
        return self.counted(
            conditions,
            count_gte=node.count_gte,
            count_lte=node.count_lte,
            sums=[(Order.total, node.total_gte, node.total_lte)],
        )

    def channel_used(self, node: ChannelUsed) -> ColumnElement[bool]:
        conditions: list[ColumnElement[bool]] = [
            Conversation.customer_id == Customer.id,
            Conversation.tenant_id == self.tenant_id,
            Message.direction == "inbound",
            Channel.kind.in_(node.kinds),
        ]
        if node.within_days is not None:
            conditions.append(Message.sent_at >= self.since(node.within_days))
        return exists(
            select(literal(1))
            .select_from(Conversation)
            .join(Message, Message.conversation_id == Conversation.id)
            .join(Channel, Channel.id == Message.channel_id)
            .where(*conditions)
        )

    def consent(self, node: ConsentIs) -> ColumnElement[bool]:
        # The latest record of the purpose and channel kind wins (by time, then by id, as
        # ``customers.current_consents`` orders them); "granted" is a latest record that grants.
        later = Consent.__table__.alias("later_consent")
        latest_grants = exists(
            select(literal(1)).where(
                Consent.customer_id == Customer.id,
                Consent.tenant_id == self.tenant_id,
                Consent.purpose == node.purpose,
                Consent.channel_kind == node.channel_kind,
                Consent.granted.is_(True),
                ~exists(
                    select(literal(1)).where(
                        later.c.customer_id == Consent.customer_id,
                        later.c.purpose == Consent.purpose,
                        later.c.channel_kind == Consent.channel_kind,
                        or_(
                            later.c.recorded_at > Consent.recorded_at,
                            and_(
                                later.c.recorded_at == Consent.recorded_at,
                                later.c.id > Consent.id,
                            ),
                        ),
                    )
                ),
            )
        )
        return latest_grants if node.granted else not_(latest_grants)


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def _matching(session: AsyncSession, tenant_id: str, node: Node, *columns: Any) -> Select[Any]:
    """``SELECT columns FROM customers`` of the tenant's live customers that match ``node``."""
    compiler = _Compiler(dialect=_dialect(session), tenant_id=tenant_id, at=now())
    return select(*columns).where(
        Customer.tenant_id == tenant_id,
        Customer.merged_into_id.is_(None),
        compiler.predicate(node),
    )


# --- segments ---------------------------------------------------------------------------------


async def list_segments(session: AsyncSession, tenant: TenantContext) -> Sequence[Segment]:
    statement = tenant_scope(select(Segment).order_by(Segment.name), Segment, tenant)
    return (await session.execute(statement)).scalars().all()


async def get_segment(session: AsyncSession, tenant: TenantContext, segment_id: str) -> Segment:
    return await get_owned(session, Segment, segment_id, tenant, what="segment")


async def _named(session: AsyncSession, tenant: TenantContext, name: str) -> Segment | None:
    statement = tenant_scope(select(Segment).where(Segment.name == name), Segment, tenant)
    return (await session.execute(statement)).scalar_one_or_none()


def _name(value: str) -> str:
    name = value.strip()
    if not name or len(name) > 200:
        raise Invalid("a segment's name is 1 to 200 characters", field="name")
    return name


def _taken(name: str) -> Conflict:
    return Conflict(f"a segment named {name!r} exists already", code="segment_exists")


async def create_segment(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    name: str,
    rule: dict[str, Any],
    description: str | None = None,
) -> tuple[Segment, bool]:
    """Save a segment; return it and whether it is new.

    The name is the natural key: sending the same segment again (same name, rule and
    description) answers the one saved; another segment under a taken name is a ``Conflict``.
    """
    name = _name(name)
    await check_rule(session, tenant, rule)
    existing = await _named(session, tenant, name)
    if existing is None:
        moment = now()
        segment = Segment(
            id=new_id(),
            tenant_id=tenant.id,
            name=name,
            description=description,
            rule=rule,
            created_at=moment,
            updated_at=moment,
            refreshed_at=None,
            member_count=0,
        )
        count = await session.scalar(
            select(func.count()).select_from(Segment).where(Segment.tenant_id == tenant.id)
        )
        if (count or 0) >= MAX_SEGMENTS:
            raise Conflict(
                f"a tenant has at most {MAX_SEGMENTS} segments", code="too_many_segments"
            )
        try:
            async with session.begin_nested():
                session.add(segment)
                await session.flush()
            return segment, True
        except IntegrityError:
            # A concurrent request saved the same name first.
            existing = await _named(session, tenant, name)
            if existing is None:
                raise
    if existing.rule == rule and existing.description == description:
        return existing, False
    raise _taken(name)


async def update_segment(
    session: AsyncSession, tenant: TenantContext, segment_id: str, *, changes: dict[str, Any]
) -> Segment:
    """Change a segment's name, description or rule; a new rule makes it due for a refresh."""
    segment = await get_segment(session, tenant, segment_id)
    if "name" in changes and changes["name"] is not None:
        name = _name(changes["name"])
        if name != segment.name:
            other = await _named(session, tenant, name)
            if other is not None:
                raise _taken(name)
            segment.name = name
    if "description" in changes:
        segment.description = changes["description"]
    if changes.get("rule") is not None and changes["rule"] != segment.rule:
        await check_rule(session, tenant, changes["rule"])
        segment.rule = changes["rule"]
        segment.refreshed_at = None
    segment.updated_at = now()
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as error:
        raise _taken(segment.name) from error
    return segment


async def delete_segment(session: AsyncSession, tenant: TenantContext, segment_id: str) -> None:
    """Delete a segment and its membership (no ``segment.exited``: the segment is gone)."""
    segment = await get_segment(session, tenant, segment_id)
    await session.execute(delete(SegmentMember).where(SegmentMember.segment_id == segment.id))
    await session.delete(segment)
    await session.flush()


# --- evaluation -------------------------------------------------------------------------------


async def count_rule(session: AsyncSession, tenant: TenantContext, rule: Any) -> int:
    """How many live customers match ``rule`` now (checked first, as when saving it)."""
    node = await check_rule(session, tenant, rule)
    return await _count(session, tenant.id, node)


async def _count(session: AsyncSession, tenant_id: str, node: Node) -> int:
    query = _matching(session, tenant_id, node, func.count()).select_from(Customer)
    return int(await session.scalar(query) or 0)


async def count_members(session: AsyncSession, tenant: TenantContext, segment_id: str) -> int:
    """The segment's live count: its rule evaluated now, in one query."""
    segment = await get_segment(session, tenant, segment_id)
    return await _count(session, tenant.id, parse_rule(segment.rule))


def _page_limit(limit: int) -> int:
    if limit < 1 or limit > MAX_PAGE:
        raise Invalid(f"limit must be between 1 and {MAX_PAGE}", field="limit")
    return limit


async def members_page(
    session: AsyncSession,
    tenant: TenantContext,
    segment_id: str,
    *,
    after: str | None,
    limit: int,
) -> list[tuple[str, str | None]]:
    """``(customer id, name)`` of live members with ids after ``after``, in id order."""
    segment = await get_segment(session, tenant, segment_id)
    query = _matching(session, tenant.id, parse_rule(segment.rule), Customer.id, Customer.name)
    if after:
        query = query.where(Customer.id > after)
    rows = await session.execute(query.order_by(Customer.id).limit(_page_limit(limit)))
    return [(row[0], row[1]) for row in rows.all()]


async def member_ids(
    session: AsyncSession,
    tenant: TenantContext,
    segment_id: str,
    *,
    after: str | None,
    limit: int,
) -> list[str]:
    """Ids of the segment's live members after ``after`` (evaluated now), in id order."""
    page = await members_page(session, tenant, segment_id, after=after, limit=limit)
    return [customer_id for customer_id, _ in page]


async def is_member(
    session: AsyncSession, tenant: TenantContext, segment_id: str, customer_id: str
) -> bool:
    """Whether the customer matches the segment's rule now. A merged customer is no member
    (their survivor may be); an unknown customer is none either."""
    segment = await get_segment(session, tenant, segment_id)
    query = _matching(session, tenant.id, parse_rule(segment.rule), literal(1)).where(
        Customer.id == customer_id
    )
    return (await session.execute(query.limit(1))).first() is not None


# --- membership -------------------------------------------------------------------------------


async def refresh_due(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    interval_seconds: float = REFRESH_SECONDS,
    budget: int = REFRESH_BUDGET,
) -> int:
    """Bring due segments' membership up to date; return how many members entered or left.

    One segment per transaction; ``budget`` bounds the changes of one call (the rest follow
    at the next call, the segment staying due).
    """
    changed = 0
    while changed < budget:
        async with sessionmaker() as session, session.begin():
            segment = await _claim_due(session, interval_seconds)
            if segment is None:
                break
            done, finished = await _refresh(session, segment, budget - changed)
        changed += done
        if not finished:
            break
    return changed


async def _claim_due(session: AsyncSession, interval_seconds: float) -> Segment | None:
    cutoff = now() - timedelta(seconds=interval_seconds)
    statement = (
        select(Segment)
        .where(or_(Segment.refreshed_at.is_(None), Segment.refreshed_at <= cutoff))
        .order_by(Segment.refreshed_at.nulls_first(), Segment.id)
        .limit(1)
    )
    if _dialect(session) == "postgresql":
        statement = statement.with_for_update(skip_locked=True)
    return (await session.execute(statement)).scalar_one_or_none()


async def _refresh(session: AsyncSession, segment: Segment, budget: int) -> tuple[int, bool]:
    """Diff one segment's members against its rule, up to ``budget`` changes; return the
    changes made and whether the membership now matches."""
    moment = now()
    try:
        node = parse_rule(segment.rule)
    except Invalid as error:
        # A rule saved under older checks: skip it until its next turn rather than retry it
        # at every call.
        log.warning("segments.rule_invalid", segment_id=segment.id, error=error.message)
        segment.refreshed_at = moment
        return 0, True
    current = set(
        (await session.scalars(_matching(session, segment.tenant_id, node, Customer.id))).all()
    )
    stored = set(
        (
            await session.scalars(
                select(SegmentMember.customer_id).where(SegmentMember.segment_id == segment.id)
            )
        ).all()
    )
    leaving = sorted(stored - current)[:budget]
    entering = sorted(current - stored)[: budget - len(leaving)]
    connection = await session.connection()
    left = await _remove(session, segment.id, leaving)
    entered = await _add(session, segment, entering, moment)
    for topic, customer_ids in (("segment.exited", left), ("segment.entered", entered)):
        for customer_id in customer_ids:
            await emit(
                session,
                tenant_id=segment.tenant_id,
                topic=topic,
                payload={"segment_id": segment.id, "customer_id": customer_id},
                connection=connection,
            )
    finished = len(leaving) + len(entering) == len(stored ^ current)
    if finished:
        segment.refreshed_at = moment
        segment.member_count = len(current)
    await session.flush()
    return len(left) + len(entered), finished


async def _remove(session: AsyncSession, segment_id: str, customer_ids: list[str]) -> list[str]:
    removed: list[str] = []
    for start in range(0, len(customer_ids), _CHUNK):
        rows = await session.execute(
            delete(SegmentMember)
            .where(
                SegmentMember.segment_id == segment_id,
                SegmentMember.customer_id.in_(customer_ids[start : start + _CHUNK]),
            )
            .returning(SegmentMember.customer_id),
            execution_options={"synchronize_session": False},
        )
        removed.extend(rows.scalars().all())
    return sorted(removed)


async def _add(
    session: AsyncSession, segment: Segment, customer_ids: list[str], moment: datetime
) -> list[str]:
    if not customer_ids:
        return []
    statement = (
        customers.dialect_insert(session, SegmentMember)
        .on_conflict_do_nothing(index_elements=["segment_id", "customer_id"])
        .returning(SegmentMember.customer_id)
    )
    rows = await session.execute(
        statement,
        [
            {
                "segment_id": segment.id,
                "customer_id": customer_id,
                "tenant_id": segment.tenant_id,
                "entered_at": moment,
            }
            for customer_id in customer_ids
        ],
    )
    return sorted(rows.scalars().all())


async def memberships_of(
    session: AsyncSession, tenant: TenantContext, customer_id: str
) -> Sequence[SegmentMember]:
    """The segments a customer was in at their last refresh (for a 360° view)."""
    statement = tenant_scope(
        select(SegmentMember)
        .where(SegmentMember.customer_id == customer_id)
        .order_by(SegmentMember.segment_id),
        SegmentMember,
        tenant,
    )
    return (await session.execute(statement)).scalars().all()


class SegmentsMergeParticipant:
    """A merged customer's memberships are dropped; their segments become due (see above)."""

    name = "segments"

    async def absorb(
        self, session: AsyncSession, tenant: TenantContext, *, survivor_id: str, merged_id: str
    ) -> dict[str, Any]:
        rows = await session.execute(
            delete(SegmentMember)
            .where(SegmentMember.tenant_id == tenant.id, SegmentMember.customer_id == merged_id)
            .returning(SegmentMember.segment_id, SegmentMember.entered_at),
            execution_options={"synchronize_session": False},
        )
        dropped = sorted((row[0], row[1].isoformat()) for row in rows.all())
        if not dropped:
            return {}
        await _make_due(session, [segment_id for segment_id, _ in dropped])
        return {"memberships": [list(row) for row in dropped]}

    async def restore(
        self,
        session: AsyncSession,
        tenant: TenantContext,
        *,
        survivor_id: str,
        merged_id: str,
        record: dict[str, Any],
    ) -> None:
        memberships = record.get("memberships") or []
        if not memberships:
            return
        segment_ids = [segment_id for segment_id, _ in memberships]
        still = set(
            (
                await session.scalars(
                    select(Segment.id).where(
                        Segment.tenant_id == tenant.id, Segment.id.in_(segment_ids)
                    )
                )
            ).all()
        )
        rows = [
            {
                "segment_id": segment_id,
                "customer_id": merged_id,
                "tenant_id": tenant.id,
                "entered_at": datetime.fromisoformat(entered_at),
            }
            for segment_id, entered_at in memberships
            if segment_id in still
        ]
        if rows:
            await session.execute(
                customers.dialect_insert(session, SegmentMember).on_conflict_do_nothing(
                    index_elements=["segment_id", "customer_id"]
                ),
                rows,
            )
            await _make_due(session, sorted(still))


async def _make_due(session: AsyncSession, segment_ids: list[str]) -> None:
    await session.execute(
        update(Segment).where(Segment.id.in_(segment_ids)).values(refreshed_at=None),
        execution_options={"synchronize_session": False},
    )


customers.register_merge_participant(SegmentsMergeParticipant())
