"""pg_logical_prereqs assessment on real clusters: every check id, triggered and not.

Each case runs the real module (a subprocess, as Ansible does) against its own
database, connected as the RDS-like master user over TLS. ``{user}`` and ``{db}`` in
the SQL and options stand for the test's role and database names. Set-up statements
run as the application's owner (``app_owner``), those wrapped in ``Op`` as the lab's
operator (a superuser: roles, server files, event triggers, untrusted extensions) and
those in ``Master`` as the master user.
"""

from __future__ import annotations

import sys
import threading
import time

import pytest

from modrunner import COLLECTIONS
from pgcluster import APP_OWNER, MASTER_USER, wait_for

sys.path.insert(0, COLLECTIONS)
from ansible_collections.pgshift.aurora.plugins.module_utils import prereqs as pure  # noqa: E402
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import catalog  # noqa: E402

ALWAYS_REPORTED_SOURCE = {"server_version", "ddl_not_replicated", "database_size"}
ALWAYS_REPORTED_TARGET = {"server_version", "database_size"}

# --- SQL building blocks --------------------------------------------------------------------


class Op(str):
    """A set-up statement only the operator (a superuser) may run."""


class Master(str):
    """A set-up statement the master user runs (roles it creates: it holds ADMIN OPTION on them)."""


INHERITANCE = [
    "CREATE TABLE public.measure (id int PRIMARY KEY, at date NOT NULL, v int)",
    "CREATE TABLE public.measure_y2024 (CHECK (at >= '2024-01-01' AND at < '2025-01-01'), PRIMARY KEY (id)) "
    "INHERITS (public.measure)",
    "CREATE TABLE public.measure_y2025 (CHECK (at >= '2025-01-01' AND at < '2026-01-01'), PRIMARY KEY (id)) "
    "INHERITS (public.measure)",
    "CREATE FUNCTION public.measure_route() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "IF NEW.at < '2025-01-01' THEN INSERT INTO public.measure_y2024 VALUES (NEW.*); "
    "ELSE INSERT INTO public.measure_y2025 VALUES (NEW.*); END IF; RETURN NULL; END $$",
    "CREATE TRIGGER measure_route BEFORE INSERT ON public.measure FOR EACH ROW EXECUTE FUNCTION public.measure_route()",
    "INSERT INTO public.measure VALUES (1, '2024-06-01', 1), (2, '2025-06-01', 2)",
]
PARTITIONS = [
    "CREATE TABLE public.orders (id int, placed date NOT NULL, PRIMARY KEY (id, placed)) PARTITION BY RANGE (placed)",
    "CREATE TABLE public.orders_2024 PARTITION OF public.orders FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
    "CREATE TABLE public.orders_2025 PARTITION OF public.orders FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')",
    "CREATE TABLE public.orders_default PARTITION OF public.orders DEFAULT",
    "INSERT INTO public.orders VALUES (1, '2024-02-01'), (2, '2025-02-01'), (3, '2030-01-01')",
]
# file_fdw: the PostgreSQL 16 wheel's postgres_fdw.so resolves the system's (older) libpq and does not load.
FDW_SERVER = [
    Op("CREATE EXTENSION file_fdw"),
    Op("CREATE SERVER it_files FOREIGN DATA WRAPPER file_fdw"),
]
FOREIGN_TABLE = FDW_SERVER + [
    # Never read: creating a foreign table opens no file. Only a superuser may name the file; the owner then
    # becomes the application's owner, as for every other migrated object.
    Op("CREATE FOREIGN TABLE public.remote_items (id int, label text) SERVER it_files "
       "OPTIONS (filename '/nonexistent/items.csv', format 'csv')"),
    Op("ALTER FOREIGN TABLE public.remote_items OWNER TO %s" % APP_OWNER),
]
GENERATED = ["CREATE TABLE public.line (id int PRIMARY KEY, qty int, price int, "
             "total int GENERATED ALWAYS AS (qty * price) STORED)"]
TYPES = [
    "CREATE TYPE public.mood AS ENUM ('ok', 'sad')",
    "CREATE DOMAIN public.posint AS int CHECK (VALUE > 0)",
    "CREATE TYPE public.pair AS (a int, b int)",
    "CREATE TYPE public.floatrange AS RANGE (subtype = float8)",
    "CREATE TABLE public.uses_types (id int PRIMARY KEY, m public.mood, p public.posint)",
]
TRIGGER = [
    "CREATE TABLE public.acct (id int PRIMARY KEY, balance int)",
    "CREATE FUNCTION public.audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
    "CREATE TRIGGER audit_trg BEFORE UPDATE ON public.acct FOR EACH ROW EXECUTE FUNCTION public.audit()",
]
RULE = [
    "CREATE TABLE public.acct (id int PRIMARY KEY, balance int)",
    "CREATE RULE acct_no_delete AS ON DELETE TO public.acct DO INSTEAD NOTHING",
]
VIEW = [
    "CREATE TABLE public.src (id int PRIMARY KEY, v int)",
    "CREATE VIEW public.src_view AS SELECT * FROM public.src",  # has a _RETURN rule, which is not a user rule
]
EVENT_TRIGGER = [
    "CREATE FUNCTION public.ddl_guard() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN RETURN; END $$",
    Op("CREATE EVENT TRIGGER it_ddl_guard ON ddl_command_start EXECUTE FUNCTION public.ddl_guard()"),
]
ITEMS = ["CREATE TABLE public.items (id int PRIMARY KEY, qty int)"]
ROLE = [Op("CREATE ROLE {user} LOGIN")]
REPL_ROLE = [Op("CREATE ROLE {user} LOGIN REPLICATION")]
FOREIGN_OWNER = [Op("CREATE ROLE {user}_owner NOLOGIN"), Op("ALTER TABLE public.items OWNER TO {user}_owner")]
MASTERS_OWNER = [Master("CREATE ROLE {user}_owner NOLOGIN"), Op("ALTER TABLE public.items OWNER TO {user}_owner")]
NO_CREATE_FOR_THE_OWNER = [Op("REVOKE CREATE ON DATABASE {db} FROM %s" % APP_OWNER)]
AS_USER = {"migration_user": "{user}"}
DMS = {"engine": "dms"}


def case(case_id, check_id, setup, options, severity=None, obj=None, details=()):
    return pytest.param(check_id, setup, options, severity, obj, list(details), id="%s-%s" % (check_id, case_id))


