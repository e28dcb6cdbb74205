# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Logical replication prerequisites: the decisions, as pure functions.

``evaluate(facts, opts)`` turns what the catalog says (module_utils/_pg/catalog.py)
into findings; ``plan_fixes(facts, opts)`` into the changes fix mode makes.
Nothing here talks to a database or an API, so unit tests call it directly.

A finding is a dict: id, severity (blocker, warning, info), object, detail,
remediation. ``evaluate`` also says, for every check it ran, whether it passed.
"""

from __future__ import annotations

import math

from ansible_collections.pgshift.aurora.plugins.module_utils.scope import qualified, split_qualified

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
    "schema_usage", "select_privilege", "create_privilege", "publication_ownership", "no_replica_identity",
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


def user_has_replication(role):
    return bool(role and (role["superuser"] or role["replication"]
                          or "rds_replication" in role["member_of"] or "rds_superuser" in role["member_of"]))


def user_is_admin(role):
    return bool(role and (role["superuser"] or "rds_superuser" in role["member_of"]))


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


def suggest_streams(size_summary, bytes_per_stream=50 * 1024 ** 3, writes_per_stream=1000.0, max_streams=8):
    """How many parallel streams: enough that none carries over ~50 GB or ~1000 writes/s.

    Never more streams than tables, never fewer than one.
    """
    by_bytes = int(math.ceil((size_summary.get("migrated_bytes") or 0) / float(bytes_per_stream)))
    by_writes = int(math.ceil((size_summary.get("writes_per_second") or 0) / float(writes_per_stream)))
    wanted = max(1, by_bytes, by_writes)
    return max(1, min(wanted, max_streams, max(1, size_summary.get("tables") or 1)))


def _list(items, limit=12):
    items = list(items)
    text = ", ".join(str(i) for i in items[:limit])
    if len(items) > limit:
        text += " and %d more" % (len(items) - limit)
    return text


def _check_capacity(found, check_id, facts, name, hard, wanted, what, remediation):
    value = setting_int(facts, name)
    if value is None:
        return
    configured = configured_value(facts, name)
    pending = ""
    if configured is not None and configured != str(value):
        pending = " (configured %s, pending a restart)" % configured
    if value < hard:
        found.append(finding(check_id, "blocker", name, "%s = %d%s but %s need at least %d" % (
            name, value, pending, what, hard), remediation % dict(value=wanted)))
    elif value < wanted:
        found.append(finding(check_id, "warning", name, "%s = %d%s leaves no headroom: %s want %d" % (
            name, value, pending, what, wanted), remediation % dict(value=wanted)))


def _setting_remediation(facts, opts, name):
    if opts.get("rds"):
        return ("set %s = %%(value)s in the DB parameter group (pgshift.aurora.pg_logical_prereqs state=present "
                "with rds_instance_id does it) and reboot" % name)
    return "ALTER SYSTEM SET %s = %%(value)s; then restart PostgreSQL" % name


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
    long_transaction_seconds, migration_user, rds (bool), source (dict or None), tables (in scope)."""
    role = opts["role"]
    tables = opts["tables"]
    found = []
    ran = SOURCE_CHECKS if role == "source" else TARGET_CHECKS
    _check_server(found, facts, opts)
    _check_settings(found, facts, opts)
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
    if server.get("is_aurora"):
        kind = "Aurora PostgreSQL"
    elif server.get("is_rds"):
        kind = "RDS for PostgreSQL"
    else:
        kind = "PostgreSQL"
    if version_num < minimum:
        found.append(finding("server_version", "blocker", "server", "%s %s is too old for the %s engine" % (
            kind, server["version_short"], opts["engine"]),
            "upgrade to PostgreSQL %s or later first" % ("10" if opts["engine"] == "native" else "9.4")))
    else:
        found.append(finding("server_version", "info", "server", "%s %s" % (kind, server["version_short"])))
    source = opts.get("source")
    if opts["role"] == "target" and source and source.get("version_num"):
        if major(version_num) < major(source["version_num"]):
            found.append(finding("version_downgrade", "blocker", "server",
                                 "the target runs major %d, older than the source's %d" % (
                                     major(version_num), major(source["version_num"])),
                                 "provision the target on major %d or later" % major(source["version_num"])))


