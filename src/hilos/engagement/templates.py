"""Message templates: one message of the business, rendered for each channel and language.

A template has a ``name`` (unique per tenant), a ``purpose`` (``marketing``: the sending rules of
``sending`` apply; ``service``: they do not) and ``variants``, one per language (``es``, ``en``,
``pt-BR``...). A variant holds any of these renderings:

============ ================================================================================
``email``    ``subject``, ``text`` and optionally ``html`` (the only rendering escaped as HTML)
``whatsapp`` an approved Meta template: ``template_name``, ``language`` (Meta's code, such as
             ``es_ES``) and ``parameters``, each a Jinja expression (``customer.first_name``)
             or a template string (``{{ customer.first_name or '' }}``); a business cannot
             write free text on WhatsApp outside the customer's 24-hour window, a template
             goes at any time
``sms``      ``text``; the answer shows its length and segments (GSM-7 or UCS-2)
``text``     the text for Messenger, Instagram, Telegram and web chat, and for SMS, email or
             WhatsApp (inside the window) when the variant has no rendering of their own
============ ================================================================================

Renderings are Jinja2 templates run in an ``ImmutableSandboxedEnvironment`` with
``StrictUndefined``: a template cannot reach Python internals (``{{ customer.__class__ }}``),
call methods that change data, or print an undefined value as an empty string. Every rendering
is parsed and compiled when the template is saved, and every variable it reads is checked
against the documented set below (``VARIABLES``), attribute by attribute, through loops over
``cart.lines`` and ``recommendations``: a misspelt variable is a 422 at save, naming the
rendering and the variable, never a failed send at 3 a.m. Only ``data.*`` (what the caller
passes) and ``customer.traits.*`` are free. ``None`` prints as an empty string.

Money values (``cart.total``, ``order.total``, line and recommendation prices) print in the
message's language (``49,98 €``) and keep ``.amount`` (minor units) and ``.currency``.

Segments are counted here because no maintained library in the project's dependencies does it;
the rule is GSM 03.38's: 160 septets in one message, 153 per part of a longer one (a character
of the extension table costs two and is never split), and UCS-2 (any character outside GSM-7)
70, then 67 UTF-16 units per part.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from jinja2 import ChainableUndefined, StrictUndefined, TemplateError, meta, nodes
from jinja2.exceptions import SecurityError, TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hilos.commerce import carts, loyalty
from hilos.core.clock import now
from hilos.core.errors import Conflict, Invalid
from hilos.core.ids import new_id
from hilos.core.tenancy import TenantContext, get_owned, tenant_scope
from hilos.customers import service as customers
from hilos.engagement.template_models import MessageTemplate

PURPOSES = ("marketing", "service")
# The channel kinds a template can be sent on (those a written message can reach).
SENDABLE_KINDS = (
    "web_chat",
    "email",
    "whatsapp",
    "messenger",
    "instagram",
    "telegram",
    "sms",
    "api",
)
MAX_TEMPLATES = 1000

# --- the shape of a template ------------------------------------------------------------------

LanguageTag = Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$", max_length=16)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EmailRendering(_Strict):
    subject: str = Field(min_length=1, max_length=500)
    text: str = Field(min_length=1, max_length=20_000)
    html: str | None = Field(default=None, min_length=1, max_length=200_000)


class WhatsAppRendering(_Strict):
    template_name: str = Field(pattern=r"^[a-z0-9_]{1,512}$")
    language: str = Field(pattern=r"^[a-z]{2,3}(_[A-Z]{2})?$", description="Meta's code: es_ES")
    parameters: list[str] = Field(default_factory=list, max_length=20)


class SmsRendering(_Strict):
    text: str = Field(min_length=1, max_length=1600)


class Variant(_Strict):
    """One language's renderings; at least one of them."""

    email: EmailRendering | None = None
    whatsapp: WhatsAppRendering | None = None
    sms: SmsRendering | None = None
    text: str | None = Field(default=None, min_length=1, max_length=4096)


_VARIANTS = TypeAdapter(dict[str, Variant])
_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")


