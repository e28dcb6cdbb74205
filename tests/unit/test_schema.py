"""The decisions of pg_schema_copy: TOC classification, filters, restore plan, conflicts, roles, post stage.

The archive listings are real ``pg_restore -l -v`` output (PostgreSQL 18's pg_restore on a
schema-only dump of the lab's PostgreSQL 15 dataset); the catalog facts are what the
module's SOURCE_OBJECTS_SQL returns for those entries.
"""

from __future__ import annotations

import pytest

from ansible_collections.pgshift.aurora.plugins.module_utils import schema

TOC = """\
;
; Archive created at 2026-11-24 04:24:30 UTC
;     dbname: app
;     Dumped from database version: 15.18 (Debian 15.18-0+deb12u1)
;     Dumped by pg_dump version: 18.6
;
; Selected TOC Entries:
;
3931; 0 0 ENCODING - ENCODING|
3932; 0 0 STDSTRINGS - STDSTRINGS|
3933; 0 0 SEARCHPATH - SEARCHPATH|
3934; 1262 16385 DATABASE - app app_owner
8; 2615 16386 SCHEMA - billing app_owner
3935; 0 0 ACL - SCHEMA billing app_owner
;	depends on: 8
2; 3079 16786 EXTENSION - btree_gist|
3936; 0 0 COMMENT - EXTENSION btree_gist|
;	depends on: 2
1108; 1247 16404 DOMAIN public country_code app_owner
257; 1255 16426 FUNCTION public audit_row() app_owner
252; 1259 16691 TABLE billing invoices app_owner
;	depends on: 250 8
250; 1259 16689 SEQUENCE billing invoice_no_seq app_owner
;	depends on: 8
221; 1259 16428 TABLE public customers app_owner
;	depends on: 1108
3939; 0 0 COMMENT public TABLE customers app_owner
;	depends on: 221
3940; 0 0 ACL public TABLE customers app_owner
;	depends on: 221
3941; 0 0 ACL public COLUMN customers.email app_owner
;	depends on: 221 3940
220; 1259 16427 SEQUENCE public customers_id_seq app_owner
;	depends on: 221
254; 1259 16718 VIEW public open_invoices app_owner
;	depends on: 221 221 252 252 252 252 252
227; 1259 16490 TABLE public shipments app_owner
228; 1259 16500 TABLE public shipments_2025_01 app_owner
;	depends on: 227
3645; 0 0 TABLE ATTACH public shipments_2025_01 app_owner
;	depends on: 228 227
248; 1259 16676 TABLE public session_cache app_owner
3745; 2606 16704 CONSTRAINT billing invoices invoices_invoice_no_key app_owner
;	depends on: 252
3747; 2606 16702 CONSTRAINT billing invoices invoices_pkey app_owner
;	depends on: 252
3687; 2606 16436 CONSTRAINT public customers customers_pkey app_owner
;	depends on: 221
3943; 0 0 COMMENT public CONSTRAINT customers_pkey ON customers app_owner
;	depends on: 3687
3754; 2606 17444 CONSTRAINT public bookings bookings_r_excl postgres
;	depends on: 221
3679; 2606 16785 CHECK CONSTRAINT public documents documents_kind_check app_owner
;	depends on: 221
3698; 2606 16494 CONSTRAINT public shipments shipments_pkey app_owner
;	depends on: 227 227
3701; 2606 16504 CONSTRAINT public shipments_2025_01 shipments_2025_01_pkey app_owner
;	depends on: 228 228 3698 228
3688; 1259 16444 INDEX public customers_referred_by_idx app_owner
;	depends on: 221
3944; 0 0 COMMENT public INDEX customers_referred_by_idx app_owner
;	depends on: 3688
3689; 1259 16458 INDEX public session_cache_lookup app_owner
;	depends on: 248
3696; 1259 16570 INDEX public shipments_parcel_id_idx app_owner
;	depends on: 227
3699; 1259 16571 INDEX public shipments_2025_01_parcel_id_idx app_owner
;	depends on: 228 3696 228
3755; 0 0 INDEX ATTACH public shipments_2025_01_parcel_id_idx app_owner
;	depends on: 3699 3696 228 227
3756; 0 0 INDEX ATTACH public shipments_2025_01_pkey app_owner
;	depends on: 3698 3701 228 3698 228 227
3769; 3381 16746 STATISTICS public parcels_stats postgres
;	depends on: 221 221
3926; 2618 16744 RULE public customers customers_nodelete app_owner
;	depends on: 221 221 221
3779; 2620 16487 TRIGGER public customers customers_audit app_owner
;	depends on: 221 257
3778; 2606 16705 FK CONSTRAINT billing invoices invoices_customer_id_fkey app_owner
;	depends on: 221 3687 252
3800; 2606 16900 CONSTRAINT public customers customers_email_fkey app_owner
;	depends on: 221
3801; 2606 16901 FK CONSTRAINT public customers customers_referrer_pkey app_owner
;	depends on: 221 3687
3927; 0 16446 ROW SECURITY public customers app_owner
;	depends on: 221
3928; 3256 16745 POLICY public customers own_rows app_owner
;	depends on: 221 221
2482; 826 16747 DEFAULT ACL billing DEFAULT PRIVILEGES FOR TABLES app_owner
;	depends on: 8
4000; 0 0 PUBLICATION - pub_app postgres
""".replace("|\n", " \n")  # pg_restore ends the lines of entries without an owner with a space