SOURCE_TRIGGERS = [
    case("no_pk", "no_replica_identity", ["CREATE TABLE public.nopk (a int, b int)"] + ITEMS, {},
         "blocker", "public.nopk", ["1 table(s)", "public.nopk"]),
    case("identity_nothing", "no_replica_identity",
         ["CREATE TABLE public.nothing_ri (id int PRIMARY KEY)", "ALTER TABLE public.nothing_ri REPLICA IDENTITY NOTHING"],
         {}, "blocker", "public.nothing_ri", ["public.nothing_ri"]),
    case("full_native", "replica_identity_full",
         ["CREATE TABLE public.full_nopk (a int)", "ALTER TABLE public.full_nopk REPLICA IDENTITY FULL"], {},
         "warning", "public.full_nopk", ["1 table(s) without a primary key replicate with REPLICA IDENTITY FULL"]),
    case("full_dms", "replica_identity_full",
         ["CREATE TABLE public.full_nopk (a int)", "ALTER TABLE public.full_nopk REPLICA IDENTITY FULL"], DMS,
         "blocker", "public.full_nopk", ["DMS still drops"]),
    case("parent_children", "inheritance_children", INHERITANCE, {}, "warning", "public.measure",
         ["2 child table(s)", "public.measure_y2024", "public.measure_y2025"]),
    case("declarative", "partitioned_tables", PARTITIONS, {}, "info", "public.orders", ["3 leaf partition(s)"]),
    case("unlogged", "unlogged_tables", ["CREATE UNLOGGED TABLE public.scratch (id int PRIMARY KEY)"] + ITEMS, {},
         "warning", "public.scratch", ["public.scratch"]),
    case("lo", "large_objects",
         ["SELECT lo_create(0)", Op("SELECT lo_import(current_setting('data_directory') || '/PG_VERSION')")], {},
         "warning", "pg_largeobject", ["2 large object(s)"]),
    case("matview", "materialized_views",
         VIEW[:1] + ["CREATE MATERIALIZED VIEW public.src_totals AS SELECT count(*) AS n FROM public.src"], {},
         "info", "public.src_totals", ["public.src_totals"]),
    case("standalone_and_identity", "sequences",
         ["CREATE SEQUENCE public.invoice_no",
          "CREATE TABLE public.ticket (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY)"], {},
         "info", "2 sequence(s)", ["1 standalone: public.invoice_no"]),
    case("file_fdw", "foreign_tables", FOREIGN_TABLE, {}, "warning", "public.remote_items", ["public.remote_items"]),
    case("stored_native", "generated_columns", GENERATED, {}, "info", "public.line.total", ["public.line.total"]),
    case("stored_dms", "generated_columns", GENERATED, DMS, "warning", "public.line.total",
         ["not replicated: public.line.total"]),
    case("four_kinds", "user_defined_types", TYPES, {}, "info", "4 type(s)",
         ["enum public.mood", "domain public.posint", "composite public.pair", "range public.floatrange"]),
    case("four_kinds_dms", "user_defined_types", TYPES, DMS, "warning", "4 type(s)", ["enum public.mood"]),
    case("origin", "triggers", TRIGGER, {}, "info", "1 trigger(s)", ["audit_trg on public.acct"]),
    case("routing_trigger", "triggers", INHERITANCE, {}, "info", "1 trigger(s)", ["measure_route on public.measure"]),
    case("enable_always", "triggers_fire_on_replica",
         TRIGGER + ["ALTER TABLE public.acct ENABLE ALWAYS TRIGGER audit_trg"], {},
         "warning", "audit_trg", ["audit_trg on public.acct"]),
    case("enable_replica", "triggers_fire_on_replica",
         TRIGGER + ["ALTER TABLE public.acct ENABLE REPLICA TRIGGER audit_trg"], {},
         "warning", "audit_trg", ["audit_trg on public.acct"]),
    case("do_instead", "rules", RULE, {}, "warning", "acct_no_delete", ["acct_no_delete on public.acct"]),
    case("ddl_command_start", "event_triggers", EVENT_TRIGGER, {}, "info", "it_ddl_guard",
         ["it_ddl_guard (ddl_command_start)"]),
    case("pg_trgm", "extensions", ["CREATE EXTENSION pg_trgm"], {}, "info", "pg_trgm", ["pg_trgm 1."]),
    case("absent", "migration_user_missing", ITEMS, AS_USER, "blocker", "{user}",
         ["the migration user {user} does not exist"]),
    case("login_only", "replication_privilege", ITEMS + ROLE, AS_USER, "blocker", "{user}",
         ["{user} has no REPLICATION attribute"]),
    case("other_schema", "schema_usage",
         ["CREATE SCHEMA app", "CREATE TABLE app.items (id int PRIMARY KEY)"] + REPL_ROLE, AS_USER,
         "blocker", "app", ["{user} has no USAGE on schema(s) app"]),
    case("no_grant", "select_privilege", ITEMS + REPL_ROLE, AS_USER, "blocker", "public.items",
         ["{user} cannot SELECT 1 migrated table(s): public.items"]),
    case("no_grant_native", "create_privilege", ITEMS + REPL_ROLE + NO_CREATE_FOR_THE_OWNER, AS_USER, "blocker",
         MASTER_USER, ["the admin user %s lacks CREATE on database {db}: it cannot create the publications"
                       % MASTER_USER]),
    case("no_grant_dms", "create_privilege", ITEMS + REPL_ROLE, dict(AS_USER, **DMS), "warning", "{user}",
         ["{user} lacks CREATE on database {db}: DMS cannot create its control tables there"]),
    case("foreign_owner", "owner_roles", ITEMS + FOREIGN_OWNER, {}, "blocker", "{user}_owner",
         ["the admin user %s cannot act as {user}_owner (1 relation)" % MASTER_USER]),
    case("masters_own_role", "owner_roles", ITEMS + MASTERS_OWNER, {}, "blocker", "{user}_owner",
         ["the admin user %s is not a member of {user}_owner (1 relation)" % MASTER_USER]),
    case("masters_own_role_dms", "owner_roles", ITEMS + MASTERS_OWNER, DMS, "warning", "{user}_owner", []),
]

