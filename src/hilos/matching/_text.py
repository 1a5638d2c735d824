"""Normalisation of names, addresses and contact values for the matching engine.

Everything here turns one raw value into the folded form the comparisons read, once per record:
accents and case folded, Spanish abbreviations expanded ("Mª" and "M.ª" to "maria", "Fco." to
"francisco", "Fdez." to "fernandez"), particles ("de", "del", "de la", "y", "van"…) dropped for
comparing, hyphenated and compound names split into tokens, a full name split into given name
and surnames, the house number taken out of a street, and a phonetic key for blocking.

The phonetic key is our own: Soundex (in jellyfish and others) keeps the first letter as it is
written, so "Vázquez"/"Bázquez" or "Jiménez"/"Giménez"/"Ximénez" fall in different blocks.
Here Spanish spelling rules (b/v, c/z/s, g/j, ll/y, qu/k, silent h) are applied first and every
letter, the first included, is coded by its sound group.
"""

from __future__ import annotations

import functools
import re
import unicodedata

# Particles of Spanish, Catalan, Portuguese, Dutch, German and French names: kept in the
# profile, ignored when comparing ("María de la Fuente" and "María Fuente" agree).
PARTICLES = frozenset(
    {"de", "del", "la", "las", "los", "y", "i", "e", "da", "das", "do", "dos", "van", "von"}
    | {"der", "den", "di", "du", "le", "lo", "dels", "d", "l"}
)

# Abbreviations written in Spanish records, expanded token by token after folding.
ABBREVIATIONS = {
    "fco": "francisco",
    "fdo": "fernando",
    "fdez": "fernandez",
    "fdz": "fernandez",
    "fndez": "fernandez",
    "glez": "gonzalez",
    "gonz": "gonzalez",
    "gzlez": "gonzalez",
    "rguez": "rodriguez",
    "rodz": "rodriguez",
    "rdguez": "rodriguez",
    "rgz": "rodriguez",
    "hdez": "hernandez",
    "hndez": "hernandez",
    "mtnez": "martinez",
    "mnez": "martinez",
    "mtz": "martinez",
    "mrtnez": "martinez",
    "sgo": "santiago",
}
# "Ma" alone is only "María" when written with a dot or the ordinal "ª" (it is a rare given
# name otherwise): this pattern runs before folding, while the dot is still there.
_MARIA = re.compile(r"\bm\s*\.?\s*ª|\bm\.\s*a\b\.?|\bma\.")
_GARCIA = re.compile(r"\bg\s*\.?\s*ª")
_ORDINAL = re.compile(r"(\d)\s*[ºª°]")
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")
_DIGITS = re.compile(r"\d+")
_APOSTROPHES = re.compile(r"['’`´]")

# Second words that make a compound given name ("María José", "Juan Carlos"): a full name of
# three words whose second is one of these is split as two given names and one surname.
COMPOUND_GIVEN = frozenset(
    {
        "jose", "maria", "luis", "carlos", "manuel", "antonio", "ignacio", "javier", "angel",
        "jesus", "carmen", "isabel", "pilar", "elena", "teresa", "dolores", "eugenia",
        "victoria", "francisco", "miguel", "juan", "pablo", "alberto", "andres", "ramon",
        "enrique", "rosa", "belen", "mar", "luisa", "ana", "jorge", "jaime", "esteban",
        "vicente", "fernando", "cristina", "eduardo", "mercedes", "lourdes", "josefa",
        "rocio", "soledad", "paz", "concepcion", "asuncion", "del",
    }
)  # fmt: skip

# Street types, written many ways, mapped to one word so "C/ Mayor" and "Calle Mayor" agree.
STREET_TYPES = {
    "c": "calle",
    "cl": "calle",
    "cll": "calle",
    "call": "calle",
    "av": "avenida",
    "avd": "avenida",
    "avda": "avenida",
    "ave": "avenida",
    "avenue": "avenida",
    "pza": "plaza",
    "pl": "plaza",
    "plz": "plaza",
    "pz": "plaza",
    "po": "paseo",
    "pso": "paseo",
    "ps": "paseo",
    "ctra": "carretera",
    "crta": "carretera",
    "cra": "carretera",
    "cmno": "camino",
    "cno": "camino",
    "rda": "ronda",
    "trva": "travesia",
    "trav": "travesia",
    "gta": "glorieta",
    "urb": "urbanizacion",
    "st": "street",
    "str": "street",
    "rd": "road",
    "dr": "drive",
    "cres": "crescent",
    "cct": "circuit",
    "ct": "court",
    "pde": "parade",
    "hwy": "highway",
}


@functools.lru_cache(maxsize=65_536)
def fold(text: str) -> str:
    """Lower case, Spanish abbreviations with "ª" expanded, accents dropped, anything but
    letters and digits turned into single spaces."""
    lowered = text.lower()
    if lowered.isascii() and "." not in lowered:
        return " ".join(_NOT_ALNUM.sub(" ", _APOSTROPHES.sub("", lowered)).split())
    if "ª" in lowered or "." in lowered or "º" in lowered or "°" in lowered:
        lowered = _ORDINAL.sub(r"\1 ", lowered)
        lowered = _MARIA.sub(" maria ", lowered)
        lowered = _GARCIA.sub(" garcia ", lowered)
    lowered = _APOSTROPHES.sub("", lowered)
    if not lowered.isascii():
        decomposed = unicodedata.normalize("NFKD", lowered)
        lowered = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(_NOT_ALNUM.sub(" ", lowered).split())