# --- the variables ------------------------------------------------------------------------------


class _Any:
    """Anything below is allowed (``data.*``, ``customer.traits.*``)."""


class _Leaf:
    """A plain value: no attribute below it."""


@dataclass(frozen=True)
class _ListOf:
    """A list whose items have the spec ``item`` (loops and indexes reach them)."""

    item: Any


ANY, LEAF = _Any(), _Leaf()
_MONEY: dict[str, Any] = {"amount": LEAF, "currency": LEAF}
_LINE: dict[str, Any] = {
    "sku": LEAF,
    "name": LEAF,
    "quantity": LEAF,
    "unit_price": _MONEY,
    "total": _MONEY,
    "url": LEAF,
}
_RECOMMENDATION: dict[str, Any] = {"sku": LEAF, "name": LEAF, "price": _MONEY, "url": LEAF}
VARIABLES: dict[str, Any] = {
    "customer": {
        "name": LEAF,
        "first_name": LEAF,
        "traits": ANY,
        "loyalty": {"tier": LEAF, "tier_name": LEAF, "balance": LEAF},
    },
    "tenant": {"name": LEAF},
    "cart": {"lines": _ListOf(_LINE), "total": _MONEY, "url": LEAF},
    "order": {"number": LEAF, "status": LEAF, "total": _MONEY},
    "recommendations": _ListOf(_RECOMMENDATION),
    "unsubscribe_url": LEAF,
    "data": ANY,
}
KNOWN_VARIABLES = (
    "customer.name, customer.first_name, customer.traits.*, customer.loyalty.tier, "
    "customer.loyalty.tier_name, customer.loyalty.balance, tenant.name, cart.lines "
    "(sku, name, quantity, unit_price, total, url), cart.total, cart.url, order.number, "
    "order.status, order.total, recommendations (sku, name, price, url), unsubscribe_url, data.*"
)


class _Checker:
    """Walks a parsed rendering: every variable path it reads must be in ``VARIABLES``."""

    def __init__(self, where: str, undeclared: set[str]) -> None:
        self.where = where
        self.undeclared = undeclared
        self.used: set[str] = set()
        # Loop variables and the list they go through ("item" -> "recommendations").
        self.origins: dict[str, str] = {}

    def refuse(self, path: str, *, unsafe: bool = False) -> None:
        if unsafe:
            raise Invalid(
                f"{self.where} reads {path}: attributes that start with _ are Python internals "
                "and are not available to templates",
                field=self.where,
                code="unsafe_variable",
            )
        root = path.split(".", 1)[0].split("[", 1)[0]
        if root in self.origins:
            path += f" (an item of {self.origins[root]})"
        raise Invalid(
            f"{self.where} uses the unknown variable {path}; the variables are " + KNOWN_VARIABLES,
            field=self.where,
            code="unknown_variable",
        )

    def walk(self, node: nodes.Node, scope: Mapping[str, Any]) -> None:
        if isinstance(node, nodes.For):
            spec = self.expression(node.iter, scope)
            inner = dict(scope)
            targets = [node.target] if isinstance(node.target, nodes.Name) else []
            if isinstance(node.target, nodes.Tuple):
                for item in node.target.items:
                    if isinstance(item, nodes.Name):
                        inner[item.name] = ANY
            for target in targets:
                inner[target.name] = spec.item if isinstance(spec, _ListOf) else ANY
                self.origins[target.name] = _path_of(node.iter)
            for child in node.body:
                self.walk(child, inner)
            if node.test is not None:
                self.walk(node.test, inner)
            for child in node.else_:
                self.walk(child, scope)
            return
        if isinstance(node, nodes.Name | nodes.Getattr | nodes.Getitem):
            if getattr(node, "ctx", "load") == "load":
                self.expression(node, scope)
            return
        for child in node.iter_child_nodes():
            self.walk(child, scope)

    def expression(self, node: nodes.Node, scope: Mapping[str, Any]) -> Any:
        """Check a chain of attribute and item reads; its spec (``ANY`` when not a chain)."""
        if isinstance(node, nodes.Name):
            if node.name in scope:
                return scope[node.name]
            if node.name in self.undeclared:
                if node.name not in VARIABLES:
                    self.refuse(node.name)
                self.used.add(node.name)
                return VARIABLES[node.name]
            return ANY  # a name the template itself set ({% set %}, a macro's argument)
        if isinstance(node, nodes.Getattr):
            return self.step(node.node, node.attr, scope)
        if isinstance(node, nodes.Getitem):
            arg = node.arg
            if isinstance(arg, nodes.Const) and isinstance(arg.value, str):
                return self.step(node.node, arg.value, scope)
            base = self.expression(node.node, scope)
            self.walk(arg, scope)
            if isinstance(base, _ListOf):
                return base if isinstance(arg, nodes.Slice) else base.item
            return ANY
        self.walk(node, scope)
        return ANY

    def step(self, base_node: nodes.Node, attr: str, scope: Mapping[str, Any]) -> Any:
        base = self.expression(base_node, scope)
        path = f"{_path_of(base_node)}.{attr}"
        if attr.startswith("_"):
            self.refuse(path, unsafe=True)
        if isinstance(base, _Any):
            self._note(base_node, attr)
            return ANY
        if isinstance(base, dict) and attr in base:
            self._note(base_node, attr)
            return base[attr]
        self.refuse(path)
        return ANY  # pragma: no cover (refuse raises)

    def _note(self, base_node: nodes.Node, attr: str) -> None:
        root = base_node
        while isinstance(root, nodes.Getattr | nodes.Getitem):
            root = root.node
        if isinstance(root, nodes.Name) and root.name in self.undeclared:
            self.used.add(f"{_path_of(base_node)}.{attr}")


