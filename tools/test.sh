#!/usr/bin/env bash
# `make test`: every suite, fastest first; all run even when one fails,
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
step() {
  local name=$1; shift
  echo
  echo "=== $name: $*"
  local start=$SECONDS
  if "$@"; then
    passed=$((passed + 1))
    echo "=== $name: ok ($((SECONDS - start)) s)"
  else
    failed=$((failed + 1))
    failures+=("$name")
    echo "=== $name: FAILED ($((SECONDS - start)) s)"
  fi
}

# Fast suites first. The integration suite runs on two workers (a test file stays on one worker: its
# module-scoped lab and its fixed lab ports are never shared), each test bounded by a timeout.
step unit "$bin/python" -m pytest tests/unit -q
step ansible-lint "$bin/ansible-lint"
step sanity ./tools/sanity.sh
step molecule ./tools/molecule.sh
step integration "$bin/python" -m pytest tests/integration -q -n "${PGSHIFT_TEST_WORKERS:-2}" --dist loadfile \
  --timeout "${PGSHIFT_TEST_TIMEOUT:-900}" --durations 15

echo
if [ "$failed" -gt 0 ]; then
  echo "failed suites: ${failures[*]}"
fi
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
