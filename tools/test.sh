#!/usr/bin/env bash
# `make test`: every suite, fastest first, side by side where they fit; all run even when one fails,
# and the exit code says whether any failed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
top=$(pwd)
bin=${VENV:-$top/.venv}/bin
export PATH="$bin:$PATH"
export ANSIBLE_CONFIG=$top/ansible.cfg
export ANSIBLE_COLLECTIONS_PATH=$top/.build/collections

# The headless browser the report test uses (Debian's chromium and chromium-driver).
BOOTSTRAP_BROWSER=1 VENV=${VENV:-$top/.venv} ./tools/bootstrap.sh || exit 1

passed=0
failed=0
failures=()
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
started=()

record() {  # name, exit code, seconds
  if [ "$2" -eq 0 ]; then
    passed=$((passed + 1))
    echo "=== $1: ok ($3 s)"
  else
    failed=$((failed + 1))
    failures+=("$1")
    echo "=== $1: FAILED ($3 s)"
  fi
}

step() {  # in the foreground, its output as it comes
  local name=$1; shift
  echo
  echo "=== $name: $*"
  local start=$SECONDS rc=0
  "$@" || rc=$?
  record "$name" "$rc" $((SECONDS - start))
}

start_step() {  # in the background, its output kept until finish_step prints it
  local name=$1; shift
  echo
  echo "=== $name: started in the background: $*"
  ( start=$SECONDS; rc=0; "$@" >"$logs/$name.log" 2>&1 || rc=$?; echo "$rc $((SECONDS - start))" >"$logs/$name.rc" ) &
  started+=("$name:$!")
}

finish_step() {  # wait for a background step, print its output, count it
  local name=$1 entry pid
  for entry in "${started[@]}"; do
    [ "${entry%%:*}" = "$name" ] && pid=${entry#*:}
  done
  wait "$pid"
  echo
  echo "=== $name: output"
  cat "$logs/$name.log"
  local rc seconds
  read -r rc seconds <"$logs/$name.rc" || { rc=1; seconds=0; }
  record "$name" "$rc" "$seconds"
}

# Fast suites first: the unit tests and ansible-lint side by side. Then the integration suite in the foreground,
# with ansible-test sanity and molecule in the background beside it: the integration suite is the longest, and
# on a fresh machine sanity spends minutes creating ansible-test's virtualenvs (pip, the network) before its
# checks; waiting for it before the integration suite left the cores idle and made CI that much longer. Their
# labs never meet: molecule's fixed ports are below the ephemeral range the integration tests take theirs from,
# and each has its own lab_root. The integration suite runs on two workers (a test file stays on one worker: its
# module-scoped lab and its fixed lab ports are never shared), the longest files first
# (tests/integration/conftest.py), each test bounded by a timeout. A background step's output is printed whole
# when it ends.
start_step unit "$bin/python" -m pytest tests/unit -q
step ansible-lint "$bin/ansible-lint"
finish_step unit
start_step sanity ./tools/sanity.sh
start_step molecule ./tools/molecule.sh
step integration "$bin/python" -m pytest tests/integration -q -n "${PGSHIFT_TEST_WORKERS:-2}" --dist loadfile \
  --no-loadscope-reorder --timeout "${PGSHIFT_TEST_TIMEOUT:-900}" --durations 15
finish_step sanity
finish_step molecule

echo
if [ "$failed" -gt 0 ]; then
  echo "failed suites: ${failures[*]}"
fi
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
