"""schema/conflicts.py: target objects that conflict with the source's schema."""

from __future__ import annotations

from ansible_collections.pgshift.aurora.plugins.module_utils.schema import conflicts
from schema_data import ref


def inv(*items):
    """An inventory (inventory_map of INVENTORY_SQL rows): items are (type, names, sig), schema first in names
    (extensions have none); the identity, for display, is how a server formats it."""
    rows = []
    for t, names, sig in items:
        identity = names[0] if t == "extension" else ".".join(names)
        rows.append(dict(type=t, identity=identity, ref=ref(*names), schema=None if t == "extension" else names[0],
                         sig=sig))
    return conflicts.inventory_map(rows)


SOURCE_INV = inv(
    ("table", ("public", "customers"), "table (id bigint not null, email text not null)"),
    ("table", ("public", "orders"), "table (id bigint not null)"),
    ("type", ("public", "status"), "enum ('new', 'done')"),
    ("extension", ("btree_gist",), "1.7"),
    ("index", ("public", "orders_idx"), "i"),
)


COMPARED = set(SOURCE_INV)


def test_the_same_schema_conflicts_with_nothing_extension_versions_and_column_order_aside():
    target = inv(
        ("table", ("public", "customers"), "table (email text not null, id bigint not null)"),
        ("table", ("public", "orders"), "table (id bigint not null)"),
        ("type", ("public", "status"), "enum ('new', 'done')"),
        ("extension", ("btree_gist",), "1.8"),
        ("extension", ("plpgsql",), "1.0"),
        ("table", ("other", "unrelated"), "table (x int)"),
    )
    assert conflicts.find_conflicts(SOURCE_INV, target, {"public"}, COMPARED) == []
    assert conflicts.find_conflicts(SOURCE_INV, {}, {"public"}, COMPARED) == []


def test_a_table_with_other_columns_and_objects_not_from_the_source_conflict():
    target = inv(
        ("table", ("public", "customers"), "table (id integer not null, email text not null, note text)"),
        ("type", ("public", "status"), "enum ('new', 'shipped', 'done')"),
        ("table", ("public", "stray"), "table (x integer)"),
        ("view", ("public", "orders"), "view (id bigint)"),
    )
    found = conflicts.find_conflicts(SOURCE_INV, target, {"public"}, COMPARED)
    problems = dict((c["object"], c) for c in found)
    assert set(problems) == {"public.customers", "public.status", "public.stray", "public.orders"}
    assert problems["public.customers"]["problem"] == (
        "differs from the source's: column(s) only on the source: id bigint not null; "
        "column(s) only on the target: id integer not null, note text")
    assert "enum ('new', 'done')" in problems["public.status"]["problem"]
    assert problems["public.stray"]["problem"] == "is in migrated schema public but not on the source"
    assert problems["public.orders"] == dict(object="public.orders", type="view",
                                             problem="the source has a table of this name, the target a view")
    message = conflicts.conflict_message(found, "app")
    assert message.startswith("the target database app has 4 object(s) that conflict")
    assert "nothing was changed" in message and "- table public.stray is in migrated schema public" in message


def test_objects_are_matched_by_their_names_not_by_how_a_server_version_quotes_them():
    """quote_ident() follows the server's keyword list: PostgreSQL 16 writes public.json_table, 18 public."json_table"
    (a keyword since 17). The same names are the same object: no conflict, and nothing to restore again."""
    source = conflicts.inventory_map([dict(type="table", identity="public.json_table", ref=ref("public", "json_table"),
                                           schema="public", sig="table (id integer)")])
    target = conflicts.inventory_map([dict(type="table", identity='public."json_table"', ref=ref("public", "json_table"),
                                           schema="public", sig="table (id integer)")])
    assert set(source) == set(target)
    assert conflicts.find_conflicts(source, target, {"public"}, set(source)) == []
    # Names that differ only in how they would be quoted are different objects.
    other = conflicts.inventory_map([dict(type="table", identity='public."Json_Table"', ref=ref("public", "Json_Table"),
                                          schema="public", sig="table (id integer)")])
    assert conflicts.find_conflicts(source, other, {"public"}, set(source)) == [dict(
        object='public."Json_Table"', type="table", problem="is in migrated schema public but not on the source")]


def test_hard_schema_names_are_matched_as_catalog_names():
    schemas = {"Shipping Ops", 'eu.west "archive"'}
    source = inv(("table", ("Shipping Ops", "order"), "table (x integer)"))
    target = inv(("table", ("Shipping Ops", "order"), "table (x integer)"),
                 ("table", ('eu.west "archive"', "leftover"), "table (x integer)"),
                 ("table", ("shipping ops", "order"), "table (x integer)"))
    found = conflicts.find_conflicts(source, target, schemas, set(source))
    assert found == [dict(object='eu.west "archive".leftover', type="table",
                          problem='is in migrated schema "eu.west ""archive""" but not on the source')]


def test_signature_difference():
    assert conflicts.signature_difference("table (a int, b int)", "table (b int, a int)") is None
    assert conflicts.signature_difference("table (a int)", "table unlogged (a int)") == \
        "the source has a table, the target a table unlogged"
    assert conflicts.signature_difference("domain integer", "domain bigint") == \
        "the source has domain integer, the target has domain bigint"


def test_database_differences():
    src = dict(name="app", encoding="UTF8", collate="C.UTF-8", ctype="C.UTF-8", locale_provider="c", locale=None)
    found, warnings = conflicts.database_differences(src, dict(src, encoding="SQL_ASCII"))
    assert len(found) == 1 and "ENCODING UTF8" in found[0]["problem"] and warnings == []
    found, warnings = conflicts.database_differences(src, dict(src, collate="en_US.UTF-8"))
    assert found == [] and "collate" in warnings[0]
