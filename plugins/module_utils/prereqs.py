# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Logical replication prerequisites: the decisions, as pure functions.

``evaluate(facts, opts)`` turns what the catalog says (module_utils/_pg/catalog.py)
into findings; ``plan_fixes(facts, opts)`` into the changes fix mode makes.
Nothing here talks to a database or an API, so unit tests call it directly.

A finding is a dict: id, severity (blocker, warning, info), object, detail,
remediation. ``evaluate`` also says, for every check it ran, whether it passed.

The module connects as the admin user: on RDS and Aurora the master user, which is no
superuser (a member of rds_superuser, CREATEROLE, CREATEDB). ``facts["admin"]`` says what
it may do (catalog.admin_facts); fix mode plans only what it may, and every finding it
cannot fix names the exact statement (SQL with quoted names, or the AWS CLI command) and
who can run it. Publications, replication slots and subscriptions are created by the
admin user; a subscription's connection string logs in as the migration user, which
needs replication and SELECT on the source, and nothing else.
"""

from __future__ import annotations

import math
import shlex

from ansible_collections.pgshift.aurora.plugins.module_utils import scram
from ansible_collections.pgshift.aurora.plugins.module_utils.scope import qualified, quote_ident, split_qualified

try:
    from psycopg import sql
except ImportError:  # pragma: no cover - the module reports the missing library
    sql = None

SEVERITIES = ("blocker", "warning", "info")
SEVERITY_RANK = {"blocker": 0, "warning": 1, "info": 2, "pass": 3}

# DMS maps these to LOBs (NCLOB/BLOB); limited LOB mode truncates beyond LobMaxSize.
LOB_BASE_TYPES = ("text", "bytea", "json", "jsonb", "xml")
DMS_DEFAULT_LOB_MAX_BYTES = 32 * 1024
DMS_FULL_LOB_ABOVE_BYTES = 100 * 1024 * 1024
DMS_MIN_WAL_SENDER_TIMEOUT_MS = 10000

SOURCE_CHECKS = (
    "server_version", "wal_level", "rds_logical_replication", "max_replication_slots", "max_wal_senders",
    "max_slot_wal_keep_size", "wal_sender_timeout", "migration_user_missing", "replication_privilege",
    "schema_usage", "select_privilege", "create_privilege", "admin_replication", "owner_roles",
    "subscription_privilege", "no_replica_identity",
    "replica_identity_full", "inheritance_children", "partitioned_tables", "unlogged_tables", "large_objects",
    "materialized_views", "sequences", "ddl_not_replicated", "foreign_tables", "lob_columns",
    "generated_columns", "user_defined_types", "triggers", "triggers_fire_on_replica", "rules",
    "event_triggers", "extensions", "long_running_transactions", "prepared_transactions",
    "inactive_replication_slots", "database_size",
)
TARGET_CHECKS = (
    "server_version", "version_downgrade", "wal_level", "max_replication_slots", "max_wal_senders",
    "max_worker_processes", "max_logical_replication_workers", "max_sync_workers_per_subscription",
    "migration_user_missing", "replication_privilege", "create_privilege", "subscription_privilege",
    "admin_replication", "owner_roles", "replication_role_setting",
    "extension_unavailable", "encoding_mismatch", "collation_mismatch", "target_not_empty",
    "triggers_fire_on_replica", "rules", "event_triggers", "long_running_transactions",
    "prepared_transactions", "inactive_replication_slots", "database_size",
)


def finding(check_id, severity, obj, detail, remediation=""):
    if severity not in SEVERITIES:
        raise ValueError("unknown severity %r" % severity)
    return dict(id=check_id, severity=severity, object=obj, detail=detail, remediation=remediation)


def sort_findings(findings):
    return sorted(findings, key=lambda f: (SEVERITY_RANK[f["severity"]], f["id"], str(f["object"])))


def human_bytes(n):
    if n is None:
        return "unknown"
    n = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return ("%d %s" % (n, unit)) if unit == "B" else ("%.1f %s" % (n, unit))
        n /= 1024.0
    return "%.1f TB" % n


def setting_int(facts, name):
    s = facts["settings"].get(name)
    if s is None or s["setting"] in (None, ""):
        return None
    try:
        return int(s["setting"])
    except ValueError:
        return None


def configured_value(facts, name):
    """The value PostgreSQL will use after a restart (files win over the live value)."""
    file_value = facts.get("file_settings", {}).get(name)
    if file_value is not None:
        return str(file_value)
    s = facts["settings"].get(name)
    return None if s is None else str(s["setting"])


def major(version_num):
    return version_num // 10000 if version_num >= 100000 else version_num // 100


def sql_text(statement):
    """The text of a statement built with psycopg.sql, as findings, `queries` and reports show it: the
    very statement that runs (or that a person should run), every identifier quoted."""
    return statement.as_string(None)


def q(name):
    """A role, schema or database name in a sentence, as quote_ident() writes it."""
    return quote_ident(name)


def grant_role(granted, member, version_num=0, options=False):
    """GRANT granted TO member; from 16, with options, also WITH INHERIT TRUE, SET TRUE (act as it and use it)."""
    if options and version_num >= 160000:
        return sql.SQL("GRANT {} TO {} WITH INHERIT TRUE, SET TRUE").format(
            sql.Identifier(granted), sql.Identifier(member))
    return sql.SQL("GRANT {} TO {}").format(sql.Identifier(granted), sql.Identifier(member))


def is_managed(facts):
    """A real RDS or Aurora server (its rds.* settings exist), not merely one shaped like it (the lab):
    only there does membership in rds_replication confer replication, and only there are settings
    changed through a parameter group."""
    server = facts["server"]
    return bool(server.get("is_aurora") or "rds.logical_replication" in facts["settings"])


def user_has_replication(role, managed=True):
    """REPLICATION, a superuser, or (on real RDS/Aurora) membership in rds_replication / rds_superuser."""
    if not role:
        return False
    if role["superuser"] or role["replication"]:
        return True
    return bool(managed and ("rds_replication" in role["member_of"] or "rds_superuser" in role["member_of"]))


def user_is_admin(role):
    return bool(role and (role["superuser"] or "rds_superuser" in role["member_of"]))


# --- the connected user: the admin (RDS's master user), and what it may do -----------------------

def admin_name(facts):
    return facts["admin"]["name"]


def _admin_role(facts, name):
    return facts["admin"]["roles"].get(name)


def admin_can_act_as(facts, owner):
    """The admin can SET ROLE to owner and has its privileges (it owns what owner owns)."""
    admin = facts["admin"]
    if admin["superuser"] or owner == admin["name"]:
        return True
    r = _admin_role(facts, owner)
    return bool(r and r["usage"] and r["set"])


def admin_holds(facts, role):
    """The admin has the privileges of role (a member with INHERIT), e.g. pg_create_subscription."""
    admin = facts["admin"]
    if admin["superuser"]:
        return True
    r = _admin_role(facts, role)
    return bool(r and r["usage"])


def admin_can_grant_role(facts, role):
    """The admin may GRANT role TO someone: ADMIN OPTION on it (through any membership), or before 16
    CREATEROLE for a role that is not a superuser; a superuser may grant anything."""
    admin = facts["admin"]
    if admin["superuser"]:
        return True
    r = _admin_role(facts, role)
    if r is None or r["superuser"]:
        return False
    if facts["server"]["version_num"] < 160000 and admin["createrole"]:
        return True
    return bool(r["admin"])


def admin_has_replication(facts):
    admin = facts["admin"]
    if admin["superuser"] or admin["replication"]:
        return True
    return is_managed(facts) and (admin_holds(facts, "rds_replication") or admin_holds(facts, "rds_superuser"))


def admin_can_create_role(facts):
    admin = facts["admin"]
    return bool(admin["superuser"] or admin["createrole"])


def admin_can_confer_replication(facts, user, exists):
    """Whether the admin may give user the REPLICATION attribute (CREATE or ALTER ROLE ... REPLICATION):
    a superuser; from 16 a CREATEROLE role that has REPLICATION itself and, for an existing role,
    ADMIN OPTION on it (the role's creator has it)."""
    admin = facts["admin"]
    if admin["superuser"]:
        return True
    if facts["server"]["version_num"] < 160000 or not (admin["createrole"] and admin["replication"]):
        return False
    if not exists:
        return True
    r = _admin_role(facts, user)
    return bool(r and r["admin"])


def who_can_grant(facts, role):
    """Who can run a GRANT of role, for a remediation."""
    r = _admin_role(facts, role) or {}
    holders = [h for h in r.get("admin_holders") or [] if h != facts["admin"]["name"]]
    text = "a role with ADMIN OPTION on %s" % q(role)
    if holders:
        text += " (held by %s)" % _list(q(h) for h in holders)
    if r.get("superuser"):
        text = "a superuser (%s is a superuser role)" % q(role)
    return text


def physical_tables(tables):
    """Relations that hold rows and are replicated (tables, leaves, inheritance parents and children)."""
    return [t for t in tables if t["relkind"] == "r" and t["persistence"] != "t"]


def replicated_tables(tables):
    return [t for t in physical_tables(tables) if t["persistence"] == "p"]


def lacks_replica_identity(t):
    if t["replident"] == "n":
        return True
    if t["replident"] == "d":
        return not t["has_pk"]
    if t["replident"] == "i":
        return not t["has_replident_index"]
    return False


def est_rows(t):
    if t.get("est_rows") is not None:
        return t["est_rows"]
    return t.get("live_rows") or 0


def lob_columns(facts, tables):
    """LOB columns per table root: [{'table', 'column', 'type', 'max_bytes', 'how'}], largest first.

    Only tables that hold rows count (not materialized views, foreign tables or parents).
    """
    by_oid = {t["oid"]: t for t in physical_tables(tables)}
    grouped = {}
    for col in facts.get("columns", []):
        t = by_oid.get(col["oid"])
        if t is None or not is_lob(col):
            continue
        key = (t["root"], col["name"])
        sample = facts.get("lob_samples", {}).get("%s/%s" % (col["oid"], col["name"]))
        entry = grouped.setdefault(key, dict(table=t["root"], column=col["name"], type=col["type"],
                                             max_bytes=None, how=[]))
        if sample:
            value, how = sample
            if value is not None and (entry["max_bytes"] is None or value > entry["max_bytes"]):
                entry["max_bytes"] = value
            if how not in entry["how"]:
                entry["how"].append(how)
    return sorted(grouped.values(), key=lambda e: (-(e["max_bytes"] or 0), e["table"], e["column"]))


def is_lob(col):
    if col.get("generated") == "s":
        return False
    if col["category"] == "A":
        return True
    if col["base_type"] in LOB_BASE_TYPES:
        return True
    return col["base_type"] == "varchar" and col.get("typmod", -1) == -1


def recommend_lob_mode(lobs):
    """DMS LOB settings that truncate nothing, from the largest values sampled."""
    if not lobs:
        return dict(mode="none", lob_max_size_kb=0, largest_bytes=0,
                    reason="no LOB columns: limited LOB mode with the default size is enough")
    largest = max((entry["max_bytes"] or 0) for entry in lobs)
    if largest > DMS_FULL_LOB_ABOVE_BYTES:
        return dict(mode="full", lob_max_size_kb=0, largest_bytes=largest,
                    reason="values up to %s: use full LOB mode" % human_bytes(largest))
    size_kb = max(32, int(math.ceil(largest * 1.25 / 1024.0)))
    return dict(mode="limited", lob_max_size_kb=size_kb, largest_bytes=largest,
                reason="largest value sampled %s: limited LOB mode with LobMaxSize %d KB truncates nothing seen"
                % (human_bytes(largest), size_kb))


def sizes(facts, tables, top=10):
    """Database size, the largest tables (by root) with rows and write rates, for stream planning."""
    roots = {}
    for t in physical_tables(tables):
        entry = roots.setdefault(t["root"], dict(table=t["root"], bytes=0, rows=0, writes_per_second=0.0, parts=0))
        entry["bytes"] += t.get("bytes") or 0
        entry["rows"] += est_rows(t)
        entry["writes_per_second"] += float(facts.get("write_rates", {}).get(str(t["oid"]), 0.0))
        entry["parts"] += 1
    ordered = sorted(roots.values(), key=lambda e: (-e["bytes"], e["table"]))
    for e in ordered:
        e["writes_per_second"] = round(e["writes_per_second"], 2)
    return dict(
        database_bytes=(facts.get("database") or {}).get("size_bytes"),
        migrated_bytes=sum(e["bytes"] for e in ordered),
        migrated_rows=sum(e["rows"] for e in ordered),
        writes_per_second=round(sum(e["writes_per_second"] for e in ordered), 2),
        tables=len(physical_tables(tables)),
        largest=ordered[:top],
    )


def vcpu_stream_cap(vcpus):
    """The most streams `vcpus` cores carry (vcpus: the fewer of the source's and the target's; None: unknown, no
    cap): one stream per two vCPUs, at least one. Every stream costs the source a decoder that reads all the WAL
    and the target an apply worker that took up to 0.55 core in bench/cdc's ceiling runs; on 2 vCPUs a second
    stream competes with the first and with the application for the same cores."""
    if not vcpus:
        return None
    return max(1, int(vcpus) // 2)


def suggest_streams(size_summary, bytes_per_stream=50 * 1024 ** 3, writes_per_stream=2500.0, max_streams=8,
                    vcpus=None):
    """How many parallel streams: enough that none carries over ~50 GB or ~2500 row writes/s.

    Never more streams than tables, never fewer than one, never more than the vCPUs carry (vcpu_stream_cap). The
    write threshold comes from bench/cdc's ceiling runs: one stream applied 4,000-8,700 rows/s on a 2-core
    machine it shared with the source and the load, and fell behind first at about 5,000 rows/s with 13 indexes
    per row on the target; every stream also costs the source a decoder that reads all the WAL. 2500 is half
    that worst case.
    """
    by_bytes = int(math.ceil((size_summary.get("migrated_bytes") or 0) / float(bytes_per_stream)))
    by_writes = int(math.ceil((size_summary.get("writes_per_second") or 0) / float(writes_per_stream)))
    wanted = max(1, by_bytes, by_writes)
    cap = vcpu_stream_cap(vcpus) or max_streams
    return max(1, min(wanted, max_streams, cap, max(1, size_summary.get("tables") or 1)))


def vcpus_problems(vcpus):
    """What is wrong with a vcpus option ([] when it is unset or a count from 1)."""
    if vcpus is not None and vcpus < 1:
        return ["vcpus must be the instances' vCPU count, from 1 (got %d); leave it unset when unknown" % vcpus]
    return []


def streams_over_vcpus(streams, vcpus):
    """A warning when `streams` is more than `vcpus` carry (vcpu_stream_cap), else None."""
    cap = vcpu_stream_cap(vcpus)
    if cap is None or streams <= cap:
        return None
    return ("%d streams on %d vCPUs (the fewer of the source's and the target's): each stream takes a WAL decoder "
            "on the source and an apply worker on the target, and more than %d compete for the same cores with "
            "the application; plan %d stream(s), or give the instances more vCPUs" % (streams, vcpus, cap, cap))


def _list(items, limit=12):
    items = list(items)
    text = ", ".join(str(i) for i in items[:limit])
    if len(items) > limit:
        text += " and %d more" % (len(items) - limit)
    return text


def _check_capacity(found, check_id, facts, name, hard, wanted, what, remediation):
    """remediation: value -> the sentence that sets name to value."""
    value = setting_int(facts, name)
    if value is None:
        return
    configured = configured_value(facts, name)
    pending = ""
    if configured is not None and configured != str(value):
        pending = " (configured %s, pending a restart)" % configured
    if value < hard:
        found.append(finding(check_id, "blocker", name, "%s = %d%s but %s need at least %d" % (
            name, value, pending, what, hard), remediation(wanted)))
    elif value < wanted:
        found.append(finding(check_id, "warning", name, "%s = %d%s leaves no headroom: %s want %d" % (
            name, value, pending, what, wanted), remediation(wanted)))


def aws_parameter_commands(role, aws, parameters, version_num):
    """The AWS CLI commands that set parameters ({name: value}) in the parameter group and reboot.

    role source: the RDS instance's DB parameter group; role target: the Aurora cluster's DB cluster
    parameter group (when aurora_cluster_id is known) and a reboot of the writer instance.
    aws: instance_id, parameter_group, cluster_id, region (any may be None: a <placeholder> then).
    """
    aws = aws or {}
    region = " --region %s" % shlex.quote(aws["region"]) if aws.get("region") else ""
    # Setting names and values are known words and numbers: the double quotes are all the shell needs.
    values = " ".join('"ParameterName=%s,ParameterValue=%s,ApplyMethod=pending-reboot"' % (name, value)
                      for name, value in sorted(parameters.items()))
    instance = shlex.quote(aws["instance_id"]) if aws.get("instance_id") else "<db-instance-id>"
    cluster = role == "target" and aws.get("cluster_id")
    if cluster:
        group = shlex.quote(aws["parameter_group"]) if aws.get("parameter_group") else "<db-cluster-parameter-group>"
        modify = "aws rds modify-db-cluster-parameter-group --db-cluster-parameter-group-name %s --parameters %s%s" % (
            group, values, region)
        find = "aws rds describe-db-clusters --db-cluster-identifier %s --query " \
               "'DBClusters[0].DBClusterParameterGroup'%s" % (shlex.quote(aws["cluster_id"]), region)
        reboot = "aws rds reboot-db-instance --db-instance-identifier %s%s (the writer, then each reader)" % (
            instance, region)
    else:
        group = shlex.quote(aws["parameter_group"]) if aws.get("parameter_group") else "<db-parameter-group>"
        modify = "aws rds modify-db-parameter-group --db-parameter-group-name %s --parameters %s%s" % (
            group, values, region)
        find = "aws rds describe-db-instances --db-instance-identifier %s --query " \
               "'DBInstances[0].DBParameterGroups[0].DBParameterGroupName'%s" % (instance, region)
        reboot = "aws rds reboot-db-instance --db-instance-identifier %s%s" % (instance, region)
    text = "in the %s parameter group: %s, then reboot: %s" % ("DB cluster" if cluster else "DB", modify, reboot)
    if (aws.get("parameter_group") or "").startswith("default."):
        family = "aurora-postgresql%d" % major(version_num) if cluster else "postgres%d" % major(version_num)
        kind = "cluster-" if cluster else ""
        attach = ("aws rds modify-db-cluster --db-cluster-identifier %s --db-cluster-parameter-group-name "
                  "<custom-group>%s --apply-immediately" % (shlex.quote(aws["cluster_id"]), region) if cluster else
                  "aws rds modify-db-instance --db-instance-identifier %s --db-parameter-group-name <custom-group>%s "
                  "--apply-immediately" % (instance, region))
        return ("%s is a default parameter group, which cannot be changed: create a custom one (aws rds create-db-%s"
                "parameter-group --db-%sparameter-group-name <custom-group> --db-parameter-group-family %s "
                "--description pgshift%s), attach it (%s), then %s" % (
                    aws["parameter_group"], kind, kind, family, region, attach,
                    text.replace(shlex.quote(aws["parameter_group"]), "<custom-group>", 1)))
    if not aws.get("parameter_group"):
        family = "aurora-postgresql%d" % major(version_num) if cluster else "postgres%d" % major(version_num)
        text += " (the group is the one attached: %s; a default.* group cannot be changed: create a custom one " \
                "of family %s and attach it first)" % (find, family)
    return text


def _by_parameter_group(facts, opts):
    """Whether settings are changed through a parameter group: real RDS/Aurora, or an instance named."""
    aws = opts.get("aws") or {}
    return bool(is_managed(facts) or aws.get("instance_id") or aws.get("cluster_id"))


def _setting_remediation(facts, opts, name):
    """value -> how to set name to value on this server."""
    if _by_parameter_group(facts, opts):
        return lambda value: aws_parameter_commands(opts["role"], opts.get("aws"), {name: value},
                                                    facts["server"]["version_num"])
    return lambda value: "%s; then restart PostgreSQL%s" % (
        sql_text(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(str(value)))),
        _alter_system_who(facts, name))


def _alter_system_who(facts, name):
    admin = facts.get("admin") or {}
    if admin.get("superuser") or (admin.get("alter_system") or {}).get(name):
        return ""
    if facts["server"].get("is_rds"):
        return " (as the server's operator, a superuser: the admin user %s may not, and this server has no " \
               "parameter group)" % q(admin.get("name") or "?")
    return " (as a superuser, or after %s)" % sql_text(sql.SQL("GRANT ALTER SYSTEM ON PARAMETER {} TO {}").format(
        sql.Identifier(name), sql.Identifier(admin.get("name") or "?")))


def needed_slots(facts, opts):
    in_use = len(facts.get("slots", []))
    return in_use + opts["planned_streams"], in_use + opts["planned_streams"] + opts["reserved_slots"]


def needed_senders(facts, opts):
    in_use = facts.get("wal_senders_in_use", 0)
    return in_use + opts["planned_streams"], in_use + opts["planned_streams"] + opts["reserved_slots"]


def needed_workers(facts, opts):
    sync = max(2, setting_int(facts, "max_sync_workers_per_subscription") or 2)
    apply_workers = opts["planned_streams"]
    return apply_workers, apply_workers + sync


def evaluate(facts, opts):
    """All findings for one database. opts: role, engine, planned_streams, reserved_slots,
    long_transaction_seconds, migration_user, rds (bool), source (dict or None), tables (in scope),
    aws (instance_id, parameter_group, cluster_id, region: named in the AWS CLI remediations)."""
    role = opts["role"]
    tables = opts["tables"]
    found = []
    ran = SOURCE_CHECKS if role == "source" else TARGET_CHECKS
    _check_server(found, facts, opts)
    _check_settings(found, facts, opts)
    _check_admin(found, facts, opts)
    _check_user(found, facts, opts)
    if role == "source":
        _check_source_objects(found, facts, opts, tables)
    else:
        _check_target_objects(found, facts, opts, tables)
    _check_triggers(found, facts, opts, tables)
    _check_activity(found, facts, opts)
    summary = sizes(facts, tables)
    found.append(finding("database_size", "info", (facts.get("database") or {}).get("name"),
                         "database %s; %d tables to migrate holding %s and ~%d rows; %.1f writes/s" % (
                             human_bytes(summary["database_bytes"]), summary["tables"],
                             human_bytes(summary["migrated_bytes"]), summary["migrated_rows"],
                             summary["writes_per_second"])))
    found = sort_findings(found)
    checks = {}
    for check_id in ran:
        worst = "pass"
        for f in found:
            if f["id"] == check_id and SEVERITY_RANK[f["severity"]] < SEVERITY_RANK[worst]:
                worst = f["severity"]
        checks[check_id] = worst
    return found, checks


def _check_server(found, facts, opts):
    server = facts["server"]
    version_num = server["version_num"]
    minimum = 100000 if opts["engine"] == "native" else 90400
    shaped = ""
    if server.get("is_aurora"):
        kind = "Aurora PostgreSQL"
    elif server.get("is_rds") and is_managed(facts):
        kind = "RDS for PostgreSQL"
    else:
        kind = "PostgreSQL"
        if server.get("is_rds"):
            shaped = " (shaped like RDS: rds_superuser exists, the rds.* settings do not)"
    if version_num < minimum:
        found.append(finding("server_version", "blocker", "server", "%s %s is too old for the %s engine" % (
            kind, server["version_short"], opts["engine"]),
            "upgrade to PostgreSQL %s or later first" % ("10" if opts["engine"] == "native" else "9.4")))
    else:
        found.append(finding("server_version", "info", "server", "%s %s%s" % (kind, server["version_short"], shaped)))
    source = opts.get("source")
    if opts["role"] == "target" and source and source.get("version_num"):
        if major(version_num) < major(source["version_num"]):
            found.append(finding("version_downgrade", "blocker", "server",
                                 "the target runs major %d, older than the source's %d" % (
                                     major(version_num), major(source["version_num"])),
                                 "provision the target on major %d or later" % major(source["version_num"])))


def logical_replication_remediation(facts, opts):
    """How to turn logical replication on, for this server."""
    if _by_parameter_group(facts, opts):
        return aws_parameter_commands(opts["role"], opts.get("aws"), {"rds.logical_replication": "1"},
                                      facts["server"]["version_num"])
    return "ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL%s" % _alter_system_who(facts, "wal_level")


def _check_settings(found, facts, opts):
    role = opts["role"]
    wal_level = (facts["settings"].get("wal_level") or {}).get("setting")
    rds_logical = facts["settings"].get("rds.logical_replication")
    severity_wal = "blocker" if role == "source" else "warning"
    why = "logical decoding" if role == "source" else "reverse replication (the rollback path)"
    if rds_logical is not None and opts.get("rds"):
        if rds_logical["setting"] != "on":
            found.append(finding("rds_logical_replication", severity_wal, "rds.logical_replication",
                                 "rds.logical_replication is off: %s needs it" % why,
                                 logical_replication_remediation(facts, opts)
                                 + (" (pg_logical_prereqs state=present with rds_instance_id changes the group)"
                                    if role == "source" else "")))
    elif wal_level != "logical":
        configured = configured_value(facts, "wal_level")
        pending = " (configured %s, pending a restart)" % configured if configured and configured != wal_level else ""
        found.append(finding("wal_level", severity_wal, "wal_level",
                             "wal_level = %s%s: %s needs logical" % (wal_level, pending, why),
                             logical_replication_remediation(facts, opts)))
    hard, wanted = needed_slots(facts, opts)
    if role == "target":
        hard, wanted = 0, opts["planned_streams"] + opts["reserved_slots"]
    what = "%d slots in use plus %d planned streams" % (len(facts.get("slots", [])), opts["planned_streams"]) \
        if role == "source" else "reverse replication for %d streams" % opts["planned_streams"]
    _check_capacity(found, "max_replication_slots", facts, "max_replication_slots", hard, wanted, what,
                    _setting_remediation(facts, opts, "max_replication_slots"))
    hard, wanted = needed_senders(facts, opts)
    if role == "target":
        hard, wanted = 0, opts["planned_streams"] + opts["reserved_slots"]
    senders_what = "%d senders in use plus %d planned streams" % (
        facts.get("wal_senders_in_use", 0), opts["planned_streams"])
    _check_capacity(found, "max_wal_senders", facts, "max_wal_senders", hard, wanted, senders_what,
                    _setting_remediation(facts, opts, "max_wal_senders"))
    if role == "target":
        apply_workers, wanted = needed_workers(facts, opts)
        _check_capacity(found, "max_logical_replication_workers", facts, "max_logical_replication_workers",
                        apply_workers, wanted, "%d apply workers plus table sync workers" % apply_workers,
                        _setting_remediation(facts, opts, "max_logical_replication_workers"))
        _check_capacity(found, "max_worker_processes", facts, "max_worker_processes", apply_workers + 1,
                        wanted + 4, "the replication launcher, %d apply and the sync workers" % apply_workers,
                        _setting_remediation(facts, opts, "max_worker_processes"))
        sync = setting_int(facts, "max_sync_workers_per_subscription")
        if sync is not None and sync < 2:
            found.append(finding("max_sync_workers_per_subscription", "warning", "max_sync_workers_per_subscription",
                                 "max_sync_workers_per_subscription = %d: tables are copied %s" % (
                                     sync, "one at a time" if sync == 1 else "never (no sync worker)"),
                                 _setting_remediation(facts, opts, "max_sync_workers_per_subscription")(4)))
        return
    keep = setting_int(facts, "max_slot_wal_keep_size")
    if keep is not None and keep < 0:
        found.append(finding("max_slot_wal_keep_size", "warning", "max_slot_wal_keep_size",
                             "max_slot_wal_keep_size = -1: a stalled slot keeps WAL without limit until the disk "
                             "is full", "cap it below the free WAL disk space (e.g. 20%) and watch slot lag; "
                             "pgshift's cleanup drops the migration's slots"))
    timeout = setting_int(facts, "wal_sender_timeout")
    if timeout is not None:
        if opts["engine"] == "dms" and 0 < timeout < DMS_MIN_WAL_SENDER_TIMEOUT_MS:
            found.append(finding("wal_sender_timeout", "blocker", "wal_sender_timeout",
                                 "wal_sender_timeout = %d ms: DMS CDC fails below %d ms" % (
                                     timeout, DMS_MIN_WAL_SENDER_TIMEOUT_MS),
                                 "set wal_sender_timeout to 0 or at least 10000"))
        elif opts["engine"] == "native" and timeout == 0:
            found.append(finding("wal_sender_timeout", "warning", "wal_sender_timeout",
                                 "wal_sender_timeout = 0: a dead subscriber keeps its walsender (and slot) busy",
                                 "set wal_sender_timeout to 60s"))
        elif 0 < timeout < 10000:
            found.append(finding("wal_sender_timeout", "warning", "wal_sender_timeout",
                                 "wal_sender_timeout = %d ms is short: busy networks drop replication" % timeout,
                                 "set wal_sender_timeout to 60s"))


# --- the admin user (RDS's master user): what the phases do as it ------------------------------------

def replication_remediation(facts, name):
    """The statements that let role name open replication connections on this server, and who runs them."""
    steps = []
    if facts["server"].get("is_rds"):
        steps.append("%s (as %s)" % (sql_text(grant_role("rds_replication", name)),
                                     who_can_grant(facts, "rds_replication")))
    if not is_managed(facts):
        stmt = sql_text(sql.SQL("ALTER ROLE {} REPLICATION").format(sql.Identifier(name)))
        if facts["server"].get("is_rds"):
            stmt += " (rds_replication confers replication on RDS and Aurora only; on this server the REPLICATION " \
                    "attribute does: as a superuser, or from PostgreSQL 16 a CREATEROLE role that has REPLICATION " \
                    "and ADMIN OPTION on %s)" % q(name)
        else:
            stmt += " (as a superuser, or from PostgreSQL 16 a CREATEROLE role that has REPLICATION and ADMIN " \
                    "OPTION on %s)" % q(name)
        steps.append(stmt)
    return "; ".join(steps)


def _check_admin(found, facts, opts):
    """What the phases do as the admin: replication slots, publications as the objects' owners,
    subscriptions (the forward stream on the target, the rollback path on the source)."""
    admin = facts["admin"]
    role = opts["role"]
    if not admin_has_replication(facts) and (role == "target" or opts["engine"] == "native"):
        found.append(finding(
            "admin_replication", "blocker" if role == "source" else "warning", admin["name"],
            "the admin user %s can open no replication connection (%s): it creates %s" % (
                q(admin["name"]), "neither REPLICATION nor rds_replication" if is_managed(facts)
                else "no REPLICATION attribute", "the migration's replication slots" if role == "source"
                else "the rollback path's slot on the target"),
            replication_remediation(facts, admin["name"])))
    if opts["engine"] == "native" and not admin["superuser"] and not admin["create_on_database"]:
        db = facts["database"]
        found.append(finding(
            "create_privilege", "blocker", admin["name"],
            "the admin user %s lacks CREATE on database %s: it cannot %s" % (
                q(admin["name"]), q(db["name"]), "create the publications" if role == "source"
                else "create the subscriptions and schemas"),
            "%s (as the database's owner %s)" % (sql_text(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
                sql.Identifier(db["name"]), sql.Identifier(admin["name"]))), q(db.get("owner") or "?"))))
    _check_owner_roles(found, facts, opts)
    _check_subscription_privilege(found, facts, opts)


