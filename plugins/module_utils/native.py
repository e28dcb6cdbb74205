# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The native engine's decisions: one stream = one publication, one slot, one subscription (pure).

Nothing here talks to a database. The runners (runners/stream.py for pg_native_stream,
_pg/status.py for pg_replication_status) observe the catalogs, call these functions to decide,
and run what they return; the statements and reads are in _pg/replication.py (publications, slots,
subscriptions) and _pg/stream.py (a stream's observation, its load's sessions), the copy in _pg/loader.py.

A stream's life:

1. publication ``<stream>`` on the source FOR TABLE its tables (ONLY for an inheritance
   parent whose own rows are migrated);
2. a logical slot ``<stream>`` created with an exported snapshot; the tables are copied
   under that snapshot (in parallel, big tables in key ranges) while the exporting
   session stays open; every unit's progress is kept in ``pgshift.load_progress`` on the
   target, with the slot's consistent LSN;
3. a subscription ``<stream>`` on the target on that slot with ``copy_data = false``: CDC
   starts exactly where the snapshot ends, so no row is lost or applied twice.
"""

from __future__ import annotations

import re

try:
    from psycopg import sql
except ImportError:  # pragma: no cover - the module reports the missing library
    sql = None

from ansible_collections.pgshift.aurora.plugins.module_utils.scope import qualified, quote_ident

PROGRESS_SCHEMA = "pgshift"
PROGRESS_TABLE = "load_progress"
UNIT_STATES = ("pending", "copying", "copied", "failed")
INTEGER_TYPES = ("smallint", "integer", "bigint", "int2", "int4", "int8")
FIRST_USER_OID = 16384  # FirstNormalObjectId: types at or above it are user-defined or from extensions
MAX_IDENTIFIER = 63
LOAD_APPLICATION_PREFIX = "pgshift load "

SUBSCRIPTION_REL_STATES = {
    "i": "init",
    "d": "data_copy",
    "f": "finished_copy",
    "s": "synchronized",
    "r": "ready",
}

# An apply worker younger than this while errors were counted is taken for one failing in a loop
# (PostgreSQL restarts a failed worker after wal_retrieve_retry_interval, 5 s by default).
RECENT_RESTART_SECONDS = 15

STREAM_STATES = ("copying", "streaming", "starting", "disabled", "error", "missing")


class StreamError(Exception):
    """The stream cannot be handled as asked; the message says why and what to do."""


# ----------------------------------------------------------------------------------------------
# Options
# ----------------------------------------------------------------------------------------------

def prefixed_spec(spec, prefix):
    """The connection argument spec with every option renamed prefix + name (target_login_host...)."""
    return dict((prefix + name, dict(value)) for name, value in spec.items())


def unprefixed(params, spec, prefix):
    """The module's prefixed options as the login_* dict connect() takes."""
    return dict((name, params.get(prefix + name)) for name in spec)


def _int(value, what, problems, minimum=None):
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        problems.append("%s must be a whole number (got %r)" % (what, value))
        return None
    if minimum is not None and number < minimum:
        problems.append("%s must be %d or more (got %d)" % (what, minimum, number))
        return None
    return number


def normalize_table(entry, index, problems):
    """One table of a stream as the plan gives it, checked and with defaults."""
    where = "stream.tables[%d]" % index
    if not isinstance(entry, dict):
        problems.append("%s must be a dict with schema and name (got %r)" % (where, entry))
        return None
    schema, name = entry.get("schema"), entry.get("name")
    if not schema or not name or not isinstance(schema, str) or not isinstance(name, str):
        problems.append("%s needs a schema and a name (got %r)" % (where, entry))
        return None
    key = entry.get("key")
    if key is None:
        key = entry.get("primary_key")
    if key is None:
        key = []
    if isinstance(key, str):
        key = [key]
    if not isinstance(key, list) or not all(isinstance(k, str) and k for k in key):
        problems.append("%s (%s): key must be a list of column names (got %r)" % (where, qualified(schema, name), key))
        key = []
    split = _int(entry.get("split", 1), "%s (%s): split" % (where, qualified(schema, name)), problems, minimum=1) or 1
    split_key = entry.get("split_key") or (key[0] if len(key) == 1 else None)
    return dict(
        schema=schema,
        name=name,
        qualified=qualified(schema, name),
        only=bool(entry.get("only", False)),
        kind=entry.get("kind") or "table",
        key=list(key),
        split=split,
        split_key=split_key,
        bytes=_int(entry.get("bytes"), "%s: bytes" % where, problems, minimum=0) or 0,
        rows=_int(entry.get("rows"), "%s: rows" % where, problems) or 0,
    )