def _check_settings(found, facts, opts):
    role = opts["role"]
    rds = opts.get("rds")
    wal_level = (facts["settings"].get("wal_level") or {}).get("setting")
    rds_logical = facts["settings"].get("rds.logical_replication")
    severity_wal = "blocker" if role == "source" else "warning"
    why = "logical decoding" if role == "source" else "reverse replication (the rollback path)"
    if rds and rds_logical is not None:
        if rds_logical["setting"] != "on":
            found.append(finding("rds_logical_replication", severity_wal, "rds.logical_replication",
                                 "rds.logical_replication is off: %s needs it" % why,
                                 "set rds.logical_replication = 1 in a custom DB parameter group and reboot "
                                 "(pg_logical_prereqs state=present with rds_instance_id does the first part)"))
    elif wal_level != "logical":
        configured = configured_value(facts, "wal_level")
        pending = " (configured %s, pending a restart)" % configured if configured and configured != wal_level else ""
        found.append(finding("wal_level", severity_wal, "wal_level",
                             "wal_level = %s%s: %s needs logical" % (wal_level, pending, why),
                             "ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL"
                             if not rds else "set rds.logical_replication = 1 in the parameter group and reboot"))
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
                                 _setting_remediation(facts, opts, "max_sync_workers_per_subscription")
                                 % dict(value=4)))
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


def _check_user(found, facts, opts):
    user = opts["migration_user"]
    role = facts["roles"].get(user)
    if role is None:
        found.append(finding("migration_user_missing", "blocker", user, "the migration user %s does not exist" % user,
                             "create it: pg_logical_prereqs state=present with migration_password, or "
                             "CREATE ROLE %s LOGIN PASSWORD '...'" % user))
        return
    admin = user_is_admin(role)
    if not user_has_replication(role):
        found.append(finding("replication_privilege", "blocker", user,
                             "%s has neither REPLICATION nor rds_replication: it cannot open a replication "
                             "connection%s" % (user, "" if opts["role"] == "source" else " (reverse replication)"),
                             "GRANT rds_replication TO %s" % user if facts["server"].get("is_rds")
                             else "ALTER ROLE %s REPLICATION" % user))
    if not (admin or role["create_on_database"]):
        what = "create a publication" if opts["role"] == "source" else "create subscriptions and schemas"
        found.append(finding("create_privilege", "blocker" if opts["engine"] == "native" else "warning", user,
                             "%s lacks CREATE on database %s: it cannot %s" % (user, facts["database"]["name"], what),
                             "GRANT CREATE ON DATABASE %s TO %s" % (facts["database"]["name"], user)))
    if opts["role"] == "target" and not admin:
        version_num = facts["server"]["version_num"]
        if version_num >= 160000 and "pg_create_subscription" not in role["member_of"]:
            found.append(finding("subscription_privilege", "blocker" if opts["engine"] == "native" else "info", user,
                                 "%s is not a member of pg_create_subscription" % user,
                                 "GRANT pg_create_subscription TO %s" % user))
        elif version_num < 160000:
            found.append(finding("subscription_privilege", "blocker" if opts["engine"] == "native" else "info", user,
                                 "before PostgreSQL 16 only a superuser (rds_superuser on Aurora) can create a "
                                 "subscription", "run the replicate phase as db_admin_user or grant rds_superuser"))
    if opts["role"] != "source" or admin:
        return
    tables = opts["tables"]
    no_usage = sorted({t["schema"] for t in tables if t.get("user_schema_usage") is False})
    if no_usage:
        found.append(finding("schema_usage", "blocker", _list(no_usage), "%s has no USAGE on schema(s) %s" % (
            user, _list(no_usage)), "; ".join("GRANT USAGE ON SCHEMA %s TO %s" % (s, user) for s in no_usage[:5])))
    no_select = [t["qualified"] for t in tables
                 if t["relkind"] in ("r", "p") and t.get("user_can_select") is False]
    if no_select:
        found.append(finding("select_privilege", "blocker", _list(no_select),
                             "%s cannot SELECT %d migrated table(s): %s" % (user, len(no_select), _list(no_select)),
                             "GRANT SELECT ON ALL TABLES IN SCHEMA ... TO %s (state=present grants table by table)"
                             % user))
    not_owned = [t["qualified"] for t in replicated_tables(tables) if t.get("user_owns") is False]
    if not_owned and opts["engine"] == "native":
        owners = sorted({t["owner"] for t in replicated_tables(tables) if t.get("user_owns") is False})
        found.append(finding("publication_ownership", "warning", _list(owners),
                             "%s does not own %d table(s) (owners: %s): only their owner can add them to a "
                             "publication" % (user, len(not_owned), _list(owners)),
                             "create the publication as the owner (db_admin_user does it in the replicate phase) "
                             "or GRANT %s TO %s" % (owners[0], user)))


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
                             "migration_replica_identity_full and run prepare_source.yml), or exclude them"))
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
        leaves = [t for t in tables if t["kind"] == "partition" and t["root"] == root["qualified"]
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
                                 "%s.%s %s" % (e["table"], e["column"], human_bytes(e["max_bytes"])) for e in lobs[:6])),
                             rec["reason"]))
    generated = sorted({"%s.%s" % (t["root"], c["name"]) for c in facts.get("columns", []) if c.get("generated") == "s"
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
                                 "%s %s.%s" % (names.get(t["typtype"], t["typtype"]), t["schema"], t["name"])
                                 for t in types),
                             "the schema copy creates them on the target before the data"
                             + ("; DMS moves enum and domain values as text" if engine == "dms" else "")))
    exts = [e for e in facts.get("extensions", []) if e["name"] != "plpgsql"]
    if exts:
        found.append(finding("extensions", "info", _list(e["name"] for e in exts),
                             "extensions: %s" % _list("%s %s" % (e["name"], e["version"]) for e in exts),
                             "the target assessment checks that each is available there"))


