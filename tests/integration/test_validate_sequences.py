"""gather_sequences on the demo dataset (PG16) and on a copy (PG18): columns found, plan decided, set."""

from __future__ import annotations

from psycopg import sql

from ansible_collections.pgshift.aurora.plugins.module_utils._pg import freeze, sequences

from validate_data import copy_db, load_demo


def test_gather_sequences_finds_identity_serial_and_default_columns(source_cluster, target_cluster, new_db):
    src_db = new_db(source_cluster)
    load_demo(source_cluster, src_db)
    with source_cluster.connect(src_db) as conn:
        conn.execute("CREATE SEQUENCE public.countdown INCREMENT BY -1 MINVALUE -1000 MAXVALUE -1 START -1")
        conn.execute("CREATE TABLE public.down (id int NOT NULL DEFAULT nextval('public.countdown'), v text)")
        conn.execute("INSERT INTO public.down (v) SELECT 'x' FROM generate_series(1, 5)")
        src = sequences.gather_sequences(conn)
    by_name = dict((s["sequence"], s) for s in src)
    assert set(by_name) >= {"public.customers_id_seq", "public.tracking_events_id_seq", "billing.invoice_no_seq",
                            'public."CustomsDeclarations_Id_seq"', "public.shipments_id_seq", "public.countdown"}
    cust = by_name["public.customers_id_seq"]
    assert (cust["last_value"], cust["is_called"], cust["increment_by"]) == (2000, True, 1)
    assert cust["columns"] == [dict(table="public.customers", table_schema="public", table_name="customers",
                                    column="id", max=2000, min=1)]
    # a standalone sequence, not OWNED BY, found through the column default
    inv = by_name["billing.invoice_no_seq"]
    assert inv["columns"] == [dict(table="billing.invoices", table_schema="billing", table_name="invoices",
                                   column="invoice_no", max=103000, min=100001)]
    # identity on a partitioned table: the parent, not each partition again
    ship = by_name["public.shipments_id_seq"]
    assert [c["table"] for c in ship["columns"]] == ["public.shipments"]
    assert ship["columns"][0]["max"] == 12300
    # serial with an inheritance tree: the parent (ONLY: no rows) and its children's defaults
    track = by_name["public.tracking_events_id_seq"]
    tables = dict((c["table"], c["max"]) for c in track["columns"])
    assert tables["public.tracking_events"] is None
    assert max(v for v in tables.values() if v is not None) == 24000
    down = by_name["public.countdown"]
    assert (down["last_value"], down["increment_by"], down["columns"][0]["min"]) == (-5, -1, -5)
    assert [s["schema"] for s in sequences.gather_sequences(source_cluster.connect(src_db), schemas=["billing"])] \
        == ["billing", "billing"]

    tgt_db = new_db(target_cluster)
    copy_db(source_cluster, src_db, target_cluster, tgt_db)
    with target_cluster.connect(tgt_db) as conn:
        tgt = sequences.gather_sequences(conn)
        assert sequences.sequence_plan(src, tgt) and all(e["status"] == "ok" for e in sequences.sequence_plan(src, tgt))
        conn.execute("SELECT setval('public.customers_id_seq', 10)")
        conn.execute("SELECT setval('public.countdown', -2)")
        tgt = sequences.gather_sequences(conn)
        plan = dict((e["sequence"], e) for e in sequences.sequence_plan(src, tgt, gap=100))
        assert plan["public.customers_id_seq"]["status"] == "behind"
        assert plan["public.customers_id_seq"]["set_to"] == 2100
        assert plan["public.countdown"]["set_to"] == -105
        freeze.setval_all(conn, [(plan[name]["schema"], plan[name]["name"], plan[name]["set_to"])
                                 for name in ("public.customers_id_seq", "public.countdown")])
        after = dict((e["sequence"], e) for e in sequences.sequence_plan(src, sequences.gather_sequences(conn), gap=100))
        assert after["public.customers_id_seq"]["status"] == "ok"
        assert after["public.countdown"]["status"] == "ok"
        assert conn.execute("SELECT nextval('public.customers_id_seq')").fetchone()[0] == 2101
        assert conn.execute("SELECT nextval('public.countdown')").fetchone()[0] == -106


def test_a_shared_sequence_with_hard_names_is_matched_and_set_by_schema_and_name(source_cluster, target_cluster,
                                                                                 new_db):
    ops, archive = "Shipping Ops", 'eu.west "archive"'
    seq = sql.Identifier(ops, "Order No.")
    ddl = [sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(ops)),
           sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(archive)),
           sql.SQL("CREATE SEQUENCE {} START 1000").format(seq),
           # a decoy: the same text once joined with a dot, another schema and another name
           sql.SQL("CREATE SCHEMA {}").format(sql.Identifier("Shipping Ops.Order")),
           sql.SQL("CREATE SEQUENCE {} START 5").format(sql.Identifier("Shipping Ops.Order", "No.")),
           sql.SQL("CREATE TABLE {} ({} bigint DEFAULT nextval({}::regclass) PRIMARY KEY)").format(
               sql.Identifier(ops, "order"), sql.Identifier("Order No."), sql.Literal(seq.as_string(None))),
           sql.SQL("CREATE TABLE {} (id bigint DEFAULT nextval({}::regclass), {} text)").format(
               sql.Identifier(archive, "Zöll_Tarife"), sql.Literal(seq.as_string(None)),
               sql.Identifier('Unit "Price"'))]
    src_db, tgt_db = new_db(source_cluster), new_db(target_cluster)
    source_cluster.execute(src_db, ddl + [
        sql.SQL("INSERT INTO {} SELECT FROM generate_series(1, 30)").format(sql.Identifier(ops, "order")),
        sql.SQL("INSERT INTO {} (id) VALUES (5000)").format(sql.Identifier(archive, "Zöll_Tarife"))])
    target_cluster.execute(tgt_db, ddl)
    with source_cluster.master_connect(src_db) as conn:
        src = sequences.gather_sequences(conn)
    by_ident = dict(((s["schema"], s["name"]), s) for s in src)
    shared = by_ident[(ops, "Order No.")]
    assert shared["sequence"] == '"Shipping Ops"."Order No."' and shared["last_value"] == 1029
    assert sorted((c["table_schema"], c["table_name"], c["column"], c["max"]) for c in shared["columns"]) == [
        (ops, "order", "Order No.", 1029), (archive, "Zöll_Tarife", "id", 5000)]
    assert by_ident[("Shipping Ops.Order", "No.")]["columns"] == []
    with target_cluster.master_connect(tgt_db) as conn:
        plan = sequences.sequence_plan(src, sequences.gather_sequences(conn), gap=10)
        entry = [e for e in plan if (e["schema"], e["name"]) == (ops, "Order No.")][0]
        assert (entry["status"], entry["required_next"], entry["set_to"]) == ("behind", 5011, 5010)
        decoy = [e for e in plan if e["schema"] == "Shipping Ops.Order"][0]
        assert decoy["status"] == "behind" and decoy["set_to"] == 14
        freeze.setval_all(conn, [(e["schema"], e["name"], e["set_to"]) for e in (entry, decoy)])
        assert conn.execute(sql.SQL("SELECT nextval({}::regclass)").format(
            sql.Literal(seq.as_string(conn)))).fetchone()[0] == 5011
        assert all(e["status"] == "ok" for e in sequences.sequence_plan(src, sequences.gather_sequences(conn), gap=10))
