"""Sentiment of what customers write: a score in [-1, 1] with a label, in Spanish and English.

What it owns: ``score`` (how a short customer text sounds), ``language_of`` (Spanish or English,
when the words tell), the ``message_sentiments`` table that keeps the score of each inbound
message, the outbox consumer that fills it, ``latest_of`` (the latest score of each
conversation, which routing adds to a waiting conversation's priority) and
``sentiment_summary`` (shares of negative, neutral and positive messages, reviews and mentions,
for the KPIs). Reviews and social mentions are scored with ``score`` too (``reviews``).

Which library, and why only for English (measured in ``docs/sentiment.md``). The candidates
that run offline with their data inside the wheel and without PyTorch:

- ``nltk-vader-sentiment`` 1.0.0 (2026-08, Apache-2.0, no dependencies, typed): VADER's
  crowd-rated English lexicon (about 7,500 entries) and emoji names, shipped as Python data.
  English only. Chosen over ``vaderSentiment`` 3.3.2 (the original; last release 2020-05,
  pulls in ``requests`` for a demo, English only) and NLTK's ``vader`` (its lexicon is fetched
  with ``nltk.download()`` at run time).
- Spanish: nothing usable. ``sentiment-analysis-spanish`` 0.0.25 (2021-02) is a 30 MB pickled
  scikit-learn model of an old scikit-learn; ``SentiLeak`` 0.1.4 (2022-10, GPL-3) pins
  ``numpy<1.22`` and ``spaCy<3.5`` and needs a spaCy model download; ``pysentimiento`` needs
  transformers, PyTorch and weights from a hub; ``polyglot3`` downloads its polarity lexicons;
  ``vader-multi`` translates through an online service; TextBlob's lexicon is English only;
  Wowool (2026) ships Spanish data but will not start without a paid licence key (free terms:
  AGPL-3, non-commercial). Decision: our own Spanish lexicon until a maintained, offline,
  commercially usable Spanish model exists on PyPI (``score`` is the one place to swap it).

So the rules and the customer-service lexicon below are ours, for both languages (no library
covers Spanish, and one engine keeps the two languages' scores comparable), and an English text
gets VADER's lexicon for every word ours does not know (``sorry``, ``poor``, ``missing``...),
scaled from VADER's [-4, 4] ratings onto our [-3, 3]. We keep our rules rather than VADER's
engine because its negation looks three words back across "and": "my order never arrived and
nobody answers" scores -0.17 there (the "never" turns "nobody answers" around), too mild to
put that customer first; here both are phrases of their own and it scores -0.79.

How a text is scored (the rules VADER made familiar, applied to both languages):

- Words are compared without accents or case, with letters stretched for emphasis squeezed
  back (``graciaaas``); Spanish plurals, the feminine and superlatives (``malísimo``) fall back
  to the word in the lexicon. English contractions are spelled out (``doesn't`` → does not,
  ``I'll`` → I will). Phrases come before words (``no funciona``, ``sigo sin``,
  ``still waiting``, ``thank you``), and greetings and requests are neutral (``buenas tardes``,
  ``I'd like``).
- A negation (``no``, ``nunca``, ``sin``, ``not``, ``never``...) turns around the next three
  words of its clause: a negated complaint becomes mildly positive (``no está mal``), negated
  praise negative (``no me gusta``). Punctuation ends a clause.
- Intensifiers (``muy``, ``super``, ``very``, ``todavía``...), a shouted word (all capitals),
  and exclamation marks make a sentiment stronger; after ``pero`` / ``but`` what follows
  counts more than what came before.
- Emoji and emoticons count on their own (😡 👎 negative, 😊 🙏 👍 ❤️ positive).

The valences add up to a raw total, which ``raw / sqrt(raw² + 15)`` maps into (-1, 1). Labels:
negative at or below -0.2, positive at or above 0.2, neutral between.

Stored by an outbox consumer on ``message.received``, inside the relay's transaction (see
``core.outbox``): the inbound path stays one statement, and the score exists before routing's
``run_due`` (which the worker calls after the relay) puts the conversation in line. Only
inbound messages of kind ``message`` with some text are scored; a redelivered event changes
nothing (``ON CONFLICT DO NOTHING``).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache, lru_cache
from typing import Any, Literal

from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from vader import SentimentIntensityAnalyzer

from hilos.analytics.models import MessageSentiment
from hilos.analytics.review_models import Mention, Review
from hilos.conversations.models import Message
from hilos.core.clock import now
from hilos.core.db import one_of
from hilos.core.errors import Invalid
from hilos.core.models import OutboxEvent
from hilos.core.outbox import register_consumer
from hilos.core.tenancy import TenantContext
from hilos.customers.service import insert_for

Label = Literal["negative", "neutral", "positive"]
LABELS: tuple[Label, ...] = ("negative", "neutral", "positive")
Language = Literal["es", "en"]
NEGATIVE_AT = -0.2
POSITIVE_AT = 0.2
_ALPHA = 15.0
# VADER rates words from -4 to 4; our lexicon from -3 to 3.
_VADER_SCALE = 0.75

# --- the lexicon ------------------------------------------------------------------------------
# Valence → (Spanish words, English words), written with accents for the reader and compared
# without them. A word listed with valence 0 is neutral on purpose: it stops a fallback
# (``buenas`` the greeting is not ``buena``) and, in English, VADER's rating (``please``,
# ``help`` and ``yes`` are how a request reads, not a feeling).

_WORDS: dict[float, tuple[str, str]] = {
    -3.0: (
        """
        estafa estafas estafador estafadores timo timador fraude fraudulento robo robado
        ladrón ladrones vergüenza vergonzoso indignante indignado horrible horroroso horrendo
        espantoso pésimo fatal asco asqueroso repugnante lamentable deplorable inaceptable
        intolerable impresentable desastroso basura mierda odio odiar detesto nefasto
        patético engaño engañado mentirosos harto furioso cabreado cabreo rabia chapuza
        """,
        """
        scam scammer scammers fraud fraudulent disgusting disgrace disgraceful shameful
        horrible horrendous terrible awful appalling atrocious outrageous unacceptable
        pathetic worst hate hated furious livid rubbish garbage crap shit ripoff robbed
        cheated liars dreadful
        """,
    ),
    -2.5: (
        """
        desastre pesadilla ridículo engañar mentira incompetente incompetencia abuso abusivo
        tercermundista cachondeo inútil
        """,
        """
        nightmare disaster ridiculous incompetent useless lying lies stolen theft sucks suck
        lousy hopeless
        """,
    ),
    -2.0: (
        """
        mal malo roto defectuoso estropeado dañado averiado decepción decepcionado
        decepcionante enfadado enfado molesto disgustado frustrado frustrante sucio falso
        desesperado caos caótico incumplido ignorado ignoran injusto injusticia peligroso
        deficiente insatisfecho descontento abogado denuncia denunciar peor desgracia
        """,
        """
        bad broken damaged defective faulty angry annoyed annoying upset frustrated
        frustrating disappointed disappointing disappointment rude unhelpful unhappy
        dissatisfied overpriced dirty ignored ignoring waste mess chaos fail failed failure
        fails misleading unfair fake shame embarrassing lawyer sue cheat
        """,
    ),
    -1.5: (
        """
        queja quejarme retraso retrasado perdido triste pena imposible grave cansado
        desesperante
        """,
        """
        slow late delayed delay lost wrong complaint complain sad confusing impossible
        mediocre
        """,
    ),
    -1.0: (
        """
        problema fallo falla error reclamación reclamar demora lento caro preocupado
        molestia lamentablemente desgraciadamente
        """,
        "problem error expensive worried concerned unfortunately confused",
    ),
    0.0: (
        "buenas devolución devolver reembolso cambio ayuda hola vale",
        "refund return exchange help hello ok okay please yes",
    ),
    1.0: ("funciona correcto tranquilo gran fiel confianza", "works working fine cheers"),
    1.5: (
        "bueno bien rápido útil ayudado profesional cariño chulo mejor puntual rapidez",
        "good nice kind fast quick smooth easy professional polite reliable liked",
    ),
    2.0: (
        """
        gracias agradecido agradezco contento satisfecho amable eficaz eficiente resuelto
        solucionado arreglado recomiendo recomendable gusta gustó atento majo simpático guay
        top ideal increíble bravo felicitar amabilidad agradable adoro
        """,
        """
        thanks thank thankful grateful appreciate appreciated happy glad pleased satisfied
        helpful friendly efficient solved resolved fixed recommend recommended enjoy
        enjoyed cool incredible beautiful
        """,
    ),
    2.5: (
        "feliz perfectamente estupendamente enhorabuena felicidades",
        "great best lovely impressed congratulations",
    ),
    3.0: (
        """
        excelente perfecto genial maravilloso fantástico estupendo magnífico encantado
        encanta encantó espectacular impecable extraordinario sobresaliente brillante
        fenomenal
        """,
        """
        excellent perfect amazing awesome fantastic wonderful brilliant outstanding superb
        love loved delighted
        """,
    ),
}

_PHRASES: dict[float, tuple[str, str]] = {
    -3.0: (
        """
        tomadura de pelo | hasta las narices | no vuelvo a comprar | me han timado |
        hoja de reclamaciones | libro de reclamaciones
        """,
        "fed up | rip off",
    ),
    -2.5: (
        """
        no funciona | no me funciona | sigue sin funcionar | no sirve | perdida de tiempo |
        nadie me responde | nadie contesta | nadie me contesta | nunca mas
        """,
        """
        not working | does not work | do not work | never arrived | never received |
        waste of time | is a joke | nobody answers | no one answers
        """,
    ),
    -2.0: (
        """
        no ha llegado | no me ha llegado | no han llegado | no haya llegado | no llega |
        no llego | no me llega | no me llego | sigo sin | sigo esperando |
        sin respuesta | ni caso | otra vez lo mismo
        """,
        """
        has not arrived | have not received | still waiting | no answer | no response |
        no reply | still nothing
        """,
    ),
    -1.5: (
        "ya era hora | llega tarde | llego tarde | hablar con un responsable | "
        "hablar con un supervisor",
        "do not like | did not like | speak to a manager | talk to a manager",
    ),
    0.0: (
        """
        buenos dias | buenas tardes | buenas noches | no gracias | disculpe las molestias |
        perdon por las molestias | de nada | por favor
        """,
        """
        good morning | good afternoon | good evening | good night | no thanks | thank god |
        would like | would love
        """,
    ),
    1.0: ("no pasa nada | no se preocupe | no hay problema", "no problem | no worries"),
    1.5: ("vale la pena", "worth it"),
    2.5: ("muchas gracias | buen trabajo", "thank you | thanks a lot | many thanks | well done"),
    3.0: ("mil gracias | de lujo | me encanta", "love it"),
}

_NEGATORS_TEXT = """
    no nunca jamás ni tampoco nada sin nadie ningún ninguna ninguno
    not never nothing without nobody none neither nor cannot cant dont doesnt didnt isnt
    wasnt arent werent wont havent hasnt
