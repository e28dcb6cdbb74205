"""playbooks/assess.yml and playbooks/prepare_source.yml through ansible-playbook, for real.

Two clusters for the whole module, shaped like RDS and Aurora (PostgreSQL 16 as the
source, 18 as the target, master users that are not superusers, TLS verify-full);
every test gets its own database on each and its own role names, and an inventory in
tmp_path written the way docs/inventory.md says. Every run checks that no password appears anywhere in
ansible-playbook's output.
"""

from __future__ import annotations

import itertools
import json
import os
import socket

import pytest
import yaml

from modrunner import run_playbook
from pgcluster import (ADMIN_PASSWORD, MASTER_PASSWORD, MASTER_USER, Cluster, ca_cert, free_port, pg16_bin_dir,
                       wheel_bin_dir)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_COUNTER = itertools.count(1)


# --------------------------------------------------------------------------------------------
# Clusters, one database pair and one inventory per test
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def clusters():
    source = Cluster(pg16_bin_dir(), name="pbsource")
    target = Cluster(wheel_bin_dir(), name="pbtarget")
    try:
        source.start()
        target.start()
        yield source, target
    finally:
        source.stop()
        target.stop()


DATASET = [
    "CREATE SCHEMA billing",
    "CREATE TABLE public.customers (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL, "
    "note text)",
    # No primary key: the table the preparation gives REPLICA IDENTITY FULL.
    "CREATE TABLE public.carrier_rates (carrier text NOT NULL, zone int NOT NULL, rate numeric(10, 2))",
    "CREATE TABLE billing.invoices (id bigserial PRIMARY KEY, customer_id bigint REFERENCES public.customers (id), "
    "amount numeric(12, 2), body jsonb)",
    "CREATE TABLE public.shipments (id bigint NOT NULL, shipped_on date NOT NULL, PRIMARY KEY (id, shipped_on)) "
    "PARTITION BY RANGE (shipped_on)",
    "CREATE TABLE public.shipments_2025_01 PARTITION OF public.shipments "
    "FOR VALUES FROM ('2025-01-01') TO ('2025-02-01')",
    "CREATE TABLE public.shipments_2025_02 PARTITION OF public.shipments "
    "FOR VALUES FROM ('2025-02-01') TO ('2025-03-01')",
    "INSERT INTO public.customers (name, note) SELECT 'customer ' || g, repeat('n', g) FROM generate_series(1, 300) g",
    "INSERT INTO public.carrier_rates SELECT 'dhl', g, g * 1.5 FROM generate_series(1, 50) g",
    "INSERT INTO billing.invoices (customer_id, amount, body) "
    "SELECT 1 + g % 300, g, jsonb_build_object('line', g) FROM generate_series(1, 500) g",
    "INSERT INTO public.shipments SELECT g, date '2025-01-01' + (g % 50) FROM generate_series(1, 200) g",
    "ANALYZE",
]


