"""schema/predata.py: what the pre-data restore restores, the target database as on the source, what logical
replication does not carry."""

from __future__ import annotations

import pytest

from ansible_collections.pgshift.aurora.plugins.module_utils.schema import predata, roles, toc
from schema_data import HARD_ROLE, SRC_DB, entries, hard_entries, key


def present_all(es):
    return dict((e["key"], {}) for e in es if e["key"] and e["cls"] in ("pre", "held"))


ATTACHED = {key("table", "public", "shipments_2025_01"), key("index", "public", "shipments_2025_01_pkey")}


def test_a_fresh_target_gets_every_pre_entry_and_the_session_settings():
    es = entries()
    chosen = predata.plan_restore(es, {}, set())
    assert [e["desc"] for e in chosen[:3]] == ["ENCODING", "STDSTRINGS", "SEARCHPATH"]
    assert set(e["dump_id"] for e in chosen if e["cls"] == "pre") == set(e["dump_id"] for e in es if e["cls"] == "pre")
    text = predata.restore_list(chosen)
    assert "3687; 2606 16436 CONSTRAINT public customers customers_pkey app_owner\n" in text
    assert "3778;" not in text and "3688;" not in text and "3934;" not in text  # FK, index, DATABASE
    # Archive order is kept (pg_restore -L restores in the list's order).
    ids = [int(line.split(";")[0]) for line in text.splitlines()]
    order = [e["dump_id"] for e in es]
    assert ids == sorted(ids, key=order.index)


def test_a_target_that_has_the_schema_gets_nothing():
    es = entries()
    assert predata.plan_restore(es, present_all(es), ATTACHED) == []


def test_a_missing_table_is_restored_with_what_describes_it():
    es = entries()
    present = present_all(es)
    for k in [key("table", "public", "customers"), key("sequence", "public", "customers_id_seq"),
              key("table constraint", "public", "customers", "customers_pkey"),
              key("table constraint", "public", "customers", "customers_email_fkey")]:
        del present[k]
    chosen = set(toc.entry_label(e) for e in predata.plan_restore(es, present, ATTACHED) if e["cls"] == "pre")
    assert chosen == {"public.customers", "public TABLE customers", "public COLUMN customers.email",
                      "public.customers_id_seq", "customers_pkey on public.customers",
                      "public CONSTRAINT customers_pkey ON customers", "customers_email_fkey on public.customers"}


def test_a_detached_partition_is_attached_again():
    es = entries()
    chosen = predata.plan_restore(es, present_all(es), {key("index", "public", "shipments_2025_01_pkey")})
    assert [toc.entry_label(e) for e in chosen if e["cls"] == "pre"] == ["public shipments_2025_01"]


def test_database_statement_keeps_encoding_collation_and_provider():
    stmt, warnings = predata.database_statement("app", SRC_DB, 180000)
    assert stmt.as_string(None) == (
        "CREATE DATABASE \"app\" WITH TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu "
        "LC_COLLATE 'en_US.UTF-8' LC_CTYPE 'en_US.UTF-8' ICU_LOCALE 'en-US'")
    assert warnings == []
    stmt, warnings = predata.database_statement("app", SRC_DB, 140000)
    assert "LOCALE_PROVIDER" not in stmt.as_string(None) and "icu" in warnings[0]


def test_database_acl_and_settings():
    stmts = [s.as_string(None) for s in predata.database_acl_statements("app", SRC_DB)]
    # PUBLIC (grantee None) is the keyword; a role that is named "PUBLIC" is an identifier.
    assert stmts == ['REVOKE ALL ON DATABASE "app" FROM PUBLIC', 'GRANT TEMPORARY ON DATABASE "app" TO PUBLIC',
                     'GRANT CONNECT ON DATABASE "app" TO "app_user"',
                     'GRANT CONNECT ON DATABASE "app" TO "Ops ""Team"" é"',
                     'GRANT CREATE ON DATABASE "app" TO "PUBLIC"']
    assert predata.database_acl_statements("app", dict(SRC_DB, has_acl=False)) == []
    assert roles.acl_grantees(SRC_DB) == ['Ops "Team" é', "PUBLIC", "app_user"]
    assert predata.database_setting_statement("app", "work_mem=64MB").as_string(None) == \
        'ALTER DATABASE "app" SET "work_mem" = \'64MB\''
    assert predata.database_setting_statement("app", 'search_path="$user", public').as_string(None) == \
        'ALTER DATABASE "app" SET "search_path" = "$user", public'


