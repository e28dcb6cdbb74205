# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The replication plan: which physical table goes to which stream (pure, no I/O).

``build_plan(tables, excluded, opts)`` turns the classified, in-scope relations
(scope.select over catalog.relations) and a few extra facts read by the module
(write rates, primary key columns, whether inheritance parents hold rows of their
own, the streams that already exist) into the plan: N streams of tables balanced
by size and write rate, what is not replicated and why, what the filters left out,
and each stream's AWS DMS table mapping. Nothing here talks to a database.

Units of work are physical tables: declarative partitions leaf by leaf (the
partitioned parent holds no rows), inheritance children one by one, and an
inheritance parent for its own rows only (``only: true``, ONLY semantics), so no
row is ever selected twice.
"""

from __future__ import annotations

import math
import re

from ansible_collections.pgshift.aurora.plugins.module_utils import names, prereqs
from ansible_collections.pgshift.aurora.plugins.module_utils.names import stream_name, stream_number
from ansible_collections.pgshift.aurora.plugins.module_utils.scope import qualified, split_qualified

# split_bytes: tables above it are copied in key ranges by several workers at once. 0 (the default): every
# table is one unit, written with COPY FREEZE; why, with the lab's figures, in split_hint.
DEFAULT_SPLIT_BYTES = 0
MAX_SPLIT = 32
DEFAULT_LOAD_RATE = 50 * 1000 * 1000
INTEGER_TYPES = ("int2", "int4", "int8")


class PlanError(Exception):
    """The plan cannot be made; the message names the tables or options at fault and the fix."""


# ----------------------------------------------------------------------------------------------
# Names
# ----------------------------------------------------------------------------------------------

def validate_migration_name(name):
    if not names.valid_migration_name(name):
        raise PlanError("migration_name %r is not valid: use 1 to 40 characters among lower-case letters, digits "
                        "and underscores ([a-z0-9_]{1,40}); it names the publications, slots, subscriptions and "
                        "DMS tasks of the migration" % (name,))
    return name


def dms_task_identifier(name):
    """A DMS ReplicationTaskIdentifier for a stream: letters, digits and single hyphens only."""
    return re.sub(r"-+", "-", name.replace("_", "-")).strip("-")


# ----------------------------------------------------------------------------------------------
# Units of work
# ----------------------------------------------------------------------------------------------

def _rate(rates, oid):
    rates = rates or {}
    return float(rates.get(oid, rates.get(str(oid), 0.0)) or 0.0)


def _has_own_rows(t, own_rows):
    known = (own_rows or {}).get(t["oid"])
    if known is None:
        known = (own_rows or {}).get(str(t["oid"]))
    if known is None:
        return prereqs.est_rows(t) > 0, False
    return bool(known), True


MIN_READING_WINDOW_SECONDS = 1.0


def _writes(t):
    return (t.get("ins") or 0) + (t.get("upd") or 0) + (t.get("del") or 0)


def write_counter_reading(tables, taken_at, stats_since, database):
    """A reading of the write counters (inserts + updates + deletes) of `tables` (catalog.relations() rows), to
    measure write rates against later without waiting: the assessment returns one, the plan takes it. Times are
    the server's clock, in epoch seconds; `stats_since` is when its statistics started counting."""
    return dict(taken_at=round(float(taken_at), 3), stats_since=round(float(stats_since), 3), database=database,
                tables=[[t["schema"], t["name"], _writes(t)] for t in tables])


def rates_since_reading(reading, tables, now, stats_since, database):
    """({oid: writes per second}, how) over the time since an earlier reading of the same server's counters, or
    (None, why it cannot be used): another database, statistics reset or server restarted since (the counters
    started again), a counter lower than before, a reading too recent to say anything. A table the reading does
    not know (created since) counts from 0."""
    if not isinstance(reading, dict) or not isinstance(reading.get("tables"), list):
        return None, "no earlier reading of the write counters"
    try:
        taken_at, since = float(reading["taken_at"]), float(reading["stats_since"])
        earlier = dict(((str(e[0]), str(e[1])), int(e[2])) for e in reading["tables"])
    except (KeyError, TypeError, ValueError, IndexError):
        return None, "the earlier reading of the write counters is not in the expected form"
    if reading.get("database") != database:
        return None, "the earlier reading is of database %s, not %s" % (reading.get("database"), database)
    if abs(since - float(stats_since)) > 1:
        return None, "the statistics were reset or the server restarted since the earlier reading"
    window = float(now) - taken_at
    if window < MIN_READING_WINDOW_SECONDS:
        return None, "the earlier reading is only %.1f s old" % max(window, 0)
    rates = {}
    for t in tables:
        before = earlier.get((t["schema"], t["name"]), 0)
        if _writes(t) < before:
            return None, "the write counters of %s went down since the earlier reading (statistics reset)" % (
                qualified(t["schema"], t["name"]))
        rates[t["oid"]] = (_writes(t) - before) / window
    return rates, "average over the %ds since the assessment's reading" % round(window)


