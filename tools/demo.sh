#!/usr/bin/env bash
# `make demo`: the local lab, a background write load through PgBouncer, and the
# migration phases from assessment to cutover, run as a DBA would run them.
set -euo pipefail
cd "$(dirname "$0")/.." || exit 1
top=$(pwd)
bin=${VENV:-$top/.venv}/bin
export PATH="$bin:$PATH"
export ANSIBLE_CONFIG=$top/ansible.cfg
export ANSIBLE_COLLECTIONS_PATH=$top/.build/collections
inv=${INVENTORY:-inventories/lab/hosts.yml}
play() { echo; echo "### ansible-playbook $*"; "$bin/ansible-playbook" -i "$inv" "$@"; }

play playbooks/lab_up.yml
play playbooks/lab_load.yml -e lab_load_state=started
# Phase 0 on a fresh lab: report only; the migration user has no grants yet and
# carrier_rates has no primary key, so this lists blockers with their fixes.
play pgshift.aurora.assess -e assess_fail_on=never
cp reports/lab/assessment.md reports/lab/assessment-before-preparation.md
cp reports/lab/assessment.json reports/lab/assessment-before-preparation.json
# Phase 1: the fixes the assessment asked for (shown first with --check).
play pgshift.aurora.prepare_source --check --diff
play pgshift.aurora.prepare_source
# Phase 0 again, now as the go/no-go gate: fails on any remaining blocker.
play pgshift.aurora.assess
# Phase 3: the schema before the data (indexes, foreign keys, triggers held back).
play pgshift.aurora.copy_schema
# Phase 4: streams planned by size and by the write rates since the assessment,
# loaded in parallel under exported snapshots (per-table progress below), each
# stream's CDC started once it is loaded, each table's indexes built once it is
# loaded, foreign keys and triggers once every load is done; then caught up.
play pgshift.aurora.replicate
# Phase 5: every table compared row by row (ranges hashed on both sides, narrowed
# down to the row), schema and sequences; the go/no-go the cutover requires.
play pgshift.aurora.validate
# The dry run: every cutover step for real (freeze, barrier, sequences, checks),
# measured, then the freeze undone instead of switching.
play pgshift.aurora.rehearsal
# Phase 6: the cutover, with the load running through PgBouncer.
play pgshift.aurora.cutover
# Let the clients write on the target for a moment, then read pgbench's output.
sleep 5

echo
echo "### Summary"
"$bin/python" - <<'PY'
import json
before = json.load(open("reports/lab/assessment-before-preparation.json"))
after = json.load(open("reports/lab/assessment.json"))
prep = json.load(open("reports/lab/preparation.json"))
print("before preparation: %s, %d blocker(s): %s" % (
    before["decision"], len(before["blockers"]), ", ".join(sorted({b["id"] for b in before["blockers"]}))))
print("preparation:        %d change(s); restart or reboot pending: %s" % (
    prep["changes"], "yes" if prep["restart_or_reboot_pending"] else "no"))
print("after preparation:  %s (%s)" % (after["decision"], after["decision_reason"]))
for side in ("source", "target"):
    s = after[side]
    print("  %-7s PostgreSQL %-6s %d blocker(s), %d warning(s), %d check(s) passed of %d" % (
        side, s["server"]["version"].split()[0], s["summary"]["blocker"], s["summary"]["warning"],
        sum(1 for v in s["checks"].values() if v == "pass"), len(s["checks"])))
src = after["source"]
print("sizes:              %d tables, %.1f MB, ~%d rows, %.1f writes/s (%s)" % (
    src["sizes"]["tables"], src["sizes"]["migrated_bytes"] / 1048576.0, src["sizes"]["migrated_rows"],
    src["sizes"]["writes_per_second"], src["sizes"].get("write_rate_method")))
print("suggested streams:  %s; DMS LOB mode: %s" % (src["suggested_streams"], src["lob"]["recommendation"]["reason"]))
rep = json.load(open("reports/lab/replication.json"))
final = rep.get("final") or {}
for st in final.get("streams", []):
    load = st.get("load") or {}
    print("stream %-21s %s: %d tables, %s rows copied in %ss, lag %s bytes" % (
        st["name"], st["state"], len(st.get("tables", [])), "{:,}".format(load.get("rows") or 0),
        load.get("elapsed_seconds"), st.get("lag_bytes")))