def info(classid, objid, type_, identity, schema_=None, **extra):
    row = dict(classid=classid, objid=objid, type=type_, identity=identity, schema=schema_)
    row.update(extra)
    return (classid, objid), row


# What SOURCE_OBJECTS_SQL returns for the catalog entries above. Note customers_email_fkey
# (a UNIQUE constraint despite its name) and customers_referrer_pkey (a foreign key despite
# its): the catalog decides, never the name.
CATALOG = dict([
    info(1262, 16385, "database", "app"),
    info(2615, 16386, "schema", "billing"),
    info(3079, 16786, "extension", "btree_gist"),
    info(1247, 16404, "type", "public.country_code", "public"),
    info(1255, 16426, "function", "public.audit_row()", "public"),
    info(1259, 16691, "table", "billing.invoices", "billing", relkind="r"),
    info(1259, 16689, "sequence", "billing.invoice_no_seq", "billing", relkind="S"),
    info(1259, 16428, "table", "public.customers", "public", relkind="r"),
    info(1259, 16427, "sequence", "public.customers_id_seq", "public", relkind="S"),
    info(1259, 16718, "view", "public.open_invoices", "public", relkind="v"),
    info(1259, 16490, "table", "public.shipments", "public", relkind="p"),
    info(1259, 16500, "table", "public.shipments_2025_01", "public", relkind="r", is_partition=True),
    info(1259, 16676, "table", "public.session_cache", "public", relkind="r"),
    info(2606, 16704, "table constraint", "invoices_invoice_no_key on billing.invoices", "billing", contype="u",
         convalidated=True),
    info(2606, 16702, "table constraint", "invoices_pkey on billing.invoices", "billing", contype="p",
         convalidated=True),
    info(2606, 16436, "table constraint", "customers_pkey on public.customers", "public", contype="p",
         convalidated=True),
    info(2606, 17444, "table constraint", "bookings_r_excl on public.bookings", "public", contype="x",
         convalidated=True),
    info(2606, 16785, "table constraint", "documents_kind_check on public.documents", "public", contype="c",
         convalidated=False),
    info(2606, 16494, "table constraint", "shipments_pkey on public.shipments", "public", contype="p",
         convalidated=True, index="public.shipments_pkey"),
    info(2606, 16504, "table constraint", "shipments_2025_01_pkey on public.shipments_2025_01", "public",
         contype="p", convalidated=True, index="public.shipments_2025_01_pkey", index_parent=True),
    info(1259, 16444, "index", "public.customers_referred_by_idx", "public", relkind="i", replident=False),
    info(1259, 16458, "index", "public.session_cache_lookup", "public", relkind="i", replident=True),
    info(1259, 16570, "index", "public.shipments_parcel_id_idx", "public", relkind="I", replident=False),
    info(1259, 16571, "index", "public.shipments_2025_01_parcel_id_idx", "public", relkind="i", replident=False,
         parent="public.shipments_parcel_id_idx"),
    info(3381, 16746, "statistics object", "public.parcels_stats", "public"),
    info(2618, 16744, "rule", "customers_nodelete on public.customers"),
    info(2620, 16487, "trigger", "customers_audit on public.customers"),
    info(2606, 16705, "table constraint", "invoices_customer_id_fkey on billing.invoices", "billing", contype="f",
         convalidated=True),
    info(2606, 16900, "table constraint", "customers_email_fkey on public.customers", "public", contype="u",
         convalidated=True),
    info(2606, 16901, "table constraint", "customers_referrer_pkey on public.customers", "public", contype="f",
         convalidated=True),
    info(3256, 16745, "policy", "own_rows on public.customers"),
    info(826, 16747, "default acl", "for role app_owner in schema billing on tables"),
])

ALL_RELATIONS = {16691, 16689, 16428, 16427, 16718, 16490, 16500, 16676}


def scope_(schemas=("public", "billing"), out=()):
    out = set(out)
    return dict(schemas=set(schemas), relations_in=ALL_RELATIONS - out, relations_out=out)


def entries(sc=None):
    es = schema.parse_toc(TOC)
    schema.annotate(es, CATALOG)
    schema.classify(es, sc or scope_())
    return es


def by_label(es):
    return dict((schema.entry_label(e), e) for e in es)


def cls(es, label):
    return by_label(es)[label]["cls"]


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------