def test_a_new_database_is_created_then_given_its_owner_privileges_and_settings():
    create, after, settings, warnings = predata.new_database("app", SRC_DB, 180000)
    assert [s.as_string(None) for s in create] == [predata.database_statement("app", SRC_DB, 180000)[0].as_string(None)]
    assert [s.as_string(None) for s in after][:2] == ['ALTER DATABASE "app" OWNER TO "app_owner"',
                                                      'REVOKE ALL ON DATABASE "app" FROM PUBLIC']
    assert len(after) == 1 + len(predata.database_acl_statements("app", SRC_DB)) and len(settings) == 2
    assert warnings == []
    assert predata.database_facts("app", SRC_DB, False) == dict(
        name="app", existed=False, created=False, owner="app_owner", encoding="UTF8", collate="en_US.UTF-8",
        ctype="en_US.UTF-8", locale_provider="icu", locale="en-US")
    assert predata.owner_statement('My "db"', HARD_ROLE).as_string(None) == \
        'ALTER DATABASE "My ""db""" OWNER TO "Ops ""Team"" é"'


@pytest.mark.parametrize("rows,expected", [
    ([dict(relkind="r", persistence="u", qualified="public.cache")], dict(unlogged_tables=["public.cache"])),
    ([dict(relkind="m", persistence="p", qualified="public.stats")], dict(materialized_views=["public.stats"])),
    ([dict(relkind="f", persistence="p", qualified="public.remote")], dict(foreign_tables=["public.remote"])),
])
def test_not_replicated(rows, expected):
    result = predata.not_replicated(rows, [dict(schema="public", name="Seq", owned_by=None, identity=False)], 3)
    for field, value in expected.items():
        assert result[field] == value
    assert result["large_objects"] == 3
    assert result["sequences"] == [dict(sequence='public."Seq"', owned_by=None, identity=False)]


def test_hard_names_restore_plan_by_keys():
    es = hard_entries()
    present = present_all(es)
    attached = set(e["child"] for e in es if e.get("child"))
    assert predata.plan_restore(es, present, attached) == []
    del present[key("table constraint", "Shipping Ops", "order", "Order PK")]
    chosen = [e["dump_id"] for e in predata.plan_restore(es, present, attached) if e["cls"] == "pre"]
    assert chosen == [3268]


def test_not_replicated_names_the_owning_column_with_hard_names():
    result = predata.not_replicated([], [dict(schema="Shipping Ops", name="select_Line No_seq",
                                              owned_by=["Shipping Ops", "select", "Line No"], identity=False)], 0)
    assert result["sequences"] == [dict(sequence='"Shipping Ops"."select_Line No_seq"',
                                        owned_by='"Shipping Ops"."select"."Line No"', identity=False)]


def test_extensions_to_create_and_objects_to_look_up_one_by_one():
    es = [dict(cls="pre", desc="EXTENSION", info=dict(extname="pgcrypto"), key=("extension", (("pgcrypto",), ())),
               classid=toc.PG_EXTENSION),
          dict(cls="pre", desc="OPERATOR", info=dict(address_type="operator"), key=("operator", (("public", "==="),)),
               classid=toc.PG_OPERATOR),
          dict(cls="pre", desc="OPERATOR", info=dict(address_type="operator"), key=("operator", (("public", "~~~"),)),
               classid=toc.PG_OPERATOR),
          dict(cls="held", desc="CAST", info=dict(address_type="cast"), key=("cast", ()), classid=2605),
          dict(cls="pre", desc="COMMENT", info={}, key=None, classid=0)]
    assert predata.extensions(es) == ["pgcrypto"]
    present = {("operator", (("public", "~~~"),)): {}}
    assert predata.probe_candidates(es, present, toc.INVENTORY_CLASSES) == [es[1]]
    assert "extension(s) pgcrypto" in predata.missing_extensions_message(["pgcrypto"])
