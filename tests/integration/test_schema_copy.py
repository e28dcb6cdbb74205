"""pg_schema_copy and playbooks/copy_schema.yml against real clusters shaped like RDS and Aurora.

The session's PostgreSQL 16 source and 18 target (conftest: TLS only, the master user ``dbadmin`` who
is not a superuser, the target's pg_dump/pg_restore); the module always runs as the master user over
TLS verify-full on both sides, as on AWS. Every test gets its own source database loaded with the
lab's demo schema (roles/lab/files/dataset/10_schema.sql, its owner a role the master user creates
per test, as a DBA does on RDS) at a tiny scale, plus what the lab does not have (grants, comments,
trigger states, a rule, a policy, a NOT VALID check, statistics, an exclusion constraint), and its
own target database name. The names that need quoting (30_hard_names.sql) have a test of their own;
a PostgreSQL 15 target with the superuser as login keeps the superuser path. Every run checks that no
password appears in the output.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import threading
import time

import pytest
import yaml

from ansible_collections.pgshift.aurora.plugins.module_utils._pg import loader
from modrunner import REPO, run_module, run_playbook
from pgcluster import ADMIN_PASSWORD, APP_OWNER, MASTER_USER, Cluster, system_bin_dir, wheel_bin_dir

MODULE = "pg_schema_copy"
DATASET = os.path.join(REPO, "roles", "lab", "files", "dataset")
SCHEMA_SQL = os.path.join(DATASET, "10_schema.sql")
HARD_NAMES_SQL = os.path.join(DATASET, "30_hard_names.sql")
HARD_ROLE = 'Ops "Team" é'  # the LOGIN role the lab creates before loading 30_hard_names.sql
HARD_SCHEMAS = ("Shipping Ops", 'eu.west "archive"')
_COUNTER = itertools.count(1)


@pytest.fixture(scope="module")
def clusters(source_cluster, target_cluster):
    return source_cluster, target_cluster


def target_params(cluster):
    """What the module gets to reach the target: its module_params as target_* options."""
    params = cluster.module_params("postgres")
    params.pop("login_db")
    return dict(("target_" + k, v) for k, v in params.items())


def ident(name):
    return '"%s"' % name.replace('"', '""')


def master_roles(cluster, statements):
    """Roles made as the master user (on 16+ it then holds ADMIN OPTION on them), as a DBA does on RDS."""
    with cluster.master_connect() as conn:
        for stmt in statements:
            conn.execute(stmt)


def owner_role(cluster, name):
    """A NOLOGIN owner role created by the master user and granted to it, as lab_shape.app_roles does."""
    grant = "GRANT %s TO %s" % (ident(name), ident(MASTER_USER))
    if cluster.shape == "rds" and cluster.major >= 16:
        grant += " WITH INHERIT TRUE, SET TRUE"
    if cluster.shape == "rds":
        master_roles(cluster, ["CREATE ROLE %s NOLOGIN" % ident(name), grant])
    else:
        cluster.execute("postgres", ["CREATE ROLE %s NOLOGIN" % ident(name)])


# The lab's views and materialized view (roles/lab/files/dataset/20_data.sql), tiny data, and
# objects the lab does not have but a schema copy must carry or hold back.
EXTRAS = """
CREATE VIEW public.open_invoices AS
SELECT i.invoice_no, c.name AS customer, i.amount, i.issued_at
FROM billing.invoices AS i JOIN public.customers AS c ON c.id = i.customer_id WHERE i.status = 'open';
CREATE MATERIALIZED VIEW public.shipment_daily_stats AS
SELECT date_trunc('day', shipped_at) AS day, carrier_code, status, count(*) AS shipments
FROM public.shipments GROUP BY 1, 2, 3 WITH DATA;
CREATE UNIQUE INDEX shipment_daily_stats_key ON public.shipment_daily_stats (day, carrier_code, status);
INSERT INTO public.customers (name, email, country) VALUES ('A', 'a@x', 'DE'), ('B', 'b@x', 'FR');
UPDATE public.customers SET referred_by = 1 WHERE id = 2;
INSERT INTO public.addresses (customer_id, line1, city, postal_code, country) VALUES (1, 'l', 'c', '1', 'DE');
INSERT INTO public.parcels (customer_id, address_id, weight) VALUES (1, 1, 1.5), (2, 1, 2.5);
INSERT INTO public.shipments (parcel_id, carrier_code, status, shipped_at)
VALUES (1, 'DHL', 'created', '2025-01-05'), (2, 'UPS', 'created', '2025-08-01');
INSERT INTO public.tracking_events (shipment_id, event_at, kind) VALUES (1, '2025-02-03', 'scanned');
INSERT INTO billing.invoices (customer_id, amount) VALUES (1, 10);
INSERT INTO public.documents (parcel_id, kind, body) VALUES (1, 'label', repeat('x', 1000));
INSERT INTO public."CustomsDeclarations" ("ParcelId", "HsCode", "DeclaredValue", "OriginCountry")
VALUES (1, '0101', 5, 'DE');
RESET ROLE;
CREATE TABLE public.bookings (id int PRIMARY KEY, during tstzrange, EXCLUDE USING gist (during WITH &&));
ALTER TABLE public.bookings OWNER TO {owner};
GRANT USAGE ON SCHEMA billing TO {reader};
GRANT SELECT ON public.customers, billing.invoices TO {reader};
GRANT SELECT (email) ON public.customers TO {login};
GRANT {reader} TO {login};
COMMENT ON TABLE public.customers IS 'who ships';
COMMENT ON INDEX public.parcels_customer_id_idx IS 'parcel lookups';
COMMENT ON TRIGGER customers_audit ON public.customers IS 'audit trail';
ALTER TABLE public.customers ENABLE ALWAYS TRIGGER customers_audit;
ALTER TABLE public.parcels DISABLE TRIGGER parcels_audit;
CREATE RULE ledger_keep AS ON DELETE TO public.ledger DO INSTEAD NOTHING;
CREATE POLICY own_addresses ON public.addresses TO {reader} USING (customer_id > 0);
ALTER TABLE public.addresses ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.documents ADD CONSTRAINT documents_kind_check CHECK (kind <> '') NOT VALID;
CREATE STATISTICS public.parcels_stats ON customer_id, address_id FROM public.parcels;
ALTER TABLE public.carrier_rates REPLICA IDENTITY FULL;
ANALYZE;
"""


class Env:
    """One test's source database (loaded), its target database name and roles."""

    def __init__(self, tmp_path, source, target, bin_dir=None):
        n = next(_COUNTER)
        self.bin_dir = bin_dir or wheel_bin_dir()  # the target's major version's tools
        self.tmp = tmp_path
        self.source, self.target = source, target
        self.db = "sc%d" % n
        self.owner, self.reader, self.login = "scowner%d" % n, "screader%d" % n, "sclogin%d" % n
        self.reports = tmp_path / "reports"
        owner_role(source, self.owner)
        master_roles(source, ["CREATE ROLE %s NOLOGIN" % self.reader,
                              "CREATE ROLE %s LOGIN PASSWORD 'login-pw-%d-Qx'" % (self.login, n),
                              "CREATE DATABASE %s OWNER %s" % (self.db, self.owner)])
        self.secrets = tuple(set(source.secrets) | set(target.secrets)) + ("login-pw-%d-Qx" % n,)
        with open(SCHEMA_SQL) as f:
            ddl = f.read().replace("SET ROLE app_owner;", "SET ROLE %s;" % self.owner)
        extras = EXTRAS.format(owner=self.owner, reader=self.reader, login=self.login)
        # One operator session (the DDL's SET ROLE holds until RESET ROLE), one transaction per statement
        # (the deferred foreign key of parcels fires before its table is altered).
        with source.connect(self.db, operator=True) as conn:
            for stmt in ["CREATE EXTENSION btree_gist", ddl] + [s for s in extras.split(";\n") if s.strip()]:
                conn.execute(stmt)

    def params(self, stage, **extra):
        p = self.source.module_params(self.db, stage=stage, pg_bin_dir=self.bin_dir)
        p.update(target_params(self.target))
        p.update(extra)
        return p

    def run(self, stage, check_mode=False, secrets=(), **extra):
        result, raw = run_module(MODULE, self.params(stage, **extra), check_mode=check_mode)
        for secret in self.secrets + tuple(secrets):
            assert secret not in raw, "a password leaked into the module output"
        return result

    def target_exists(self):
        return bool(self.target.query("postgres", "SELECT 1 FROM pg_database WHERE datname = %s", (self.db,)))

    def on_target(self, statements):
        """Change the target as its operator (the superuser)."""
        self.target.execute(self.db, statements, operator=True)

    def initial_load(self):
        """What the replication phase does in between: the rows, with the target's tools, as the operators."""
        dump = str(self.tmp / "data.dump")
        env = dict(os.environ, PGPASSWORD=ADMIN_PASSWORD)
        subprocess.run([os.path.join(wheel_bin_dir(), "pg_dump"), "--data-only", "-Fc", "-f", dump, "-h", "127.0.0.1",
                        "-p", str(self.source.port), "-U", "postgres", "-d", self.db], check=True, env=env)
        subprocess.run([os.path.join(wheel_bin_dir(), "pg_restore"), "--data-only", "--disable-triggers",
                        "--single-transaction", "-h", "127.0.0.1", "-p", str(self.target.port), "-U", "postgres",
                        "-d", self.db, dump], check=True, env=env)