def test_parse_toc_reads_descs_with_spaces_namespaces_tags_owners_and_dependencies():
    es = {e["dump_id"]: e for e in schema.parse_toc(TOC)}
    assert es[3645]["desc"] == "TABLE ATTACH" and es[3645]["deps"] == [228, 227]
    assert es[3778]["desc"] == "FK CONSTRAINT"
    assert es[3778]["namespace"] == "billing" and es[3778]["tag"] == "invoices invoices_customer_id_fkey"
    assert es[3778]["owner"] == "app_owner" and es[3778]["classid"] == 2606 and es[3778]["objid"] == 16705
    assert es[2]["desc"] == "EXTENSION" and es[2]["namespace"] is None and es[2]["tag"] == "btree_gist"
    assert es[2]["owner"] == ""
    assert es[3941]["tag"] == "COLUMN customers.email" and es[3941]["deps"] == [221, 3940]
    assert es[2482]["desc"] == "DEFAULT ACL" and es[2482]["tag"] == "DEFAULT PRIVILEGES FOR TABLES"
    assert es[3927]["desc"] == "ROW SECURITY" and (es[3927]["classid"], es[3927]["objid"]) == (0, 16446)
    assert es[3931]["desc"] == "ENCODING"
    # The line is kept as pg_restore printed it: pg_restore -L reads it back.
    assert es[3701]["line"] == "3701; 2606 16504 CONSTRAINT public shipments_2025_01 shipments_2025_01_pkey app_owner"
    assert len(es) == len([line for line in TOC.splitlines() if line and not line.startswith(";")])


def test_catalog_keys_are_the_entries_that_are_catalog_objects():
    keys = schema.catalog_keys(schema.parse_toc(TOC))
    assert (2606, 16705) in keys and (1259, 16428) in keys
    assert all(k[0] and k[1] for k in keys)
    assert (0, 16446) not in keys


# --------------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------------

def test_primary_keys_and_unique_constraints_go_before_the_data():
    es = entries()
    assert cls(es, "customers_pkey on public.customers") == "pre"
    assert cls(es, "invoices_pkey on billing.invoices") == "pre"
    assert cls(es, "invoices_invoice_no_key on billing.invoices") == "pre"
    assert cls(es, "shipments_2025_01_pkey on public.shipments_2025_01") == "pre"
    # The partition's key index is attached to the parent's before the data too.
    assert cls(es, "public shipments_2025_01_pkey") == "pre"
    # A comment on a primary key follows it.
    assert cls(es, "public CONSTRAINT customers_pkey ON customers") == "pre"


def test_constraints_are_classified_by_the_catalog_not_by_their_name():
    es = entries()
    assert cls(es, "customers_email_fkey on public.customers") == "pre"  # contype u
    assert cls(es, "customers_referrer_pkey on public.customers") == "held"  # contype f
    assert by_label(es)["customers_referrer_pkey on public.customers"]["reason"] == "foreign key"
    assert cls(es, "bookings_r_excl on public.bookings") == "held"  # contype x
    assert cls(es, "invoices_customer_id_fkey on billing.invoices") == "held"


def test_not_valid_check_is_held_back_and_a_valid_one_is_not():
    es = entries()
    e = by_label(es)["documents_kind_check on public.documents"]
    assert e["cls"] == "held" and "NOT VALID" in e["reason"]
    catalog = dict(CATALOG)
    catalog[(2606, 16785)] = dict(catalog[(2606, 16785)], convalidated=True)
    es = schema.parse_toc(TOC)
    schema.annotate(es, catalog)
    schema.classify(es, scope_())
    assert cls(es, "documents_kind_check on public.documents") == "pre"


def test_secondary_indexes_are_held_back_replica_identity_indexes_are_not():
    es = entries()
    assert cls(es, "public.customers_referred_by_idx") == "held"
    assert cls(es, "public INDEX customers_referred_by_idx") == "held"  # its comment follows it
    assert by_label(es)["public INDEX customers_referred_by_idx"]["reason"] == \
        "follows public.customers_referred_by_idx"
    assert cls(es, "public.shipments_parcel_id_idx") == "held"
    assert cls(es, "public.shipments_2025_01_parcel_id_idx") == "held"
    assert cls(es, "public shipments_2025_01_parcel_id_idx") == "held"  # INDEX ATTACH of a secondary index
    e = by_label(es)["public.session_cache_lookup"]
    assert e["cls"] == "pre" and "replica identity" in e["reason"]


def test_triggers_rules_policies_statistics_row_security_are_held_back():
    es = entries()
    for label in ("customers_audit on public.customers", "customers_nodelete on public.customers",
                  "own_rows on public.customers", "public.parcels_stats", "public customers"):
        assert cls(es, label) == "held", label


def test_pre_data_objects_session_and_dropped_entries():
    es = entries()
    for label in ("billing", "SCHEMA billing", "btree_gist", "EXTENSION btree_gist", "public.country_code",
                  "public.audit_row()", "billing.invoices", "public.customers", "public TABLE customers",
                  "public COLUMN customers.email", "public.customers_id_seq", "public.open_invoices",
                  "public.shipments", "public.shipments_2025_01", "public shipments_2025_01",
                  "for role app_owner in schema billing on tables"):
        assert cls(es, label) == "pre", label
    assert cls(es, "app") == "dropped"
    assert cls(es, "pub_app") == "dropped"
    assert [e["desc"] for e in es if e["cls"] == "session"] == ["ENCODING", "STDSTRINGS", "SEARCHPATH"]


