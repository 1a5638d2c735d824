"""Recommendations: what to offer a customer next, and why.

What it owns: product aliases (the other names customers use for a product), the purchase
baskets of every order of every channel with their co-occurrence counts, and ``recommend``,
which blends three signals into one ranked list:

- **Bought together.** Products that share orders with what the customer bought (or viewed or
  mentioned), scored by the cosine of their baskets: ``both / sqrt(baskets(a) * baskets(b))``.
  Unlike a raw co-occurrence count (which recommends the best-seller to everyone) or lift
  (which recommends whatever was bought once, together with something), the cosine corrects for
  popularity without trusting rare accidents. Counting is at product level: the sizes of one
  product are one product, and a product is offered through one of its SKUs.
- **Mentioned.** Products the customer named in their messages on any channel, matched against
  the catalog by SKU (or the SKUs' common stem, ``CHQ-VAQ-01`` for ``CHQ-VAQ-01-M``), by
  product name and by the tenant's aliases, without accents or case and forgiving a typo
  (rapidfuzz's ratio over windows of the message's words).
- **Viewed.** Products named by the customer's recent track, page and screen events
  (``properties.product_id`` or ``sku``, a ``products`` list, or a URL path that ends in the
  product's name written as a slug).

What the customer already bought (orders, and Segment ``Order Completed`` events) is never
offered; only products listed (priced) on some sales channel are, and, when the catalog keeps
stock for the product, only SKUs with stock available somewhere. The most bought products fill
the list when the signals give too few (reason ``popular``).

The ranking is one pure function, ``rank``, that the offline evaluation
(``benchmarks/recommend.py``) runs on the same inputs; ``count_baskets`` makes those inputs from
plain baskets.

Why counts are kept incrementally rather than computed per request: a customer's neighbours are
then one index range (``product_pair_counts`` by product) whatever the order history's size,
while computing them on the fly means joining every order that holds one of the customer's
products, which grows with the best-sellers' sales. An outbox consumer of ``order.placed`` and
``order.cancelled`` keeps them in step inside the relay's transaction (exactly once, in order;
see ``core.outbox``); the work per order is its number of product pairs. ``rebuild`` recounts a
tenant from its orders (for orders older than this module).

Reading other domains: orders come as events, messages and timeline events through their
services' bounded readers, products and prices through the catalog's and pricing's services.
Stock is the exception: the stock service reads one SKU at a time, so the availability of the
candidates is one read-only query on ``stock_levels`` here.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlparse

from rapidfuzz import fuzz, process
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hilos.commerce import catalog, orders, pricing
from hilos.commerce import stock as commerce_stock
from hilos.commerce.models import Product, Variant
from hilos.commerce.stock_models import StockLevel
from hilos.conversations import service as conversations
from hilos.conversations.models import Message
from hilos.core.clock import as_utc, now
from hilos.core.errors import Invalid
from hilos.core.models import OutboxEvent
from hilos.core.outbox import register_consumer
from hilos.core.tenancy import TenantContext
from hilos.customers import service as customers
from hilos.customers.models import Customer, TimelineEvent
from hilos.engagement.recommend_models import (
    ProductAliases,
    ProductBasketCount,
    ProductPairCount,
    PurchaseBasket,
)

MAX_LIMIT = 50
MAX_ALIASES = 50
MAX_ALIAS_LENGTH = 100
# Bounded reads of the customer's history.
RECENT_BASKETS = 100
RECENT_EVENTS = 100
RECENT_MESSAGES = 50
# Popular products considered for filling the list.
POPULAR_POOL = 50

# How much each signal weighs. A product the customer named is a stated intent; a view is a
# weaker one, and each earlier distinct view counts a little less than the one after it.
MENTION_WEIGHT = 1.0
VIEW_WEIGHT = 0.5
RECENCY_DECAY = 0.85
# Products viewed or mentioned also seed "bought together", at this share of a purchase.
INTEREST_SEED_WEIGHT = 0.5
# Popularity only breaks ties and fills the list: far below any real signal.
POPULARITY_WEIGHT = 1e-3
# Reasons naming the products a recommendation is bought with: at most this many.
MAX_TOGETHER_REASONS = 3

# Mentions: a window of the message must be this similar (0-100) to a name or an alias; short
# names must match more closely, and names under ``MIN_PHRASE`` characters only exactly.
FUZZY_CUTOFF = 86.0
FUZZY_CUTOFF_SHORT = 92.0
SHORT_PHRASE = 8
MIN_PHRASE = 4
MIN_CODE = 4

PURCHASE_EVENTS = frozenset({"order completed"})
INTEREST_EVENT_TYPES = frozenset({"track", "page", "screen"})
# Segment e-commerce events that are not interest in a product (the purchase's aftermath).
NOT_INTEREST_EVENTS = frozenset(
    {"order completed", "order refunded", "order cancelled", "product removed"}
)


# --- text -----------------------------------------------------------------------------------------

_NON_WORD = re.compile(r"[^0-9a-z]+")


def normalize(text: str) -> str:
    """Lower case, without accents, words of letters and digits separated by one space."""
    plain = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in plain if not unicodedata.combining(c)).casefold()
    return _NON_WORD.sub(" ", plain).strip()


def slug(text: str) -> str:
    return normalize(text).replace(" ", "-")


def _sku_stem(skus: Sequence[str]) -> str | None:
    """The SKUs' common beginning without trailing separators (``CHQ-VAQ-01``), if it is one."""
    if len(skus) < 2:
        return None
    stem = skus[0]
    for sku in skus[1:]:
        while not sku.startswith(stem):
            stem = stem[:-1]
    stem = stem.rstrip("-_./ ")
    return stem if len(normalize(stem).replace(" ", "")) >= MIN_CODE else None


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """What a product is called, for matching: codes exactly, phrases forgivingly."""

    product_id: str
    name: str
    # Variant SKUs in creation order.
    skus: tuple[str, ...]
    variant_ids: tuple[str, ...]
    # Normalised SKUs, the SKUs' stem and the product id.
    codes: frozenset[str]
    # Normalised name and aliases.
    phrases: tuple[str, ...]
    slug: str


