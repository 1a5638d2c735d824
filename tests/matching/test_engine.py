"""The matching engine on its own: Spanish names, false friends, blocking, clustering with
rejected pairs, training and the model's JSON. Pure and fast: no database."""

from __future__ import annotations

import json
import random
from datetime import date, timedelta

import pytest

from hilos.matching import _text
from hilos.matching.engine import (
    Evidence,
    MatchModel,
    MatchRecord,
    ScoredPair,
    blocking_keys,
    candidate_pairs,
    cluster,
    has_conflict,
    score,
    score_pairs,
    train,
)

DEFAULT = MatchModel.default()


def levels(left: MatchRecord, right: MatchRecord, model: MatchModel = DEFAULT) -> dict[str, str]:
    return {e.field: e.level for e in score(model, left, right).evidence}


def person(id: str, **fields: object) -> MatchRecord:
    return MatchRecord(id=id, **fields)  # type: ignore[arg-type]


# --- Spanish names -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "tokens"),
    [
        ("Mª José", ("maria", "jose")),
        ("M.ª José", ("maria", "jose")),
        ("Ma. Luisa", ("maria", "luisa")),
        ("Jose Mª", ("jose", "maria")),
        ("Fco. Javier", ("francisco", "javier")),
        ("ÁNGELES", ("angeles",)),
        ("María-José", ("maria", "jose")),
        ("de la Fuente", ("fuente",)),
        ("Fdez. de Córdoba", ("fernandez", "cordoba")),
    ],
)
def test_names_are_folded_and_abbreviations_expanded(raw: str, tokens: tuple[str, ...]) -> None:
    assert _text.name_tokens(raw) == tokens


@pytest.mark.parametrize(
    ("full", "given", "surnames"),
    [
        ("María José Fernández Ruiz", "maria jose", "fernandez ruiz"),
        ("Mª José Fernández", "maria jose", "fernandez"),
        ("José Luis de la Fuente García", "jose luis", "de la fuente garcia"),
        ("Ana Martín López", "ana", "martin lopez"),
        ("Fernández Ruiz, María José", "maria jose", "fernandez ruiz"),
        ("Juan Pérez", "juan", "perez"),
    ],
)
def test_a_full_name_is_split_in_spanish_order(full: str, given: str, surnames: str) -> None:
    assert _text.split_full_name(full) == (given, surnames)


def test_accents_and_maria_abbreviation_agree_exactly() -> None:
    left = person("a", given_name="María José", surnames="Fernández Ruiz")
    right = person("b", given_name="Mª Jose", surnames="FERNANDEZ RUIZ")
    assert levels(left, right) == {"given_name": "exact", "surnames": "exact"}


def test_swapped_surnames_are_their_own_positive_level() -> None:
    left = person("a", given_name="Lucía", surnames="Fernández Ruiz")
    right = person("b", given_name="Lucia", surnames="Ruiz Fernández")
    result = score(DEFAULT, left, right)
    surnames = next(e for e in result.evidence if e.field == "surnames")
    assert surnames.level == "swapped"
    assert surnames.weight > 5


def test_a_missing_second_surname_is_close_not_different() -> None:
    left = person("a", given_name="Carmen", surnames="Fernández Ruiz")
    right = person("b", given_name="Carmen", surnames="Fernández")
    surnames = next(e for e in score(DEFAULT, left, right).evidence if e.field == "surnames")
    assert surnames.level == "close"
    assert surnames.weight > 0
    different = person("c", given_name="Carmen", surnames="Gómez")
    assert levels(left, different)["surnames"] == "different"


def test_particles_and_hyphens_are_ignored_when_comparing() -> None:
    left = person("a", given_name="Pilar", surnames="de la Fuente del Río")
    right = person("b", given_name="Pilar", surnames="Fuente-Río")
    assert levels(left, right)["surnames"] == "exact"