def owner_role(facts, name):
    """The role to act as for what name owns: pg_database_owner (public's owner from 15) is the database's owner."""
    if name == "pg_database_owner":
        return (facts.get("database") or {}).get("owner") or name
    return name


def owners_to_check(facts, opts):
    """{owner: {'superuser': bool or None, 'kinds': {kind: count}, 'here': bool}} on this side: the owners of
    the migrated objects here, and on the target also the source's (the schema copy makes them owners)."""
    owners = {}
    for o in facts.get("owners", []):
        name = owner_role(facts, o["owner"])
        entry = owners.setdefault(name, dict(superuser=o["superuser"], kinds={}, here=True))
        entry["kinds"][o["kind"]] = entry["kinds"].get(o["kind"], 0) + o["count"]
    if opts["role"] == "target":
        for name in (opts.get("source") or {}).get("owners") or []:
            name = owner_role(facts, name)
            if name not in owners:
                r = _admin_role(facts, name)
                owners[name] = dict(superuser=r["superuser"] if r else None, kinds={}, here=r is not None)
    return owners


def _what_owned(entry):
    if not entry["kinds"]:
        return "on the source"
    return ", ".join("%d %s%s" % (n, kind, "" if n == 1 else "s") for kind, n in sorted(entry["kinds"].items()))