"""
# Word → how much stronger it makes the next sentiment within three words.
_INTENSIFYING: dict[float, str] = {
    1.5: """
        muy super súper tan demasiado totalmente completamente absolutamente realmente
        increíblemente sumamente extremadamente mega very really so extremely totally
        completely absolutely incredibly truly too such
    """,
    1.25: "todavía aún bastante still quite pretty",
}
_CONTRASTS = frozenset({"pero", "but", "however"})
_SCOPE = 3
_SHOUTED = 1.5
_SUPERLATIVE = 1.5
# A negated complaint is mildly positive ("no está mal"); negated praise is negative.
_NEGATED_NEGATIVE = -0.5
_NEGATED_POSITIVE = -0.75
# English contractions spelled out, so that phrases and VADER's lexicon see the words.
_CONTRACTIONS = {"ll": "will", "d": "would", "re": "are", "ve": "have", "m": "am"}

# Words that say which language a text is in: frequent function words that the other
# language does not use (``no``, ``me``, ``a`` are both). Letters such as ñ, ¿ and accented
# vowels count for Spanish.
_SPANISH_TEXT = """
    el la los las del de que y en un una unos unas por para con mi mis tu su sus se lo le les
    es son está están estoy ha han hay muy pero ya sin nada hola gracias cuando donde como
    porque pedido tienda quiero necesito al esta este esto eso todo