def catalog_entry(
    *,
    product_id: str,
    name: str,
    skus: Sequence[str],
    variant_ids: Sequence[str] = (),
    aliases: Sequence[str] = (),
) -> CatalogEntry:
    codes = {normalize(sku) for sku in skus} | {product_id.casefold()}
    stem = _sku_stem(list(skus))
    if stem:
        codes.add(normalize(stem))
    phrases = tuple(dict.fromkeys(p for p in (normalize(name), *map(normalize, aliases)) if p))
    return CatalogEntry(
        product_id=product_id,
        name=name,
        skus=tuple(skus),
        variant_ids=tuple(variant_ids),
        codes=frozenset(code for code in codes if len(code.replace(" ", "")) >= MIN_CODE),
        phrases=phrases,
        slug=slug(name),
    )


@dataclass(frozen=True, slots=True)
class CatalogIndex:
    entries: dict[str, CatalogEntry]
    by_code: dict[str, str]
    by_slug: dict[str, str]

    @classmethod
    def of(cls, entries: Iterable[CatalogEntry]) -> CatalogIndex:
        found = {entry.product_id: entry for entry in entries}
        by_code: dict[str, str] = {}
        by_slug: dict[str, str] = {}
        for entry in found.values():
            for code in entry.codes:
                by_code.setdefault(code, entry.product_id)
            for phrase in entry.phrases:
                by_slug.setdefault(phrase.replace(" ", "-"), entry.product_id)
        return cls(entries=found, by_code=by_code, by_slug=by_slug)

    def by_identifier(self, value: Any) -> str | None:
        """The product a ``product_id``, ``sku`` or ``id`` property names."""
        if not isinstance(value, str | int) or isinstance(value, bool):
            return None
        text = str(value)
        if text in self.entries:
            return text
        return self.by_code.get(normalize(text))

    def by_url(self, value: Any) -> str | None:
        """The product a URL or path names by its last segment (``/p/chaqueta-vaquera``)."""
        if not isinstance(value, str) or not value:
            return None
        path = urlparse(value).path if "://" in value else value
        last = path.rstrip("/").rsplit("/", 1)[-1]
        last = last.rsplit(".", 1)[0] if last.endswith((".html", ".htm")) else last
        if not last:
            return None
        return self.by_slug.get(slug(last)) or self.by_code.get(normalize(last))