SOURCE_PASSES = [
    case("has_pk", "no_replica_identity", ITEMS, {}),
    case("identity_index", "no_replica_identity",
         ["CREATE TABLE public.ri (a int NOT NULL, b int)", "CREATE UNIQUE INDEX ri_a ON public.ri (a)",
          "ALTER TABLE public.ri REPLICA IDENTITY USING INDEX ri_a"], {}),
    case("identity_full", "no_replica_identity",
         ["CREATE TABLE public.full_nopk (a int)", "ALTER TABLE public.full_nopk REPLICA IDENTITY FULL"], {}),
    case("unlogged_not_replicated", "no_replica_identity", ["CREATE UNLOGGED TABLE public.scratch (a int)"], {}),
    case("full_with_pk", "replica_identity_full",
         ["CREATE TABLE public.full_pk (id int PRIMARY KEY)", "ALTER TABLE public.full_pk REPLICA IDENTITY FULL"], DMS),
    case("declarative_only", "inheritance_children", PARTITIONS, {}),
    case("inheritance_only", "partitioned_tables", INHERITANCE, {}),
    case("logged", "unlogged_tables", ITEMS, {}),
    case("bytea_is_not_lo", "large_objects",
         ["CREATE TABLE public.blobs (id int PRIMARY KEY, b bytea)", "INSERT INTO public.blobs VALUES (1, 'abc')"], {}),
    case("plain_view", "materialized_views", VIEW, {}),
    case("plain_key", "sequences", ITEMS, {}),
    case("server_without_table", "foreign_tables", FDW_SERVER, {}),
    case("default_not_generated", "generated_columns",
         ["CREATE TABLE public.line (id int PRIMARY KEY, qty int, total int DEFAULT 0)"], DMS),
    case("table_row_type", "user_defined_types", ITEMS, DMS),
    case("no_trigger", "triggers", ITEMS, {}),
    case("origin_only", "triggers_fire_on_replica", TRIGGER, {}),
    case("disabled", "triggers_fire_on_replica", TRIGGER + ["ALTER TABLE public.acct DISABLE TRIGGER audit_trg"], {}),
    case("view_return_rule", "rules", VIEW, {}),
    case("rule_on_excluded_table", "rules", RULE, {"exclude_tables": ["public.acct"]}),
    case("plain_function", "event_triggers", TRIGGER, {}),
    case("plpgsql_only", "extensions", ITEMS, {}),
    case("exists", "migration_user_missing", ITEMS + ROLE, AS_USER),
    case("replication", "replication_privilege", ITEMS + REPL_ROLE, AS_USER),
    case("master", "replication_privilege", ITEMS, {}),
    case("granted", "schema_usage",
         ["CREATE SCHEMA app", "CREATE TABLE app.items (id int PRIMARY KEY)"] + REPL_ROLE
         + ["GRANT USAGE ON SCHEMA app TO {user}"], AS_USER),
    case("granted", "select_privilege", ITEMS + REPL_ROLE + ["GRANT SELECT ON public.items TO {user}"], AS_USER),
    case("master_through_the_owner", "create_privilege", ITEMS + REPL_ROLE, AS_USER),
    case("granted_dms", "create_privilege", ITEMS + REPL_ROLE + ["GRANT CREATE ON DATABASE {db} TO {user}"],
         dict(AS_USER, **DMS)),
    case("owned_by_the_masters_role", "owner_roles", ITEMS, {}),
    case("master_holds_it", "subscription_privilege", ITEMS, {}),
    case("master_replicates", "admin_replication", ITEMS, {}),
    case("no_text", "lob_columns", ["CREATE TABLE public.t (id int PRIMARY KEY, n numeric, code varchar(40))"], DMS),
]


def _fmt(value, user, db):
    if isinstance(value, (Op, Master)):
        return type(value)(value.format(user=user, db=db))
    if isinstance(value, str):
        return value.format(user=user, db=db)
    if isinstance(value, list):
        return [_fmt(v, user, db) for v in value]
    return value


def _prepare(cluster, db, setup, options, user):
    for stmt in _fmt(setup or [], user, db):
        if isinstance(stmt, Master):
            with cluster.master_connect(db) as conn:
                conn.execute(stmt)
        else:
            cluster.execute(db, stmt, operator=isinstance(stmt, Op))
    return dict((k, _fmt(v, user, db)) for k, v in options.items())


def _assert_finding(prereqs, result, check_id, severity, obj, details):
    f = prereqs.one(result, check_id)
    assert f["severity"] == severity, f
    assert result["checks"][check_id] == severity
    assert f["object"] == obj, f
    for part in details:
        assert part in f["detail"], (part, f["detail"])
    assert result["summary"][severity] >= 1
    return f


@pytest.mark.parametrize("check_id, setup, options, severity, obj, details", SOURCE_TRIGGERS)
def test_source_check_triggers(prereqs, source_cluster, source_db, new_role, check_id, setup, options, severity, obj,
                               details):
    user = new_role()
    opts = _prepare(source_cluster, source_db, setup, options, user)
    result = prereqs.ok(prereqs(source_cluster, source_db, role="source", **opts))
    _assert_finding(prereqs, result, check_id, severity, _fmt(obj, user, source_db), _fmt(details, user, source_db))


@pytest.mark.parametrize("check_id, setup, options, severity, obj, details", SOURCE_PASSES)
def test_source_check_passes(prereqs, source_cluster, source_db, new_role, check_id, setup, options, severity, obj,
                             details):
    user = new_role()
    opts = _prepare(source_cluster, source_db, setup, options, user)
    result = prereqs.ok(prereqs(source_cluster, source_db, role="source", **opts))
    prereqs.passes(result, check_id)


def test_clean_source_passes_everything_but_the_reports(prereqs, source_cluster, source_db):
    """Good settings, superuser, one table with a key: only the always-reported infos remain."""
    source_cluster.execute(source_db, ITEMS)
    result = prereqs.ok(prereqs(source_cluster, source_db, role="source", fail_on="warning"))
    assert set(result["checks"]) == set(pure.SOURCE_CHECKS)
    not_passed = dict((k, v) for k, v in result["checks"].items() if v != "pass")
    assert not_passed == dict((k, "info") for k in ALWAYS_REPORTED_SOURCE)
    assert result["summary"] == {"blocker": 0, "warning": 0, "info": 3}
    assert result["changed"] is False and result["queries"] == [] and result["api_calls"] == []


# --- always-reported checks ------------------------------------------------------------------

@pytest.mark.parametrize("side", ["source", "target"])
def test_server_version_names_the_version(request, prereqs, new_db, side):
    cluster = request.getfixturevalue("%s_cluster" % side)
    db = new_db(cluster)
    (version, num), = cluster.query(db, "SELECT current_setting('server_version'), "
                                        "current_setting('server_version_num')::int")
    result = prereqs.ok(prereqs(cluster, db, role=side))
    f = _assert_finding(prereqs, result, "server_version", "info", "server", ["PostgreSQL %s" % version])
    assert result["server"]["version_num"] == num
    assert num // 10000 == (16 if side == "source" else 18)
    # rds_superuser exists, the rds.* settings do not: shaped like RDS, not RDS (or Aurora) itself.
    assert f["detail"] == "PostgreSQL %s (shaped like RDS: rds_superuser exists, the rds.* settings do not)" % version


@pytest.mark.parametrize("engine, severity", [("native", "blocker"), ("dms", "info")])
def test_server_version_too_old_is_a_blocker_for_native(engine, severity):
    """No PostgreSQL 9.x here: the old-server path is checked on crafted facts."""
    facts = dict(server=dict(version_num=90624, version_short="9.6.24", is_rds=True, is_aurora=False),
                 settings={"rds.logical_replication": dict(name="rds.logical_replication", setting="on")},
                 roles={"postgres": dict(superuser=True, replication=True, member_of=[], create_on_database=True)},
                 admin=dict(name="postgres", superuser=True, createrole=True, replication=True,
                            create_on_database=True, roles={}),
                 database=dict(name="app", size_bytes=1))
    opts = dict(role="source", engine=engine, planned_streams=1, reserved_slots=2, long_transaction_seconds=300,
                migration_user="postgres", rds=True, source=None, tables=[])
    findings, checks = pure.evaluate(facts, opts)
    f = [x for x in findings if x["id"] == "server_version"][0]
    assert (f["severity"], checks["server_version"]) == (severity, severity)
    assert "RDS for PostgreSQL 9.6.24" in f["detail"]