"""
_ENGLISH_TEXT = """
    the and is are was were be been my your you it its i to for of with this that have has
    had not do does did can could will would please thanks thank hi hello what where when how
    why there here from at on in an our we they them order store am just
"""
_SPANISH_LETTERS = re.compile(r"[ñáéíóú¿¡]", re.IGNORECASE)

_EMOJI: dict[str, float] = {
    **dict.fromkeys("😡🤬", -3.0),
    "😠": -2.5,
    **dict.fromkeys("👎😤😭💩😩😫", -2.0),
    **dict.fromkeys("😞😢🙄😒☹🙁", -1.5),
    **dict.fromkeys("😕😑", -1.0),
    **dict.fromkeys("😍🥰❤💖", 3.0),
    "💕": 2.5,
    **dict.fromkeys("😊😀😃😄😁😘🤗👍👏💯🎉", 2.0),
    **dict.fromkeys("🙏👌", 1.5),
    **dict.fromkeys("🙂😉✨", 1.0),
}
_SMILEY = re.compile(r"(?<!\S)(?::-?\)+|:-?d|=\)|\(:)(?!\S)", re.IGNORECASE)
_FROWN = re.compile(r"(?<!\S)(?::-?\(+|:'\(|\):)(?!\S)")
_TOKEN = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*|[.,;:!?¡¿()\n]")
_STRETCHED = re.compile(r"(.)\1{2,}")
_SUPERLATIVE_END = re.compile(r"^(\w{2,}?)[ií]sim[oa]s?$")


@lru_cache(maxsize=65_536)
def _plain(word: str) -> str:
    """Lower case, no accents, stretched letters squeezed: ``¡GRACIAAAS`` → ``gracias``.

    Cached: customers' words repeat, and normalising each one again was half of scoring."""
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _STRETCHED.sub(r"\1", bare)