def classify_units(tables, engine, own_rows=None):
    """Split the in-scope relations into (units, not_replicated, parents, warnings).

    units: the physical tables the streams carry (dicts of the input, with ``only``).
    not_replicated: what logical replication (or DMS) cannot carry, with the reason.
    parents: relations that hold no rows of their own here and are covered by their
    partitions or children.
    """
    units, not_replicated, parents, warnings = [], [], [], []
    for t in tables:
        entry = dict(schema=t["schema"], name=t["name"], qualified=t["qualified"], kind=t["kind"], root=t["root"])
        if t["kind"] == "foreign":
            entry["reason"] = ("foreign table: its rows live on another server; logical replication and DMS do not "
                               "read it. Recreate it on the target (the schema copy does) and check the server "
                               "it points to")
            not_replicated.append(entry)
        elif t["kind"] == "matview":
            entry["reason"] = ("materialized view: not replicated; refresh it on the target at cutover "
                               "(REFRESH MATERIALIZED VIEW)")
            not_replicated.append(entry)
        elif t["relkind"] == "p":
            entry["covered_by"] = "partitions"
            entry["reason"] = "partitioned table: holds no rows; its leaf partitions are planned one by one"
            parents.append(entry)
        elif t["relkind"] != "r" or t.get("persistence") == "t":
            continue
        elif t.get("persistence") == "u":
            entry["reason"] = ("unlogged table: writes no WAL, so logical replication never sees its rows; copy it "
                               "at cutover if the target needs its contents, or make it logged (ALTER TABLE ... "
                               "SET LOGGED)")
            not_replicated.append(entry)
        elif t.get("has_children") and engine == "dms":
            # DMS reads a table with a plain SELECT, which for an inheritance parent returns every
            # child's rows too: selected with its children it duplicates them. Only its children go.
            own, measured = _has_own_rows(t, own_rows)
            if own:
                entry["reason"] = ("inheritance parent with rows of its own: AWS DMS reads an inheritance parent "
                                   "together with all its children (there is no ONLY in DMS), so it is excluded "
                                   "from every table mapping and its children are selected one by one; its own "
                                   "rows need a separate path (engine native for this table, or move them into a "
                                   "child table before the migration)")
                not_replicated.append(entry)
                warnings.append("%s: AWS DMS reads inheritance parents including their children, so the parent is "
                                "excluded from the table mappings (explicit exclude rule) and its children are "
                                "selected one by one; the parent holds rows of its own%s, which DMS will NOT "
                                "replicate: they need a separate path" % (
                                    t["qualified"], "" if measured else " (by its statistics)"))
            else:
                entry["covered_by"] = "children"
                entry["reason"] = ("inheritance parent without rows of its own: excluded from the DMS table mappings "
                                   "(DMS would read its children's rows through it); its children are planned one "
                                   "by one")
                parents.append(entry)
        else:
            unit = dict(t)
            unit["only"] = bool(t.get("has_children"))
            units.append(unit)
    return units, not_replicated, parents, warnings


def blocking_problems(units, engine, allow_no_pk_dms=False):
    """Messages for the tables that stop the plan (empty when none)."""
    problems = []
    lacking = [u for u in units if prereqs.lacks_replica_identity(u)]
    no_identity = sorted(u["qualified"] for u in lacking)
    if no_identity:
        problems.append(
            "%d table(s) have neither a primary key nor a usable replica identity, so their UPDATEs and DELETEs "
            "cannot be replicated (and once published, UPDATE and DELETE on them fail on the source): %s. Fix: "
            "give them REPLICA IDENTITY FULL (list them in migration_replica_identity_full and run "
            "prepare_source, pgshift.aurora.pg_logical_prereqs replica_identity_full), add a primary key, or "
            "exclude them (migration_exclude_tables)" % (len(no_identity), ", ".join(no_identity)))
    if engine == "dms" and not allow_no_pk_dms:
        lacking_oids = set(u["oid"] for u in lacking)
        no_pk = sorted(u["qualified"] for u in units if not u.get("has_pk") and u["oid"] not in lacking_oids)
        if no_pk:
            problems.append(
                "%d table(s) have no primary key, and AWS DMS ignores UPDATE and DELETE on such tables even with "
                "REPLICA IDENTITY FULL: %s. Fix: add a primary key, exclude them (migration_exclude_tables), use "
                "engine native, or accept the loss of their UPDATEs and DELETEs with allow_no_pk_dms: true" % (
                    len(no_pk), ", ".join(no_pk)))
    return problems


