"""Recommendations, offline: hit rate at k of ``hilos.engagement.recommend.rank`` against a
popularity baseline, on the demo shop and on a public data set of real baskets.

Both sides of each comparison see the same data and never what they must guess; the recommender
is the service's own ranking (``rank``, fed by ``count_baskets`` and, for the demo, by the
service's ``signals_from``), not a copy of it. The baseline offers the most bought products
overall, leaving out what the customer (or the basket) already has, as the recommender does.

(a) **Demo shop.** ``hilos demo`` is built into a temporary SQLite file (200 customers, through
the services, as ``hilos demo`` does) and its purchase baskets are counted (``rebuild``). A
customer's purchases are their orders and their Segment ``Order Completed`` events; the latest
one is hidden, and the recommender sees only what came before it: earlier purchases, products
viewed, products mentioned in messages. Co-occurrence and popularity come from every basket but
the hidden one. A hit: the hidden purchase shares a product with the k offered. The demo's
catalog has ten products, so at k = 10 every list holds the whole catalog less what the
customer has; k = 1 and 3 are the telling rows.

(b) **Groceries.** The "Groceries" data set of the R package arules (Hahsler, Hornik and
Reutterer, 2006), as published with the book "Machine Learning with R": 9,835 real
point-of-sale baskets of one month of a grocery outlet, 169 categories, no customer ids. Baskets
are split into ``--folds`` folds; each fold is tested against counts from the others (so
co-occurrence comes only from training baskets). Leave-one-item-out: in each test basket with at
least two items one item (chosen at random, seeded) is hidden and 10 are recommended from the
rest; a hit when the hidden item is among them. A second row hides every item in turn. The
McNemar z compares the two on the same cases (above 2: the difference is not chance).

    .venv/bin/python benchmarks/recommend.py
    .venv/bin/python benchmarks/recommend.py --groceries /path/to/groceries.csv --skip-demo
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import math
import random
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from _common import REPO_DIR, Column, console, machine_facts, print_table, write_results
from rich.console import Console
from sqlalchemy import select

from hilos.conversations import service as conversations
from hilos.core.clock import as_utc
from hilos.core.db import make_engine, make_sessionmaker
from hilos.core.settings import Settings
from hilos.core.tenancy import load_tenant
from hilos.customers import service as customers
from hilos.customers.models import Customer
from hilos.demo import run_demo
from hilos.engagement import recommend
from hilos.engagement.recommend_models import PurchaseBasket
from hilos.migrate import upgrade

DEFAULT_GROCERIES = REPO_DIR.parent / "shared" / "datasets" / "groceries.csv"
GROCERIES_NAME = (
    "Groceries (R package arules; Hahsler, Hornik & Reutterer 2006; as published with "
    '"Machine Learning with R")'
)

COLUMNS = [
    Column("dataset", "Data set"),
    Column("protocol", "Protocol"),
    Column("cases", "Cases"),
    Column("k", "k"),
    Column("recommender", "Recommender hit rate", 3),
    Column("popularity", "Popularity hit rate", 3),
    Column("difference", "Difference (pp)", 1),
    Column("z", "McNemar z", 1),
]


@dataclass
class Tally:
    """Hits of the recommender and the baseline on the same cases."""

    cases: int = 0
    recommender: int = 0
    popularity: int = 0
    only_recommender: int = 0
    only_popularity: int = 0

    def add(self, recommender_hit: bool, popularity_hit: bool) -> None:
        self.cases += 1
        self.recommender += recommender_hit
        self.popularity += popularity_hit
        self.only_recommender += recommender_hit and not popularity_hit
        self.only_popularity += popularity_hit and not recommender_hit

    def row(self, dataset: str, protocol: str, k: int) -> dict[str, Any]:
        cases = max(self.cases, 1)
        discordant = self.only_recommender + self.only_popularity
        return {
            "dataset": dataset,
            "protocol": protocol,
            "cases": self.cases,
            "k": k,
            "recommender": self.recommender / cases,
            "popularity": self.popularity / cases,
            "difference": 100 * (self.recommender - self.popularity) / cases,
            "z": (self.only_recommender - self.only_popularity) / math.sqrt(discordant)
            if discordant
            else 0.0,
        }


def baseline(popular: Sequence[str], have: set[str], k: int) -> list[str]:
    return [product for product in popular if product not in have][:k]


# --- groceries -------------------------------------------------------------------------------


def read_baskets(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = [[item.strip() for item in row if item.strip()] for row in csv.reader(handle)]
    return [list(dict.fromkeys(row)) for row in rows if row]


def groceries(path: Path, *, folds: int, seed: int, k: int) -> tuple[list[dict[str, Any]], int]:
    baskets = read_baskets(path)
    order = list(range(len(baskets)))
    random.Random(seed).shuffle(order)
    one = Tally()
    every = Tally()
    pick = random.Random(seed + 1)
    for fold in range(folds):
        test = [baskets[i] for n, i in enumerate(order) if n % folds == fold]
        stats = recommend.count_baskets(
            baskets[i] for n, i in enumerate(order) if n % folds != fold
        )
        popular = recommend.popular_products(stats, limit=len(stats.baskets))
        for basket in test:
            if len(basket) < 2:
                continue
            chosen = pick.choice(basket)
            for hidden in basket:
                rest = [item for item in basket if item != hidden]
                ranked = recommend.rank(
                    bought=rest, stats=stats, popular=popular[: k + len(rest)], limit=k
                )
                hit = hidden in {r.product_id for r in ranked}
                base_hit = hidden in baseline(popular, set(rest), k)
                every.add(hit, base_hit)
                if hidden == chosen:
                    one.add(hit, base_hit)
    rows = [
        one.row("groceries", f"one hidden item per basket, {folds}-fold", k),
        every.row("groceries", f"every item hidden in turn, {folds}-fold", k),
    ]
    return rows, len(baskets)


# --- the demo shop ---------------------------------------------------------------------------


@dataclass
class Purchase:
    at: datetime
    products: list[str]
    basket_id: str | None = None


@dataclass
class History:
    purchases: list[Purchase] = field(default_factory=list)
    events: Sequence[Any] = ()
    messages: Sequence[Any] = ()


async def demo(customer_count: int, ks: Sequence[int]) -> tuple[list[dict[str, Any]], int]:
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(
            database_url=f"sqlite+aiosqlite:///{Path(folder) / 'demo.db'}", bus_url="memory://"
        )
        engine = make_engine(settings.database_url)
        try:
            await upgrade(engine)
            quiet = Console(file=io.StringIO())
            info = await run_demo(
                settings, reset=True, console=quiet, customer_count=customer_count
            )
            sessionmaker = make_sessionmaker(engine)
            async with sessionmaker() as session, session.begin():
                tenant = await load_tenant(session, info.tenant_id)
                await recommend.rebuild(session, tenant)
            async with sessionmaker() as session:
                index = await recommend.load_catalog(session, tenant)
                baskets = (
                    await session.scalars(
                        select(PurchaseBasket).where(
                            PurchaseBasket.tenant_id == tenant.id,
                            PurchaseBasket.cancelled.is_(False),
                        )
                    )
                ).all()
                histories: dict[str, History] = {}
                customer_ids = (
                    await session.scalars(
                        select(Customer.id).where(
                            Customer.tenant_id == tenant.id, Customer.merged_into_id.is_(None)
                        )
                    )
                ).all()
                for customer_id in customer_ids:
                    history = History(
                        events=await customers.recent_timeline_events(
                            session, tenant, customer_id, limit=1000
                        ),
                        messages=[
                            m
                            for m, _ in await conversations.recent_messages_of_customer(
                                session, tenant, customer_id, limit=1000
                            )
                        ],
                    )
                    for event in history.events:
                        if (event.name or "").casefold() in recommend.PURCHASE_EVENTS:
                            products = recommend.products_of_event(event.properties or {}, index)
                            if products:
                                history.purchases.append(
                                    Purchase(as_utc(event.occurred_at), products)
                                )
                    histories[customer_id] = history
                for basket in baskets:
                    if basket.customer_id in histories and basket.products:
                        histories[basket.customer_id].purchases.append(
                            Purchase(as_utc(basket.placed_at), list(basket.products), basket.id)
                        )
        finally:
            await engine.dispose()
    all_baskets = {b.id: list(b.products) for b in baskets if b.products}
    tallies = {k: Tally() for k in ks}
    for history in histories.values():
        if not history.purchases:
            continue
        history.purchases.sort(key=lambda p: p.at)
        hidden = history.purchases[-1]
        earlier = history.purchases[:-1]
        signals = recommend.signals_from(
            index,
            baskets=[p.products for p in reversed(earlier)],
            events=history.events,
            messages=history.messages,
            before=hidden.at,
        )
        stats = recommend.count_baskets(
            products for basket_id, products in all_baskets.items() if basket_id != hidden.basket_id
        )
        popular = recommend.popular_products(stats, limit=len(index.entries))
        # Products nobody bought yet come last, in catalog order, for both sides.
        popular += [p for p in index.entries if p not in popular]
        have = set(signals.bought)
        for k in ks:
            ranked = recommend.rank(
                bought=signals.bought,
                viewed=signals.viewed,
                mentioned=signals.mentioned,
                stats=stats,
                popular=popular,
                limit=k,
            )
            offered = {r.product_id for r in ranked}
            tallies[k].add(
                bool(offered & set(hidden.products)),
                bool(set(baseline(popular, have, k)) & set(hidden.products)),
            )
    rows = [tallies[k].row("demo shop", "last purchase hidden, per customer", k) for k in ks]
    return rows, len(index.entries)


async def main(args: argparse.Namespace) -> None:
    rows: list[dict[str, Any]] = []
    figures: dict[str, Any] = {}
    started = time.perf_counter()
    if not args.skip_demo:
        demo_rows, products = await demo(args.demo_customers, (1, 3, args.k))
        rows += demo_rows
        figures["demo_products"] = products
        figures["demo_seconds"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    grocery_rows, grocery_baskets = await asyncio.to_thread(
        groceries, args.groceries, folds=args.folds, seed=args.seed, k=args.k
    )
    rows += grocery_rows
    figures["groceries_baskets"] = grocery_baskets
    figures["groceries_seconds"] = round(time.perf_counter() - started, 1)
    figures["rows"] = rows
    print_table("Recommendations: hit rate against popularity", COLUMNS, rows)
    headline = grocery_rows[0]
    beaten = all(row["recommender"] > row["popularity"] for row in grocery_rows)
    notes = [
        "Recommender: hilos.engagement.recommend.rank (cosine co-occurrence of products in "
        "baskets, plus mentions and views for the demo, popularity filling the list); "
        "baseline: the most bought products, less what the customer or basket already has.",
        f"Public data set: {GROCERIES_NAME}; file {args.groceries.name}, "
        f"{grocery_baskets:,} baskets, split into {args.folds} folds (seed {args.seed}).",
        "Demo shop: `hilos demo` with "
        f"{args.demo_customers} customers in a temporary SQLite database; its catalog has "
        f"{figures.get('demo_products', '–')} products, so k = 10 offers nearly all of it: the "
        "k = 1 and k = 3 rows tell the two apart.",
        f"Target: the recommender beats the baseline at k = {args.k} on the public data set: "
        + ("met" if beaten else "NOT met")
        + f" ({headline['recommender']:.3f} against {headline['popularity']:.3f}, "
        f"McNemar z {headline['z']:.1f}).",
    ]
    path = write_results(
        "recommend",
        title="Recommendations: offline hit rate (benchmarks/recommend.py)",
        columns=COLUMNS,
        rows=rows,
        figures=figures,
        notes=notes,
        facts=machine_facts(),
    )
    console.print(notes[-1])
    console.print(f"written {path} and RESULTS.md")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--groceries",
        type=Path,
        default=DEFAULT_GROCERIES,
        help="the Groceries baskets, one per line, items separated by commas",
    )
    parser.add_argument("--folds", type=int, default=5, help="train/test folds of the baskets")
    parser.add_argument("--k", type=int, default=10, help="how many products are offered")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--demo-customers", type=int, default=200)
    parser.add_argument("--skip-demo", action="store_true", help="the public data set only")
    args = parser.parse_args()
    if not args.groceries.is_file():
        parser.error(f"no such file: {args.groceries} (give --groceries PATH)")
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