@pytest.mark.parametrize("side", ["source", "target"])
def test_database_size_reports_the_size(request, prereqs, new_db, side):
    cluster = request.getfixturevalue("%s_cluster" % side)
    db = new_db(cluster)
    cluster.execute(db, ["CREATE TABLE public.filler (id int PRIMARY KEY, pad text)",
                         "INSERT INTO public.filler SELECT g, repeat('p', 200) FROM generate_series(1, 5000) g",
                         "ANALYZE public.filler"])
    (size,), = cluster.query(db, "SELECT pg_database_size(current_database())")
    result = prereqs.ok(prereqs(cluster, db, role=side))
    f = _assert_finding(prereqs, result, "database_size", "info", db, ["1 tables to migrate", "~5000 rows"])
    assert abs(result["database"]["size_bytes"] - size) < 1024 * 1024
    assert f["detail"].startswith("database %s" % pure.human_bytes(result["database"]["size_bytes"]))
    assert result["sizes"]["tables"] == 1 and result["sizes"]["migrated_rows"] == 5000
    assert result["sizes"]["largest"][0]["table"] == "public.filler"


def test_ddl_not_replicated_is_reported_on_the_source_only(prereqs, source_cluster, source_db,
                                                           target_cluster, target_db):
    result = prereqs.ok(prereqs(source_cluster, source_db, role="source"))
    _assert_finding(prereqs, result, "ddl_not_replicated", "info", "schema", ["DDL is not replicated"])
    result = prereqs.ok(prereqs(target_cluster, target_db, role="target"))
    assert "ddl_not_replicated" not in result["checks"] and not prereqs.by_id(result, "ddl_not_replicated")


# --- LOB columns ------------------------------------------------------------------------------

@pytest.mark.parametrize("engine, severity", [("native", "info"), ("dms", "warning")])
def test_lob_column_over_one_megabyte(prereqs, source_cluster, source_db, engine, severity):
    big = 1200 * 1024
    source_cluster.execute(source_db, [
        "CREATE TABLE public.docs (id int PRIMARY KEY, body text, note varchar, meta jsonb, qty int)",
        "INSERT INTO public.docs VALUES (1, repeat('x', %d), 'n', '{\"a\": 1}', 1), (2, 'short', NULL, NULL, 2)" % big,
    ])
    result = prereqs.ok(prereqs(source_cluster, source_db, role="source", engine=engine))
    f = _assert_finding(prereqs, result, "lob_columns", severity, "3 column(s)", ["public.docs.body 1.2 MB"])
    columns = dict((c["column"], c) for c in result["lob"]["columns"])
    assert set(columns) == {"body", "note", "meta"}
    assert columns["body"]["max_bytes"] == big >= 1024 * 1024
    assert columns["body"]["how"] == ["scanned"] and columns["body"]["table"] == "public.docs"
    assert columns["note"]["max_bytes"] == 1
    assert result["lob"]["columns"][0]["column"] == "body"  # largest first
    rec = result["lob"]["recommendation"]
    assert rec["mode"] == "limited" and rec["largest_bytes"] == big
    assert rec["lob_max_size_kb"] * 1024 >= big
    assert rec["reason"] == f["remediation"]


def test_small_lob_values_are_only_info_for_dms(prereqs, source_cluster, source_db):
    source_cluster.execute(source_db, ["CREATE TABLE public.docs (id int PRIMARY KEY, body text)",
                                       "INSERT INTO public.docs VALUES (1, repeat('x', 1000))"])
    result = prereqs.ok(prereqs(source_cluster, source_db, role="source", engine="dms"))
    _assert_finding(prereqs, result, "lob_columns", "info", "1 column(s)", ["public.docs.body"])
    assert result["lob"]["recommendation"]["lob_max_size_kb"] == 32


def test_lob_sampling_reads_partition_leaves_under_the_root(prereqs, source_cluster, source_db):
    source_cluster.execute(source_db, [
        "CREATE TABLE public.notes (id int, body text, PRIMARY KEY (id)) PARTITION BY RANGE (id)",
        "CREATE TABLE public.notes_1 PARTITION OF public.notes FOR VALUES FROM (0) TO (100)",
        "CREATE TABLE public.notes_2 PARTITION OF public.notes FOR VALUES FROM (100) TO (200)",
        "INSERT INTO public.notes VALUES (1, repeat('a', 10)), (150, repeat('b', 70000))",
    ])
    result = prereqs.ok(prereqs(source_cluster, source_db, role="source"))
    assert [(c["table"], c["column"], c["max_bytes"]) for c in result["lob"]["columns"]] == [
        ("public.notes", "body", 70000)]


def test_lob_columns_ignore_relations_that_are_not_replicated(prereqs, source_cluster, source_db):
    """Materialized views and foreign tables hold no replicated rows: no LOB column of theirs is listed."""
    _prepare(source_cluster, source_db, VIEW + FOREIGN_TABLE + [
        "CREATE MATERIALIZED VIEW public.labels AS SELECT id, v::text AS label FROM public.src"], {}, None)
    result = prereqs.ok(prereqs(source_cluster, source_db, role="source"))
    assert result["lob"]["columns"] == []
    prereqs.passes(result, "lob_columns")


# --- sessions, prepared transactions and slots (cluster-wide: always cleaned up) ---------------

@pytest.mark.parametrize("side", ["source", "target"])
def test_long_running_transaction(request, prereqs, new_db, side):
    cluster = request.getfixturevalue("%s_cluster" % side)
    db = new_db(cluster)
    with cluster.connect(db, autocommit=False) as holder:
        holder.execute("SELECT txid_current()")
        pid = holder.info.backend_pid
        opened = time.time()
        try:
            result = prereqs.ok(prereqs(cluster, db, role=side))  # default: 300 s
            prereqs.passes(result, "long_running_transactions")
            time.sleep(max(0.0, 2.2 - (time.time() - opened)))
            result = prereqs.ok(prereqs(cluster, db, role=side, long_transaction_seconds=1))
            _assert_finding(prereqs, result, "long_running_transactions", "warning", "pid %d" % pid,
                            ["1 transaction(s) open longer than 1s", "user postgres"])
        finally:
            holder.rollback()


@pytest.mark.parametrize("side", ["source", "target"])
def test_prepared_transaction(request, prereqs, new_db, side):
    cluster = request.getfixturevalue("%s_cluster" % side)
    db = new_db(cluster)
    gid = "it_gid_%s" % db
    with cluster.connect(db) as conn:
        conn.execute("CREATE TABLE public.pt (id int PRIMARY KEY)")
        conn.execute("BEGIN")
        conn.execute("INSERT INTO public.pt VALUES (1)")
        conn.execute("PREPARE TRANSACTION '%s'" % gid)
    try:
        result = prereqs.ok(prereqs(cluster, db, role=side))
        _assert_finding(prereqs, result, "prepared_transactions", "warning", gid, ["1 prepared transaction(s)"])
        result = prereqs.ok(prereqs(cluster, db, role=side, long_transaction_seconds=0))
        _assert_finding(prereqs, result, "prepared_transactions", "blocker", gid, ["(1 older than 0s)"])
    finally:
        cluster.execute(db, "ROLLBACK PREPARED '%s'" % gid)
    result = prereqs.ok(prereqs(cluster, db, role=side))
    prereqs.passes(result, "prepared_transactions")