class Env:
    """One test's databases, roles, inventory and report directory."""

    def __init__(self, tmp_path, source, target):
        n = next(_COUNTER)
        self.tmp = tmp_path
        self.source, self.target = source, target
        self.db = "pb%d" % n
        self.user = "pbmig%d" % n
        self.owner = "pbowner%d" % n
        self.password = "pb-migrator-pw-%d-Qz" % n
        self.reports = tmp_path / "reports"
        # The source looks like the lab's (and RDS): the application's tables belong to an owner role the
        # master user created and holds; the migration user is a member of rds_replication and nothing else.
        # On the target the database is empty, created by the master user, and the migration user does not
        # exist yet.
        with source.master_connect() as conn:
            conn.execute("CREATE ROLE %s NOLOGIN" % self.owner)
            conn.execute("GRANT %s TO %s WITH INHERIT TRUE, SET TRUE" % (self.owner, MASTER_USER))
            conn.execute("CREATE DATABASE %s OWNER %s" % (self.db, self.owner))
        source.create_migration_user(self.user, self.password)
        source.execute(self.db, ["SET ROLE %s" % self.owner] + DATASET)
        with target.master_connect() as conn:
            conn.execute("CREATE DATABASE %s" % self.db)
        self.secrets = (ADMIN_PASSWORD, MASTER_PASSWORD, self.password)

    def host_vars(self, cluster, **override):
        hv = dict(db_host="127.0.0.1", db_port=cluster.port, db_name=self.db, db_user=self.user,
                  db_password=self.password, db_admin_user=MASTER_USER, db_admin_password=MASTER_PASSWORD,
                  db_sslmode="verify-full", db_sslrootcert=ca_cert())
        hv.update(override)
        return dict((k, v) for k, v in hv.items() if v is not None)

    def inventory(self, source_vars=None, target_vars=None, migration=None, extra_source_hosts=(), name="inv"):
        """Writes hosts.yml, host_vars/ and group_vars/all/ to tmp_path/<name>; returns hosts.yml's path."""
        root = self.tmp / name
        (root / "host_vars").mkdir(parents=True, exist_ok=True)
        (root / "group_vars" / "all").mkdir(parents=True, exist_ok=True)
        source_hosts = dict.fromkeys(["it-source"] + list(extra_source_hosts))
        hosts = dict(all=dict(
            vars=dict(ansible_connection="local", ansible_python_interpreter="{{ ansible_playbook_python }}"),
            children=dict(source=dict(hosts=source_hosts), target=dict(hosts={"it-target": None}))))
        (root / "hosts.yml").write_text(yaml.safe_dump(hosts))
        (root / "host_vars" / "it-source.yml").write_text(
            yaml.safe_dump(source_vars if source_vars is not None else self.host_vars(self.source)))
        for extra in extra_source_hosts:
            (root / "host_vars" / ("%s.yml" % extra)).write_text(yaml.safe_dump(self.host_vars(self.source)))
        (root / "host_vars" / "it-target.yml").write_text(
            yaml.safe_dump(target_vars if target_vars is not None else self.host_vars(self.target)))
        mig = dict(migration_name="it_%s" % self.db, migration_engine="native", migration_streams="auto",
                   migration_include_schemas=[], migration_exclude_schemas=[], migration_include_tables=[],
                   migration_exclude_tables=[], migration_replica_identity_full=["public.carrier_rates"],
                   traffic_switch="none", report_dir=str(self.reports))
        mig.update(migration or {})
        (root / "group_vars" / "all" / "migration.yml").write_text(yaml.safe_dump(mig))
        return str(root / "hosts.yml")

    def report(self, name):
        return json.loads((self.reports / name).read_text())


@pytest.fixture
def env(tmp_path, clusters):
    return Env(tmp_path, *clusters)


def run(env, playbook, inventory, *args, secrets=()):
    """ansible-playbook pgshift.aurora.<playbook>; returns (rc, output, recap dict or None)."""
    return run_playbook("pgshift.aurora.%s" % playbook, inventory, *args, cwd=str(env.tmp), timeout=300,
                        secrets=env.secrets + tuple(secrets))


def run_rc(env, playbook, inventory, *args, secrets=()):
    """run() without the recap: (rc, output)."""
    rc, out, dummy = run(env, playbook, inventory, *args, secrets=secrets)
    return rc, out


def reports_hold_no_secret(env, secrets=()):
    for path in env.reports.iterdir():
        text = path.read_text()
        for secret in env.secrets + tuple(secrets):
            assert secret not in text, "a password appears in %s" % path


# --------------------------------------------------------------------------------------------
# What the databases say
# --------------------------------------------------------------------------------------------

def source_state(env):
    """Everything the preparation could change on the source, as plain data."""
    rows = env.source.query(env.db, """
        SELECT c.oid::regclass::text, c.relreplident::text, coalesce(c.relacl::text, ''),
               has_table_privilege(%(u)s, c.oid, 'SELECT')
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p') AND n.nspname IN ('public', 'billing') ORDER BY 1""", dict(u=env.user))
    schemas = env.source.query(env.db, "SELECT nspname, coalesce(nspacl::text, '') FROM pg_namespace "
                                       "WHERE nspname IN ('public', 'billing') ORDER BY 1")
    database = env.source.query(env.db, "SELECT coalesce(datacl::text, '') FROM pg_database "
                                        "WHERE datname = current_database()")
    return dict(tables=rows, schemas=schemas, database=database, role=role_state(env.source, env.db, env.user))


def target_state(env):
    return dict(role=role_state(env.target, env.db, env.user),
                database=env.target.query(env.db, "SELECT coalesce(datacl::text, '') FROM pg_database "
                                                  "WHERE datname = current_database()"))


def role_state(cluster, db, user):
    return cluster.query(db, """
        SELECT r.rolreplication, r.rolcanlogin, r.rolsuper,
               has_database_privilege(r.rolname, current_database(), 'CREATE'),
               array(SELECT g.rolname::text FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
                      WHERE m.member = r.oid ORDER BY 1)
          FROM pg_roles r WHERE r.rolname = %(u)s""", dict(u=user))


def replident(env, table):
    return env.source.query(env.db, "SELECT relreplident::text FROM pg_class WHERE oid = %(t)s::regclass",
                            dict(t=table))[0][0]


