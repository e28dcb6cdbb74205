"""The decisions of pg_logical_prereqs, from crafted catalog facts."""

from __future__ import annotations

import pytest

from ansible_collections.pgshift.aurora.plugins.module_utils import prereqs

from factsbuilder import admin, facts, opts, role, setting, table


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
    fix = found["rds_logical_replication"]["remediation"]
    assert fix.startswith(
        'in the DB parameter group: aws rds modify-db-parameter-group --db-parameter-group-name <db-parameter-group> '
        '--parameters "ParameterName=rds.logical_replication,ParameterValue=1,ApplyMethod=pending-reboot", '
        'then reboot: aws rds reboot-db-instance --db-instance-identifier <db-instance-id>')
    assert "family postgres15" in fix  # how to find the group, and what to do with a default one
    assert checks["wal_level"] == "pass"
    # With the inventory's names, the commands are ready to run.
    found = run(f, rds=True, aws=dict(instance_id="orders", parameter_group="orders-pg16-logical",
                                      region="eu-west-1"))[0]
    assert found["rds_logical_replication"]["remediation"] == (
        'in the DB parameter group: aws rds modify-db-parameter-group --db-parameter-group-name orders-pg16-logical '
        '--parameters "ParameterName=rds.logical_replication,ParameterValue=1,ApplyMethod=pending-reboot" '
        '--region eu-west-1, then reboot: aws rds reboot-db-instance --db-instance-identifier orders '
        '--region eu-west-1 (pg_logical_prereqs state=present with rds_instance_id changes the group)')
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
    found, checks = run(f)
    for check in ("replication_privilege", "select_privilege", "schema_usage"):
        assert found[check]["severity"] == "blocker", check
    # The admin (here a superuser) creates publications and subscriptions: the migration user needs no CREATE.
    assert checks["create_privilege"] == "pass"
    assert found["replication_privilege"]["remediation"].startswith('ALTER ROLE "pgshift" REPLICATION (as a superuser')
    assert found["select_privilege"]["remediation"] == \
        'prepare_source.yml runs it as postgres: GRANT SELECT ON TABLE "public"."a" TO "pgshift"'
    assert found["schema_usage"]["remediation"] == \
        'prepare_source.yml runs it as postgres: GRANT USAGE ON SCHEMA "public" TO "pgshift"'
    # DMS writes its control tables as the migration user.
    assert run(f, engine="dms")[0]["create_privilege"]["remediation"] == \
        'GRANT CREATE ON DATABASE "app" TO "pgshift"'


def test_rds_replication_membership_counts_as_replication_on_rds_only():
    f = facts(roles={"pgshift": role("pgshift", replication=False, member_of=["rds_replication"])})
    f["server"]["is_rds"] = True
    f["settings"]["rds.logical_replication"] = setting("rds.logical_replication", "on")
    assert run(f, rds=True)[1]["replication_privilege"] == "pass"
    # Shaped like RDS but not RDS (the lab): only the REPLICATION attribute lets it replicate.
    del f["settings"]["rds.logical_replication"]
    found = run(f, rds=True)[0]
    assert "confers replication on RDS and Aurora only" in found["replication_privilege"]["detail"]
    assert 'ALTER ROLE "pgshift" REPLICATION' in found["replication_privilege"]["remediation"]


def test_missing_user():
    found = run(facts(roles={}))[0]
    assert found["migration_user_missing"]["severity"] == "blocker"