def _path_of(node: nodes.Node) -> str:
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Getattr):
        return f"{_path_of(node.node)}.{node.attr}"
    if isinstance(node, nodes.Getitem):
        arg = node.arg
        if isinstance(arg, nodes.Const) and isinstance(arg.value, str):
            return f"{_path_of(node.node)}.{arg.value}"
        return f"{_path_of(node.node)}[...]"
    return "(expression)"


# --- rendering ----------------------------------------------------------------------------------


class RenderError(Invalid):
    """A rendering failed with the values given (a value the caller did not pass)."""

    code = "render_failed"


def _finalize(value: Any) -> Any:
    return "" if value is None else value


class _Sample(ChainableUndefined):
    """A preview's stand-in for a value nobody gave: ``[size]`` instead of an error."""

    __slots__ = ()

    def __str__(self) -> str:
        return f"[{self._undefined_name or '?'}]"


def _environment(*, html: bool, lenient: bool) -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(
        undefined=_Sample if lenient else StrictUndefined,
        autoescape=html,
        finalize=_finalize,
        keep_trailing_newline=True,
    )


_ENVIRONMENTS = {
    (html, lenient): _environment(html=html, lenient=lenient)
    for html in (False, True)
    for lenient in (False, True)
}


@functools.lru_cache(maxsize=4096)
def _compiled(source: str, html: bool, lenient: bool) -> Any:
    return _ENVIRONMENTS[(html, lenient)].from_string(source)


def _parameter_source(parameter: str) -> str:
    """A WhatsApp parameter as a template: expressions are wrapped, template strings kept."""
    return parameter if ("{{" in parameter or "{%" in parameter) else f"{{{{ {parameter} }}}}"


def check_source(source: str, *, where: str, html: bool = False) -> set[str]:
    """Parse and compile ``source`` and check its variables; the variable paths it uses."""
    environment = _ENVIRONMENTS[(html, False)]
    try:
        parsed = environment.parse(source)
    except TemplateSyntaxError as error:
        raise Invalid(
            f"{where} is not a valid template (line {error.lineno}): {error.message}",
            field=where,
            code="template_syntax",
        ) from error
    try:
        checker = _Checker(where, set(meta.find_undeclared_variables(parsed)))
        _compiled(source, html, False)
    except TemplateError as error:  # an unknown filter or test is found when compiling
        raise Invalid(
            f"{where} is not a valid template: {error.message}",
            field=where,
            code="template_syntax",
        ) from error
    checker.walk(parsed, {})
    return checker.used