def owner_plan(facts, opts):
    """Each owner the admin cannot act as yet, classified: [(owner, status, entry)], status one of
    missing (a role to create), superuser (owned by a superuser), grantable (the admin may grant it
    to itself), blocked (someone else must)."""
    result = []
    for owner, entry in sorted(owners_to_check(facts, opts).items()):
        if admin_can_act_as(facts, owner):
            continue
        if not entry["here"]:
            result.append((owner, "missing", entry))
        elif entry["superuser"]:
            result.append((owner, "superuser", entry))
        elif admin_can_grant_role(facts, owner):
            result.append((owner, "grantable", entry))
        else:
            result.append((owner, "blocked", entry))
    return result


def _check_owner_roles(found, facts, opts):
    admin = facts["admin"]
    role = opts["role"]
    version = facts["server"]["version_num"]
    plan = owner_plan(facts, opts)
    why = ("it creates the publications and changes replica identities as the owner of the tables"
           if role == "source" else "the schema copy gives the objects to their owners and the subscriptions "
           "apply changes as them")
    by_status = {}
    for owner, status, entry in plan:
        by_status.setdefault(status, []).append((owner, entry))

    def listed(items):
        return _list("%s (%s)" % (q(o), _what_owned(e)) for o, e in items)

    def grants(items):
        return "; ".join(sql_text(grant_role(o, admin["name"], version, options=True)) for o, entry in items)
    if by_status.get("blocked"):
        items = by_status["blocked"]
        found.append(finding(
            "owner_roles", "blocker", _list(o for o, entry in items),
            "the admin user %s cannot act as %s: %s" % (q(admin["name"]), listed(items), why),
            "; ".join("%s (as %s)" % (sql_text(grant_role(o, admin["name"], version, options=True)),
                                      who_can_grant(facts, o)) for o, entry in items)))
    if by_status.get("superuser"):
        items = by_status["superuser"]
        found.append(finding(
            "owner_roles", "blocker", _list(o for o, entry in items),
            "migrated objects belong to superuser role(s) %s: the admin user %s can never act as a superuser" % (
                listed(items), q(admin["name"])),
            "as a superuser, give each migrated object they own to the application's owner role "
            "(ALTER TABLE / SCHEMA / SEQUENCE / TYPE / FUNCTION ... OWNER TO <owner role>)"))
    if by_status.get("grantable"):
        items = by_status["grantable"]
        if role == "source":
            found.append(finding(
                "owner_roles", "blocker" if opts["engine"] == "native" else "warning", _list(o for o, entry in items),
                "the admin user %s is not a member of %s: %s" % (q(admin["name"]), listed(items), why),
                "prepare_source.yml runs it (%s holds ADMIN OPTION on them): %s" % (q(admin["name"]), grants(items))))
        else:
            found.append(finding(
                "owner_roles", "info", _list(o for o, entry in items),
                "the admin user %s is not a member of %s yet; it holds ADMIN OPTION on them" % (
                    q(admin["name"]), listed(items)),
                "the schema copy runs it: %s" % grants(items)))
    if by_status.get("missing"):
        items = by_status["missing"]
        creates = "; ".join(sql_text(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(o))) for o, entry in items)
        if admin_can_create_role(facts):
            found.append(finding(
                "owner_roles", "info", _list(o for o, entry in items),
                "owner role(s) %s of the source do not exist on the target yet" % _list(q(o) for o, entry in items),
                "the schema copy creates them as %s (CREATEROLE) and makes it a member: %s" % (
                    q(admin["name"]), creates)))
        else:
            found.append(finding(
                "owner_roles", "blocker", _list(o for o, entry in items),
                "owner role(s) %s of the source do not exist on the target, and the admin user %s has no "
                "CREATEROLE to create them" % (_list(q(o) for o, entry in items), q(admin["name"])),
                "as a role with CREATEROLE: %s; then %s" % (creates, grants(items))))