def validate_stream(stream):
    """The stream option, checked: {name, tables: [normalized tables]}; raises StreamError listing every problem."""
    problems = []
    if not isinstance(stream, dict):
        raise StreamError("stream must be a dict with a name and tables (one item of the plan's streams)")
    name = stream.get("name")
    if not isinstance(name, str) or not name:
        problems.append("stream.name is required (the plan's stream name, pgshift_<migration>_s<N>)")
    elif len(name.encode("utf-8")) > MAX_IDENTIFIER:
        problems.append("stream.name %r is longer than %d bytes: PostgreSQL would truncate the publication, slot "
                        "and subscription names" % (name, MAX_IDENTIFIER))
    elif not re.fullmatch(r"[a-z0-9_]+", name):
        problems.append("stream.name %r may hold only lower-case letters, digits and underscores (it names a "
                        "replication slot)" % name)
    tables_in = stream.get("tables")
    if tables_in is None:
        tables_in = []
    if not isinstance(tables_in, list):
        problems.append("stream.tables must be a list of tables")
        tables_in = []
    tables = []
    seen = set()
    for i, entry in enumerate(tables_in):
        table = normalize_table(entry, i, problems)
        if table is None:
            continue
        ident = (table["schema"], table["name"])
        if ident in seen:
            problems.append("%s is listed twice in stream %s" % (table["qualified"], name))
            continue
        seen.add(ident)
        tables.append(table)
    if problems:
        raise StreamError("invalid stream: " + "; ".join(problems))
    return dict(name=name, tables=tables)


def load_application_name(stream):
    """application_name of the load's sessions (exporter and workers), to find a load still running."""
    return (LOAD_APPLICATION_PREFIX + stream).encode("utf-8")[:MAX_IDENTIFIER].decode("utf-8", "ignore")


# ----------------------------------------------------------------------------------------------
# Publication
# ----------------------------------------------------------------------------------------------

def table_ident(table):
    return sql.Identifier(table["schema"], table["name"])


def table_ref(table):
    """A table in a publication or TRUNCATE: ONLY for an inheritance parent's own rows."""
    if table.get("only"):
        return sql.SQL("ONLY {}").format(table_ident(table))
    return table_ident(table)


def publication_diff(desired, current):
    """{add: [tables], drop: [tables]}: what makes the publication hold exactly the stream's tables.

    desired: normalized tables; current: [{schema, name}] now in the publication. Tables
    already published stay untouched (never dropped and added again, never re-copied).
    """
    have = set((t["schema"], t["name"]) for t in current)
    want = set((t["schema"], t["name"]) for t in desired)
    add = [t for t in desired if (t["schema"], t["name"]) not in have]
    drop = sorted((dict(schema=t["schema"], name=t["name"], qualified=qualified(t["schema"], t["name"]), only=True)
                   for t in current if (t["schema"], t["name"]) not in want),
                  key=lambda t: (t["schema"], t["name"]))
    return dict(add=add, drop=drop)


def inheritance_problems(tables, parents_with_children):
    """Tables listed without only: true although they have inheritance children.

    A publication (and a COPY through SELECT) of such a table without ONLY would also
    carry its children, which the plan lists on their own: their rows would come twice.
    parents_with_children: set of (schema, name).
    """
    bad = [t["qualified"] for t in tables if not t["only"] and (t["schema"], t["name"]) in parents_with_children]
    if not bad:
        return None
    return ("%s ha%s inheritance children but %s not marked only: true; publishing or copying it without ONLY "
            "would carry the children's rows too (they are replicated as tables of their own). Use the stream "
            "from pgshift.aurora.pg_replication_plan, or set only: true" % (
                ", ".join(bad), "s" if len(bad) == 1 else "ve", "is" if len(bad) == 1 else "are"))


# ----------------------------------------------------------------------------------------------
# Slot
# ----------------------------------------------------------------------------------------------

def create_slot_command(name, server_version, export=True):
    """The replication-protocol command that creates the stream's logical slot.

    PostgreSQL 15 takes options in parentheses; older servers the bare keywords.
    """
    quoted = '"%s"' % name.replace('"', '""')
    if server_version >= 150000:
        return "CREATE_REPLICATION_SLOT %s LOGICAL pgoutput (SNAPSHOT '%s')" % (quoted, "export" if export else "nothing")
    return "CREATE_REPLICATION_SLOT %s LOGICAL pgoutput %s" % (quoted, "EXPORT_SNAPSHOT" if export else "NOEXPORT_SNAPSHOT")


# ----------------------------------------------------------------------------------------------
# Work units
# ----------------------------------------------------------------------------------------------

def split_key_problem(table, key_type):
    """Why a table cannot be copied in key ranges (None when it can); key_type is its key's type name."""
    if table["split"] <= 1:
        return None
    if not table.get("split_key"):
        return "%s has no single-column primary key: copied in one piece" % table["qualified"]
    if key_type not in INTEGER_TYPES:
        return "%s: key %s is %s, not an integer: copied in one piece" % (
            table["qualified"], table["split_key"], key_type or "missing")
    return None