_NEGATORS = frozenset(_plain(word) for word in _NEGATORS_TEXT.split())
_SPANISH_WORDS = frozenset(_plain(word) for word in _SPANISH_TEXT.split())
_ENGLISH_WORDS = frozenset(_plain(word) for word in _ENGLISH_TEXT.split())
_INTENSIFIERS = {
    _plain(word): factor for factor, text in _INTENSIFYING.items() for word in text.split()
}


@cache
def _lexicon() -> tuple[dict[str, float], dict[tuple[str, ...], float]]:
    words = {
        _plain(w): valence
        for valence, texts in _WORDS.items()
        for text in texts
        for w in text.split()
    }
    phrases = {
        tuple(_plain(w) for w in phrase.split()): valence
        for valence, texts in _PHRASES.items()
        for text in texts
        for phrase in text.split("|")
        if phrase.strip()
    }
    return words, phrases


@cache
def _phrase_starts() -> frozenset[str]:
    """The first words of the phrases: most words start none, and need no phrase lookups."""
    return frozenset(phrase[0] for phrase in _lexicon()[1])


@cache
def _vader_words() -> dict[str, float]:
    """VADER's English ratings of single words, on our scale (emoticons and phrases left out:
    ours has its own)."""
    lexicon = SentimentIntensityAnalyzer().lexicon
    return {word: rating * _VADER_SCALE for word, rating in lexicon.items() if word.isalpha()}


