# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sequences on both sides: what they will hand out next and what they must hand out.

Logical replication does not carry sequences. Before the target takes writes every
sequence there must give a value that is (a) at least what the source would give next
and (b) above every value already in a column that takes its values from it.

gather_sequences() reads (I/O); next_value() and sequence_plan() decide (pure).
Validation requires every entry of sequence_plan(..., gap=0) to be "ok"; the cutover
calls sequence_plan with a gap and runs ``setval(seq, set_to, true)`` where set_to is set.

A sequence is its schema and its name (``sequence`` is only their display form): the two sides
are matched on (schema, name), and the cutover finds the sequence to set by them.

Descending sequences (negative increment) are handled: "ahead" means lower, the column
bound is the column's minimum, and set_to still makes nextval() return required_next.
"""

from __future__ import annotations

from ansible_collections.pgshift.aurora.plugins.module_utils.scope import qualified
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import db

try:
    from psycopg import sql
except ImportError:  # pragma: no cover - the module reports the missing library
    sql = None

SYSTEM_SCHEMA_FILTER = (
    "n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp%%'"
)
INTEGER_TYPES = ("int2", "int4", "int8", "numeric")
VALUE_BATCH = 200

PLAN_STATUSES = ("ok", "behind", "missing_on_target")


def _sequence_rows(conn, schemas):
    return db.rows(
        conn,
        "SELECT c.oid::bigint AS oid, n.nspname AS schema, c.relname AS name, s.seqincrement AS increment_by, "
        "s.seqmin AS min_value, s.seqmax AS max_value, s.seqcycle AS cycle, s.seqstart AS start_value "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_sequence s ON s.seqrelid = c.oid "
        "WHERE c.relkind = 'S' AND " + SYSTEM_SCHEMA_FILTER + " "
        "AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass "
        "                AND d.objid = c.oid AND d.deptype = 'e') "
        "AND (%(schemas)s::text[] IS NULL OR n.nspname = ANY(%(schemas)s::text[])) "
        "ORDER BY n.nspname, c.relname",
        {"schemas": list(schemas) if schemas else None},
    )


def _column_rows(conn, oids):
    """(sequence oid, table, column) for owned (serial/identity) and nextval() default columns."""
    return db.rows(
        conn,
        "WITH uses AS ("
        "  SELECT d.objid AS seq, d.refobjid AS rel, d.refobjsubid::int2 AS attnum FROM pg_depend d "
        "  WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass "
        "    AND d.refobjsubid > 0 AND d.deptype IN ('a', 'i') AND d.objid = ANY(%(oids)s::oid[]) "
        "  UNION "
        "  SELECT d.refobjid, ad.adrelid, ad.adnum FROM pg_depend d JOIN pg_attrdef ad ON ad.oid = d.objid "
        "  WHERE d.classid = 'pg_attrdef'::regclass AND d.refclassid = 'pg_class'::regclass "
        "    AND d.refobjid = ANY(%(oids)s::oid[])"
        ") "
        "SELECT u.seq::bigint AS seq, n.nspname AS schema, c.relname AS table, c.relkind::text AS relkind, "
        "c.relispartition AS is_partition, a.attname AS column, "
        "coalesce(bt.typname, t.typname) AS type "
        "FROM uses u JOIN pg_class c ON c.oid = u.rel JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = u.rel AND a.attnum = u.attnum AND NOT a.attisdropped "
        "JOIN pg_type t ON t.oid = a.atttypid LEFT JOIN pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype "
        "WHERE c.relkind IN ('r', 'p') "
        "ORDER BY n.nspname, c.relname, a.attnum",
        {"oids": list(oids)},
    )


def _values(conn, rows):
    """{oid: (last_value, is_called)} read from the sequences themselves (exact, unlike pg_sequences)."""
    result = {}
    for start in range(0, len(rows), VALUE_BATCH):
        parts = [
            sql.SQL("SELECT {oid}::bigint AS oid, last_value, is_called FROM {seq}").format(
                oid=sql.Literal(r["oid"]), seq=sql.Identifier(r["schema"], r["name"]))
            for r in rows[start:start + VALUE_BATCH]
        ]
        for r in db.rows(conn, sql.SQL(" UNION ALL ").join(parts)):
            result[r["oid"]] = (r["last_value"], r["is_called"])
    return result


def keep_columns(columns):
    """Drop partitions whose partitioned parent is listed for the same sequence (its max covers them)."""
    has_parent = set((c["seq"], c["column"]) for c in columns if c["relkind"] == "p")
    return [c for c in columns if not (c.get("is_partition") and (c["seq"], c["column"]) in has_parent)]


def _column_bounds(conn, columns):
    """[(max, min)] of each column (None, None for a column that is not of an integer type), read with one
    query per VALUE_BATCH columns: a round trip per column would add up inside the cutover's write pause."""
    bounds = [(None, None)] * len(columns)
    wanted = [i for i, col in enumerate(columns) if col["type"] in INTEGER_TYPES]
    for start in range(0, len(wanted), VALUE_BATCH):
        parts = []
        for i in wanted[start:start + VALUE_BATCH]:
            col = columns[i]
            rel = sql.Identifier(col["schema"], col["table"])
            if col["relkind"] == "r":
                rel = sql.SQL("ONLY {}").format(rel)
            parts.append(sql.SQL("SELECT {i}::int AS i, max({c})::numeric AS hi, min({c})::numeric AS lo FROM {rel}")
                         .format(i=sql.Literal(i), c=sql.Identifier(col["column"]), rel=rel))
        for row in db.rows(conn, sql.SQL(" UNION ALL ").join(parts)):
            bounds[row["i"]] = ((None if row["hi"] is None else int(row["hi"])),
                                (None if row["lo"] is None else int(row["lo"])))
    return bounds