# --------------------------------------------------------------------------------------------
# Assess
# --------------------------------------------------------------------------------------------

def test_assess_on_unprepared_source_fails_names_blockers_and_writes_the_report(env):
    inventory = env.inventory()
    before = source_state(env), target_state(env)

    rc, out, recap = run(env, "assess", inventory)

    assert rc != 0, out
    assert recap == dict(ok=recap["ok"], changed=0, unreachable=0, failed=1), out
    assert "NO-GO" in out
    for blocker in ("no_replica_identity", "select_privilege", "migration_user_missing",
                    "public.carrier_rates"):
        assert blocker in out, blocker
    assert "ALTER TABLE ... REPLICA IDENTITY FULL" in out  # each blocker comes with its fix

    data = env.report("assessment.json")
    assert data["decision"] == "NO-GO"
    assert data["gate_failed"] is True
    blocker_ids = {(b["side"], b["id"]) for b in data["blockers"]}
    assert {("source", "no_replica_identity"), ("source", "select_privilege"),
            ("target", "migration_user_missing")} <= blocker_ids
    assert all(b["remediation"] for b in data["blockers"])
    assert data["source"]["summary"]["blocker"] == len([b for b in data["blockers"] if b["side"] == "source"])
    assert data["source"]["server"]["version_num"] // 10000 == 16
    assert data["target"]["server"]["version_num"] // 10000 == 18
    assert data["source"]["sizes"]["migrated_rows"] >= 1000
    assert {t["table"] for t in data["source"]["sizes"]["largest"]} >= {"public.customers", "public.shipments"}
    assert data["source"]["lob"]["recommendation"]["mode"] == "limited"
    checks = {c["id"]: c for c in data["checks"]}
    assert checks["no_replica_identity"]["source"] == "blocker"
    assert checks["migration_user_missing"] == dict(id="migration_user_missing", source="pass", target="blocker")
    assert checks["schema_usage"] == dict(id="schema_usage", source="blocker", target="not run")
    assert checks["wal_level"]["source"] == "pass"

    md = (env.reports / "assessment.md").read_text()
    assert "## Decision: **NO-GO**" in md
    assert md.index("## Blockers") < md.index("## Warnings") < md.index("## Checks")
    assert '**Fix:** prepare_source.yml runs it as dbadmin: GRANT SELECT ON TABLE' in md
    assert "| `no_replica_identity` | **blocker** | not run |" in md
    assert "PostgreSQL 16." in md and "PostgreSQL 18." in md
    reports_hold_no_secret(env)

    # Read-only: the databases are exactly as they were.
    assert (source_state(env), target_state(env)) == before
    assert replident(env, "public.carrier_rates") == "d"


def test_assess_defers_only_the_blockers_it_is_told_to(env):
    """assess_defer_preparation_blockers (site.yml, AWX: what prepare_source fixes) lets those blockers through the
    gate, no other; the report still lists them."""
    inventory = env.inventory()
    before = source_state(env), target_state(env)
    fixed_by_preparation = ["migration_user_missing", "replication_privilege", "replication_role_setting",
                            "schema_usage", "select_privilege", "no_replica_identity"]

    # one of them no longer on the list the role defers: it stops the gate
    rc, out, recap = run(env, "assess", inventory, "-e", json.dumps(dict(
        assess_defer_preparation_blockers=True, assess_preparation_blockers=fixed_by_preparation[:-1])))
    assert rc != 0 and recap["failed"] == 1, out
    data = env.report("assessment.json")
    assert data["decision"] == "NO-GO" and data["gate_failed"] is True
    assert data["gate_lines"] and all("no_replica_identity" in line for line in data["gate_lines"]), data["gate_lines"]

    rc, out, recap = run(env, "assess", inventory, "-e", json.dumps(dict(assess_defer_preparation_blockers=True)))
    assert rc == 0 and recap["failed"] == 0, out
    data = env.report("assessment.json")
    assert data["decision"] == "GO" and data["gate_failed"] is False and data["gate_lines"] == []
    assert "deferred to prepare_source" in data["decision_reason"]
    assert data["deferred_blockers"] == fixed_by_preparation
    assert {b["id"] for b in data["blockers"]} >= {"no_replica_identity", "select_privilege", "migration_user_missing"}
    assert (source_state(env), target_state(env)) == before


# --------------------------------------------------------------------------------------------
# Prepare, then assess
# --------------------------------------------------------------------------------------------

