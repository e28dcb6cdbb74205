"""pg_analyze and the cutover's statistics gate on the RDS/Aurora-shaped clusters (PG16 source, PG18 target; the
modules run as the master user over TLS verify-full; the test reads the catalogs as the operator).

The target's tables are made the way a migration leaves them: rows written, statistics never gathered (autovacuum
off on each of them, so it cannot race the test; it would never analyse the partitioned parent anyway). A
partitioned table with an empty default partition, an inheritance parent with two children, a hard-named
schema's table and an empty table.
"""

from __future__ import annotations

import json
import re

from psycopg import sql

import test_exit_codes
from ansible_collections.pgshift.aurora.plugins.module_utils import replication_conn
from modrunner import run_module
from pgcluster import ADMIN_PASSWORD, MASTER_PASSWORD, MASTER_USER, ca_cert, wait_for

# The fixture: a database on each side and a migration user (pytest finds fixtures among a module's names).
dbs = test_exit_codes.dbs

OFF = "WITH (autovacuum_enabled = off)"
SCHEMA = [
    'CREATE SCHEMA "Shipping Ops"',
    "CREATE TABLE public.shipments (id int NOT NULL, shipped date NOT NULL, note text) PARTITION BY RANGE (shipped)",
    "CREATE TABLE public.shipments_2025_01 PARTITION OF public.shipments "
    "FOR VALUES FROM ('2025-01-01') TO ('2025-02-01') " + OFF,
    "CREATE TABLE public.shipments_2025_02 PARTITION OF public.shipments "
    "FOR VALUES FROM ('2025-02-01') TO ('2025-03-01') " + OFF,
    "CREATE TABLE public.shipments_default PARTITION OF public.shipments DEFAULT " + OFF,
    "CREATE TABLE public.tracking_events (id int NOT NULL, at timestamptz, kind text) " + OFF,
    "CREATE TABLE public.tracking_events_2025_01 () INHERITS (public.tracking_events) " + OFF,
    "CREATE TABLE public.tracking_events_2025_02 () INHERITS (public.tracking_events) " + OFF,
    'CREATE TABLE "Shipping Ops"."order" (id int PRIMARY KEY, "Note" text) ' + OFF,
    "CREATE TABLE public.parcels (id bigint PRIMARY KEY, weight numeric, label text) " + OFF,
    "CREATE TABLE public.empty_table (id int) " + OFF,
]
DATA = [
    "INSERT INTO public.shipments SELECT g, DATE '2025-01-01' + (g % 59), 'n' || g FROM generate_series(1, 3000) g",
    "INSERT INTO public.tracking_events_2025_01 SELECT g, TIMESTAMPTZ '2025-01-02' + g * INTERVAL '1 minute', 'scan' "
    "FROM generate_series(1, 400) g",
    "INSERT INTO public.tracking_events_2025_02 SELECT g, TIMESTAMPTZ '2025-02-02' + g * INTERVAL '1 minute', 'drop' "
    "FROM generate_series(1, 300) g",
    'INSERT INTO "Shipping Ops"."order" SELECT g, \'note \' || g FROM generate_series(1, 250) g',
    "INSERT INTO public.parcels SELECT g, g / 7.0, repeat('x', g % 50) FROM generate_series(1, 5000) g",
]
NON_EMPTY = [("public", "shipments"), ("public", "shipments_2025_01"), ("public", "shipments_2025_02"),
             ("public", "tracking_events"), ("public", "tracking_events_2025_01"),
             ("public", "tracking_events_2025_02"), ("Shipping Ops", "order"), ("public", "parcels")]
PARENTS = {("public", "shipments"), ("public", "tracking_events")}
EMPTY = [("public", "shipments_default"), ("public", "empty_table")]
SECRETS = (ADMIN_PASSWORD, MASTER_PASSWORD)

# What the planner has, read as the operator: reltuples, pg_stats rows (own and inherited), last_analyze.
STATE_SQL = """
SELECT n.nspname, c.relname, c.reltuples::float8,
       (SELECT count(*) FROM pg_stats s WHERE s.schemaname = n.nspname AND s.tablename = c.relname
          AND NOT s.inherited) AS own,
       (SELECT count(*) FROM pg_stats s WHERE s.schemaname = n.nspname AND s.tablename = c.relname
          AND s.inherited) AS inherited,
       st.last_analyze IS NOT NULL AS analysed
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_stat_all_tables st ON st.relid = c.oid
 WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY(%s)
"""