def split_ranges(lowest, highest, count):
    """[(lower, upper)] half-open key ranges covering every key; the first and last are open-ended.

    lowest/highest: the smallest and largest key under the snapshot (None for an empty table).
    Boundaries are evenly spaced over the key span; never more ranges than keys.
    """
    if lowest is None or highest is None or count <= 1:
        return [(None, None)]
    span = highest - lowest + 1
    count = max(1, min(count, span))
    if count == 1:
        return [(None, None)]
    bounds = [lowest + (i * span) // count for i in range(1, count)]
    ranges = []
    lower = None
    for bound in bounds:
        ranges.append((lower, bound))
        lower = bound
    ranges.append((lower, None))
    return ranges


def work_units(tables, ranges):
    """The copy's work units, largest first (so the workers finish together).

    tables: normalized stream tables; ranges: {(schema, name): [(lower, upper)]} for the tables
    copied in key ranges (others are one unit). A unit of a table copied whole truncates it in
    its own transaction; ranges of a split table are truncated before the copy starts. A unit's
    ``table`` is the table's display name (qualified()), its identity is schema and name.
    """
    units = []
    for table in tables:
        parts = ranges.get((table["schema"], table["name"])) or [(None, None)]
        count = len(parts)
        for i, (lower, upper) in enumerate(parts, 1):
            units.append(dict(
                table=table["qualified"], schema=table["schema"], name=table["name"], only=table["only"],
                unit="all" if count == 1 else "%d/%d" % (i, count), index=i, count=count,
                key=table["split_key"] if count > 1 else None, lower=lower, upper=upper,
                est_bytes=(table["bytes"] or 0) // count, est_rows=max(table["rows"] or 0, 0) // count,
                truncate=count == 1))
    units.sort(key=lambda u: (-u["est_bytes"], -u["est_rows"], u["schema"], u["name"], u["index"]))
    return units


def split_tables(units):
    """The tables copied in several ranges (truncated up front), in a stable order."""
    seen = {}
    for unit in units:
        if unit["count"] > 1:
            seen[(unit["schema"], unit["name"])] = dict(schema=unit["schema"], name=unit["name"], only=True,
                                                        qualified=unit["table"])
    return [seen[k] for k in sorted(seen)]


def copy_format(columns):
    """'binary', unless a column's type is a base type from an extension (or made by a user): then 'text'.

    Built-in types keep their binary format across major versions. Enums (sent as labels),
    domains, composites and arrays are sent in binary too (PostgreSQL only checks the type
    OIDs inside them for built-in types). A base type from an extension has the binary
    format of the extension's version, which may differ between the two servers.
    columns: [{resolved_oid, resolved_typtype}] (the type through a domain and an array).
    """
    for col in columns:
        if (col.get("resolved_oid") or 0) >= FIRST_USER_OID and col.get("resolved_typtype") == "b":
            return "text"
    return "binary"


def has_user_types(columns):
    """Whether a column's type (or its base or element type) is not built in."""
    return any(max(col.get("type_oid") or 0, col.get("resolved_oid") or 0) >= FIRST_USER_OID for col in columns)


def fallback_format(fmt, columns):
    """After a failed binary copy: 'text' when the table has user-defined types (try again), else None (fail)."""
    if fmt == "binary" and has_user_types(columns):
        return "text"
    return None


def _range_condition(unit):
    key = sql.Identifier(unit["key"]) if unit.get("key") else None
    parts = []
    if key is not None and unit.get("lower") is not None:
        parts.append(sql.SQL("{} >= {}").format(key, sql.Literal(unit["lower"])))
    if key is not None and unit.get("upper") is not None:
        parts.append(sql.SQL("{} < {}").format(key, sql.Literal(unit["upper"])))
    if not parts:
        return sql.SQL("")
    return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(parts)


def copy_out(unit, columns, fmt):
    """COPY (SELECT the non-generated columns FROM [ONLY] t [WHERE key range]) TO STDOUT."""
    ident = sql.Identifier(unit["schema"], unit["name"])
    source = sql.SQL("ONLY {}").format(ident) if unit["only"] else ident
    return sql.SQL("COPY (SELECT {} FROM {}{}) TO STDOUT (FORMAT {})").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in columns), source, _range_condition(unit), sql.SQL(fmt))


def copy_in(unit, columns, fmt, freeze=False):
    """COPY t (columns) FROM STDIN; FREEZE when the unit truncated the table in the same transaction."""
    options = sql.SQL("FORMAT {}").format(sql.SQL(fmt))
    if freeze:
        options = options + sql.SQL(", FREEZE")
    return sql.SQL("COPY {} ({}) FROM STDIN ({})").format(
        sql.Identifier(unit["schema"], unit["name"]), sql.SQL(", ").join(sql.Identifier(c) for c in columns), options)


