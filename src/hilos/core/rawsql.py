"""Statements sent to asyncpg directly, for the few hot paths that are one statement each.

SQLAlchemy's cost per statement, not PostgreSQL's, bounds the hot paths on two cores
(DESIGN.md's performance notes); those paths write their SQL with ``:name`` placeholders,
readable like any ``text()``, and ``numbered`` turns it once into asyncpg's ``$n`` form.
"""

from __future__ import annotations

import re


def numbered(sql: str) -> tuple[str, tuple[str, ...]]:
    """asyncpg's ``$n`` placeholders for the ``:name`` ones (a name used twice keeps its n),
    and the names in order, to build the argument list from a dict."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return re.sub(r"(?<![:\w]):(\w+)", number, sql), tuple(names)