def qualified_seq(s):
    return "%s.%s" % (s["schema"], s["name"])


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
                             "user triggers: %s" % _list("%s on %s" % (tg["name"], t["qualified"]) for t, tg in trigs),
                             "native apply does not fire ordinary triggers; DMS applies with "
                             "session_replication_role = replica; the schema copy adds them after the load"))
    replica = [(t, tg) for t, tg in trigs if tg["enabled"] in ("A", "R")]
    if replica:
        where = _list("%s on %s" % (tg["name"], t["qualified"]) for t, tg in replica)
        found.append(finding("triggers_fire_on_replica", "warning", _list(tg["name"] for t, tg in replica),
                             "trigger(s) ENABLE ALWAYS/REPLICA fire during replication apply on the target, so their "
                             "effects happen twice: %s" % where,
                             "ALTER TABLE ... ENABLE TRIGGER (origin only) on the target during the migration"))
    table_names = {t["qualified"] for t in tables}
    from_rules = [r for r in facts.get("rules", [])
                  if "%s.%s" % (r["schema"], r["table"]) in table_names
                  or _quoted_name(r) in table_names]
    if from_rules:
        found.append(finding("rules", "warning", _list(r["name"] for r in from_rules),
                             "rewrite rules on migrated tables: %s" % _list(
                                 "%s on %s.%s" % (r["name"], r["schema"], r["table"]) for r in from_rules),
                             "check that they do not rewrite the replicated writes on the target"))
    events = facts.get("event_triggers", [])
    if events:
        found.append(finding("event_triggers", "warning" if opts["role"] == "target" else "info",
                             _list(e["name"] for e in events),
                             "event triggers: %s" % _list("%s (%s)" % (e["name"], e["event"]) for e in events),
                             "on the target they fire during the schema copy: disable them until cutover"
                             if opts["role"] == "target" else "DDL they react to is not replicated"))


def _quoted_name(rule):
    return qualified(rule["schema"], rule["table"])


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

def action(key, description, statement, display, before, after, kind="sql"):
    return dict(key=key, description=description, sql=statement, display=display, before=before, after=after,
                kind=kind)


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