def _check_parameter(parameter: str, *, where: str) -> set[str]:
    source = _parameter_source(parameter)
    used = check_source(source, where=where)
    if "{{" not in parameter and "{%" not in parameter:
        body = _ENVIRONMENTS[(False, False)].parse(source).body
        if len(body) != 1 or not isinstance(body[0], nodes.Output) or len(body[0].nodes) != 1:
            raise Invalid(
                f"{where} must be one expression (customer.first_name) or a template string "
                "({{ customer.first_name }})",
                field=where,
                code="template_syntax",
            )
    return used


def render_source(
    source: str, values: Mapping[str, Any], *, html: bool = False, lenient: bool = False
) -> str:
    """``source`` rendered with ``values`` in the sandbox; ``RenderError`` when it cannot be."""
    try:
        return str(_compiled(source, html, lenient).render(values))
    except SecurityError as error:
        raise Invalid(
            f"the template reached something it may not: {error}", code="unsafe_template"
        ) from error
    except TemplateError as error:
        raise RenderError(f"the template could not be rendered: {error.message}") from error
    except (TypeError, ValueError, ArithmeticError, LookupError) as error:
        raise RenderError(f"the template could not be rendered: {error}") from error


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in minor units that prints the reader's way (``19,99 €``)."""

    amount: int
    currency: str
    language: str

    def __str__(self) -> str:
        try:
            return carts.format_money(self.amount, self.currency, language=self.language)
        except Exception:  # an unknown currency or locale: still readable
            return f"{self.amount} {self.currency}"


def _money(value: Any, currency: Any, language: str) -> Any:
    if isinstance(value, Mapping) and "amount" in value:
        return Money(int(value["amount"]), str(value.get("currency") or currency), language)
    if isinstance(value, int) and not isinstance(value, bool) and currency:
        return Money(value, str(currency), language)
    return value


def _with_money(
    item: Any, fields: Sequence[str], currency: Any, language: str
) -> Mapping[str, Any] | Any:
    if not isinstance(item, Mapping):
        return item
    own = item.get("currency") or currency
    return {**item, **{f: _money(item[f], own, language) for f in fields if f in item}}


def prepare_values(context: Mapping[str, Any], *, language: str) -> dict[str, Any]:
    """The caller's values with money fields as ``Money`` (printed in ``language``)."""
    values = dict(context)
    cart = values.get("cart")
    if isinstance(cart, Mapping):
        currency = cart.get("currency")
        values["cart"] = {
            **_with_money(cart, ("total",), currency, language),
            "lines": [
                _with_money(line, ("unit_price", "total"), currency, language)
                for line in cart.get("lines") or []
            ],
        }
    order = values.get("order")
    if isinstance(order, Mapping):
        values["order"] = _with_money(order, ("total",), order.get("currency"), language)
    recommendations = values.get("recommendations")
    if isinstance(recommendations, Sequence) and not isinstance(recommendations, str):
        values["recommendations"] = [
            _with_money(item, ("price",), None, language) for item in recommendations
        ]
    return values


# --- SMS length ----------------------------------------------------------------------------------

_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENSION = frozenset("\f^{}\\[~]|€")


@dataclass(frozen=True, slots=True)
class SmsInfo:
    """How a text travels by SMS: its encoding, its length in that encoding's units (septets
    for GSM-7, UTF-16 units for UCS-2), and the parts a phone joins back together."""

    encoding: Literal["GSM-7", "UCS-2"]
    characters: int
    length: int
    segments: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "encoding": self.encoding,
            "characters": self.characters,
            "length": self.length,
            "segments": self.segments,
        }


def _parts(costs: Sequence[int], single: int, each: int) -> int:
    total = sum(costs)
    if total == 0:
        return 0
    if total <= single:
        return 1
    parts, used = 1, 0
    for cost in costs:
        if used + cost > each:  # a two-unit character is never split between parts
            parts, used = parts + 1, 0
        used += cost
    return parts