# ----------------------------------------------------------------------------------------------
# Existing assignment
# ----------------------------------------------------------------------------------------------

def existing_from_publications(migration_name, publication_names, publication_tables):
    """What the source's publications already carry.

    publication_names: every publication whose name starts with the migration's prefix.
    publication_tables: rows of pg_publication_tables {pubname, schemaname, tablename}.
    Returns (stream numbers that exist, [(number, schema, table, source)]).
    """
    numbers = set()
    for name in publication_names:
        n = stream_number(migration_name, name)
        if n is not None:
            numbers.add(n)
    entries = []
    for row in publication_tables:
        n = stream_number(migration_name, row["pubname"])
        if n is not None:
            entries.append((n, row["schemaname"], row["tablename"], "publication %s" % row["pubname"]))
    return numbers, entries


def existing_from_option(migration_name, existing):
    """The ``existing`` option ({qualified table: stream name}) as (stream numbers, entries)."""
    numbers = set()
    entries = []
    for key, value in sorted((existing or {}).items()):
        try:
            schema, name = split_qualified(key)
        except ValueError as exc:
            raise PlanError("existing: %s" % exc) from None
        n = stream_number(migration_name, str(value))
        if n is None:
            raise PlanError("existing: %s is assigned to %r, which is not a stream of migration %s: stream names "
                            "are %s (N from 1)" % (key, value, migration_name, stream_name(migration_name, 1)[:-1]
                                                   + "<N>"))
        numbers.add(n)
        entries.append((n, schema, name, "existing"))
    return numbers, entries


def resolve_existing(entries, tables, units, migration_name):
    """Map existing assignments onto units: ({unit oid: stream number}, warnings).

    A partitioned table named in an assignment (a publication of its root) stands for every
    leaf below it. A unit assigned to two different streams is an error: its changes would
    be applied twice.
    """
    by_name = {(t["schema"], t["name"]): t for t in tables}
    unit_oids = {u["oid"] for u in units}
    assigned = {}
    sources = {}
    warnings = []
    for number, schema, name, source in entries:
        t = by_name.get((schema, name))
        label = qualified(schema, name)
        if t is None:
            warnings.append("%s is assigned to %s (%s) but is not a migrated table (excluded by the filters, or "
                            "dropped): it is not planned; remove it from that stream" % (
                                label, stream_name(migration_name, number), source))
            continue
        if t["oid"] in unit_oids:
            targets = [t["oid"]]
        elif t["relkind"] == "p":
            targets = [u["oid"] for u in units if t["oid"] in (u.get("ancestors") or [])]
        else:
            warnings.append("%s is assigned to %s (%s) but is not replicated by this plan (%s): it is left out of "
                            "the streams" % (label, stream_name(migration_name, number), source, t["kind"]))
            continue
        for oid in targets:
            if oid in assigned and assigned[oid] != number:
                unit = next(u for u in units if u["oid"] == oid)
                raise PlanError(
                    "%s is assigned to two streams, %s (%s) and %s (%s): a table replicated by two streams has its "
                    "changes applied twice. Keep it in one stream (ALTER PUBLICATION ... DROP TABLE on the other, "
                    "or fix the existing option)" % (
                        unit["qualified"], stream_name(migration_name, assigned[oid]), sources[oid],
                        stream_name(migration_name, number), source))
            assigned[oid] = number
            sources[oid] = source
    return assigned, warnings


# ----------------------------------------------------------------------------------------------
# Balance
# ----------------------------------------------------------------------------------------------

