"""The decisions of pg_logical_prereqs, from crafted catalog facts."""

from __future__ import annotations

import pytest

from ansible_collections.pgshift.aurora.plugins.module_utils import prereqs

from factsbuilder import facts, opts, role, setting, table


def run(f, **kw):
    findings, checks = prereqs.evaluate(f, opts(f, **kw))
    return {x["id"]: x for x in findings}, checks


def test_clean_source_has_no_blocker_or_warning():
    f = facts(tables=[table("public", "orders")])
    found, checks = run(f)
    assert [x for x in found.values() if x["severity"] != "info"] == []
    assert set(checks) == set(prereqs.SOURCE_CHECKS)
    assert checks["no_replica_identity"] == "pass"
    assert checks["wal_level"] == "pass"


def test_findings_are_sorted_blockers_first():
    f = facts(settings=dict(max_slot_wal_keep_size=-1), tables=[table("public", "nopk", has_pk=False)])
    findings = prereqs.evaluate(f, opts(f))[0]
    ranks = [prereqs.SEVERITY_RANK[x["severity"]] for x in findings]
    assert ranks == sorted(ranks)
    assert findings[0]["id"] == "no_replica_identity"


@pytest.mark.parametrize("replident,has_pk,index,expected", [
    ("d", False, False, "blocker"),
    ("n", True, False, "blocker"),
    ("i", False, False, "blocker"),
    ("i", False, True, None),
    ("d", True, False, None),
    ("f", False, False, None),
])
def test_replica_identity(replident, has_pk, index, expected):
    t = table("public", "t", has_pk=has_pk, replident=replident)
    t["has_replident_index"] = index
    found, checks = run(facts(tables=[t]))
    if expected:
        assert found["no_replica_identity"]["severity"] == expected
        assert "public.t" in found["no_replica_identity"]["object"]
    else:
        assert checks["no_replica_identity"] == "pass"


def test_identity_full_without_pk_is_a_dms_blocker_and_a_native_warning():
    f = facts(tables=[table("public", "rates", has_pk=False, replident="f")])
    assert run(f, engine="native")[0]["replica_identity_full"]["severity"] == "warning"
    assert run(f, engine="dms")[0]["replica_identity_full"]["severity"] == "blocker"


def test_unlogged_and_temp_tables_are_not_required_to_have_identity():
    f = facts(tables=[table("public", "cache", has_pk=False, persistence="u")])
    found, checks = run(f)
    assert checks["no_replica_identity"] == "pass"
    assert found["unlogged_tables"]["severity"] == "warning"


def test_wal_level_blocker_on_source_warning_on_target_with_pending_restart():
    f = facts(settings=dict(wal_level="replica"))
    f["file_settings"] = {"wal_level": "logical"}
    found = run(f)[0]
    assert found["wal_level"]["severity"] == "blocker"
    assert "pending a restart" in found["wal_level"]["detail"]
    found = run(f, role_name="target")[0]
    assert found["wal_level"]["severity"] == "warning"


def test_rds_logical_replication_replaces_wal_level_on_rds():
    f = facts(settings=dict(wal_level="replica"))
    f["settings"]["rds.logical_replication"] = setting("rds.logical_replication", "off")
    f["server"]["is_rds"] = True
    found, checks = run(f, rds=True)
    assert found["rds_logical_replication"]["severity"] == "blocker"
    assert "parameter group" in found["rds_logical_replication"]["remediation"]
    assert checks["wal_level"] == "pass"
    f["settings"]["rds.logical_replication"] = setting("rds.logical_replication", "on")
    f["settings"]["wal_level"] = setting("wal_level", "logical")
    checks = run(f, rds=True)[1]
    assert checks["rds_logical_replication"] == "pass"


@pytest.mark.parametrize("slots,in_use,streams,expected", [
    (10, 0, 4, None),
    (5, 0, 4, "warning"),     # 4 streams fit, but no headroom for 2 reserved
    (3, 0, 4, "blocker"),
    (10, 8, 4, "blocker"),    # slots already used by others count
])
def test_max_replication_slots(slots, in_use, streams, expected):
    f = facts(settings=dict(max_replication_slots=slots),
              slots=[dict(name="s%d" % i, plugin="pgoutput", type="logical", database="app", active=True,
                          temporary=False, wal_status="reserved", retained_bytes=0) for i in range(in_use)])
    found, checks = run(f, streams=streams)
    if expected:
        assert found["max_replication_slots"]["severity"] == expected
    else:
        assert checks["max_replication_slots"] == "pass"


def test_target_worker_capacity():
    f = facts(settings=dict(max_logical_replication_workers=1, max_worker_processes=2,
                            max_sync_workers_per_subscription=1))
    found = run(f, role_name="target", streams=2)[0]
    assert found["max_logical_replication_workers"]["severity"] == "blocker"
    assert found["max_worker_processes"]["severity"] == "blocker"
    assert found["max_sync_workers_per_subscription"]["severity"] == "warning"
    checks = run(facts(), role_name="target", streams=2)[1]
    assert checks["max_logical_replication_workers"] == "pass"