def test_subscription_privilege_is_the_admins_by_version():
    """The admin creates the subscriptions (their connection string logs in as the migration user)."""
    f = facts(version_num=180001, admin=master(180001, pg_create_subscription=None))
    found = run(f, role_name="target")[0]
    assert found["subscription_privilege"]["object"] == "dbadmin"
    assert found["subscription_privilege"]["remediation"] == \
        'GRANT "pg_create_subscription" TO "dbadmin" (as a role with ADMIN OPTION on pg_create_subscription)'
    assert run(f, role_name="target", engine="dms")[0]["subscription_privilege"]["severity"] == "info"
    f = facts(version_num=180001, admin=master(180001))
    assert run(f, role_name="target")[1]["subscription_privilege"] == "pass"
    # The migration user's memberships do not matter.
    f["roles"]["pgshift"]["member_of"] = []
    assert run(f, role_name="target")[1]["subscription_privilege"] == "pass"
    found = run(facts(version_num=150000, admin=master(150000)), role_name="target")[0]
    assert "before PostgreSQL 16 only a superuser" in found["subscription_privilege"]["detail"]
    assert found["subscription_privilege"]["severity"] == "blocker"
    assert run(facts(version_num=150000), role_name="target")[1]["subscription_privilege"] == "pass"  # superuser


def test_rollback_path_on_a_pg15_source_is_a_warning_that_says_why():
    found = run(facts(version_num=150010, admin=master(150010)))[0]
    f = found["subscription_privilege"]
    assert f["severity"] == "warning"
    assert "the rollback path will not work" in f["detail"]
    assert "on PostgreSQL 15 only a superuser can create a subscription" in f["detail"]
    assert "pg_create_subscription came with 16" in f["detail"]
    # 16+: the master holds pg_create_subscription through rds_superuser.
    assert run(facts(version_num=160004, admin=master(160004)))[1]["subscription_privilege"] == "pass"
    found = run(facts(version_num=160004, admin=master(160004, pg_create_subscription=None)))[0]
    assert found["subscription_privilege"]["severity"] == "warning"
    assert "rollback path subscribes there" in found["subscription_privilege"]["detail"]


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


def test_the_vcpus_cap_the_suggested_streams():
    assert [prereqs.vcpu_stream_cap(v) for v in (None, 0, 1, 2, 3, 4, 16, 96)] == [None, None, 1, 1, 1, 2, 8, 48]
    busy = dict(migrated_bytes=10 ** 15, writes_per_second=0, tables=40)  # 8 streams' worth
    assert prereqs.suggest_streams(busy) == 8
    assert prereqs.suggest_streams(busy, vcpus=2) == 1
    assert prereqs.suggest_streams(busy, vcpus=6) == 3
    assert prereqs.suggest_streams(busy, vcpus=64) == 8  # never above the largest advice
    assert prereqs.streams_over_vcpus(2, 4) is None and prereqs.streams_over_vcpus(9, None) is None
    assert prereqs.streams_over_vcpus(2, 2).startswith("2 streams on 2 vCPUs")
    assert prereqs.vcpus_problems(None) == [] and prereqs.vcpus_problems(1) == []
    assert prereqs.vcpus_problems(-2) == ["vcpus must be the instances' vCPU count, from 1 (got -2); leave it unset "
                                          "when unknown"]


def test_suggest_streams():
    assert prereqs.suggest_streams(dict(migrated_bytes=0, writes_per_second=0, tables=3)) == 1
    assert prereqs.suggest_streams(dict(migrated_bytes=120 * 1024 ** 3, writes_per_second=10, tables=40)) == 3
    # 2500 row writes/s per stream (bench/README.md, cdc ceiling)
    assert prereqs.suggest_streams(dict(migrated_bytes=1, writes_per_second=2500, tables=40)) == 1
    assert prereqs.suggest_streams(dict(migrated_bytes=1, writes_per_second=2501, tables=40)) == 2
    assert prereqs.suggest_streams(dict(migrated_bytes=1, writes_per_second=7000, tables=40)) == 3
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


# --- the admin user is RDS's master user, not a superuser --------------------------------------------------

