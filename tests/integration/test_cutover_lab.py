"""The cutover on a whole lab of its own (free loopback ports, lab_root .build/cutover-lab):
with the background load (pgbench through PgBouncer) running, cutover.yml moves the application to the
target, rollback.yml moves it back, a second cutover.yml moves it again, cleanup.yml leaves nothing.

After each move: pgbench never lost a client (no error, no aborted client in its output, still running),
PgBouncer points where it should, and once the load is stopped every migrated table is identical on
both sides and each load client's ledger is gap-free and on both sides exactly once.
"""

from __future__ import annotations

import json
import os

import pytest

from modrunner import assert_same_rows, lab_operator, lab_playbook, lab_secrets, lab_vars, log_leaks, running_lab
from pgcluster import wait_for

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PORTS = {}  # free loopback ports, chosen when the lab starts (modrunner.running_lab)
SECRETS = lab_secrets()
LAB_ROOT = os.path.join(REPO, ".build", "cutover-lab")

pytestmark = pytest.mark.lab


def playbook(inventory, name, *extra, check=True):
    return lab_playbook(inventory, name, *extra, secrets=SECRETS, check=check)


def connect(port, dbname="app"):
    # The test's own checks read both sides as the lab's operator (the phases never do).
    return lab_operator(port, dbname)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    # lab_target_app_roles stays false (the default lab): copy_schema creates app_user on the target without a
    # password, the cutover's preflight gives it the source's verifier
    with running_lab(tmp_path_factory.mktemp("cutover-inventory"), PORTS, LAB_ROOT, SECRETS, lab_pgbench_scale=1,
                     lab_postgresql_settings={"log_statement": "all"}) as lab:
        yield lab


def load_output():
    with open(os.path.join(LAB_ROOT, "load", "pgbench.out")) as f:
        return f.read()


def load_running():
    try:
        with open(os.path.join(LAB_ROOT, "load", "pgbench.pid")) as f:
            os.kill(int(f.read().strip()), 0)
        return True
    except (OSError, ValueError):
        return False


def assert_load_clean():
    out = load_output()
    bad = [line for line in out.splitlines() if "error" in line.lower() or "aborted" in line]
    assert bad == [], "pgbench reported client errors:\n" + "\n".join(bad[:20])
    assert load_running(), "pgbench is no longer running:\n" + out[-2000:]


def pgbouncer_port():
    with open(os.path.join(LAB_ROOT, "pgbouncer", "databases.ini")) as f:
        text = f.read()
    return int(text.split("port=")[1].split()[0])


def ledger_written(port, since):
    with connect(port) as c:
        return c.execute("SELECT count(*) FROM public.ledger WHERE written_at > %s", (since,)).fetchone()[0]


def timeline(report_path):
    with open(report_path) as f:
        return json.load(f)


