"""pg_validate on the demo dataset: PG16 source, a pg_dump copy on PG18 as the target.

With nothing injected the two compare equal (values that print differently across versions
included); every kind of difference injected into the target is found and named.
"""

from __future__ import annotations

import re

import pytest

from modrunner import run_module
from pgcluster import ADMIN_PASSWORD

from validate_data import copy_db, load_demo

# Values whose text is not the same on every version or that compare badly as text.
TRICKY = [
    "CREATE TABLE public.tricky (id int PRIMARY KEY, f8 float8, f4 float4, n numeric, ts timestamptz, "
    "j jsonb, fa float8[], na numeric[], tsa timestamptz[], b bytea, t text, iv interval, m money, u uuid)",
    "INSERT INTO public.tricky SELECT g, 0.1 * g + 1e-17, (g / 3.0)::float4, (g / 7.0)::numeric(20, 10), "
    "timestamptz '2025-03-30 01:59:59.123456+01' + g * interval '17 minutes', "
    "jsonb_build_object('z', g, 'a', ARRAY[g, g + 1], 'm', jsonb_build_object('y', 1.50, 'x', null)), "
    "ARRAY[1.0 / g, 1e300 * g, 'NaN'::float8, '-Infinity'], ARRAY[1.50, 2.000 * g], "
    "ARRAY[timestamptz '2000-01-01 00:00:00+05' + g * interval '1 day'], decode(repeat(md5(g::text), 10), 'hex'), "
    "repeat('ä' || g, 3000), make_interval(days => g, secs => g * 1.5), g * 1.25, md5(g::text)::uuid "
    "FROM generate_series(1, 300) g",
    "INSERT INTO public.tricky (id) VALUES (1000)",
]

OPTIONS = dict(chunk_rows=700, row_level_rows=40, parallel=2, max_differences=50)


@pytest.fixture(scope="module")
def demo(source_cluster):
    """The demo dataset (plus TRICKY) on the PG15 source, loaded once."""
    db = "validate_demo"
    source_cluster.create_database(db)
    load_demo(source_cluster, db)
    source_cluster.execute(db, TRICKY)
    yield db
    with source_cluster.connect() as conn:
        conn.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % db)


@pytest.fixture
def copy(demo, source_cluster, target_cluster, new_db):
    db = new_db(target_cluster)
    copy_db(source_cluster, demo, target_cluster, db)
    return db


def run(source_cluster, src_db, target_cluster, tgt_db, **extra):
    params = source_cluster.module_params(src_db)
    params.update(("target_" + k, v) for k, v in target_cluster.module_params(tgt_db).items())
    params.update(OPTIONS)
    params.update(extra)
    result, raw = run_module("pg_validate", params)
    assert ADMIN_PASSWORD not in raw
    assert not result.get("failed"), result.get("msg")
    return result


def by_table(result):
    return dict((t["table"], t) for t in result["tables"])


def test_same_data_pg16_and_pg18_is_equal(source_cluster, target_cluster, demo, copy):
    assert source_cluster.query(demo, "SHOW server_version_num")[0][0].startswith("16")
    assert target_cluster.query(copy, "SHOW server_version_num")[0][0].startswith("18")
    result = run(source_cluster, demo, target_cluster, copy)
    assert result["reasons"] == []
    assert result["verdict"] == "GO"
    tables = by_table(result)
    # every leaf and child on its own, the unlogged table skipped, no parent of a declarative tree
    assert "public.shipments" not in tables and "public.shipments_default" in tables
    assert "public.tracking_events_2025_03" in tables and "public.tracking_events" in tables
    assert [s["table"] for s in result["skipped"]] == ["public.session_cache"]
    assert all(t["result"] == "equal" and t["differences"] == [] for t in tables.values())
    counts = dict((name, source_cluster.query(demo, "SELECT count(*) FROM ONLY %s" % name)[0][0]) for name in tables)
    assert dict((n, t["rows_source"]) for n, t in tables.items()) == counts
    assert dict((n, t["rows_target"]) for n, t in tables.items()) == counts
    assert tables["public.tricky"]["rows_source"] == 301
    assert result["schema"] == []
    assert result["sequences"] and all(s["status"] == "ok" for s in result["sequences"])
    assert result["summary"]["rows_compared"] == sum(counts.values())
    assert result["summary"]["differences"] == 0