def shares(units, rates):
    """{oid: (bytes share, writes share)} of each unit in the whole migration."""
    total_bytes = float(sum(u.get("bytes") or 0 for u in units))
    total_writes = float(sum(_rate(rates, u["oid"]) for u in units))
    result = {}
    for u in units:
        b = (u.get("bytes") or 0) / total_bytes if total_bytes else 0.0
        w = _rate(rates, u["oid"]) / total_writes if total_writes else 0.0
        result[u["oid"]] = (round(b, 9), round(w, 9))
    return result


def balance(units, stream_count, rates=None, assigned=None):
    """{oid: stream number}: assigned units keep their stream, the others are placed greedily.

    Largest first by weight (bytes share + writes share, ties by name); each goes to the
    stream where it adds least to the sum of squares of the streams' byte and write
    shares, i.e. the stream with the lowest bytes*b + writes*w. A stream already heavy in
    writes thus does not get the next hot partition even when it is light in bytes.
    Ties: the lighter stream, then the one with fewer tables, then the lower number.
    """
    assigned = dict(assigned or {})
    share = shares(units, rates)
    load = {n: [0.0, 0.0, 0] for n in range(1, stream_count + 1)}
    for u in units:
        n = assigned.get(u["oid"])
        if n is not None:
            b, w = share[u["oid"]]
            load[n][0] += b
            load[n][1] += w
            load[n][2] += 1
    todo = [u for u in units if u["oid"] not in assigned]
    todo.sort(key=lambda u: (-round(sum(share[u["oid"]]), 9), u["schema"], u["name"]))
    for u in todo:
        b, w = share[u["oid"]]
        best = min(load, key=lambda n: (round(load[n][0] * b + load[n][1] * w, 12),
                                        round(load[n][0] + load[n][1], 12), load[n][2], n))
        assigned[u["oid"]] = best
        load[best][0] += b
        load[best][1] += w
        load[best][2] += 1
    return assigned


# ----------------------------------------------------------------------------------------------
# Per table and per stream
# ----------------------------------------------------------------------------------------------

def split_hint(nbytes, primary_key, split_bytes):
    """(split key, number of key ranges) for the loader: ranges only on a single integer key, and only with a
    split_bytes above 0 (not by default).

    Ranges run in parallel, but only the transaction that truncates a table may use COPY FREEZE: the rows of
    ranges are not frozen, so the key build after the copy (and later reads and VACUUM) sets their hint bits,
    which with data checksums writes every page to the WAL again (pgbench_accounts at scale 50, 570 MB: 6
    ranges 4.5 s copy + 4.5 s key, one unit 3.9 s + 1.8 s). Measured on the lab at pgbench scale 200
    (2 cores, source and target on the same machine), pgbench_accounts (2.3 GB), the modules path from an
    empty target to streaming, one run each: 3 ranges 33.8 s, whole 27.6 s. Ranges pay only where the
    target has idle cores for a second COPY (a single COPY FROM keeps one backend busy) and the
    controller's relay is not the limit."""
    if len(primary_key or []) != 1 or primary_key[0].get("base_type") not in INTEGER_TYPES:
        return None, 1
    key = primary_key[0]["name"]
    if not split_bytes or split_bytes <= 0 or (nbytes or 0) <= split_bytes:
        return key, 1
    return key, min(MAX_SPLIT, int(math.ceil(float(nbytes) / split_bytes)))


def load_seconds(nbytes, rate):
    return round(float(nbytes or 0) / float(rate), 1) if rate and rate > 0 else None


def dms_like(pattern, name):
    """Whether a DMS include/exclude pattern matches name, as AWS DMS documents its wildcards: % any run of
    characters, _ one character, [..] one of a set (so [_] is a literal underscore, [%] a literal %)."""
    regex = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "%":
            regex.append(".*")
        elif ch == "_":
            regex.append(".")
        elif ch == "[" and "]" in pattern[i + 2:]:
            end = pattern.index("]", i + 2)
            inner = pattern[i + 1:end]
            regex.append("[" + "".join(c if c == "-" and 0 < k < len(inner) - 1 else re.escape(c)
                                       for k, c in enumerate(inner)) + "]")
            i = end
        else:
            regex.append(re.escape(ch))
        i += 1
    return re.fullmatch("".join(regex), name, re.S) is not None


DMS_WILDCARDS = "[%_"


def dms_literal(name):
    """A schema or table name as a DMS include/exclude pattern that matches that name only: each wildcard
    character ([, % and _) inside a one-character set ([_] is DMS's documented literal underscore)."""
    return "".join("[%s]" % ch if ch in DMS_WILDCARDS else ch for ch in name)