def make_tables(cluster, db, data=True):
    with cluster.connect(db) as conn:  # as app_owner, as the schema copy leaves them
        for stmt in SCHEMA + (DATA if data else []):
            conn.execute(stmt)


def state(cluster, db, schemas=("public", "Shipping Ops")):
    return dict(((s, n), dict(reltuples=r, own=o, inherited=i, analysed=a))
                for s, n, r, o, i, a in cluster.query(db, STATE_SQL, (list(schemas),), operator=True))


def state_of(cluster, db, schema, name):
    return state(cluster, db, (schema,))[(schema, name)]


def has_statistics(entry, parent):
    return (entry["inherited"] if parent else entry["own"]) > 0 and entry["reltuples"] >= 0


def analyze(cluster, db, check_mode=False, **options):
    result, raw = run_module("pg_analyze", cluster.module_params(db, **options), check_mode=check_mode)
    for secret in SECRETS:
        assert secret not in raw, "a secret leaked into the module output"
    return result


def source_options(cluster, db):
    return dict(("source_" + k, v) for k, v in cluster.module_params(db).items())


def test_every_non_empty_table_gets_statistics_and_a_second_run_changes_nothing(target_cluster, new_db, tmp_path):
    db = new_db(target_cluster)
    make_tables(target_cluster, db)
    before = state(target_cluster, db)
    assert all(before[t]["reltuples"] < 0 and not has_statistics(before[t], t in PARENTS) for t in NON_EMPTY)

    checked = analyze(target_cluster, db, check_mode=True, method="analyze")
    assert not checked.get("failed"), checked.get("msg")
    assert checked["changed"] and {t["action"] for t in checked["tables"]} == {"would_analyze"}
    assert {(t["schema"], t["name"]) for t in checked["tables"]} == set(NON_EMPTY + EMPTY)
    assert 'ANALYZE ONLY "public"."shipments"' in checked["queries"]
    assert state(target_cluster, db) == before, "check mode changed something"

    progress = tmp_path / "analyze-progress.json"
    result = analyze(target_cluster, db, method="analyze", parallel=2, progress_file=str(progress))
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] and result["method"] == "analyze"
    print(json.dumps(dict(summary=result["summary"], tables=[(t["table"], t["seconds"]) for t in result["tables"]])))
    order = [(t["schema"], t["name"]) for t in result["tables"]]
    assert set(order) == set(NON_EMPTY + EMPTY)
    assert all(t["action"] == "analyzed" and t["seconds"] is not None for t in result["tables"])
    # parents ANALYZE ONLY (PostgreSQL 18), each after its children
    by = dict(((t["schema"], t["name"]), t) for t in result["tables"])
    assert by[("public", "shipments")]["statement"] == 'ANALYZE ONLY "public"."shipments"'
    assert by[("Shipping Ops", "order")]["statement"] == 'ANALYZE "Shipping Ops"."order"'
    assert by[("Shipping Ops", "order")]["table"] == '"Shipping Ops"."order"'
    for child in ("shipments_2025_01", "shipments_2025_02", "shipments_default"):
        assert order.index(("public", child)) < order.index(("public", "shipments"))
    for child in ("tracking_events_2025_01", "tracking_events_2025_02"):
        assert order.index(("public", child)) < order.index(("public", "tracking_events"))
    after = state(target_cluster, db)
    for t in NON_EMPTY:
        assert has_statistics(after[t], t in PARENTS), (t, after[t])
    assert after[("public", "shipments")]["reltuples"] == 3000
    for t in EMPTY:
        assert after[t]["analysed"] and after[t]["own"] == 0
    data = json.loads(progress.read_text())
    assert (data["unit"], data["rows"], data["rows_expected"], data["phase"]) == ("tables", 10, 10, "done")
    assert result["summary"]["analyzed"] == 10 and result["summary"]["in_scope"] == 10

    again = analyze(target_cluster, db, method="analyze")
    assert not again.get("failed") and not again["changed"] and again["tables"] == [], again["tables"]
    assert again["summary"]["had_statistics"] == 10
    checked = analyze(target_cluster, db, check_mode=True)
    assert not checked["changed"] and checked["tables"] == []
    assert state(target_cluster, db) == after


