"""The probabilistic matching engine: which profiles may be one person, and how sure we are.

Pure Python, no database, no I/O, deterministic. The product (``hilos.matching.service`` and
the batch de-duplication) feeds it ``MatchRecord``s and stores what it returns.

**The model** is Fellegi–Sunter: each comparison (given name, surnames, birth date, postcode,
street, city, phone, email, national id) puts a pair of records in one of a few ordered levels
("exact", "close", "swapped", …, "different"); a level's weight is ``log2(m / u)``, where ``m``
is the probability of that level for two records of the same person and ``u`` for two records
of different people. A pair's match weight is the prior (log2 odds that two random records
match) plus the weights of its levels; its probability is ``2**w / (1 + 2**w)``. A value missing
on either side weighs nothing. Exact agreement on a name, postcode or city is adjusted by how
common the value is (term frequencies): "García" agreeing says less than "Zubizarreta".

**One rule on top of the sum: a birth-date conflict leaves the decision to a person.**
Fellegi–Sunter multiplies the evidence as if independent, but a household shares surnames,
address and phone, and a father and son may share the given name too; all that agreement is
one fact (same family), not five. So when both birth dates are known and they are "different"
(not a typo, not day and month swapped) and at least ``MatchModel.generation_years`` apart,
the pair's weight is capped at ``MatchModel.conflict_cap`` (probability 0.9) and its evidence
holds a ``birth_date``/``conflict`` item (``has_conflict``). The product never merges such a
pair on its own, whatever the tenant's automatic threshold: it can only be a suggestion that a
person accepts or rejects. Not lower than that: the same evidence is also what a mistyped
birth date looks like (FEBRL replaces about 4 % of birth dates with an unrelated one, and so do
real forms), and a person who sees "born 1958" and "born 1987" beside each other decides in a
second, where a pair scored away is lost.

**Training** (``train``) estimates ``u`` from random pairs (exact levels from the value
frequencies themselves, so rare agreements are not left to sampling luck) and ``m`` by
expectation maximisation over the blocked candidate pairs, with the non-match distribution of
those pairs estimated alongside (blocking makes non-matches agree far more often than random
pairs do, so holding ``u`` fixed there would bias ``m``); the prior comes from the share of
matches EM finds among the candidates. It is seeded and deterministic.

**Blocking** (``blocking_keys``): several keys per record (postcode with the first letter of the
given name or surname, the sound of the first surname with the birth year, the sound of the
given name with the birth month, the birth date, the two name sounds, street and number,
phone, email, national id), so a typo in any one field still leaves another shared key; blocks
larger than ``max_block_size`` are skipped (at a million profiles "García" alone would be a
block of thousands).

**Why our own and not Splink.** Splink implements the same model on SQL engines (DuckDB here);
as a runtime dependency it brings DuckDB and pyarrow, runs every prediction as SQL over a data
frame (slow for the product's one-profile-at-a-time check), and its comparison library has no
Spanish name rules (Mª, two surnames in either order, particles, a missing second surname).
String distances come from ``rapidfuzz``; normalisation is in ``hilos.matching._text``.
``benchmarks/matching.py`` runs both on FEBRL.
"""

from __future__ import annotations

import functools
import math
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from rapidfuzz import fuzz
from rapidfuzz.distance import OSA, JaroWinkler

from hilos.matching import _text

__all__ = [
    "COMPARISONS",
    "Evidence",
    "LevelParams",
    "MatchModel",
    "MatchRecord",
    "ScoredPair",
    "blocking_keys",
    "candidate_pairs",
    "clear_caches",
    "cluster",
    "has_conflict",
    "score",
    "score_pairs",
    "train",
]

DEFAULT_MAX_BLOCK_SIZE = 200
MISSING = -1

_jw = JaroWinkler.normalized_similarity
_osa = OSA.distance


@dataclass(frozen=True, slots=True)
class MatchRecord:
    id: str
    given_name: str | None = None
    surnames: str | None = None
    full_name: str | None = None
    birth_date: date | None = None
    street: str | None = None
    postcode: str | None = None
    city: str | None = None
    phones: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    national_id: str | None = None


@dataclass(frozen=True, slots=True)
class Evidence:
    field: str
    level: str
    weight: float


@dataclass(frozen=True, slots=True)
class ScoredPair:
    left_id: str
    right_id: str
    match_weight: float
    probability: float
    evidence: tuple[Evidence, ...]


@dataclass(frozen=True, slots=True)
class LevelParams:
    level: str
    m: float
    u: float

    @property
    def weight(self) -> float:
        return math.log2(self.m / self.u)