@pytest.mark.parametrize("side", ["source", "target"])
def test_inactive_replication_slot(request, prereqs, new_db, side):
    cluster = request.getfixturevalue("%s_cluster" % side)
    db = new_db(cluster)
    slot = "it_slot_%s" % db[:40]
    cluster.execute(db, "SELECT pg_create_logical_replication_slot('%s', 'pgoutput')" % slot, operator=True)
    try:
        result = prereqs.ok(prereqs(cluster, db, role=side))
        _assert_finding(prereqs, result, "inactive_replication_slots", "warning", slot, ["%s (" % slot])
    finally:
        cluster.execute(db, "SELECT pg_drop_replication_slot('%s')" % slot, operator=True)
    result = prereqs.ok(prereqs(cluster, db, role=side))
    prereqs.passes(result, "inactive_replication_slots")


# --- settings -----------------------------------------------------------------------------------

POOR_SOURCE_CASES = [
    pytest.param("wal_level", {}, "blocker", ["wal_level = replica", "logical decoding needs logical"], id="wal_level"),
    pytest.param("wal_level", {"role": "target"}, "warning", ["wal_level = replica", "reverse replication"],
                 id="wal_level-as-target"),
    pytest.param("max_replication_slots", {"planned_streams": 1}, "warning",
                 ["max_replication_slots = 2 leaves no headroom", "want 3"], id="slots-1-stream"),
    pytest.param("max_replication_slots", {"planned_streams": 3}, "blocker",
                 ["max_replication_slots = 2 but 0 slots in use plus 3 planned streams need at least 3"],
                 id="slots-3-streams"),
    pytest.param("max_replication_slots", {"role": "target"}, "warning", ["want 3"], id="slots-as-target"),
    pytest.param("max_wal_senders", {"planned_streams": 1}, "warning",
                 ["max_wal_senders = 2 leaves no headroom", "want 3"], id="senders-1-stream"),
    pytest.param("max_wal_senders", {"planned_streams": 3}, "blocker", ["need at least 3"], id="senders-3-streams"),
    pytest.param("max_wal_senders", {"role": "target"}, "warning", ["want 3"], id="senders-as-target"),
    pytest.param("max_slot_wal_keep_size", {}, "warning", ["max_slot_wal_keep_size = -1"], id="keep-unlimited"),
    pytest.param("wal_sender_timeout", {}, "warning", ["wal_sender_timeout = 0"], id="timeout-0-native"),
]


@pytest.mark.parametrize("check_id, options, severity, details", POOR_SOURCE_CASES)
def test_poor_settings_are_found(prereqs, poor_cluster, new_db, check_id, options, severity, details):
    db = new_db(poor_cluster)
    options = dict(options)
    role = options.pop("role", "source")
    result = prereqs.ok(prereqs(poor_cluster, db, role=role, **options))
    _assert_finding(prereqs, result, check_id, severity, check_id, details)


POOR_NEAR_MISSES = [
    pytest.param("wal_sender_timeout", {"engine": "dms"}, id="timeout-0-is-fine-for-dms"),
    pytest.param("max_replication_slots", {"planned_streams": 1, "reserved_slots": 0}, id="slots-enough-no-reserve"),
    pytest.param("max_wal_senders", {"planned_streams": 2, "reserved_slots": 0}, id="senders-exactly-enough"),
    pytest.param("rds_logical_replication", {}, id="rds-setting-absent-on-community"),
]
GOOD_SOURCE_SETTINGS = ("wal_level", "rds_logical_replication", "max_replication_slots", "max_wal_senders",
                        "max_slot_wal_keep_size", "wal_sender_timeout")
GOOD_TARGET_SETTINGS = ("wal_level", "max_replication_slots", "max_wal_senders", "max_worker_processes",
                        "max_logical_replication_workers", "max_sync_workers_per_subscription")


@pytest.mark.parametrize("check_id, options", POOR_NEAR_MISSES)
def test_poor_cluster_near_misses_pass(prereqs, poor_cluster, new_db, check_id, options):
    db = new_db(poor_cluster)
    result = prereqs.ok(prereqs(poor_cluster, db, role="source", **options))
    prereqs.passes(result, check_id)
    assert "rds.logical_replication" not in result["settings"]


@pytest.mark.parametrize("engine", ["native", "dms"])
def test_good_source_settings_pass(prereqs, source_cluster, source_db, engine):
    result = prereqs.ok(prereqs(source_cluster, source_db, role="source", engine=engine, planned_streams=4))
    for check_id in GOOD_SOURCE_SETTINGS:
        prereqs.passes(result, check_id)
    assert result["settings"]["wal_level"]["setting"] == "logical"
    assert result["planned_streams"] == 4


@pytest.mark.parametrize("engine, severity, detail", [
    ("dms", "blocker", "wal_sender_timeout = 5000 ms: DMS CDC fails below 10000 ms"),
    ("native", "warning", "wal_sender_timeout = 5000 ms is short"),
])
def test_short_wal_sender_timeout(prereqs, source_cluster, source_db, engine, severity, detail):
    source_cluster.execute("postgres", "ALTER DATABASE %s SET wal_sender_timeout = 5000" % source_db)
    result = prereqs.ok(prereqs(source_cluster, source_db, role="source", engine=engine))
    assert result["settings"]["wal_sender_timeout"]["setting"] == "5000"
    _assert_finding(prereqs, result, "wal_sender_timeout", severity, "wal_sender_timeout", [detail])


POOR_TARGET_CASES = [
    pytest.param("max_logical_replication_workers", {"planned_streams": 1}, "warning",
                 ["max_logical_replication_workers = 1 leaves no headroom", "want 3"], id="lrw-1-stream"),
    pytest.param("max_logical_replication_workers", {"planned_streams": 2}, "blocker",
                 ["max_logical_replication_workers = 1 but 2 apply workers", "need at least 2"], id="lrw-2-streams"),
    pytest.param("max_worker_processes", {"planned_streams": 1}, "warning",
                 ["max_worker_processes = 2 leaves no headroom", "want 7"], id="mwp-1-stream"),
    pytest.param("max_worker_processes", {"planned_streams": 2}, "blocker",
                 ["max_worker_processes = 2 but", "need at least 3"], id="mwp-2-streams"),
    pytest.param("max_sync_workers_per_subscription", {}, "warning",
                 ["max_sync_workers_per_subscription = 1: tables are copied one at a time"], id="sync-1"),
]


@pytest.mark.parametrize("check_id, options, severity, details", POOR_TARGET_CASES)
def test_poor_target_worker_settings(prereqs, poor_target_cluster, new_db, check_id, options, severity, details):
    db = new_db(poor_target_cluster)
    result = prereqs.ok(prereqs(poor_target_cluster, db, role="target", **options))
    _assert_finding(prereqs, result, check_id, severity, check_id, details)


def test_good_target_worker_settings_pass(prereqs, target_cluster, target_db):
    result = prereqs.ok(prereqs(target_cluster, target_db, role="target", planned_streams=4))
    for check_id in GOOD_TARGET_SETTINGS:
        prereqs.passes(result, check_id)