def test_before_18_a_partitioned_parent_is_analysed_with_its_partitions(source_cluster, new_db):
    """On PostgreSQL 16 there is no ANALYZE ONLY: the parent's ANALYZE analyses its partitions (reported as
    covered), an inheritance parent's does not recurse (its children are analysed first)."""
    db = new_db(source_cluster)
    make_tables(source_cluster, db)
    result = analyze(source_cluster, db, method="auto", parallel=2)
    assert not result.get("failed"), result.get("msg")
    assert result["method"] == "analyze" and "PostgreSQL 16" in result["method_note"]
    by = dict(((t["schema"], t["name"]), t) for t in result["tables"])
    assert by[("public", "shipments")]["statement"] == 'ANALYZE "public"."shipments"'
    assert by[("public", "shipments")]["covers"] == ["public.shipments_2025_01", "public.shipments_2025_02",
                                                     "public.shipments_default"]
    assert {by[("public", p)]["action"] for p in ("shipments_2025_01", "shipments_2025_02")} == {"covered"}
    assert by[("public", "tracking_events")]["statement"] == 'ANALYZE "public"."tracking_events"'
    after = state(source_cluster, db)
    for t in NON_EMPTY:
        assert has_statistics(after[t], t in PARENTS), (t, after[t])
    again = analyze(source_cluster, db)
    assert not again["changed"] and again["tables"] == []


def test_stale_and_forced_tables_and_what_the_master_may_not_analyse(target_cluster, new_db, new_role):
    # A database the master does not own: only the tables of roles it is a member of (app_owner) are its to analyse.
    db = new_db(target_cluster, options="OWNER postgres")
    other = new_role("stats_owner")
    with target_cluster.connect(db, operator=True) as conn:
        conn.execute("CREATE SCHEMA app AUTHORIZATION app_owner")
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(other)))
        conn.execute("CREATE TABLE app.theirs (id int) " + OFF)
        conn.execute("INSERT INTO app.theirs SELECT generate_series(1, 100)")
        conn.execute(sql.SQL("ALTER TABLE app.theirs OWNER TO {}").format(sql.Identifier(other)))
    try:
        with target_cluster.connect(db) as conn:
            conn.execute("CREATE TABLE app.mine (id int) " + OFF)
            conn.execute("ANALYZE app.mine")  # analysed while empty ...
            conn.execute("INSERT INTO app.mine SELECT generate_series(1, 500)")  # ... then loaded
        assert wait_for(lambda: target_cluster.query(
            db, "SELECT n_mod_since_analyze FROM pg_stat_all_tables WHERE relid = 'app.mine'::regclass",
            operator=True)[0][0] > 0, 10)
        result = analyze(target_cluster, db, method="auto")
        assert not result.get("failed"), result.get("msg")
        # auto without a source connection: ANALYZE, and says why not import
        assert result["method"] == "analyze" and "source_login_host" in result["method_note"]
        assert [(t["table"], t["action"]) for t in result["tables"]] == [("app.mine", "analyzed")]
        assert result["tables"][0]["reason"].startswith("analysed while empty; 500 row(s) written since")
        assert [c["table"] for c in result["not_analyzed"]] == ["app.theirs"]
        why = result["not_analyzed"][0]["why"]
        assert other in why and MASTER_USER in why and "pg_maintain" in why
        assert any("app.theirs" in (w if isinstance(w, str) else json.dumps(w)) for w in result.get("warnings", []))
        assert state_of(target_cluster, db, "app", "mine")["own"] > 0
        assert state_of(target_cluster, db, "app", "theirs")["reltuples"] < 0  # untouched

        # PostgreSQL 17+: MAINTAIN on the table lets the master analyse it
        with target_cluster.connect(db, operator=True) as conn:
            conn.execute(sql.SQL("GRANT MAINTAIN ON app.theirs TO {}").format(sql.Identifier(MASTER_USER)))
        result = analyze(target_cluster, db, method="analyze")
        assert [(t["table"], t["action"]) for t in result["tables"]] == [("app.theirs", "analyzed")]
        assert result["not_analyzed"] == []
        assert state_of(target_cluster, db, "app", "theirs")["reltuples"] == 100

        forced = analyze(target_cluster, db, method="analyze", force=True, include_tables=["app.mine"])
        assert [(t["table"], t["action"], t["reason"]) for t in forced["tables"]] == [("app.mine", "analyzed", "force")]
    finally:
        with target_cluster.connect(db, operator=True) as conn:
            conn.execute("DROP TABLE app.theirs")
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(other)))