# The comparisons and their levels, best first. The last level of each is "different".
LEVELS: dict[str, tuple[str, ...]] = {
    "given_name": ("exact", "close", "partial", "initial", "similar", "different"),
    "surnames": ("exact", "swapped", "close", "similar", "different"),
    "birth_date": ("exact", "swapped", "close", "same_year", "different"),
    "postcode": ("exact", "close", "area", "different"),
    "street": ("exact", "close", "same_street", "same_number", "similar", "different"),
    "city": ("exact", "close", "different"),
    "phone": ("exact", "close", "different"),
    "email": ("exact", "same_local", "close", "different"),
    "national_id": ("exact", "close", "similar", "different"),
}
COMPARISONS: tuple[str, ...] = tuple(LEVELS)
# Comparisons whose "exact" level is adjusted by the frequency of the agreed value.
TF_FIELDS: tuple[str, ...] = ("given_name", "surnames", "postcode", "city")

# Untrained parameters: (m, u) per level, chosen from experience with customer data. ``train``
# replaces them with estimates from the tenant's own records.
_DEFAULT_PARAMS: dict[str, tuple[tuple[float, float], ...]] = {
    "given_name": (
        (0.86, 0.01),
        (0.06, 0.003),
        (0.03, 0.002),
        (0.02, 0.004),
        (0.02, 0.03),
        (0.01, 0.951),
    ),
    "surnames": ((0.84, 0.002), (0.03, 0.00005), (0.09, 0.001), (0.03, 0.02), (0.01, 0.977)),
    "birth_date": (
        (0.9, 0.00005),
        (0.01, 0.000005),
        (0.07, 0.001),
        (0.01, 0.012),
        (0.01, 0.987),
    ),
    "postcode": ((0.9, 0.002), (0.04, 0.004), (0.03, 0.05), (0.03, 0.944)),
    "street": (
        (0.7, 0.0002),
        (0.15, 0.0005),
        (0.03, 0.002),
        (0.03, 0.02),
        (0.04, 0.01),
        (0.05, 0.9673),
    ),
    "city": ((0.85, 0.05), (0.07, 0.01), (0.08, 0.94)),
    "phone": ((0.6, 0.00001), (0.1, 0.00002), (0.3, 0.99997)),
    "email": ((0.7, 0.00001), (0.05, 0.0001), (0.05, 0.00005), (0.2, 0.99984)),
    "national_id": ((0.95, 0.0000001), (0.03, 0.000005), (0.01, 0.00005), (0.01, 0.9999449)),
}
DEFAULT_PRIOR = 1e-5
# log2 odds of 0.9: a conflicting pair is at most a suggestion (see the module docstring).
DEFAULT_CONFLICT_CAP = math.log2(9.0)
CONFLICT = "conflict"
DEFAULT_GENERATION_YEARS = 12
_MIN_PROBABILITY = 1e-9


class MatchModel:
    """Fellegi–Sunter m/u parameters per comparison level, plus the prior.

    ``prior``: probability that two random records are the same person. ``term_frequencies``:
    per TF field, the share of records holding each common (folded) value; ``tf_rest`` the
    frequency to assume for a value not in the table. ``conflict_cap`` and
    ``generation_years``: the birth-date veto (see the module docstring).
    """

    __slots__ = (
        "_compiled",
        "conflict_cap",
        "generation_years",
        "levels",
        "prior",
        "term_frequencies",
        "tf_rest",
        "training",
    )

    def __init__(
        self,
        *,
        levels: Mapping[str, Sequence[LevelParams]],
        prior: float,
        term_frequencies: Mapping[str, Mapping[str, float]] | None = None,
        tf_rest: Mapping[str, float] | None = None,
        conflict_cap: float | None = DEFAULT_CONFLICT_CAP,
        generation_years: int = DEFAULT_GENERATION_YEARS,
        training: Mapping[str, Any] | None = None,
    ) -> None:
        for name, expected in LEVELS.items():
            got = tuple(p.level for p in levels.get(name, ()))
            if got != expected:
                raise ValueError(f"comparison {name!r} needs levels {expected}, got {got}")
            for p in levels[name]:
                if not (0 < p.m <= 1 and 0 < p.u <= 1):
                    raise ValueError(f"{name}.{p.level}: m and u must be in (0, 1]")
        if not 0 < prior < 1:
            raise ValueError("prior must be in (0, 1)")
        self.levels = {name: tuple(levels[name]) for name in LEVELS}
        self.prior = prior
        self.term_frequencies = {k: dict(v) for k, v in (term_frequencies or {}).items()}
        self.tf_rest = dict(tf_rest or {})
        self.conflict_cap = conflict_cap
        self.generation_years = generation_years
        self.training = dict(training or {})
        self._compiled: _Compiled | None = None

    @classmethod
    def default(cls) -> MatchModel:
        levels = {
            name: tuple(
                LevelParams(level, m, u)
                for level, (m, u) in zip(LEVELS[name], _DEFAULT_PARAMS[name], strict=True)
            )
            for name in LEVELS
        }
        return cls(levels=levels, prior=DEFAULT_PRIOR)

    def weight(self, comparison: str, level: str) -> float:
        for params in self.levels[comparison]:
            if params.level == level:
                return params.weight
        raise KeyError(f"{comparison}.{level}")

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "prior": self.prior,
            "levels": {
                name: [{"level": p.level, "m": p.m, "u": p.u} for p in params]
                for name, params in self.levels.items()
            },
            "term_frequencies": self.term_frequencies,
            "tf_rest": self.tf_rest,
            "conflict_cap": self.conflict_cap,
            "generation_years": self.generation_years,
            "training": self.training,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MatchModel:
        if data.get("version") != 1:
            raise ValueError("unknown model version")
        cap = data.get("conflict_cap", DEFAULT_CONFLICT_CAP)
        levels = {
            name: tuple(LevelParams(str(p["level"]), float(p["m"]), float(p["u"])) for p in params)
            for name, params in data["levels"].items()
        }
        return cls(
            levels=levels,
            prior=float(data["prior"]),
            term_frequencies={
                name: {str(k): float(v) for k, v in table.items()}
                for name, table in data.get("term_frequencies", {}).items()
            },
            tf_rest={k: float(v) for k, v in data.get("tf_rest", {}).items()},
            conflict_cap=None if cap is None else float(cap),
            generation_years=int(data.get("generation_years", DEFAULT_GENERATION_YEARS)),
            training=dict(data.get("training", {})),
        )

    def _compile(self) -> _Compiled:
        if self._compiled is None:
            self._compiled = _Compiled(self)
        return self._compiled