def drop_databases(db, *clusters):
    for cluster in clusters:
        try:
            cluster.execute("postgres", ["DROP DATABASE IF EXISTS %s WITH (FORCE)" % db])
        except Exception:  # a cluster of the test itself may be stopped already
            pass


@pytest.fixture
def env(tmp_path, clusters):
    env = Env(tmp_path, *clusters)
    yield env
    drop_databases(env.db, *clusters)


def ok(result):
    assert not result.get("failed"), result.get("msg")
    return result


# --------------------------------------------------------------------------------------------
# Catalogs, compared by name (search_path '' on both sides: every definition qualified alike)
# --------------------------------------------------------------------------------------------

CATALOG = dict(
    relations="""SELECT c.oid::regclass::text, c.relkind::text, c.relpersistence::text, c.relreplident::text,
                        pg_get_userbyid(c.relowner), coalesce(c.relacl::text, ''),
                        coalesce(obj_description(c.oid, 'pg_class'), '')
                   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname IN ('public', 'billing') AND c.relkind IN ('r', 'p', 'v', 'm', 'S')""",
    # Partitions show their parent's identity from PostgreSQL 17 on: not a difference.
    columns="""SELECT a.attrelid::regclass::text, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                      CASE WHEN c.relispartition THEN '' ELSE a.attidentity::text END,
                      coalesce(pg_get_expr(d.adbin, d.adrelid), '')
                 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                WHERE n.nspname IN ('public', 'billing') AND c.relkind IN ('r', 'p') AND a.attnum > 0
                  AND NOT a.attisdropped""",
    types="""SELECT t.oid::regtype::text, t.typtype::text FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
              WHERE n.nspname IN ('public', 'billing') AND t.typtype IN ('e', 'd')""",
    indexes="""SELECT c.oid::regclass::text, pg_get_indexdef(c.oid), x.indisvalid,
                      coalesce((SELECT h.inhparent::regclass::text FROM pg_inherits h WHERE h.inhrelid = c.oid), ''),
                      coalesce(obj_description(c.oid, 'pg_class'), '')
                 FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname IN ('public', 'billing')""",
    constraints="""SELECT co.conname, co.conrelid::regclass::text, co.contype::text, co.convalidated,
                          pg_get_constraintdef(co.oid)
                     FROM pg_constraint co JOIN pg_namespace n ON n.oid = co.connamespace
                    WHERE n.nspname IN ('public', 'billing') AND co.contype <> 'n'""",
    triggers="""SELECT tg.tgname, tg.tgrelid::regclass::text, tg.tgenabled::text, pg_get_triggerdef(tg.oid),
                       coalesce(obj_description(tg.oid, 'pg_trigger'), '')
                  FROM pg_trigger tg WHERE NOT tg.tgisinternal""",
    rules="""SELECT r.rulename, r.ev_class::regclass::text, r.ev_enabled::text, pg_get_ruledef(r.oid)
               FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname IN ('public', 'billing') AND r.rulename <> '_RETURN'""",
    policies="""SELECT policyname, tablename, permissive, roles::text, cmd, qual FROM pg_policies""",
    row_security="""SELECT c.oid::regclass::text, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c
                     JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname IN ('public', 'billing') AND c.relkind IN ('r', 'p')""",
    statistics="SELECT stxname, pg_get_statisticsobjdef(oid) FROM pg_statistic_ext",
)


def _normal(value):
    # PostgreSQL 17 added MAINTAIN ('m') to what an owner holds by default: not a difference.
    return re.sub(r"=([a-zA-Z*]*)m([a-zA-Z*]*)/", r"=\1\2/", str(value))


def catalog(cluster, db, *parts):
    out = {}
    with cluster.connect(db) as conn:
        conn.execute("SET search_path = ''")
        for part in parts or CATALOG:
            out[part] = sorted(tuple(_normal(v) for v in row) for row in conn.execute(CATALOG[part]).fetchall())
    return out


def secondary_indexes(cluster, db):
    return cluster.query(db, """
        SELECT c.relname FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname IN ('public', 'billing') AND NOT x.indisreplident
           AND NOT EXISTS (SELECT 1 FROM pg_constraint co WHERE co.conindid = x.indexrelid AND co.contype IN ('p', 'u'))
         ORDER BY 1""")


def count(cluster, db, query):
    return cluster.query(db, query)[0][0]


# --------------------------------------------------------------------------------------------
# The module
# --------------------------------------------------------------------------------------------

