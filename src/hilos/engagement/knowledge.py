"""The tenant's knowledge base and ranked retrieval over it, in Spanish and English.

What it owns: knowledge articles (title, body, language, tags), the text handling the
assistant shares (accent folding, language detection, tokens) and ``search``, which ranks a
language's articles for a question and says how sure it is.

Ranking is BM25 through ``bm25s`` (a maintained library on sparse matrices). Tokens are made
here so that both sides of the match are treated alike: lower case, accents folded (customers
write "devolucion" as often as "devolución"), stop words of the language removed (bm25s's
lists, plus the courtesy and question words every customer question carries: "quiero saber",
"could you tell me"), then the Snowball stemmer of the language (PyStemmer), so "devoluciones"
meets "devolución" and "shipping" meets "ships". The title and the tags weigh twice.

Stemmers keep a verb and its noun apart ("devolver" → ``devolv``, "devolución" → ``devolu``), so
a question's term that no article has stands for the indexed terms sharing its root (a common
prefix of five letters, or one term the other's prefix) before it is scored.

Confidence: a BM25 score grows with the length of the question and the size of the knowledge
base, so it cannot be compared with a fixed threshold. ``confidence`` is instead the share of
the question's terms the article contains, each weighted by its inverse document frequency
(a word in every article says little); a word no article has weighs as much as one that a
single article has, because it is what the knowledge base does not cover ("¿hacéis
tatuajes?" against a shop's articles). 1.0 means every informative word of the question is
in the article.

Indexes are built in memory per tenant and language, and rebuilt when an article of that
language is created, changed or deleted (the cache key is the ids and update times, read with
one small query per search), so every process sees the same answers.
"""

from __future__ import annotations

import math
import os
import re
import unicodedata
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, cast

import bm25s  # type: ignore[import-untyped]
import Stemmer  # type: ignore[import-not-found]
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from hilos.core.clock import now
from hilos.core.ids import new_id
from hilos.core.tenancy import TenantContext, get_owned, tenant_scope
from hilos.engagement.assistant_models import KnowledgeArticle

LANGUAGES = ("es", "en")
MAX_ARTICLES = 2000
_STEMMERS = {"es": "spanish", "en": "english"}
_WORD = re.compile(r"[^\W_]+")

# Words of a question that say nothing about its subject.
_FILLER = {
    "es": """
        hola buenas buenos dias tardes noches gracias favor porfa quiero quisiera queria
        querria saber necesito necesitaria puedo puedes podeis podria podrias podriais
        pregunta preguntar duda consulta informacion info ayuda ayudar decir decirme
        hay teneis tienen tiene cual cuales cuanto cuanta cuantos cuantas como donde cuando
        vuestro vuestra vuestros vuestras usted ustedes vale oye unas unos
    """,
    "en": """
        hi hello hey thanks thank please want wanted like know need could would can tell
        question ask asking info information help wondering your you do does is are there
        what which how when where much many ok okay
    """,
}

# Words that say which language a message is in (folded); none is common to both.
_MARKERS = {
    "es": """
        el la los las del que y en un una unos unas por para con mi mis tu esta estan donde
        cual como tengo teneis tienen hay quiero pedido tienda hola gracias talla es son
        se lo le nos al pero porque cuando ya tambien muy puedo necesito envio devolucion
    """,
    "en": """
        the of and to in is are my your where what how do does have has you want order
        store hello hi thanks size please can i it this that with for from when will get
        need shipping return returns there which
    """,
}