def _check_subscription_privilege(found, facts, opts):
    """Subscriptions are created by the admin user (their connection string logs in as the migration user):
    on the target for the migration, on the source for the rollback path."""
    admin = facts["admin"]
    if admin["superuser"]:
        return
    version = facts["server"]["version_num"]
    m = q(admin["name"])
    if opts["role"] == "target":
        severity = "blocker" if opts["engine"] == "native" else "info"
        if version < 160000:
            found.append(finding(
                "subscription_privilege", severity, admin["name"],
                "before PostgreSQL 16 only a superuser can create a subscription, and the admin user %s is not one "
                "(RDS and Aurora give no superuser)" % m,
                "run the target on PostgreSQL 16 or later (pg_create_subscription), or use migration_engine: dms"))
        elif not admin_holds(facts, "pg_create_subscription"):
            found.append(finding(
                "subscription_privilege", severity, admin["name"],
                "the admin user %s lacks pg_create_subscription: it creates the subscriptions" % m,
                "%s (as %s)" % (sql_text(grant_role("pg_create_subscription", admin["name"])),
                                who_can_grant(facts, "pg_create_subscription"))))
        return
    if version < 160000:
        found.append(finding(
            "subscription_privilege", "warning", admin["name"],
            "the rollback path will not work: it subscribes on the source to the target, and on PostgreSQL %d only "
            "a superuser can create a subscription (pg_create_subscription came with 16); the admin user %s is not "
            "one, and RDS gives no superuser" % (major(version), m),
            "upgrade the source to PostgreSQL 16 or later before the migration if the rollback path is needed; "
            "otherwise plan the rollback without reverse replication"))
    elif not admin_holds(facts, "pg_create_subscription"):
        found.append(finding(
            "subscription_privilege", "warning", admin["name"],
            "the admin user %s lacks pg_create_subscription on the source: the rollback path subscribes there" % m,
            "%s (as %s)" % (sql_text(grant_role("pg_create_subscription", admin["name"])),
                            who_can_grant(facts, "pg_create_subscription"))))