def test_method_import_restores_the_sources_statistics_on_pg18(source_cluster, target_cluster, new_db):
    sdb, tdb = new_db(source_cluster), new_db(target_cluster)
    make_tables(source_cluster, sdb)
    source_cluster.execute(sdb, "ANALYZE", operator=True)
    make_tables(target_cluster, tdb)
    options = source_options(source_cluster, sdb)

    checked = analyze(target_cluster, tdb, check_mode=True, method="import", **options)
    assert not checked.get("failed"), checked.get("msg")
    assert checked["method"] == "import" and {t["action"] for t in checked["tables"]} == {"would_import"}
    assert checked["commands"] == [] and state(target_cluster, tdb)[("public", "parcels")]["reltuples"] < 0

    result = analyze(target_cluster, tdb, method="import", **options)
    assert not result.get("failed"), result.get("msg")
    print(json.dumps(dict(summary=result["summary"], tools=result["tools"])))
    assert result["method"] == "import" and result["tools"]["pg_dump_version"] >= 18
    assert [c.split()[0].rsplit("/", 1)[-1] for c in result["commands"]] == ["pg_dump", "pg_restore"]
    assert "--statistics-only" in result["commands"][0]
    actions = dict(((t["schema"], t["name"]), t["action"]) for t in result["tables"])
    # the source's statistics of every non-empty table, parents included, came over; the empty ones have no
    # column statistics on the source: analysed
    assert {t: actions[t] for t in NON_EMPTY} == {t: "imported" for t in NON_EMPTY}
    assert {t: actions[t] for t in EMPTY} == {t: "analyzed" for t in EMPTY}
    after = state(target_cluster, tdb)
    for t in NON_EMPTY:
        assert has_statistics(after[t], t in PARENTS), (t, after[t])
        assert not after[t]["analysed"]  # imported, not analysed here
    src = source_cluster.query(sdb, "SELECT histogram_bounds::text FROM pg_stats WHERE schemaname = 'Shipping Ops' "
                                    "AND tablename = 'order' AND attname = 'Note'", operator=True)
    tgt = target_cluster.query(tdb, "SELECT histogram_bounds::text FROM pg_stats WHERE schemaname = 'Shipping Ops' "
                                    "AND tablename = 'order' AND attname = 'Note'", operator=True)
    assert src == tgt and src[0][0]

    again = analyze(target_cluster, tdb, method="import", **options)
    assert not again["changed"] and again["tables"] == [] and again["commands"] == []


# ----------------------------------------------------------------------------------------------
# The cutover's preflight


def forward_stream(source_cluster, target_cluster, new_db, migration):
    """Source and target databases with the tables, the target's filled by a subscription (copy_data), as the
    native engine leaves them: rows, no statistics."""
    sdb, tdb = new_db(source_cluster), new_db(target_cluster)
    make_tables(source_cluster, sdb)
    make_tables(target_cluster, tdb, data=False)
    stream = "pgshift_%s_s1" % migration
    with source_cluster.connect(sdb) as conn:
        conn.execute(sql.SQL('CREATE PUBLICATION {} FOR TABLE public.parcels, "Shipping Ops"."order", '
                             'public.empty_table').format(sql.Identifier(stream)))
    conninfo = replication_conn.subscription_conninfo("127.0.0.1", source_cluster.port, sdb, MASTER_USER, MASTER_PASSWORD,
                                                      "verify-full", ca_cert())
    with target_cluster.master_connect(tdb) as conn:
        conn.execute(sql.SQL("CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} WITH (copy_data = true)").format(
            sql.Identifier(stream), sql.Literal(conninfo), sql.Identifier(stream)))
    assert wait_for(lambda: target_cluster.query(
        tdb, "SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'")[0][0] == 0, 60)
    return sdb, tdb, stream


def drop_stream(source_cluster, target_cluster, tdb, stream):
    with target_cluster.connect(tdb, operator=True) as conn:
        conn.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(sql.Identifier(stream)))
        conn.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(sql.Identifier(stream)))
        conn.execute(sql.SQL("DROP SUBSCRIPTION {}").format(sql.Identifier(stream)))
    with source_cluster.connect() as conn:
        wait_for(lambda: not conn.execute("SELECT coalesce(bool_or(active), false) FROM pg_replication_slots "
                                          "WHERE slot_name = %s", (stream,)).fetchone()[0], 10)
        conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
                     (stream,))