def gather_sequences(conn, schemas=None):
    """Every sequence in the database (optionally only in `schemas`) with the columns fed by it.

    Returns dicts: sequence (display), schema, name, last_value, is_called, increment_by,
    min_value, max_value, start_value, cycle, columns [{table (display), table_schema, table_name, column,
    max, min}].
    """
    rows = _sequence_rows(conn, schemas)
    if not rows:
        return []
    values = _values(conn, rows)
    columns = keep_columns(_column_rows(conn, [r["oid"] for r in rows]))
    by_seq = {}
    for col, (hi, lo) in zip(columns, _column_bounds(conn, columns)):
        by_seq.setdefault(col["seq"], []).append(dict(table=qualified(col["schema"], col["table"]),
                                                      table_schema=col["schema"], table_name=col["table"],
                                                      column=col["column"], max=hi, min=lo))
    result = []
    for r in rows:
        last_value, is_called = values.get(r["oid"], (None, False))
        result.append(dict(
            sequence=qualified(r["schema"], r["name"]), schema=r["schema"], name=r["name"],
            last_value=None if last_value is None else int(last_value), is_called=bool(is_called),
            increment_by=int(r["increment_by"]), min_value=int(r["min_value"]), max_value=int(r["max_value"]),
            start_value=int(r["start_value"]), cycle=bool(r["cycle"]), columns=by_seq.get(r["oid"], [])))
    return result


# ----------------------------------------------------------------------------------------------
# Pure decisions


def next_value(seq):
    """The value nextval() would return next.

    A sequence never called (is_called false) returns last_value itself; otherwise
    last_value + increment, wrapping to min/max for a CYCLE sequence. For an exhausted
    sequence without CYCLE (nextval() would fail) the arithmetic value past the bound is
    returned, so it still compares as "ahead". None when last_value is unknown.
    """
    last = seq.get("last_value")
    if last is None:
        start = seq.get("start_value")
        return None if start is None else int(start)
    last = int(last)
    if not seq.get("is_called"):
        return last
    inc = int(seq.get("increment_by") or 1)
    value = last + inc
    if seq.get("cycle"):
        if inc > 0 and seq.get("max_value") is not None and value > int(seq["max_value"]):
            return int(seq["min_value"])
        if inc < 0 and seq.get("min_value") is not None and value < int(seq["min_value"]):
            return int(seq["max_value"])
    return value


