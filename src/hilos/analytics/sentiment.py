"""Sentiment of customers' messages: a score in [-1, 1] with a label, stored once per message.

What it owns: ``score`` (how a short customer message in Spanish or English sounds), the
``message_sentiments`` table that keeps it for each inbound message, the outbox consumer that
fills it, and ``latest_of`` (the latest score of each conversation, which routing adds to a
waiting conversation's priority).

Why our own scorer: no well-kept offline library covers Spanish without large machine-learning
dependencies. VADER and AFINN are English-only; the multilingual classifiers (pysentimiento and
the like) need PyTorch and model weights fetched from a hub, far too heavy for the inbound path
of a self-hosted platform and impossible offline. Customer-service messages are short and their
vocabulary is narrow (complaints, delays, thanks), so a lexicon does well enough to put an angry
customer first. The lexicon below is ours, written for customer service, not copied from any
other.

How a message is scored (the rules VADER made familiar, applied to both languages):

- Words are compared without accents or case, with letters stretched for emphasis squeezed
  back (``graciaaas``); Spanish plurals, the feminine and superlatives (``malísimo``) fall back
  to the word in the lexicon. Phrases come before words (``no funciona``, ``sigo sin``,
  ``still waiting``, ``thank you``), and greetings are neutral (``buenas tardes``).
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
from dataclasses import dataclass
from functools import cache
from typing import Literal

from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from hilos.analytics.models import MessageSentiment
from hilos.conversations.models import Message
from hilos.core.clock import now
from hilos.core.models import OutboxEvent
from hilos.core.outbox import register_consumer
from hilos.core.tenancy import TenantContext
from hilos.customers.service import insert_for

Label = Literal["negative", "neutral", "positive"]
NEGATIVE_AT = -0.2
POSITIVE_AT = 0.2
_ALPHA = 15.0

# --- the lexicon ------------------------------------------------------------------------------
# Valence → words (written with accents for the reader; compared without them). A word listed
# with valence 0 is neutral on purpose: it stops a fallback (``buenas`` the greeting is not
# ``buena``).

_WORDS: dict[float, str] = {
    -3.0: """
        estafa estafas estafador estafadores timo timador fraude fraudulento robo robado
        ladrón ladrones vergüenza vergonzoso indignante indignado horrible horroroso horrendo
        espantoso pésimo fatal asco asqueroso repugnante lamentable deplorable inaceptable
        intolerable impresentable desastroso basura mierda odio odiar detesto nefasto
        patético engaño engañado mentirosos harto furioso cabreado cabreo rabia chapuza
        scam scammer scammers fraud fraudulent disgusting disgrace disgraceful shameful
        horrible horrendous terrible awful appalling atrocious outrageous unacceptable
        pathetic worst hate hated furious livid rubbish garbage crap shit ripoff robbed
        cheated liars dreadful
    """,
    -2.5: """
        desastre pesadilla ridículo engañar mentira incompetente incompetencia abuso abusivo
        tercermundista cachondeo inútil
        nightmare disaster ridiculous incompetent useless lying lies stolen theft sucks suck
        lousy hopeless
    """,
    -2.0: """
        mal malo roto defectuoso estropeado dañado averiado decepción decepcionado
        decepcionante enfadado enfado molesto disgustado frustrado frustrante sucio falso
        desesperado caos caótico incumplido ignorado ignoran injusto injusticia peligroso
        deficiente insatisfecho descontento abogado denuncia denunciar peor desgracia
        bad broken damaged defective faulty angry annoyed annoying upset frustrated
        frustrating disappointed disappointing disappointment rude unhelpful unhappy
        dissatisfied overpriced dirty ignored ignoring waste mess chaos fail failed failure
        fails misleading unfair fake shame embarrassing lawyer sue cheat
    """,
    -1.5: """
        queja quejarme retraso retrasado perdido triste pena imposible grave cansado
        desesperante
        slow late delayed delay lost wrong complaint complain sad confusing impossible
        mediocre
    """,
    -1.0: """
        problema fallo falla error reclamación reclamar demora lento caro preocupado
        molestia lamentablemente desgraciadamente
        problem error expensive worried concerned unfortunately confused
    """,
    0.0: """
        buenas devolución devolver reembolso cambio ayuda hola vale
        refund return exchange help hello ok okay
    """,
    1.0: """
        funciona correcto tranquilo gran fiel confianza
        works working fine cheers
    """,
    1.5: """
        bueno bien rápido útil ayudado profesional cariño chulo mejor puntual rapidez
        good nice kind fast quick smooth easy professional polite reliable liked
    """,
    2.0: """
        gracias agradecido agradezco contento satisfecho amable eficaz eficiente resuelto
        solucionado arreglado recomiendo recomendable gusta gustó atento majo simpático guay
        top ideal increíble bravo felicitar amabilidad agradable adoro
        thanks thank thankful grateful appreciate appreciated happy glad pleased satisfied
        helpful friendly efficient solved resolved fixed recommend recommended enjoy
        enjoyed cool incredible beautiful
    """,
    2.5: """
        feliz perfectamente estupendamente enhorabuena felicidades
        great best lovely impressed congratulations
    """,
    3.0: """
        excelente perfecto genial maravilloso fantástico estupendo magnífico encantado
        encanta encantó espectacular impecable extraordinario sobresaliente brillante
        fenomenal
        excellent perfect amazing awesome fantastic wonderful brilliant outstanding superb
        love loved delighted
    """,
}

_PHRASES: dict[float, str] = {
    -3.0: """
        tomadura de pelo | hasta las narices | no vuelvo a comprar | me han timado |
        hoja de reclamaciones | libro de reclamaciones | fed up | rip off
    """,
    -2.5: """
        no funciona | no me funciona | sigue sin funcionar | no sirve | perdida de tiempo |
        nadie me responde | nadie contesta | nadie me contesta | nunca mas |
        not working | does not work | do not work | never arrived | never received |
        waste of time | is a joke | nobody answers | no one answers
    """,
    -2.0: """
        no ha llegado | no me ha llegado | no han llegado | no haya llegado | no llega |
        no llego | no me llega | no me llego | sigo sin | sigo esperando |
        sin respuesta | ni caso | otra vez lo mismo |
        has not arrived | have not received | still waiting | no answer | no response |
        no reply | still nothing
    """,
    -1.5: """
        ya era hora | llega tarde | llego tarde | hablar con un responsable |
        hablar con un supervisor | do not like | did not like | speak to a manager |
        talk to a manager
    """,
    0.0: """
        buenos dias | buenas tardes | buenas noches | no gracias | disculpe las molestias |
        perdon por las molestias | de nada | por favor |
        good morning | good afternoon | good evening | good night | no thanks | thank god
    """,
    1.0: """
        no pasa nada | no se preocupe | no hay problema | no problem | no worries
    """,
    1.5: "vale la pena | worth it",
    2.5: """
        muchas gracias | buen trabajo | thank you | thanks a lot | many thanks | well done
    """,
    3.0: "mil gracias | de lujo | me encanta | love it",
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


def _plain(word: str) -> str:
    """Lower case, no accents, stretched letters squeezed: ``¡GRACIAAAS`` → ``gracias``."""
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _STRETCHED.sub(r"\1", bare)


_NEGATORS = frozenset(_plain(word) for word in _NEGATORS_TEXT.split())
_INTENSIFIERS = {
    _plain(word): factor for factor, text in _INTENSIFYING.items() for word in text.split()
}


@cache
def _lexicon() -> tuple[dict[str, float], dict[tuple[str, ...], float]]:
    words = {_plain(w): valence for valence, text in _WORDS.items() for w in text.split()}
    phrases = {
        tuple(_plain(w) for w in phrase.split()): valence
        for valence, text in _PHRASES.items()
        for phrase in text.split("|")
        if phrase.strip()
    }
    return words, phrases


def _valence(word: str, words: dict[str, float]) -> float | None:
    """The word's valence, falling back from plurals, the feminine and superlatives."""
    if word in words:
        return words[word]
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