def plan_fixes(facts, opts):
    """The changes fix mode makes, in order. Raises ValueError for input it cannot act on."""
    actions = []
    user = opts["migration_user"]
    role = facts["roles"].get(user)
    # Roles follow the server (rds_replication exists only on RDS/Aurora); settings
    # go through the parameter group whenever the instance is managed through the API.
    rds = facts["server"].get("is_rds")
    settings_by_api = opts.get("rds") or rds
    ident = sql.Identifier(user)
    db = facts["database"]["name"]
    if role is None:
        if not opts.get("migration_password"):
            raise ValueError("the migration user %s does not exist and no migration_password was given to create "
                             "it: set migration_password (from a vault) or create the user yourself" % user)
        attrs = " LOGIN" if rds else " LOGIN REPLICATION"
        actions.append(action("role.%s" % user, "create the migration user %s" % user,
                              sql.SQL("CREATE ROLE {}" + attrs + " PASSWORD {}").format(
                                  ident, sql.Literal(opts["migration_password"])),
                              "CREATE ROLE %s%s PASSWORD '********'" % (user, attrs),
                              "absent", "present"))
        if rds:
            actions.append(_grant_role("rds_replication", user))
        role = dict(name=user, superuser=False, replication=not rds, member_of=["rds_replication"] if rds else [],
                    create_on_database=False)
        fresh = True
    else:
        fresh = False
    if not user_has_replication(role):
        if rds:
            actions.append(_grant_role("rds_replication", user))
        else:
            actions.append(action("role.%s.replication" % user, "let %s open replication connections" % user,
                                  sql.SQL("ALTER ROLE {} REPLICATION").format(ident),
                                  "ALTER ROLE %s REPLICATION" % user, False, True))
    admin = user_is_admin(role)
    if not admin and not role.get("create_on_database"):
        actions.append(action("database.%s.create.%s" % (db, user), "let %s create publications/subscriptions" % user,
                              sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(sql.Identifier(db), ident),
                              "GRANT CREATE ON DATABASE %s TO %s" % (db, user), False, True))
    if opts["role"] == "target" and not admin and facts["server"]["version_num"] >= 160000 \
            and "pg_create_subscription" not in role.get("member_of", []):
        actions.append(_grant_role("pg_create_subscription", user))
    if opts["role"] == "source" and not admin:
        tables = opts["tables"]
        schemas = sorted({t["schema"] for t in tables if fresh or t.get("user_schema_usage") is False})
        for schema in schemas:
            actions.append(action("schema.%s.usage.%s" % (schema, user), "USAGE on schema %s" % schema,
                                  sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema), ident),
                                  "GRANT USAGE ON SCHEMA %s TO %s" % (schema, user), False, True))
        for t in tables:
            if t["relkind"] in ("r", "p") and (fresh or t.get("user_can_select") is False):
                actions.append(action("table.%s.select.%s" % (t["qualified"], user), "SELECT on %s" % t["qualified"],
                                      sql.SQL("GRANT SELECT ON TABLE {}.{} TO {}").format(
                                          sql.Identifier(t["schema"]), sql.Identifier(t["name"]), ident),
                                      "GRANT SELECT ON TABLE %s TO %s" % (t["qualified"], user), False, True))
    if opts["role"] == "source":
        actions.extend(plan_replica_identity(opts["tables"], opts.get("replica_identity_full") or []))
    if opts.get("system_settings") and not settings_by_api:
        for name, value in sorted(desired_settings(facts, opts).items()):
            actions.append(action("setting.%s" % name, "set %s = %s (needs a restart)" % (name, value)
                                  if (facts["settings"].get(name) or {}).get("context") == "postmaster"
                                  else "set %s = %s" % (name, value),
                                  sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)),
                                  "ALTER SYSTEM SET %s = '%s'" % (name, value), configured_value(facts, name), value,
                                  kind="setting"))
    return actions


def _grant_role(granted, user):
    return action("role.%s.member.%s" % (user, granted), "make %s a member of %s" % (user, granted),
                  sql.SQL("GRANT {} TO {}").format(sql.Identifier(granted), sql.Identifier(user)),
                  "GRANT %s TO %s" % (granted, user), False, True)


def plan_replica_identity(tables, wanted):
    """REPLICA IDENTITY FULL for the listed tables; a partitioned table's leaves get it too."""
    actions = []
    by_name = {}
    for t in tables:
        by_name[(t["schema"], t["name"])] = t
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
            if x["replident"] != "f":
                actions.append(action("table.%s.replica_identity" % x["qualified"],
                                      "REPLICA IDENTITY FULL on %s" % x["qualified"],
                                      sql.SQL("ALTER TABLE {}.{} REPLICA IDENTITY FULL").format(
                                          sql.Identifier(x["schema"]), sql.Identifier(x["name"])),
                                      "ALTER TABLE %s REPLICA IDENTITY FULL" % qualified(x["schema"], x["name"]),
                                      {"d": "default", "n": "nothing", "i": "index"}.get(x["replident"]), "full"))
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