# --- the migration user -----------------------------------------------------------------------------

def _check_user(found, facts, opts):
    user = opts["migration_user"]
    role = facts["roles"].get(user)
    managed = is_managed(facts)
    admin = facts["admin"]
    if role is None:
        if admin_can_create_role(facts):
            fix = "prepare_source.yml creates it (pg_logical_prereqs state=present with migration_password; the " \
                  "password is set from a SCRAM verifier computed on the controller)"
        else:
            fix = "as a role with CREATEROLE (the admin user %s has none): %s, with its password set by psql's " \
                  "\\password" % (q(admin["name"]), sql_text(sql.SQL("CREATE ROLE {} LOGIN").format(
                      sql.Identifier(user))))
        found.append(finding("migration_user_missing", "blocker", user,
                             "the migration user %s does not exist" % q(user), fix))
        return
    if not user_has_replication(role, managed):
        found.append(finding("replication_privilege", "blocker", user,
                             "%s has %s: it cannot open a replication connection%s" % (
                                 q(user), "neither REPLICATION nor rds_replication" if managed else
                                 "no REPLICATION attribute" + (" (its rds_replication membership confers "
                                                               "replication on RDS and Aurora only)"
                                                               if "rds_replication" in role["member_of"] else ""),
                                 "" if opts["role"] == "source" else " (reverse replication)"),
                             replication_remediation(facts, user)))
    if opts["engine"] == "dms" and opts["role"] == "target" and role.get("can_set_replication_role") is False:
        grant = sql_text(sql.SQL("GRANT SET ON PARAMETER session_replication_role TO {}").format(sql.Identifier(user)))
        found.append(finding(
            "replication_role_setting", "blocker", user,
            "%s may not SET session_replication_role: the DMS target endpoint connects as it and sets it to replica "
            "so that triggers and foreign keys do not fire twice while changes are applied" % q(user),
            ("prepare_source.yml runs it as %s: %s" % (q(admin_name(facts)), grant))
            if role.get("admin_can_grant_set_replication_role") else
            "as a role that holds SET on session_replication_role WITH GRANT OPTION (%s does not): %s" % (
                q(admin_name(facts)), grant)))
    db = facts["database"]["name"]
    if opts["engine"] == "dms" and not (user_is_admin(role) or role["create_on_database"]):
        found.append(finding("create_privilege", "warning", user,
                             "%s lacks CREATE on database %s: DMS cannot create its control tables there" % (
                                 q(user), q(db)),
                             sql_text(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
                                 sql.Identifier(db), sql.Identifier(user)))))
    if opts["role"] != "source" or user_is_admin(role):
        return
    tables = opts["tables"]
    schemas = {}
    for t in tables:
        if t.get("user_schema_usage") is False:
            schemas.setdefault(t["schema"], t.get("schema_owner"))
    if schemas:
        found.append(finding("schema_usage", "blocker", _list(sorted(schemas)),
                             "%s has no USAGE on schema(s) %s" % (q(user), _list(q(s) for s in sorted(schemas))),
                             _grant_remediation(facts, opts, [
                                 (sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(s),
                                                                                   sql.Identifier(user)),
                                  admin_can_grant_usage(facts, opts, s, owner), owner)
                                 for s, owner in sorted(schemas.items())])))
    no_select = [t for t in tables if t["relkind"] in ("r", "p") and t.get("user_can_select") is False]
    if no_select:
        found.append(finding("select_privilege", "blocker", _list(t["qualified"] for t in no_select),
                             "%s cannot SELECT %d migrated table(s): %s" % (
                                 q(user), len(no_select), _list(t["qualified"] for t in no_select)),
                             _grant_remediation(facts, opts, [
                                 (_grant_select(t, user), admin_can_grant_select(facts, opts, t), t["owner"])
                                 for t in no_select])))