def cutover(source_cluster, target_cluster, sdb, tdb, migration, check_mode=True, **extra):
    p = source_cluster.module_params(sdb)
    p.update(("target_" + k, v) for k, v in target_cluster.module_params(tdb).items())
    p.update(migration=migration, freeze_method="command", freeze_command="true", unfreeze_command="true",
             switch_method="none", preflight_wait=10, max_transaction_seconds=600)
    if "return_path_requirement" in cutover_options():
        p["return_path_requirement"] = "ignore"  # no rehearsal here: this test is about the statistics gate
    p.update(extra)
    result, raw = run_module("aurora_cutover", p, check_mode=check_mode)
    for secret in SECRETS:
        assert secret not in raw, "a secret leaked into the module output"
    return result


def cutover_options():
    from ansible_collections.pgshift.aurora.plugins.module_utils.runners import cutover as cutover_runner
    return cutover_runner.argument_spec()


def preflight_detail(result):
    entry = next(e for e in result["preflight"]["timeline"] if e["step"] == "preflight")
    return entry["detail"]


def test_cutover_preflight_is_no_go_while_a_table_has_no_statistics(source_cluster, target_cluster, new_db, new_role,
                                                                    tmp_path):
    migration = new_role("stats")
    sdb, tdb, stream = forward_stream(source_cluster, target_cluster, new_db, migration)
    try:
        result = cutover(source_cluster, target_cluster, sdb, tdb, migration)
        assert result.get("failed") and result["status"] == "aborted"
        assert "planner statistics" in result["msg"], result["msg"]
        assert "public.parcels" in result["msg"] and '"Shipping Ops"."order"' in result["msg"]
        assert "public.empty_table" not in result["msg"]

        result = cutover(source_cluster, target_cluster, sdb, tdb, migration, statistics_override=True)
        assert result.get("failed") and "statistics_override_reason" in result["msg"]

        reason = "CAB-4711: the DBA analyses right after the switch"
        result = cutover(source_cluster, target_cluster, sdb, tdb, migration, statistics_override=True,
                         statistics_override_reason=reason)
        assert not result.get("failed"), result.get("msg")
        assert result["status"] == "checked"
        note = preflight_detail(result)["statistics"]
        assert reason in note and "public.parcels" in note
        assert any(reason in (w if isinstance(w, str) else json.dumps(w)) for w in result.get("warnings", []))

        # The report keeps the reason: a run (not check mode) that the preflight stops for another reason (no
        # validation report) writes cutover.json and .md with the statistics gate's note.
        reports = tmp_path / "reports"
        result = cutover(source_cluster, target_cluster, sdb, tdb, migration, check_mode=False,
                         statistics_override=True, statistics_override_reason=reason,
                         validation_requirement="required", validation_report=str(tmp_path / "none.json"),
                         report_dir=str(reports))
        assert result.get("failed") and result["status"] == "aborted"
        assert "no validation report" in result["msg"] and "planner statistics" not in result["reason"]
        report = json.loads((reports / "cutover.json").read_text())
        entry = next(e for e in report["timeline"] if e["step"] == "preflight")
        assert reason in entry["detail"]["statistics"]
        assert reason in (reports / "cutover.md").read_text()
        assert any(reason in (w if isinstance(w, str) else json.dumps(w)) for w in result.get("warnings", []))

        # pg_analyze on the target: GO without an override
        analysed = analyze(target_cluster, tdb, method="analyze")
        assert not analysed.get("failed"), analysed.get("msg")
        result = cutover(source_cluster, target_cluster, sdb, tdb, migration)
        assert not result.get("failed"), result.get("msg")
        assert preflight_detail(result)["statistics"] == "every non-empty table has planner statistics"
    finally:
        drop_stream(source_cluster, target_cluster, tdb, stream)


# ----------------------------------------------------------------------------------------------
# replicate.yml: the statistics step


