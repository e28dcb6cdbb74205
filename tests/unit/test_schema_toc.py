"""schema/toc.py: the archive's table of contents parsed, annotated from the catalog, classified (pre, held,
excluded, dropped, session), the migration's filters."""

from __future__ import annotations

from ansible_collections.pgshift.aurora.plugins.module_utils.schema import toc
from schema_data import (
    CATALOG, HARD_CATALOG, HARD_RELATIONS, TOC, by_label, cls, entries, hard, hard_entries, key, scope_)


def test_parse_toc_reads_descs_with_spaces_catalog_ids_and_dependencies():
    es = {e["dump_id"]: e for e in toc.parse_toc(TOC)}
    assert es[3645]["desc"] == "TABLE ATTACH" and es[3645]["deps"] == [228, 227]
    assert es[3778]["desc"] == "FK CONSTRAINT" and es[3778]["classid"] == 2606 and es[3778]["objid"] == 16705
    # What follows the description is kept whole, for display: never split into names.
    assert es[3778]["text"] == "billing invoices invoices_customer_id_fkey app_owner"
    assert "namespace" not in es[3778] and "tag" not in es[3778] and "owner" not in es[3778]
    assert es[2]["desc"] == "EXTENSION" and es[2]["text"] == "- btree_gist "
    assert es[3941]["text"] == "public COLUMN customers.email app_owner" and es[3941]["deps"] == [221, 3940]
    assert es[2482]["desc"] == "DEFAULT ACL" and es[2482]["text"] == "billing DEFAULT PRIVILEGES FOR TABLES app_owner"
    assert es[3927]["desc"] == "ROW SECURITY" and (es[3927]["classid"], es[3927]["objid"]) == (0, 16446)
    assert es[3931]["desc"] == "ENCODING"
    # The line is kept as pg_restore printed it: pg_restore -L reads it back.
    assert es[3701]["line"] == "3701; 2606 16504 CONSTRAINT public shipments_2025_01 shipments_2025_01_pkey app_owner"
    assert len(es) == len([line for line in TOC.splitlines() if line and not line.startswith(";")])


def test_annotate_takes_schema_and_owner_from_the_catalog_and_gives_them_to_what_describes_an_object():
    es = {e["dump_id"]: e for e in entries()}
    assert (es[3778]["schema"], es[3778]["owner"]) == ("billing", "app_owner")
    assert es[3778]["key"] == key("table constraint", "billing", "invoices", "invoices_customer_id_fkey")
    assert (es[3754]["schema"], es[3754]["owner"]) == ("public", "postgres")
    # A column's privileges, a comment, a ROW SECURITY switch: the object they describe.
    assert (es[3941]["schema"], es[3941]["owner"], es[3941]["key"]) == ("public", "app_owner", None)
    assert (es[3944]["schema"], es[3944]["owner"]) == ("public", "app_owner")
    assert (es[3927]["schema"], es[3927]["owner"]) == ("public", "app_owner")
    # An ATTACH names the partition it attaches (by its key).
    assert es[3645]["child"] == key("table", "public", "shipments_2025_01")
    assert es[3756]["child"] == key("index", "public", "shipments_2025_01_pkey")
    # The report's label of an entry that is no catalog object: what pg_restore prints, without its owner.
    assert toc.entry_label(es[3941]) == "public COLUMN customers.email"
    assert toc.entry_label(es[3935]) == "SCHEMA billing"
    assert toc.entry_label(es[3936]) == "EXTENSION btree_gist"


def test_catalog_keys_are_the_entries_that_are_catalog_objects():
    keys = toc.catalog_keys(toc.parse_toc(TOC))
    assert (2606, 16705) in keys and (1259, 16428) in keys
    assert all(k[0] and k[1] for k in keys)
    assert (0, 16446) not in keys


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
    es = toc.parse_toc(TOC)
    toc.annotate(es, catalog)
    toc.classify(es, scope_())
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
    assert cls(es, "pub_app postgres") == "dropped"  # no catalog facts: as pg_restore prints it
    assert [e["desc"] for e in es if e["cls"] == "session"] == ["ENCODING", "STDSTRINGS", "SEARCHPATH"]