def _grant_remediation(facts, opts, statements, limit=8):
    """statements: [(statement, the admin can run it, owner)] -> what to run and who runs it."""
    mine = [s for s, can, owner in statements if can]
    others = [(s, owner) for s, can, owner in statements if not can]
    parts = []
    if mine:
        parts.append("prepare_source.yml runs it as %s: %s" % (q(admin_name(facts)), _statements(mine, limit)))
    if others:
        owners = sorted(set(o for s, o in others if o))
        parts.append("as the owner %s (or a member of it): %s" % (
            _list(q(o) for o in owners), _statements([s for s, owner in others], limit)))
    return "; ".join(parts)


def _statements(statements, limit):
    text = "; ".join(sql_text(s) for s in statements[:limit])
    if len(statements) > limit:
        text += " ... and %d more" % (len(statements) - limit)
    return text


def _grant_select(t, user):
    return sql.SQL("GRANT SELECT ON TABLE {}.{} TO {}").format(
        sql.Identifier(t["schema"]), sql.Identifier(t["name"]), sql.Identifier(user))


def _owners_granted(facts, opts):
    """Owners fix mode makes the admin a member of (on the source), so it acts as them afterwards."""
    if opts["role"] != "source":
        return set()
    return set(o for o, status, entry in owner_plan(facts, opts) if status == "grantable")


def admin_will_own(facts, opts, owner):
    owner = owner_role(facts, owner)
    return admin_can_act_as(facts, owner) or owner in _owners_granted(facts, opts)


def admin_can_grant_select(facts, opts, t):
    return bool(facts["admin"]["superuser"] or t.get("admin_grant_select")
                or (t.get("owner") and admin_will_own(facts, opts, t["owner"])))


def admin_can_grant_usage(facts, opts, schema, owner):
    if facts["admin"]["superuser"] or (owner and admin_will_own(facts, opts, owner)):
        return True
    return any(t.get("admin_grant_usage") for t in opts["tables"] if t["schema"] == schema)


def _check_source_objects(found, facts, opts, tables):
    engine = opts["engine"]
    phys = replicated_tables(tables)
    missing = [t["qualified"] for t in phys if lacks_replica_identity(t)]
    if missing:
        found.append(finding("no_replica_identity", "blocker", _list(missing),
                             "%d table(s) have neither a primary key nor a usable replica identity: UPDATE and "
                             "DELETE %s: %s" % (len(missing), "fail on the publisher natively and are silently "
                                                "dropped by DMS" if engine == "native" else
                                                "are silently dropped by DMS", _list(missing)),
                             "add a primary key, or ALTER TABLE ... REPLICA IDENTITY FULL (list the tables in "
                             "migration_replica_identity_full and run prepare_source.yml, which runs %s), or "
                             "exclude them" % _statements([sql.SQL("ALTER TABLE {}.{} REPLICA IDENTITY FULL").format(
                                 sql.Identifier(t["schema"]), sql.Identifier(t["name"]))
                                 for t in phys if lacks_replica_identity(t)], 5)))
    full = [t["qualified"] for t in phys if t["replident"] == "f" and not t["has_pk"]]
    if full:
        found.append(finding("replica_identity_full", "blocker" if engine == "dms" else "warning", _list(full),
                             "%d table(s) without a primary key replicate with REPLICA IDENTITY FULL: %s" % (
                                 len(full), "DMS still drops their UPDATE/DELETE" if engine == "dms" else
                                 "each UPDATE/DELETE is found on the target by a scan unless an index matches"),
                             "add a primary key (best), or an index on the target that identifies rows"))
    parents = [t for t in tables if t["kind"] == "inheritance_parent"]
    for parent in parents:
        children = [t["qualified"] for t in tables if t["kind"] == "inheritance_child"
                    and parent["oid"] in (t.get("parents") or [])]
        found.append(finding("inheritance_children", "warning", parent["qualified"],
                             "%s is an inheritance parent (not declarative partitioning) with %d child table(s): "
                             "%s; selecting parent and children together copies the children's rows twice" % (
                                 parent["qualified"], len(children), _list(children)),
                             "map the parent with ONLY semantics and each child on its own (the replication plan "
                             "does); never use a wildcard that catches parent and children in DMS"))
    for root in [t for t in tables if t["kind"] == "partitioned" and not t.get("is_partition")]:
        leaves = [t for t in tables if t["kind"] == "partition" and root["oid"] in (t.get("ancestors") or [])
                  and t["relkind"] == "r"]
        found.append(finding("partitioned_tables", "info", root["qualified"],
                             "declarative partitioned table with %d leaf partition(s); planned leaf by leaf" % len(
                                 leaves)))
    unlogged = [t["qualified"] for t in tables if t["persistence"] == "u" and t["relkind"] in ("r", "p")]
    if unlogged:
        found.append(finding("unlogged_tables", "warning", _list(unlogged),
                             "unlogged tables are not replicated: %s" % _list(unlogged),
                             "copy them at cutover, or ALTER TABLE ... SET LOGGED before the migration"))
    if facts.get("large_objects"):
        found.append(finding("large_objects", "warning", "pg_largeobject",
                             "%d large object(s): neither logical replication nor DMS carries them" % facts[
                                 "large_objects"],
                             "copy them at cutover (pg_dump --large-objects --data-only) or move them into bytea"))
    matviews = [t["qualified"] for t in tables if t["kind"] == "matview"]
    if matviews:
        found.append(finding("materialized_views", "info", _list(matviews),
                             "materialized views are not replicated: %s" % _list(matviews),
                             "the cutover refreshes them on the target"))
    seqs = facts.get("sequences", [])
    if seqs:
        standalone = [qualified_seq(s) for s in seqs if not s["owned"]]
        found.append(finding("sequences", "info", "%d sequence(s)" % len(seqs),
                             "sequence values are not replicated (%d standalone: %s)" % (
                                 len(standalone), _list(standalone) or "none"),
                             "the cutover sets every target sequence above its source value and its columns"))
    found.append(finding("ddl_not_replicated", "info", "schema",
                         "DDL is not replicated: a schema change on the source during the migration breaks apply",
                         "freeze schema changes from copy_schema until cutover; re-run copy_schema if one happens"))
    foreign = [t["qualified"] for t in tables if t["kind"] == "foreign"]
    if foreign:
        found.append(finding("foreign_tables", "warning", _list(foreign),
                             "foreign tables are not replicated: %s" % _list(foreign),
                             "recreate the foreign servers, user mappings and tables on the target"))
    lobs = lob_columns(facts, tables)
    if lobs:
        rec = recommend_lob_mode(lobs)
        big = [e for e in lobs if (e["max_bytes"] or 0) > DMS_DEFAULT_LOB_MAX_BYTES]
        severity = "warning" if (engine == "dms" and big) else "info"
        found.append(finding("lob_columns", severity, "%d column(s)" % len(lobs),
                             "%d LOB column(s) for DMS; largest values: %s" % (len(lobs), _list(
                                 "%s.%s %s" % (e["table"], key_part(e["column"]), human_bytes(e["max_bytes"]))
                                 for e in lobs[:6])),
                             rec["reason"]))
    generated = sorted({"%s.%s" % (t["root"], key_part(c["name"])) for c in facts.get("columns", [])
                        if c.get("generated") == "s"
                        for t in [next((x for x in tables if x["oid"] == c["oid"]), None)] if t})
    if generated:
        found.append(finding("generated_columns", "warning" if engine == "dms" else "info", _list(generated),
                             "stored generated columns are computed on the target, not replicated: %s" % _list(
                                 generated),
                             "keep them generated on the target (schema copy does); DMS must not write them: "
                             "exclude them in the table mappings" if engine == "dms" else
                             "nothing to do: the schema copy keeps them generated"))
    types = facts.get("types", [])
    if types:
        names = {"e": "enum", "d": "domain", "r": "range", "c": "composite"}
        found.append(finding("user_defined_types", "warning" if engine == "dms" else "info",
                             "%d type(s)" % len(types), "user-defined types: %s" % _list(
                                 "%s %s" % (names.get(t["typtype"], t["typtype"]), qualified(t["schema"], t["name"]))
                                 for t in types),
                             "the schema copy creates them on the target before the data"
                             + ("; DMS moves enum and domain values as text" if engine == "dms" else "")))
    exts = [e for e in facts.get("extensions", []) if e["name"] != "plpgsql"]
    if exts:
        found.append(finding("extensions", "info", _list(e["name"] for e in exts),
                             "extensions: %s" % _list("%s %s" % (e["name"], e["version"]) for e in exts),
                             "the target assessment checks that each is available there"))


def qualified_seq(s):
    return qualified(s["schema"], s["name"])


