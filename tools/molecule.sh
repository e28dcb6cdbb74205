#!/usr/bin/env bash
# `make molecule`: every molecule scenario of the collection
# (extensions/molecule/<name>/molecule.yml), each with `molecule test`
# (its test_sequence ends with destroy; molecule destroys after a failure too).
# Runs from the collection root, which is how molecule finds collection
# scenarios. Exit code: non-zero when any scenario failed.
#   tools/molecule.sh                  # all scenarios
#   tools/molecule.sh assess_prepare   # some
# MOLECULE_ARGS: extra `molecule test` arguments (e.g. --destroy=never to keep a lab for debugging).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
top=$(pwd)
bin=${VENV:-$top/.venv}/bin
export PATH="$bin:$PATH"
export ANSIBLE_COLLECTIONS_PATH=$top/.build/collections
export PGSHIFT_MOLECULE_LAB_ROOT=${PGSHIFT_MOLECULE_LAB_ROOT:-$top/.build/molecule-lab}
export PGSHIFT_MOLECULE_LAB_ROOT_RV=${PGSHIFT_MOLECULE_LAB_ROOT_RV:-$top/.build/molecule-lab-rv}
export PGSHIFT_MOLECULE_LAB_ROOT_CR=${PGSHIFT_MOLECULE_LAB_ROOT_CR:-$top/.build/molecule-lab-cr}
export ANSIBLE_FORCE_COLOR=${ANSIBLE_FORCE_COLOR:-0}
unset ANSIBLE_CONFIG  # molecule writes its own (from molecule.yml's ansible.cfg)

if [ ! -x "$bin/molecule" ] || [ ! -e "$ANSIBLE_COLLECTIONS_PATH/ansible_collections/pgshift/aurora/galaxy.yml" ]; then
  echo "molecule.sh: run \`make bootstrap\` first" >&2
  exit 2
fi

if [ $# -gt 0 ]; then
  scenarios=("$@")
else
  scenarios=()
  for f in extensions/molecule/*/molecule.yml; do
    [ -e "$f" ] || continue
    d=${f%/molecule.yml}
    scenarios+=("${d#extensions/molecule/}")
  done
fi
if [ ${#scenarios[@]} -eq 0 ]; then
  echo "molecule.sh: no scenario under extensions/molecule" >&2
  exit 1
fi

current=""
cleanup() {
  # Interrupted (Ctrl-C, kill): take the scenario's lab down before leaving.
  if [ -n "$current" ]; then
    echo "molecule.sh: interrupted, destroying $current" >&2
    molecule destroy -s "$current" >/dev/null 2>&1 || true
  fi
  exit 130
}
trap cleanup INT TERM

failed=()
for s in "${scenarios[@]}"; do
  echo "=== molecule test -s $s"
  start=$SECONDS
  current=$s
  # shellcheck disable=SC2086  # MOLECULE_ARGS is a list of arguments
  if molecule test -s "$s" ${MOLECULE_ARGS:-}; then
    echo "=== molecule $s: ok ($((SECONDS - start)) s)"
  else
    echo "=== molecule $s: FAILED ($((SECONDS - start)) s)"
    failed+=("$s")
  fi
  current=""
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "molecule: failed scenarios: ${failed[*]}" >&2
  exit 1
fi
echo "molecule: ${#scenarios[@]} scenario(s) passed"