class _Compiled:
    """A model's weights as lists, and the Evidence objects shared by every pair."""

    __slots__ = ("evidence", "exact_m", "prior_weight", "tf", "tf_cache", "tf_rest", "weights")

    def __init__(self, model: MatchModel) -> None:
        self.prior_weight = math.log2(model.prior / (1 - model.prior))
        self.weights = [[p.weight for p in model.levels[name]] for name in COMPARISONS]
        self.evidence = [
            [Evidence(name, p.level, p.weight) for p in model.levels[name]]
            + [Evidence(name, "missing", 0.0)]
            for name in COMPARISONS
        ]
        self.exact_m = {name: model.levels[name][0].m for name in TF_FIELDS}
        self.tf = model.term_frequencies
        self.tf_rest = model.tf_rest
        self.tf_cache: dict[tuple[str, str], Evidence] = {}

    def tf_evidence(self, name: str, value: str, index: int) -> Evidence:
        cached = self.tf_cache.get((name, value))
        if cached is not None:
            return cached
        table = self.tf.get(name)
        rest = self.tf_rest.get(name)
        if table is None or rest is None:
            evidence = self.evidence[index][0]
        else:
            # Names count word by word ("García López": how common García is, times López),
            # so two surnames are not a value of their own that the table rarely holds.
            words = value.split() if name in _TOKENISED_TF else [value]
            frequency = math.prod(table.get(word, rest) for word in words)
            weight = math.log2(self.exact_m[name] / max(frequency, 1e-12))
            evidence = Evidence(name, "exact", weight)
        if len(self.tf_cache) < 200_000:
            self.tf_cache[(name, value)] = evidence
        return evidence


_TOKENISED_TF = frozenset({"given_name", "surnames"})


# --- records prepared once ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Prepared:
    given: tuple[str, ...]
    given_s: str
    given_c: str
    given_set: frozenset[str]
    given_initials: str
    given_is_initials: bool
    surnames: tuple[str, ...]
    surnames_s: str
    surnames_c: str
    surnames_set: frozenset[str]
    dob: str
    year: int
    month: int
    day: int
    postcode: str
    street_name: str
    street_compact: str
    street_number: str
    city: str
    city_c: str
    phones: frozenset[str]
    phones9: frozenset[str]
    emails: frozenset[str]
    email_locals: frozenset[str]
    national_id: str