def _check_target_objects(found, facts, opts, tables):
    source = opts.get("source") or {}
    available = facts.get("available_extensions", {})
    missing = [e for e in source.get("extensions", []) if e["name"] not in available]
    if missing:
        found.append(finding("extension_unavailable", "blocker", _list(e["name"] for e in missing),
                             "extension(s) installed on the source are not available on the target: %s" % _list(
                                 e["name"] for e in missing),
                             "add them to the target (shared_preload_libraries / the Aurora parameter group) or "
                             "drop them from the source"))
    db = facts.get("database") or {}
    if source.get("encoding") and db.get("encoding") and source["encoding"] != db["encoding"]:
        found.append(finding("encoding_mismatch", "blocker", db.get("name"),
                             "the target database is %s, the source %s" % (db["encoding"], source["encoding"]),
                             "create the target database with ENCODING '%s'" % source["encoding"]))
    for key in ("collate", "ctype"):
        if source.get(key) and db.get(key) and source[key] != db[key]:
            found.append(finding("collation_mismatch", "warning", db.get("name"),
                                 "LC_%s differs: target %s, source %s (sort order and indexes on text may differ)"
                                 % (key.upper(), db[key], source[key]),
                                 "create the target database with LC_%s '%s' (the schema copy does when it creates "
                                 "the database)" % (key.upper(), source[key])))
    existing = [t["qualified"] for t in tables if t["relkind"] in ("r", "p")]
    if existing:
        found.append(finding("target_not_empty", "info", "%d table(s)" % len(existing),
                             "the target already has %d table(s): %s" % (len(existing), _list(existing)),
                             "expected after copy_schema; before it, check that nothing conflicts"))


def _check_triggers(found, facts, opts, tables):
    by_oid = {t["oid"]: t for t in tables}
    trigs = [(by_oid[tg["oid"]], tg) for tg in facts.get("triggers", []) if tg["oid"] in by_oid]
    if opts["role"] == "source" and trigs:
        found.append(finding("triggers", "info", "%d trigger(s)" % len(trigs),
                             "user triggers: %s" % _list("%s on %s" % (q(tg["name"]), t["qualified"])
                                                         for t, tg in trigs),
                             "native apply does not fire ordinary triggers; DMS applies with "
                             "session_replication_role = replica; the schema copy adds them after the load"))
    replica = [(t, tg) for t, tg in trigs if tg["enabled"] in ("A", "R")]
    if replica:
        where = _list("%s on %s" % (q(tg["name"]), t["qualified"]) for t, tg in replica)
        found.append(finding("triggers_fire_on_replica", "warning", _list(tg["name"] for t, tg in replica),
                             "trigger(s) ENABLE ALWAYS/REPLICA fire during replication apply on the target, so their "
                             "effects happen twice: %s" % where,
                             "; ".join(sql_text(sql.SQL("ALTER TABLE {}.{} ENABLE TRIGGER {}").format(
                                 sql.Identifier(t["schema"]), sql.Identifier(t["name"]), sql.Identifier(tg["name"])))
                                 for t, tg in replica[:8]) + " (origin only) on the target during the migration"))
    from_rules = [r for r in facts.get("rules", []) if r.get("oid") in by_oid]
    if from_rules:
        found.append(finding("rules", "warning", _list(r["name"] for r in from_rules),
                             "rewrite rules on migrated tables: %s" % _list(
                                 "%s on %s" % (q(r["name"]), qualified(r["schema"], r["table"])) for r in from_rules),
                             "check that they do not rewrite the replicated writes on the target"))
    events = facts.get("event_triggers", [])
    if events:
        found.append(finding("event_triggers", "warning" if opts["role"] == "target" else "info",
                             _list(e["name"] for e in events),
                             "event triggers: %s" % _list("%s (%s)" % (q(e["name"]), e["event"]) for e in events),
                             "on the target they fire during the schema copy: disable them until cutover"
                             if opts["role"] == "target" else "DDL they react to is not replicated"))


def _check_activity(found, facts, opts):
    longs = facts.get("long_transactions", [])
    if longs:
        found.append(finding("long_running_transactions", "warning", _list("pid %s" % x["pid"] for x in longs),
                             "%d transaction(s) open longer than %ds (oldest %ds, user %s): creating a slot and the "
                             "cutover freeze wait for them" % (
                                 len(longs), opts["long_transaction_seconds"], longs[0]["age_seconds"],
                                 longs[0]["user"]),
                             "end them before the replicate and cutover phases (pg_terminate_backend(pid) if "
                             "they are abandoned)"))
    prepared = facts.get("prepared_transactions", [])
    if prepared:
        old = [p for p in prepared if p["age_seconds"] >= opts["long_transaction_seconds"]]
        found.append(finding("prepared_transactions", "blocker" if old else "warning",
                             _list(p["gid"] for p in prepared),
                             "%d prepared transaction(s)%s: a new replication slot waits for them to end" % (
                                 len(prepared), " (%d older than %ds)" % (len(old), opts["long_transaction_seconds"])
                                 if old else ""),
                             "COMMIT PREPARED or ROLLBACK PREPARED them"))
    inactive = [s for s in facts.get("slots", []) if not s["active"]]
    if inactive:
        found.append(finding("inactive_replication_slots", "warning", _list(s["name"] for s in inactive),
                             "inactive replication slot(s) hold WAL: %s" % _list(
                                 "%s (%s)" % (s["name"], human_bytes(s["retained_bytes"])) for s in inactive),
                             "drop the ones nobody uses: SELECT pg_drop_replication_slot('<name>')"))


# ----------------------------------------------------------------------------------------------
# Fix mode
# ----------------------------------------------------------------------------------------------

def action(key, description, statement, before, after, kind="sql", secret=None):
    """One change fix mode makes: `sql` (a psycopg.sql statement: what runs is what `queries` shows, with
    `secret` masked), its diff key with the values before and after; kind "setting" runs outside a transaction."""
    return dict(key=key, description=description, sql=statement, before=before, after=after, kind=kind,
                secret=secret)


def key_part(name):
    """A name inside an action key (diff keys) or a sentence: quoted when it needs it, so keys stay unambiguous."""
    return quote_ident(name)


def desired_settings(facts, opts):
    """Settings fix mode raises (never lowers): {name: value}."""
    want = {}
    role = opts["role"]
    if role == "source" or opts.get("reverse_replication", True):
        if (configured_value(facts, "wal_level") or "") != "logical":
            want["wal_level"] = "logical"
    if role == "source":
        slots = needed_slots(facts, opts)[1]
        senders = needed_senders(facts, opts)[1]
    else:
        slots = senders = opts["planned_streams"] + opts["reserved_slots"]
    raise_to = dict(max_replication_slots=slots, max_wal_senders=senders)
    if role == "target":
        workers = needed_workers(facts, opts)[1]
        raise_to["max_logical_replication_workers"] = workers
        raise_to["max_worker_processes"] = workers + 4
        raise_to["max_sync_workers_per_subscription"] = 2
    for name, value in raise_to.items():
        current = configured_value(facts, name)
        if current is None:
            continue
        try:
            if int(current) < value:
                want[name] = str(value)
        except ValueError:
            continue
    return want


def create_role_statement(user, attrs, verifier):
    """CREATE ROLE with the password given as a SCRAM verifier (stored as it is: the clear password never
    reaches the server; the action masks the verifier in what it shows)."""
    return sql.SQL("CREATE ROLE {} " + attrs + " PASSWORD {}").format(sql.Identifier(user), sql.Literal(verifier))