def sms_info(text: str) -> SmsInfo:
    if all(c in _GSM_BASIC or c in _GSM_EXTENSION for c in text):
        costs = [2 if c in _GSM_EXTENSION else 1 for c in text]
        return SmsInfo("GSM-7", len(text), sum(costs), _parts(costs, 160, 153))
    costs = [2 if ord(c) > 0xFFFF else 1 for c in text]
    return SmsInfo("UCS-2", len(text), sum(costs), _parts(costs, 70, 67))


# --- checking and storing templates -----------------------------------------------------------


def check_variants(variants: Any) -> tuple[dict[str, Any], list[str]]:
    """The variants in their stored shape and the variables they use, or ``Invalid``."""
    try:
        parsed = _VARIANTS.validate_python(variants)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(["variants", *(str(part) for part in first["loc"])])
        raise Invalid(f"{where}: {first['msg']}", field=where) from error
    if not parsed:
        raise Invalid("a template needs at least one language variant", field="variants")
    used: set[str] = set()
    stored: dict[str, Any] = {}
    for language, variant in parsed.items():
        base = f"variants.{language}"
        if not _LANGUAGE.match(language):
            raise Invalid(
                f"{language!r} is not a language tag (es, en, pt-BR)", field=base, code="language"
            )
        if not (variant.email or variant.whatsapp or variant.sms or variant.text):
            raise Invalid(f"{base} has no rendering: give email, whatsapp, sms or text", field=base)
        if variant.email is not None:
            used |= check_source(variant.email.subject, where=f"{base}.email.subject")
            used |= check_source(variant.email.text, where=f"{base}.email.text")
            if variant.email.html is not None:
                used |= check_source(variant.email.html, where=f"{base}.email.html", html=True)
        if variant.whatsapp is not None:
            for n, parameter in enumerate(variant.whatsapp.parameters):
                used |= _check_parameter(parameter, where=f"{base}.whatsapp.parameters.{n}")
        if variant.sms is not None:
            used |= check_source(variant.sms.text, where=f"{base}.sms.text")
        if variant.text is not None:
            used |= check_source(variant.text, where=f"{base}.text")
        stored[language] = variant.model_dump(exclude_none=True)
    return stored, sorted(used)


async def list_templates(
    session: AsyncSession, tenant: TenantContext, *, purpose: str | None = None
) -> Sequence[MessageTemplate]:
    statement = tenant_scope(select(MessageTemplate), MessageTemplate, tenant)
    if purpose is not None:
        statement = statement.where(MessageTemplate.purpose == purpose)
    statement = statement.order_by(MessageTemplate.name).limit(MAX_TEMPLATES)
    return (await session.execute(statement)).scalars().all()


async def get_template(
    session: AsyncSession, tenant: TenantContext, template_id: str
) -> MessageTemplate:
    return await get_owned(session, MessageTemplate, template_id, tenant, what="template")


async def find_template(
    session: AsyncSession, tenant: TenantContext, name: str
) -> MessageTemplate | None:
    statement = tenant_scope(
        select(MessageTemplate).where(MessageTemplate.name == name), MessageTemplate, tenant
    )
    return (await session.execute(statement)).scalar_one_or_none()


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 100:
        raise Invalid("a template's name has 1 to 100 characters", field="name")
    return name


def _check_purpose(purpose: str) -> str:
    if purpose not in PURPOSES:
        raise Invalid(f"purpose must be marketing or service, not {purpose!r}", field="purpose")
    return purpose


async def _store(session: AsyncSession, template: MessageTemplate) -> MessageTemplate:
    try:
        async with session.begin_nested():
            session.add(template)
            await session.flush()
    except IntegrityError as error:
        raise Conflict(
            f"a template called {template.name!r} exists",
            code="template_exists",
            details={"field": "name"},
        ) from error
    return template