def mentioned_products(text: str, index: CatalogIndex) -> list[str]:
    """The products ``text`` names, in the order they appear: a SKU (or SKU stem) exactly, a
    name or an alias forgiving a typo."""
    words = normalize(text).split()
    if not words:
        return []
    padded = f" {' '.join(words)} "
    found: dict[str, int] = {}
    for code, product_id in index.by_code.items():
        at = padded.find(f" {code} ")
        if at >= 0:
            found[product_id] = min(at, found.get(product_id, at))
    windows: dict[int, list[str]] = {}
    for entry in index.entries.values():
        if entry.product_id in found:
            continue
        for phrase in entry.phrases:
            if len(phrase) < MIN_PHRASE:
                continue
            size = phrase.count(" ") + 1
            if size > len(words):
                continue
            if size not in windows:
                windows[size] = [
                    " ".join(words[i : i + size]) for i in range(len(words) - size + 1)
                ]
            cutoff = FUZZY_CUTOFF_SHORT if len(phrase) < SHORT_PHRASE else FUZZY_CUTOFF
            best = process.extractOne(phrase, windows[size], scorer=fuzz.ratio, score_cutoff=cutoff)
            if best is not None:
                found[entry.product_id] = best[2]
                break
    return sorted(found, key=lambda product_id: found[product_id])


def products_of_event(properties: Mapping[str, Any], index: CatalogIndex) -> list[str]:
    """The products a Segment-style event names: ``product_id``/``sku``/``id``, a ``products``
    list of those, or a ``url``/``path`` ending in the product's slug."""
    found: list[str] = []

    def named(item: Mapping[str, Any]) -> None:
        for key in ("product_id", "sku", "id"):
            product_id = index.by_identifier(item.get(key))
            if product_id is not None:
                found.append(product_id)
                return
        for key in ("url", "path"):
            product_id = index.by_url(item.get(key))
            if product_id is not None:
                found.append(product_id)
                return

    named(properties)
    for item in properties.get("products") or []:
        if isinstance(item, Mapping):
            named(item)
    return list(dict.fromkeys(found))


# --- ranking (pure: shared with benchmarks/recommend.py) ------------------------------------------


@dataclass(frozen=True, slots=True)
class BasketStats:
    """Co-occurrence counts: baskets holding each product, and each pair (both directions)."""

    baskets: Mapping[str, int]
    together: Mapping[str, Mapping[str, int]]


def count_baskets(baskets: Iterable[Iterable[str]]) -> BasketStats:
    """Count products and pairs of products over ``baskets`` (each product once per basket)."""
    counts: Counter[str] = Counter()
    together: dict[str, Counter[str]] = defaultdict(Counter)
    for basket in baskets:
        products = list(dict.fromkeys(basket))
        counts.update(products)
        for product in products:
            neighbours = together[product]
            for other in products:
                if other != product:
                    neighbours[other] += 1
    return BasketStats(baskets=dict(counts), together=dict(together))


def popular_products(stats: BasketStats, limit: int = POPULAR_POOL) -> list[str]:
    """The most bought products, the most first (ties by id, so the order is stable)."""
    ranked = sorted(stats.baskets.items(), key=lambda item: (-item[1], item[0]))
    return [product for product, count in ranked[:limit] if count > 0]


@dataclass(slots=True)
class Ranked:
    product_id: str
    score: float
    reasons: list[str] = field(default_factory=list)
    # The products it is bought with, the strongest first.
    bought_with: list[str] = field(default_factory=list)


