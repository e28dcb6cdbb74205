"""The lab's production shape: TLS material and RDS/Aurora-like roles.

Used by the lab role (`roles/lab/tasks/tls.yml`, `users.yml`) and by the integration
tests (`tests/integration/pgcluster.py`), so both stand on the same shape:

- ``tls DIR OS_USER``: a CA and a server certificate for 127.0.0.1 and localhost in DIR
  (``ca.crt``, ``server.crt``, ``server.key`` owned by OS_USER, mode 0600), made once.
- ``cluster`` (JSON on stdin): one PostgreSQL cluster -- initdb once (the operator's password in a file
  only initdb reads, removed right after), the lab's settings file included from ``postgresql.conf``,
  ``pg_hba.conf``, started; a cluster that was running when its settings changed is restarted. With
  ``check_mode`` it only says what it would do. Prints {"changed": bool, "actions": [...]}, or
  {"failed": true, "msg": ...} (never a password) with exit code 1.
- ``stop`` (JSON on stdin): the lab's background processes, each named by its pid file and a pattern
  of its command line (as ``pgrep -F PIDFILE -f PATTERN``): signalled, waited for until they have
  exited, their pid files removed. Prints {"changed": bool, "stopped": [...]} or a failure as ``cluster``.
- ``roles`` (JSON on stdin): as the lab's operator (the only superuser, never in an
  inventory), the roles AWS makes on RDS and Aurora -- ``rds_superuser``,
  ``rds_replication``, the master user (``LOGIN CREATEROLE CREATEDB``, member of
  ``rds_superuser``) and the migration user (member of ``rds_replication``) -- then, as
  the master user over TLS, the application's roles, as a DBA creates them on RDS.

On RDS, membership in ``rds_replication`` confers replication; plain PostgreSQL has no
such role, so the operator also gives every role that holds it the REPLICATION
attribute. Passwords arrive as SCRAM verifiers only (never in clear), so no statement
text that a server logs holds a password. Every step is idempotent and the script
prints {"changed": bool}.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import pwd
import re
import signal
import subprocess
import sys
import tempfile
import time

RDS_SUPERUSER_ROLES = ("pg_monitor", "pg_signal_backend", "pg_read_all_settings", "pg_checkpoint")


# ----------------------------------------------------------------------------------------------
# TLS
# ----------------------------------------------------------------------------------------------

def make_tls(directory, os_user=None, days=3650):
    """CA + server certificate (SAN 127.0.0.1, ::1, localhost) in directory; True when made now."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    paths = dict((k, os.path.join(directory, k)) for k in ("ca.crt", "server.crt", "server.key"))
    if all(os.path.exists(p) for p in paths.values()):
        _own(paths["server.key"], os_user)
        return False
    os.makedirs(directory, exist_ok=True)
    os.chmod(directory, 0o755)
    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    later = now + datetime.timedelta(days=days)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pgshift lab CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now).not_valid_after(later)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))

    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                       x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                       x509.IPAddress(ipaddress.ip_address("::1"))])
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(later)
            .add_extension(san, critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))

    pem = serialization.Encoding.PEM
    _write(paths["ca.crt"], ca.public_bytes(pem), 0o644)
    _write(paths["server.crt"], cert.public_bytes(pem), 0o644)
    _write(paths["server.key"], key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()), 0o600)
    _own(paths["server.key"], os_user)
    # The CA's key is not kept: nothing else is ever signed with it.
    return True


def _write(path, data, mode):
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path + ".tmp", mode)
    os.replace(path + ".tmp", path)


def _own(path, os_user):
    if os_user and os.geteuid() == 0:
        pw = pwd.getpwnam(os_user)
        os.chown(path, pw.pw_uid, pw.pw_gid)


# ----------------------------------------------------------------------------------------------
# Clusters
# ----------------------------------------------------------------------------------------------

class LabError(Exception):
    """What stopped a step, said without any password."""


def _run(argv, what, ok=(0,)):
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    if proc.returncode not in ok:
        raise LabError("%s failed (exit %d): %s" % (what, proc.returncode, proc.stdout.strip()[-2000:]))
    return proc.returncode