async def create_template(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    name: str,
    purpose: str,
    variants: Mapping[str, Any],
) -> MessageTemplate:
    """A new template; every rendering is checked first (``Invalid`` names the bad one)."""
    name, purpose = _check_name(name), _check_purpose(purpose)
    stored, used = check_variants(variants)
    if await find_template(session, tenant, name) is not None:
        raise Conflict(
            f"a template called {name!r} exists", code="template_exists", details={"field": "name"}
        )
    moment = now()
    template = MessageTemplate(
        id=new_id(),
        tenant_id=tenant.id,
        name=name,
        purpose=purpose,
        variants=stored,
        variables=used,
        created_at=moment,
        updated_at=moment,
    )
    return await _store(session, template)


async def update_template(
    session: AsyncSession, tenant: TenantContext, *, template_id: str, changes: Mapping[str, Any]
) -> MessageTemplate:
    """Change the name, purpose or variants (``variants`` replaces them all)."""
    template = await get_template(session, tenant, template_id)
    if changes.get("variants") is not None:
        template.variants, template.variables = check_variants(changes["variants"])
    if changes.get("purpose") is not None:
        template.purpose = _check_purpose(changes["purpose"])
    if changes.get("name") is not None:
        name = _check_name(changes["name"])
        other = await find_template(session, tenant, name)
        if other is not None and other.id != template.id:
            raise Conflict(
                f"a template called {name!r} exists",
                code="template_exists",
                details={"field": "name"},
            )
        template.name = name
    template.updated_at = now()
    await session.flush()
    return template


async def delete_template(session: AsyncSession, tenant: TenantContext, template_id: str) -> None:
    """Remove a template; the sends log keeps its id."""
    template = await get_template(session, tenant, template_id)
    await session.delete(template)
    await session.flush()


# --- rendering a template -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rendered:
    """A template rendered for one channel kind and language.

    ``text`` is what the conversation shows (and what goes out, except on WhatsApp when
    ``whatsapp_template`` is set: then the approved template goes, ``{name, language,
    parameters}``). ``subject`` and ``html`` are an email's.
    """

    channel_kind: str
    language: str
    text: str
    subject: str | None = None
    html: str | None = None
    whatsapp_template: dict[str, Any] | None = None

    @property
    def sms(self) -> SmsInfo | None:
        return sms_info(self.text) if self.channel_kind == "sms" else None

    def as_dict(self) -> dict[str, Any]:
        sms = self.sms
        return {
            "channel_kind": self.channel_kind,
            "language": self.language,
            "subject": self.subject,
            "text": self.text,
            "html": self.html,
            "whatsapp_template": self.whatsapp_template,
            "sms": sms.as_dict() if sms else None,
        }


def can_render(variant: Mapping[str, Any], channel_kind: str, *, template_only: bool) -> bool:
    """Whether ``variant`` has a rendering for ``channel_kind`` (``template_only``: WhatsApp
    outside the window, where only an approved template goes)."""
    if channel_kind == "whatsapp":
        return "whatsapp" in variant or (not template_only and "text" in variant)
    if channel_kind in ("email", "sms"):
        return channel_kind in variant or "text" in variant
    return "text" in variant


def pick_language(
    variants: Mapping[str, Any],
    channel_kind: str,
    *,
    languages: Sequence[str | None],
    template_only: bool = False,
) -> str | None:
    """The first of ``languages`` (exactly, then by primary language) that has a rendering for
    ``channel_kind``, else any variant that has one; ``None`` when none has."""
    usable = [
        language
        for language in sorted(variants)
        if can_render(variants[language], channel_kind, template_only=template_only)
    ]
    for wanted in languages:
        if not wanted:
            continue
        if wanted in usable:
            return wanted
        primary = wanted.split("-", 1)[0].split("_", 1)[0].lower()
        for language in usable:
            if language.split("-", 1)[0].lower() == primary:
                return language
    return usable[0] if usable else None