def fold(text: str) -> str:
    """Lower case without accents: ``¿Dónde ESTÁ?`` → ``¿donde esta?``."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def words(text: str) -> list[str]:
    """The folded words (letters and digits) of ``text``."""
    return _WORD.findall(fold(text))


@cache
def _markers(language: str) -> frozenset[str]:
    return frozenset(_MARKERS[language].split())


def detect_language(text: str) -> str | None:
    """``es`` or ``en`` when the text says so clearly (its function words), else ``None``."""
    found = words(text)
    spanish = sum(1 for w in found if w in _markers("es"))
    english = sum(1 for w in found if w in _markers("en"))
    if any(mark in text for mark in "¿¡ñÑ"):
        spanish += 2
    if spanish > english:
        return "es"
    if english > spanish:
        return "en"
    return None


@cache
def stop_words(language: str) -> frozenset[str]:
    listed = bm25s.stopwords.STOPWORDS_SPANISH if language == "es" else bm25s.stopwords.STOPWORDS_EN
    return frozenset({fold(w) for w in listed} | set(_FILLER[language].split()))


@cache
def _stemmer(language: str) -> Any:
    return Stemmer.Stemmer(_STEMMERS[language])


def tokens(text: str, language: str) -> list[str]:
    """The stemmed, folded content words of ``text`` in ``language``."""
    stop = stop_words(language)
    kept = [w for w in words(text) if w not in stop]
    return list(_stemmer(language).stemWords(kept)) if kept else []


# --- articles -------------------------------------------------------------------------------


async def create_article(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    title: str,
    body: str,
    language: str,
    tags: Sequence[str],
) -> KnowledgeArticle:
    moment = now()
    article = KnowledgeArticle(
        id=new_id(),
        tenant_id=tenant.id,
        title=title,
        body=body,
        language=language,
        tags=list(dict.fromkeys(tags)),
        created_at=moment,
        updated_at=moment,
    )
    session.add(article)
    await session.flush()
    return article


async def get_article(
    session: AsyncSession, tenant: TenantContext, article_id: str
) -> KnowledgeArticle:
    return await get_owned(session, KnowledgeArticle, article_id, tenant, what="article")


async def list_articles(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    language: str | None = None,
    tag: str | None = None,
    after: str | None = None,
    limit: int = 100,
) -> list[KnowledgeArticle]:
    """Articles in creation order, ``limit`` after the id ``after``."""
    statement = tenant_scope(select(KnowledgeArticle), KnowledgeArticle, tenant)
    if language is not None:
        statement = statement.where(KnowledgeArticle.language == language)
    if after is not None:
        statement = statement.where(KnowledgeArticle.id > after)
    rows = list(
        (await session.scalars(statement.order_by(KnowledgeArticle.id).limit(MAX_ARTICLES))).all()
    )
    if tag is not None:
        # Tags live in a JSON list: filtered here, the same on SQLite and PostgreSQL.
        rows = [row for row in rows if tag in (row.tags or [])]
    return rows[:limit]


async def update_article(
    session: AsyncSession, tenant: TenantContext, *, article_id: str, changes: dict[str, Any]
) -> KnowledgeArticle:
    article = await get_article(session, tenant, article_id)
    for name in ("title", "body", "language"):
        if changes.get(name) is not None:
            setattr(article, name, changes[name])
    if changes.get("tags") is not None:
        article.tags = list(dict.fromkeys(changes["tags"]))
    article.updated_at = now()
    await session.flush()
    return article


async def delete_article(session: AsyncSession, tenant: TenantContext, article_id: str) -> None:
    article = await get_article(session, tenant, article_id)
    await session.delete(article)
    await session.flush()


# --- retrieval ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Match:
    """An article that answers a question: its BM25 ``score`` and the ``confidence`` (0–1)."""

    article_id: str
    title: str
    body: str
    score: float
    confidence: float


@dataclass(frozen=True, slots=True)
class _Index:
    retriever: Any
    ids: list[str]
    texts: list[tuple[str, str]]
    terms: list[frozenset[str]]
    document_frequency: dict[str, int]

    def idf(self, frequency: int) -> float:
        """Lucene's BM25 idf of a term that ``frequency`` articles have."""
        return math.log(1 + (len(self.ids) - frequency + 0.5) / (frequency + 0.5))

    def forms(self, term: str) -> frozenset[str]:
        """The indexed terms a question's term stands for: itself, or the indexed terms that
        share its root (the stemmer keeps "devolver" and "devolución" apart)."""
        if term in self.document_frequency:
            return frozenset({term})
        return frozenset(known for known in self.document_frequency if _related(term, known))

    def weight(self, forms: frozenset[str]) -> float:
        # A term no article has weighs as much as a term that only one article has: it is
        # what the knowledge base does not cover.
        if not forms:
            return self.idf(1)
        return max(self.idf(self.document_frequency[form]) for form in forms)