def test_changed_value_in_tricky_types_is_found(source_cluster, target_cluster, demo, copy):
    # a float one ulp away, a numeric with the same value but another scale stays equal
    target_cluster.execute(copy, [
        "UPDATE public.tricky SET f8 = f8 + 1e-15 WHERE id = 7",
        "UPDATE public.tricky SET na = ARRAY[1.5, 2.0 * 9] WHERE id = 9",  # same values, other scales
        "UPDATE public.tricky SET j = '{\"a\": [12, 13], \"z\": 12, \"m\": {\"x\": null, \"y\": 1.50}}' WHERE id = 12",
    ])
    result = run(source_cluster, demo, target_cluster, copy, check_schema=False, check_sequences=False)
    tricky = by_table(result)["public.tricky"]
    assert tricky["differences"] == [dict(kind="changed", key=["7"], columns=["f8"], range=tricky["differences"][0]["range"])]
    assert result["verdict"] == "NO-GO"


def test_each_injected_difference_is_found_and_named(source_cluster, target_cluster, demo, copy):
    target_cluster.execute(copy, [
        "SET session_replication_role = replica",  # no audit trigger, no FK checks: only the injected change
        "DELETE FROM public.tracking_events_2025_03 WHERE id = (SELECT id FROM public.tracking_events_2025_03 "
        "ORDER BY id OFFSET 500 LIMIT 1)",
        "INSERT INTO public.customers (id, name, email, country, preferences, created_at) OVERRIDING SYSTEM VALUE "
        "VALUES (99999, 'Extra', 'extra@example.com', 'DE', '{}', '2025-01-01')",
        "UPDATE public.parcels SET status = 'lost' WHERE id = 4242 AND status <> 'lost'",
        "INSERT INTO public.carrier_rates SELECT * FROM public.carrier_rates WHERE zone = 'Z5' AND carrier_code = 'UPS' "
        "ORDER BY valid_from LIMIT 1",
        "UPDATE public.shipments_2025_02 SET details = '{\"service\": \"teleport\"}' WHERE id = "
        "(SELECT id FROM public.shipments_2025_02 ORDER BY id OFFSET 1234 LIMIT 1)",
        "SELECT setval('billing.invoice_no_seq', 100500)",
        "ALTER TABLE public.customers DISABLE TRIGGER customers_audit",
        "DROP INDEX public.parcels_customer_id_idx",
    ], operator=True)  # session_replication_role: the operator, not the app owner
    deleted = source_cluster.query(demo, "SELECT id FROM public.tracking_events_2025_03 ORDER BY id OFFSET 500 LIMIT 1")[0][0]
    assert not target_cluster.query(copy, "SELECT 1 FROM public.tracking_events_2025_03 WHERE id = %s", (deleted,))
    result = run(source_cluster, demo, target_cluster, copy, mode="quiesced")
    assert result["verdict"] == "NO-GO"
    tables = by_table(result)
    different = dict((n, t["differences"]) for n, t in tables.items() if t["result"] != "equal")
    assert sorted(different) == ["public.carrier_rates", "public.customers", "public.parcels",
                                 "public.shipments_2025_02", "public.tracking_events_2025_03"]
    # a composite key (id, shipped_at): narrowed by boundaries read in key order
    (ship,) = different["public.shipments_2025_02"]
    shipped = target_cluster.query(copy, "SELECT id::text FROM public.shipments_2025_02 "
                                         "WHERE details ->> 'service' = 'teleport'")[0]
    assert (ship["kind"], ship["key"][0], ship["columns"]) == ("changed", shipped[0], ["details"])
    assert [(d["kind"], d["key"]) for d in different["public.tracking_events_2025_03"]] == [("missing", [str(deleted)])]
    assert [(d["kind"], d["key"]) for d in different["public.customers"]] == [("extra", ["99999"])]
    assert [(d["kind"], d["key"], d["columns"]) for d in different["public.parcels"]] == [("changed", ["4242"], ["status"])]
    (dup,) = different["public.carrier_rates"]
    assert (dup["kind"], dup["count"]) == ("extra", 1) and dup["key"][0].startswith("(UPS,Z5,")
    assert tables["public.carrier_rates"]["rows_target"] == tables["public.carrier_rates"]["rows_source"] + 1
    assert tables["public.customers"]["rows_target"] == tables["public.customers"]["rows_source"] + 1
    # sequences: the one set back is behind; the identity of customers is behind its column now (99999)
    behind = dict((s["sequence"], s) for s in result["sequences"] if s["status"] != "ok")
    assert sorted(behind) == ["billing.invoice_no_seq", "public.customers_id_seq"]
    assert behind["billing.invoice_no_seq"]["target_next"] == 100501
    assert behind["billing.invoice_no_seq"]["required_next"] == 103001
    assert behind["public.customers_id_seq"]["required_next"] == 100000
    schema = sorted((d["kind"], d["object"], d["difference"]) for d in result["schema"])
    assert schema == [("index", "public.parcels: parcels_customer_id_idx", "missing_on_target"),
                      ("trigger", "public.customers: customers_audit", "differs")]
    messages = " | ".join(result["reasons"])
    for needle in ("trigger public.customers: customers_audit is enabled on the source and disabled on the target",
                   "index public.parcels: parcels_customer_id_idx is missing on the target",
                   "sequence billing.invoice_no_seq is behind", "public.parcels differs", "public.carrier_rates differs"):
        assert needle in messages