@functools.lru_cache(maxsize=200_000)
def _prepare(record: MatchRecord) -> _Prepared:
    """A record's folded fields (cached: training, blocking and scoring share them)."""
    given_text, surnames_text = record.given_name, record.surnames
    if record.full_name and not (given_text or surnames_text):
        given_text, surnames_text = _text.split_full_name(record.full_name)
    given = _text.name_tokens(given_text)
    surnames = _text.name_tokens(surnames_text)
    born = record.birth_date
    street_name, street_number = _text.street_parts(record.street)
    city = " ".join(_text.fold(record.city).split()) if record.city else ""
    phones = frozenset(p for p in (_text.phone_key(x) for x in record.phones) if len(p) >= 6)
    email_pairs = [_text.email_key(e) for e in record.emails if e and "@" in e]
    return _Prepared(
        given=given,
        given_s=" ".join(given),
        given_c="".join(given),
        given_set=frozenset(given),
        given_initials="".join(t[0] for t in given),
        given_is_initials=bool(given) and all(len(t) == 1 for t in given),
        surnames=surnames,
        surnames_s=" ".join(surnames),
        surnames_c="".join(surnames),
        surnames_set=frozenset(surnames),
        dob=born.strftime("%Y%m%d") if born else "",
        year=born.year if born else 0,
        month=born.month if born else 0,
        day=born.day if born else 0,
        postcode=_text.postcode_key(record.postcode),
        street_name=street_name,
        street_compact=street_name.replace(" ", ""),
        street_number=street_number,
        city=city,
        city_c=city.replace(" ", ""),
        phones=phones,
        phones9=frozenset(p[-9:] for p in phones),
        emails=frozenset(full for full, _ in email_pairs),
        email_locals=frozenset(local for _, local in email_pairs if local),
        national_id=_text.postcode_key(record.national_id),
    )


# --- comparisons -------------------------------------------------------------------------
# Each returns the index of its level in LEVELS[name], or MISSING.


def _given_level(a: _Prepared, b: _Prepared) -> int:
    a_c, b_c = a.given_c, b.given_c
    if not a_c or not b_c:
        return MISSING
    if a_c == b_c:
        return 0
    similarity = _jw(a_c, b_c)
    if len(a.given) > 1 or len(b.given) > 1:
        similarity = max(similarity, _jw(a.given_s, b.given_s))
    if similarity >= 0.92:
        return 1
    if a.given_set <= b.given_set or b.given_set <= a.given_set:
        return 2
    if (a.given_is_initials and b.given_initials.startswith(a.given_initials)) or (
        b.given_is_initials and a.given_initials.startswith(b.given_initials)
    ):
        return 3
    if similarity >= 0.8:
        return 4
    return 5


def _surnames_level(a: _Prepared, b: _Prepared) -> int:
    a_c, b_c = a.surnames_c, b.surnames_c
    if not a_c or not b_c:
        return MISSING
    if a_c == b_c:
        return 0
    x, y = a.surnames, b.surnames
    if len(x) >= 2 and len(y) >= 2 and a.surnames_set == b.surnames_set:
        return 1
    similarity = _jw(a_c, b_c)
    if similarity >= 0.92:
        return 2
    if len(x) != len(y):
        short, long_ = (a, b) if len(x) < len(y) else (b, a)
        # A missing second surname ("Fernández" / "Fernández Ruiz") is close, not different.
        if short.surnames_set <= long_.surnames_set or (
            _jw(short.surnames_c, long_.surnames[0]) >= 0.92
        ):
            return 2
    elif len(x) == 2 and _jw(x[0] + x[1], y[1] + y[0]) >= 0.92:
        return 1
    if a.surnames_set & b.surnames_set or similarity >= 0.8:
        return 3
    return 4


def _birth_level(a: _Prepared, b: _Prepared, generation: int) -> int:
    if not a.dob or not b.dob:
        return MISSING
    if a.dob == b.dob:
        return 0
    if a.year == b.year and a.month == b.day and a.day == b.month:
        return 1
    same = (a.year == b.year) + (a.month == b.month) + (a.day == b.day)
    if same == 2 and (a.year == b.year or abs(a.year - b.year) < generation):
        return 2
    if a.year == b.year:
        return 3
    return 4


def _postcode_level(a: str, b: str) -> int:
    if not a or not b:
        return MISSING
    if a == b:
        return 0
    if len(a) == len(b) and _osa(a, b) <= 1:
        return 1
    if a[:3] == b[:3]:
        return 2
    return 3


def _street_level(a: _Prepared, b: _Prepared) -> int:
    if not (a.street_name or a.street_number) or not (b.street_name or b.street_number):
        return MISSING
    numbers = a.street_number == b.street_number if a.street_number and b.street_number else None
    if a.street_name and b.street_name:
        if a.street_name == b.street_name and (
            numbers or (not a.street_number and not b.street_number)
        ):
            return 0
        similarity = max(
            fuzz.token_set_ratio(a.street_name, b.street_name),
            fuzz.ratio(a.street_compact, b.street_compact),
        )
    else:
        similarity = 0.0
    if similarity >= 88:
        return 2 if numbers is False else 1
    if numbers:
        return 3
    if similarity >= 70:
        return 4
    return 5


def _city_level(a: _Prepared, b: _Prepared) -> int:
    if not a.city or not b.city:
        return MISSING
    if a.city_c == b.city_c:
        return 0
    if _jw(a.city_c, b.city_c) >= 0.9:
        return 1
    return 2


def _phone_level(a: _Prepared, b: _Prepared) -> int:
    if not a.phones or not b.phones:
        return MISSING
    if a.phones & b.phones:
        return 0
    if a.phones9 & b.phones9:
        return 1
    return 2