def plan_fixes(facts, opts):
    """The changes fix mode makes as the admin, in order: only what the admin is allowed to do; what it
    cannot do stays a finding with the statement for whoever can. Raises ValueError, before anything is
    changed, for what was asked explicitly and cannot be done (the reason and the fix in the message)."""
    actions = []
    user = opts["migration_user"]
    role = facts["roles"].get(user)
    admin = facts["admin"]
    version = facts["server"]["version_num"]
    # rds_replication exists on RDS/Aurora and servers shaped like them; settings go through the
    # parameter group whenever the server is one of those.
    rds = facts["server"].get("is_rds")
    managed = is_managed(facts)
    settings_by_api = opts.get("rds") or rds
    ident = sql.Identifier(user)
    db = facts["database"]["name"]
    # 1. On the source the admin acts as the owners of the migrated objects (publications, replica identity,
    #    grants): make it a member of those it holds ADMIN OPTION on. (On the target the schema copy does.)
    if opts["role"] == "source":
        for owner in sorted(_owners_granted(facts, opts)):
            actions.append(action("role.%s.member.%s" % (key_part(admin["name"]), key_part(owner)),
                                  "let the admin user %s act as the owner %s" % (admin["name"], owner),
                                  grant_role(owner, admin["name"], version, options=True), False, True))
    # 2. The migration user, its password from a SCRAM verifier computed here.
    fresh = role is None
    if fresh:
        if not opts.get("migration_password"):
            raise ValueError("the migration user %s does not exist and no migration_password was given to create "
                             "it: set migration_password (from a vault) or create the user yourself" % q(user))
        if not admin_can_create_role(facts):
            raise ValueError("the migration user %s does not exist and the admin user %s has no CREATEROLE to "
                             "create it: create it as a role with CREATEROLE (%s, then \\password in psql), or grant "
                             "CREATEROLE to %s; nothing was changed" % (
                                 q(user), q(admin["name"]), sql_text(sql.SQL("CREATE ROLE {} LOGIN").format(ident)),
                                 q(admin["name"])))
        with_replication = not managed and admin_can_confer_replication(facts, user, exists=False)
        attrs = "LOGIN REPLICATION" if with_replication else "LOGIN"
        verifier = scram.scram_sha256_verifier(opts["migration_password"])
        actions.append(action("role.%s" % key_part(user), "create the migration user %s" % user,
                              create_role_statement(user, attrs, verifier), "absent", "present", secret=verifier))
        role = dict(name=user, superuser=False, replication=with_replication, member_of=[],
                    create_on_database=False)
    # 3. Replication: rds_replication where it exists (as on RDS, also for a new user), the REPLICATION
    #    attribute where only it works (a server shaped like RDS but not RDS, or plain PostgreSQL).
    needs_replication = not user_has_replication(role, managed)
    rds_member = "rds_replication" in role["member_of"] or "rds_superuser" in role["member_of"]
    if rds and (needs_replication or fresh) and not rds_member and admin_can_grant_role(facts, "rds_replication"):
        actions.append(_grant_role("rds_replication", user))
    if needs_replication and not managed and not role["replication"] \
            and admin_can_confer_replication(facts, user, exists=not fresh):
        actions.append(action("role.%s.replication" % key_part(user),
                              "let %s open replication connections" % user,
                              sql.SQL("ALTER ROLE {} REPLICATION").format(ident), False, True))
    # 4. DMS writes its control tables with the migration user.
    if opts.get("engine") == "dms" and not user_is_admin(role) and not role.get("create_on_database") \
            and (admin["superuser"] or admin.get("grant_create_on_database")):
        actions.append(action("database.%s.create.%s" % (key_part(db), key_part(user)),
                              "let %s create DMS's control tables" % user,
                              sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(sql.Identifier(db), ident),
                              False, True))
    #    ... and on the target, sets session_replication_role = replica as that user.
    if opts.get("engine") == "dms" and opts["role"] == "target" and not role.get("can_set_replication_role") \
            and (facts["roles"].get(admin["name"]) or {}).get("admin_can_grant_set_replication_role"):
        actions.append(action("parameter.session_replication_role.set.%s" % key_part(user),
                              "let %s set session_replication_role (DMS's target endpoint)" % user,
                              sql.SQL("GRANT SET ON PARAMETER session_replication_role TO {}").format(ident),
                              False, True))
    # 5. Reading the source: USAGE on the schemas, SELECT on the tables (as their owner, or with grant option).
    if opts["role"] == "source" and not user_is_admin(role):
        tables = opts["tables"]
        schemas = {}
        for t in tables:
            if fresh or t.get("user_schema_usage") is False:
                schemas.setdefault(t["schema"], t.get("schema_owner"))
        for schema, owner in sorted(schemas.items()):
            if admin_can_grant_usage(facts, opts, schema, owner):
                actions.append(action("schema.%s.usage.%s" % (key_part(schema), key_part(user)),
                                      "USAGE on schema %s" % schema,
                                      sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema),
                                                                                       ident), False, True))
        for t in tables:
            if t["relkind"] in ("r", "p") and (fresh or t.get("user_can_select") is False) \
                    and admin_can_grant_select(facts, opts, t):
                actions.append(action("table.%s.select.%s" % (t["qualified"], key_part(user)),
                                      "SELECT on %s" % t["qualified"], _grant_select(t, user), False, True))
    if opts["role"] == "source":
        actions.extend(plan_replica_identity(opts["tables"], opts.get("replica_identity_full") or [],
                                             lambda t: admin_will_own(facts, opts, t["owner"])))
    if opts.get("system_settings") and not settings_by_api:
        wanted = sorted(desired_settings(facts, opts).items())
        allowed = admin.get("alter_system") or {}
        refused = [name for name, value in wanted if not (admin["superuser"] or allowed.get(name))]
        if refused:
            raise ValueError(
                "system_settings: the admin user %s may not ALTER SYSTEM SET %s: as a superuser, run %s, or set "
                "them yourself (postgresql.conf) and restart; nothing was changed" % (
                    q(admin["name"]), ", ".join(refused), "; ".join(sql_text(
                        sql.SQL("GRANT ALTER SYSTEM ON PARAMETER {} TO {}").format(
                            sql.Identifier(name), sql.Identifier(admin["name"]))) for name in refused)))
        for name, value in wanted:
            actions.append(action("setting.%s" % name, "set %s = %s (needs a restart)" % (name, value)
                                  if (facts["settings"].get(name) or {}).get("context") == "postmaster"
                                  else "set %s = %s" % (name, value),
                                  sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)),
                                  configured_value(facts, name), value, kind="setting"))
    return actions


def _grant_role(granted, user):
    return action("role.%s.member.%s" % (key_part(user), key_part(granted)),
                  "make %s a member of %s" % (user, granted), grant_role(granted, user), False, True)


def plan_replica_identity(tables, wanted, can_alter=None):
    """REPLICA IDENTITY FULL for the listed tables; a partitioned table's leaves get it too.

    wanted: names as a person writes them (schema.table, quoted parts); can_alter(table) -> whether the
    admin may ALTER it (it owns it); ValueError names what cannot be done, before anything is."""
    actions = []
    by_name = {}
    for t in tables:
        by_name[(t["schema"], t["name"])] = t
    refused = []
    for name in wanted:
        key = split_qualified(name)
        t = by_name.get(key)
        if t is None:
            raise ValueError("replica_identity_full names %s, which is not a migrated table on this database: "
                             "check the name (schema.table) and the include/exclude filters" % name)
        if t["relkind"] not in ("r", "p"):
            raise ValueError("replica_identity_full names %s, which is a %s, not a table: only tables replicate "
                             "with a replica identity" % (name, {"m": "materialized view", "f": "foreign table"}.get(
                                 t["relkind"], "relation of kind " + t["relkind"])))
        targets = [t]
        if t["relkind"] == "p":
            # Every partition below it, sub-partitions' leaves included.
            targets += [x for x in tables if t["oid"] in (x.get("ancestors") or [])]
        for x in targets:
            if x["replident"] == "f":
                continue
            stmt = sql.SQL("ALTER TABLE {}.{} REPLICA IDENTITY FULL").format(
                sql.Identifier(x["schema"]), sql.Identifier(x["name"]))
            if can_alter is not None and not can_alter(x):
                refused.append((stmt, x.get("owner")))
                continue
            actions.append(action("table.%s.replica_identity" % x["qualified"],
                                  "REPLICA IDENTITY FULL on %s" % x["qualified"], stmt,
                                  {"d": "default", "n": "nothing", "i": "index"}.get(x["replident"]), "full"))
    if refused:
        raise ValueError("replica_identity_full: the admin user cannot alter %d table(s) it does not own and cannot "
                         "act as their owner (%s): run as the owner: %s; nothing was changed" % (
                             len(refused), _list(q(o) for o in sorted(set(o for s, o in refused if o))),
                             _statements([s for s, owner in refused], 8)))
    return actions


def restart_pending(facts):
    """Settings whose configured value differs from the live one and need a restart."""
    pending = []
    for name, s in sorted(facts["settings"].items()):
        configured = configured_value(facts, name)
        if s.get("pending_restart") or (s.get("context") == "postmaster" and configured is not None
                                        and configured != str(s["setting"])):
            pending.append(name)
    return pending


def failure_message(findings, fail_on):
    """The message the module fails with, or None when fail_on allows the findings."""
    if fail_on == "never":
        return None
    levels = ("blocker",) if fail_on == "blocker" else ("blocker", "warning")
    bad = [f for f in findings if f["severity"] in levels]
    if not bad:
        return None
    lines = ["%d finding(s) at or above '%s':" % (len(bad), fail_on)]
    for f in bad:
        lines.append("- [%s] %s (%s): %s. Fix: %s" % (
            f["severity"], f["id"], f["object"], f["detail"], f["remediation"] or "see the report"))
    return "\n".join(lines)