def master(version_num=160004, name="dbadmin", replication=False, create_on_database=True, **overrides):
    """An RDS master user: CREATEROLE, member of rds_superuser (which holds rds_replication WITH ADMIN OPTION
    and pg_create_subscription), a member of app_owner. overrides: role -> dict or None (not held)."""
    roles = {
        "rds_superuser": dict(member=True, usage=True, set=True),
        "rds_replication": dict(member=True, usage=True, set=True, admin=True, admin_holders=["rds_superuser"]),
        "pg_create_subscription": dict(member=True, usage=True, set=True),
        "app_owner": dict(member=True, usage=True, set=True, admin=True, admin_holders=[name]),
        "pgshift": dict(admin=False),
    }
    for key, value in overrides.items():
        if value is None:
            roles[key] = dict(member=False, usage=False, set=False, admin=False)
        else:
            roles[key] = value
    return admin(name=name, superuser=False, createrole=True, replication=replication,
                 create_on_database=create_on_database, roles=roles, version_num=version_num)


def owned(*items):
    return [dict(owner=o, superuser=su, kind=k, count=n) for o, su, k, n in items]


def test_master_with_everything_passes_the_admin_checks():
    f = facts(version_num=160004, tables=[table("public", "a")], admin=master(),
              owners=owned(("app_owner", False, "relation", 1), ("app_owner", False, "schema", 1)))
    f["server"]["is_rds"] = True
    f["settings"]["rds.logical_replication"] = setting("rds.logical_replication", "on")
    checks = run(f, rds=True)[1]
    for check in ("admin_replication", "owner_roles", "subscription_privilege", "create_privilege"):
        assert checks[check] == "pass", check


def test_owner_role_the_master_cannot_act_as_names_the_grant_and_who_can_run_it():
    hard = 'Ops "Team" é'
    f = facts(version_num=160004, tables=[table("public", "a", owner=hard)],
              admin=master(**{hard: dict(member=False, usage=False, set=False, admin=False,
                                         admin_holders=["ops_admin"])}),
              owners=owned((hard, False, "relation", 3), (hard, False, "schema", 1)))
    found, checks = run(f)
    f_ = found["owner_roles"]
    assert (f_["severity"], f_["object"]) == ("blocker", hard)
    assert "dbadmin cannot act as \"Ops \"\"Team\"\" é\" (3 relations, 1 schema)" in f_["detail"]
    assert f_["remediation"] == ('GRANT "Ops ""Team"" é" TO "dbadmin" WITH INHERIT TRUE, SET TRUE '
                                 '(as a role with ADMIN OPTION on "Ops ""Team"" é" (held by ops_admin))')
    # On 15 there is no SET option: a plain GRANT.
    f["server"]["version_num"] = 150010
    f["admin"]["createrole"] = False
    assert run(f)[0]["owner_roles"]["remediation"].startswith('GRANT "Ops ""Team"" é" TO "dbadmin" (as ')


def test_membership_without_set_or_inherit_is_not_enough():
    f = facts(version_num=160004, admin=master(app_owner=dict(member=True, usage=False, set=True, admin=False)),
              owners=owned(("app_owner", False, "relation", 1)))
    assert run(f)[0]["owner_roles"]["severity"] == "blocker"
    f["admin"]["roles"]["app_owner"].update(usage=True, set=False)
    assert run(f)[0]["owner_roles"]["severity"] == "blocker"
    f["admin"]["roles"]["app_owner"].update(set=True)
    assert run(f)[1]["owner_roles"] == "pass"


def test_owner_role_the_master_holds_admin_option_on_is_fixed_by_preparation():
    f = facts(version_num=160004, tables=[table("public", "a", owner="app_owner")],
              admin=master(app_owner=dict(member=False, usage=False, set=False, admin=True)),
              owners=owned(("app_owner", False, "relation", 1)))
    found = run(f)[0]
    assert found["owner_roles"]["severity"] == "blocker"
    assert found["owner_roles"]["remediation"] == ('prepare_source.yml runs it (dbadmin holds ADMIN OPTION on them): '
                                                   'GRANT "app_owner" TO "dbadmin" WITH INHERIT TRUE, SET TRUE')
    assert run(f, engine="dms")[0]["owner_roles"]["severity"] == "warning"
    # On the target the schema copy grants it: information only.
    assert run(f, role_name="target")[0]["owner_roles"]["severity"] == "info"