def test_prepare_then_assess_passes_and_a_second_prepare_changes_nothing(env):
    inventory = env.inventory()

    rc, out, recap = run(env, "prepare_source", inventory, "-vvv")
    assert rc == 0, out
    assert recap["changed"] >= 1 and recap["failed"] == 0, out
    # The target's migration user did not exist: created with the password masked.
    assert "CREATE ROLE \"%s\" LOGIN REPLICATION PASSWORD '********'" % env.user in out

    # Outcomes in the databases.
    assert replident(env, "public.carrier_rates") == "f"
    state = source_state(env)
    assert state["tables"] and all(row[3] for row in state["tables"]), state["tables"]
    replication, login, superuser, create = state["role"][0][:4]
    assert replication and login and not create and not superuser
    t_replication, t_login, t_superuser, t_create, t_member_of = target_state(env)["role"][0]
    assert t_replication and t_login and not t_create and not t_superuser
    assert t_member_of == ["rds_replication"]
    # The migration user logs in to the target with db_password, and reads every source table.
    with env.target.connect(env.db, user=env.user, password=env.password) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == env.user
    with env.source.connect(env.db, user=env.user, password=env.password) as conn:
        for row in state["tables"]:
            conn.execute("SELECT 1 FROM %s LIMIT 1" % row[0])

    prep = env.report("preparation.json")
    assert prep["error"] is None and not prep["check_mode"]
    assert 'ALTER TABLE "public"."carrier_rates" REPLICA IDENTITY FULL' in prep["source"]["queries"]
    assert 'GRANT "rds_replication" TO "%s"' % env.user in prep["target"]["queries"]
    assert [f for f in prep["source"]["remaining"] if f["severity"] == "blocker"] == []
    md = (env.reports / "preparation.md").read_text()
    assert 'GRANT SELECT ON TABLE "billing"."invoices" TO "%s";' % env.user in md
    assert "No restart or reboot is pending." in md

    rc, out, recap = run(env, "prepare_source", inventory)
    assert rc == 0, out
    assert recap["changed"] == 0, out
    assert "0 change(s) made" in out
    assert env.report("preparation.json")["changes"] == 0

    # The target's host_vars say it has 2 vCPUs: the suggestion is capped at one stream, and the report says so.
    with open(os.path.join(os.path.dirname(inventory), "host_vars", "it-target.yml"), "a") as handle:
        handle.write("db_vcpus: 2\n")
    rc, out, recap = run(env, "assess", inventory)
    assert rc == 0, out
    assert recap["changed"] == 0 and recap["failed"] == 0
    data = env.report("assessment.json")
    assert data["decision"] == "GO", data["blockers"]
    assert (data["source"]["vcpus"], data["source"]["stream_cap"], data["source"]["suggested_streams"]) == (2, 1, 1)
    md = (env.reports / "assessment.md").read_text()
    assert "**1**, at most 1 on 2 vCPUs (`db_vcpus`" in md
    assert "apply worker on the target)\n- Planned (`migration_streams: auto`): **1**; slot" in md  # its own line
    assert data["blockers"] == []
    assert data["source"]["summary"]["blocker"] == 0 and data["target"]["summary"]["blocker"] == 0
    assert "## Decision: **GO**" in (env.reports / "assessment.md").read_text()

    # The gate follows assess_fail_on: the warnings that remain (REPLICA IDENTITY FULL on a table
    # without a primary key, the owner of the tables) stop it at 'warning'.
    assert data["warnings"], "expected warnings to remain"
    rc, out, recap = run(env, "assess", inventory, "--check", "-e", "assess_fail_on=warning")
    assert rc != 0 and recap["changed"] == 0, out
    assert "replica_identity_full" in out
    assert env.report("assessment.json")["decision"] == "NO-GO"
    reports_hold_no_secret(env)


def test_prepare_check_mode_changes_nothing_and_shows_the_sql(env):
    inventory = env.inventory()
    before = source_state(env), target_state(env)
    assert before[1]["role"] == []  # no migration user on the target yet

    rc, out, recap = run(env, "prepare_source", inventory, "--check", "--diff")

    assert rc == 0, out
    assert "CHECK MODE, nothing was changed" in out
    assert 'ALTER TABLE "public"."carrier_rates" REPLICA IDENTITY FULL' in out
    assert 'GRANT SELECT ON TABLE "public"."carrier_rates" TO "%s"' % env.user in out
    assert 'GRANT "rds_replication" TO "%s"' % env.user in out
    assert "+    table.public.carrier_rates.replica_identity: full" in out  # --diff
    assert (source_state(env), target_state(env)) == before
    assert replident(env, "public.carrier_rates") == "d"
    check = env.report("preparation-check.json")
    assert check["check_mode"] is True
    assert "CREATE ROLE \"%s\" LOGIN REPLICATION PASSWORD '********'" % env.user in check["target"]["queries"]
    assert not (env.reports / "preparation.md").exists()  # a dry run never overwrites the real record
    assert "CHECK MODE: nothing was changed." in (env.reports / "preparation-check.md").read_text()


