#!/usr/bin/env bash
# `make bench`: bring the lab up (pgbench scale BENCH_SCALE, default 50) and run
# every benchmark in bench/*/run.py; each prints JSON (also kept in bench/results/).
set -euo pipefail
cd "$(dirname "$0")/.." || exit 1
top=$(pwd)
bin=${VENV:-$top/.venv}/bin
export PATH="$bin:$PATH"
export ANSIBLE_CONFIG=$top/ansible.cfg
export ANSIBLE_COLLECTIONS_PATH=$top/.build/collections
scale=${BENCH_SCALE:-50}

"$bin/ansible-playbook" -i inventories/lab/hosts.yml playbooks/lab_up.yml -e "lab_pgbench_scale=$scale" >/dev/null
for run in bench/*/run.py; do
  echo "### $run"
  "$bin/python" "$run"
done