def test_summarize_counts_by_class_and_kind():
    counts = schema.summarize(entries())
    assert counts["held"]["fk constraint"] == 2
    assert counts["pre"]["table"] == 5
    assert counts["dropped"] == {"database": 1, "publication": 1}
    assert "session" not in counts


# --------------------------------------------------------------------------------------------
# Filters
# --------------------------------------------------------------------------------------------

def test_an_excluded_schema_takes_everything_in_it_and_what_depends_on_it():
    es = entries(scope_(schemas=("public",), out={16691, 16689}))
    for label in ("billing", "SCHEMA billing", "billing.invoices", "billing.invoice_no_seq",
                  "invoices_pkey on billing.invoices", "invoices_customer_id_fkey on billing.invoices",
                  "for role app_owner in schema billing on tables"):
        assert cls(es, label) == "excluded", label
    view = by_label(es)["public.open_invoices"]
    assert view["cls"] == "excluded" and view["reason"] == "depends on excluded table billing.invoices"
    assert cls(es, "public.customers") == "pre"


def test_an_excluded_table_takes_its_sequence_constraints_indexes_comments_and_privileges():
    es = entries(scope_(out={16428}))
    for label in ("public.customers", "public TABLE customers", "public COLUMN customers.email",
                  "public.customers_id_seq", "customers_pkey on public.customers", "public.customers_referred_by_idx",
                  "customers_audit on public.customers", "public.open_invoices",
                  "invoices_customer_id_fkey on billing.invoices"):
        assert cls(es, label) == "excluded", label
    assert by_label(es)["public.customers"]["reason"] == "left out by the migration's filters"
    assert cls(es, "billing.invoices") == "pre"


def test_partitions_and_their_attachments_follow_an_excluded_parent():
    es = entries(scope_(out={16490, 16500}))
    for label in ("public.shipments", "public.shipments_2025_01", "public shipments_2025_01",
                  "shipments_pkey on public.shipments", "public shipments_2025_01_pkey",
                  "public.shipments_2025_01_parcel_id_idx"):
        assert cls(es, label) == "excluded", label


def test_migrated_schemas():
    assert schema.migrated_schemas(["a", "b", "c"], [], ["b"]) == {"a", "c"}
    assert schema.migrated_schemas(["a", "b", "c"], ["a", "b"], ["b"]) == {"a"}


# --------------------------------------------------------------------------------------------
# What to restore
# --------------------------------------------------------------------------------------------

def present_all(es):
    return dict((e["key"], {}) for e in es if e["key"] and e["cls"] in ("pre", "held"))


ATTACHED = {"public.shipments_2025_01", "public.shipments_2025_01_pkey"}


def test_a_fresh_target_gets_every_pre_entry_and_the_session_settings():
    es = entries()
    chosen = schema.plan_restore(es, {}, set())
    assert [e["desc"] for e in chosen[:3]] == ["ENCODING", "STDSTRINGS", "SEARCHPATH"]
    assert set(e["dump_id"] for e in chosen if e["cls"] == "pre") == set(e["dump_id"] for e in es if e["cls"] == "pre")
    text = schema.restore_list(chosen)
    assert "3687; 2606 16436 CONSTRAINT public customers customers_pkey app_owner\n" in text
    assert "3778;" not in text and "3688;" not in text and "3934;" not in text  # FK, index, DATABASE
    # Archive order is kept (pg_restore -L restores in the list's order).
    ids = [int(line.split(";")[0]) for line in text.splitlines()]
    order = [e["dump_id"] for e in es]
    assert ids == sorted(ids, key=order.index)


def test_a_target_that_has_the_schema_gets_nothing():
    es = entries()
    assert schema.plan_restore(es, present_all(es), ATTACHED) == []


def test_a_missing_table_is_restored_with_what_describes_it():
    es = entries()
    present = present_all(es)
    for key in [("table", "public.customers"), ("sequence", "public.customers_id_seq"),
                ("table constraint", "customers_pkey on public.customers"),
                ("table constraint", "customers_email_fkey on public.customers")]:
        del present[key]
    chosen = set(schema.entry_label(e) for e in schema.plan_restore(es, present, ATTACHED) if e["cls"] == "pre")
    assert chosen == {"public.customers", "public TABLE customers", "public COLUMN customers.email",
                      "public.customers_id_seq", "customers_pkey on public.customers",
                      "public CONSTRAINT customers_pkey ON customers", "customers_email_fkey on public.customers"}


def test_a_detached_partition_is_attached_again():
    es = entries()
    chosen = schema.plan_restore(es, present_all(es), {"public.shipments_2025_01_pkey"})
    assert [schema.entry_label(e) for e in chosen if e["cls"] == "pre"] == ["public shipments_2025_01"]


# --------------------------------------------------------------------------------------------
# Conflicts
# --------------------------------------------------------------------------------------------