val = json.load(open("reports/lab/validation.json"))
vs = val.get("summary") or {}
print("validation:         %s, %s table(s), %s row(s) compared at %s rows/s, %s difference(s)" % (
    val["verdict"], vs.get("tables"), "{:,}".format(vs.get("rows_compared") or 0), "{:,.0f}".format(
        vs.get("rows_per_second") or 0), vs.get("differences")))
reh = json.load(open("reports/lab/rehearsal.json"))
cut = json.load(open("reports/lab/cutover.json"))
for name, r in (("rehearsal", reh), ("cutover", cut)):
    print("%-19s %s, write pause %s s%s" % (name + ":", r.get("status"), r.get("write_pause_seconds"),
          "" if name == "rehearsal" else ", traffic now on the %s" % r.get("serving", "target")))
PY
echo
echo "### The application's view (pgbench through PgBouncer, and the ledger on the target)"
"$bin/python" - <<'PY'
import os
import re

import psycopg
import yaml

inv = "inventories/lab"
src = yaml.safe_load(open(os.path.join(inv, "host_vars", "lab-source.yml")))
tgt = yaml.safe_load(open(os.path.join(inv, "host_vars", "lab-target.yml")))
lab = yaml.safe_load(open(os.path.join(inv, "group_vars", "all", "lab.yml"))) or {}
root = lab.get("lab_root") or ".lab"
ca = os.path.join(root, "tls", "ca.crt")
out = open(os.path.join(root, "load", "pgbench.out")).read()
aborted = [l for l in out.splitlines() if "aborted" in l or "error" in l.lower()]
failed = sum(int(m) for m in re.findall(r"(\d+) failed", out))
running = os.path.exists(os.path.join(root, "load", "pgbench.pid")) and os.system(
    "kill -0 $(cat %s) 2>/dev/null" % os.path.join(root, "load", "pgbench.pid")) == 0
print("client errors:      %d failed transaction(s), %d aborted client(s); pgbench still running: %s" % (
    failed, len(aborted), "yes" if running else "no"))


def connect(hv):
    # As the phases connect: the inventory's admin (the master user), TLS verify-full with the lab's CA.
    return psycopg.connect(host=hv["db_host"], port=hv["db_port"], dbname=hv["db_name"], user=hv["db_admin_user"],
                           password=hv["db_admin_password"], sslmode=hv["db_sslmode"], sslrootcert=ca)


shape = []
for hv in (src, tgt):
    with connect(hv) as conn:
        shape.append(conn.execute(
            "SELECT r.rolsuper, s.ssl, current_setting('server_version_num')::int / 10000 FROM pg_roles r, pg_stat_ssl s "
            "WHERE r.rolname = current_user AND s.pid = pg_backend_pid()").fetchone())
print("ran against:        admins: %s; TLS: %s; PostgreSQL %d -> %d" % (
    "superuser" if any(s[0] for s in shape) else "not superuser",
    src["db_sslmode"] if all(s[1] for s in shape) else "NOT USED", shape[0][2], shape[1][2]))
with connect(tgt) as conn:
    rows = conn.execute("SELECT client_id, count(*), count(DISTINCT seq), max(seq) FROM public.ledger "
                        "GROUP BY client_id ORDER BY client_id").fetchall()
bad = [r for r in rows if not r[1] == r[2] == r[3]]
print("ledger on target:   %d client(s), %s row(s), %s" % (
    len(rows), "{:,}".format(sum(r[1] for r in rows)),
    "every client's rows 1..n exactly once (no gap, no duplicate)" if not bad else "GAPS OR DUPLICATES: %r" % bad[:5]))
PY
echo
echo "reports: reports/lab/ (assessment, preparation, schema, plan, replication, validation, rehearsal, cutover)"
echo
echo "The lab is still up, the load writing to the target through PgBouncer: 'make lab-down' removes it"
echo "(or roll back first: ansible-playbook -i $inv pgshift.aurora.rollback)."
echo
if [ ! -f reports/lab/index.html ]; then
    echo "reports/lab/index.html is missing: the phases' report_files tasks did not build it (see their output)" >&2
    exit 1
fi
echo "migration report: $PWD/reports/lab/index.html (the night's plan: $PWD/reports/lab/runbook.md)"