def render_template(
    template: MessageTemplate,
    *,
    channel_kind: str,
    languages: Sequence[str | None],
    values: Mapping[str, Any],
    template_only: bool = False,
    lenient: bool = False,
) -> Rendered:
    """Render ``template`` for ``channel_kind`` in the first of ``languages`` it has (see
    ``pick_language``). ``RenderError`` when a value is missing; ``Invalid`` (code
    ``no_rendering``) when no variant has a rendering for that kind."""
    if channel_kind not in SENDABLE_KINDS:
        raise Invalid(
            f"a template cannot be rendered for {channel_kind!r}; use one of "
            + ", ".join(SENDABLE_KINDS),
            field="channel_kind",
        )
    variants = template.variants or {}
    language = pick_language(
        variants, channel_kind, languages=languages, template_only=template_only
    )
    if language is None:
        raise Invalid(
            f"template {template.name!r} has no rendering for {channel_kind}",
            field="channel_kind",
            code="no_rendering",
        )
    variant = variants[language]
    prepared = prepare_values(values, language=language)

    def text(source: str, *, html: bool = False) -> str:
        return render_source(source, prepared, html=html, lenient=lenient)

    if channel_kind == "email" and "email" in variant:
        email = variant["email"]
        return Rendered(
            channel_kind,
            language,
            text(email["text"]),
            subject=text(email["subject"]).strip(),
            html=text(email["html"], html=True) if email.get("html") else None,
        )
    if channel_kind == "whatsapp" and "whatsapp" in variant:
        whatsapp = variant["whatsapp"]
        parameters = []
        for n, parameter in enumerate(whatsapp.get("parameters") or [], start=1):
            value = text(_parameter_source(parameter)).strip()
            if not value and not lenient:
                raise RenderError(
                    f"WhatsApp parameter {n} ({parameter}) is empty for this customer; "
                    "WhatsApp refuses empty parameters"
                )
            parameters.append(value)
        shown = (
            text(variant["text"])
            if "text" in variant
            else f"[{whatsapp['template_name']}] " + " · ".join(parameters)
        )
        return Rendered(
            channel_kind,
            language,
            shown,
            whatsapp_template={
                "name": whatsapp["template_name"],
                "language": whatsapp["language"],
                "parameters": parameters,
            },
        )
    if channel_kind == "sms" and "sms" in variant:
        return Rendered(channel_kind, language, text(variant["sms"]["text"]))
    return Rendered(channel_kind, language, text(variant["text"]))


# --- values --------------------------------------------------------------------------------------


def first_name(name: str | None) -> str:
    return (name or "").strip().split(" ", 1)[0]


async def customer_values(
    session: AsyncSession, tenant: TenantContext, customer_id: str, *, with_loyalty: bool
) -> dict[str, Any]:
    """``customer`` as templates see it: name, first name, traits, and loyalty when asked."""
    customer = await customers.get_customer(session, tenant, customer_id)
    values: dict[str, Any] = {
        "id": customer.id,
        "name": customer.name or "",
        "first_name": first_name(customer.name),
        "traits": dict(customer.traits or {}),
        "loyalty": {"tier": None, "tier_name": None, "balance": None},
    }
    if with_loyalty:
        summary = await loyalty.summary(session, tenant, customer.id)
        if summary is not None:
            values["loyalty"] = {
                "tier": summary["tier"],
                "tier_name": summary["tier_name"],
                "balance": summary["balance"],
            }
    return values


def cart_values(cart: carts.CartView, *, url: str = "") -> dict[str, Any]:
    """``cart`` as templates see it, from the carts domain's view of a cart."""
    return {
        "id": cart.id,
        "currency": cart.currency,
        "lines": [
            {
                "sku": line.sku,
                "name": line.name,
                "quantity": line.quantity,
                "unit_price": line.unit_price,
                "total": line.total,
                "currency": line.currency,
            }
            for line in cart.lines
        ],
        "total": cart.total,
        "url": url,
    }


def uses(template: MessageTemplate, root: str) -> bool:
    """Whether any rendering of ``template`` reads ``root`` (``cart``, ``customer.loyalty``)."""
    return any(
        variable == root or variable.startswith(root + ".") for variable in template.variables or []
    )