def rank(
    *,
    bought: Sequence[str],
    viewed: Sequence[str] = (),
    mentioned: Sequence[str] = (),
    stats: BasketStats,
    popular: Sequence[str] = (),
    allowed: Collection[str] | None = None,
    limit: int = 10,
) -> list[Ranked]:
    """The ``limit`` best products for someone who ``bought``, ``viewed`` and ``mentioned``
    these products (each list the most recent first), never one they bought.

    Score: the cosine of each candidate with each seed (what was bought, and at
    ``INTEREST_SEED_WEIGHT`` what was viewed or mentioned), summed; plus ``MENTION_WEIGHT`` for a
    mention and ``VIEW_WEIGHT`` for a view, each decaying by ``RECENCY_DECAY`` per more recent
    distinct product; plus a sliver of popularity that breaks ties and lets ``popular`` fill the
    list. ``allowed`` (when given) keeps only those products.
    """
    excluded = set(bought)
    scores: dict[str, float] = defaultdict(float)
    reasons: dict[str, list[str]] = defaultdict(list)
    contributions: dict[str, dict[str, float]] = defaultdict(dict)

    def eligible(product: str) -> bool:
        return product not in excluded and (allowed is None or product in allowed)

    seeds: dict[str, float] = {}
    for product in dict.fromkeys(bought):
        seeds[product] = 1.0
    for product in dict.fromkeys([*mentioned, *viewed]):
        seeds.setdefault(product, INTEREST_SEED_WEIGHT)
    for seed, weight in seeds.items():
        seed_count = stats.baskets.get(seed, 0)
        if seed_count <= 0:
            continue
        for other, both in stats.together.get(seed, {}).items():
            other_count = stats.baskets.get(other, 0)
            if both <= 0 or other_count <= 0 or other == seed or not eligible(other):
                continue
            cosine = both / math.sqrt(seed_count * other_count)
            scores[other] += weight * cosine
            contributions[other][seed] = contributions[other].get(seed, 0.0) + weight * cosine
    for signal, products, weight in (
        ("mentioned", mentioned, MENTION_WEIGHT),
        ("viewed", viewed, VIEW_WEIGHT),
    ):
        for position, product in enumerate(dict.fromkeys(products)):
            if eligible(product):
                scores[product] += weight * RECENCY_DECAY**position
                reasons[product].append(signal)
    top = max(stats.baskets.values(), default=0)
    for product in popular:
        if eligible(product) and product not in scores:
            scores[product] = 0.0
            reasons[product].append("popular")
    if top > 0:
        for product in scores:
            scores[product] += POPULARITY_WEIGHT * stats.baskets.get(product, 0) / top
    ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:limit]
    result = []
    for product, score in ranked:
        together = sorted(contributions[product].items(), key=lambda item: (-item[1], item[0]))
        with_ = [seed for seed, _ in together[:MAX_TOGETHER_REASONS]]
        result.append(
            Ranked(
                product_id=product,
                score=score,
                reasons=[f"bought_together:{seed}" for seed in with_] + reasons[product],
                bought_with=with_,
            )
        )
    return result


# --- counting baskets from order events -----------------------------------------------------------


def _upsert_counts(
    session: AsyncSession, tenant_id: str, products: Sequence[str], delta: int
) -> Any:
    """Statements adding ``delta`` to each product's count and to each ordered pair's."""
    statements = []
    counts = customers.dialect_insert(session, ProductBasketCount.__table__)
    statements.append(
        counts.values(
            [{"tenant_id": tenant_id, "product_id": p, "baskets": delta} for p in products]
        ).on_conflict_do_update(
            index_elements=["tenant_id", "product_id"],
            set_={"baskets": ProductBasketCount.__table__.c.baskets + counts.excluded.baskets},
        )
    )
    pairs = [(a, b) for a in products for b in products if a != b]
    if pairs:
        insert_pairs = customers.dialect_insert(session, ProductPairCount.__table__)
        statements.append(
            insert_pairs.values(
                [
                    {"tenant_id": tenant_id, "product_id": a, "other_id": b, "baskets": delta}
                    for a, b in pairs
                ]
            ).on_conflict_do_update(
                index_elements=["tenant_id", "product_id", "other_id"],
                set_={
                    "baskets": ProductPairCount.__table__.c.baskets + insert_pairs.excluded.baskets
                },
            )
        )
    return statements


async def _count(
    session: AsyncSession, tenant_id: str, products: Sequence[str], delta: int
) -> None:
    if not products:
        return
    for statement in _upsert_counts(session, tenant_id, products, delta):
        await session.execute(statement)