# --- target checks -------------------------------------------------------------------------------

def neutral_source_facts(cluster, db, **changes):
    """Source facts that match the target database (as a same-locale PG15 source would report)."""
    (encoding, collate, ctype), = cluster.query(db, "SELECT pg_encoding_to_char(encoding), datcollate, datctype "
                                                    "FROM pg_database WHERE datname = current_database()")
    facts = dict(version_num=150018, version="15.18", encoding=encoding, collate=collate, ctype=ctype,
                 extensions=[dict(name="plpgsql", version="1.0")])
    facts.update(changes)
    return facts


TARGET_TRIGGERS = [
    case("absent", "migration_user_missing", [], AS_USER, "blocker", "{user}", ["{user} does not exist"]),
    case("login_only", "replication_privilege", ROLE, AS_USER, "blocker", "{user}", ["(reverse replication)"]),
    case("no_grant_native", "create_privilege", REPL_ROLE + NO_CREATE_FOR_THE_OWNER, AS_USER, "blocker",
         MASTER_USER, ["the admin user %s lacks CREATE on database {db}: it cannot create the subscriptions and "
                       "schemas" % MASTER_USER]),
    case("no_grant_dms", "create_privilege", REPL_ROLE, dict(AS_USER, **DMS), "warning", "{user}", ["lacks CREATE"]),
    case("dms_cannot_set", "replication_role_setting", REPL_ROLE, dict(AS_USER, **DMS), "blocker", "{user}",
         ["may not SET session_replication_role", "DMS target endpoint"]),
    case("foreign_owner", "owner_roles", ITEMS + FOREIGN_OWNER, {}, "blocker", "{user}_owner",
         ["the admin user %s cannot act as {user}_owner (1 relation)" % MASTER_USER]),
    case("two_tables", "target_not_empty", ITEMS + ["CREATE TABLE public.zeta (id int PRIMARY KEY)"], {},
         "info", "2 table(s)", ["public.items", "public.zeta"]),
    case("enable_always", "triggers_fire_on_replica",
         TRIGGER + ["ALTER TABLE public.acct ENABLE ALWAYS TRIGGER audit_trg"], {}, "warning", "audit_trg",
         ["audit_trg on public.acct"]),
    case("do_instead", "rules", RULE, {}, "warning", "acct_no_delete", ["acct_no_delete on public.acct"]),
    case("ddl_command_start", "event_triggers", EVENT_TRIGGER, {}, "warning", "it_ddl_guard",
         ["it_ddl_guard (ddl_command_start)"]),
]

TARGET_PASSES = [
    case("exists", "migration_user_missing", REPL_ROLE, AS_USER),
    case("replication", "replication_privilege", REPL_ROLE, AS_USER),
    case("master_through_the_owner", "create_privilege", REPL_ROLE, AS_USER),
    case("granted_dms", "create_privilege", REPL_ROLE + ["GRANT CREATE ON DATABASE {db} TO {user}"],
         dict(AS_USER, **DMS)),
    case("master_holds_it", "subscription_privilege", [], {}),
    case("dms_may_set", "replication_role_setting",
         REPL_ROLE + [Op("GRANT SET ON PARAMETER session_replication_role TO {user}")], dict(AS_USER, **DMS)),
    case("native_needs_no_set", "replication_role_setting", REPL_ROLE, AS_USER),
    case("owned_by_the_masters_role", "owner_roles", ITEMS, {}),
    case("master_replicates", "admin_replication", [], {}),
    case("sequence_is_not_a_table", "target_not_empty", ["CREATE SEQUENCE public.s", "CREATE VIEW public.v AS SELECT 1"],
         {}),
    case("origin_only", "triggers_fire_on_replica", TRIGGER, {}),
    case("view_return_rule", "rules", VIEW, {}),
    case("plain_function", "event_triggers", TRIGGER, {}),
    case("same_encoding", "encoding_mismatch", [], {}),
    case("same_locale", "collation_mismatch", [], {}),
    case("plpgsql_available", "extension_unavailable", [], {}),
    case("same_major", "version_downgrade", [], {}),
]


@pytest.mark.parametrize("check_id, setup, options, severity, obj, details", TARGET_TRIGGERS)
def test_target_check_triggers(prereqs, target_cluster, target_db, new_role, check_id, setup, options, severity, obj,
                               details):
    user = new_role()
    opts = _prepare(target_cluster, target_db, setup, options, user)
    result = prereqs.ok(prereqs(target_cluster, target_db, role="target",
                                source_facts=neutral_source_facts(target_cluster, target_db), **opts))
    _assert_finding(prereqs, result, check_id, severity, _fmt(obj, user, target_db), _fmt(details, user, target_db))


@pytest.mark.parametrize("check_id, setup, options, severity, obj, details", TARGET_PASSES)
def test_target_check_passes(prereqs, target_cluster, target_db, new_role, check_id, setup, options, severity, obj,
                             details):
    user = new_role()
    opts = _prepare(target_cluster, target_db, setup, options, user)
    result = prereqs.ok(prereqs(target_cluster, target_db, role="target",
                                source_facts=neutral_source_facts(target_cluster, target_db,
                                                                  version_num=180000), **opts))
    prereqs.passes(result, check_id)


def test_clean_target_passes_everything_but_the_reports(prereqs, target_cluster, target_db):
    result = prereqs.ok(prereqs(target_cluster, target_db, role="target", fail_on="warning",
                                source_facts=neutral_source_facts(target_cluster, target_db)))
    assert set(result["checks"]) == set(pure.TARGET_CHECKS)
    not_passed = dict((k, v) for k, v in result["checks"].items() if v != "pass")
    assert not_passed == dict((k, "info") for k in ALWAYS_REPORTED_TARGET)
    assert "lob" not in result and "source_facts" not in result


def test_version_downgrade(prereqs, source_cluster, source_db):
    """A PG16 target for a PG18 source."""
    facts = neutral_source_facts(source_cluster, source_db, version_num=180000, version="18.0")
    result = prereqs.ok(prereqs(source_cluster, source_db, role="target", source_facts=facts))
    _assert_finding(prereqs, result, "version_downgrade", "blocker", "server",
                    ["the target runs major 16, older than the source's 18"])


UTF8_SOURCE = dict(version_num=150018, version="15.18", encoding="UTF8", collate="C.UTF-8", ctype="C.UTF-8",
                   extensions=[])


def test_encoding_mismatch(prereqs, target_cluster, new_db):
    db = new_db(target_cluster, "ENCODING 'LATIN1' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'")
    result = prereqs.ok(prereqs(target_cluster, db, role="target", source_facts=UTF8_SOURCE))
    f = _assert_finding(prereqs, result, "encoding_mismatch", "blocker", db,
                        ["the target database is LATIN1, the source UTF8"])
    assert "ENCODING 'UTF8'" in f["remediation"]
    collations = prereqs.by_id(result, "collation_mismatch")
    assert sorted(f["detail"].split(":")[0] for f in collations) == ["LC_COLLATE differs", "LC_CTYPE differs"]
    assert all(f["severity"] == "warning" and f["object"] == db for f in collations)


