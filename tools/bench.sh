#!/usr/bin/env bash
# `make bench`: bring the lab up (pgbench scale BENCH_SCALE, default 50) and run
# every benchmark in bench/*/run.py; each prints JSON (also kept in bench/results/).
# bench/README.md says what each one measures and how.
#
# The initial_load benchmark compares with pgcopydb: when it is missing and we are
# root, the Debian package is installed here (only here, never in `make test`);
# otherwise the benchmark records pgcopydb as failed with the reason.
# A lab already up keeps its pgbench scale (lab_down first for another one).
set -euo pipefail
cd "$(dirname "$0")/.." || exit 1
top=$(pwd)
bin=${VENV:-$top/.venv}/bin
export PATH="$bin:$PATH"
export ANSIBLE_CONFIG=$top/ansible.cfg
export ANSIBLE_COLLECTIONS_PATH=$top/.build/collections
scale=${BENCH_SCALE:-50}
export BENCH_SCALE=$scale

if ! command -v pgcopydb >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bench: installing the Debian package pgcopydb (a peer of bench/initial_load)"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgcopydb; } >/dev/null 2>&1; then
      echo "bench: could not install pgcopydb; bench/initial_load records it as failed" >&2
    fi
  else
    echo "bench: pgcopydb is missing (apt-get install pgcopydb as root); bench/initial_load records it as failed" >&2
  fi
fi

"$bin/ansible-playbook" -i inventories/lab/hosts.yml playbooks/lab_up.yml -e "lab_pgbench_scale=$scale" >/dev/null
# initial_load before cdc: it measures the dataset as lab_up made it (cdc adds rows).
# cutover runs on a lab of its own (ports 25472-25473, 26472, 25532) with BENCH_SCALE.
ordered=(bench/assess/run.py bench/initial_load/run.py bench/cdc/run.py bench/cutover/run.py)
for run in "${ordered[@]}" bench/*/run.py; do
  [ -f "$run" ] || continue
  case " ${done_runs:-} " in *" $run "*) continue ;; esac
  done_runs="${done_runs:-} $run"
  echo "### $run"
  "$bin/python" "$run"
done