def _email_level(a: _Prepared, b: _Prepared) -> int:
    if not a.emails or not b.emails:
        return MISSING
    if a.emails & b.emails:
        return 0
    if a.email_locals & b.email_locals:
        return 1
    if any(_osa(x, y) <= 1 for x in a.emails for y in b.emails):
        return 2
    return 3


def _national_id_level(a: str, b: str) -> int:
    if not a or not b:
        return MISSING
    if a == b:
        return 0
    distance = _osa(a, b)
    if distance <= 1:
        return 1
    if distance <= 2:
        return 2
    return 3


def _crossed(a: _Prepared, b: _Prepared) -> bool:
    """Whether b's given name and surnames were written in each other's place."""
    if not (a.given_c and a.surnames_c and b.given_c and b.surnames_c) or a.given_c == b.given_c:
        return False
    crossed = _jw(a.given_c, b.surnames_c) + _jw(a.surnames_c, b.given_c)
    if crossed < 1.8:
        return False
    return crossed > _jw(a.given_c, b.given_c) + _jw(a.surnames_c, b.surnames_c) + 0.2


@functools.lru_cache(maxsize=65_536)
def _swapped_names(p: _Prepared) -> _Prepared:
    """The record with its given name and surnames exchanged."""
    return replace(
        p,
        given=p.surnames,
        given_s=p.surnames_s,
        given_c=p.surnames_c,
        given_set=p.surnames_set,
        given_initials="".join(t[0] for t in p.surnames),
        given_is_initials=bool(p.surnames) and all(len(t) == 1 for t in p.surnames),
        surnames=p.given,
        surnames_s=p.given_s,
        surnames_c=p.given_c,
        surnames_set=p.given_set,
    )


def _compare(a: _Prepared, b: _Prepared, generation: int) -> tuple[int, ...]:
    """The level of every comparison for one pair (MISSING where a side has no value)."""
    if _crossed(a, b):
        b = _swapped_names(b)
    return (
        _given_level(a, b),
        _surnames_level(a, b),
        _birth_level(a, b, generation),
        _postcode_level(a.postcode, b.postcode),
        _street_level(a, b),
        _city_level(a, b),
        _phone_level(a, b),
        _email_level(a, b),
        _national_id_level(a.national_id, b.national_id),
    )


_BIRTH = COMPARISONS.index("birth_date")
_BIRTH_DIFFERENT = LEVELS["birth_date"].index("different")
_NATIONAL_ID = COMPARISONS.index("national_id")
_TF_VALUE: dict[int, Callable[[_Prepared], str]] = {
    COMPARISONS.index("given_name"): lambda p: p.given_s,
    COMPARISONS.index("surnames"): lambda p: p.surnames_s,
    COMPARISONS.index("postcode"): lambda p: p.postcode,
    COMPARISONS.index("city"): lambda p: p.city_c,
}


def _scored(
    model: MatchModel,
    compiled: _Compiled,
    left: MatchRecord,
    right: MatchRecord,
    a: _Prepared,
    b: _Prepared,
) -> ScoredPair:
    levels = _compare(a, b, model.generation_years)
    total = compiled.prior_weight
    evidence: list[Evidence] = []
    for index, level in enumerate(levels):
        if level == MISSING:
            continue
        if level == 0 and index in _TF_VALUE:
            item = compiled.tf_evidence(COMPARISONS[index], _TF_VALUE[index](a), index)
        else:
            item = compiled.evidence[index][level]
        total += item.weight
        evidence.append(item)
    cap = model.conflict_cap
    if (
        cap is not None
        and total > cap
        and levels[_BIRTH] == _BIRTH_DIFFERENT
        and abs(a.year - b.year) >= model.generation_years
        and levels[_NATIONAL_ID] not in (0, 1)
    ):
        evidence.append(Evidence("birth_date", CONFLICT, cap - total))
        total = cap
    return ScoredPair(left.id, right.id, total, _probability(total), tuple(evidence))


def has_conflict(pair: ScoredPair) -> bool:
    """Whether the pair's birth dates conflict: a person decides, never an automatic merge."""
    return any(item.level == CONFLICT for item in pair.evidence)


def _probability(weight: float) -> float:
    if weight > 60:
        return 1.0
    if weight < -60:
        return 0.0
    odds = math.pow(2.0, weight)
    return odds / (1.0 + odds)


def score(model: MatchModel, left: MatchRecord, right: MatchRecord) -> ScoredPair:
    """One pair's match weight, probability and the evidence behind it."""
    return _scored(model, model._compile(), left, right, _prepare(left), _prepare(right))