def truncate(tables):
    """TRUNCATE ONLY each table (never a child of another stream)."""
    return sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(
        sql.SQL("ONLY {}").format(table_ident(t)) for t in tables))


# ----------------------------------------------------------------------------------------------
# Keys built after the copy
# ----------------------------------------------------------------------------------------------

def deferrable_keys(tables, constraints, min_bytes):
    """Which primary keys and unique constraints of the target the load drops and builds after its copy.

    Filling a table whose key is in place updates the index row by row (and, with several ranges copied at
    once, leaves it bigger than a build would); one index build after the copy is faster. tables: the
    stream's tables ({schema, name, bytes}); constraints: the target's p/u constraints on them ({schema,
    relname, table (display), name, contype, relkind, is_partition, referenced}). A key is deferred when its
    table is an ordinary, non-partition table of at least min_bytes (estimated) and no foreign key references
    the key (foreign keys come after the load anyway). Returns (deferred constraints, [(table, name, reason
    kept)]).
    """
    size = dict(((t["schema"], t["name"]), t.get("bytes") or 0) for t in tables)
    deferred, kept = [], []
    for c in constraints:
        ident = (c["schema"], c["relname"])
        if ident not in size:
            continue
        if size[ident] < min_bytes:
            continue
        if c["relkind"] != "r" or c["is_partition"]:
            kept.append((c["table"], c["name"], "a partition's key belongs to its partitioned table's"))
        elif c["referenced"]:
            kept.append((c["table"], c["name"], "a foreign key on the target references it"))
        else:
            deferred.append(c)
    return deferred, kept


def drop_key(key):
    return sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
        sql.Identifier(key["schema"], key["relname"]), sql.Identifier(key["name"]))


def key_statements(key):
    """The statements that build a deferred key again: its unique index (the server's own definition,
    pg_get_indexdef), the constraint on that index, and the replica identity when it was the index."""
    table = sql.Identifier(key["schema"], key["relname"])
    kind = sql.SQL("PRIMARY KEY" if key["contype"] == "p" else "UNIQUE")
    timing = sql.SQL("")
    if key["deferrable"]:
        timing = sql.SQL(" DEFERRABLE INITIALLY DEFERRED" if key["initially_deferred"] else " DEFERRABLE")
    stmts = [sql.SQL(key["indexdef"]),
             sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {} USING INDEX {}{}").format(
                 table, sql.Identifier(key["name"]), kind, sql.Identifier(key["index_name"]), timing)]
    if key["replident"]:
        stmts.append(sql.SQL("ALTER TABLE {} REPLICA IDENTITY USING INDEX {}").format(
            table, sql.Identifier(key["name"])))
    return stmts


def column_problems(table, source_columns, target_columns):
    """A column copied from the source that the target lacks (or has as generated) stops the load."""
    target = dict((c["name"], c) for c in target_columns)
    missing = [c["name"] for c in source_columns if c["name"] not in target]
    generated = [c["name"] for c in source_columns if c["name"] in target and target[c["name"]].get("generated")]
    problems = []
    if not source_columns:
        problems.append("%s has no column to copy" % table)
    if missing:
        problems.append("%s lacks column(s) %s on the target" % (table, ", ".join(quote_ident(c) for c in missing)))
    if generated:
        problems.append("%s has column(s) %s generated on the target but not on the source" % (
            table, ", ".join(quote_ident(c) for c in generated)))
    return problems


# ----------------------------------------------------------------------------------------------
# Deciding what to do (resumability)
# ----------------------------------------------------------------------------------------------

def load_summary(progress, lsn=None):
    """{units, copied, tables_copied: set} of the recorded load; only the units of load `lsn` when given."""
    units = [p for p in progress if lsn is None or p.get("lsn") == lsn]
    copied = [p for p in units if p.get("state") == "copied"]
    by_table = {}
    for p in units:
        by_table.setdefault(p["table_name"], []).append(p)
    tables_copied = set(t for t, rows in by_table.items() if all(r.get("state") == "copied" for r in rows))
    return dict(units=len(units), copied=len(copied), tables_copied=tables_copied)


def load_complete(progress, lsn, tables):
    """Whether every unit of every given table was copied under the snapshot of the slot at `lsn`."""
    if lsn is None:
        return False
    summary = load_summary(progress, lsn)
    return summary["units"] > 0 and all(t["qualified"] in summary["tables_copied"] for t in tables)


