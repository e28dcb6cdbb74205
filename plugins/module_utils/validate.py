# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validation decisions (pure): how rows are hashed, how ranges split, what differs, the verdict.

The comparison (pg_validate) works per physical table:

1. the key space is cut into ranges (a single integer primary key by arithmetic, any other key by
   boundaries read from the source in key order);
2. each range is hashed on both sides in parallel: ``count(*)`` and ``sum(hashtextextended(row, 0))``
   over a canonical text of every row (the sum of 64-bit row hashes, not a XOR: a duplicated row
   changes it, and the order of rows does not matter);
3. a range whose count or sum differs is split again, down to ranges small enough to fetch each
   row's key and hash, which are then listed as missing (on the target), extra (on the target) or
   changed (with the columns that differ).

Tables without a primary key are hashed whole; when they differ, the rows are grouped by their hash
on both sides and the multisets compared (a duplicated row shows as one extra copy).

The canonical row text is ``ROW(e1, e2, ...)::text`` where every ``e`` is a per-type expression that
gives the same text for the same value on every PostgreSQL version, under the session settings of
SESSION_SETTINGS (UTC, ISO dates, hex bytea): floats as their IEEE bytes, numerics without trailing
zeros (13+), jsonb as its canonical text, bytea and long text as md5, money as numeric.
"""

from __future__ import annotations

import math

from ansible_collections.pgshift.aurora.plugins.module_utils.scope import qualified, quote_ident

try:
    from psycopg import sql
except ImportError:  # pragma: no cover - the module reports the missing library
    sql = None

# Settings every comparing session uses on both sides: the text of a value does not depend on them after.
SESSION_SETTINGS = (
    ("TimeZone", "UTC"),
    ("DateStyle", "ISO, YMD"),
    ("IntervalStyle", "postgres"),
    ("extra_float_digits", "3"),
    ("bytea_output", "hex"),
    ("statement_timeout", "0"),
    ("lock_timeout", "0"),
)

INTEGER_KEY_TYPES = ("int2", "int4", "int8")
FLOAT_TYPES = ("float4", "float8")
LONG_TEXT_BYTES = 2048  # text values longer than this enter the row text as their md5
TEXT_TYPES = ("text", "varchar", "bpchar", "xml", "json")
MODES = ("live", "quiesced")
RESULTS = ("equal", "different", "error")
DIFFERENCE_KINDS = ("missing", "extra", "changed")


# ----------------------------------------------------------------------------------------------
# Canonical values


def column_expression(column, min_version):
    """The SQL expression whose text is the column's canonical value on any server version.

    column: {name, base_type (typname, domain resolved), category (pg_type.typcategory), typtype}.
    min_version: the lower server_version_num of the two sides (functions used must exist on both).
    """
    ident = sql.Identifier(column["name"])
    base = column.get("base_type") or ""
    category = column.get("category") or ""
    if base == "float8":
        return sql.SQL("float8send({})").format(ident)
    if base == "float4":
        return sql.SQL("float4send({})").format(ident)
    if base == "numeric":
        if min_version >= 130000:
            return sql.SQL("trim_scale({})").format(ident)
        return ident
    if base == "money":
        return sql.SQL("{}::numeric").format(ident)
    if base == "jsonb":
        return ident  # jsonb's text is canonical (keys sorted, no duplicates, one spacing)
    if base == "bytea":
        return sql.SQL("md5({})").format(ident)
    if base in TEXT_TYPES:
        typmod = column.get("typmod")
        if base in ("varchar", "bpchar") and typmod is not None and 4 < typmod <= 4 + LONG_TEXT_BYTES // 4:
            # bounded short enough (at most 4 bytes a character): the value itself, no length test
            return ident
        return sql.SQL("CASE WHEN octet_length({c}::text) > {n} THEN md5({c}::text) ELSE {c}::text END").format(
            c=ident, n=sql.Literal(LONG_TEXT_BYTES))
    if category == "A" and base.startswith("_") and base[1:] in FLOAT_TYPES:
        # arrays of floats: element by element, as their exact bytes
        send = "float8send" if base[1:] == "float8" else "float4send"
        return sql.SQL("(SELECT array_agg({f}(x) ORDER BY o) FROM unnest({c}) WITH ORDINALITY AS u(x, o))").format(
            f=sql.SQL(send), c=ident)
    if category == "A" and base == "_numeric" and min_version >= 130000:
        return sql.SQL("(SELECT array_agg(trim_scale(x) ORDER BY o) FROM unnest({c}) WITH ORDINALITY AS u(x, o))").format(
            c=ident)
    # timestamptz (UTC), timestamps, dates, intervals, arrays of them, enums, uuids, composites: the
    # output functions are stable across versions under SESSION_SETTINGS (the row's text calls them).
    return ident


def row_text(columns, min_version):
    """ROW(e1, e2, ...)::text: the canonical text of one row (NULL and '' stay distinct)."""
    return sql.SQL("ROW({})::text").format(sql.SQL(", ").join(column_expression(c, min_version) for c in columns))


def row_hash(columns, min_version):
    """A 64-bit hash of the canonical row (hashtextextended: stable across versions, as hash partitioning)."""
    return sql.SQL("hashtextextended({}, 0)").format(row_text(columns, min_version))


def common_columns(source_columns, target_columns):
    """(columns compared, problems): same names in source order; a type that differs is a problem."""
    tgt = dict((c["name"], c) for c in target_columns)
    src_names = set(c["name"] for c in source_columns)
    problems = []
    compared = []
    for c in source_columns:
        other = tgt.get(c["name"])
        if other is None:
            problems.append("column %s is missing on the target" % c["name"])
            continue
        if (c.get("base_type"), c.get("category")) != (other.get("base_type"), other.get("category")):
            problems.append("column %s is %s on the source and %s on the target" % (c["name"], c.get("type"), other.get("type")))
            continue
        compared.append(c)
    for c in target_columns:
        if c["name"] not in src_names:
            problems.append("column %s is only on the target" % c["name"])
    return compared, problems


# ----------------------------------------------------------------------------------------------
# Ranges of the key


def key_mode(key_columns):
    """'int' for a single integer key (split by arithmetic), 'ordered' for any other key, None without a key."""
    if not key_columns:
        return None
    if len(key_columns) == 1 and key_columns[0].get("base_type") in INTEGER_KEY_TYPES:
        return "int"
    return "ordered"


def split_int_range(lo, hi, parts):
    """Cut [lo, hi) into at most `parts` contiguous non-empty integer ranges."""
    if hi <= lo:
        return [(lo, hi)]
    parts = max(1, min(int(parts), hi - lo))
    width = hi - lo
    bounds = [lo + (width * i) // parts for i in range(parts)] + [hi]
    return [(bounds[i], bounds[i + 1]) for i in range(parts) if bounds[i] < bounds[i + 1]]


def int_ranges(lowest, highest, est_rows, chunk_rows):
    """First-level ranges for an integer key: [lowest, highest] cut into chunks of about chunk_rows rows.

    The first range starts unbounded and the last one ends unbounded, so rows below or above what
    the source held when the bounds were read are still compared.
    """
    if lowest is None or highest is None:
        return [dict(lo=None, hi=None)]
    span = highest - lowest + 1
    rows = est_rows if est_rows and est_rows > 0 else span
    parts = max(1, int(math.ceil(min(rows, span) / float(max(1, chunk_rows)))))
    pieces = split_int_range(lowest, highest + 1, parts)
    ranges = [dict(lo=[str(a)], hi=[str(b)]) for a, b in pieces]
    ranges[0]["lo"] = None
    ranges[-1]["hi"] = None
    return ranges


def ranges_from_boundaries(boundaries, lo=None, hi=None):
    """Contiguous ranges [lo, b1), [b1, b2), ... [bn, hi) from sorted key tuples (as text lists)."""
    points = [lo] + [list(b) for b in boundaries] + [hi]
    ranges = []
    for i in range(len(points) - 1):
        if i > 0 and i < len(points) - 1 and points[i] == points[i + 1]:
            continue
        ranges.append(dict(lo=points[i], hi=points[i + 1]))
    return ranges


def split_range(rng, mode, parts):
    """Sub-ranges of an integer-keyed range by arithmetic; None when it must be split by boundaries
    (ordered keys, or an integer range with an open end: the caller reads the bounds)."""
    if mode != "int" or rng.get("lo") is None or rng.get("hi") is None:
        return None
    lo, hi = int(rng["lo"][0]), int(rng["hi"][0])
    pieces = split_int_range(lo, hi, parts)
    if len(pieces) <= 1:
        return None
    return [dict(lo=[str(a)], hi=[str(b)]) for a, b in pieces]


def boundary_step(rows, parts):
    """Every how many rows a boundary is taken to cut `rows` rows into about `parts` ranges."""
    return max(1, int(math.ceil(rows / float(max(1, parts)))))


def range_condition(key_columns, rng):
    """WHERE clause text for a range over (a prefix of) the key: (k...) >= (lo...) AND (k...) < (hi...)."""
    parts = []
    for bound, op in (("lo", ">="), ("hi", "<")):
        values = rng.get(bound)
        if values is None:
            continue
        cols = key_columns[:len(values)]
        left = sql.SQL(", ").join(sql.Identifier(c["name"]) for c in cols)
        right = sql.SQL(", ").join(sql.SQL("{}::{}").format(sql.Literal(v), sql.SQL(c["type"])) for c, v in zip(cols, values))
        parts.append(sql.SQL("ROW({}) {} ROW({})").format(left, sql.SQL(op), right))
    if not parts:
        return sql.SQL("true")
    return sql.SQL(" AND ").join(parts)


def describe_range(rng):
    lo = "(%s)" % ", ".join(rng["lo"]) if rng.get("lo") is not None else "start"
    hi = "(%s)" % ", ".join(rng["hi"]) if rng.get("hi") is not None else "end"
    return "[%s, %s)" % (lo, hi)


def needs_split(source, target, row_level_rows):
    """A differing range is split further while either side holds more rows than row_level_rows."""
    return max(source["count"], target["count"]) > row_level_rows


def differs(source, target):
    return (source["count"], str(source["sum"] or 0)) != (target["count"], str(target["sum"] or 0))


# ----------------------------------------------------------------------------------------------
# Rows that differ


def key_text(key):
    return "(%s)" % ", ".join("NULL" if v is None else str(v) for v in key)


def diff_rows(source_rows, target_rows):
    """Row-level difference of one range: rows are (key tuple, hash).

    Returns [{kind: missing|extra|changed, key}] in key order of the source then the target's extras.
    """
    src = dict((tuple(k), h) for k, h in source_rows)
    tgt = dict((tuple(k), h) for k, h in target_rows)
    found = []
    for k, h in source_rows:
        k = tuple(k)
        if k not in tgt:
            found.append(dict(kind="missing", key=list(k)))
        elif tgt[k] != h:
            found.append(dict(kind="changed", key=list(k)))
    for k, h in target_rows:
        if tuple(k) not in src:
            found.append(dict(kind="extra", key=list(k)))
    return found


def diff_multisets(source_counts, target_counts):
    """Rows of a table without a key: {row hash: (count, sample text)} per side.

    Returns [{kind, key (the row's text), count}]: missing = copies on the source not on the target,
    extra = copies on the target not on the source (a duplicated row is one extra copy).
    """
    found = []
    for h in sorted(set(source_counts) | set(target_counts), key=str):
        s_count, s_text = source_counts.get(h, (0, None))
        t_count, t_text = target_counts.get(h, (0, None))
        if s_count > t_count:
            found.append(dict(kind="missing", key=[s_text], count=s_count - t_count, _hash=h, _s=s_count, _t=t_count))
        elif t_count > s_count:
            found.append(dict(kind="extra", key=[t_text], count=t_count - s_count, _hash=h, _s=s_count, _t=t_count))
    return found


def settle(differences, now):
    """Live mode: sort the differences of a round into (confirmed, in_flight, resolved count).

    Each difference carries what the round saw, _s on the source snapshot and _t on the target
    snapshot (taken after the target confirmed the source snapshot's LSN), as row hashes (keyed
    tables, None for no row) or copy counts (_hash: tables without a key). `now` is the source read
    after the target snapshot: {key tuple: hash} or {row hash: count}.
    A difference is resolved when the target's row equals the source's current one, confirmed
    when the source row did not change since its snapshot (the target, past that LSN, should hold
    it), in flight otherwise (written meanwhile: compare again).
    """
    confirmed, in_flight, resolved = [], [], 0
    for d in differences:
        if "_hash" in d:
            current = now.get(d["_hash"], 0)
        else:
            current = now.get(tuple(d["key"]))
        if d.get("_t") == current:
            resolved += 1
        elif d.get("_s") == current:
            confirmed.append(d)
        else:
            in_flight.append(d)
    return confirmed, in_flight, resolved


# Live mode's lock step: the differences the snapshots could not settle (or settled only by a value seen twice on
# the source) are checked once more with their source rows locked (SELECT ... FOR SHARE) while every slot confirms
# the WAL position read under the lock; the target must then hold exactly the locked values.

LOCK_VERDICTS = ("resolved", "confirmed", "in_flight")


def lock_candidates(differences):
    """The differences the lock step can settle: rows of a table with a key. A table without a key has no row
    to lock: its differences (they carry _hash) keep the snapshot settle."""
    return [d for d in differences if "_hash" not in d and d.get("key") is not None]


def lock_batches(groups, max_rows):
    """Cut [(table, [differences])] into lock batches: (table, [differences]) with at most max_rows rows each.

    One table per batch (its own short source transaction: an application transaction that touches several
    tables cannot deadlock with it through rows of two tables), tables in the order given, a table with more
    rows split into several batches. max_rows 0 (or less) disables the lock step: no batch.
    """
    if not max_rows or max_rows <= 0:
        return []
    batches = []
    for table, differences in groups:
        for start in range(0, len(differences), max_rows):
            batches.append((table, differences[start:start + max_rows]))
    return batches


def lockable(groups, may_lock):
    """(groups kept, tables refused): a table the login may not lock rows of (may_lock[table] false: SELECT ...
    FOR SHARE needs the UPDATE privilege on it) is left out of the lock step."""
    kept, refused = [], []
    for table, differences in groups:
        (kept if may_lock.get(table) else refused).append((table, differences))
    return kept, [table for table, differences in refused]


def _locked_difference(d, source, target):
    """A copy of d saying what the locked check saw: the kind from the locked source row and the target row."""
    kind = "missing" if target is None else ("extra" if source is None else "changed")
    out = dict(d, kind=kind, _s=source, _t=target)
    if kind != "changed":
        out.pop("columns", None)
    return out


def settle_locked(differences, locked, target, after):
    """Settle differences of one table whose source rows were locked (FOR SHARE) until every slot confirmed the
    WAL position read while holding the locks, and the target was read after that.

    locked: {key tuple: row hash} of the rows the lock found on the source (they cannot change until the locks are
    released, so the target, past that position, must hold exactly these values); target: {key tuple: row hash}
    read on the target after the catch-up; after: {key tuple: row hash} of the source read again after the target
    read, for the keys the lock found no row for (an absent row cannot be locked: an insert may come meanwhile).
    Returns {key tuple: (verdict, difference)}, verdict in LOCK_VERDICTS: resolved (the target holds the locked
    row, or neither side holds one), confirmed (a real difference; the copy of the difference says what was seen)
    or in_flight (a row without a lock written meanwhile: the next round compares it again).
    """
    outcome = {}
    for d in differences:
        k = tuple(d["key"])
        t = target.get(k)
        if k in locked:
            if t == locked[k]:
                outcome[k] = ("resolved", d)
            else:
                outcome[k] = ("confirmed", _locked_difference(d, locked[k], t))
        elif t is None or after.get(k) == t:
            outcome[k] = ("resolved", d)
        elif k not in after:
            outcome[k] = ("confirmed", _locked_difference(d, None, t))  # on the target only, before and after
        else:
            outcome[k] = ("in_flight", d)
    return outcome


def after_lock(confirmed, in_flight, outcome):
    """Merge the lock step's verdicts into a range's (confirmed, in_flight) from the snapshot settle.

    outcome: {key tuple: (verdict, difference)} from settle_locked() for the keys the lock step checked; a
    difference it did not check (no key, table refused, batch failed) keeps its classification.
    Returns (confirmed, in_flight, resolved count, settled count) where settled counts what the lock step
    resolved or confirmed.
    """
    new_confirmed, new_in_flight, resolved, settled = [], [], 0, 0
    for was, d in [("confirmed", d) for d in confirmed] + [("in_flight", d) for d in in_flight]:
        found = None if "_hash" in d else outcome.get(tuple(d["key"]))
        verdict, d = found if found else (was, d)
        if found and verdict != "in_flight":
            settled += 1
        if verdict == "resolved":
            resolved += 1
        elif verdict == "confirmed":
            new_confirmed.append(d)
        else:
            new_in_flight.append(d)
    return new_confirmed, new_in_flight, resolved, settled


LOCK_FAILURES = {
    "55P03": "the rows stayed locked by other transactions longer than live_lock_timeout (%gs)",
    "57014": "a statement of the lock step ran longer than live_lock_timeout (%gs)",
    "40P01": "a deadlock with another transaction (an application locking these rows in another order): "
             "the lock step gave way",
    "42501": "the login may not lock these rows: SELECT ... FOR SHARE needs the UPDATE privilege on the table "
             "(the master user has it as a member of the tables' owner role)",
    "25006": "the source is read-only (a standby?): rows cannot be locked there",
    "25P03": "the lock step's transaction stayed idle too long and the server ended the session",
}


def lock_failure(table, sqlstate, message, timeout):
    """Why a lock batch of table (or tables, their display names) fell back to the snapshot settle, from the error
    the source returned."""
    text = LOCK_FAILURES.get(sqlstate)
    if text is None:
        text = "the lock step failed: %s" % (message or "unknown error").strip().splitlines()[0]
    elif "%g" in text:
        text = text % timeout
    return "%s: %s; settled without the lock" % (table, text)


def lock_not_caught_up(table, lsn, timeout):
    return ("%s: the slots did not confirm the locked position %s within live_lock_timeout (%gs); the locks were "
            "released and its differences are settled without the lock" % (table, lsn, timeout))


def lock_refused(table):
    return ("%s: the login has no UPDATE privilege on the table, which SELECT ... FOR SHARE needs (connect as a "
            "member of its owner role, or grant it); its differences are settled without the lock" % table)


def public(difference):
    """A difference without the fields used only while comparing."""
    return dict((k, v) for k, v in difference.items() if not k.startswith("_"))


def changed_columns(source_values, target_values):
    """Names of the columns whose canonical values differ ({name: hash} per side)."""
    return [name for name in source_values if source_values.get(name) != target_values.get(name)]


# ----------------------------------------------------------------------------------------------
# Live mode, rate, progress


def lsn_reached(confirmed, wanted_int, lsn_to_int):
    """Whether every confirmed_flush_lsn is at or past wanted (an int); False without any stream."""
    values = [lsn_to_int(c) for c in confirmed if c]
    return bool(values) and len(values) == len(confirmed) and min(values) >= wanted_int


def throttle_delay(rows_done, elapsed, max_rows_per_second):
    """Seconds to sleep so that rows_done rows take at least rows_done / max_rows_per_second seconds."""
    if not max_rows_per_second or max_rows_per_second <= 0:
        return 0.0
    return max(0.0, rows_done / float(max_rows_per_second) - elapsed)


def progress(rows_done, rows_expected, elapsed):
    """{rows, rows_expected, rows_per_second, eta_seconds, percent} (estimates from the catalog)."""
    rate = rows_done / elapsed if elapsed > 0 else 0.0
    remaining = max(0, (rows_expected or 0) - rows_done)
    eta = remaining / rate if rate > 0 else None
    percent = min(100.0, 100.0 * rows_done / rows_expected) if rows_expected else None
    return dict(rows=rows_done, rows_expected=rows_expected, rows_per_second=round(rate, 1),
                eta_seconds=None if eta is None else round(eta, 1),
                percent=None if percent is None else round(percent, 1))


# ----------------------------------------------------------------------------------------------
# Schema


def schema_diff(source, target):
    """Differences between two schema descriptions.

    Each side: {"tables": {(schema, name): {"columns": [[name, type]], "constraints": {name: definition},
    "indexes": {name: definition}, "triggers": {name: {"enabled": code, "function": name}}}}}: tables are
    matched on schema and name, objects of a table on their name. Returns [{kind, object, difference, source,
    target}] where difference is "missing_on_target", "extra_on_target" or "differs"; object is the display
    form (schema.table, schema.table.column, "schema.table: object", each name quoted as quote_ident()).
    """
    found = []

    def add(kind, obj, difference, src=None, tgt=None):
        found.append(dict(kind=kind, object=obj, difference=difference, source=src, target=tgt))

    stables, ttables = source.get("tables", {}), target.get("tables", {})
    for ident in sorted(set(stables) | set(ttables)):
        s, t = stables.get(ident), ttables.get(ident)
        table = qualified(*ident)
        if t is None:
            add("table", table, "missing_on_target")
            continue
        if s is None:
            add("table", table, "extra_on_target")
            continue
        scols = dict((c[0], c[1]) for c in s.get("columns", []))
        tcols = dict((c[0], c[1]) for c in t.get("columns", []))
        for name in [c[0] for c in s.get("columns", [])] + [c[0] for c in t.get("columns", []) if c[0] not in scols]:
            obj = "%s.%s" % (table, quote_ident(name))
            if name not in tcols:
                add("column", obj, "missing_on_target", scols[name])
            elif name not in scols:
                add("column", obj, "extra_on_target", None, tcols[name])
            elif scols[name] != tcols[name]:
                add("column", obj, "differs", scols[name], tcols[name])
        for kind, key in (("constraint", "constraints"), ("index", "indexes"), ("trigger", "triggers")):
            sobj, tobj = s.get(key, {}), t.get(key, {})
            for name in sorted(set(sobj) | set(tobj)):
                obj = "%s: %s" % (table, quote_ident(name))
                if name not in tobj:
                    add(kind, obj, "missing_on_target", sobj[name])
                elif name not in sobj:
                    add(kind, obj, "extra_on_target", None, tobj[name])
                elif sobj[name] != tobj[name]:
                    add(kind, obj, "differs", sobj[name], tobj[name])
    return found


TRIGGER_STATES = {"O": "enabled", "D": "disabled", "R": "enabled replica", "A": "enabled always"}


def describe_schema_difference(d):
    what = {"missing_on_target": "missing on the target", "extra_on_target": "only on the target"}.get(d["difference"])
    if what:
        return "%s %s is %s" % (d["kind"], d["object"], what)
    if d["kind"] == "trigger" and isinstance(d["source"], dict) and d["source"].get("enabled") != (d["target"] or {}).get("enabled"):
        return "trigger %s is %s on the source and %s on the target" % (
            d["object"], TRIGGER_STATES.get(d["source"].get("enabled"), d["source"].get("enabled")),
            TRIGGER_STATES.get(d["target"].get("enabled"), d["target"].get("enabled")))
    return "%s %s differs: %s on the source, %s on the target" % (d["kind"], d["object"], d["source"], d["target"])


# ----------------------------------------------------------------------------------------------
# Verdict and report


def sequences_gate(setting, mode):
    """Whether sequences behind make a NO-GO: 'auto' gates in quiesced mode only (live: the cutover syncs them)."""
    if setting == "always":
        return True
    if setting == "never":
        return False
    return mode == "quiesced"


def verdict(tables, sequence_plan, schema_differences, gate_sequences):
    """(verdict, reasons): GO when every table is equal, no schema difference and (when gated) every sequence ok."""
    reasons = []
    for t in tables:
        if t["result"] == "error":
            reasons.append("%s could not be compared: %s" % (t["table"], t.get("error")))
        elif t["result"] != "equal":
            reasons.append("%s differs (%d difference(s)%s)" % (
                t["table"], t.get("difference_count", len(t.get("differences") or [])),
                ", first: %s" % describe_difference(t["differences"][0]) if t.get("differences") else ""))
    for d in schema_differences:
        reasons.append(describe_schema_difference(d))
    if gate_sequences:
        for s in sequence_plan:
            if s["status"] != "ok":
                reasons.append("sequence %s is %s" % (s["sequence"], s["status"].replace("_", " ")))
    return ("GO" if not reasons else "NO-GO"), reasons


def describe_difference(d):
    text = "%s %s" % (d["kind"], key_text(d["key"]) if d.get("key") is not None else "")
    if d.get("columns"):
        text += " (columns %s)" % ", ".join(d["columns"])
    if d.get("count", 1) > 1:
        text += " x%d" % d["count"]
    if d.get("range"):
        text += " in %s" % d["range"]
    return text


def summary(tables, seconds, schema_differences, sequence_plan):
    rows = sum(t.get("rows_source") or 0 for t in tables)
    return dict(tables=len(tables), tables_equal=sum(1 for t in tables if t["result"] == "equal"),
                tables_different=sum(1 for t in tables if t["result"] == "different"),
                tables_error=sum(1 for t in tables if t["result"] == "error"),
                rows_compared=rows, seconds=round(seconds, 3),
                rows_per_second=round(rows / seconds, 1) if seconds > 0 else None,
                differences=sum(t.get("difference_count", len(t.get("differences") or [])) for t in tables),
                schema_differences=len(schema_differences),
                sequences_not_ok=sum(1 for s in sequence_plan if s["status"] != "ok"))