def test_live_mode_does_not_gate_on_sequences(source_cluster, target_cluster, demo, copy):
    target_cluster.execute(copy, ["SELECT setval('billing.invoice_no_seq', 100500)"])
    result = run(source_cluster, demo, target_cluster, copy, mode="live", slot_prefix="none_such_", check_schema=False)
    assert result["verdict"] == "GO"
    assert result["sequences_gated"] is False
    assert [s["sequence"] for s in result["sequences"] if s["status"] != "ok"] == ["billing.invoice_no_seq"]
    result = run(source_cluster, demo, target_cluster, copy, mode="live", slot_prefix="x", sequences_gate="always",
                 check_schema=False)
    assert result["verdict"] == "NO-GO"


def test_bad_options_and_connection_say_what_to_do(source_cluster, target_cluster, demo):
    params = source_cluster.module_params(demo)
    params.update(("target_" + k, v) for k, v in target_cluster.module_params(demo).items())
    params["mode"] = "live"
    result, raw = run_module("pg_validate", params)
    assert result["failed"] and "slot_prefix" in result["msg"]
    params.update(mode="quiesced", target_login_password="wrong-" + ADMIN_PASSWORD)
    result, raw = run_module("pg_validate", params)
    assert result["failed"] and "authentication failed" in result["msg"]
    assert ADMIN_PASSWORD not in raw


