#!/usr/bin/env bash
# `make demo`: the local lab, a background write load through PgBouncer, and the
# migration phases that exist so far, run as a DBA would run them.
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
# Phase 4: streams planned by size and write rate, loaded in parallel under
# exported snapshots (per-table progress below), indexes built, then CDC.
play pgshift.aurora.replicate

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
print("reports:            reports/lab/assessment-before-preparation.md, preparation.md, assessment.md,")
print("                    schema.md, plan.json, replication.md, replication-lag.csv (+ .json)")
PY
echo
echo "The lab is still up with its load running: 'make lab-down' removes it."