def inv(*items):
    return dict(((t, i), dict(type=t, identity=i, schema=s, sig=sig)) for t, i, s, sig in items)


SOURCE_INV = inv(
    ("table", "public.customers", "public", "table (id bigint not null, email text not null)"),
    ("table", "public.orders", "public", "table (id bigint not null)"),
    ("type", "public.status", "public", "enum ('new', 'done')"),
    ("extension", "btree_gist", None, "1.7"),
    ("index", "public.orders_idx", "public", "i"),
)
COMPARED = set(SOURCE_INV)


def test_the_same_schema_conflicts_with_nothing_extension_versions_and_column_order_aside():
    target = inv(
        ("table", "public.customers", "public", "table (email text not null, id bigint not null)"),
        ("table", "public.orders", "public", "table (id bigint not null)"),
        ("type", "public.status", "public", "enum ('new', 'done')"),
        ("extension", "btree_gist", None, "1.8"),
        ("extension", "plpgsql", "pg_catalog", "1.0"),
        ("table", "other.unrelated", "other", "table (x int)"),
    )
    assert schema.find_conflicts(SOURCE_INV, target, {"public"}, COMPARED) == []
    assert schema.find_conflicts(SOURCE_INV, {}, {"public"}, COMPARED) == []


def test_a_table_with_other_columns_and_objects_not_from_the_source_conflict():
    target = inv(
        ("table", "public.customers", "public", "table (id integer not null, email text not null, note text)"),
        ("type", "public.status", "public", "enum ('new', 'shipped', 'done')"),
        ("table", "public.stray", "public", "table (x integer)"),
        ("view", "public.orders", "public", "view (id bigint)"),
    )
    conflicts = schema.find_conflicts(SOURCE_INV, target, {"public"}, COMPARED)
    problems = dict((c["object"], c) for c in conflicts)
    assert set(problems) == {"public.customers", "public.status", "public.stray", "public.orders"}
    assert problems["public.customers"]["problem"] == (
        "differs from the source's: column(s) only on the source: id bigint not null; "
        "column(s) only on the target: id integer not null, note text")
    assert "enum ('new', 'done')" in problems["public.status"]["problem"]
    assert problems["public.stray"]["problem"] == "is in migrated schema public but not on the source"
    assert problems["public.orders"] == dict(object="public.orders", type="view",
                                             problem="the source has a table of this name, the target a view")
    message = schema.conflict_message(conflicts, "app")
    assert message.startswith("the target database app has 4 object(s) that conflict")
    assert "nothing was changed" in message and "- table public.stray is in migrated schema public" in message


def test_signature_difference():
    assert schema.signature_difference("table (a int, b int)", "table (b int, a int)") is None
    assert schema.signature_difference("table (a int)", "table unlogged (a int)") == \
        "the source has a table, the target a table unlogged"
    assert schema.signature_difference("domain integer", "domain bigint") == \
        "the source has domain integer, the target has domain bigint"


def test_database_differences():
    src = dict(name="app", encoding="UTF8", collate="C.UTF-8", ctype="C.UTF-8", locale_provider="c", locale=None)
    conflicts, warnings = schema.database_differences(src, dict(src, encoding="SQL_ASCII"))
    assert len(conflicts) == 1 and "ENCODING UTF8" in conflicts[0]["problem"] and warnings == []
    conflicts, warnings = schema.database_differences(src, dict(src, collate="en_US.UTF-8"))
    assert conflicts == [] and "collate" in warnings[0]


# --------------------------------------------------------------------------------------------
# Database and roles
# --------------------------------------------------------------------------------------------

SRC_DB = dict(name="app", encoding="UTF8", collate="en_US.UTF-8", ctype="en_US.UTF-8", locale_provider="i",
              locale="en-US", icu_rules=None, owner="app_owner", connection_limit=-1,
              acl=["PUBLIC=TEMPORARY", "app_user=CONNECT"], has_acl=True,
              settings=["work_mem=64MB", 'search_path="$user", public'])


def test_database_statement_keeps_encoding_collation_and_provider():
    stmt, warnings = schema.database_statement("app", SRC_DB, 180000)
    assert stmt.as_string(None) == (
        "CREATE DATABASE \"app\" WITH TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu "
        "LC_COLLATE 'en_US.UTF-8' LC_CTYPE 'en_US.UTF-8' ICU_LOCALE 'en-US'")
    assert warnings == []
    stmt, warnings = schema.database_statement("app", SRC_DB, 140000)
    assert "LOCALE_PROVIDER" not in stmt.as_string(None) and "icu" in warnings[0]


def test_database_acl_and_settings():
    stmts = [s.as_string(None) for s in schema.database_acl_statements("app", SRC_DB)]
    assert stmts == ['REVOKE ALL ON DATABASE "app" FROM PUBLIC', 'GRANT TEMPORARY ON DATABASE "app" TO PUBLIC',
                     'GRANT CONNECT ON DATABASE "app" TO "app_user"']
    assert schema.database_acl_statements("app", dict(SRC_DB, has_acl=False)) == []
    assert schema.acl_grantees(SRC_DB) == ["app_user"]
    assert schema.database_setting_statement("app", "work_mem=64MB").as_string(None) == \
        'ALTER DATABASE "app" SET "work_mem" = \'64MB\''
    assert schema.database_setting_statement("app", 'search_path="$user", public').as_string(None) == \
        'ALTER DATABASE "app" SET "search_path" = "$user", public'