def _valence(word: str, words: dict[str, float], english: bool) -> float | None:
    """The word's valence, falling back from plurals, the feminine and superlatives, and in an
    English text to VADER's lexicon."""
    if word in words:
        return words[word]
    if english and word in _vader_words():
        return _vader_words()[word]
    candidates = []
    if len(word) > 4 and word.endswith("s"):
        candidates += [word[:-1], word[:-2]] if word.endswith("es") else [word[:-1]]
    candidates += [c[:-1] + "o" for c in (word, *candidates) if c.endswith("a")]
    for candidate in candidates:
        if candidate in words:
            return words[candidate]
    if superlative := _SUPERLATIVE_END.match(word):
        stem = superlative.group(1)
        for candidate in (stem + "o", stem + "e", stem):
            if candidate in words:
                return words[candidate] * _SUPERLATIVE
    return None


@dataclass(frozen=True, slots=True)
class _Word:
    text: str
    shouted: bool


def _words_of(token: str) -> list[str]:
    """A token's words with English contractions spelled out: ``doesn't`` → does, not;
    ``I'll`` → I, will; other apostrophes go (``it's`` → its, ``Ann's`` → Anns)."""
    if token.lower().endswith("n't"):
        return [token[:-3], "not"]
    stem, _, suffix = token.rpartition("'")
    if stem and suffix.lower() in _CONTRACTIONS:
        return [stem.replace("'", ""), _CONTRACTIONS[suffix.lower()]]
    return [token.replace("'", "")]


def _clauses(text: str) -> list[list[_Word | str]]:
    """Words split into clauses at punctuation; ``"but"``-like words kept as markers."""
    clauses: list[list[_Word | str]] = [[]]
    for token in _TOKEN.findall(text):
        if not token[0].isalpha():
            if clauses[-1]:
                clauses.append([])
            continue
        shouted = len(token) >= 3 and token.isupper()
        for part in _words_of(token):
            plain = _plain(part)
            clauses[-1].append(plain if plain in _CONTRASTS else _Word(plain, shouted))
    return clauses


def language_of(text: str) -> Language | None:
    """``"es"`` or ``"en"`` when the text's common words tell which, else ``None``."""
    spanish = english = 0
    for token in _TOKEN.findall(text.replace("’", "'")):
        word = _plain(token.replace("'", ""))
        spanish += word in _SPANISH_WORDS or bool(_SPANISH_LETTERS.search(token))
        english += word in _ENGLISH_WORDS or "'" in token
    if spanish > english:
        return "es"
    if english > spanish:
        return "en"
    return None