def test_objects_owned_by_a_superuser_cannot_be_acted_on():
    f = facts(version_num=160004, admin=master(postgres=dict(superuser=True, member=False, usage=False, set=False)),
              owners=owned(("postgres", True, "relation", 2)))
    found = run(f)[0]
    assert found["owner_roles"]["severity"] == "blocker"
    assert "superuser role(s) postgres (2 relations)" in found["owner_roles"]["detail"]


def test_target_checks_the_source_owners_missing_or_present():
    src = dict(version_num=160004, owners=["app_owner", "Reporting"])
    # Neither exists on the target: the master has CREATEROLE, so the schema copy creates them.
    f = facts(version_num=180001, admin=master(180001))
    del f["admin"]["roles"]["app_owner"]
    found = run(f, role_name="target", source=src)[0]
    assert found["owner_roles"]["severity"] == "info"
    assert 'CREATE ROLE "Reporting" NOLOGIN' in found["owner_roles"]["remediation"]
    f["admin"]["createrole"] = False
    found = run(f, role_name="target", source=src)[0]
    assert found["owner_roles"]["severity"] == "blocker"
    assert "has no CREATEROLE" in found["owner_roles"]["detail"]


def test_admin_replication_and_create_on_database():
    f = facts(version_num=160004, admin=master(rds_replication=None, rds_superuser=None, create_on_database=False))
    f["server"]["is_rds"] = True
    f["settings"]["rds.logical_replication"] = setting("rds.logical_replication", "on")
    found = run(f, rds=True)[0]
    assert found["admin_replication"]["severity"] == "blocker"
    assert found["admin_replication"]["remediation"] == \
        'GRANT "rds_replication" TO "dbadmin" (as a role with ADMIN OPTION on rds_replication)'
    assert found["create_privilege"]["object"] == "dbadmin"
    assert found["create_privilege"]["remediation"] == \
        'GRANT CREATE ON DATABASE "app" TO "dbadmin" (as the database\'s owner postgres)'
    assert run(f, rds=True, role_name="target")[0]["admin_replication"]["severity"] == "warning"
    assert "admin_replication" not in run(f, rds=True, engine="dms")[0]
    # On a server shaped like RDS but not RDS, the REPLICATION attribute counts.
    del f["settings"]["rds.logical_replication"]
    f["admin"]["replication"] = True
    assert run(f, rds=True)[1]["admin_replication"] == "pass"


def test_lab_like_server_settings_are_the_operators_job():
    """rds_superuser exists (is_rds) but no rds.* settings and no instance: no AWS command, no ALTER SYSTEM
    by the master; the finding says who can."""
    f = facts(version_num=160004, settings=dict(wal_level="replica"), admin=master())
    f["server"]["is_rds"] = True
    found = run(f, rds=True)[0]
    assert "aws rds" not in found["wal_level"]["remediation"]
    assert found["wal_level"]["remediation"] == (
        "ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL (as the server's operator, a superuser: "
        "the admin user dbadmin may not, and this server has no parameter group)")


def test_rules_are_matched_by_oid_not_by_formatted_names():
    dotted = table("a.b", "c", oid=501)
    other = table("a", "b.c", oid=502)
    f = facts(tables=[dotted, other], rules=[dict(oid=502, schema="a", table="b.c", name="r1")])
    found = run(f)[0]
    assert found["rules"]["detail"] == 'rewrite rules on migrated tables: r1 on a."b.c"'
    f = facts(tables=[dotted], rules=[dict(oid=502, schema="a", table="b.c", name="r1")])
    assert run(f)[1]["rules"] == "pass"