def load_readiness(rows, pending_keys, streams, since=None):
    """Where the initial loads of `streams` stand, from their pgshift.load_progress rows and the keys still
    recorded in pgshift.deferred_keys (both as loader reads them), for a post stage that waits for them. Pure.

    Returns dict(registered: streams whose units are recorded, done: every stream recorded, copied and its keys
    built, pending: the streams not done, loaded: tables whose every unit is copied and whose keys are built,
    loading: tables not yet,
    failed: [(stream, table, error)] of units that failed after `since` (epoch seconds; older failures belong
    to an earlier run that the next load starts over)).
    """
    wanted = set(streams)
    rows = [r for r in rows if r["stream"] in wanted]
    keyed = set((k["stream"], k["table"]) for k in pending_keys if k["stream"] in wanted)
    registered = set(r["stream"] for r in rows)
    tables = {}
    failed = []
    for r in rows:
        entry = tables.setdefault(r["table_name"], dict(copied=True, streams=set()))
        entry["streams"].add(r["stream"])
        if r["state"] != "copied":
            entry["copied"] = False
        if r["state"] == "failed" and (since is None or (r.get("finished_at") or 0) >= since):
            failed.append((r["stream"], r["table_name"], r.get("error")))
    loaded, loading = set(), set()
    busy = set(s for s, dummy in keyed)
    for table, entry in tables.items():
        ready = entry["copied"] and not any((s, table) in keyed for s in entry["streams"])
        (loaded if ready else loading).add(table)
        if not ready:
            busy.update(entry["streams"])
    done = registered == wanted and not loading and not keyed
    return dict(registered=registered, done=done, loaded=loaded, loading=loading, failed=failed,
                all_registered=registered == wanted, pending=sorted((wanted - registered) | busy))


def stalled_loads(pending, alive, last_alive, now, grace):
    """The streams among `pending` (not loaded yet) whose load has had no session (`alive`: the streams whose load
    application_name is connected) for more than `grace` seconds: their load died without saying so (a killed
    process, a lost controller). `last_alive` {stream: time} is updated in place; a stream seen for the first
    time counts from `now`. Pure but for that dict."""
    stalled = []
    for stream in pending:
        if stream in alive or stream not in last_alive:
            last_alive[stream] = now
        elif now - last_alive[stream] > grace:
            stalled.append(stream)
    return stalled


def table_ready(readiness, table):
    """Whether a post-stage step on `table` may run: the table is loaded, or every stream has recorded its units
    and none loads it (a table no stream copies: a partitioned parent, an unlogged table). A step without a table
    waits for every load."""
    if table is None:
        return readiness["done"]
    if table in readiness["loaded"]:
        return True
    return readiness["all_registered"] and table not in readiness["loading"]