def test_an_initial_matches_the_name_it_abbreviates() -> None:
    left = person("a", given_name="J.", surnames="Martínez")
    right = person("b", given_name="José", surnames="Martínez")
    assert levels(left, right)["given_name"] == "initial"
    assert levels(person("c", given_name="Pedro", surnames="Martínez"), left)["given_name"] == (
        "different"
    )


def test_full_name_only_is_split_before_comparing() -> None:
    left = person("a", full_name="Mª José Fernández Ruiz", postcode="28001")
    right = person("b", given_name="María José", surnames="Fernández Ruiz", postcode="28001")
    assert levels(left, right) == {
        "given_name": "exact",
        "surnames": "exact",
        "postcode": "exact",
    }


def test_the_store_and_the_web_record_of_one_customer_are_a_likely_match() -> None:
    # The example: the store wrote less, the web wrote it differently.
    store = person("store", given_name="María José", surnames="Fernández", postcode="28001")
    web = person(
        "web",
        full_name="Mª José Fernandez Ruiz",
        postcode="28001",
        emails=("mjfr@example.es",),
    )
    assert score(DEFAULT, store, web).probability >= 0.8


def test_typos_in_every_field_still_score_high() -> None:
    left = person(
        "a",
        given_name="Francisco Javier",
        surnames="Rodríguez Sánchez",
        birth_date=date(1975, 3, 14),
        street="C/ Mayor 12, 3º B",
        postcode="28013",
        city="Madrid",
    )
    right = person(
        "b",
        given_name="Fco. Javier",
        surnames="Rodrigez Sanchez",
        birth_date=date(1975, 3, 14),
        street="Calle Mayor, 12",
        postcode="28013",
        city="MADRID",
    )
    found = levels(left, right)
    assert found["given_name"] == "exact"
    assert found["surnames"] == "close"
    assert found["street"] == "exact"
    assert score(DEFAULT, left, right).probability > 0.99


@pytest.mark.parametrize(
    ("left", "right", "level"),
    [
        (date(1975, 3, 14), date(1975, 3, 14), "exact"),
        (date(1975, 3, 14), date(1975, 3, 4), "close"),
        (date(1975, 3, 14), date(1975, 4, 14), "close"),
        (date(1975, 3, 14), date(1976, 3, 14), "close"),
        (date(1975, 3, 12), date(1975, 12, 3), "swapped"),
        (date(1975, 3, 14), date(1975, 8, 30), "same_year"),
        (date(1975, 3, 14), date(1993, 11, 2), "different"),
        # A generation apart on the same day is another person, not a typo in the year.
        (date(1960, 3, 14), date(1990, 3, 14), "different"),
    ],
)
def test_birth_date_levels(left: date, right: date, level: str) -> None:
    found = levels(person("a", birth_date=left), person("b", birth_date=right))
    assert found["birth_date"] == level


def test_contact_levels() -> None:
    left = person("a", phones=("+34600111222",), emails=("ana.gil+shop@gmail.com",))
    same = person("b", phones=("+34600111222",), emails=("ana.gil@gmail.com",))
    national = person("c", phones=("600111222",), emails=("ana.gil@hotmail.com",))
    assert levels(left, same) == {"phone": "exact", "email": "exact"}
    assert levels(left, national) == {"phone": "close", "email": "same_local"}


# --- false friends -----------------------------------------------------------------------


def household(**overrides: object) -> MatchRecord:
    fields: dict[str, object] = {
        "given_name": "José",
        "surnames": "García",
        "street": "Calle del Pez 7, 2º A",
        "postcode": "28004",
        "city": "Madrid",
        "phones": ("+34915550101",),
        "birth_date": date(1958, 4, 12),
    }
    fields.update(overrides)
    return person(str(fields.pop("id", "father")), **fields)


def test_father_and_son_with_the_same_name_and_address_are_left_to_a_person() -> None:
    father = household()
    son = household(id="son", birth_date=date(1987, 9, 30))
    result = score(DEFAULT, father, son)
    # Never certain enough to merge on its own: a person sees the two birth dates and decides.
    assert result.probability == pytest.approx(0.9)
    assert has_conflict(result)
    assert Evidence("birth_date", "different", DEFAULT.weight("birth_date", "different")) in (
        result.evidence
    )