def write_inventory(tmp_path, source_cluster, target_cluster, src_db, tgt_db):
    import yaml
    root = tmp_path / "inv"
    (root / "host_vars").mkdir(parents=True)
    (root / "group_vars" / "all").mkdir(parents=True)
    hosts = dict(all=dict(vars=dict(ansible_connection="local", ansible_python_interpreter="{{ ansible_playbook_python }}"),
                          children=dict(source=dict(hosts={"it-source": None}), target=dict(hosts={"it-target": None}))))
    (root / "hosts.yml").write_text(yaml.safe_dump(hosts))
    for host, cluster, db in (("it-source", source_cluster, src_db), ("it-target", target_cluster, tgt_db)):
        (root / "host_vars" / ("%s.yml" % host)).write_text(yaml.safe_dump(dict(
            db_host="127.0.0.1", db_port=cluster.port, db_name=db, db_user="postgres", db_password=ADMIN_PASSWORD,
            db_sslmode="disable")))
    (root / "group_vars" / "all" / "migration.yml").write_text(yaml.safe_dump(dict(
        migration_name="it_validate", report_dir=str(tmp_path / "reports"))))
    return str(root / "hosts.yml")


def test_playbook_reports_and_gates(tmp_path, source_cluster, target_cluster, demo, copy):
    import json
    from modrunner import run_playbook
    inventory = write_inventory(tmp_path, source_cluster, target_cluster, demo, copy)
    extra = ["-e", "validate_mode=quiesced", "-e", "validate_chunk_rows=5000"]
    rc, out, recap = run_playbook("playbooks/validate.yml", inventory, *extra, secrets=(ADMIN_PASSWORD,))
    assert rc == 0, out
    report = json.loads((tmp_path / "reports" / "validation.json").read_text())
    assert report["verdict"] == "GO" and report["mode"] == "quiesced" and report["override"] is False
    assert set(report) >= {"verdict", "finished_at", "mode", "override", "override_reason", "tables", "sequences",
                           "schema", "summary"}
    assert report["finished_at"].endswith("Z")
    assert set(report["summary"]) >= {"tables", "rows_compared", "rows_per_second", "differences"}
    parcels = [t for t in report["tables"] if t["table"] == "public.parcels"][0]
    assert (parcels["rows_source"], parcels["rows_target"], parcels["result"]) == (10000, 10000, "equal")
    assert "## Verdict: GO" in (tmp_path / "reports" / "validation.md").read_text()
    # the comparison ran in the background; its last progress line was printed
    assert re.search(r"validation: [0-9,]+/~[0-9,]+ rows .* rows/s ETA", out), out
    # check mode runs it in the foreground (async cannot run in check mode) and gives the same verdict
    rc, out, recap = run_playbook("playbooks/validate.yml", inventory, "--check", *extra, secrets=(ADMIN_PASSWORD,))
    assert rc == 0 and "GO" in out, out

    target_cluster.execute(copy, ["SET session_replication_role = replica", "DELETE FROM public.parcels WHERE id = 77"],
                           operator=True)
    rc, out, recap = run_playbook("playbooks/validate.yml", inventory, *extra, secrets=(ADMIN_PASSWORD,))
    assert rc != 0 and "NO-GO" in out
    report = json.loads((tmp_path / "reports" / "validation.json").read_text())
    assert report["verdict"] == "NO-GO"
    parcels = [t for t in report["tables"] if t["table"] == "public.parcels"][0]
    assert parcels["result"] == "different" and parcels["differences"][0]["key"] == ["77"]
    assert "missing `77`" in (tmp_path / "reports" / "validation.md").read_text()

    rc, out, recap = run_playbook("playbooks/validate.yml", inventory, *extra, "-e", "validate_override=true",
                                  secrets=(ADMIN_PASSWORD,))
    assert rc != 0 and "validate_override_reason" in out
    rc, out, recap = run_playbook("playbooks/validate.yml", inventory, *extra, "-e", "validate_override=true",
                                  "-e", "validate_override_reason='DBA on call: parcel 77 deleted on purpose'",
                                  secrets=(ADMIN_PASSWORD,))
    assert rc == 0, out
    assert "VALIDATION OVERRIDDEN" in out
    report = json.loads((tmp_path / "reports" / "validation.json").read_text())
    assert (report["verdict"], report["override"]) == ("NO-GO", True)
    assert "parcel 77" in report["override_reason"]