def _clauses(text: str) -> list[list[_Word | str]]:
    """Words split into clauses at punctuation; ``"but"``-like words kept as markers."""
    clauses: list[list[_Word | str]] = [[]]
    for token in _TOKEN.findall(text):
        if not token[0].isalpha():
            if clauses[-1]:
                clauses.append([])
            continue
        shouted = len(token) >= 3 and token.isupper()
        # "doesn't" is "does not"; other apostrophes go ("it's" → "its").
        negated = token.lower().endswith("n't")
        for part in [token[:-3], "not"] if negated else [token.replace("'", "")]:
            plain = _plain(part)
            clauses[-1].append(plain if plain in _CONTRASTS else _Word(plain, shouted))
    return clauses


def score(text: str) -> float:
    """How the message sounds, from -1 (furious) to 1 (delighted); 0 when nothing tells."""
    words, phrases = _lexicon()
    text = text.replace("’", "'")
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
                valence = _valence(item.text, words)
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
    customers = {
        event.payload["message_id"]: event.payload.get("customer_id")
        for event in events
        if event.topic == "message.received" and isinstance(event.payload.get("message_id"), str)
    }
    if not customers:
        return
    rows = (
        await session.execute(
            select(Message.id, Message.tenant_id, Message.conversation_id, Message.text).where(
                Message.id.in_(sorted(customers)),
                Message.direction == "inbound",
                Message.kind == "message",
            )
        )
    ).all()
    moment = now()
    values = []
    for row in rows:
        customer_id = customers[row.id]
        if not row.text.strip() or not isinstance(customer_id, str):
            continue
        value = score(row.text)
        values.append(
            {
                "message_id": row.id,
                "tenant_id": row.tenant_id,
                "conversation_id": row.conversation_id,
                "customer_id": customer_id,
                "score": value,
                "label": label_of(value),
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