def score_pairs(
    model: MatchModel, records: Sequence[MatchRecord], pairs: Iterable[tuple[int, int]]
) -> list[ScoredPair]:
    """Score pairs of indices into ``records``; each record is normalised once."""
    compiled = model._compile()
    prepared: dict[int, _Prepared] = {}
    out: list[ScoredPair] = []
    for i, j in pairs:
        a = prepared.get(i)
        if a is None:
            a = prepared[i] = _prepare(records[i])
        b = prepared.get(j)
        if b is None:
            b = prepared[j] = _prepare(records[j])
        out.append(_scored(model, compiled, records[i], records[j], a, b))
    return out


def clear_caches() -> None:
    """Forget the normalised records and strings kept between calls (for timing runs)."""
    _prepare.cache_clear()
    _swapped_names.cache_clear()
    _text.fold.cache_clear()
    _text.phonetic.cache_clear()


# --- blocking ----------------------------------------------------------------------------


def _keys(p: _Prepared) -> list[str]:
    keys: list[str] = []
    first_given = p.given[0] if p.given else ""
    first_surname = p.surnames[0] if p.surnames else ""
    sound_given = _text.phonetic(first_given)
    sound_surname = _text.phonetic(first_surname)
    if p.postcode:
        if first_given:
            keys.append(f"pc:{p.postcode}|fn:{first_given[0]}")
        if first_surname:
            keys.append(f"pc:{p.postcode}|sn:{first_surname[0]}")
    if p.dob:
        keys.append(f"dob:{p.dob}")
        if sound_surname:
            keys.append(f"sx:{sound_surname}|dob:{p.year}")
        if sound_given:
            keys.append(f"gx:{sound_given}|dob:{p.dob[4:6]}")
    if sound_given:
        # One key per surname (two surnames in either order, or one of them missing, still
        # share one); sorted, so a given name and surname written in each other's place too.
        for surname in p.surnames[:2]:
            first, second = sorted((sound_given, _text.phonetic(surname)))
            keys.append(f"nx:{first}|{second}")
    if p.street_name and p.street_number:
        keys.append(f"st:{p.street_name[:6]}|{p.street_number}")
    keys.extend(f"ph:{phone}" for phone in sorted(p.phones9))
    keys.extend(f"em:{email}" for email in sorted(p.emails))
    if p.national_id:
        keys.append(f"id:{p.national_id}")
    return keys


def blocking_keys(record: MatchRecord) -> frozenset[str]:
    """Keys such that two records sharing any key are compared."""
    return frozenset(_keys(_prepare(record)))


def candidate_pairs(
    records: Sequence[MatchRecord],
    *,
    max_block_size: int = DEFAULT_MAX_BLOCK_SIZE,
    link_groups: Sequence[Hashable] | None = None,
) -> Iterator[tuple[int, int]]:
    """Indices (i < j) of pairs sharing a blocking key, each pair once; oversized blocks
    skipped. With ``link_groups`` (one label per record), only pairs from different groups
    (linking data set A to data set B)."""
    yield from _candidate_pairs([_prepare(r) for r in records], max_block_size, link_groups)


def _candidate_pairs(
    prepared: Sequence[_Prepared],
    max_block_size: int,
    link_groups: Sequence[Hashable] | None,
) -> Iterator[tuple[int, int]]:
    blocks: dict[str, list[int]] = defaultdict(list)
    for index, p in enumerate(prepared):
        for key in dict.fromkeys(_keys(p)):
            blocks[key].append(index)
    n = len(prepared)
    seen: set[int] = set()
    for members in blocks.values():
        if len(members) < 2 or len(members) > max_block_size:
            continue
        for x, i in enumerate(members):
            for j in members[x + 1 :]:
                if link_groups is not None and link_groups[i] == link_groups[j]:
                    continue
                code = i * n + j
                if code not in seen:
                    seen.add(code)
                    yield i, j


# --- training ----------------------------------------------------------------------------