def _rule(number, schema, table, action):
    return {"rule-type": "selection", "rule-id": str(number), "rule-name": str(number),
            "object-locator": {"schema-name": schema, "table-name": table}, "rule-action": action}


def table_mapping(stream_tables, excluded_parents):
    """AWS DMS table mapping of one stream: one explicit selection rule per table, no wildcard.

    ``explicit`` selects exactly one object, by its schema and table names as they are (AWS DMS: "you can
    select and include only one object that corresponds to an explicitly specified table and schema"),
    so a name holding ``%``, ``_`` or ``[`` selects that table only. With ``include`` and ``exclude`` the
    names are patterns (``%`` any characters, ``_`` one, ``[..]`` a set): excluded_parents, the
    inheritance parents of these tables (DMS reads a parent with its children's rows), get an exclude
    rule whose names are escaped with dms_literal(), so that it never drops another table (a parent
    ``ev_a`` written as it is would also exclude ``ev2a``).
    """
    rules = []
    for t in sorted(stream_tables, key=lambda x: (x["schema"], x["name"])):
        rules.append(_rule(len(rules) + 1, t["schema"], t["name"], "explicit"))
    for p in sorted(excluded_parents, key=lambda x: (x["schema"], x["name"])):
        rules.append(_rule(len(rules) + 1, dms_literal(p["schema"]), dms_literal(p["name"]), "exclude"))
    return {"rules": rules}


def table_entry(u, rates, primary_keys, split_bytes, placed):
    pk = (primary_keys or {}).get(u["oid"]) or (primary_keys or {}).get(str(u["oid"])) or []
    key, ranges = split_hint(u.get("bytes") or 0, pk, split_bytes)
    return dict(schema=u["schema"], name=u["name"], qualified=u["qualified"], kind=u["kind"], root=u["root"],
                only=u["only"], bytes=u.get("bytes") or 0, rows=prereqs.est_rows(u),
                writes_per_second=round(_rate(rates, u["oid"]), 3), primary_key=[c["name"] for c in pk],
                split_key=key, split=ranges, placed=placed)


# ----------------------------------------------------------------------------------------------
# The plan
# ----------------------------------------------------------------------------------------------

PLAN_DEFAULTS = dict(engine="native", streams=0, existing=None, publication_names=(), publication_tables=(),
                     write_rates=None, primary_keys=None, own_rows=None, split_bytes=DEFAULT_SPLIT_BYTES,
                     load_rate_bytes_per_second=DEFAULT_LOAD_RATE, allow_no_pk_dms=False, write_rate_method=None,
                     vcpus=None)


def stream_count(requested, suggested, existing_numbers, migration_name):
    """How many streams: the requested number (0: the suggestion), never fewer than exist."""
    highest = max(existing_numbers) if existing_numbers else 0
    if requested and requested > 0:
        if requested < highest:
            raise PlanError(
                "streams is %d but stream %s already exists: a table cannot move to another stream while it "
                "replicates (its changes would be applied by two streams, or lost in between), so streams cannot "
                "be merged. Set streams to %d or more (0 keeps the existing ones), or remove the migration's "
                "streams (cleanup) and plan again" % (requested, stream_name(migration_name, highest), highest))
        return requested
    return max(1, suggested, highest)


