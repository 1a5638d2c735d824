"""No table is forgotten: every table of every domain is part of the export and the erasure, a
copy of events the erasure redacts, or named as holding nothing about a customer, with why."""

from __future__ import annotations

from hilos.models import metadata
from hilos.privacy.spec import COPIES, PARTS, STORED_FILES, UNRELATED, Keep, Scrub, Through

EXPORTED = {part.table_name for part in PARTS} | {STORED_FILES}


def test_every_table_with_a_customer_id_is_exported_and_erased() -> None:
    with_customer_id = {name for name, table in metadata.tables.items() if "customer_id" in table.c}
    missing = sorted(with_customer_id - EXPORTED)
    assert missing == [], (
        f"tables holding customer_id but absent from hilos/privacy/spec.py PARTS: {missing}; "
        "add each with how erasure treats it (Keep, Scrub or Delete, and why)"
    )


def test_every_table_is_classified_once() -> None:
    classified = [*EXPORTED, *COPIES, *UNRELATED]
    assert len(classified) == len(set(classified)), "a table is classified twice"
    unknown = sorted(set(metadata.tables) - set(classified))
    assert unknown == [], (
        f"new tables not classified in hilos/privacy/spec.py: {unknown}; add each to PARTS "
        "(it holds something about a customer), COPIES, or UNRELATED with the reason"
    )
    assert sorted(set(classified) - set(metadata.tables)) == [], "spec names a table that is gone"


def test_each_part_names_real_columns_and_a_reason() -> None:
    for part in PARTS:
        table = part.table
        columns = set(table.c.keys())
        link = part.link
        if isinstance(link, Through):
            assert link.column in columns, part.table_name
            assert link.parent in {p.table_name for p in PARTS}, part.table_name
        else:
            assert link in columns, part.table_name
        for column in (*part.also, *part.omit, *(name for name, _ in part.only)):
            assert column in columns, (part.table_name, column)
        assert part.erasure.why.strip(), part.table_name
        if isinstance(part.erasure, Scrub):
            assert set(part.erasure.columns) <= columns, part.table_name
            if {"redact", "code"} & set(part.erasure.columns.values()):
                # JSON is rewritten row by row, found again by a single-column key.
                assert [c.name for c in table.primary_key.columns] == ["id"], part.table_name
        assert "tenant_id" in columns, part.table_name


def test_what_kpis_read_is_kept() -> None:
    """The rows KPIs count stay: their tables are kept, or scrubbed only in free text."""
    for name in ("conversations", "orders", "order_lines", "carts", "conversation_slas"):
        erasure = next(p for p in PARTS if p.table_name == name).erasure
        assert isinstance(erasure, Keep | Scrub), name