async def products_of_skus(
    session: AsyncSession, tenant: TenantContext, skus: Sequence[str]
) -> dict[str, str]:
    """``{sku: product_id}`` for the tenant's ``skus`` (unknown ones left out)."""
    if not skus:
        return {}
    wanted = select(Variant.id).where(Variant.tenant_id == tenant.id, Variant.sku.in_(set(skus)))
    found: dict[str, str] = {}
    for product, variants in await catalog.list_products(
        session, tenant, variant_ids=wanted, limit=catalog.MAX_PAGE
    ):
        for variant in variants:
            found[variant.sku] = product.id
    return {sku: found[sku] for sku in skus if sku in found}


async def record_basket(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    order_id: str,
    customer_id: str,
    channel: str,
    skus: Sequence[str],
    placed_at: datetime,
) -> bool:
    """Count the order's products once; a second call for the same order changes nothing."""
    by_sku = await products_of_skus(session, tenant, skus)
    products = list(dict.fromkeys(by_sku[sku] for sku in skus if sku in by_sku))
    inserted = await session.execute(
        customers.dialect_insert(session, PurchaseBasket.__table__)
        .values(
            id=order_id,
            tenant_id=tenant.id,
            customer_id=customer_id,
            channel=channel,
            products=products,
            cancelled=False,
            placed_at=placed_at,
        )
        .on_conflict_do_nothing(index_elements=["id"])
        .returning(PurchaseBasket.__table__.c.id)
    )
    if inserted.first() is None:
        return False
    await _count(session, tenant.id, products, 1)
    return True


async def cancel_basket(session: AsyncSession, tenant: TenantContext, *, order_id: str) -> bool:
    """Uncount a cancelled order's products (once)."""
    cancelled = await session.execute(
        update(PurchaseBasket)
        .where(
            PurchaseBasket.tenant_id == tenant.id,
            PurchaseBasket.id == order_id,
            PurchaseBasket.cancelled.is_(False),
        )
        .values(cancelled=True)
        .returning(PurchaseBasket.products),
        execution_options={"synchronize_session": False},
    )
    row = cancelled.first()
    if row is None:
        return False
    await _count(session, tenant.id, list(row[0] or []), -1)
    return True


async def consume(session: AsyncSession, events: Sequence[OutboxEvent]) -> None:
    """The relay's consumer of ``order.placed`` and ``order.cancelled``."""
    for event in events:
        payload = event.payload or {}
        order_id = payload.get("order_id")
        if not isinstance(order_id, str):
            continue
        tenant = TenantContext(id=event.tenant_id)
        if event.topic == "order.placed":
            await record_basket(
                session,
                tenant,
                order_id=order_id,
                customer_id=str(payload.get("customer_id") or ""),
                channel=str(payload.get("channel") or ""),
                skus=[
                    str(line["sku"])
                    for line in payload.get("lines") or []
                    if isinstance(line, dict) and line.get("sku")
                ],
                placed_at=as_utc(event.created_at),
            )
        elif event.topic == "order.cancelled":
            await cancel_basket(session, tenant, order_id=order_id)


register_consumer("recommendations", topics=("order.placed", "order.cancelled"), consume=consume)


async def rebuild(session: AsyncSession, tenant: TenantContext) -> dict[str, int]:
    """Recount the tenant's baskets from its orders (orders placed before this module existed,
    or a tenant imported in bulk): every order not cancelled, through the orders service."""
    for model in (PurchaseBasket, ProductBasketCount, ProductPairCount):
        await session.execute(delete(model).where(model.tenant_id == tenant.id))
    counted = seen = 0
    after: str | None = None
    while True:
        page = await orders.list_orders(session, tenant, after=after, limit=200)
        if not page:
            break
        for order in page:
            seen += 1
            if order.status == "cancelled":
                continue
            lines = await orders.lines_of(session, tenant, order.id)
            counted += await record_basket(
                session,
                tenant,
                order_id=order.id,
                customer_id=order.customer_id,
                channel=order.channel,
                skus=[line.sku for line in lines],
                placed_at=as_utc(order.created_at),
            )
        after = page[-1].id
    return {"orders": seen, "baskets": counted}