def score(text: str, *, language: str | None = None) -> float:
    """How the text sounds, from -1 (furious) to 1 (delighted); 0 when nothing tells.

    ``language`` (``"en"``, ``"es"``...) is what the sender said it is; without it the text's
    words decide (``language_of``). Only an English text uses VADER's lexicon.
    """
    words, phrases = _lexicon()
    phrase_starts = _phrase_starts()
    text = text.replace("’", "'")
    english = (language or language_of(text) or "").lower().startswith("en")
    raw = sum(_EMOJI.get(ch, 0.0) for ch in text)
    raw += 2.0 * len(_SMILEY.findall(text)) - 2.0 * len(_FROWN.findall(text))
    text = _FROWN.sub(" ", _SMILEY.sub(" ", text))
    hits: list[float] = []
    contrast_at: int | None = None
    for clause in _clauses(text):
        negated_until = boosted_until = -1
        boost = 1.0
        i = 0
        while i < len(clause):
            item = clause[i]
            if isinstance(item, str):  # pero / but
                contrast_at = len(hits)
                i += 1
                continue
            valence: float | None = None
            length = 1
            if item.text in phrase_starts:
                for n in (4, 3, 2):
                    key = tuple(w.text if isinstance(w, _Word) else w for w in clause[i : i + n])
                    if len(key) == n and key in phrases:
                        valence, length = phrases[key], n
                        break
            if valence is None:
                if item.text in _NEGATORS:
                    negated_until = i + _SCOPE
                    i += 1
                    continue
                if item.text in _INTENSIFIERS:
                    boost, boosted_until = _INTENSIFIERS[item.text], i + _SCOPE
                    i += 1
                    continue
                valence = _valence(item.text, words, english)
            if valence:
                if item.shouted:
                    valence *= _SHOUTED
                if i <= boosted_until:
                    valence *= boost
                    boosted_until = -1
                if i <= negated_until:
                    valence *= _NEGATED_NEGATIVE if valence < 0 else _NEGATED_POSITIVE
                hits.append(valence)
            i += length
    if contrast_at is not None:
        hits = [h * 0.5 for h in hits[:contrast_at]] + [h * 1.5 for h in hits[contrast_at:]]
    raw += sum(hits)
    raw *= 1 + 0.15 * min(text.count("!"), 3)
    value = raw / math.sqrt(raw * raw + _ALPHA)
    return round(max(-1.0, min(1.0, value)), 3)


def label_of(value: float) -> Label:
    if value <= NEGATIVE_AT:
        return "negative"
    if value >= POSITIVE_AT:
        return "positive"
    return "neutral"


# --- storing and reading ----------------------------------------------------------------------

_SENTIMENTS = MessageSentiment.__table__
assert isinstance(_SENTIMENTS, Table)


async def consume(session: AsyncSession, events: Sequence[OutboxEvent]) -> None:
    """The relay's consumer: score each newly received customer message, once."""
    received = {
        event.payload["message_id"]: event.payload
        for event in events
        if event.topic == "message.received" and isinstance(event.payload.get("message_id"), str)
    }
    if not received:
        return
    rows = (
        await session.execute(
            select(
                Message.id,
                Message.tenant_id,
                Message.conversation_id,
                Message.text,
                Message.sent_at,
            ).where(
                one_of(session.get_bind().dialect.name, Message.id, sorted(received)),
                Message.direction == "inbound",
                Message.kind == "message",
            )
        )
    ).all()
    moment = now()
    values = []
    for row in rows:
        payload = received[row.id]
        customer_id = payload.get("customer_id")
        if not row.text.strip() or not isinstance(customer_id, str):
            continue
        value = score(row.text)
        channel_kind = payload.get("channel_kind")
        values.append(
            {
                "message_id": row.id,
                "tenant_id": row.tenant_id,
                "conversation_id": row.conversation_id,
                "customer_id": customer_id,
                "channel_kind": channel_kind if isinstance(channel_kind, str) else None,
                "score": value,
                "label": label_of(value),
                "sent_at": row.sent_at,
                "created_at": moment,
            }
        )
    if values:
        dialect = session.get_bind().dialect.name
        await session.execute(
            insert_for(dialect, _SENTIMENTS).on_conflict_do_nothing(index_elements=["message_id"]),
            values,
        )


register_consumer("sentiment", topics=("message.received",), consume=consume)


async def latest_of(
    session: AsyncSession, tenant: TenantContext, conversation_ids: Sequence[str]
) -> dict[str, float]:
    """The score of each conversation's latest scored customer message (absent: none yet)."""
    if not conversation_ids:
        return {}
    latest = (
        select(func.max(_SENTIMENTS.c.message_id))
        .where(
            _SENTIMENTS.c.tenant_id == tenant.id,
            _SENTIMENTS.c.conversation_id.in_(list(conversation_ids)),
        )
        .group_by(_SENTIMENTS.c.conversation_id)
    )
    rows = await session.execute(
        select(_SENTIMENTS.c.conversation_id, _SENTIMENTS.c.score).where(
            _SENTIMENTS.c.message_id.in_(latest)
        )
    )
    return {conversation_id: value for conversation_id, value in rows.all()}