@pytest.mark.parametrize("side", ["target", "source"])
def test_sql_ascii_database_is_assessed(prereqs, target_cluster, new_db, side):
    db = new_db(target_cluster, "ENCODING 'SQL_ASCII' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'")
    result = prereqs.ok(prereqs(target_cluster, db, role=side, source_facts=UTF8_SOURCE if side == "target" else None))
    if side == "target":
        _assert_finding(prereqs, result, "encoding_mismatch", "blocker", db,
                        ["the target database is SQL_ASCII, the source UTF8"])
    else:
        assert result["source_facts"]["encoding"] == "SQL_ASCII"


def test_collation_mismatch_alone(prereqs, target_cluster, new_db):
    db = new_db(target_cluster, "ENCODING 'UTF8' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C.UTF-8'")
    result = prereqs.ok(prereqs(target_cluster, db, role="target", source_facts=UTF8_SOURCE))
    _assert_finding(prereqs, result, "collation_mismatch", "warning", db,
                    ["LC_COLLATE differs: target C, source C.UTF-8"])
    prereqs.passes(result, "encoding_mismatch")


def test_source_facts_flow_to_the_target(prereqs, source_cluster, source_db, target_cluster, target_db):
    """Real source facts (with extensions the PG18 target has) pass; a fake extension is a blocker."""
    source_cluster.execute(source_db, ["CREATE EXTENSION pg_trgm", "CREATE EXTENSION hstore"] + ITEMS)
    source = prereqs.ok(prereqs(source_cluster, source_db, role="source"))
    facts = source["source_facts"]
    assert facts["planned_streams"] == source["planned_streams"] == 1
    assert {"pg_trgm", "hstore", "plpgsql"} <= set(e["name"] for e in facts["extensions"])
    assert facts["version_num"] == source["server"]["version_num"]
    _assert_finding(prereqs, source, "extensions", "info", "hstore, pg_trgm", ["hstore 1.", "pg_trgm 1."])

    result = prereqs.ok(prereqs(target_cluster, target_db, role="target", source_facts=facts))
    for check_id in ("extension_unavailable", "version_downgrade", "encoding_mismatch", "collation_mismatch"):
        prereqs.passes(result, check_id)

    facts = dict(facts, extensions=facts["extensions"] + [dict(name="pgshift_no_such_ext", version="9.9")])
    result = prereqs.ok(prereqs(target_cluster, target_db, role="target", source_facts=facts))
    _assert_finding(prereqs, result, "extension_unavailable", "blocker", "pgshift_no_such_ext",
                    ["not available on the target: pgshift_no_such_ext"])


def test_rds_logical_replication_passes_on_a_server_shaped_like_rds(prereqs, source_cluster, source_db):
    """rds.logical_replication does not exist outside RDS (the test clusters have rds_superuser, not the setting);
    its trigger case is in test_prereqs_rds.py."""
    result = prereqs.ok(prereqs(source_cluster, source_db, role="source"))
    assert result["server"]["is_rds"] is True and "rds.logical_replication" not in result["settings"]
    prereqs.passes(result, "rds_logical_replication")


# --- scope filters and streams --------------------------------------------------------------------

NOPK = ["CREATE TABLE public.nopk (a int, b text)"] + ITEMS
PARTITIONED_NOPK = [
    "CREATE TABLE public.events (id int, at date NOT NULL) PARTITION BY RANGE (at)",
    "CREATE TABLE public.events_2024 PARTITION OF public.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
    "CREATE TABLE public.events_default PARTITION OF public.events DEFAULT",
]


def test_excluded_table_without_key_does_not_block(prereqs, source_cluster, source_db):
    source_cluster.execute(source_db, NOPK)
    result = prereqs(source_cluster, source_db, role="source", fail_on="blocker")
    assert result["failed"] and "no_replica_identity (public.nopk)" in result["msg"]
    result = prereqs.ok(prereqs(source_cluster, source_db, role="source", fail_on="blocker",
                                exclude_tables=["public.nopk"]))
    prereqs.passes(result, "no_replica_identity")
    assert result["sizes"]["tables"] == 1


def test_partition_follows_its_root_exclusion(prereqs, source_cluster, source_db):
    source_cluster.execute(source_db, PARTITIONED_NOPK + ITEMS)
    result = prereqs.ok(prereqs(source_cluster, source_db, role="source"))
    f = _assert_finding(prereqs, result, "no_replica_identity", "blocker", "public.events_2024, public.events_default",
                        ["2 table(s)"])
    assert "public.events," not in f["detail"]
    _assert_finding(prereqs, result, "partitioned_tables", "info", "public.events", ["2 leaf partition(s)"])

    result = prereqs.ok(prereqs(source_cluster, source_db, role="source", exclude_tables=["public.events"]))
    prereqs.passes(result, "no_replica_identity")
    prereqs.passes(result, "partitioned_tables")
    assert result["sizes"]["tables"] == 1


def test_include_tables_takes_the_partitions_of_an_included_root(prereqs, source_cluster, source_db):
    source_cluster.execute(source_db, PARTITIONED_NOPK + NOPK)
    result = prereqs.ok(prereqs(source_cluster, source_db, role="source", include_tables=["public.ev*"]))
    _assert_finding(prereqs, result, "no_replica_identity", "blocker", "public.events_2024, public.events_default",
                    [])
    assert result["sizes"]["tables"] == 2


def test_schema_filters(prereqs, source_cluster, source_db):
    source_cluster.execute(source_db, ["CREATE SCHEMA junk", "CREATE TABLE junk.nopk (a int)"] + ITEMS)
    result = prereqs.ok(prereqs(source_cluster, source_db, role="source"))
    _assert_finding(prereqs, result, "no_replica_identity", "blocker", "junk.nopk", [])
    result = prereqs.ok(prereqs(source_cluster, source_db, role="source", exclude_schemas=["junk"]))
    prereqs.passes(result, "no_replica_identity")
    result = prereqs.ok(prereqs(source_cluster, source_db, role="source", include_schemas=["public"]))
    prereqs.passes(result, "no_replica_identity")


def test_include_schemas_keeps_a_partition_stored_in_another_schema(prereqs, source_cluster, source_db):
    """The partition of an included root follows it even when it lives in another schema."""
    source_cluster.execute(source_db, [
        "CREATE SCHEMA parts",
        "CREATE TABLE public.events (id int, at date NOT NULL) PARTITION BY RANGE (at)",
        "CREATE TABLE parts.events_2024 PARTITION OF public.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
    ])
    result = prereqs.ok(prereqs(source_cluster, source_db, role="source", include_schemas=["public"]))
    _assert_finding(prereqs, result, "partitioned_tables", "info", "public.events", ["1 leaf partition(s)"])
    _assert_finding(prereqs, result, "no_replica_identity", "blocker", "parts.events_2024", [])


