"""gather_sequences on the demo dataset (PG15) and on a copy (PG18): columns found, plan decided."""

from __future__ import annotations

from ansible_collections.pgshift.aurora.plugins.module_utils._pg import sequences

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
    assert cust["columns"] == [dict(table="public.customers", column="id", max=2000, min=1)]
    # a standalone sequence, not OWNED BY, found through the column default
    inv = by_name["billing.invoice_no_seq"]
    assert inv["columns"] == [dict(table="billing.invoices", column="invoice_no", max=103000, min=100001)]
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
        for name in ("public.customers_id_seq", "public.countdown"):
            conn.execute("SELECT setval(%s::regclass, %s, true)", (name, plan[name]["set_to"]))
        after = dict((e["sequence"], e) for e in sequences.sequence_plan(src, sequences.gather_sequences(conn), gap=100))
        assert after["public.customers_id_seq"]["status"] == "ok"
        assert after["public.countdown"]["status"] == "ok"
        assert conn.execute("SELECT nextval('public.customers_id_seq')").fetchone()[0] == 2101
        assert conn.execute("SELECT nextval('public.countdown')").fetchone()[0] == -106