def test_aws_commands_for_a_default_group_and_for_aurora():
    text = prereqs.aws_parameter_commands("source", dict(instance_id="db1", parameter_group="default.postgres16"),
                                          {"rds.logical_replication": "1"}, 160004)
    assert text.startswith("default.postgres16 is a default parameter group, which cannot be changed: create a custom "
                           "one (aws rds create-db-parameter-group --db-parameter-group-name <custom-group> "
                           "--db-parameter-group-family postgres16 --description pgshift), attach it (aws rds "
                           "modify-db-instance --db-instance-identifier db1 --db-parameter-group-name <custom-group> "
                           "--apply-immediately), then in the DB parameter group: aws rds modify-db-parameter-group "
                           "--db-parameter-group-name <custom-group> ")
    text = prereqs.aws_parameter_commands("target", dict(instance_id="orders-writer", cluster_id="orders-aurora",
                                                         parameter_group="orders-aurora-pg16", region="eu-west-1"),
                                          {"rds.logical_replication": "1", "max_replication_slots": "6"}, 160006)
    assert text == (
        'in the DB cluster parameter group: aws rds modify-db-cluster-parameter-group '
        '--db-cluster-parameter-group-name orders-aurora-pg16 --parameters '
        '"ParameterName=max_replication_slots,ParameterValue=6,ApplyMethod=pending-reboot" '
        '"ParameterName=rds.logical_replication,ParameterValue=1,'
        'ApplyMethod=pending-reboot" --region eu-west-1, then reboot: aws rds reboot-db-instance '
        '--db-instance-identifier orders-writer --region eu-west-1 (the writer, then each reader)')
    # The module passes every key, unknown ones as None: placeholders then.
    assert "<db-parameter-group>" in prereqs.aws_parameter_commands(
        "source", dict(instance_id="db1", parameter_group=None, cluster_id=None, region=None),
        {"max_wal_senders": "4"}, 160004)
    # A name the shell would split is quoted.
    assert "--db-instance-identifier 'my db'" in prereqs.aws_parameter_commands(
        "source", dict(instance_id="my db"), {"max_wal_senders": "4"}, 160004)


def test_dms_target_user_must_set_session_replication_role():
    """DMS's target endpoint connects as the migration user and sets session_replication_role = replica."""
    mig = dict(role("pgshift", member_of=["rds_replication"]), can_set_replication_role=False,
               admin_can_grant_set_replication_role=False)
    f = facts(roles={"pgshift": mig})
    hit = [x for x in prereqs.evaluate(f, opts(f, "target", engine="dms"))[0] if x["id"] == "replication_role_setting"]
    assert len(hit) == 1 and hit[0]["severity"] == "blocker"
    assert 'GRANT SET ON PARAMETER session_replication_role TO "pgshift"' in hit[0]["remediation"]
    assert "WITH GRANT OPTION" in hit[0]["remediation"]
    # the native engine does not need it; neither does a user that may already set it
    assert not [x for x in prereqs.evaluate(f, opts(f, "target"))[0] if x["id"] == "replication_role_setting"]
    mig["can_set_replication_role"] = True
    assert not [x for x in prereqs.evaluate(f, opts(f, "target", engine="dms"))[0] if x["id"] == "replication_role_setting"]


def test_dms_target_grant_of_session_replication_role_when_the_admin_may():
    mig = dict(role("pgshift", member_of=["rds_replication"]), can_set_replication_role=False)
    adm = dict(role("postgres", superuser=True), admin_can_grant_set_replication_role=True)
    f = facts(roles={"pgshift": mig, "postgres": adm})
    shown = [a["sql"].as_string(None) for a in prereqs.plan_fixes(f, opts(f, "target", engine="dms"))]
    assert 'GRANT SET ON PARAMETER session_replication_role TO "pgshift"' in shown
    assert not [q for q in (a["sql"].as_string(None) for a in prereqs.plan_fixes(f, opts(f, "target"))) if "session_replication_role" in q]