def decide(observed, desired):
    """What pg_native_stream does next, from what it observed (the resume decision).

    observed: publication (None or {tables: [{schema, name}]}), slot (None or
      {confirmed_flush_lsn, plugin, database, active_pid}), database (source database name),
      loading_pids (source sessions of a load of this stream still running), subscription
      (None or {enabled, slot_name}), progress (load_progress rows of this stream).
    desired: name, tables (normalized), copy (bool), enabled (for an existing subscription: True
      enables it, False disables it, None leaves it as it is), create_enabled (a new subscription's).

    Returns {steps: [...], restart: reason or None, adds, drops, loaded (tables the subscription
    starts with)}. Raises StreamError when the stream is in a state only a person should resolve.
    """
    name = desired["name"]
    tables = desired["tables"]
    pub = observed.get("publication")
    slot = observed.get("slot")
    sub = observed.get("subscription")
    progress = observed.get("progress") or []
    current = pub["tables"] if pub else []
    diff = publication_diff(tables, current)
    steps = []
    restart = None
    if slot is not None and (slot.get("plugin") != "pgoutput" or slot.get("database") != observed.get("database")):
        raise StreamError(
            "a replication slot named %s exists on the source but is not a pgoutput slot of database %s (plugin %s, "
            "database %s): it was not made by pgshift for this stream. Drop it or pick another migration name" % (
                name, observed.get("database"), slot.get("plugin"), slot.get("database")))

    if sub is not None:
        if sub.get("slot_name") != name:
            raise StreamError(
                "subscription %s exists on the target but uses slot %r, not %s: it was not made by pgshift for this "
                "stream. Drop it (or remove the stream with state=absent) and run again" % (
                    name, sub.get("slot_name"), name))
        if pub is None:
            raise StreamError(
                "subscription %s exists on the target but its publication is missing on the source, so nothing is "
                "replicated: remove the stream (state=absent) and create it again (the tables are copied again)" % name)
        if slot is None:
            raise StreamError(
                "subscription %s exists on the target but its replication slot is missing on the source (dropped, or "
                "the source was restored): changes since then are lost. Remove the stream (state=absent) and create "
                "it again (the tables are copied again)" % name)
        will_enable = sub.get("enabled")
        if desired["enabled"] is True and not sub.get("enabled"):
            will_enable = True
        if diff["drop"]:
            steps.append("publication_drop_tables")
        if diff["add"]:
            if not will_enable:
                raise StreamError(
                    "tables %s must be added to stream %s, which PostgreSQL copies with ALTER SUBSCRIPTION ... REFRESH "
                    "PUBLICATION, not allowed while the subscription is disabled: run with enable: true" % (
                        ", ".join(t["qualified"] for t in diff["add"]), name))
            steps.append("publication_add_tables")
        if desired["enabled"] is True and not sub.get("enabled"):
            steps.append("subscription_enable")
        if desired["enabled"] is False and sub.get("enabled"):
            steps.append("subscription_disable")
        if diff["add"] or diff["drop"]:
            if diff["add"] and desired["copy"]:
                steps.append("truncate_added")
            steps.append("subscription_refresh")
        return dict(steps=steps, restart=None, adds=diff["add"], drops=diff["drop"],
                    loaded=[t for t in tables if t not in diff["add"]])

    # No subscription yet: the load is done (and the subscription created) in this run.
    if observed.get("loading_pids"):
        raise StreamError(
            "a load of stream %s is running right now (source session(s) %s): wait for it to finish, or stop it "
            "(state=absent) before running again" % (name, ", ".join(str(p) for p in observed["loading_pids"])))
    if pub is None:
        steps.append("publication_create")
    elif diff["drop"]:
        steps.append("publication_drop_tables")
    published = [t for t in tables if t not in diff["add"]] if pub is not None else list(tables)
    adds_later = []
    if slot is not None:
        if not desired["copy"]:
            loaded = published
        elif load_complete(progress, slot.get("confirmed_flush_lsn"), published):
            loaded = published
        else:
            summary = load_summary(progress, slot.get("confirmed_flush_lsn"))
            if summary["units"]:
                restart = ("the load of stream %s did not finish (%d of %d units copied under the snapshot of LSN "
                           "%s): an exported snapshot cannot be imported again once the session that exported it "
                           "ended, so the slot was dropped, the stream's tables truncated on the target and the copy "
                           "started again from a new snapshot" % (
                               name, summary["copied"], summary["units"], slot.get("confirmed_flush_lsn")))
            else:
                restart = ("replication slot %s existed without a finished load for it (a run stopped before its "
                           "copy began or ended): it was dropped, the stream's tables truncated on the target and "
                           "the copy started from a new snapshot" % name)
            steps.append("slot_drop")
            slot = None
    if slot is None:
        loaded = list(tables)
        if pub is not None and diff["add"]:
            steps.append("publication_add_tables")
        if desired["copy"]:
            if restart is None and progress:
                restart = ("an earlier load of stream %s left progress rows but no slot: the stream's tables were "
                           "truncated on the target and copied again from a new snapshot" % name)
            steps.extend(["slot_create_export", "copy"])
        else:
            steps.append("slot_create")
    else:
        adds_later = diff["add"]
        if adds_later and not desired.get("create_enabled", True):
            raise StreamError(
                "tables %s were added to stream %s after its copy: PostgreSQL copies them with ALTER SUBSCRIPTION ... "
                "REFRESH PUBLICATION, which needs the subscription enabled: run with enable: true" % (
                    ", ".join(t["qualified"] for t in adds_later), name))
    steps.append("subscription_create")
    if adds_later:
        steps.append("publication_add_tables")
        if desired["copy"]:
            steps.append("truncate_added")
        steps.append("subscription_refresh")
    return dict(steps=steps, restart=restart, adds=diff["add"], drops=diff["drop"], loaded=loaded)


def absent_steps(observed):
    """What state=absent removes, in order: subscription (detached from its slot), slot, publication, progress."""
    steps = []
    if observed.get("subscription") is not None:
        if observed["subscription"].get("enabled"):
            steps.append("subscription_disable")
        if observed["subscription"].get("slot_name"):
            steps.append("subscription_detach")
        steps.append("subscription_drop")
    if observed.get("loading_pids") or observed.get("target_loading_pids"):
        steps.append("load_stop")
    if observed.get("slot") is not None:
        steps.append("slot_drop")
    if observed.get("publication") is not None:
        steps.append("publication_drop")
    if observed.get("progress"):
        steps.append("progress_clear")
    return steps


# ----------------------------------------------------------------------------------------------
# Status
# ----------------------------------------------------------------------------------------------

def lsn_to_int(lsn):
    """'16/B374D848' -> 97500059720; None stays None."""
    if lsn is None or lsn == "":
        return None
    text = str(lsn)
    high, sep, low = text.partition("/")
    if not sep:
        raise ValueError("%r is not an LSN (write it as X/Y, as pg_current_wal_lsn() shows it)" % text)
    try:
        return (int(high, 16) << 32) + int(low, 16)
    except ValueError:
        raise ValueError("%r is not an LSN (write it as X/Y, as pg_current_wal_lsn() shows it)" % text) from None