customers.register_merge_participant(
    customers.OwnedRowsParticipant("recommendations", PurchaseBasket)
)


# --- aliases --------------------------------------------------------------------------------------


def check_aliases(aliases: Sequence[str]) -> list[str]:
    """Trimmed aliases, each once (compared without accents or case); bad ones are refused."""
    if len(aliases) > MAX_ALIASES:
        raise Invalid(f"at most {MAX_ALIASES} aliases per product", field="aliases")
    kept: dict[str, str] = {}
    for position, alias in enumerate(aliases):
        text = " ".join(alias.split())
        key = normalize(text)
        if len(key.replace(" ", "")) < 2:
            raise Invalid(
                f"alias {position + 1} ({alias!r}) needs at least two letters or digits",
                field=f"aliases.{position}",
            )
        if len(text) > MAX_ALIAS_LENGTH:
            raise Invalid(
                f"alias {position + 1} is longer than {MAX_ALIAS_LENGTH} characters",
                field=f"aliases.{position}",
            )
        kept.setdefault(key, text)
    return list(kept.values())


async def get_aliases(session: AsyncSession, tenant: TenantContext, product_id: str) -> list[str]:
    await catalog.get_product(session, tenant, product_id)
    row = await session.get(ProductAliases, (tenant.id, product_id))
    return list(row.aliases) if row is not None else []


async def set_aliases(
    session: AsyncSession, tenant: TenantContext, product_id: str, aliases: Sequence[str]
) -> list[str]:
    """Replace the product's aliases (an empty list removes them); another tenant's product is
    not found."""
    await catalog.get_product(session, tenant, product_id)
    kept = check_aliases(aliases)
    statement = customers.dialect_insert(session, ProductAliases.__table__)
    await session.execute(
        statement.values(
            tenant_id=tenant.id, product_id=product_id, aliases=kept, updated_at=now()
        ).on_conflict_do_update(
            index_elements=["tenant_id", "product_id"],
            set_={
                "aliases": statement.excluded.aliases,
                "updated_at": statement.excluded.updated_at,
            },
        )
    )
    return kept


# --- the customer's signals -----------------------------------------------------------------------


async def load_catalog(session: AsyncSession, tenant: TenantContext) -> CatalogIndex:
    """Every product with its SKUs and aliases (through the catalog service, a page at a time)."""
    products: list[tuple[Product, list[Variant]]] = []
    after: str | None = None
    while True:
        page = await catalog.list_products(session, tenant, after=after, limit=catalog.MAX_PAGE)
        products.extend(page)
        if len(page) < catalog.MAX_PAGE:
            break
        after = page[-1][0].id
    if not products:
        return CatalogIndex.of([])
    aliases = {
        row.product_id: list(row.aliases or [])
        for row in (
            await session.scalars(
                select(ProductAliases).where(ProductAliases.tenant_id == tenant.id)
            )
        ).all()
    }
    return CatalogIndex.of(
        catalog_entry(
            product_id=product.id,
            name=product.name,
            skus=[v.sku for v in variants],
            variant_ids=[v.id for v in variants],
            aliases=aliases.get(product.id, []),
        )
        for product, variants in products
    )


@dataclass(slots=True)
class Signals:
    """What a customer did, as products, the most recent first."""

    bought: list[str] = field(default_factory=list)
    viewed: list[str] = field(default_factory=list)
    mentioned: list[str] = field(default_factory=list)
    # A URL where the customer saw each viewed product, for templates.
    urls: dict[str, str] = field(default_factory=dict)