def train(
    records: Sequence[MatchRecord],
    *,
    seed: int = 0,
    pairs: Iterable[tuple[int, int]] | None = None,
    link_groups: Sequence[Hashable] | None = None,
    max_block_size: int = DEFAULT_MAX_BLOCK_SIZE,
    u_sample: int = 30_000,
    max_iterations: int = 60,
    tf_table_size: int = 5000,
    base: MatchModel | None = None,
) -> MatchModel:
    """Estimate u by random sampling, m by EM over blocked pairs (as Splink does).

    ``pairs``: the candidate pairs to learn m from (default: ``candidate_pairs``). With
    ``link_groups`` the prior is per pair across groups. ``base``: the starting parameters
    (default ``MatchModel.default()``), kept for comparisons EM has no data for.
    """
    start = base or MatchModel.default()
    prepared = [_prepare(r) for r in records]
    n = len(prepared)
    if pairs is None:
        pairs = _candidate_pairs(prepared, max_block_size, link_groups)
    generation = start.generation_years
    patterns: Counter[tuple[int, ...]] = Counter(
        _compare(prepared[i], prepared[j], generation) for i, j in pairs
    )
    candidates = sum(patterns.values())
    u = _estimate_u(prepared, seed=seed, sample=u_sample, generation=generation, start=start)
    m, share = _expectation_maximisation(patterns, start=start, u=u, iterations=max_iterations)
    if link_groups is not None:
        sizes = Counter(link_groups)
        total_pairs = (n * n - sum(c * c for c in sizes.values())) / 2
    else:
        total_pairs = n * (n - 1) / 2
    prior = min(max(share * candidates / max(total_pairs, 1.0), 1e-9), 0.5)
    levels = {
        name: tuple(LevelParams(level, m[k][x], u[k][x]) for x, level in enumerate(LEVELS[name]))
        for k, name in enumerate(COMPARISONS)
    }
    frequencies, rest = _term_frequencies(prepared, tf_table_size)
    return MatchModel(
        levels=levels,
        prior=prior,
        term_frequencies=frequencies,
        tf_rest=rest,
        conflict_cap=start.conflict_cap,
        generation_years=generation,
        training={
            "records": n,
            "candidate_pairs": candidates,
            "u_sample": u_sample,
            "seed": seed,
            "match_share_of_candidates": share,
        },
    )


def _level_values(prepared: Sequence[_Prepared]) -> dict[str, list[str]]:
    """Per comparison with a plain "exact" level, the value whose equality is "exact"."""
    return {
        "given_name": [p.given_c for p in prepared],
        "surnames": [p.surnames_c for p in prepared],
        "birth_date": [p.dob for p in prepared],
        "postcode": [p.postcode for p in prepared],
        "street": [f"{p.street_name}|{p.street_number}" if p.street_name else "" for p in prepared],
        "city": [p.city_c for p in prepared],
        "national_id": [p.national_id for p in prepared],
    }


def _estimate_u(
    prepared: Sequence[_Prepared],
    *,
    seed: int,
    sample: int,
    generation: int,
    start: MatchModel,
) -> list[list[float]]:
    """u per level: the level shares among random pairs, with the exact levels of single-valued
    fields computed from value frequencies (the chance that two random records agree)."""
    n = len(prepared)
    rng = random.Random(seed)
    counts = [[0] * len(LEVELS[name]) for name in COMPARISONS]
    if n >= 2:
        for _ in range(sample):
            i = rng.randrange(n)
            j = rng.randrange(n - 1)
            if j >= i:
                j += 1
            for k, level in enumerate(_compare(prepared[i], prepared[j], generation)):
                if level != MISSING:
                    counts[k][level] += 1
    exact_share: dict[str, float] = {}
    for name, values in _level_values(prepared).items():
        present = [v for v in values if v]
        if len(present) >= 2:
            tally = Counter(present).values()
            total = len(present)
            exact_share[name] = sum(c * (c - 1) for c in tally) / (total * (total - 1))
    u: list[list[float]] = []
    for k, name in enumerate(COMPARISONS):
        level_counts = counts[k]
        observed = sum(level_counts)
        defaults = [p.u for p in start.levels[name]]
        if observed < 100:
            u.append(defaults)
            continue
        # A level fewer than five random pairs reached keeps its default u (it is rarer than
        # the sample can tell); the last level ("different") absorbs the difference.
        shares = [
            c / observed if c >= 5 else d for c, d in zip(level_counts, defaults, strict=True)
        ]
        if name in exact_share:
            shares[0] = max(exact_share[name], 1e-9)
        shares[-1] = max(1.0 - sum(shares[:-1]), 0.5)
        total_share = sum(shares)
        u.append([max(s / total_share, 1e-9) for s in shares])
    return u