def int_to_lsn(value):
    if value is None:
        return None
    return "%X/%X" % (value >> 32, value & 0xFFFFFFFF)


def lag_bytes(current_lsn, confirmed_flush_lsn):
    """Source WAL not yet confirmed by the subscriber (None when either LSN is unknown)."""
    cur, done = lsn_to_int(current_lsn), lsn_to_int(confirmed_flush_lsn)
    if cur is None or done is None:
        return None
    return max(cur - done, 0)


def lag_seconds(lag, replay_lag, walsender_streaming, receipt_age):
    """Seconds the subscriber is behind.

    - nothing left to confirm: 0;
    - the walsender's replay_lag when it measures one;
    - a streaming walsender whose replay_lag is NULL has had everything it sent confirmed
      (PostgreSQL clears the lag times then): 0;
    - no walsender: the time since the subscriber last heard from the source (target clock);
    - otherwise unknown (None).
    """
    if lag is not None and lag == 0:
        return 0.0
    if replay_lag is not None:
        return round(float(replay_lag), 3)
    if walsender_streaming:
        return 0.0
    if receipt_age is not None:
        return round(float(receipt_age), 3)
    return None


def unit_totals(units, now_epoch=None):
    """Load progress of a set of units: counts, rows, bytes, rates and an ETA.

    units: load_progress rows ({state, rows, bytes, est_bytes, est_rows, started_at,
    finished_at} with times as epoch seconds). The ETA assumes the rate so far holds; a unit
    being copied counts for its streamed bytes against its estimate (capped at 99 %).
    """
    counts = dict((s, 0) for s in UNIT_STATES)
    rows = nbytes = 0
    starts = [u["started_at"] for u in units if u.get("started_at") is not None]
    ends = [u["finished_at"] for u in units if u.get("finished_at") is not None]
    weight_total = weight_done = 0.0
    for u in units:
        counts[u.get("state") if u.get("state") in counts else "pending"] += 1
        rows += u.get("rows") or 0
        nbytes += u.get("bytes") or 0
        weight = float(max(u.get("est_bytes") or 0, 1))
        weight_total += weight
        if u.get("state") == "copied":
            weight_done += weight
        elif u.get("state") == "copying":
            weight_done += weight * min(float(u.get("bytes") or 0) / weight, 0.99)
    total = len(units)
    done = total > 0 and counts["copied"] == total
    started = min(starts) if starts else None
    if done and ends:
        end = max(ends)
    else:
        end = now_epoch
    elapsed = (end - started) if (started is not None and end is not None) else None
    rate_rows = rate_bytes = eta = None
    if elapsed and elapsed > 0:
        rate_rows = round(rows / elapsed, 1)
        rate_bytes = round(nbytes / elapsed, 1)
        fraction = weight_done / weight_total if weight_total else 0.0
        if done:
            eta = 0.0
        elif fraction > 0 and counts["failed"] == 0:
            eta = round(elapsed * (1.0 - fraction) / fraction, 1)
    elif done:
        eta = 0.0
    return dict(units=total, pending=counts["pending"], copying=counts["copying"], copied=counts["copied"],
                failed=counts["failed"], rows=rows, bytes=nbytes, done=done,
                percent=round(100.0 * weight_done / weight_total, 1) if weight_total else (100.0 if done else 0.0),
                elapsed_seconds=round(elapsed, 3) if elapsed is not None else None,
                rows_per_second=rate_rows, bytes_per_second=rate_bytes, eta_seconds=eta)


def table_state(load_state, sync_state, subscription_enabled, keys_pending=False):
    """One table's state: pending, copying, indexing (its keys being built after the copy), copied, failed,
    syncing, streaming or stopped."""
    if sync_state is not None:
        if sync_state != "r":
            return "syncing"
        return "streaming" if subscription_enabled else "stopped"
    if load_state == "copied" and keys_pending:
        return "indexing"
    if load_state in ("pending", "copying", "copied", "failed"):
        return load_state
    return "pending"