@pytest.mark.parametrize("engine,timeout,expected", [
    ("dms", 5000, "blocker"), ("dms", 0, None), ("dms", 60000, None),
    ("native", 0, "warning"), ("native", 5000, "warning"), ("native", 60000, None),
])
def test_wal_sender_timeout(engine, timeout, expected):
    found, checks = run(facts(settings=dict(wal_sender_timeout=timeout)), engine=engine)
    if expected:
        assert found["wal_sender_timeout"]["severity"] == expected
    else:
        assert checks["wal_sender_timeout"] == "pass"


def test_user_privileges():
    f = facts(tables=[table("public", "a", can_select=False, owns=False, usage=False)],
              roles={"pgshift": role("pgshift", replication=False, create_on_database=False)})
    found = run(f)[0]
    for check in ("replication_privilege", "select_privilege", "schema_usage", "create_privilege"):
        assert found[check]["severity"] == "blocker", check
    assert found["publication_ownership"]["severity"] == "warning"
    assert found["replication_privilege"]["remediation"] == "ALTER ROLE pgshift REPLICATION"


def test_rds_replication_membership_counts_as_replication():
    f = facts(roles={"pgshift": role("pgshift", replication=False, member_of=["rds_replication"])})
    checks = run(f)[1]
    assert checks["replication_privilege"] == "pass"


def test_missing_user():
    found = run(facts(roles={}))[0]
    assert found["migration_user_missing"]["severity"] == "blocker"


def test_subscription_privilege_by_version():
    f = facts(version_num=180001)
    found = run(f, role_name="target")[0]
    assert "pg_create_subscription" in found["subscription_privilege"]["remediation"]
    f["roles"]["pgshift"]["member_of"] = ["pg_create_subscription"]
    assert run(f, role_name="target")[1]["subscription_privilege"] == "pass"
    found = run(facts(version_num=150000), role_name="target")[0]
    assert "superuser" in found["subscription_privilege"]["detail"]


def test_inheritance_parent_and_children():
    parent = table("public", "events", has_children=True, oid=1)
    kids = [table("public", "events_%d" % i, parents=[1], oid=10 + i) for i in range(3)]
    found = run(facts(tables=[parent] + kids))[0]
    f = found["inheritance_children"]
    assert f["object"] == "public.events" and "3 child" in f["detail"]


def test_declarative_partitions_counted_leaf_by_leaf():
    root = table("public", "shipments", relkind="p", oid=1, has_children=True)
    leaves = [table("public", "shipments_%d" % i, is_partition=True, parents=[1], oid=20 + i) for i in range(4)]
    found, checks = run(facts(tables=[root] + leaves))
    assert "4 leaf" in found["partitioned_tables"]["detail"]
    assert checks["inheritance_children"] == "pass"


def test_versions():
    found = run(facts(version_num=90600))[0]
    assert found["server_version"]["severity"] == "blocker"
    found = run(facts(version_num=90600), engine="dms")[0]
    assert found["server_version"]["severity"] == "info"
    found = run(facts(version_num=150000), role_name="target", source=dict(version_num=180000))[0]
    assert found["version_downgrade"]["severity"] == "blocker"
    checks = run(facts(version_num=180000), role_name="target", source=dict(version_num=150000))[1]
    assert checks["version_downgrade"] == "pass"


def test_target_compares_with_source():
    src = dict(version_num=150000, encoding="UTF8", collate="en_US.UTF-8", ctype="en_US.UTF-8",
               extensions=[dict(name="plpgsql", version="1.0"), dict(name="postgis", version="3.4")])
    found = run(facts(version_num=180000), role_name="target", source=src)[0]
    assert found["extension_unavailable"]["object"] == "postgis"
    assert found["collation_mismatch"]["severity"] == "warning"
    src["encoding"] = "LATIN1"
    found = run(facts(version_num=180000), role_name="target", source=src)[0]
    assert found["encoding_mismatch"]["severity"] == "blocker"


def test_lob_recommendation():
    assert prereqs.recommend_lob_mode([])["mode"] == "none"
    small = [dict(table="t", column="c", type="text", max_bytes=1000, how=["scanned"])]
    assert prereqs.recommend_lob_mode(small) == dict(mode="limited", lob_max_size_kb=32, largest_bytes=1000,
                                                     reason=prereqs.recommend_lob_mode(small)["reason"])
    big = [dict(table="t", column="c", type="text", max_bytes=3 * 1024 * 1024, how=["scanned"])]
    rec = prereqs.recommend_lob_mode(big)
    assert rec["mode"] == "limited" and rec["lob_max_size_kb"] * 1024 >= 3 * 1024 * 1024
    huge = [dict(table="t", column="c", type="bytea", max_bytes=200 * 1024 * 1024, how=["sampled"])]
    assert prereqs.recommend_lob_mode(huge)["mode"] == "full"