def _write_if_changed(path, text, os_user, mode=0o600, check_mode=False):
    """Writes text to path unless it already holds it; True when it did (or would)."""
    try:
        with open(path) as f:
            if f.read() == text:
                return False
    except FileNotFoundError:
        pass
    if not check_mode:
        _write(path, text.encode(), mode)
        _own(path, os_user)
    return True


def _append_line_if_missing(path, line, os_user, check_mode=False):
    """Appends line to path unless a line of it is that line already; True when it did (or would)."""
    with open(path) as f:
        text = f.read()
    if line in text.splitlines():
        return False
    if not check_mode:
        _write(path, (text + ("" if text.endswith("\n") or not text else "\n") + line + "\n").encode(),
               os.stat(path).st_mode & 0o777)
        _own(path, os_user)
    return True


def setup_cluster(spec):
    """One cluster, idempotent: spec = {name, bin_dir, data_dir, log_file, run_as: [argv prefix], os_user,
    operator_user, operator_password, locale, settings, hba, include_line, wait_timeout, check_mode}.
    Returns the list of actions taken (or that would be, in check mode); empty when nothing changed."""
    run_as, data, check = list(spec.get("run_as") or []), spec["data_dir"], bool(spec.get("check_mode"))
    pg_ctl = os.path.join(spec["bin_dir"], "pg_ctl")
    # 0: running, 3: not running, 4: no data directory yet.
    status = _run(run_as + [pg_ctl, "status", "-D", data], "pg_ctl status", ok=(0, 3, 4))
    actions = []
    if not os.path.exists(os.path.join(data, "PG_VERSION")):
        actions.append("initdb")
        if check:  # nothing to compare the settings with yet: all of it would be written, then started
            return actions + ["write settings", "write pg_hba.conf", "start"]
        os.makedirs(data, mode=0o700, exist_ok=True)
        os.chmod(data, 0o700)
        _own(data, spec.get("os_user"))
        fd, pwfile = tempfile.mkstemp(prefix=".%s.initdb-pw-" % spec["name"], dir=os.path.dirname(data))
        try:
            with os.fdopen(fd, "w") as f:
                f.write(spec["operator_password"] + "\n")
            _own(pwfile, spec.get("os_user"))
            _run(run_as + [os.path.join(spec["bin_dir"], "initdb"), "--pgdata=" + data,
                           "--username=" + spec["operator_user"], "--pwfile=" + pwfile, "--auth-local=peer",
                           "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=" + spec["locale"]], "initdb")
        finally:
            os.unlink(pwfile)
    changed_settings = False
    if _write_if_changed(os.path.join(data, "pgshift_lab.conf"), spec["settings"], spec.get("os_user"),
                         check_mode=check):
        actions.append("write settings")
        changed_settings = True
    if _append_line_if_missing(os.path.join(data, "postgresql.conf"), spec["include_line"], spec.get("os_user"),
                               check_mode=check):
        actions.append("include the settings from postgresql.conf")
        changed_settings = True
    if _write_if_changed(os.path.join(data, "pg_hba.conf"), spec["hba"], spec.get("os_user"), check_mode=check):
        actions.append("write pg_hba.conf")
        changed_settings = True
    wait = ["-w", "-t", str(spec.get("wait_timeout", 60))]
    if status != 0:
        actions.append("start")
        if not check:
            _run(run_as + [pg_ctl, "start", "-D", data, "-l", spec["log_file"]] + wait, "pg_ctl start")
    elif changed_settings:
        # Only a cluster that was running before: one started now already has the new settings.
        actions.append("restart")
        if not check:
            _run(run_as + [pg_ctl, "restart", "-D", data, "-m", "fast", "-l", spec["log_file"]] + wait,
                 "pg_ctl restart")
    return actions


# ----------------------------------------------------------------------------------------------
# Background processes
# ----------------------------------------------------------------------------------------------

def _running_pid(pidfile, pattern):
    """The pid in pidfile when that process runs (not a zombie) with pattern in its command line, else None."""
    try:
        with open(pidfile) as f:
            pid = int(f.read().split()[0])
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, ValueError, IndexError):
        return None
    return pid if state != "Z" and re.search(pattern, cmdline) else None


