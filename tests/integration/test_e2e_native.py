"""The native engine end to end on a lab of its own, shaped like RDS/Aurora (master users that
are not superusers, TLS verify-full, names and passwords that need quoting): PG16 source -> PG18
target, with the background load running through PgBouncer the whole time and every statement
logged by both servers (log_statement = all).

prepare_source -> copy_schema -> replicate, then every table of the source is compared row by row
on both sides, the audit trigger must have fired once per source change (not again on the
target), the ledger written by the load clients must be on the target exactly once; a second
replicate changes nothing; cleanup removes every publication, subscription and slot; no password is in any output, report or
server log (the migration user's only in the subscriptions' own CREATE statements, as PostgreSQL needs).
"""

from __future__ import annotations

import json
import os
import re

import pytest

from modrunner import (assert_same_rows, lab_operator, lab_playbook, lab_secrets, lab_vars, log_leaks, running_lab,
                       wait_streams_caught_up)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PORTS = {}  # free loopback ports, chosen when the lab starts (modrunner.running_lab)
LAB_ROOT = os.path.join(REPO, ".build", "e2e-lab")
SECRETS = lab_secrets()

pytestmark = pytest.mark.lab


def playbook(inventory, name, *extra, check=True):
    return lab_playbook(inventory, name, *extra, secrets=SECRETS, check=check)


def connect(port, dbname="app"):
    # The test's own checks read both sides as the lab's operator (the phases never do).
    return lab_operator(port, dbname)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The lab's inventory, moved to ports and a lab_root of its own; lab up, then down."""
    with running_lab(tmp_path_factory.mktemp("e2e-inventory"), PORTS, LAB_ROOT, SECRETS, lab_pgbench_scale=1,
                     lab_postgresql_settings={"log_statement": "all"}) as lab:
        yield lab


def test_native_migration_end_to_end(lab):
    inventory = lab["inventory"]
    playbook(inventory, "playbooks/lab_load.yml", "-e", "lab_load_state=started", "-e", "lab_load_rate=40")
    try:
        playbook(inventory, "pgshift.aurora.prepare_source")
        playbook(inventory, "pgshift.aurora.copy_schema")
        # --check: what each stream and the post stage would do, nothing started.
        rc, out, recap = playbook(inventory, "pgshift.aurora.replicate", "--check")
        assert "Show what each stream would do (check mode)" in out and "pgshift_shipping_s1" in out
        with connect(PORTS["source"]) as src:
            assert src.execute("SELECT count(*) FROM pg_publication WHERE pubname LIKE 'pgshift%%'").fetchone()[0] == 0
            assert src.execute("SELECT count(*) FROM pg_replication_slots").fetchone()[0] == 0
        rc, out, recap = playbook(inventory, "pgshift.aurora.replicate")
        assert "CAUGHT UP" in out
        assert re.search(r"\[0:\d\d:\d\d\] pgshift_shipping_s1 ", out), "no progress line in the playbook output"
        # The post stage ran with the loads and says what it built (copy_schema collect, its progress file).
        assert re.search(r"schema copy \(stage post\): (\d+)/\1 objects 100\.0% .* done", out), out[-3000:]
        with connect(PORTS["source"]) as src:
            # Changes the audit trigger sees on the source, while CDC runs.
            src.execute("UPDATE public.customers SET name = name || ' (moved)' WHERE id IN "
                        "(SELECT id FROM public.customers ORDER BY id LIMIT 25)")
            src.execute("UPDATE public.parcels SET attributes = attributes || '{\"e2e\": true}' WHERE id IN "
                        "(SELECT id FROM public.parcels ORDER BY id LIMIT 5)")
            src.execute("INSERT INTO public.customers (name, email, country) VALUES ('E2E', 'e2e@example.com', 'DE')")
            src.execute("DELETE FROM public.customers WHERE email = 'e2e@example.com'")
        rc, again, recap = playbook(inventory, "pgshift.aurora.replicate")
        assert recap["changed"] == 0, again[-3000:]
    finally:
        playbook(inventory, "playbooks/lab_load.yml", "-e", "lab_load_state=stopped")

    plan = json.loads((lab["reports"] / "plan.json").read_text())
    planned = {(t["schema"], t["name"]) for stream in plan["streams"] for t in stream["tables"]}
    # replicate_split_bytes (default 0) reached the plan: every table copied whole, with COPY FREEZE
    assert plan["split_bytes"] == 0 and {t["split"] for s in plan["streams"] for t in s["tables"]} == {1}
    with connect(PORTS["source"]) as src, connect(PORTS["target"]) as tgt:
        wait_streams_caught_up(src)
        # Every table of the source, the hard-named ones included, not only those the plan chose.
        assert assert_same_rows(src, tgt, min_tables=35) >= len(planned)
        assert any(schema == "Shipping Ops" for schema, name in planned), sorted(planned)
        audit = "SELECT operation, count(*) FROM public.audit_log GROUP BY 1 ORDER BY 1"
        assert src.execute(audit).fetchall() == tgt.execute(audit).fetchall()
        ledger = ("SELECT client_id, count(*), count(DISTINCT seq), max(seq) FROM public.ledger "
                  "GROUP BY client_id ORDER BY client_id")
        src_ledger = src.execute(ledger).fetchall()
        assert src_ledger and src_ledger == tgt.execute(ledger).fetchall()
        assert all(n == distinct == top for client, n, distinct, top in src_ledger if client is not None), \
            "a client's ledger has a gap"

    rc, out, recap = playbook(inventory, "pgshift.aurora.cleanup", check=False)
    assert rc != 0 and "cleanup_confirm=true" in out
    playbook(inventory, "pgshift.aurora.cleanup", "-e", "cleanup_confirm=true")
    with connect(PORTS["source"]) as src, connect(PORTS["target"]) as tgt:
        assert src.execute("SELECT count(*) FROM pg_replication_slots").fetchone()[0] == 0
        assert src.execute("SELECT count(*) FROM pg_publication").fetchone()[0] == 0
        assert tgt.execute("SELECT count(*) FROM pg_subscription").fetchone()[0] == 0
    for report in (path for path in lab["reports"].rglob("*") if path.is_file()):
        assert not any(secret in report.read_text(errors="replace") for secret in SECRETS), report.name
    migration_password = lab_vars()["source"]["db_password"]
    leaks = log_leaks([os.path.join(LAB_ROOT, "log", "source.log"), os.path.join(LAB_ROOT, "log", "target.log")],
                      SECRETS, subscription_secrets=(migration_password,))
    assert leaks == [], "\n".join(leaks[:10])
    # The logs did record the phases' statements (log_statement = all took effect).
    with open(os.path.join(LAB_ROOT, "log", "target.log"), errors="replace") as f:
        assert "CREATE SUBSCRIPTION" in f.read()