def signals_from(
    index: CatalogIndex,
    *,
    baskets: Sequence[Sequence[str]],
    events: Sequence[TimelineEvent],
    messages: Sequence[Message],
    before: datetime | None = None,
) -> Signals:
    """Turn the customer's baskets, timeline events and messages (each newest first) into
    products; ``before`` ignores what happened from that moment on (offline evaluation)."""
    signals = Signals()
    bought: list[str] = [p for basket in baskets for p in basket if p in index.entries]
    for event in events:
        if before is not None and as_utc(event.occurred_at) >= before:
            continue
        name = (event.name or "").casefold()
        if event.type not in INTEREST_EVENT_TYPES:
            continue
        properties = dict(event.properties or {})
        page = (event.context or {}).get("page") if isinstance(event.context, dict) else None
        named = products_of_event(properties, index)
        if not named and event.type == "page" and isinstance(page, dict):
            named = products_of_event(page, index)
        if name in PURCHASE_EVENTS:
            bought.extend(named)
        elif name not in NOT_INTEREST_EVENTS:
            signals.viewed.extend(named)
            url = properties.get("url") or (page or {}).get("url")
            if isinstance(url, str):
                for product in named:
                    signals.urls.setdefault(product, url)
    for message in messages:
        if message.direction != "inbound" or message.kind != "message" or not message.text:
            continue
        if before is not None and as_utc(message.sent_at) >= before:
            continue
        signals.mentioned.extend(mentioned_products(message.text, index))
    signals.bought = list(dict.fromkeys(bought))
    signals.viewed = list(dict.fromkeys(signals.viewed))
    signals.mentioned = list(dict.fromkeys(signals.mentioned))
    return signals


async def customer_baskets(
    session: AsyncSession,
    tenant: TenantContext,
    customer_id: str,
    *,
    before: datetime | None = None,
) -> list[list[str]]:
    """The products of the customer's latest orders not cancelled, the newest first."""
    statement = (
        select(PurchaseBasket.products)
        .where(
            PurchaseBasket.tenant_id == tenant.id,
            PurchaseBasket.customer_id == customer_id,
            PurchaseBasket.cancelled.is_(False),
        )
        .order_by(PurchaseBasket.placed_at.desc(), PurchaseBasket.id.desc())
        .limit(RECENT_BASKETS)
    )
    if before is not None:
        statement = statement.where(PurchaseBasket.placed_at < before)
    return [list(products or []) for products in (await session.scalars(statement)).all()]


async def basket_stats(
    session: AsyncSession, tenant: TenantContext, seeds: Collection[str]
) -> BasketStats:
    """Every product's basket count, and the pair counts of ``seeds``: two statements."""
    counts = {
        product_id: baskets
        for product_id, baskets in (
            await session.execute(
                select(ProductBasketCount.product_id, ProductBasketCount.baskets).where(
                    ProductBasketCount.tenant_id == tenant.id, ProductBasketCount.baskets > 0
                )
            )
        ).all()
    }
    together: dict[str, dict[str, int]] = defaultdict(dict)
    wanted = [seed for seed in seeds if seed in counts]
    if wanted:
        rows = await session.execute(
            select(
                ProductPairCount.product_id, ProductPairCount.other_id, ProductPairCount.baskets
            ).where(
                ProductPairCount.tenant_id == tenant.id,
                ProductPairCount.product_id.in_(wanted),
                ProductPairCount.baskets > 0,
            )
        )
        for product_id, other_id, baskets in rows.all():
            together[product_id][other_id] = baskets
    return BasketStats(baskets=counts, together=dict(together))


async def sellable_skus(
    session: AsyncSession, tenant: TenantContext, index: CatalogIndex, products: Collection[str]
) -> dict[str, str]:
    """``{product_id: sku}``: for each of ``products`` its first SKU that is listed on some
    sales channel now and, when the product's stock is kept, available somewhere."""
    entries = [index.entries[p] for p in products if p in index.entries]
    variant_ids = [v for entry in entries for v in entry.variant_ids]
    if not variant_ids:
        return {}
    listed = await pricing.listed_channels(session, tenant, variant_ids, at=now())
    kept: set[str] = set()
    in_stock: set[str] = set()
    rows = await session.execute(
        select(
            StockLevel.variant_id,
            StockLevel.on_hand,
            StockLevel.reserved,
            StockLevel.safety_stock,
        ).where(StockLevel.tenant_id == tenant.id, StockLevel.variant_id.in_(variant_ids))
    )
    for variant_id, on_hand, reserved, safety in rows.all():
        kept.add(variant_id)
        if commerce_stock.available(on_hand, reserved, safety) > 0:
            in_stock.add(variant_id)
    found: dict[str, str] = {}
    for entry in entries:
        stock_kept = any(v in kept for v in entry.variant_ids)
        for variant_id, sku in zip(entry.variant_ids, entry.skus, strict=True):
            if listed.get(variant_id) and (not stock_kept or variant_id in in_stock):
                found[entry.product_id] = sku
                break
    return found