def _bound(columns, key, pick):
    values = [c.get(key) for c in columns or [] if c.get(key) is not None]
    return pick(values) if values else None


def sequence_plan(source_seqs, target_seqs, gap=0):
    """Per source sequence: what the target must hand out next, and the setval() to get there.

    Returns [{sequence, schema, name, source_next, target_next, increment_by, column_max, column_min,
    required_next, set_to, status}] in source order; the target's sequence is the one with the same
    schema and name. status is "ok" (the target is already
    at or past required_next), "behind" (set_to says what to pass to setval(seq, set_to, true))
    or "missing_on_target". Column bounds are taken from both sides (the larger for ascending,
    the smaller for descending). required_next for ascending sequences is
    max(source_next, column_max + 1) + gap; for descending min(source_next, column_min - 1) - gap.
    An entry also holds "problem" when set_to would leave the sequence's range.
    """
    gap = int(gap or 0)
    if gap < 0:
        raise ValueError("gap must be 0 or more, not %r" % gap)
    targets = dict(((s["schema"], s["name"]), s) for s in target_seqs)
    plan = []
    for src in source_seqs:
        tgt = targets.get((src["schema"], src["name"]))
        inc = int(src.get("increment_by") or 1)
        source_next = next_value(src)
        entry = dict(sequence=qualified(src["schema"], src["name"]), schema=src["schema"], name=src["name"],
                     source_next=source_next, target_next=None, increment_by=inc,
                     column_max=None, column_min=None, required_next=None, set_to=None)
        cols = list(src.get("columns") or []) + list((tgt or {}).get("columns") or [])
        entry["column_max"] = _bound(cols, "max", max)
        entry["column_min"] = _bound(cols, "min", min)
        if inc > 0:
            candidates = [v for v in (source_next, None if entry["column_max"] is None else entry["column_max"] + 1)
                          if v is not None]
            required = max(candidates) + gap if candidates else None
        else:
            candidates = [v for v in (source_next, None if entry["column_min"] is None else entry["column_min"] - 1)
                          if v is not None]
            required = min(candidates) - gap if candidates else None
        entry["required_next"] = required
        if tgt is None:
            entry["status"] = "missing_on_target"
            plan.append(entry)
            continue
        if int(tgt.get("increment_by") or 1) != inc:
            entry["problem"] = "increment differs: %s on the source, %s on the target" % (inc, tgt.get("increment_by"))
        target_next = next_value(tgt)
        entry["target_next"] = target_next
        if required is None or (target_next is not None and (target_next >= required if inc > 0 else target_next <= required)):
            entry["status"] = "ok"
            plan.append(entry)
            continue
        entry["status"] = "behind"
        set_to = required - inc
        low, high = tgt.get("min_value"), tgt.get("max_value")
        if low is not None and set_to < int(low):
            # setval() below the minimum is refused; the minimum itself makes nextval() return
            # min + increment, which is still at or past required_next.
            set_to = int(low)
        if high is not None and set_to > int(high):
            set_to = int(high)
            if inc > 0:
                entry["problem"] = "required next value %s is beyond the sequence's maximum %s" % (required, high)
        if inc < 0 and low is not None and required < int(low):
            entry["problem"] = "required next value %s is below the sequence's minimum %s" % (required, low)
        entry["set_to"] = set_to
        plan.append(entry)
    return plan


def plan_problems(plan):
    """Sentences for every entry not "ok" (what validation reports)."""
    lines = []
    for e in plan:
        if e["status"] == "missing_on_target":
            lines.append("sequence %s is missing on the target" % e["sequence"])
        elif e["status"] == "behind":
            lines.append("sequence %s is behind on the target: next value %s, needs at least %s (source next %s, "
                         "column %s %s)" % (e["sequence"], e["target_next"], e["required_next"], e["source_next"],
                                            "max" if e["increment_by"] > 0 else "min",
                                            e["column_max"] if e["increment_by"] > 0 else e["column_min"]))
        if e.get("problem"):
            lines.append("sequence %s: %s" % (e["sequence"], e["problem"]))
    return lines