def _expectation_maximisation(
    patterns: Counter[tuple[int, ...]],
    *,
    start: MatchModel,
    u: list[list[float]],
    iterations: int,
) -> tuple[list[list[float]], float]:
    """m per level, and the share of matches among the candidate pairs."""
    m = [[p.m for p in start.levels[name]] for name in COMPARISONS]
    defaults_m = [list(row) for row in m]
    m_floor = 1e-5
    if not patterns:
        return m, 0.0
    # Non-matches among blocked candidates: start from the random-pair u, estimated alongside.
    ub = [list(row) for row in u]
    share = 0.1
    items = list(patterns.items())
    size = len(COMPARISONS)
    for _ in range(iterations):
        new_m = [[0.0] * len(row) for row in m]
        new_u = [[0.0] * len(row) for row in ub]
        matched = 0.0
        total = 0.0
        log_m = [[math.log(x) for x in row] for row in m]
        log_u = [[math.log(x) for x in row] for row in ub]
        log_prior = math.log(share) - math.log(1 - share)
        for pattern, count in items:
            weight = log_prior
            for k in range(size):
                level = pattern[k]
                if level != MISSING:
                    weight += log_m[k][level] - log_u[k][level]
            posterior = 1.0 / (1.0 + math.exp(-weight)) if weight > -700 else 0.0
            matched += posterior * count
            total += count
            for k in range(size):
                level = pattern[k]
                if level != MISSING:
                    new_m[k][level] += posterior * count
                    new_u[k][level] += (1 - posterior) * count
        change = 0.0
        for k in range(size):
            m_total = sum(new_m[k])
            if m_total > 1.0:
                # Levels with less than one expected matching pair keep their starting m.
                kept = [x < 1.0 for x in new_m[k]]
                free = 1.0 - sum(d for d, keep in zip(defaults_m[k], kept, strict=True) if keep)
                seen = sum(x for x, keep in zip(new_m[k], kept, strict=True) if not keep)
                row = [
                    d if keep else max(x / seen * free, m_floor)
                    for x, d, keep in zip(new_m[k], defaults_m[k], kept, strict=True)
                ]
                norm = sum(row)
                row = [x / norm for x in row]
                change = max(change, *(abs(x - y) for x, y in zip(row, m[k], strict=True)))
                m[k] = row
            u_total = sum(new_u[k])
            if u_total > 1e-9:
                ub[k] = [max(x / u_total, 1e-9) for x in new_u[k]]
        share = min(max(matched / total, 1e-9), 1 - 1e-9)
        if change < 1e-6:
            break
    return m, share


def _term_frequencies(
    prepared: Sequence[_Prepared], table_size: int
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Per TF field, the share of each common value (of each word, for names) and the share to
    assume for the others."""
    values: dict[str, list[str]] = {
        "given_name": [w for p in prepared for w in p.given],
        "surnames": [w for p in prepared for w in p.surnames],
        "postcode": [p.postcode for p in prepared if p.postcode],
        "city": [p.city_c for p in prepared if p.city_c],
    }
    tables: dict[str, dict[str, float]] = {}
    rest: dict[str, float] = {}
    for name in TF_FIELDS:
        present = values[name]
        if not present:
            continue
        total = len(present)
        counted = Counter(present).most_common()
        kept = [(v, c) for v, c in counted[:table_size] if c >= 2]
        tables[name] = {v: c / total for v, c in kept}
        others = [c for _, c in counted[len(kept) :]]
        # The share of the value a random agreeing pair holds, among the values left out of
        # the table (only singletons left: 1 / total).
        rest[name] = sum(c * c for c in others) / (sum(others) * total) if others else 1 / total
    return tables, rest


# --- clustering --------------------------------------------------------------------------


def cluster(
    pairs: Iterable[ScoredPair],
    *,
    threshold: float,
    cannot_link: Collection[tuple[str, str]] = (),
) -> list[frozenset[str]]:
    """Connected components (of two ids or more) over pairs with probability >= threshold,
    never putting two ids of a cannot-link pair (a person rejected it) in one cluster, so no
    chaining through a third.

    Links are taken strongest first; a link that would join two groups holding a rejected pair
    is left out. The result is sorted by each cluster's smallest id.
    """
    parent: dict[str, str] = {}
    forbidden: dict[str, set[str]] = defaultdict(set)
    for left, right in cannot_link:
        forbidden[left].add(right)
        forbidden[right].add(left)
    # Per root: the ids its members must never join (merged when groups merge).
    blocked: dict[str, set[str]] = {}

    def find(x: str) -> str:
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(x, x) != root:
            parent[x], x = root, parent[x]
        return root

    strong = sorted(
        (p for p in pairs if p.probability >= threshold),
        key=lambda p: (-p.match_weight, p.left_id, p.right_id),
    )
    for pair in strong:
        a, b = pair.left_id, pair.right_id
        if a == b:
            continue
        for x in (a, b):
            if x not in parent:
                parent[x] = x
                if x in forbidden:
                    blocked[x] = set(forbidden[x])
        root_a, root_b = find(a), find(b)
        if root_a == root_b:
            continue
        blocked_a = blocked.get(root_a, set())
        blocked_b = blocked.get(root_b, set())
        if any(find(x) == root_b for x in blocked_a if x in parent) or any(
            find(x) == root_a for x in blocked_b if x in parent
        ):
            continue
        if len(blocked_a) < len(blocked_b):
            root_a, root_b, blocked_a, blocked_b = root_b, root_a, blocked_b, blocked_a
        parent[root_b] = root_a
        if blocked_b:
            blocked_a |= blocked_b
            blocked[root_a] = blocked_a
            blocked.pop(root_b, None)
    groups: dict[str, set[str]] = defaultdict(set)
    for x in parent:
        groups[find(x)].add(x)
    return sorted(
        (frozenset(members) for members in groups.values() if len(members) > 1),
        key=min,
    )