def role(name, **kw):
    r = dict(name=name, superuser=False, inherit=True, createrole=False, createdb=False, login=False,
             replication=False, connection_limit=-1, bypassrls=False, member_of=[])
    r.update(kw)
    return r


def test_roles_are_created_without_superuser_and_without_passwords():
    source = [role("app_owner"), role("app_user", login=True, member_of=[dict(role="app_owner", admin=False)]),
              role("rds_admin", superuser=True, login=True, replication=True, bypassrls=True, createdb=True,
                   member_of=[dict(role="rds_superuser", admin=True)]),
              role("postgres", superuser=True), role("pg_read_all_data")]
    plan = schema.plan_roles(source, ["postgres"], target_superuser=False)
    assert [p["name"] for p in plan] == ["app_owner", "app_user", "rds_admin"]
    admin = plan[2]
    assert admin["attributes"] == ["LOGIN", "INHERIT", "CREATEDB"]
    assert admin["dropped_attributes"] == ["REPLICATION", "BYPASSRLS", "SUPERUSER"]
    assert admin["member_of"] == []  # rds_superuser is neither created nor on the target
    assert plan[1]["member_of"] == [dict(role="app_owner", admin=False)]
    texts = [s.as_string(None) for p in plan for s in schema.role_statements(p)]
    assert texts == ['CREATE ROLE "app_owner" WITH NOLOGIN INHERIT', 'CREATE ROLE "app_user" WITH LOGIN INHERIT',
                     'CREATE ROLE "rds_admin" WITH LOGIN INHERIT CREATEDB']
    assert not any("PASSWORD" in t or "SUPERUSER" in t for t in texts)
    assert schema.membership_statement("app_user", plan[1]["member_of"][0]).as_string(None) == \
        'GRANT "app_owner" TO "app_user"'


def test_a_superuser_target_login_keeps_replication_and_bypassrls_but_never_superuser():
    plan = schema.plan_roles([role("rep", login=True, replication=True, bypassrls=True, superuser=True,
                                   connection_limit=5)], [], target_superuser=True)
    assert plan[0]["attributes"] == ["LOGIN", "INHERIT", "REPLICATION", "BYPASSRLS"]
    assert plan[0]["dropped_attributes"] == ["SUPERUSER"]
    assert schema.role_statements(plan[0])[0].as_string(None) == \
        'CREATE ROLE "rep" WITH LOGIN INHERIT REPLICATION BYPASSRLS CONNECTION LIMIT 5'


# --------------------------------------------------------------------------------------------
# The post stage
# --------------------------------------------------------------------------------------------

def held_entry(desc, objid, dump_id=None):
    return dict(desc=desc, objid=objid, dump_id=dump_id or objid, deps=[], cls="held", reason="x", identity=None,
                namespace="public", tag=str(objid))


def index_row(oid, name, table, kind="i", parent=None, bytes_=0, depth=0, valid=True, description=None):
    schema_, table_name = table.split(".")
    row = dict(oid=oid, identity="public.%s" % name, schema="public", name=name, index_kind=kind, valid=valid,
               def_=None, table_schema=schema_, table_name=table_name, table_kind="p" if kind == "I" else "r",
               table_bytes=bytes_, parent=parent, parent_schema="public" if parent else None,
               parent_name=parent.split(".")[1] if parent else None, depth=depth, description=description)
    row["def"] = "CREATE INDEX %s ON %s%s USING btree (x)" % (name, "ONLY " if kind == "I" else "", table)
    return row


def fk_row(oid, name, table, table_kind="r", validated=True, contype="f", bytes_=0):
    definition = "FOREIGN KEY (x) REFERENCES public.parent(id)" if contype == "f" else "CHECK ((x > 0))"
    if not validated:
        definition += " NOT VALID"
    return dict(oid=oid, identity="%s on public.%s" % (name, table), type="table constraint", name=name,
                contype=contype, convalidated=validated, def_=None, table_schema="public", table_name=table,
                table_kind=table_kind, table_bytes=bytes_, domain_schema=None, domain_name=None, index=None,
                index_parent=None, description=None, **{"def": definition})


