#!/usr/bin/env bash
# `make demo`: the local lab, a background write load through PgBouncer, and the
# migration phases that exist so far, run as a DBA would run them.
set -euo pipefail
cd "$(dirname "$0")/.."
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
# Phase 1: the fixes the assessment asked for (shown first with --check).
play pgshift.aurora.prepare_source --check --diff
play pgshift.aurora.prepare_source
# Phase 0 again, now as the go/no-go gate: fails on any remaining blocker.
play pgshift.aurora.assess

echo
echo "### Summary"
"$bin/python" - <<'PY'
import json
a = json.load(open("reports/lab/assessment.json"))
p = json.load(open("reports/lab/preparation.json"))
def count(side, sev):
    return sum(1 for f in a[side]["findings"] if f["severity"] == sev)
print("verdict:            %s" % a["verdict"])
for side in ("source", "target"):
    print("%-19s %d blocker(s), %d warning(s), PostgreSQL %s" % (
        side + ":", count(side, "blocker"), count(side, "warning"), a[side]["server"]["version"].split()[0]))
print("suggested streams:  %s" % a["source"]["suggested_streams"])
print("preparation:        %d change(s) made; restart pending: %s; reboot pending: %s" % (
    sum(len(s.get("queries", [])) for s in p.values() if isinstance(s, dict)),
    sorted({n for s in p.values() if isinstance(s, dict) for n in s.get("restart_pending", [])}) or "none",
    any(s.get("reboot_pending") for s in p.values() if isinstance(s, dict))))
print("reports:            reports/lab/assessment-before-preparation.md, assessment.md, preparation.md (+ .json)")
PY
echo
echo "The lab is still up with its load running: 'make lab-down' removes it."