def test_pre_then_post_copy_the_schema_and_second_runs_change_nothing(env):
    src, tgt = env.source, env.target

    # Check mode: the SQL and the commands, nothing on the target.
    check = ok(env.run("pre", check_mode=True))
    assert check["changed"] is True
    assert check["queries"][0].startswith('CREATE DATABASE "%s" WITH TEMPLATE template0 ENCODING \'UTF8\'' % env.db)
    assert 'CREATE ROLE "%s" WITH NOLOGIN INHERIT' % env.owner in check["queries"]
    assert any(c.split()[1:4] == ["--use-list", c.split()[2], "--single-transaction"] for c in check["commands"]
               if "pg_restore" in c)
    assert not env.target_exists()

    # Stage pre.
    pre = ok(env.run("pre"))
    assert pre["changed"] is True and pre["database"]["created"] is True
    assert set(pre["roles"]["created"]) == {env.owner, env.reader, env.login}
    assert "%s TO %s" % (env.reader, env.login) in pre["roles"]["memberships"]
    assert pre["extensions"] == ["btree_gist"]
    assert pre["tools"]["pg_dump_version"] == 18 and pre["tools"]["source_version"] // 10000 == src.major
    held = dict((h["object"], h) for h in pre["held_back"])
    for name in ("parcels_customer_id_fkey on public.parcels", "shipments_parcel_id_fkey on public.shipments",
                 "public.customers_referred_by_idx", "customers_audit on public.customers",
                 "tracking_events_route on public.tracking_events", "bookings_during_excl on public.bookings",
                 "documents_kind_check on public.documents", "ledger_keep on public.ledger",
                 "own_addresses on public.addresses", "public.parcels_stats"):
        assert name in held, name
    assert held["bookings_during_excl on public.bookings"]["reason"].startswith("exclusion constraint")
    nr = pre["not_replicated"]
    assert nr["unlogged_tables"] == ["public.session_cache"]
    assert nr["materialized_views"] == ["public.shipment_daily_stats"]
    assert nr["large_objects"] == 0
    assert {"sequence": "billing.invoice_no_seq", "owned_by": None, "identity": False} in nr["sequences"]
    assert set(pre["timings"]) >= {"pg_dump", "classify", "pg_restore", "total"}

    # On the target: the database as on the source, tables, types, sequences, keys, grants...
    assert tgt.query("postgres", "SELECT pg_encoding_to_char(encoding), datcollate, datctype, "
                                 "pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (env.db,)) == \
        [("UTF8", "C.UTF-8", "C.UTF-8", env.owner)]
    source_cat, target_cat = catalog(src, env.db), catalog(tgt, env.db)
    for part in ("relations", "columns", "types"):
        assert target_cat[part] == source_cat[part], part
    pks = [c for c in source_cat["constraints"] if c[2] in ("p", "u")]
    assert pks and [c for c in target_cat["constraints"] if c[2] in ("p", "u")] == pks
    assert [c for c in target_cat["constraints"] if c[2] == "c"] == \
        [c for c in source_cat["constraints"] if c[2] == "c" and c[3] == "True"]
    # ... and nothing that was held back.
    assert secondary_indexes(tgt, env.db) == []
    assert count(tgt, env.db, "SELECT count(*) FROM pg_constraint WHERE contype IN ('f', 'x')") == 0
    assert count(tgt, env.db, "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal") == 0
    assert count(tgt, env.db, "SELECT count(*) FROM pg_rewrite WHERE rulename <> '_RETURN' "
                              "AND ev_class::regclass::text NOT LIKE 'pg\\_%'") == 0
    assert count(tgt, env.db, "SELECT count(*) FROM pg_policy") == 0
    assert count(tgt, env.db, "SELECT count(*) FROM pg_statistic_ext") == 0
    # Roles without passwords, with the source's attributes.
    assert tgt.query("postgres", "SELECT rolname, rolcanlogin, rolpassword IS NULL FROM pg_authid "
                                 "WHERE rolname IN (%s, %s) ORDER BY 1", (env.login, env.owner)) == \
        sorted([(env.login, True, True), (env.owner, False, True)])

    # A second pre changes nothing.
    again = ok(env.run("pre"))
    assert again["changed"] is False and again["created"] == [] and again["queries"] == []
    assert again["roles"]["created"] == []

    env.initial_load()

    # Post, in check mode: the statements, nothing built.
    check = ok(env.run("post", check_mode=True))
    assert check["changed"] is True
    assert any(q.startswith('ALTER TABLE ONLY "public"."parcels" ADD CONSTRAINT "parcels_customer_id_fkey" '
                            'FOREIGN KEY (customer_id) REFERENCES public.customers(id) NOT VALID')
               for q in check["queries"])
    assert 'ALTER TABLE "public"."parcels" VALIDATE CONSTRAINT "parcels_customer_id_fkey"' in check["queries"]
    assert secondary_indexes(tgt, env.db) == []

    # Post: the target's indexes, constraints, triggers (and their states), rules, policies equal the source's.
    post = ok(env.run("post", parallel=3))
    assert post["changed"] is True
    assert "parcels_customer_id_fkey on public.parcels" in post["validated"]
    assert dict(kind="trigger", object="customers_audit on public.customers", state="enabled always") in post["states"]
    assert dict(kind="trigger", object="parcels_audit on public.parcels", state="disabled") in post["states"]
    assert any("customers_audit on public.customers is enabled always" in w for w in post["warning_messages"])
    assert post["not_handled"] == []
    assert {c["kind"] for c in post["created"]} >= {"index", "foreign key", "trigger", "rule", "policy",
                                                    "attach index", "exclusion constraint", "statistics"}
    assert all(c["seconds"] is not None for c in post["created"])
    assert set(post["timings"]) >= {"post_indexes", "post_validate", "total"}
    source_cat, target_cat = catalog(src, env.db), catalog(tgt, env.db)
    for part in CATALOG:
        assert target_cat[part] == source_cat[part], part
    assert all(c[3] == "True" for c in target_cat["constraints"] if c[0] != "documents_kind_check")

    # A second post changes nothing, and neither does a pre after the post.
    again = ok(env.run("post"))
    assert again["changed"] is False and again["queries"] == [] and again["created"] == []
    assert len(again["existing"]) >= 20
    again = ok(env.run("pre"))
    assert again["changed"] is False and again["conflicts"] == []


def test_post_creates_only_what_is_missing(env):
    ok(env.run("pre"))
    ok(env.run("post"))
    env.on_target([
        "DROP INDEX public.parcels_parent_parcel_id_idx",
        "ALTER TABLE public.parcels DROP CONSTRAINT parcels_customer_id_fkey",
        "ALTER TABLE public.customers ENABLE TRIGGER customers_audit",
    ])
    post = ok(env.run("post"))
    assert post["changed"] is True
    assert sorted((c["kind"], c["object"]) for c in post["created"]) == [
        ("foreign key", "parcels_customer_id_fkey on public.parcels"),
        ("index", "public.parcels_parent_parcel_id_idx")]
    assert post["validated"] == ["parcels_customer_id_fkey on public.parcels"]
    assert post["states"] == [dict(kind="trigger", object="customers_audit on public.customers",
                                   state="enabled always")]
    assert catalog(env.target, env.db, "indexes", "constraints", "triggers") == \
        catalog(env.source, env.db, "indexes", "constraints", "triggers")


# --------------------------------------------------------------------------------------------
# The post stage at the same time as the initial loads (wait_for_streams)
# --------------------------------------------------------------------------------------------

LOADING = ["pgshift_w_s1", "pgshift_w_s2"]


def record_loads(env, parcels_state):
    """What two streams' loads record on the target: customers copied (s1), parcels in `parcels_state` (s2)."""
    # As the streams' loader does it: the master user's tables.
    with env.target.master_connect(env.db) as conn:
        for stmt in list(loader.PROGRESS_DDL):
            conn.execute(stmt)
    env.on_target([
        "INSERT INTO pgshift.load_progress (stream, table_name, unit, state) VALUES "
        "('pgshift_w_s1', 'public.customers', 'public.customers', 'copied'), "
        "('pgshift_w_s2', 'public.parcels', 'public.parcels', '%s')" % parcels_state])


def start_post(env, **extra):
    """The post stage in a thread (as replicate.yml starts it in the background); returns (thread, result box)."""
    box = {}

    def run():
        box["result"] = env.run("post", wait_for_streams=LOADING, **extra)
    thread = threading.Thread(target=run)
    thread.start()
    return thread, box


def start_post_while_parcels_loads(env):
    """Stage pre, the rows, parcels recorded as still copying, the post stage started with a progress file:
    (thread, result box, progress file)."""
    ok(env.run("pre"))
    env.initial_load()
    record_loads(env, "copying")
    progress_file = env.tmp / "post-progress.json"
    thread, box = start_post(env, progress_file=str(progress_file))
    return thread, box, progress_file


def wait_until(predicate, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def has_index(env, name):
    return bool(env.target.query(env.db, "SELECT 1 FROM pg_class WHERE relname = %s AND relkind = 'i'", (name,)))


def test_post_waiting_for_the_loads_builds_each_tables_indexes_once_it_is_loaded(env):
    thread, box, progress_file = start_post_while_parcels_loads(env)
    try:
        # customers is loaded: its index comes at once; so do the tables no stream loads.
        assert wait_until(lambda: has_index(env, "customers_referred_by_idx") and has_index(
            env, "invoices_customer_id_idx")), "the loaded tables' indexes were not built while parcels loads"
        time.sleep(1.0)
        assert thread.is_alive()
        # The progress file says what it waits for (what job_progress prints while replicate.yml runs).
        waiting = json.loads(progress_file.read_text())
        assert waiting["unit"] == "objects" and 0 < waiting["rows"] < waiting["rows_expected"]
        assert "waiting for 1 table(s) still loading: public.parcels" in waiting["phase"], waiting
        assert waiting["eta_seconds"] is None
        # parcels still copies: neither its indexes nor any foreign key (every load must be done first).
        assert not has_index(env, "parcels_customer_id_idx")
        assert not has_index(env, "parcels_parent_parcel_id_idx")
        assert count(env.target, env.db, "SELECT count(*) FROM pg_constraint WHERE contype = 'f'") == 0
    finally:
        env.on_target(["UPDATE pgshift.load_progress SET state = 'copied'"])
        thread.join(120)
    post = ok(box["result"])
    assert post["waited_for"]["streams"] == LOADING and post["waited_for"]["done_at_start"] is False
    final = json.loads(progress_file.read_text())
    assert final["phase"] == "done" and final["rows"] == final["rows_expected"] == post["summary"]["steps"]
    assert catalog(env.target, env.db, "indexes", "constraints", "triggers") == \
        catalog(env.source, env.db, "indexes", "constraints", "triggers")
    # Once the loads are done, a second run finds everything and does not wait.
    again = ok(env.run("post", wait_for_streams=LOADING))
    assert again["changed"] is False and again["created"] == []


def test_post_progress_says_how_far_a_long_index_build_is(env):
    """An index of a large table is one object for a long time: while it is built, the progress file says its
    phase and how far it is, read from pg_stat_progress_create_index for the post stage's own sessions (a worker's,
    with parallel 2), as the master user, who is not a superuser. The index here takes 0.25 s per row."""
    env.source.execute(env.db, [
        "SET ROLE %s" % env.owner,
        "CREATE FUNCTION public.slow_key(v int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS "
        "'BEGIN PERFORM pg_sleep(0.25); RETURN v; END'",
        'CREATE TABLE public."Slow Rows" (id int PRIMARY KEY)',
        'INSERT INTO public."Slow Rows" SELECT generate_series(1, 16)',
        'CREATE INDEX "Slow Key" ON public."Slow Rows" (public.slow_key(id))'], operator=True)
    ok(env.run("pre"))
    env.initial_load()
    progress_file = env.tmp / "post-progress.json"
    box = {}
    thread = threading.Thread(target=lambda: box.update(result=env.run("post", progress_file=str(progress_file),
                                                                       parallel=2)))
    thread.start()
    phases = []

    def building():
        try:
            phases.append(json.loads(progress_file.read_text())["phase"])
        except (OSError, ValueError, KeyError):
            return False
        return 'index public."Slow Key": building index: scanning table' in phases[-1]
    try:
        assert wait_until(building), "the progress file never showed the build: %s %s" % (
            sorted(set(phases)), box)
    finally:
        thread.join(120)
    # what was shown: the objects' phase, then the step and its build's phase, how far it is (one block of 8 kB) and
    # a rate or "-" (a plain CREATE INDEX has no index in pg_stat_progress_create_index: the step names it)
    shown = [p for p in phases if "Slow Key" in p][-1]
    assert re.match(r'indexes; index public\."Slow Key": building index: scanning table +'
                    r"\d+\.\d% [\d.]+ k?B/8\.0 kB (-|[\d.]+ k?B/s) ETA ", shown), shown
    post = ok(box["result"])
    assert not [w for w in post.get("warnings") or [] if "pg_stat_progress_create_index" in w]
    final = json.loads(progress_file.read_text())
    assert final["phase"] == "done" and final["rows"] == final["rows_expected"] == post["summary"]["steps"]
    assert has_index(env, "Slow Key")
    assert catalog(env.target, env.db, "indexes") == catalog(env.source, env.db, "indexes")


def test_post_with_the_streams_running_validates_a_foreign_key_once_its_row_arrives(env):
    """Streams catch up each on its own: a parcel can be on the target before its customer. The validation is tried
    again until the customer's row arrives (here: put back by hand a moment later)."""
    ok(env.run("pre"))
    env.initial_load()
    record_loads(env, "copied")
    env.on_target([
        "CREATE TABLE public.held_customer AS SELECT * FROM public.customers WHERE id = 2",
        "DELETE FROM public.customers WHERE id = 2"])
    thread, box = start_post(env)
    try:
        assert wait_until(lambda: count(env.target, env.db, "SELECT count(*) FROM pg_constraint WHERE conname = "
                                        "'parcels_customer_id_fkey' AND NOT convalidated") == 1)
        time.sleep(1.0)
        assert thread.is_alive()  # validating again and again, not failed
    finally:
        env.on_target([
            "INSERT INTO public.customers OVERRIDING SYSTEM VALUE SELECT * FROM public.held_customer",
            "DROP TABLE public.held_customer"])
        thread.join(120)
    post = ok(box["result"])
    assert any("parcels_customer_id_fkey on public.parcels validated after" in n for n in post["notes"]), post["notes"]
    assert catalog(env.target, env.db, "constraints") == catalog(env.source, env.db, "constraints")


def test_post_after_the_loads_says_what_a_foreign_key_violation_means(env):
    ok(env.run("pre"))
    env.initial_load()
    env.on_target(["DELETE FROM public.customers WHERE id = 2"])
    result = env.run("post")  # no stream running: no retry
    assert result.get("failed") is True
    assert "violates foreign key constraint" in result["msg"]
    assert "the target lacks rows of the source (validate.yml lists them)" in result["msg"]


def test_post_waiting_for_the_loads_stops_when_one_fails(env):
    thread, box, progress_file = start_post_while_parcels_loads(env)
    assert wait_until(lambda: has_index(env, "customers_referred_by_idx"))
    env.on_target(["UPDATE pgshift.load_progress SET state = 'failed', finished_at = now(), "
                   "error = 'could not extend file: No space left on device' "
                   "WHERE table_name = 'public.parcels'"])
    thread.join(60)
    result = box["result"]
    assert result.get("failed") is True
    assert "the initial load of stream pgshift_w_s2 failed on public.parcels" in result["msg"]
    assert "No space left on device" in result["msg"]
    assert json.loads(progress_file.read_text())["phase"] == "stopped"
    # What was built stays (the indexes of the loaded tables), no foreign key was added.
    assert has_index(env, "customers_referred_by_idx")
    assert count(env.target, env.db, "SELECT count(*) FROM pg_constraint WHERE contype = 'f'") == 0


def test_a_second_post_stage_waits_for_the_first(env):
    ok(env.run("pre"))
    with env.target.connect(env.db) as holder:
        holder.execute("SELECT pg_advisory_lock(hashtext('pgshift.schema_copy.post'))")
        result = env.run("post", wait_timeout=2)
    assert result.get("failed") is True
    assert "another post stage still runs" in result["msg"]
    assert not has_index(env, "customers_referred_by_idx")


def test_conflicting_objects_stop_pre_before_anything_changes(env):
    tgt = env.target
    tgt.execute("postgres", "CREATE DATABASE %s" % env.db)
    env.on_target(["CREATE TABLE public.customers (id integer PRIMARY KEY, name text)",
                   "CREATE TABLE public.leftover (x integer)"])
    before = (catalog(tgt, env.db, "relations", "columns", "types"),
              tgt.query("postgres", "SELECT rolname FROM pg_roles ORDER BY 1"))

    result = env.run("pre")

    assert result["failed"] is True
    msg = result["msg"]
    assert msg.startswith("the target database %s has 2 object(s) that conflict with the source's schema; nothing "
                          "was changed" % env.db)
    assert "- table public.customers differs from the source's: column(s) only on the source: " in msg
    assert "- table public.leftover is in migrated schema public but not on the source" in msg
    assert {c["object"] for c in result["conflicts"]} == {"public.customers", "public.leftover"}
    assert result["changed"] is False and result["queries"] == []
    after = (catalog(tgt, env.db, "relations", "columns", "types"),
             tgt.query("postgres", "SELECT rolname FROM pg_roles ORDER BY 1"))
    assert after == before


def test_filters_leave_tables_out_with_what_depends_on_them(env):
    result = ok(env.run("pre", exclude_tables=["public.documents"], exclude_schemas=["billing"]))
    excluded = dict((e["object"], e["reason"]) for e in result["excluded"])
    assert excluded["public.documents"] == "left out by the migration's filters"
    assert excluded["public.open_invoices"] == "depends on excluded table billing.invoices"
    assert "documents_parcel_id_fkey on public.documents" in excluded
    tables = [r[0] for r in env.target.query(env.db, "SELECT oid::regclass::text FROM pg_class "
                                                     "WHERE relkind IN ('r', 'p', 'v') AND relnamespace IN "
                                                     "('public'::regnamespace) ORDER BY 1")]
    assert "documents" not in tables and "open_invoices" not in tables and "customers" in tables
    assert env.target.query(env.db, "SELECT count(*) FROM pg_namespace WHERE nspname = 'billing'") == [(0,)]


def test_a_target_that_refuses_not_valid_on_partitioned_tables_gets_those_foreign_keys_plainly(
        tmp_path, legacy_source_cluster):
    """The superuser case: PostgreSQL 15 on both sides, the superuser as login (module_params of that shape)."""
    target15 = Cluster(system_bin_dir(15), name="sctarget15", shape="superuser")
    env = None
    try:
        target15.start()
        env = Env(tmp_path, legacy_source_cluster, target15, bin_dir=system_bin_dir(15))
        ok(env.run("pre"))
        post = ok(env.run("post"))
        assert post["notes"] == [
            "foreign key shipments_parcel_id_fkey on public.shipments added and checked at once, not as NOT VALID: "
            "the target refused NOT VALID on a partitioned table (cannot add NOT VALID foreign key on partitioned "
            "table \"shipments\" referencing relation \"parcels\")"]
        assert "shipments_parcel_id_fkey on public.shipments" in post["validated"]
        assert 'ALTER TABLE "public"."shipments" ADD CONSTRAINT "shipments_parcel_id_fkey" FOREIGN KEY (parcel_id) ' \
               'REFERENCES public.parcels(id)' in post["queries"]
        assert catalog(target15, env.db, "indexes", "constraints", "triggers") == \
            catalog(env.source, env.db, "indexes", "constraints", "triggers")
        assert ok(env.run("post"))["changed"] is False
    finally:
        if env is not None:
            drop_databases(env.db, legacy_source_cluster)
        target15.stop()


def test_wrong_target_password_is_a_clear_error_and_never_echoed(env):
    wrong = "Wr0ng-target-pw-%s" % env.db
    result = env.run("pre", secrets=(wrong,), target_login_password=wrong)
    assert result["failed"] is True
    assert result["msg"].startswith("authentication failed for user '%s' on 127.0.0.1:%d/postgres"
                                    % (MASTER_USER, env.target.port))
    assert not env.target_exists()


# --------------------------------------------------------------------------------------------
# The playbook
# --------------------------------------------------------------------------------------------

def inventory(env):
    root = env.tmp / "inv"
    (root / "host_vars").mkdir(parents=True)
    (root / "group_vars" / "all").mkdir(parents=True)
    hosts = dict(all=dict(
        vars=dict(ansible_connection="local", ansible_python_interpreter="{{ ansible_playbook_python }}"),
        children=dict(source=dict(hosts={"it-source": None}), target=dict(hosts={"it-target": None}))))
    (root / "hosts.yml").write_text(yaml.safe_dump(hosts))
    for name, cluster in (("it-source", env.source), ("it-target", env.target)):
        login = cluster.module_params(env.db)  # the master user over TLS verify-full
        host_vars = dict(db_host="127.0.0.1", db_port=cluster.port, db_name=env.db, db_user="pbmig",
                         db_password="pb-mig-pw-Zq", db_admin_user=login["login_user"],
                         db_admin_password=login["login_password"], db_sslmode=login["ssl_mode"])
        if login.get("ca_cert"):
            host_vars["db_sslrootcert"] = login["ca_cert"]
        (root / "host_vars" / ("%s.yml" % name)).write_text(yaml.safe_dump(host_vars))
    (root / "group_vars" / "all" / "migration.yml").write_text(yaml.safe_dump(dict(
        migration_name="it_%s" % env.db, migration_engine="native", report_dir=str(env.reports))))
    return str(root / "hosts.yml")


def playbook(env, inv, *args):
    rc, out, recap = run_playbook("pgshift.aurora.copy_schema", inv, *args, cwd=str(env.tmp), timeout=300,
                                  secrets=env.secrets + ("pb-mig-pw-Zq",))
    # The output wraps long lines: compare with the whitespace collapsed.
    return rc, " ".join(out.split()), recap


def test_playbook_copies_the_schema_writes_the_reports_and_changes_nothing_the_second_time(env):
    inv = inventory(env)

    rc, out, recap = playbook(env, inv)
    assert rc == 0, out
    assert recap["changed"] == 1 and recap["failed"] == 0, out
    assert "target database %s: created as on the source (UTF8, C.UTF-8/C.UTF-8, libc), owner %s" % (
        env.db, env.owner) in out
    assert "WITHOUT passwords" in out
    report = json.loads((env.reports / "schema.json").read_text())
    assert report["stage"] == "pre" and report["error"] is None and report["changed"] is True
    assert report["database"]["created"] is True
    assert "public.session_cache" in report["not_replicated"]["unlogged_tables"]
    assert any(h["object"] == "parcels_customer_id_fkey on public.parcels" for h in report["held_back"])
    md = (env.reports / "schema.md").read_text()
    assert "## Held back for stage post" in md and "`public.shipment_daily_stats`" in md

    rc, out, recap = playbook(env, inv)
    assert rc == 0 and recap["changed"] == 0, out
    assert "stage pre: nothing to change, the target already has the pre-data schema" in out

    rc, out, recap = playbook(env, inv, "-e", "copy_schema_stage=post", "--check")
    assert rc == 0 and recap["changed"] == 1, out
    assert "CHECK MODE, nothing was changed" in out
    assert secondary_indexes(env.target, env.db) == []
    assert (env.reports / "schema-post-check.md").exists() and not (env.reports / "schema-post.md").exists()

    rc, out, recap = playbook(env, inv, "-e", "copy_schema_stage=post")
    assert rc == 0 and recap["changed"] == 1, out
    # The index builds and constraints run as a job whose progress is printed: objects built, rate, ETA.
    assert re.search(r"\] schema copy \(stage post\): \d+/\d+ objects +100\.0% [\d,.]+ objects/s ETA 0:00:00", out), out
    post = json.loads((env.reports / "schema-post.json").read_text())
    assert "parcels_customer_id_fkey on public.parcels" in post["validated"]
    assert catalog(env.target, env.db, "indexes", "constraints", "triggers") == \
        catalog(env.source, env.db, "indexes", "constraints", "triggers")

    rc, out, recap = playbook(env, inv, "-e", "copy_schema_stage=post")
    assert rc == 0 and recap["changed"] == 0, out

    for path in env.reports.iterdir():
        text = path.read_text()
        for secret in env.secrets + ("pb-mig-pw-Zq",):
            assert secret not in text, "a password appears in %s" % path


def test_playbook_stops_on_conflicts_and_reports_them(env):
    env.target.execute("postgres", "CREATE DATABASE %s" % env.db)
    env.on_target("CREATE VIEW public.customers AS SELECT 1 AS id")
    inv = inventory(env)

    rc, out, recap = playbook(env, inv)

    assert rc != 0 and recap["failed"] == 1, out
    assert "The schema copy (stage pre) failed: the target database %s has 1 object(s) that conflict" % env.db in out
    report = json.loads((env.reports / "schema.json").read_text())
    assert report["conflicts"] == [dict(object="public.customers", type="view",
                                        problem="the source has a table of this name, the target a view")]
    assert "THE SCHEMA COPY FAILED" in (env.reports / "schema.md").read_text()


def test_playbook_rejects_an_invalid_stage(env):
    rc, out, dummy = playbook(env, inventory(env), "-e", "copy_schema_stage=during")
    assert rc != 0
    assert "value of copy_schema_stage must be one of: pre, post, got: during" in out


# --------------------------------------------------------------------------------------------
# Names that need quoting (roles/lab/files/dataset/30_hard_names.sql), as the master user
# --------------------------------------------------------------------------------------------

def ensure_role(cluster, name, login=False):
    """A role the lab makes before loading the dataset, created if missing (roles are cluster-wide)."""
    with cluster.connect(operator=True) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone():
            return
    statement = "CREATE ROLE %s %s" % (ident(name), "LOGIN" if login else "NOLOGIN")
    if cluster.shape == "rds":
        try:
            master_roles(cluster, [statement])
        except Exception:  # created meanwhile by another test of the session
            pass
    else:
        cluster.execute("postgres", [statement])


def load_hard_names(cluster, db):
    """30_hard_names.sql as the lab loads it: psql, one transaction, as the operator (the file does SET ROLE
    app_owner)."""
    ensure_role(cluster, APP_OWNER)
    ensure_role(cluster, HARD_ROLE, login=True)
    subprocess.run([os.path.join(cluster.bin_dir, "psql"), "--no-psqlrc", "--quiet", "--single-transaction",
                    "--set=ON_ERROR_STOP=1", "--host=127.0.0.1", "--port=%d" % cluster.port, "--username=postgres",
                    "--dbname=" + db, "--file=" + HARD_NAMES_SQL],
                   check=True, env=dict(os.environ, PGPASSWORD=ADMIN_PASSWORD), capture_output=True)


def copy_rows(source, target, db, tmp, schemas=HARD_SCHEMAS):
    """The initial load's stand-in: the rows of these schemas, with the target's tools, as the operators."""
    dump = str(tmp / ("%s-rows.dump" % db))
    env = dict(os.environ, PGPASSWORD=ADMIN_PASSWORD)
    subprocess.run([os.path.join(wheel_bin_dir(), "pg_dump"), "--data-only", "-Fc", "-f", dump, "-h", "127.0.0.1",
                    "-p", str(source.port), "-U", "postgres", "-d", db]
                   + ["--schema=%s" % ident(s) for s in schemas], check=True, env=env)
    subprocess.run([os.path.join(wheel_bin_dir(), "pg_restore"), "--data-only", "--disable-triggers",
                    "--single-transaction", "-h", "127.0.0.1", "-p", str(target.port), "-U", "postgres", "-d", db,
                    dump], check=True, env=env)


# Everything of the hard schemas, by names as separate values (schema, relation, column, ...); definitions
# read with search_path '' on both sides, so that they are qualified alike.
HARD = "IN ('Shipping Ops', 'eu.west \"archive\"')"
HARD_CATALOG = dict(
    schemas="""SELECT n.nspname, pg_get_userbyid(n.nspowner), coalesce(n.nspacl::text, '')
                 FROM pg_namespace n WHERE n.nspname {h}""",
    relations="""SELECT n.nspname, c.relname, c.relkind::text, c.relpersistence::text, c.relreplident::text,
                        pg_get_userbyid(c.relowner), coalesce(c.relacl::text, ''), c.relispartition
                   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname {h} AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')""",
    columns="""SELECT n.nspname, c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                      CASE WHEN c.relispartition THEN '' ELSE a.attidentity::text END, a.attgenerated::text,
                      coalesce(pg_get_expr(d.adbin, d.adrelid), ''), coalesce(a.attacl::text, '')
                 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                 LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                WHERE n.nspname {h} AND c.relkind IN ('r', 'p', 'v') AND a.attnum > 0 AND NOT a.attisdropped""",
    constraints="""SELECT n.nspname, coalesce(c.relname, t.typname), co.conname, co.contype::text, co.convalidated,
                          co.condeferrable, pg_get_constraintdef(co.oid)
                     FROM pg_constraint co JOIN pg_namespace n ON n.oid = co.connamespace
                     LEFT JOIN pg_class c ON c.oid = co.conrelid LEFT JOIN pg_type t ON t.oid = co.contypid
                    WHERE n.nspname {h} AND co.contype <> 'n'""",
    indexes="""SELECT n.nspname, i.relname, t.relname, pg_get_indexdef(i.oid), x.indisvalid, x.indisprimary,
                      x.indisunique, x.indisreplident,
                      coalesce((SELECT pn.nspname || ' / ' || p.relname FROM pg_inherits h JOIN pg_class p
                                  ON p.oid = h.inhparent JOIN pg_namespace pn ON pn.oid = p.relnamespace
                                 WHERE h.inhrelid = i.oid), '')
                 FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
                 JOIN pg_namespace n ON n.oid = i.relnamespace WHERE n.nspname {h}""",
    sequences="""SELECT n.nspname, c.relname, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin,
                        s.seqmax, s.seqcycle,
                        coalesce((SELECT tn.nspname || ' / ' || t.relname || ' / ' || a.attname || ' / ' || d.deptype::text
                                    FROM pg_depend d JOIN pg_class t ON t.oid = d.refobjid
                                    JOIN pg_namespace tn ON tn.oid = t.relnamespace
                                    JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                                   WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                                     AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')), '')
                   FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname {h}""",
    triggers="""SELECT n.nspname, c.relname, tg.tgname, tg.tgenabled::text, pg_get_triggerdef(tg.oid)
                  FROM pg_trigger tg JOIN pg_class c ON c.oid = tg.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname {h} AND NOT tg.tgisinternal""",
    inheritance="""SELECT cn.nspname, c.relname, pn.nspname, p.relname, c.relispartition,
                          coalesce(pg_get_expr(c.relpartbound, c.oid), '')
                     FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid JOIN pg_class p ON p.oid = h.inhparent
                     JOIN pg_namespace cn ON cn.oid = c.relnamespace JOIN pg_namespace pn ON pn.oid = p.relnamespace
                    WHERE cn.nspname {h} AND c.relkind IN ('r', 'p')""",
    types="""SELECT n.nspname, t.typname, t.typtype::text, pg_get_userbyid(t.typowner),
                    coalesce(format_type(t.typbasetype, t.typtypmod), ''),
                    coalesce((SELECT string_agg(e.enumlabel, ' | ' ORDER BY e.enumsortorder) FROM pg_enum e
                               WHERE e.enumtypid = t.oid), '')
               FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
              WHERE n.nspname {h} AND t.typtype IN ('e', 'd')""",
    functions="""SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid), pg_get_userbyid(p.proowner),
                        md5(p.prosrc)
                   FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname {h}""",
    # Privileges as (grantee, privilege, grantor) names, on schemas, relations and columns.
    grants="""SELECT n.nspname, '', '', coalesce(nullif(pg_get_userbyid(a.grantee), ''), 'PUBLIC'), a.privilege_type,
                     pg_get_userbyid(a.grantor)
                FROM pg_namespace n, aclexplode(n.nspacl) a WHERE n.nspname {h}
              UNION ALL
              SELECT n.nspname, c.relname, '', pg_get_userbyid(a.grantee), a.privilege_type, pg_get_userbyid(a.grantor)
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a
               WHERE n.nspname {h} AND a.privilege_type <> 'MAINTAIN'
              UNION ALL
              SELECT n.nspname, c.relname, at.attname, pg_get_userbyid(a.grantee), a.privilege_type,
                     pg_get_userbyid(a.grantor)
                FROM pg_attribute at JOIN pg_class c ON c.oid = at.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace,
                     aclexplode(at.attacl) a WHERE n.nspname {h}""",
    views="""SELECT n.nspname, c.relname, pg_get_viewdef(c.oid)
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname {h} AND c.relkind = 'v'""",
)


def hard_catalog(cluster, db):
    out = {}
    with cluster.connect(db, operator=True) as conn:
        conn.execute("SET search_path = ''")
        for part, query in HARD_CATALOG.items():
            out[part] = sorted(tuple(_normal(v) for v in row) for row in conn.execute(query.format(h=HARD)).fetchall())
    return out


def names(rows, *columns):
    return set(tuple(row[c] for c in columns) for row in rows)


@pytest.fixture
def hard_db(tmp_path, clusters, new_db):
    """A source database holding 30_hard_names.sql; its name is also the target's, dropped after."""
    source, target = clusters
    db = new_db(source)
    load_hard_names(source, db)
    yield db
    drop_databases(db, target)


def hard_run(clusters, db, stage, check_mode=False, **extra):
    source, target = clusters
    params = source.module_params(db, stage=stage, pg_bin_dir=wheel_bin_dir())
    params.update(target_params(target))
    params.update(extra)
    result, raw = run_module(MODULE, params, check_mode=check_mode)
    for secret in set(source.secrets) | set(target.secrets):
        assert secret not in raw, "a password leaked into the module output"
    return result


def test_names_that_need_quoting_keep_every_object_through_pre_and_post(tmp_path, clusters, hard_db):
    """Every table, column, key, identity, sequence, constraint, index, trigger, partition, inheritance child, type,
    function, view, grant and owner of the hard schemas is on the target under its very name. The target database
    exists already, made by the master user (as Aurora's DatabaseName does): it is given to the source's owner so
    that the owner role can create there, as on the source."""
    source, target = clusters
    db = hard_db
    with target.master_connect() as conn:
        conn.execute("CREATE DATABASE %s" % ident(db))

    pre = ok(hard_run(clusters, db, "pre", include_schemas=list(HARD_SCHEMAS)))
    assert pre["database"]["owner"] == APP_OWNER and pre["database"]["owner_was"] == MASTER_USER
    assert 'ALTER DATABASE %s OWNER TO "%s"' % (ident(db), APP_OWNER) in pre["queries"]
    assert HARD_ROLE in pre["roles"]["created"] + pre["roles"]["existing"]
    assert pre["excluded"] == []
    objects = set(c["object"] for c in pre["created"])
    for name in ('"Order PK" on "Shipping Ops"."order"', '"Shipping Ops"."order_Order ID_seq"',
                 '"Shipping Ops"."Global.Ref ""No"""', '"order.ref unique" on "Shipping Ops"."order"',
                 '"Tracking 63 PK" on "eu.west ""archive"""."Tracking events per parcel, delivery attempt & depot '
                 '(63 bytes)"', '"Events.2025-02_pkey" on "Shipping Ops"."Events.2025-02"'):
        assert name in objects, name
    held = set(h["object"] for h in pre["held_back"])
    assert held >= {'"FK Zöll → order" on "eu.west ""archive"""."Zöll_Tarife"',
                    '"Audit ""order"" changes" on "Shipping Ops"."order"', '"Shipping Ops"."Idx: order by ""State"""'}
    assert target.query("postgres", "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
                        (db,)) == [(APP_OWNER,)]
    # Logical replication's needs are there before the data: every table has its primary key.
    assert target.query(db, """SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                                WHERE n.nspname = ANY(%s) AND c.relkind = 'r' AND NOT EXISTS (
                                      SELECT 1 FROM pg_index x WHERE x.indrelid = c.oid AND x.indisprimary)""",
                        (list(HARD_SCHEMAS),)) == [(0,)]

    copy_rows(source, target, db, tmp_path)
    post = ok(hard_run(clusters, db, "post", parallel=2))
    assert post["not_handled"] == []
    assert '"FK Zöll → order" on "eu.west ""archive"""."Zöll_Tarife"' in post["validated"]

    src, tgt = hard_catalog(source, db), hard_catalog(target, db)
    for part in HARD_CATALOG:
        assert src[part], "the source has no %s: the comparison would prove nothing" % part
        assert tgt[part] == src[part], part
    # What the comparison covers, by name.
    assert names(src["relations"], 0, 1) >= {
        ("Shipping Ops", "order"), ("Shipping Ops", "select"), ("Shipping Ops", "Notes: Zoll (old)"),
        ("eu.west \"archive\"", "Zöll_Tarife"), ("Shipping Ops", "Events.2025-02"), ("eu.west \"archive\"", "Order View"),
        ("eu.west \"archive\"", "Tracking events per parcel, delivery attempt & depot (63 bytes)"),
        ("Shipping Ops", 'Global.Ref "No"'), ("Shipping Ops", "select_Line No_seq")}
    assert ("Shipping Ops", "Events.2025-02", 'eu.west "archive"', "Events by Month") in names(
        src["inheritance"], 0, 1, 2, 3)
    assert ("Shipping Ops", "Notes: Zoll (old)", "Shipping Ops", "Notes") in names(src["inheritance"], 0, 1, 2, 3)
    assert ("Shipping Ops", "order", "Audit \"order\" changes") in names(src["triggers"], 0, 1, 2)
    assert any(r[1] == "Zöll_Tarife" and r[2] == "FK Zöll → order" and r[4] == "True" for r in tgt["constraints"])
    grants = names(tgt["grants"], 0, 1, 2, 3, 4, 5)
    assert ("Shipping Ops", "order", "", HARD_ROLE, "SELECT", APP_OWNER) in grants
    assert ("Shipping Ops", "order", "CamelCase", HARD_ROLE, "UPDATE", APP_OWNER) in grants
    assert ('eu.west "archive"', "", "", HARD_ROLE, "USAGE", APP_OWNER) in grants
    assert ('eu.west "archive"', "Tracking events per parcel, delivery attempt & depot (63 bytes)", "", HARD_ROLE,
            "SELECT", APP_OWNER) in grants
    assert set(r[5] for r in tgt["relations"]) == {APP_OWNER}
    # Identity and owned sequences are tied to their columns on the target too.
    assert ("Shipping Ops", "order_Order ID_seq", "Shipping Ops / order / Order ID / i") in names(
        tgt["sequences"], 0, 1, 8)
    assert ("Shipping Ops", "select_Line No_seq", "Shipping Ops / select / Line No / a") in names(
        tgt["sequences"], 0, 1, 8)
    # The trigger exists on the target and does not fire during the apply (session_replication_role = replica
    # is the replication phase's business); the rows arrived.
    assert target.query(db, 'SELECT count(*) FROM "Shipping Ops"."order"') == [(1000,)]

    # Second runs change nothing.
    again = ok(hard_run(clusters, db, "pre", include_schemas=list(HARD_SCHEMAS)))
    assert again["changed"] is False and again["queries"] == [] and again["conflicts"] == []
    again = ok(hard_run(clusters, db, "post"))
    assert again["changed"] is False and again["queries"] == []


def test_a_hard_schema_left_out_is_left_out_with_the_foreign_key_into_it(tmp_path, clusters, hard_db):
    db = hard_db
    pre = ok(hard_run(clusters, db, "pre", include_schemas=["Shipping Ops"]))
    excluded = dict((e["object"], e["reason"]) for e in pre["excluded"])
    assert excluded['"eu.west ""archive"""'] == "schema not migrated (include_schemas/exclude_schemas)"
    assert '"FK Zöll → order" on "eu.west ""archive"""."Zöll_Tarife"' in excluded
    target = clusters[1]
    assert target.query(db, "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s) ORDER BY 1",
                        (list(HARD_SCHEMAS),)) == [("Shipping Ops",)]
    # "Shipping Ops" keeps its keys and sequences.
    assert target.query(db, """SELECT count(*) FROM pg_constraint co JOIN pg_namespace n ON n.oid = co.connamespace
                                WHERE n.nspname = 'Shipping Ops' AND co.contype = 'p'""")[0][0] >= 5


def test_an_owner_role_the_master_cannot_act_as_stops_pre_before_anything_with_the_grant_to_run(
        tmp_path, clusters, new_db, new_role):
    """On the target the owner role exists, made by another role (the master has no ADMIN OPTION on it): the
    schema copy stops before it creates the database or any role, naming the GRANT to run."""
    source, target = clusters
    if target.shape != "rds":
        pytest.skip("the target login is a superuser")
    owner = new_role('Owner "Ö" x')
    owner_role(source, owner)
    target.execute("postgres", ["CREATE ROLE %s NOLOGIN" % ident(owner)])  # the operator's, not the master's
    db = new_db(source, "OWNER %s" % ident(owner))
    with source.connect(db, operator=True) as conn:
        conn.execute("SET ROLE %s" % ident(owner))
        conn.execute('CREATE SCHEMA "Ledger Ö"')
        conn.execute('CREATE TABLE "Ledger Ö"."Entries" (id int PRIMARY KEY, "Amount €" numeric)')
    try:
        before = target.query("postgres", "SELECT rolname FROM pg_roles ORDER BY 1")
        result = hard_run(clusters, db, "pre")
        assert result.get("failed") is True
        grant = 'GRANT %s TO "%s" WITH INHERIT TRUE, SET TRUE;' % (ident(owner), MASTER_USER)
        assert result["msg"].startswith("the target login %s lacks privileges the schema copy needs; nothing was "
                                        "changed" % MASTER_USER), result["msg"]
        assert grant in result["msg"]
        assert result["changed"] is False and result["queries"] == []
        assert not target.query("postgres", "SELECT 1 FROM pg_database WHERE datname = %s", (db,))
        assert target.query("postgres", "SELECT rolname FROM pg_roles ORDER BY 1") == before
        # Once the operator runs it, the copy goes through.
        target.execute("postgres", [grant.rstrip(";")], operator=True)
        result = ok(hard_run(clusters, db, "pre"))
        assert result["database"]["created"] is True
        assert target.query(db, 'SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = \'"Ledger Ö"."Entries"\''
                                '::regclass', operator=True) == [(owner,)]
    finally:
        drop_databases(db, target)


def test_a_source_login_that_cannot_read_a_table_is_told_before_pg_dump_fails(tmp_path, clusters, new_db, new_role):
    source, target = clusters
    if source.shape != "rds":
        pytest.skip("the source login is a superuser")
    stranger = new_role("Stranger é")
    source.execute("postgres", ["CREATE ROLE %s NOLOGIN" % ident(stranger)])  # the operator's: no master in it
    db = new_db(source)
    with source.connect(db, operator=True) as conn:
        conn.execute('CREATE TABLE public."Hidden Ledger" (id int PRIMARY KEY)')
        conn.execute('ALTER TABLE public."Hidden Ledger" OWNER TO %s' % ident(stranger))
    result = hard_run(clusters, db, "pre")
    assert result.get("failed") is True
    assert result["msg"].startswith("pg_dump cannot dump the source: the source login %s cannot read (lock) 1 "
                                    "table(s); nothing was changed" % MASTER_USER), result["msg"]
    assert '1 table(s) of "%s" (public."Hidden Ledger"):' % stranger.replace('"', '""') in result["msg"]
    assert 'GRANT %s TO "%s" WITH INHERIT TRUE;' % (ident(stranger), MASTER_USER) in result["msg"]
    assert result["commands"] == []  # pg_dump never ran
    assert not target.query("postgres", "SELECT 1 FROM pg_database WHERE datname = %s", (db,))


def test_playbook_gives_a_database_the_master_made_to_the_sources_owner(env):
    """Aurora's DatabaseName: the target database exists, owned by the master user. The report says it was given
    to the source database's owner (as on the source, whose public schema belongs to pg_database_owner)."""
    with env.target.master_connect() as conn:
        conn.execute("CREATE DATABASE %s" % env.db)
    inv = inventory(env)
    rc, out, recap = playbook(env, inv, "--check")
    assert rc == 0, out
    assert "target database %s: exists; would be given to %s, the owner of the source database (was %s)" % (
        env.db, env.owner, MASTER_USER) in out
    assert env.target.query("postgres", "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
                            (env.db,)) == [(MASTER_USER,)]
    rc, out, recap = playbook(env, inv)
    assert rc == 0 and recap["changed"] == 1, out
    assert "target database %s: exists; given to %s, the owner of the source database (was %s)" % (
        env.db, env.owner, MASTER_USER) in out
    md = (env.reports / "schema.md").read_text()
    assert "| owner | `%s` (given by this run; was `%s`) |" % (env.owner, MASTER_USER) in md
    assert env.target.query("postgres", "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
                            (env.db,)) == [(env.owner,)]
    # The owner role could create its objects in public, as on the source.
    assert env.target.query(env.db, "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace "
                                    "AND relkind = 'r' AND pg_get_userbyid(relowner) = %s", (env.owner,))[0][0] > 10


def test_names_that_became_keywords_between_the_versions_are_the_same_objects(tmp_path, clusters, new_db):
    """json_table and merge_action are keywords from PostgreSQL 17 on: quote_ident() leaves them bare on the 16
    source and quotes them on the 18 target. Objects are the same by their names, so second runs change nothing
    (keyed by formatted identities, the second pre would restore the table again and fail)."""
    source, target = clusters
    if not (source.major < 17 <= target.major):
        pytest.skip("needs a source before PostgreSQL 17 and a target from 17 on")
    db = new_db(source)
    source.execute(db, ["CREATE TABLE public.json_table (id int PRIMARY KEY, merge_action text NOT NULL)",
                        "CREATE INDEX json_table_merge_action ON public.json_table (merge_action)",
                        "CREATE SEQUENCE public.merge_action START 7"])
    try:
        ok(hard_run(clusters, db, "pre"))
        again = ok(hard_run(clusters, db, "pre"))
        assert again["changed"] is False and again["created"] == [] and again["conflicts"] == []
        post = ok(hard_run(clusters, db, "post"))
        assert [c["object"] for c in post["created"]] == ["public.json_table_merge_action"]
        assert ok(hard_run(clusters, db, "post"))["changed"] is False
        assert target.query(db, "SELECT quote_ident('json_table'), count(*) FROM pg_class "
                                "WHERE relname IN ('json_table', 'merge_action', 'json_table_merge_action')") == [
            ('"json_table"', 3)]
    finally:
        drop_databases(db, target)