# --------------------------------------------------------------------------------------------
# Bad input: clear errors, nothing leaked
# --------------------------------------------------------------------------------------------

def test_wrong_password_is_a_clear_error_and_never_echoed(env):
    wrong = "Wr0ng-pw-%s-xq" % env.db
    inventory = env.inventory(source_vars=env.host_vars(env.source, db_admin_password=wrong))

    rc, out = run_rc(env, "assess", inventory, "-vvv", secrets=(wrong,))
    assert rc != 0
    assert "authentication failed for user 'dbadmin' on 127.0.0.1:%d/%s" % (env.source.port, env.db) in out
    assert "[source blocker] connection" in out
    assert env.report("assessment.json")["source"]["assessed"] is False
    reports_hold_no_secret(env, (wrong,))

    before = source_state(env), target_state(env)
    rc, out = run_rc(env, "prepare_source", inventory, "-vvv", secrets=(wrong,))
    assert rc != 0
    assert "Prepare the source failed: authentication failed for user 'dbadmin'" in out
    assert (source_state(env), target_state(env)) == before
    assert "THE PREPARATION FAILED" in (env.reports / "preparation.md").read_text()
    reports_hold_no_secret(env, (wrong,))


def test_unreachable_host_is_a_clear_error(env):
    port = free_port()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
    inventory = env.inventory(target_vars=env.host_vars(env.target, db_port=port))

    rc, out = run_rc(env, "assess", inventory, "-e", "assess_connect_timeout=3")
    assert rc != 0
    assert "cannot reach PostgreSQL at 127.0.0.1:%d" % port in out
    data = env.report("assessment.json")
    assert data["target"]["assessed"] is False and data["source"]["assessed"] is True
    assert data["decision"] == "NO-GO"

    rc, out = run_rc(env, "prepare_source", inventory, "-e", "prepare_source_connect_timeout=3")
    assert rc != 0
    assert "Prepare the target (subscriptions and the reverse path) failed: cannot reach PostgreSQL at " \
           "127.0.0.1:%d" % port in out


@pytest.mark.parametrize("playbook", ["assess", "prepare_source"])
def test_two_hosts_in_source_is_a_clear_error(env, playbook):
    inventory = env.inventory(extra_source_hosts=["it-source-2"])
    before = source_state(env)

    rc, out = run_rc(env, playbook, inventory)

    assert rc != 0
    assert "group 'source' must hold exactly one host" in out
    assert "it holds it-source, it-source-2" in out
    assert source_state(env) == before


@pytest.mark.parametrize("playbook", ["assess", "prepare_source"])
def test_missing_db_name_is_a_clear_error(env, playbook):
    inventory = env.inventory(target_vars=env.host_vars(env.target, db_name=None))

    rc, out = run_rc(env, playbook, inventory)

    assert rc != 0
    assert "host 'it-target' (group target) is missing the required variable(s) db_name" in out
    assert not env.reports.exists()  # stopped before anything ran


@pytest.mark.parametrize("playbook, variable", [
    ("assess", "assess_fail_on=sometimes"),
    ("prepare_source", "prepare_source_fail_on=sometimes"),
])
def test_invalid_role_variable_is_an_argument_spec_error(env, playbook, variable):
    inventory = env.inventory()
    name = variable.split("=")[0]

    rc, out = run_rc(env, playbook, inventory, "-e", variable)

    assert rc != 0
    assert "Validation of arguments failed" in out
    assert "value of %s must be one of: blocker, warning, never, got: sometimes" % name in out


def test_invalid_inventory_values_are_clear_errors(env):
    inventory = env.inventory(migration=dict(migration_streams="lots", migration_name="Bad Name!"))
    rc, out = run_rc(env, "assess", inventory)
    assert rc != 0
    assert "migration_name 'Bad Name!' is not valid" in out

    inventory = env.inventory(migration=dict(migration_streams="lots"), name="inv2")
    rc, out = run_rc(env, "assess", inventory)
    assert rc != 0
    assert "must be 'auto' or a number of at least 1, got 'lots'" in out

    inventory = env.inventory(source_vars=dict(env.host_vars(env.source), db_vcpus="four"), name="inv3")
    rc, out = run_rc(env, "assess", inventory)
    assert rc != 0
    assert "inventory: host 'it-source' has db_vcpus four, not a count of vCPUs from 1" in out