def test_father_and_son_are_left_to_a_person_under_a_trained_model_too() -> None:
    model = train(synthetic_population(seed=3)[0], seed=0)
    father = household()
    son = household(id="son", birth_date=date(1987, 9, 30))
    result = score(model, father, son)
    assert has_conflict(result)
    assert result.probability <= 0.9 + 1e-9


def test_a_birth_date_typo_is_not_a_false_friend() -> None:
    father = household()
    typo = household(id="typo", birth_date=date(1958, 4, 21))
    assert score(DEFAULT, father, typo).probability > 0.99


def test_an_agreeing_national_id_overrides_the_birth_date_veto() -> None:
    left = household(national_id="12345678Z")
    right = household(id="b", national_id="12345678Z", birth_date=date(1985, 1, 1))
    assert score(DEFAULT, left, right).probability > 0.99


def test_without_the_rule_the_household_evidence_would_look_certain() -> None:
    # The reason for the rule: names, address and phone agree, so the sum alone says "merge".
    model = MatchModel.from_json({**DEFAULT.to_json(), "conflict_cap": None})
    father = household()
    son = household(id="son", birth_date=date(1987, 9, 30))
    unruled = score(model, father, son)
    assert unruled.probability > 0.99
    assert not has_conflict(unruled)
    assert score(DEFAULT, father, son).probability < unruled.probability


def test_a_birth_date_a_few_years_off_is_an_ordinary_disagreement() -> None:
    # Not a generation apart: the plain "different" weight applies, no rule on top.
    father = household()
    other = household(id="other", birth_date=date(1961, 8, 3))
    assert not has_conflict(score(DEFAULT, father, other))


# --- blocking ----------------------------------------------------------------------------


def test_blocking_keys_have_the_documented_shape() -> None:
    keys = blocking_keys(
        person(
            "a",
            given_name="María",
            surnames="Fernández",
            postcode="28001",
            birth_date=date(1980, 5, 2),
            phones=("+34600111222",),
            emails=("x@y.es",),
        )
    )
    assert {"pc:28001|fn:m", "dob:19800502", "ph:600111222", "em:x@y.es"} <= keys
    assert any(key.startswith("sx:") and key.endswith("|dob:1980") for key in keys)


def test_blocking_finds_the_spanish_cases() -> None:
    records = [
        person("a", given_name="María José", surnames="Fernández Ruiz", postcode="28001"),
        person("b", full_name="Mª José Fernández", postcode="28001"),
        person("c", given_name="Lucía", surnames="Vázquez Ortega", birth_date=date(1990, 1, 2)),
        person("d", given_name="Lucia", surnames="Ortega Bázquez"),
        person("e", given_name="Jorge", surnames="Jiménez", birth_date=date(1971, 7, 7)),
        person("f", given_name="Jorge", surnames="Giménez", birth_date=date(1971, 7, 17)),
        person("g", given_name="Pedro", surnames="Alonso", postcode="08001"),
    ]
    found = {(records[i].id, records[j].id) for i, j in candidate_pairs(records)}
    assert {("a", "b"), ("c", "d"), ("e", "f")} <= found
    assert not any("g" in pair for pair in found)


def test_oversized_blocks_are_skipped_and_pairs_come_once() -> None:
    records = [person(str(i), postcode="28001", given_name="Ana", surnames="Gil") for i in range(6)]
    pairs = list(candidate_pairs(records))
    assert len(pairs) == len(set(pairs)) == 15
    assert all(i < j for i, j in pairs)
    assert list(candidate_pairs(records, max_block_size=5)) == []


def test_linking_compares_only_across_groups() -> None:
    records = [person(str(i), postcode="28001", given_name="Ana") for i in range(4)]
    pairs = set(candidate_pairs(records, link_groups=["a", "a", "b", "b"]))
    assert pairs == {(0, 2), (0, 3), (1, 2), (1, 3)}