@dataclass(slots=True)
class Tally:
    """Counts of labels, with the sums that averages need; ``add`` one group at a time."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LABELS, 0))
    score_sum: float = 0.0
    rating_sum: int = 0
    rated: int = 0

    def add(
        self, label: str, count: int, score_sum: float, rating_sum: int = 0, rated: int = 0
    ) -> None:
        if label in self.counts:
            self.counts[label] += count
            self.score_sum += score_sum
            self.rating_sum += rating_sum
            self.rated += rated

    def merge(self, other: Tally) -> None:
        for label, count in other.counts.items():
            self.counts[label] += count
        self.score_sum += other.score_sum
        self.rating_sum += other.rating_sum
        self.rated += other.rated

    @property
    def count(self) -> int:
        return sum(self.counts.values())

    def as_dict(self, *, ratings: bool = False) -> dict[str, Any]:
        count = self.count
        result: dict[str, Any] = {
            "count": count,
            **self.counts,
            "shares": {
                label: round(self.counts[label] / count, 4) if count else None for label in LABELS
            },
            "average_score": round(self.score_sum / count, 3) if count else None,
        }
        if ratings:
            result["average_rating"] = (
                round(self.rating_sum / self.rated, 2) if self.rated else None
            )
            result["rated"] = self.rated
        return result


async def _tally(session: AsyncSession, statement: Any) -> Tally:
    """The tally of a ``(label, count, sum of scores)`` query grouped by label."""
    tally = Tally()
    for label, count, summed in (await session.execute(statement)).all():
        tally.add(label, int(count), float(summed or 0.0))
    return tally


async def sentiment_summary(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    start: datetime,
    end: datetime,
    channel: str | None = None,
) -> dict[str, Any]:
    """How customers sounded between ``start`` (included) and ``end`` (excluded).

    ``{"messages": ..., "reviews": ..., "mentions": ..., "overall": ...}``, each
    ``{count, negative, neutral, positive, shares: {label: share}, average_score}``: inbound
    messages by when they were sent, reviews and mentions by when they were written.
    ``channel`` keeps the messages of that channel kind (``whatsapp``...), the reviews of that
    source (``google``, ``web``...) and the mentions of that network (``instagram``...). A
    share or an average is ``None`` when there is nothing to share out.
    """
    if end <= start:
        raise Invalid("the end of the range must come after its start", field="to")
    s = _SENTIMENTS.c
    messages = select(s.label, func.count(), func.sum(s.score)).where(
        s.tenant_id == tenant.id, s.sent_at >= start, s.sent_at < end
    )
    reviews = select(Review.label, func.count(), func.sum(Review.score)).where(
        Review.tenant_id == tenant.id, Review.created_at >= start, Review.created_at < end
    )
    mentions = select(Mention.label, func.count(), func.sum(Mention.score)).where(
        Mention.tenant_id == tenant.id, Mention.created_at >= start, Mention.created_at < end
    )
    if channel is not None:
        messages = messages.where(s.channel_kind == channel)
        reviews = reviews.where(Review.source == channel)
        mentions = mentions.where(Mention.network == channel)
    tallies = {
        "messages": await _tally(session, messages.group_by(s.label)),
        "reviews": await _tally(session, reviews.group_by(Review.label)),
        "mentions": await _tally(session, mentions.group_by(Mention.label)),
    }
    overall = Tally()
    for tally in tallies.values():
        overall.merge(tally)
    return {
        **{name: tally.as_dict() for name, tally in tallies.items()},
        "overall": overall.as_dict(),
    }