def name_words(text: str | None) -> list[str]:
    """Folded words of a name with abbreviations expanded, particles kept."""
    if not text:
        return []
    return [ABBREVIATIONS.get(word, word) for word in fold(text).split()]


def name_tokens(text: str | None) -> tuple[str, ...]:
    """The words of a name that count when comparing: particles dropped."""
    words = name_words(text)
    kept = tuple(word for word in words if word not in PARTICLES)
    # A name made only of particles ("De la") keeps them rather than vanishing.
    return kept or tuple(words)


def _units(words: list[str]) -> list[list[str]]:
    """Words grouped so particles stay with the word they introduce ("de la fuente")."""
    units: list[list[str]] = []
    pending: list[str] = []
    for word in words:
        pending.append(word)
        if word not in PARTICLES:
            units.append(pending)
            pending = []
    if pending:
        if units:
            units[-1].extend(pending)
        else:
            units.append(pending)
    return units


def split_full_name(full_name: str) -> tuple[str, str]:
    """Given name and surnames of a full name written in Spanish order.

    "Fernández Ruiz, María José" (surnames first, with a comma) is understood too. Four or more
    units: the last two are the surnames; three: two surnames, unless the middle word is a usual
    second given name ("María José Fernández"); two: a given name and one surname.
    """
    if "," in full_name:
        surnames, _, given = full_name.partition(",")
        return " ".join(name_words(given)), " ".join(name_words(surnames))
    units = _units(name_words(full_name))
    if len(units) <= 1:
        return (" ".join(units[0]) if units else ""), ""
    if len(units) == 2:
        given_units, surname_units = units[:1], units[1:]
    elif len(units) == 3 and units[1][-1] in COMPOUND_GIVEN and units[1][0] not in PARTICLES:
        given_units, surname_units = units[:2], units[2:]
    else:
        given_units, surname_units = units[:-2], units[-2:]
    return (
        " ".join(word for unit in given_units for word in unit),
        " ".join(word for unit in surname_units for word in unit),
    )


# Sound groups for the phonetic key; vowels (and y, w) separate groups but are not coded.
_SOUND_GROUP = {
    **dict.fromkeys("bpfv", "1"),
    **dict.fromkeys("cgjkqsxz", "2"),
    **dict.fromkeys("dt", "3"),
    "l": "4",
    **dict.fromkeys("mn", "5"),
    "r": "6",
}
_SPANISH_SPELLING = (
    (re.compile(r"ch"), "x"),
    (re.compile(r"h"), ""),
    (re.compile(r"ll"), "y"),
    (re.compile(r"qu"), "k"),
    (re.compile(r"g(?=[ei])"), "j"),
    (re.compile(r"gu(?=[ei])"), "g"),
    (re.compile(r"c(?=[ei])"), "s"),
    (re.compile(r"ph"), "f"),
    (re.compile(r"w"), "b"),
)


@functools.lru_cache(maxsize=65_536)
def phonetic(word: str) -> str:
    """A sound key of one folded word: Spanish spelling rules, then every consonant coded by
    its group (the first included), repeated groups collapsed, at most four digits."""
    if not word:
        return ""
    for pattern, replacement in _SPANISH_SPELLING:
        word = pattern.sub(replacement, word)
    code: list[str] = []
    previous = ""
    for letter in word:
        group = _SOUND_GROUP.get(letter, "")
        if group and group != previous:
            code.append(group)
        previous = group
    # The first vowel sound matters for short names ("Ana" / "Eva"): keep it as a letter.
    head = word[0] if word[0] in "aeiouy" else ""
    return (head + "".join(code))[:5] or word[:2]


def digits(text: str | None) -> str:
    return "".join(_DIGITS.findall(text)) if text else ""


def street_parts(street: str | None) -> tuple[str, str]:
    """The street's name (folded, street types unified, floor and door dropped) and its house
    number: "C/ Mayor 12, 3º B" gives ("calle mayor", "12"); "8 stanley street" gives
    ("stanley street", "8")."""
    if not street:
        return "", ""
    words = [STREET_TYPES.get(word, word) for word in fold(street).split()]
    number_at = next((i for i, word in enumerate(words) if word.isdigit()), None)
    if number_at is None:
        return " ".join(words), ""
    number = words[number_at].lstrip("0") or "0"
    before = [w for w in words[:number_at] if not w.isdigit()]
    # Spanish order puts the number after the name and floor/door after it; when the number
    # comes first (English order) the name follows it.
    name_words_ = before or [w for w in words[number_at + 1 :] if not w.isdigit()]
    return " ".join(name_words_), number


def postcode_key(postcode: str | None) -> str:
    return _NOT_ALNUM.sub("", postcode.lower()) if postcode else ""


def phone_key(phone: str) -> str:
    """Digits of a phone number; the last nine are the Spanish national number."""
    return digits(phone)


def email_key(email: str) -> tuple[str, str]:
    """(whole address, local part without a +tag) in lower case."""
    value = email.strip().lower()
    local, _, domain = value.partition("@")
    local = local.split("+", 1)[0]
    return (f"{local}@{domain}" if domain else local), local