# --- clustering --------------------------------------------------------------------------


def pair(left: str, right: str, probability: float) -> ScoredPair:
    return ScoredPair(left, right, probability * 10, probability, ())


def test_cluster_joins_connected_pairs_above_the_threshold() -> None:
    pairs = [pair("a", "b", 0.99), pair("b", "c", 0.9), pair("d", "e", 0.4)]
    assert cluster(pairs, threshold=0.5) == [frozenset({"a", "b", "c"})]


@pytest.mark.parametrize("order", [1, -1])
def test_cluster_never_chains_a_rejected_pair_through_a_third(order: int) -> None:
    pairs = [pair("a", "b", 0.99), pair("b", "c", 0.98), pair("a", "c", 0.97)][::order]
    clusters = cluster(pairs, threshold=0.5, cannot_link=[("c", "a")])
    assert clusters == [frozenset({"a", "b"})]
    for members in cluster(
        [*pairs, pair("c", "d", 0.99), pair("d", "a", 0.96)],
        threshold=0.5,
        cannot_link=[("a", "c")],
    ):
        assert not {"a", "c"} <= members


def test_cluster_keeps_groups_with_rejections_apart_after_merges() -> None:
    pairs = [
        pair("a", "b", 0.99),
        pair("c", "d", 0.99),
        pair("b", "c", 0.95),  # would join a rejected (a, d) through b and c
        pair("d", "e", 0.9),
    ]
    clusters = cluster(pairs, threshold=0.5, cannot_link=[("a", "d")])
    assert clusters == [frozenset({"a", "b"}), frozenset({"c", "d", "e"})]


# --- training ----------------------------------------------------------------------------

GIVEN = ["María", "José", "Antonio", "Carmen", "Lucía", "Javier", "Pilar", "Manuel", "Elena"]
GIVEN += ["Francisco", "Isabel", "David", "Laura", "Pablo", "Rosa", "Sergio", "Marta", "Jorge"]
SURNAMES = ["García", "Fernández", "González", "Rodríguez", "López", "Martínez", "Sánchez"]
SURNAMES += ["Pérez", "Gómez", "Martín", "Jiménez", "Ruiz", "Hernández", "Díaz", "Moreno"]
SURNAMES += ["Álvarez", "Romero", "Alonso", "Gutiérrez", "Navarro", "Torres", "Domínguez"]
STREETS = ["Calle Mayor", "Avenida de América", "Plaza España", "Calle Alcalá", "Paseo del Prado"]
STREETS += ["Calle Luna", "Calle Sol", "Ronda de Toledo", "Calle Serrano", "Calle Goya"]


def typo(rng: random.Random, word: str) -> str:
    if len(word) < 4:
        return word
    i = rng.randrange(1, len(word) - 1)
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def synthetic_population(
    *, seed: int, people: int = 600
) -> tuple[list[MatchRecord], set[tuple[str, str]]]:
    """Spanish customers, a third with a second record carrying typos, a missing second
    surname, a changed email, the surnames swapped or the address missing."""
    rng = random.Random(seed)
    records: list[MatchRecord] = []
    truth: set[tuple[str, str]] = set()
    for n in range(people):
        given = rng.choice(GIVEN)
        surnames = f"{rng.choice(SURNAMES)} {rng.choice(SURNAMES)}"
        born = date(1940, 1, 1) + timedelta(days=rng.randrange(60 * 365))
        postcode = f"280{rng.randrange(10, 60)}"
        street = f"{rng.choice(STREETS)} {rng.randrange(1, 80)}"
        email = f"{given[:3].lower()}{n}@example.es"
        records.append(
            person(
                f"p{n}",
                given_name=given,
                surnames=surnames,
                birth_date=born,
                street=street,
                postcode=postcode,
                city="Madrid",
                emails=(email,),
            )
        )
        if rng.random() < 0.35:
            change = rng.randrange(4)
            records.append(
                person(
                    f"p{n}-dup",
                    given_name=typo(rng, given) if change == 0 else given,
                    surnames=(
                        surnames.split()[0]
                        if change == 1
                        else " ".join(reversed(surnames.split()))
                        if change == 2
                        else typo(rng, surnames)
                    ),
                    birth_date=born if rng.random() < 0.9 else born + timedelta(days=1),
                    street=None if change == 3 else street,
                    postcode=postcode,
                    city="Madrid",
                    emails=(email if rng.random() < 0.5 else f"other{n}@example.com",),
                )
            )
            truth.add((f"p{n}", f"p{n}-dup"))
    return records, truth