def classify_stream(obs):
    """(state, message) of one stream from what status observed.

    obs: publication (bool), slot (None or {wal_status, confirmed_flush_lsn, active}),
    subscription (None or {enabled, worker_pid, worker_age_seconds, apply_error_count, sync_error_count}),
    table_states [table_state()...], load (unit_totals() or None).
    States: missing, error, copying, disabled, starting, streaming.
    """
    name = obs.get("name")
    sub = obs.get("subscription")
    slot = obs.get("slot")
    load = obs.get("load")
    errors = 0
    if sub is not None:
        errors = (sub.get("apply_error_count") or 0) + (sub.get("sync_error_count") or 0)
    if load and load.get("failed"):
        return "error", "the initial load of %s failed on %d unit(s): see load_progress.error; run pg_native_stream " \
                        "again to restart the copy" % (name, load["failed"])
    if sub is None:
        if load and not load.get("done"):
            return "copying", "initial load of %s: %d of %d unit(s) copied (%s %%)" % (
                name, load["copied"], load["units"], load["percent"])
        if load and obs.get("keys_pending"):
            return "copying", "initial load of %s copied; building %d key(s) dropped for the copy" % (
                name, obs["keys_pending"])
        missing = [what for what, there in (("publication", obs.get("publication")), ("replication slot", slot),
                                            ("subscription", sub)) if not there]
        return "missing", "stream %s has no %s: run pg_native_stream state=present" % (name, ", no ".join(missing))
    lsn = (slot or {}).get("confirmed_flush_lsn")
    if slot is None:
        return "error", ("the replication slot of %s is missing on the source: its subscription cannot stream and "
                         "changes are lost; recreate the stream (pg_native_stream state=absent, then present)" % name)
    if not obs.get("publication"):
        return "error", ("the publication of %s is missing on the source: nothing is replicated; recreate the stream "
                         "(pg_native_stream state=absent, then present)" % name)
    if slot.get("wal_status") == "lost":
        return "error", ("the replication slot of %s lost WAL it needed (max_slot_wal_keep_size exceeded) at LSN %s: "
                         "the stream cannot resume; recreate it (state=absent, then present)" % (name, lsn))
    if not sub.get("enabled"):
        if errors:
            return "error", ("subscription %s is disabled after %d apply/sync error(s); it stopped at LSN %s (the "
                             "slot's confirmed_flush_lsn). The error is in the target's server log: fix its cause, "
                             "then enable it (pg_native_stream enable: true); to skip the failing transaction use "
                             "ALTER SUBSCRIPTION %s SKIP (lsn = <its finish LSN from the log>)" % (
                                 name, errors, lsn, name))
        return "disabled", ("subscription %s is disabled at LSN %s: changes are not applied and the slot retains WAL; "
                            "enable it (pg_native_stream enable: true) when the target is ready" % (name, lsn))
    syncing = [s for s in obs.get("table_states") or [] if s == "syncing"]
    if not sub.get("worker_pid"):
        if errors:
            return "error", ("subscription %s is enabled but its apply worker is not running and %d apply/sync "
                             "error(s) were counted: it fails and restarts in a loop at LSN %s; the error is in the "
                             "target's server log" % (name, errors, lsn))
        return "starting", "subscription %s is enabled; its apply worker is starting (LSN %s)" % (name, lsn)
    age = sub.get("worker_age_seconds")
    if errors and age is not None and age < RECENT_RESTART_SECONDS:
        return "error", ("subscription %s counted %d apply/sync error(s) and its apply worker started %.0f s ago: it "
                         "is probably failing and restarting in a loop at LSN %s; the error is in the target's server "
                         "log" % (name, errors, age, lsn))
    if syncing:
        return "copying", "%d table(s) of %s are being synchronised by PostgreSQL" % (len(syncing), name)
    return "streaming", "%s streams from LSN %s" % (name, lsn)


def caught_up(state, lag, seconds, max_lag_bytes, max_lag_seconds):
    """A stream is caught up when it streams and both lags are known and within the limits."""
    if state != "streaming" or lag is None or seconds is None:
        return False
    return lag <= max_lag_bytes and seconds <= max_lag_seconds


def barrier_reached(confirmed_flush_lsn, barrier):
    """Whether the subscriber has confirmed every change up to the barrier LSN."""
    done, target = lsn_to_int(confirmed_flush_lsn), lsn_to_int(barrier)
    if done is None or target is None:
        return False
    return done >= target


def totals(streams):
    """Totals over the streams' status."""
    lags = [s["lag_bytes"] for s in streams if s.get("lag_bytes") is not None]
    seconds = [s["lag_seconds"] for s in streams if s.get("lag_seconds") is not None]
    states = dict((state, 0) for state in STREAM_STATES)
    for s in streams:
        states[s["state"]] = states.get(s["state"], 0) + 1
    return dict(
        streams=len(streams),
        states=states,
        lag_bytes=sum(lags) if lags else None,
        max_lag_bytes=max(lags) if lags else None,
        max_lag_seconds=max(seconds) if seconds else None,
        retained_bytes=sum(s.get("retained_bytes") or 0 for s in streams),
        errors=sum(1 for s in streams if s["state"] == "error"),
        tables=sum(len(s.get("tables") or []) for s in streams),
        rows_copied=sum((s.get("load") or {}).get("rows") or 0 for s in streams),
        bytes_copied=sum((s.get("load") or {}).get("bytes") or 0 for s in streams),
    )