def stop_processes(spec):
    """spec = {processes: [{label, pidfile, match, signal}], timeout, check_mode}. Stops each running one and
    waits until it has exited, then removes its pid file. Returns what it stopped (or would)."""
    stopped, check = [], bool(spec.get("check_mode"))
    for proc in spec["processes"]:
        pid = _running_pid(proc["pidfile"], proc["match"])
        if pid is not None:
            stopped.append(proc["label"])
            if check:
                continue
            try:
                os.kill(pid, getattr(signal, "SIG" + proc.get("signal", "TERM")))
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + float(spec.get("timeout", 60))
            while _running_pid(proc["pidfile"], proc["match"]) == pid:
                if time.monotonic() > deadline:
                    raise LabError("%s (pid %d) still runs %s s after SIG%s" % (
                        proc["label"], pid, spec.get("timeout", 60), proc.get("signal", "TERM")))
                time.sleep(0.05)
        if os.path.exists(proc["pidfile"]):
            if proc["label"] not in stopped:
                stopped.append(proc["label"] + " (pid file)")
            if not check:
                try:
                    os.unlink(proc["pidfile"])
                except FileNotFoundError:  # the process removed it as it exited
                    pass
    return stopped


# ----------------------------------------------------------------------------------------------
# Roles
# ----------------------------------------------------------------------------------------------

def _sql():
    from psycopg import sql
    return sql


def _role_exists(conn, name):
    return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone() is not None


def _is_member(conn, role, member, admin=False, usable=False):
    """Is member a direct member of role (with ADMIN OPTION; on 16+ with usable: INHERIT and SET)?"""
    cond = " AND m.admin_option" if admin else ""
    if usable and conn.info.server_version >= 160000:
        cond += " AND m.inherit_option AND m.set_option"
    return conn.execute(
        "SELECT 1 FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member "
        "WHERE r.rolname = %s AND u.rolname = %s" + cond, (role, member)).fetchone() is not None


def _current_verifier(conn, name):
    row = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (name,)).fetchone()
    return row[0] if row else None


class _Changes:
    def __init__(self, conn):
        self.conn = conn
        self.changed = False

    def run(self, stmt):
        self.conn.execute(stmt)
        self.changed = True


def rds_shape(conn, master, master_verifier, migration_user, migration_verifier):
    """As the operator (superuser): rds_superuser, rds_replication, the master and migration users.

    Returns True when something changed.
    """
    sql = _sql()
    c = _Changes(conn)
    version = conn.info.server_version
    for role in ("rds_replication", "rds_superuser"):
        if not _role_exists(conn, role):
            c.run(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
    wanted = list(RDS_SUPERUSER_ROLES) + (["pg_create_subscription"] if version >= 160000 else [])
    for role in wanted:
        if not _is_member(conn, role, "rds_superuser"):
            c.run(sql.SQL("GRANT {} TO rds_superuser").format(sql.Identifier(role)))
    if not _is_member(conn, "rds_replication", "rds_superuser", admin=True):
        c.run(sql.SQL("GRANT rds_replication TO rds_superuser WITH ADMIN OPTION"))
    has_set = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_parameter_acl WHERE parname = 'session_replication_role' "
        "AND has_parameter_privilege('rds_superuser', 'session_replication_role', 'SET'))").fetchone()[0]
    if not has_set:
        c.run(sql.SQL("GRANT SET ON PARAMETER session_replication_role TO rds_superuser"))
    for name, verifier, attrs, member_of in (
            (master, master_verifier, "LOGIN CREATEROLE CREATEDB REPLICATION", "rds_superuser"),
            (migration_user, migration_verifier, "LOGIN REPLICATION", "rds_replication")):
        if not name:
            continue
        ident = sql.Identifier(name)
        if not _role_exists(conn, name):
            c.run(sql.SQL("CREATE ROLE {} " + attrs + " PASSWORD {}").format(ident, sql.Literal(verifier)))
        else:
            row = conn.execute("SELECT rolsuper, rolcanlogin, rolcreaterole, rolcreatedb, rolreplication "
                               "FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
            want = (False, True, "CREATEROLE" in attrs, "CREATEDB" in attrs, True)
            if tuple(row) != want:
                c.run(sql.SQL("ALTER ROLE {} NOSUPERUSER " + attrs + (
                    "" if "CREATEROLE" in attrs else " NOCREATEROLE NOCREATEDB")).format(ident))
            if _current_verifier(conn, name) != verifier:
                c.run(sql.SQL("ALTER ROLE {} PASSWORD {}").format(ident, sql.Literal(verifier)))
        if not _is_member(conn, member_of, name):
            c.run(sql.SQL("GRANT {} TO {}").format(sql.Identifier(member_of), ident))
    return c.changed


def app_roles(conn, master, roles):
    """As the master user: the application's roles, created as a DBA creates them on RDS.

    roles: [{"name", "login": bool, "verifier": str or None, "member_of_master": bool}].
    On PostgreSQL 16+ the creator gets ADMIN OPTION on each role it creates, so the master can
    later ALTER it (the read_only freeze) and grant it; ``member_of_master`` also grants the role
    to the master (with SET on 16+), which is how the master acts as the objects' owner.
    """
    sql = _sql()
    c = _Changes(conn)
    for role in roles:
        # (A changed password is put back by sync_verifiers: the master cannot read pg_authid.)
        ident = sql.Identifier(role["name"])
        login = "LOGIN" if role.get("login") else "NOLOGIN"
        if not _role_exists(conn, role["name"]):
            if role.get("verifier"):
                c.run(sql.SQL("CREATE ROLE {} " + login + " PASSWORD {}").format(ident, sql.Literal(role["verifier"])))
            else:
                c.run(sql.SQL("CREATE ROLE {} " + login).format(ident))
        if role.get("member_of_master") and not _is_member(conn, role["name"], master, usable=True):
            if conn.info.server_version >= 160000:
                c.run(sql.SQL("GRANT {} TO {} WITH INHERIT TRUE, SET TRUE").format(ident, sql.Identifier(master)))
            else:
                c.run(sql.SQL("GRANT {} TO {}").format(ident, sql.Identifier(master)))
    return c.changed


def sync_verifiers(operator_conn, roles):
    """As the operator: put each role's verifier back when it differs (idempotent, no clear text)."""
    sql = _sql()
    c = _Changes(operator_conn)
    for role in roles:
        if role.get("verifier") and _role_exists(operator_conn, role["name"]) \
                and _current_verifier(operator_conn, role["name"]) != role["verifier"]:
            c.run(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role["name"]),
                                                              sql.Literal(role["verifier"])))
    return c.changed


