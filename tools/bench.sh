#!/usr/bin/env bash
# `make bench`: run every benchmark in bench/*/run.py, one after the other; each prints JSON
# (also kept in bench/results/). bench/README.md says what each one measures and how.
#
# Every benchmark brings up what it measures on ports of its own and takes it down afterwards:
# assess, initial_load, cdc and cutover a production-shaped lab each (playbooks/lab_up.yml with
# a copy of inventories/lab moved to their ports and lab_root .build/bench-<name>, pgbench scale
# BENCH_SCALE; bench/benchlab.py), validate and analyze two RDS/Aurora-shaped clusters each. None
# of them touches the lab of inventories/lab (make lab-up) or the tests' ports.
#
# The initial_load and validate benchmarks compare with pgcopydb: when it is missing and we are
# root, the Debian package is installed here (only here, never in `make test`); otherwise the
# benchmarks record pgcopydb as failed with the reason. validate installs reladiff into the
# virtualenv on demand.
set -euo pipefail
cd "$(dirname "$0")/.." || exit 1
top=$(pwd)
bin=${VENV:-$top/.venv}/bin
export PATH="$bin:$PATH"
export ANSIBLE_CONFIG=$top/ansible.cfg
export ANSIBLE_COLLECTIONS_PATH=$top/.build/collections
scale=${BENCH_SCALE:-50}
export BENCH_SCALE=$scale
# bench/initial_load measures two sizes in one run (its own lab for each): pgbench scales BENCH_SCALES.
export BENCH_SCALES=${BENCH_SCALES:-50,200}

if ! command -v pgcopydb >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bench: installing the Debian package pgcopydb (a peer of bench/initial_load and bench/validate)"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgcopydb; } >/dev/null 2>&1; then
      echo "bench: could not install pgcopydb; bench/initial_load records it as failed" >&2
    fi
  else
    echo "bench: pgcopydb is missing (apt-get install pgcopydb as root); bench/initial_load records it as failed" >&2
  fi
fi

# Labs: assess 25474-25475/26474/25534, initial_load 25476-25477/26476/25536 (its result file is
# tracked: bench/results/initial-load/; python bench/tables.py --write puts its tables in the READMEs),
# cdc 25478-25479/26478/25538, cutover 25472-25473/26472/25532; clusters: validate 25460-25461,
# analyze 25464-25465.
ordered=(bench/assess/run.py bench/initial_load/run.py bench/cdc/run.py bench/cutover/run.py)
status=0
for run in "${ordered[@]}" bench/*/run.py; do
  [ -f "$run" ] || continue
  case " ${done_runs:-} " in *" $run "*) continue ;; esac
  done_runs="${done_runs:-} $run"
  echo "### $run"
  "$bin/python" "$run" || { echo "bench: $run exited with $?" >&2; status=1; }
done
exit $status