def test_summarize_counts_by_class_and_kind():
    counts = toc.summarize(entries())
    assert counts["held"]["fk constraint"] == 2
    assert counts["pre"]["table"] == 5
    assert counts["dropped"] == {"database": 1, "publication": 1}
    assert "session" not in counts


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
    assert toc.migrated_schemas(["a", "b", "c"], [], ["b"]) == {"a", "c"}
    assert toc.migrated_schemas(["a", "b", "c"], ["a", "b"], ["b"]) == {"a"}


def test_a_mixed_case_schema_keeps_its_tables_keys_identities_sequences_and_defaults():
    """The reported bug: in "Shipping Ops" the table was restored but its primary key and identity sequence were
    left out as 'schema not migrated' (pg_identify_object's schema is quoted: '"Shipping Ops"')."""
    es = hard_entries()
    for dump_id in (6, 7, 218, 3268, 217, 216, 220, 3270, 3272, 3260, 3263, 3274, 3276, 3278, 859, 856, 233,
                    224, 223, 225, 3280, 227, 226, 3283, 228, 229, 230, 231, 3285, 3289, 3292, 3295, 3255, 3256,
                    3257, 3297, 3299, 3301, 232, 3461, 3462, 3464):
        e = hard(es, dump_id)
        assert e["cls"] == "pre", (dump_id, toc.entry_label(e), e["reason"])
    assert hard(es, 3268)["reason"] == "primary key (replica identity)"
    assert hard(es, 3270)["reason"] == "unique constraint"
    # Held back as anywhere else: secondary indexes, the foreign keys (one across the two schemas), the trigger.
    for dump_id in (3266, 3281, 3286, 3287, 3290, 3293, 3296, 3298, 3300):
        assert hard(es, dump_id)["cls"] == "held", dump_id
    assert [toc.entry_label(e) for e in es if e["desc"] in ("FK CONSTRAINT", "TRIGGER")] == [
        '"Audit ""order"" changes" on "Shipping Ops"."order"', '"Lines → order" on "Shipping Ops"."select"',
        '"FK Zöll → order" on "eu.west ""archive"""."Zöll_Tarife"']
    assert all(e["cls"] == "held" for e in es if e["desc"] in ("FK CONSTRAINT", "TRIGGER"))


def test_a_hard_schema_left_out_takes_its_objects_and_the_foreign_key_into_it_only():
    es = hard_entries(schemas={"Shipping Ops"},
                      out=[o for o in HARD_RELATIONS if HARD_CATALOG[(1259, o)]["nspname"] == 'eu.west "archive"'])
    assert hard(es, 7)["reason"] == "schema not migrated (include_schemas/exclude_schemas)"
    assert hard(es, 226)["reason"] == 'schema "eu.west ""archive""" not migrated'  # the 63-byte table's sequence
    assert hard(es, 3303)["cls"] == "excluded"  # "FK Zöll → order" lives in the archive
    assert hard(es, 3302)["cls"] == "held"  # "Lines → order" stays
    assert hard(es, 218)["cls"] == "pre" and hard(es, 3268)["cls"] == "pre"
    # The partition in "Shipping Ops" follows its parent in the archive.
    assert hard(es, 230)["cls"] == "excluded" and hard(es, 3292)["cls"] == "excluded"


def test_entries_of_hard_names_get_schema_owner_key_and_label_from_the_catalog():
    es = hard_entries()
    seq = hard(es, 216)
    assert (seq["schema"], seq["owner"]) == ("Shipping Ops", "app_owner")
    assert seq["key"] == key("sequence", "Shipping Ops", 'Global.Ref "No"')
    long_pk = hard(es, 3283)
    assert long_pk["key"] == key("table constraint", 'eu.west "archive"',
                                 "Tracking events per parcel, delivery attempt & depot (63 bytes)", "Tracking 63 PK")
    assert hard(es, 3256)["child"] == key("table", "Shipping Ops", "Events.2025-02")
    assert hard(es, 3299)["child"] == key("index", "Shipping Ops", "Events.2025-02_pkey")
    column_acl = hard(es, 3462)
    assert (column_acl["schema"], column_acl["owner"]) == ("Shipping Ops", "app_owner")
    assert toc.entry_label(column_acl) == 'Shipping Ops COLUMN "order"."CamelCase"'
    assert toc.entry_label(hard(es, 3455)) == 'SCHEMA "eu.west ""archive"""'