SAMPLE_VALUES: dict[str, Any] = {
    "customer": {
        "name": "Lucía García",
        "first_name": "Lucía",
        "traits": {},
        "loyalty": {"tier": "gold", "tier_name": "Oro", "balance": 1200},
    },
    "cart": {
        "currency": "EUR",
        "lines": [
            {"sku": "ZAP-42", "name": "Zapatilla trail", "quantity": 1, "unit_price": 5999,
             "total": 5999},
            {"sku": "CAL-01", "name": "Calcetines técnicos", "quantity": 2, "unit_price": 899,
             "total": 1798},
        ],
        "total": 7797,
        "url": "https://tienda.example/carrito",
    },
    "order": {"number": "A1B2C3D4", "status": "shipped", "total": 7797, "currency": "EUR"},
    "recommendations": [
        {"sku": "MOCH-20", "name": "Mochila 20 l", "url": "https://tienda.example/p/MOCH-20",
         "price": {"amount": 3499, "currency": "EUR"}},
        {"sku": "GOR-01", "name": "Gorra running", "url": "https://tienda.example/p/GOR-01",
         "price": {"amount": 1499, "currency": "EUR"}},
    ],
    "unsubscribe_url": "https://hilos.example/v1/engagement/unsubscribe/sample",
    "data": {},
}  # fmt: skip


def sample_values(tenant: TenantContext) -> dict[str, Any]:
    return {**SAMPLE_VALUES, "tenant": {"name": tenant.name}}


def sms_samples(template: MessageTemplate, tenant: TenantContext) -> dict[str, Any]:
    """Per language, the SMS rendering (or the text) with sample values, and its length."""
    found: dict[str, Any] = {}
    for language, variant in sorted((template.variants or {}).items()):
        if not can_render(variant, "sms", template_only=False):
            continue
        try:
            rendered = render_template(
                template,
                channel_kind="sms",
                languages=[language],
                values=sample_values(tenant),
                lenient=True,
            )
        except Invalid:
            continue
        info = sms_info(rendered.text)
        found[language] = {**info.as_dict(), "sample": rendered.text}
    return found


async def render(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    template_id: str,
    channel_kind: str,
    language: str | None,
    context: Mapping[str, Any],
) -> Rendered:
    """The tenant's template ``template_id`` rendered for ``channel_kind`` with ``context``
    (the variables: ``customer``, ``cart``, ``data``...; ``tenant`` is filled in). The language
    is ``language``, else the tenant's locale, else any variant that has a rendering."""
    template = await get_template(session, tenant, template_id)
    values = {"tenant": {"name": tenant.name}, **context}
    return render_template(
        template,
        channel_kind=channel_kind,
        languages=[language, tenant.locale],
        values=values,
    )


@dataclass(frozen=True, slots=True)
class Preview:
    rendered: Rendered
    # Why the real send would fail with these values (a trait the customer lacks), if it would.
    problem: str | None


async def preview(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    template_id: str,
    channel_kind: str,
    language: str | None,
    customer_id: str | None,
    data: Mapping[str, Any] | None,
) -> Preview:
    """The template rendered with sample values, or with a real customer's (and ``data``).

    A value nobody gave shows as ``[name]``; ``problem`` then says what a real send would
    refuse."""
    template = await get_template(session, tenant, template_id)
    values = sample_values(tenant)
    languages: list[str | None] = [language]
    if customer_id is not None:
        values["customer"] = await customer_values(
            session, tenant, customer_id, with_loyalty=uses(template, "customer.loyalty")
        )
        customer = await customers.get_customer(session, tenant, customer_id)
        languages.append(customer.language)
    if data is not None:
        values["data"] = dict(data)
    languages.append(tenant.locale)
    problem = None
    try:
        rendered = render_template(
            template, channel_kind=channel_kind, languages=languages, values=values
        )
    except RenderError as error:
        problem = error.message
        rendered = render_template(
            template, channel_kind=channel_kind, languages=languages, values=values, lenient=True
        )
    return Preview(rendered, problem)