def test_post_plan_builds_indexes_in_parallel_largest_first_and_attaches_partitions():
    held = [held_entry("INDEX", 1), held_entry("INDEX", 2), held_entry("INDEX", 3), held_entry("INDEX", 4),
            held_entry("INDEX ATTACH", 0, dump_id=99)]
    details = dict(indexes=[
        index_row(1, "ship_idx", "public.ship", kind="I"),
        index_row(2, "ship_1_idx", "public.ship_1", parent="public.ship_idx", bytes_=10, depth=1),
        index_row(3, "big_idx", "public.big", bytes_=1000, description="lookups"),
        index_row(4, "bad_idx", "public.bad", valid=False),
    ])
    plan = schema.build_post_plan(held, details, {})

    def text(phase):
        return [s["sql"].as_string(None) for s in schema.phase_steps(plan, phase)]
    assert text("indexes_parent") == ["CREATE INDEX ship_idx ON ONLY public.ship USING btree (x)"]
    assert text("indexes") == ["CREATE INDEX big_idx ON public.big USING btree (x)",
                               "CREATE INDEX ship_1_idx ON public.ship_1 USING btree (x)"]
    assert text("attach") == ['ALTER INDEX "public"."ship_idx" ATTACH PARTITION "public"."ship_1_idx"']
    assert text("objects") == ['COMMENT ON INDEX "public"."big_idx" IS \'lookups\'']
    assert "invalid on the source" in plan["warnings"][0]
    assert plan["not_handled"] == []
    assert "indexes" in schema.PARALLEL_PHASES and "attach" not in schema.PARALLEL_PHASES


def test_post_plan_skips_what_the_target_has_and_rebuilds_an_invalid_leftover():
    held = [held_entry("INDEX", 1), held_entry("INDEX", 2), held_entry("INDEX", 3)]
    details = dict(indexes=[index_row(1, "a_idx", "public.a"), index_row(2, "b_idx", "public.b"),
                            index_row(3, "c_idx", "public.c", parent="public.p_idx")])
    target = {("index", "public.a_idx"): dict(valid=True), ("index", "public.b_idx"): dict(valid=False),
              ("index", "public.c_idx"): dict(valid=True, attached=True)}
    plan = schema.build_post_plan(held, details, target)
    assert [s["sql"].as_string(None) for s in plan["steps"]] == [
        'DROP INDEX "public"."b_idx"', "CREATE INDEX b_idx ON public.b USING btree (x)"]
    assert plan["existing"] == ["public.a_idx", "public.c_idx"]


def test_foreign_keys_are_added_not_valid_then_validated():
    held = [held_entry("FK CONSTRAINT", 1), held_entry("FK CONSTRAINT", 2), held_entry("FK CONSTRAINT", 3),
            held_entry("CHECK CONSTRAINT", 4), held_entry("FK CONSTRAINT", 5)]
    details = dict(constraints=[
        fk_row(1, "child_fk", "child", bytes_=5),
        fk_row(2, "part_fk", "part", table_kind="p", bytes_=50),
        fk_row(3, "lazy_fk", "lazy", validated=False),
        fk_row(4, "pos_check", "child", contype="c", validated=False),
        fk_row(5, "half_fk", "half"),
    ])
    target = {("table constraint", "half_fk on public.half"): dict(valid=False)}
    plan = schema.build_post_plan(held, details, target)
    adds = schema.phase_steps(plan, "constraints")
    assert [s["sql"].as_string(None) for s in adds] == [
        'ALTER TABLE ONLY "public"."child" ADD CONSTRAINT "child_fk" FOREIGN KEY (x) REFERENCES public.parent(id) '
        'NOT VALID',
        'ALTER TABLE "public"."part" ADD CONSTRAINT "part_fk" FOREIGN KEY (x) REFERENCES public.parent(id) NOT VALID',
        'ALTER TABLE ONLY "public"."lazy" ADD CONSTRAINT "lazy_fk" FOREIGN KEY (x) REFERENCES public.parent(id) '
        'NOT VALID',
        'ALTER TABLE "public"."child" ADD CONSTRAINT "pos_check" CHECK ((x > 0)) NOT VALID',
    ]
    # A partitioned table: if the target refuses NOT VALID there (before PostgreSQL 18), the plain form.
    assert adds[1]["plain"].as_string(None) == \
        'ALTER TABLE "public"."part" ADD CONSTRAINT "part_fk" FOREIGN KEY (x) REFERENCES public.parent(id)'
    assert adds[0]["plain"] is None
    # Validated: what is valid on the source, largest table first; the half-done one too. Never the
    # constraints that are NOT VALID on the source.
    assert [s["sql"].as_string(None) for s in schema.phase_steps(plan, "validate")] == [
        'ALTER TABLE "public"."part" VALIDATE CONSTRAINT "part_fk"',
        'ALTER TABLE "public"."child" VALIDATE CONSTRAINT "child_fk"',
        'ALTER TABLE "public"."half" VALIDATE CONSTRAINT "half_fk"',
    ]
    assert plan["existing"] == ["half_fk on public.half"]