def _related(term: str, known: str) -> bool:
    shorter = min(len(term), len(known))
    common = len(os.path.commonprefix([term, known]))
    return common >= 5 or (common == shorter and shorter >= 4)


_CACHE: OrderedDict[tuple[str, str], tuple[tuple[tuple[str, datetime], ...], _Index]] = (
    OrderedDict()
)
_CACHE_SIZE = 256


def _document(article: KnowledgeArticle) -> str:
    heading = " ".join([article.title, *[str(tag) for tag in article.tags or []]])
    return f"{heading} {heading} {article.body}"


def _build(articles: Sequence[KnowledgeArticle], language: str) -> _Index:
    corpus = [tokens(_document(article), language) for article in articles]
    retriever = bm25s.BM25()
    retriever.index(corpus, show_progress=False)
    terms = [frozenset(document) for document in corpus]
    frequency: dict[str, int] = {}
    for document in terms:
        for term in document:
            frequency[term] = frequency.get(term, 0) + 1
    return _Index(
        retriever=retriever,
        ids=[article.id for article in articles],
        texts=[(article.title, article.body) for article in articles],
        terms=terms,
        document_frequency=frequency,
    )


async def _index_of(session: AsyncSession, tenant: TenantContext, language: str) -> _Index | None:
    statement = tenant_scope(
        cast(
            "Select[Any]",
            select(KnowledgeArticle.id, KnowledgeArticle.updated_at).where(
                KnowledgeArticle.language == language
            ),
        ),
        KnowledgeArticle,
        tenant,
    )
    rows = await session.execute(statement.order_by(KnowledgeArticle.id).limit(MAX_ARTICLES))
    versions = tuple((row.id, row.updated_at) for row in rows.all())
    if not versions:
        return None
    key = (tenant.id, language)
    cached = _CACHE.get(key)
    if cached is not None and cached[0] == versions:
        _CACHE.move_to_end(key)
        return cached[1]
    articles = (
        await session.scalars(
            select(KnowledgeArticle).where(KnowledgeArticle.id.in_([v[0] for v in versions]))
        )
    ).all()
    index = _build(sorted(articles, key=lambda a: a.id), language)
    _CACHE[key] = (versions, index)
    _CACHE.move_to_end(key)
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return index


def _confidence(question: Sequence[frozenset[str]], index: _Index, position: int) -> float:
    """The weighted share of the question's terms (as ``forms``) that article ``position`` has."""
    if not question:
        return 0.0
    total = sum(index.weight(forms) for forms in question)
    found = sum(index.weight(forms) for forms in question if forms & index.terms[position])
    return round(found / total, 3) if total > 0 else 0.0


async def search(
    session: AsyncSession, tenant: TenantContext, *, text: str, language: str, limit: int = 3
) -> list[Match]:
    """The articles of ``language`` that best answer ``text``, best first (at most ``limit``;
    none when no article shares a word with it)."""
    question = tokens(text, language)
    if not question:
        return []
    index = await _index_of(session, tenant, language)
    if index is None:
        return []
    forms = [index.forms(term) for term in dict.fromkeys(question)]
    expanded = sorted({form for group in forms for form in group})
    if not expanded:
        return []
    scores = index.retriever.get_scores(expanded)
    ranked = sorted(
        (position for position in range(len(index.ids)) if scores[position] > 0),
        key=lambda position: (-float(scores[position]), index.ids[position]),
    )
    return [
        Match(
            article_id=index.ids[position],
            title=index.texts[position][0],
            body=index.texts[position][1],
            score=round(float(scores[position]), 4),
            confidence=_confidence(forms, index, position),
        )
        for position in ranked[:limit]
    ]