def build_plan(tables, excluded, opts):
    """The replication plan, or PlanError.

    tables: the in-scope relations (scope.select); excluded: the relations the filters left
    out (classified). opts: migration_name and the keys of PLAN_DEFAULTS:
      engine (native|dms), streams (0 = automatic), existing ({table: stream name}),
      publication_names / publication_tables (what the source's publications carry, native),
      write_rates ({oid: writes/s}), primary_keys ({oid: [{name, type, base_type}]}),
      own_rows ({oid: bool} for inheritance parents), split_bytes, load_rate_bytes_per_second,
      allow_no_pk_dms, write_rate_method (reported as is), vcpus (the fewer of the two instances', or None: the
      automatic count is capped by prereqs.vcpu_stream_cap, a larger count is warned about).
    """
    o = dict(PLAN_DEFAULTS)
    o.update(opts)
    name = validate_migration_name(o.get("migration_name"))
    engine = o["engine"]
    if engine not in ("native", "dms"):
        raise PlanError("engine must be native or dms, not %r" % (engine,))
    if o["streams"] is None or o["streams"] < 0:
        raise PlanError("streams must be 0 (automatic) or a number of streams from 1 (got %r)" % (o["streams"],))
    rates = o["write_rates"] or {}
    tables = sorted(tables, key=lambda t: (t["schema"], t["name"]))

    units, not_replicated, parents, warnings = classify_units(tables, engine, o["own_rows"])
    problems = blocking_problems(units, engine, o["allow_no_pk_dms"])
    if problems:
        raise PlanError("the replication plan stops: " + "; and ".join(problems))

    numbers, entries = set(), []
    if engine == "native":
        pub_numbers, pub_entries = existing_from_publications(name, o["publication_names"], o["publication_tables"])
        numbers |= pub_numbers
        entries += pub_entries
    opt_numbers, opt_entries = existing_from_option(name, o["existing"])
    numbers |= opt_numbers
    entries += opt_entries
    assigned, existing_warnings = resolve_existing(entries, tables, units, name)
    warnings += existing_warnings

    size_facts = dict(write_rates={str(u["oid"]): _rate(rates, u["oid"]) for u in units})
    suggested = prereqs.suggest_streams(prereqs.sizes(size_facts, units), vcpus=o["vcpus"])
    count = stream_count(o["streams"], suggested, numbers, name)
    over = prereqs.streams_over_vcpus(count, o["vcpus"])
    if over:
        warnings.append(over)
    kept = set(assigned)
    placement = balance(units, count, rates, assigned)

    by_oid = {t["oid"]: t for t in tables}
    # Inheritance parents DMS must not read: excluded from every mapping that selects one of their children.
    dms_parents = {t["oid"]: t for t in tables if t["relkind"] == "r" and t.get("has_children")}
    share = shares(units, rates)
    streams = []
    for n in range(1, count + 1):
        members = sorted((u for u in units if placement[u["oid"]] == n), key=lambda u: (u["schema"], u["name"]))
        entries_n = [table_entry(u, rates, o["primary_keys"], o["split_bytes"],
                                 "existing" if u["oid"] in kept else "new") for u in members]
        selectable = [u for u in members if not (u.get("has_children") and u["relkind"] == "r")]
        parent_oids = sorted({a for u in members for a in (u.get("ancestors") or []) + [u["oid"]] if a in dms_parents})
        mapping = table_mapping(selectable, [by_oid[a] for a in parent_oids])
        nbytes = sum(e["bytes"] for e in entries_n)
        sname = stream_name(name, n)
        if not members:
            warnings.append("%s has no table (more streams than tables to place): lower streams, or leave it "
                            "empty until new tables are placed in it; a DMS task needs at least one table" % sname)
        streams.append(dict(
            name=sname, number=n, dms_task_identifier=dms_task_identifier(sname),
            tables=entries_n, table_count=len(entries_n), bytes=nbytes, rows=sum(e["rows"] for e in entries_n),
            writes_per_second=round(sum(_rate(rates, u["oid"]) for u in members), 3),
            bytes_share=round(sum(share[u["oid"]][0] for u in members), 4),
            writes_share=round(sum(share[u["oid"]][1] for u in members), 4),
            estimated_load_seconds=load_seconds(nbytes, o["load_rate_bytes_per_second"]),
            table_mapping=mapping))

    excluded_list = [dict(schema=t["schema"], name=t["name"], qualified=t["qualified"], kind=t["kind"])
                     for t in sorted(excluded, key=lambda x: (x["schema"], x["name"]))]
    totals = dict(
        streams=count, tables=len(units), bytes=sum(s["bytes"] for s in streams),
        rows=sum(s["rows"] for s in streams),
        writes_per_second=round(sum(_rate(rates, u["oid"]) for u in units), 3),
        estimated_load_seconds=max([s["estimated_load_seconds"] or 0 for s in streams] or [0]),
        kept=len(kept), placed=len(units) - len(kept), not_replicated=len(not_replicated),
        parents=len(parents), excluded=len(excluded_list))
    return dict(
        migration_name=name, engine=engine, stream_count=count, suggested_streams=suggested, vcpus=o["vcpus"],
        stream_cap=prereqs.vcpu_stream_cap(o["vcpus"]),
        existing_streams=sorted(numbers), streams=streams, not_replicated=not_replicated, parents=parents,
        excluded=excluded_list, warnings=warnings, totals=totals, write_rate_method=o["write_rate_method"],
        split_bytes=o["split_bytes"], load_rate_bytes_per_second=o["load_rate_bytes_per_second"])