def test_triggers_keep_their_enabled_state_and_clones_theirs():
    held = [held_entry("TRIGGER", 1), held_entry("TRIGGER", 2), held_entry("TRIGGER", 3)]

    def trig(oid, name, enabled):
        definition = "CREATE TRIGGER %s AFTER INSERT ON public.t FOR EACH ROW EXECUTE FUNCTION public.f()" % name
        return dict(oid=oid, identity="%s on public.t" % name, name=name, enabled=enabled, table_schema="public",
                    table_name="t", description=None, **{"def": definition})
    details = dict(triggers=[trig(1, "audit", "A"), trig(2, "quiet", "D"), trig(3, "plain", "O")],
                   trigger_clones=[dict(name="audit", enabled="D", parent_enabled="A", table_schema="public",
                                        table_name="t_1", identity="audit on public.t_1")])
    target = {("trigger", "plain on public.t"): dict(enabled="D")}
    plan = schema.build_post_plan(held, details, target)
    assert [s["sql"].as_string(None) for s in plan["steps"]] == [
        "CREATE TRIGGER audit AFTER INSERT ON public.t FOR EACH ROW EXECUTE FUNCTION public.f()",
        'ALTER TABLE "public"."t" ENABLE ALWAYS TRIGGER "audit"',
        "CREATE TRIGGER quiet AFTER INSERT ON public.t FOR EACH ROW EXECUTE FUNCTION public.f()",
        'ALTER TABLE "public"."t" DISABLE TRIGGER "quiet"',
        'ALTER TABLE "public"."t" ENABLE TRIGGER "plain"',  # exists, but disabled on the target
        'ALTER TABLE "public"."t_1" DISABLE TRIGGER "audit"',
    ]
    assert any("audit on public.t is enabled always" in w for w in plan["warnings"])
    # Once mirrored, nothing more to do.
    target = {("trigger", "%s on public.t" % n): dict(enabled=e) for n, e in (("audit", "A"), ("quiet", "D"),
                                                                              ("plain", "O"))}
    target[("trigger", "audit on public.t_1")] = dict(enabled="D")
    assert schema.build_post_plan(held, details, target)["steps"] == []


def test_rules_policies_row_security_statistics_event_triggers_and_comments():
    held = [held_entry("RULE", 1), held_entry("POLICY", 2), held_entry("ROW SECURITY", 3),
            held_entry("STATISTICS", 4), held_entry("EVENT TRIGGER", 5), held_entry("SECURITY LABEL", 6)]
    details = dict(
        rules=[dict(oid=1, identity="r1 on public.t", name="r1", enabled="D", table_schema="public", table_name="t",
                    description=None, **{"def": "CREATE RULE r1 AS\n    ON DELETE TO public.t DO INSTEAD NOTHING;"})],
        policies=[dict(oid=2, identity="p1 on public.t", name="p1", permissive=False, cmd="r",
                       roles=["app_user", "public"], qual="(owner = CURRENT_USER)", with_check=None,
                       table_schema="public", table_name="t", description="own rows")],
        row_security=[dict(oid=3, identity="public.t", table_schema="public", table_name="t", enabled=True,
                           forced=True)],
        statistics=[dict(oid=4, identity="public.st", schema="public", name="st", description=None,
                         **{"def": "CREATE STATISTICS public.st ON a, b FROM public.t"})],
        event_triggers=[dict(oid=5, identity="ddl_log", name="ddl_log", event="ddl_command_end",
                             tags=["CREATE TABLE"], enabled="R", function_schema="public", function_name="log_ddl",
                             description=None)],
    )
    plan = schema.build_post_plan(held, details, {("table", "public.t"): dict(enabled="rls")})
    assert [s["sql"].as_string(None) for s in plan["steps"]] == [
        "CREATE RULE r1 AS\n    ON DELETE TO public.t DO INSTEAD NOTHING",
        'ALTER TABLE "public"."t" DISABLE RULE "r1"',
        'CREATE POLICY "p1" ON "public"."t" AS RESTRICTIVE FOR SELECT TO "app_user", PUBLIC '
        'USING ((owner = CURRENT_USER))',
        'ALTER TABLE "public"."t" FORCE ROW LEVEL SECURITY',  # already enabled on the target
        "CREATE STATISTICS public.st ON a, b FROM public.t",
        'CREATE EVENT TRIGGER "ddl_log" ON ddl_command_end WHEN TAG IN (\'CREATE TABLE\') '
        'EXECUTE FUNCTION "public"."log_ddl"()',
        'ALTER EVENT TRIGGER "ddl_log" ENABLE REPLICA',
        'COMMENT ON POLICY "p1" ON "public"."t" IS \'own rows\'',
    ]
    assert plan["not_handled"] == [dict(kind="security label", object="public 6", reason="x")]


@pytest.mark.parametrize("rows,expected", [
    ([dict(relkind="r", persistence="u", qualified="public.cache")], dict(unlogged_tables=["public.cache"])),
    ([dict(relkind="m", persistence="p", qualified="public.stats")], dict(materialized_views=["public.stats"])),
    ([dict(relkind="f", persistence="p", qualified="public.remote")], dict(foreign_tables=["public.remote"])),
])
def test_not_replicated(rows, expected):
    result = schema.not_replicated(rows, [dict(schema="public", name="Seq", owned_by=None, identity=False)], 3)
    for key, value in expected.items():
        assert result[key] == value
    assert result["large_objects"] == 3
    assert result["sequences"] == [dict(sequence='public."Seq"', owned_by=None, identity=False)]