def test_replicate_gives_every_target_table_statistics_and_a_second_run_changes_nothing(dbs):
    env = dbs
    keyed = [s.replace("(id int NOT NULL, shipped date NOT NULL, note text)",
                       "(id int NOT NULL, shipped date NOT NULL, note text, PRIMARY KEY (id, shipped))")
              .replace("(id int NOT NULL, at timestamptz, kind text)", "(id int PRIMARY KEY, at timestamptz, kind text)")
              .replace("() INHERITS (public.tracking_events)", "(PRIMARY KEY (id)) INHERITS (public.tracking_events)")
              .replace("public.empty_table (id int)", "public.empty_table (id int PRIMARY KEY)") for s in SCHEMA]
    env.source.execute(env.sdb, keyed + DATA + [
        sql.SQL('GRANT USAGE ON SCHEMA "Shipping Ops" TO {}').format(sql.Identifier(env.user)),
        sql.SQL('GRANT SELECT ON ALL TABLES IN SCHEMA public, "Shipping Ops" TO {}').format(sql.Identifier(env.user))])
    env.source.execute(env.sdb, "ANALYZE", operator=True)
    env.target.execute(env.tdb, keyed)  # autovacuum off on each: only the replicate role gathers statistics
    options = ["-e", "replicate_build_indexes=false", "-e", "replicate_poll_interval=1",
               "-e", "replicate_write_rate_sample_seconds=0"]

    rc, out = env.play("replicate", "--check", *options)
    assert rc == 0, out[-4000:]
    checked = env.report("analyze-check.json")
    assert checked["status"] == "checked" and checked["summary"]["would_import"] == 10, checked
    assert state(env.target, env.tdb)[("public", "parcels")]["reltuples"] < 0

    rc, out = env.play("replicate", *options)

    assert rc == 0, out[-4000:]
    assert "CAUGHT UP" in out
    report = env.report("analyze.json")
    print(json.dumps(dict(method=report["method_note"], summary=report["summary"])))
    assert report["status"] == "done" and report["summary"]["failed"] == 0, report
    # auto on a PostgreSQL 18 target with pg_dump 18 here: the source's statistics, imported
    assert report["method"] == "import", report["method_note"]
    # job_progress's lines: tables done, the rate and an ETA
    assert re.search(r"\] statistics: \d+/\d+ tables +[\d.]+% [\d,.]+ tables/s ETA \d+:\d\d:\d\d", " ".join(out.split())), \
        out[-4000:]
    assert "Planner statistics on the target" in env.report("analyze.md")
    after = state(env.target, env.tdb)
    for t in NON_EMPTY:
        assert has_statistics(after[t], t in PARENTS), (t, after[t])

    rc, out = env.play("replicate", *options)
    assert rc == 0, out[-4000:]
    again = env.report("analyze.json")
    assert again["tables"] == [] and again["summary"]["had_statistics"] == 10, again
    assert "changed=0" in out, out[-3000:]


def test_cutover_playbook_check_is_no_go_without_statistics_and_goes_on_with_the_override(dbs):
    env = dbs
    make_tables(env.source, env.sdb)
    make_tables(env.target, env.tdb, data=False)
    stream = "pgshift_%s_s1" % env.migration
    env.source.execute(env.sdb, sql.SQL('CREATE PUBLICATION {} FOR TABLE public.parcels, "Shipping Ops"."order"')
                       .format(sql.Identifier(stream)))
    conninfo = replication_conn.subscription_conninfo("127.0.0.1", env.source.port, env.sdb, MASTER_USER, MASTER_PASSWORD,
                                                      "verify-full", ca_cert())
    with env.target.master_connect(env.tdb) as conn:
        conn.execute(sql.SQL("CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} WITH (copy_data = true)").format(
            sql.Identifier(stream), sql.Literal(conninfo), sql.Identifier(stream)))
    assert wait_for(lambda: env.target.query(
        env.tdb, "SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'")[0][0] == 0, 60)
    options = ["--check", "-e", "cutover_freeze_method=command", "-e", "cutover_freeze_command=true",
               "-e", "cutover_unfreeze_command=true", "-e", "cutover_return_path_requirement=ignore"]

    rc, out = env.play("cutover", *options)
    assert rc != 0 and "planner statistics" in out and "public.parcels" in out, out[-4000:]

    reason = "CAB-4712 - tables analysed by the DBA during the switch window"
    rc, out = env.play("cutover", *options, "-e", "cutover_statistics_override=true",
                       "-e", "cutover_statistics_override_reason='%s'" % reason)
    assert rc == 0, out[-4000:]
    assert "statistics gate overridden (reason: %s)" % reason in out  # printed (a warning)