# --- recommending ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recommendation:
    sku: str
    product_id: str
    name: str
    score: float
    # bought_together:<product_id>, mentioned, viewed, popular
    reasons: list[str]
    # The names of the products it is often bought with (the bought_together reasons').
    bought_with: list[str]
    # Where the customer saw it, when they did.
    url: str | None = None


async def recommend(
    session: AsyncSession,
    tenant: TenantContext,
    customer_id: str,
    *,
    limit: int = 10,
    events: Sequence[TimelineEvent] | None = None,
    messages: Sequence[Message] | None = None,
) -> list[Recommendation]:
    """The customer's ``limit`` best products to offer, with why.

    ``events`` and ``messages`` (newest first) are the customer's recent timeline events and
    messages when the caller already has them (the 360° view); otherwise they are read here.
    A merged customer's recommendations are the survivor's; another tenant's customer is not
    found.
    """
    customer = await customers.live_customer(session, tenant, customer_id)
    return await recommend_for(
        session, tenant, customer, limit=limit, events=events, messages=messages
    )


async def recommend_for(
    session: AsyncSession,
    tenant: TenantContext,
    customer: Customer,
    *,
    limit: int = 10,
    events: Sequence[TimelineEvent] | None = None,
    messages: Sequence[Message] | None = None,
) -> list[Recommendation]:
    """``recommend`` for a customer the caller has already loaded (not merged away)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise Invalid(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
    customer_id = customer.id
    index = await load_catalog(session, tenant)
    if not index.entries:
        return []
    if events is None:
        events = await customers.recent_timeline_events(
            session, tenant, customer_id, limit=RECENT_EVENTS
        )
    if messages is None:
        messages = [
            message
            for message, _kind in await conversations.recent_messages_of_customer(
                session, tenant, customer_id, limit=RECENT_MESSAGES
            )
        ]
    baskets = await customer_baskets(session, tenant, customer_id)
    signals = signals_from(index, baskets=baskets, events=events, messages=messages)
    seeds = {*signals.bought, *signals.viewed, *signals.mentioned}
    stats = await basket_stats(session, tenant, seeds)
    popular = popular_products(stats)
    candidates = (
        {other for seed in seeds for other in stats.together.get(seed, {})}
        | set(signals.viewed)
        | set(signals.mentioned)
        | set(popular)
    ) - set(signals.bought)
    skus = await sellable_skus(session, tenant, index, candidates)
    ranked = rank(
        bought=signals.bought,
        viewed=signals.viewed,
        mentioned=signals.mentioned,
        stats=stats,
        popular=popular,
        allowed=skus,
        limit=limit,
    )
    return [
        Recommendation(
            sku=skus[item.product_id],
            product_id=item.product_id,
            name=index.entries[item.product_id].name,
            score=round(item.score, 4),
            reasons=item.reasons,
            bought_with=[index.entries[p].name for p in item.bought_with if p in index.entries],
            url=signals.urls.get(item.product_id),
        )
        for item in ranked
    ]


async def template_items(
    session: AsyncSession,
    tenant: TenantContext,
    customer_id: str,
    *,
    channel: str = "web",
    limit: int = 3,
) -> list[dict[str, Any]]:
    """Recommendations as message templates use them: ``{sku, name, price, currency, url}``,
    ``price`` in minor units on ``channel``'s price list (``None`` when not listed there) and
    ``url`` where the customer saw the product (``None`` when they did not)."""
    items = []
    for item in await recommend(session, tenant, customer_id, limit=limit):
        prices = (await pricing.effective_prices(session, tenant, at=now(), sku=item.sku)).get(
            item.sku, {}
        )
        price = prices.get(channel)
        items.append(
            {
                "sku": item.sku,
                "name": item.name,
                "price": price.amount if price is not None else None,
                "currency": price.currency if price is not None else None,
                "url": item.url,
            }
        )
    return items