def test_cutover_rollback_cutover_and_cleanup_with_the_load_running(lab):
    inventory, reports = lab["inventory"], lab["reports"]
    playbook(inventory, "playbooks/lab_load.yml", "-e", "lab_load_state=started", "-e", "lab_load_rate=40")
    playbook(inventory, "pgshift.aurora.prepare_source")
    playbook(inventory, "pgshift.aurora.copy_schema")
    playbook(inventory, "pgshift.aurora.replicate")

    # the rehearsal measures and switches nothing
    rc, out, recap = playbook(inventory, "pgshift.aurora.rehearsal")
    assert "REHEARSED" in out
    assert pgbouncer_port() == PORTS["source"]
    rehearsal = timeline(reports / "rehearsal.json")
    assert rehearsal["status"] == "rehearsed" and rehearsal["write_pause_seconds"] > 0
    assert_load_clean()

    rc, out, recap = playbook(inventory, "pgshift.aurora.cutover")
    assert "SWITCHED" in out
    first = timeline(reports / "cutover.json")
    assert first["status"] == "switched" and first["serving"] == "target"
    assert (reports / "cutover.md").read_text().startswith("# Cutover of migration `shipping`")
    assert pgbouncer_port() == PORTS["target"]
    with connect(PORTS["target"]) as tgt:
        switched_at = tgt.execute("SELECT now()").fetchone()[0]
    assert wait_for(lambda: ledger_written(PORTS["target"], switched_at) > 20, 30), "no load on the target"
    # what the clients write on the target comes back to the source
    assert wait_for(lambda: ledger_written(PORTS["source"], switched_at) > 20, 30), "the return stream is idle"
    assert_load_clean()

    rc, out, recap = playbook(inventory, "pgshift.aurora.rollback")
    back = timeline(reports / "rollback.json")
    assert back["status"] == "switched" and back["serving"] == "source"
    assert pgbouncer_port() == PORTS["source"]
    with connect(PORTS["source"]) as src:
        back_at = src.execute("SELECT now()").fetchone()[0]
    assert wait_for(lambda: ledger_written(PORTS["source"], back_at) > 20, 30)
    assert wait_for(lambda: ledger_written(PORTS["target"], back_at) > 20, 30), "no fresh forward stream"
    assert_load_clean()

    # cleanup refuses while the source serves again after a rollback
    rc, out, recap = playbook(inventory, "pgshift.aurora.cleanup", "-e", "cleanup_confirm=true", check=False)
    assert rc != 0 and "cleanup_force=true" in out

    playbook(inventory, "pgshift.aurora.cutover")
    second = timeline(reports / "cutover.json")
    assert second["status"] == "switched" and pgbouncer_port() == PORTS["target"]
    with connect(PORTS["target"]) as tgt:
        again_at = tgt.execute("SELECT now()").fetchone()[0]
    assert wait_for(lambda: ledger_written(PORTS["target"], again_at) > 20, 30)
    assert_load_clean()
    playbook(inventory, "playbooks/lab_load.yml", "-e", "lab_load_state=stopped")

    plan = json.loads((reports / "plan.json").read_text())
    with connect(PORTS["source"]) as src, connect(PORTS["target"]) as tgt:
        lsn = tgt.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
        assert wait_for(lambda: src.execute("SELECT count(*) FROM pg_stat_subscription s JOIN pg_subscription u "
                                            "ON u.oid = s.subid WHERE s.latest_end_lsn >= %s", (lsn,)).fetchone()[0]
                        == 1, 30), "the return stream did not catch up"
        planned = {(t["schema"], t["name"]) for stream in plan["streams"] for t in stream["tables"]}
        # Every table of the source (hard-named ones included), not only those the plan chose.
        assert assert_same_rows(src, tgt, min_tables=35) >= len(planned)
        ledger = ("SELECT client_id, count(*), count(DISTINCT seq), max(seq) FROM public.ledger "
                  "GROUP BY client_id ORDER BY client_id")
        src_ledger = src.execute(ledger).fetchall()
        assert src_ledger and src_ledger == tgt.execute(ledger).fetchall()
        assert all(n == distinct == top for client, n, distinct, top in src_ledger), "a client's ledger has a gap"

    playbook(inventory, "pgshift.aurora.cleanup", "-e", "cleanup_confirm=true")
    with connect(PORTS["source"]) as src, connect(PORTS["target"]) as tgt:
        for conn in (src, tgt):
            assert conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone()[0] == 0
            assert conn.execute("SELECT count(*) FROM pg_publication").fetchone()[0] == 0
            assert conn.execute("SELECT count(*) FROM pg_subscription").fetchone()[0] == 0
            assert conn.execute("SELECT to_regclass('pgshift.cutover_log')").fetchone()[0] is None
    for report in (path for path in reports.rglob("*") if path.is_file()):  # rehearsals/ kept too
        assert not any(secret in report.read_text(errors="replace") for secret in SECRETS), report.name
    # Every statement both servers ran is logged: no password in them but the migration user's in the
    # subscriptions' own CREATE statements (forward, return and fresh forward streams).
    leaks = log_leaks([os.path.join(LAB_ROOT, "log", "source.log"), os.path.join(LAB_ROOT, "log", "target.log")],
                      SECRETS, subscription_secrets=(lab_vars()["source"]["db_password"],))
    assert leaks == [], "\n".join(leaks[:10])