def test_em_moves_weights_in_the_right_direction() -> None:
    records, truth = synthetic_population(seed=1)
    # A deliberately poor start: agreement on the birth date barely counts, disagreement on
    # the given name is no evidence against.
    start = DEFAULT.to_json()
    start["levels"]["birth_date"][0]["m"] = 0.31
    start["levels"]["birth_date"][-1]["m"] = 0.6
    start["levels"]["given_name"][0]["m"] = 0.47
    start["levels"]["given_name"][-1]["m"] = 0.4
    base = MatchModel.from_json(start)
    assert base.weight("birth_date", "different") > -1
    model = train(records, seed=0, base=base)
    assert model.levels["birth_date"][0].m > 0.8
    assert model.levels["birth_date"][-1].m < 0.1
    assert model.levels["given_name"][0].m > 0.47 + 0.1
    assert model.levels["given_name"][-1].m < 0.1
    assert model.weight("birth_date", "exact") > 8
    assert model.weight("birth_date", "different") < -3

    pairs = list(candidate_pairs(records))
    scored = score_pairs(model, records, pairs)
    predicted = {(p.left_id, p.right_id) for p in scored if p.probability >= 0.5}
    predicted = {(a, b) if a < b else (b, a) for a, b in predicted}
    hits = len(predicted & truth)
    assert hits / len(truth) > 0.95
    assert hits / len(predicted) > 0.95


def test_common_surnames_weigh_less_than_rare_ones() -> None:
    records, _ = synthetic_population(seed=2)
    rare = [person(f"r{i}", given_name="Iker", surnames="Zubizarreta Olaizola") for i in range(2)]
    model = train([*records, *rare], seed=0)
    common = score(
        model,
        person("x", given_name="Ana", surnames="García"),
        person("y", given_name="Ana", surnames="García"),
    )
    uncommon = score(model, *rare)
    weight = {e.field: e.weight for e in common.evidence}
    rare_weight = {e.field: e.weight for e in uncommon.evidence}
    assert rare_weight["surnames"] > weight["surnames"] + 2


def test_training_is_deterministic_with_a_seed() -> None:
    records, _ = synthetic_population(seed=4, people=300)
    first = train(records, seed=7).to_json()
    assert train(records, seed=7).to_json() == first


def test_the_model_survives_a_json_round_trip() -> None:
    records, _ = synthetic_population(seed=5, people=300)
    model = train(records, seed=0)
    again = MatchModel.from_json(json.loads(json.dumps(model.to_json())))
    assert again.to_json() == model.to_json()
    pairs = list(candidate_pairs(records))[:200]
    assert score_pairs(again, records, pairs) == score_pairs(model, records, pairs)


def test_from_json_rejects_a_model_with_other_levels() -> None:
    data = DEFAULT.to_json()
    data["levels"]["postcode"] = data["levels"]["postcode"][:2]
    with pytest.raises(ValueError, match="postcode"):
        MatchModel.from_json(data)


def test_score_pairs_matches_score_one_by_one() -> None:
    records, _ = synthetic_population(seed=6, people=100)
    pairs = list(candidate_pairs(records))[:50]
    assert score_pairs(DEFAULT, records, pairs) == [
        score(DEFAULT, records[i], records[j]) for i, j in pairs
    ]