def test_planned_streams_zero_uses_the_suggestion(prereqs, poor_cluster, new_db):
    """Writes since a stats reset call for 3 streams (one per table: over 5000 row writes/s at 2500 per stream);
    planned_streams 0 plans them."""
    db = new_db(poor_cluster)
    tables = ["w1", "w2", "w3"]
    poor_cluster.execute(db, "SELECT pg_stat_reset()", operator=True)
    poor_cluster.execute(db, [
        "CREATE TABLE public.%s (id int PRIMARY KEY)" % t for t in tables] + [
        "INSERT INTO public.%s SELECT generate_series(1, 100000)" % t for t in tables])
    assert wait_for(lambda: poor_cluster.query(db, "SELECT coalesce(sum(n_tup_ins), 0) FROM pg_stat_user_tables")[0][0]
                    >= 300000, timeout=10)
    # The average since the reset (-1), once the statistics are a second old (see the division-by-zero test).
    assert wait_for(lambda: poor_cluster.query(db, "SELECT now() - stats_reset > interval '1.5 s' FROM "
                                                   "pg_stat_database WHERE datname = current_database()")[0][0])
    average = dict(write_rate_sample_seconds=-1)
    result = prereqs.ok(prereqs(poor_cluster, db, role="source", planned_streams=0, **average))
    assert result["sizes"]["write_rate_method"].startswith("average over ")
    assert result["suggested_streams"] == 3
    assert result["planned_streams"] == result["suggested_streams"]
    assert result["sizes"]["writes_per_second"] > 5000
    _assert_finding(prereqs, result, "max_replication_slots", "blocker", "max_replication_slots",
                    ["3 planned streams need at least 3"])
    result = prereqs.ok(prereqs(poor_cluster, db, role="source", **average))
    assert (result["planned_streams"], result["suggested_streams"]) == (1, 3)


def test_write_rates_are_sampled_by_default_on_young_statistics(prereqs, source_cluster, source_db):
    source_cluster.execute(source_db, ITEMS)
    result = prereqs.ok(prereqs(source_cluster, source_db, role="source", write_rate_sample_seconds=0))
    assert result["sizes"]["write_rate_method"] == "sampled over 3s"


def test_write_rate_sample_sees_concurrent_writes(prereqs, source_cluster, source_db):
    source_cluster.execute(source_db, ["CREATE TABLE public.hot (id bigserial PRIMARY KEY, v int)",
                                       "CREATE TABLE public.cold (id int PRIMARY KEY)"])
    stop = threading.Event()

    def writer():
        with source_cluster.connect(source_db) as conn:
            while not stop.is_set():
                conn.execute("INSERT INTO public.hot (v) SELECT generate_series(1, 100)")
                time.sleep(0.01)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(1.2)  # a busy backend flushes its counters about once a second
        result = prereqs.ok(prereqs(source_cluster, source_db, role="source", write_rate_sample_seconds=2.5))
    finally:
        stop.set()
        thread.join()
    rates = dict((e["table"], e["writes_per_second"]) for e in result["sizes"]["largest"])
    assert result["sizes"]["write_rate_method"] == "sampled over 2.5s"
    assert rates["public.hot"] > 100 and rates["public.cold"] == 0
    assert result["sizes"]["writes_per_second"] == rates["public.hot"]


def test_average_write_rate_right_after_a_stats_reset(source_cluster, source_db):
    """Statistics reset 0 s ago (regression: this divided by zero). In-process, on the connection that reset
    them, so the age is 0 every time."""
    source_cluster.execute(source_db, ITEMS)
    with source_cluster.connect(source_db, operator=True) as conn:
        conn.execute("SELECT pg_stat_reset()")
        facts = catalog.gather(conn, "source", "postgres", dict(include_schemas=[], exclude_schemas=[],
                                                                include_tables=[], exclude_tables=[]),
                               write_rate_seconds=-1)[0]
    assert facts["write_rate_method"] == "average over 0s since the statistics were reset"
    assert list(facts["write_rates"].values()) == [0.0]


def test_target_does_not_sample_write_rates(prereqs, target_cluster, target_db):
    result = prereqs.ok(prereqs(target_cluster, target_db, role="target", write_rate_sample_seconds=0))
    assert result["sizes"]["write_rate_method"].startswith("average over ")


def test_target_inherits_the_planned_streams_of_the_source(prereqs, target_cluster, target_db):
    facts = neutral_source_facts(target_cluster, target_db, planned_streams=4)
    result = prereqs.ok(prereqs(target_cluster, target_db, role="target", planned_streams=0, source_facts=facts))
    assert result["planned_streams"] == 4
    result = prereqs.ok(prereqs(target_cluster, target_db, role="target", planned_streams=2, source_facts=facts))
    assert result["planned_streams"] == 2


# --- every check id is covered --------------------------------------------------------------------

def _ids(params, target=None):
    """Check ids of parametrised cases (target: only the poor-cluster cases run with that role)."""
    ids = set()
    for p in params:
        options = p.values[1] if isinstance(p.values[1], dict) else {}
        if target is None or (options.get("role", "source") == "target") == target:
            ids.add(p.values[0])
    return ids


# Checks covered by the dedicated tests above (test_prereqs_rds.py for rds_logical_replication; test_prereqs_master.py
# and test_prereqs_errors.py for the admin's subscriptions and replication, which change cluster-wide roles).
SESSION_CHECKS = {"long_running_transactions", "prepared_transactions", "inactive_replication_slots"}
DEDICATED_SOURCE_TRIGGERS = SESSION_CHECKS | {"server_version", "database_size", "ddl_not_replicated", "lob_columns",
                                              "rds_logical_replication", "subscription_privilege",
                                              "admin_replication"}
DEDICATED_TARGET_TRIGGERS = SESSION_CHECKS | {"server_version", "database_size", "version_downgrade",
                                              "encoding_mismatch", "collation_mismatch", "extension_unavailable",
                                              "subscription_privilege", "admin_replication"}


def test_every_check_id_has_a_triggering_and_a_passing_case():
    """A check added to SOURCE_CHECKS/TARGET_CHECKS without cases here fails this test."""
    source_triggered = _ids(SOURCE_TRIGGERS) | _ids(POOR_SOURCE_CASES, target=False) | DEDICATED_SOURCE_TRIGGERS
    source_passed = _ids(SOURCE_PASSES) | _ids(POOR_NEAR_MISSES) | set(GOOD_SOURCE_SETTINGS) | SESSION_CHECKS
    target_triggered = (_ids(TARGET_TRIGGERS) | _ids(POOR_SOURCE_CASES, target=True) | _ids(POOR_TARGET_CASES)
                        | DEDICATED_TARGET_TRIGGERS)
    target_passed = _ids(TARGET_PASSES) | set(GOOD_TARGET_SETTINGS) | SESSION_CHECKS
    assert set(pure.SOURCE_CHECKS) - source_triggered == set()
    assert set(pure.SOURCE_CHECKS) - ALWAYS_REPORTED_SOURCE - source_passed == set()
    assert set(pure.TARGET_CHECKS) - target_triggered == set()
    assert set(pure.TARGET_CHECKS) - ALWAYS_REPORTED_TARGET - target_passed == set()