def test_lob_columns_group_partitions_under_their_root_and_warn_for_dms():
    root = table("public", "docs", relkind="p", oid=1, has_children=True)
    leaves = [table("public", "docs_%d" % i, is_partition=True, parents=[1], oid=30 + i) for i in range(2)]
    f = facts(tables=[root] + leaves)
    f["columns"] = [dict(oid=30 + i, name="body", type="text", base_type="text", category="S", typmod=-1,
                         typtype="b", generated="", identity="") for i in range(2)]
    f["lob_samples"] = {"30/body": (2_000_000, "scanned"), "31/body": (10, "scanned")}
    lobs = prereqs.lob_columns(f, opts(f)["tables"])
    assert lobs == [dict(table="public.docs", column="body", type="text", max_bytes=2_000_000, how=["scanned"])]
    found = run(f, engine="dms")[0]
    assert found["lob_columns"]["severity"] == "warning"
    found = run(f, engine="native")[0]
    assert found["lob_columns"]["severity"] == "info"


@pytest.mark.parametrize("col,expected", [
    (dict(base_type="text", category="S", typmod=-1), True),
    (dict(base_type="varchar", category="S", typmod=-1), True),
    (dict(base_type="varchar", category="S", typmod=104), False),
    (dict(base_type="int4", category="A", typmod=-1), True),
    (dict(base_type="jsonb", category="U", typmod=-1), True),
    (dict(base_type="int8", category="N", typmod=-1), False),
    (dict(base_type="text", category="S", typmod=-1, generated="s"), False),
])
def test_is_lob(col, expected):
    assert prereqs.is_lob(col) is expected


def test_triggers_and_replica_triggers():
    t = table("public", "customers", oid=5)
    f = facts(tables=[t], triggers=[dict(oid=5, name="audit", enabled="O", function="audit_fn"),
                                    dict(oid=5, name="always", enabled="A", function="x")])
    found = run(f)[0]
    assert found["triggers"]["severity"] == "info"
    assert found["triggers_fire_on_replica"]["object"] == "always"


def test_activity_findings():
    f = facts(long_transactions=[dict(pid=1, user="app", database="app", state="idle in transaction",
                                      application_name="", age_seconds=900)],
              prepared_transactions=[dict(gid="tx1", owner="app", database="app", age_seconds=5000)],
              slots=[dict(name="old", plugin="pgoutput", type="logical", database="app", active=False,
                          temporary=False, wal_status="extended", retained_bytes=5 * 1024 ** 3)])
    found = run(f)[0]
    assert found["long_running_transactions"]["severity"] == "warning"
    assert found["prepared_transactions"]["severity"] == "blocker"
    assert "5.0 GB" in found["inactive_replication_slots"]["detail"]


def test_suggest_streams():
    assert prereqs.suggest_streams(dict(migrated_bytes=0, writes_per_second=0, tables=3)) == 1
    assert prereqs.suggest_streams(dict(migrated_bytes=120 * 1024 ** 3, writes_per_second=10, tables=40)) == 3
    assert prereqs.suggest_streams(dict(migrated_bytes=1, writes_per_second=2500, tables=40)) == 3
    assert prereqs.suggest_streams(dict(migrated_bytes=10 ** 15, writes_per_second=0, tables=40)) == 8
    assert prereqs.suggest_streams(dict(migrated_bytes=10 ** 15, writes_per_second=0, tables=2)) == 2


def test_sizes_sum_partitions_under_root():
    root = table("public", "shipments", relkind="p", oid=1, has_children=True, bytes_=0, rows=0)
    leaves = [table("public", "s%d" % i, is_partition=True, parents=[1], oid=40 + i, bytes_=1000, rows=10)
              for i in range(3)]
    f = facts(tables=[root] + leaves, write_rates={"40": 1.5, "41": 0.5})
    s = prereqs.sizes(f, opts(f)["tables"])
    assert s["largest"][0] == dict(table="public.shipments", bytes=3000, rows=30, writes_per_second=2.0, parts=3)
    assert s["tables"] == 3


def test_failure_message():
    findings = [prereqs.finding("a", "warning", "x", "d", "r")]
    assert prereqs.failure_message(findings, "blocker") is None
    assert prereqs.failure_message(findings, "never") is None
    assert "[warning] a (x)" in prereqs.failure_message(findings, "warning")


def test_lob_columns_ignore_matviews():
    mv = table("public", "daily", relkind="m", oid=70)
    f = facts(tables=[mv])
    f["columns"] = [dict(oid=70, name="c", type="text", base_type="text", category="S", typmod=-1, typtype="b",
                         generated="", identity="")]
    assert prereqs.lob_columns(f, opts(f)["tables"]) == []