def _connect(spec):
    import psycopg
    kwargs = dict(host=spec["host"], port=spec["port"], dbname=spec.get("dbname", "postgres"), user=spec["user"],
                  password=spec["password"], sslmode=spec.get("sslmode", "disable"),
                  application_name="pgshift lab")
    if spec.get("sslrootcert"):
        kwargs["sslrootcert"] = spec["sslrootcert"]
    return psycopg.connect(autocommit=True, **kwargs)


def apply_roles(spec):
    """One cluster: spec = {operator: conn, master: conn, migration_user, verifiers: {name: v}, app_roles: [...]}."""
    changed = False
    with _connect(spec["operator"]) as op:
        changed |= rds_shape(op, spec["master"]["user"], spec["verifiers"][spec["master"]["user"]],
                             spec["migration_user"], spec["verifiers"][spec["migration_user"]])
    if spec.get("app_roles"):
        with _connect(spec["master"]) as master:
            changed |= app_roles(master, spec["master"]["user"], spec["app_roles"])
        with _connect(spec["operator"]) as op:
            changed |= sync_verifiers(op, spec["app_roles"])
    return changed


def main(argv):
    if len(argv) >= 2 and argv[1] == "tls":
        changed = make_tls(argv[2], argv[3] if len(argv) > 3 else None)
    elif len(argv) >= 2 and argv[1] in ("cluster", "stop"):
        step, key = (setup_cluster, "actions") if argv[1] == "cluster" else (stop_processes, "stopped")
        try:
            done = step(json.load(sys.stdin))
        except (LabError, OSError) as exc:
            json.dump(dict(failed=True, msg=str(exc)), sys.stdout)
            sys.stdout.write("\n")
            return 1
        json.dump({"changed": bool(done), key: done}, sys.stdout)
        sys.stdout.write("\n")
        return 0
    elif len(argv) >= 2 and argv[1] == "roles":
        changed = False
        for spec in json.load(sys.stdin):
            changed |= apply_roles(spec)
    else:
        sys.stderr.write("usage: lab_shape.py tls DIR [OS_USER] | lab_shape.py cluster|stop|roles < spec.json\n")
        return 2
    json.dump(dict(changed=changed), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
