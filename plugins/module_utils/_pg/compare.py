# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The comparison itself (I/O): catalog reads, range hashes on both sides in parallel, narrowing.

Decisions (how to hash, split, classify, conclude) are in module_utils/validate.py.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.pgshift.aurora.plugins.module_utils import native, prereqs, scope, validate
from ansible_collections.pgshift.aurora.plugins.module_utils.progress import ProgressFile
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import catalog, db
from ansible_collections.pgshift.aurora.plugins.module_utils._pg.connection import connect

try:
    from psycopg import sql
except ImportError:  # pragma: no cover - the module reports the missing library
    sql = None

TOOL_SCHEMAS = ("pgshift",)  # the migration's own bookkeeping on the target, never compared
SPLIT_PARTS = 16


def configure(conn):
    for name, value in validate.SESSION_SETTINGS:
        conn.execute(sql.SQL("SELECT set_config({}, {}, false)").format(sql.Literal(name), sql.Literal(value)))


# ----------------------------------------------------------------------------------------------
# Catalog


def primary_keys(conn, oids):
    rows = db.rows(conn, "SELECT i.indrelid::bigint AS oid, array_agg(a.attname ORDER BY k.n) AS cols "
                         "FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) "
                         "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
                         "WHERE i.indisprimary AND i.indrelid = ANY(%s::oid[]) GROUP BY i.indrelid", (list(oids),))
    return dict((r["oid"], list(r["cols"])) for r in rows)


def tables(conn, filters):
    """{(schema, name): {table (display), schema, name, oid, est_rows, columns, key}} for every replicated
    physical table in scope, and the in-scope tables skipped (unlogged) with why."""
    version = conn.info.server_version
    selected = scope.select(catalog.relations(conn), **filters)
    selected = [t for t in selected if t["schema"] not in TOOL_SCHEMAS]
    physical = prereqs.physical_tables(selected)
    skipped = [dict(table=t["qualified"], reason="unlogged: logical replication does not carry its rows")
               for t in physical if t["persistence"] != "p"]
    keep = prereqs.replicated_tables(selected)
    oids = [t["oid"] for t in keep]
    cols = {}
    for c in catalog.columns(conn, oids, version):
        cols.setdefault(c["oid"], []).append(c)
    keys = primary_keys(conn, oids)
    result = {}
    for t in keep:
        columns = cols.get(t["oid"], [])
        by_name = dict((c["name"], c) for c in columns)
        result[(t["schema"], t["name"])] = dict(
            table=t["qualified"], schema=t["schema"], name=t["name"], oid=t["oid"], est_rows=prereqs.est_rows(t),
            kind=t["kind"], columns=columns, key=[by_name[k] for k in keys.get(t["oid"], []) if k in by_name])
    return result, skipped


def schema_description(conn, table_map):
    """The schema_diff() input for the given {(schema, name): table} (columns, constraints, indexes, triggers)."""
    version = conn.info.server_version
    oids = dict((t["oid"], q) for q, t in table_map.items())
    desc = dict((q, dict(columns=[[c["name"], c["type"]] for c in t["columns"]], constraints={}, indexes={},
                         triggers={})) for q, t in table_map.items())
    notnull = set((r["oid"], r["name"]) for r in db.rows(
        conn, "SELECT attrelid::bigint AS oid, attname AS name FROM pg_attribute WHERE attrelid = ANY(%s::oid[]) "
              "AND attnum > 0 AND NOT attisdropped AND attnotnull", (list(oids),)))
    for q, t in table_map.items():
        desc[q]["columns"] = [[c["name"], c["type"] + (" NOT NULL" if (t["oid"], c["name"]) in notnull else "")]
                              for c in t["columns"]]
    # NOT NULL is a column property above (PostgreSQL 18 also lists it in pg_constraint, 17 and older do not)
    for r in db.rows(conn, "SELECT conrelid::bigint AS oid, conname AS name, pg_get_constraintdef(oid) AS def "
                           "FROM pg_constraint WHERE conrelid = ANY(%s::oid[]) AND contype <> 'n'", (list(oids),)):
        desc[oids[r["oid"]]]["constraints"][r["name"]] = r["def"]
    for r in db.rows(conn, "SELECT i.indrelid::bigint AS oid, c.relname AS name, "
                           "regexp_replace(pg_get_indexdef(i.indexrelid), '^.* USING ', 'USING ') AS def "
                           "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = ANY(%s::oid[])",
                     (list(oids),)):
        desc[oids[r["oid"]]]["indexes"][r["name"]] = r["def"]
    for r in catalog.triggers(conn, list(oids), version):
        desc[oids[r["oid"]]]["triggers"][r["name"]] = dict(enabled=r["enabled"], function=r["function"])
    return dict(tables=desc)


def slot_positions(conn, prefix):
    """{slot: confirmed_flush_lsn} of the logical slots whose name starts with prefix (on the source)."""
    rows = db.rows(conn, "SELECT slot_name, confirmed_flush_lsn::text AS lsn FROM pg_replication_slots "
                         "WHERE slot_type = 'logical' AND starts_with(slot_name, %s)", (prefix,))
    return dict((r["slot_name"], r["lsn"]) for r in rows)


# ----------------------------------------------------------------------------------------------
# Queries on one side


def _ident(table):
    """A table's identity: its schema and its name (``table`` is only their display form)."""
    return table["schema"], table["name"]


def _rel(table):
    return sql.SQL("ONLY {}").format(sql.Identifier(table["schema"], table["name"]))


def range_hash(conn, table, columns, rng, version):
    key = table["key"]
    where = validate.range_condition(key, rng) if key else sql.SQL("true")
    query = sql.SQL("SELECT count(*) AS count, sum({h}) AS sum FROM {rel} WHERE {w}").format(
        h=validate.row_hash(columns, version), rel=_rel(table), w=where)
    row = db.rows(conn, query)[0]
    return dict(count=int(row["count"]), sum=None if row["sum"] is None else str(row["sum"]))


def key_bounds(conn, table, rng):
    k = sql.Identifier(table["key"][0]["name"])
    query = sql.SQL("SELECT min({k})::text AS lo, max({k})::text AS hi FROM {rel} WHERE {w}").format(
        k=k, rel=_rel(table), w=validate.range_condition(table["key"], rng))
    row = db.rows(conn, query)[0]
    return (None if row["lo"] is None else int(row["lo"])), (None if row["hi"] is None else int(row["hi"]))


def boundaries(conn, table, rng, step):
    """Every step-th key (as text) in key order within rng."""
    key = table["key"]
    names = sql.SQL(", ").join(sql.Identifier(c["name"]) for c in key)
    texts = sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c["name"])) for c in key)
    query = sql.SQL("SELECT {texts} FROM (SELECT {names}, row_number() OVER (ORDER BY {names}) AS rn__ "
                    "FROM {rel} WHERE {w}) s WHERE mod(rn__, {step}) = 0 ORDER BY {names}").format(
        texts=texts, names=names, rel=_rel(table), w=validate.range_condition(key, rng), step=sql.Literal(step))
    return [list(r) for r in conn.execute(query).fetchall()]


def row_hashes(conn, table, columns, rng, version):
    key = table["key"]
    texts = sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c["name"])) for c in key)
    names = sql.SQL(", ").join(sql.Identifier(c["name"]) for c in key)
    query = sql.SQL("SELECT ARRAY[{texts}] AS k, {h} AS h FROM {rel} WHERE {w} ORDER BY {names}").format(
        texts=texts, h=validate.row_hash(columns, version), rel=_rel(table), w=validate.range_condition(key, rng),
        names=names)
    return [(tuple(r[0]), r[1]) for r in conn.execute(query).fetchall()]


def column_values(conn, table, columns, key_values, version):
    """{column: md5 of its canonical value} of the row with this key (None when the row is not there)."""
    key = table["key"]
    exprs = sql.SQL(", ").join(sql.SQL("md5(({})::text)").format(validate.column_expression(c, version)) for c in columns)
    cond = sql.SQL(" AND ").join(sql.SQL("{} = {}::{}").format(sql.Identifier(c["name"]), sql.Literal(v), sql.SQL(c["type"]))
                                 for c, v in zip(key, key_values))
    row = conn.execute(sql.SQL("SELECT {e} FROM {rel} WHERE {c}").format(e=exprs, rel=_rel(table), c=cond)).fetchone()
    if row is None:
        return None
    return dict((c["name"], v) for c, v in zip(columns, row))


PARAM = object()  # a parameter's place in parametrised()


def parametrised(conn, *parts):
    """A query that takes parameters: composed parts rendered with every % doubled (psycopg reads a % in the query
    text as a placeholder, and a table, column or type name may hold one), each PARAM a %s."""
    return sql.SQL("".join("%s" if p is PARAM else p.as_string(conn).replace("%", "%%") for p in parts))


def keyed_hashes(conn, table, columns, keys, version, lock=False):
    """{key tuple: row hash} of the rows with these keys (key values as text, passed as parameters).

    lock: SELECT ... FOR SHARE NOWAIT, in key order (the caller holds a READ COMMITTED transaction): a row another
    transaction holds fails the statement at once (lock_not_available) instead of being waited for while the
    rows before it stay locked, so that the lock step is never part of a deadlock (lock_rows tries again)."""
    key = table["key"]
    if not keys:
        return {}
    names = sql.SQL(", ").join(sql.Identifier(c["name"]) for c in key)
    texts = sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c["name"])) for c in key)
    cols = [sql.Identifier("k%d" % i) for i in range(len(key))]
    cast = sql.SQL(", ").join(sql.SQL("u.{}::{}").format(p, sql.SQL(c["type"])) for p, c in zip(cols, key))
    parts = [sql.SQL("SELECT ARRAY[{texts}], {h} FROM {rel} WHERE ROW({names}) IN (SELECT {cast} FROM unnest(").format(
        texts=texts, h=validate.row_hash(columns, version), rel=_rel(table), names=names, cast=cast)]
    for i in range(len(key)):
        parts += [sql.SQL(", " if i else ""), PARAM, sql.SQL("::text[]")]
    parts.append(sql.SQL(") AS u({cols})){lock}").format(
        cols=sql.SQL(", ").join(cols), lock=sql.SQL(" ORDER BY {} FOR SHARE NOWAIT").format(names) if lock else sql.SQL("")))
    query = parametrised(conn, *parts)
    found = {}
    for start in range(0, len(keys), 1000):
        chunk = [tuple(k) for k in keys[start:start + 1000]]
        for r in conn.execute(query, [[k[i] for k in chunk] for i in range(len(key))]).fetchall():
            found[tuple(r[0])] = r[1]
    return found


def hashes_for_keys(conn, table, columns, keys, version):
    """{key tuple: row hash} of the rows with these keys (outside any snapshot: the source now)."""
    return keyed_hashes(conn, table, columns, keys, version)


LOCK_RETRY_FIRST, LOCK_RETRY_MAX = 0.01, 0.2  # seconds between two tries of a lock batch (doubling)


def lock_rows(conn, table, columns, keys, version, budget, deadline):
    """Lock the source rows of these keys FOR SHARE and hash them, in a READ COMMITTED transaction left open (the
    caller reads under the locks, then rolls back): {key tuple: row hash}.

    A row another transaction holds ends a try at once (NOWAIT): the try's transaction is rolled back - every lock
    it took released - and a new one tries again after a pause (10 ms, doubling up to 200 ms) until `deadline`
    (time.time() seconds), then the lock_not_available error is raised. So the lock step never waits for a row while
    holding others: an application transaction that locks these rows in another order may wait for its locks,
    but never closes a deadlock cycle with it, so PostgreSQL never cancels it for the validation's sake.
    statement_timeout and lock_timeout (the table's own lock, which NOWAIT does not cover) are `budget` seconds;
    the session ends itself if it stays idle in the transaction (idle_in_transaction_session_timeout: twice
    that plus 10 s)."""
    pause = LOCK_RETRY_FIRST
    while True:
        conn.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
        db.set_local(conn, "statement_timeout", budget * 1000)
        db.set_local(conn, "lock_timeout", budget * 1000)
        # if this process stalls while holding the locks, the server ends the session and releases them
        db.set_local(conn, "idle_in_transaction_session_timeout", (2 * budget + 10) * 1000)
        try:
            return keyed_hashes(conn, table, columns, keys, version, lock=True)
        except Exception as exc:
            conn.execute("ROLLBACK")
            if getattr(exc, "sqlstate", None) != "55P03" or time.time() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(LOCK_RETRY_MAX, pause * 2)


def may_lock(conn, oids):
    """{oid: whether this login may SELECT ... FOR SHARE rows of the table} (UPDATE on the table or a column)."""
    rows = conn.execute("SELECT o::bigint, coalesce(has_any_column_privilege(o, 'UPDATE'), false) "
                        "FROM unnest(%s::oid[]) AS u(o)", (list(oids),)).fetchall()
    return dict((r[0], r[1]) for r in rows)


def nudge_flush(conn):
    """Have the server flush its WAL within wal_writer_delay: a transaction that takes an ID and commits (the WAL
    writer flushes up to an asynchronous commit). WAL written by a transaction still open (the lock step's row
    locks) is otherwise flushed only when a page fills or another transaction commits - and the writers are
    waiting for those locks - so no slot could confirm a position after it."""
    conn.execute("SELECT pg_current_xact_id()" if conn.info.server_version >= 130000 else "SELECT txid_current()")


def counts_for_hashes(conn, table, columns, hashes, version):
    """{row hash: copies} for these row hashes (tables without a key; the source now)."""
    query = parametrised(conn, sql.SQL("SELECT h, count(*) FROM (SELECT {h} AS h FROM {rel}) s WHERE h = ANY(").format(
        h=validate.row_hash(columns, version), rel=_rel(table)), PARAM, sql.SQL(") GROUP BY h"))
    return dict((r[0], int(r[1])) for r in conn.execute(query, (list(hashes),)).fetchall())


def row_multiset(conn, table, columns, version, limit):
    """{row hash: (count, row text)} of a whole table (tables without a key), at most `limit` distinct rows."""
    query = sql.SQL("SELECT h, count(*) AS n, min(t) AS t FROM (SELECT {h} AS h, {t} AS t FROM {rel}) s "
                    "GROUP BY h LIMIT {lim}").format(
        h=validate.row_hash(columns, version), t=validate.row_text(columns, version), rel=_rel(table),
        lim=sql.Literal(limit))
    return dict((r[0], (int(r[1]), r[2])) for r in conn.execute(query).fetchall())


# ----------------------------------------------------------------------------------------------
# The comparison


class Worker:
    """One connection to each side (same session settings, same snapshot as every other worker)."""

    def __init__(self, source_params, target_params):
        self.src = connect(source_params, autocommit=True)
        self.tgt = connect(target_params, autocommit=True)
        configure(self.src)
        configure(self.tgt)
        self.side = ThreadPoolExecutor(max_workers=1)

    def begin(self, src_snapshot, tgt_snapshot):
        for conn, snap in ((self.src, src_snapshot), (self.tgt, tgt_snapshot)):
            if conn.info.transaction_status != 0:
                conn.execute("ROLLBACK")
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            if snap:
                conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snap)))

    def both(self, fn, *args):
        """fn(conn, *args) on the target (helper thread) and the source (this thread) at the same time."""
        future = self.side.submit(fn, self.tgt, *args)
        src = fn(self.src, *args)
        return src, future.result()

    def close(self):
        self.side.shutdown(wait=True)
        for conn in (self.src, self.tgt):
            try:
                conn.close()
            except Exception:  # already broken: nothing to release
                pass


class Coordinator:
    """Holds each side's exported snapshot for a round (every worker imports it)."""

    def __init__(self, source_params, target_params):
        self.src = connect(source_params, autocommit=True)
        self.tgt = connect(target_params, autocommit=True)
        self.mon = connect(source_params, autocommit=True)  # slot positions and the source now, outside any snapshot
        configure(self.mon)
        self.source_params, self.target_params = source_params, target_params
        self._locker = self._tmon = None

    def locker(self):
        """The source connection of the lock step (its own short transactions), opened on first use."""
        if self._locker is None or self._locker.closed:
            self._locker = connect(self.source_params, autocommit=True)
            configure(self._locker)
        return self._locker

    def tmon(self):
        """The target read outside any snapshot (the lock step's fresh read), opened on first use."""
        if self._tmon is None or self._tmon.closed:
            self._tmon = connect(self.target_params, autocommit=True)
            configure(self._tmon)
        return self._tmon

    @staticmethod
    def _export(conn):
        if conn.info.transaction_status != 0:
            conn.execute("ROLLBACK")
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            return conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        except Exception:  # a server that cannot export one (standby, proxy): each worker takes its own
            conn.execute("ROLLBACK")
            return None

    def source_snapshot(self):
        snap = self._export(self.src)
        lsn = self.src.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
        return snap, lsn

    def target_snapshot(self):
        return self._export(self.tgt)

    def close(self):
        for conn in (self.src, self.tgt, self.mon, self._locker, self._tmon):
            if conn is None:
                continue
            try:
                conn.close()
            except Exception:  # already broken
                pass


class Comparison:
    """Compare tables between two databases: counts, range hashes, narrowing to rows.

    options: parallel, chunk_rows, row_level_rows, max_differences, max_rows_per_second,
    progress_file, mode, slot_prefix, catch_up_timeout, live_rounds, live_lock_rows, live_lock_timeout.
    """

    def __init__(self, source_params, target_params, options):
        self.source_params = source_params
        self.target_params = target_params
        self.o = options
        self.lock = threading.Lock()
        self.rows_done = 0
        self.rows_expected = 0
        self.started = None
        self.last_progress = 0.0
        self.progress_file = ProgressFile(options.get("progress_file"))
        self.version = None

    # -- plumbing -----------------------------------------------------------------------------
    def _account(self, rows):
        with self.lock:
            self.rows_done += rows
            done = self.rows_done
            elapsed = time.time() - self.started
            write = self.o.get("progress_file") and time.time() - self.last_progress >= 1.0
            if write:
                self.last_progress = time.time()
        delay = validate.throttle_delay(done, elapsed, self.o.get("max_rows_per_second"))
        if delay > 0:
            time.sleep(delay)
        if write:
            self.write_progress()

    def write_progress(self, **extra):
        if not self.progress_file.path:
            return
        with self.lock:
            data = validate.progress(self.rows_done, self.rows_expected, time.time() - self.started)
        data.update(extra)
        self.progress_file.write(data, force=True)

    # -- one range ----------------------------------------------------------------------------
    def compare_range(self, w, table, rng, top, budget):
        """Differences in rng (narrowed down to rows), at most budget[0] of them."""
        cols = table["compared"]
        src, tgt = w.both(range_hash, table, cols, rng, self.version)
        if top:
            table["_counts"][validate.describe_range(rng)] = (src["count"], tgt["count"])
            self._account(src["count"])
        if not validate.differs(src, tgt) or budget[0] <= 0:
            return []
        if not table["key"]:
            counts = w.both(row_multiset, table, cols, self.version, self.o["max_differences"] * 100 + 100000)
            found = validate.diff_multisets(*counts)
            return self._take(found, budget)
        mode = validate.key_mode(table["key"])
        if validate.needs_split(src, tgt, self.o["row_level_rows"]):
            subs = None
            if mode == "int":
                closed = dict(rng)
                if rng.get("lo") is None or rng.get("hi") is None:
                    (slo, shi), (tlo, thi) = w.both(key_bounds, table, rng)
                    los = [v for v in (slo, tlo) if v is not None]
                    his = [v for v in (shi, thi) if v is not None]
                    closed = dict(lo=[str(min(los))], hi=[str(max(his) + 1)])
                subs = validate.split_range(closed, mode, SPLIT_PARTS)
            if subs is None:
                big_conn = w.src if src["count"] >= tgt["count"] else w.tgt
                step = validate.boundary_step(max(src["count"], tgt["count"]), SPLIT_PARTS)
                subs = validate.ranges_from_boundaries(boundaries(big_conn, table, rng, step), rng.get("lo"), rng.get("hi"))
            if len(subs) > 1:
                found = []
                for sub in subs:
                    if budget[0] <= 0:
                        break
                    found += self.compare_range(w, table, sub, False, budget)
                return found
        rows = w.both(row_hashes, table, cols, rng, self.version)
        found = self._take(validate.diff_rows(*rows), budget)
        src_map, tgt_map = dict(rows[0]), dict(rows[1])
        for d in found:
            d["_s"], d["_t"] = src_map.get(tuple(d["key"])), tgt_map.get(tuple(d["key"]))
            d["range"] = validate.describe_range(rng)
            if d["kind"] == "changed":
                values = w.both(column_values, table, cols, d["key"], self.version)
                if values[0] is not None and values[1] is not None:
                    d["columns"] = validate.changed_columns(*values)
        return found

    @staticmethod
    def _take(found, budget):
        taken = found[:max(0, budget[0])]
        budget[0] -= len(taken)
        return taken

    # -- one round ----------------------------------------------------------------------------
    def plan_ranges(self, w, table):
        key = table["key"]
        mode = validate.key_mode(key)
        if mode is None:
            return [dict(lo=None, hi=None)]
        if mode == "int":
            (slo, shi), (tlo, thi) = w.both(key_bounds, table, dict(lo=None, hi=None))
            los = [v for v in (slo, tlo) if v is not None]
            his = [v for v in (shi, thi) if v is not None]
            if not los:
                return [dict(lo=None, hi=None)]
            return validate.int_ranges(min(los), max(his), table["est_rows"], self.o["chunk_rows"])
        if table["est_rows"] <= self.o["chunk_rows"]:
            return [dict(lo=None, hi=None)]
        return validate.ranges_from_boundaries(boundaries(w.src, table, dict(lo=None, hi=None), self.o["chunk_rows"]))

    def run_round(self, workers, tasks, src_snapshot, tgt_snapshot):
        """tasks: [(table, range)]; returns {task index: differences}. Ranges of tables listed
        with range None are planned first (in the same snapshot)."""
        pool = queue.Queue()
        for w in workers:
            w.begin(src_snapshot, tgt_snapshot)
            pool.put(w)

        def with_worker(fn, *args):
            w = pool.get()
            try:
                return fn(w, *args)
            except Exception:
                # the transactions are aborted: take the same snapshots again for the next task
                w.begin(src_snapshot, tgt_snapshot)
                raise
            finally:
                pool.put(w)

        results = {}
        with ThreadPoolExecutor(max_workers=len(workers)) as ex:
            planned = []
            plan_futures = {}
            for table, rng in tasks:
                if rng is None:
                    plan_futures[_ident(table)] = ex.submit(with_worker, self.plan_ranges, table)
            for table, rng in tasks:
                if rng is None:
                    try:
                        planned += [(table, r) for r in plan_futures[_ident(table)].result()]
                    except Exception as exc:
                        table.setdefault("error", str(exc).strip())
                else:
                    planned.append((table, rng))
            futures = []
            for table, rng in planned:
                budget = table.setdefault("_budget", [self.o["max_differences"]])

                def task(w, table=table, rng=rng, budget=budget):
                    t0 = time.time()
                    try:
                        return self.compare_range(w, table, rng, True, budget)
                    finally:
                        with self.lock:
                            table["_seconds"] += time.time() - t0
                futures.append((table, rng, ex.submit(with_worker, task)))
            for table, rng, fut in futures:
                try:
                    results.setdefault(_ident(table), []).append((rng, fut.result()))
                except Exception as exc:
                    table.setdefault("error", str(exc).strip())
        for w in workers:
            for conn in (w.src, w.tgt):
                conn.execute("ROLLBACK")
        return results

    def wait_caught_up(self, coord, lsn, timeout=None, interval=0.2):
        """Until every stream's slot confirmed lsn (live mode), at most timeout seconds (catch_up_timeout);
        (ok, positions)."""
        prefix = self.o["slot_prefix"]
        wanted = native.lsn_to_int(lsn)
        deadline = time.time() + (self.o["catch_up_timeout"] if timeout is None else timeout)
        positions = {}
        while True:
            positions = slot_positions(coord.mon, prefix)
            if validate.lsn_reached(list(positions.values()), wanted, native.lsn_to_int):
                return True, positions
            if time.time() > deadline:
                return False, positions
            time.sleep(interval)

    def settle(self, coord, table, found):
        keyed = [d for d in found if "_hash" not in d]
        unkeyed = [d for d in found if "_hash" in d]
        now = {}
        if keyed:
            now.update(hashes_for_keys(coord.mon, table, table["compared"], [tuple(d["key"]) for d in keyed], self.version))
        if unkeyed:
            now.update(counts_for_hashes(coord.mon, table, table["compared"], [d["_hash"] for d in unkeyed], self.version))
        return validate.settle(found, now)

    # -- the lock step ------------------------------------------------------------------------
    def locked_check(self, coord, table, differences):
        """One lock batch: lock the source rows of these differences (FOR SHARE, one short READ COMMITTED
        transaction bounded by live_lock_timeout), read their hashes and the WAL insert position under the locks,
        wait until every slot confirmed it, read the same keys on the target, then release. Returns
        ({key: (verdict, difference)}, rows locked, problem or None)."""
        budget = float(self.o["live_lock_timeout"])
        deadline = time.time() + budget
        cols = table["compared"]
        keys = [tuple(d["key"]) for d in differences]
        conn = None
        try:
            conn = coord.locker()
            locked = lock_rows(conn, table, cols, keys, self.version, budget, deadline)
            # the insert position, read with the rows locked: every change to them (a commit that is not yet
            # written out too, synchronous_commit = off) is before it; then have it flushed, so it gets sent
            lsn = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0]
            nudge_flush(coord.mon)
            ok, positions = self.wait_caught_up(coord, lsn, timeout=max(0.0, deadline - time.time()), interval=0.05)
            if not ok:
                return {}, len(locked), validate.lock_not_caught_up(table["table"], lsn, budget)
            tmon = coord.tmon()
            db.set_session(tmon, "statement_timeout", budget * 1000)
            target = keyed_hashes(tmon, table, cols, keys, self.version)
            absent = [k for k in keys if k not in locked]
            after = keyed_hashes(conn, table, cols, absent, self.version) if absent else {}
            outcome = validate.settle_locked(differences, locked, target, after)
            for k, (verdict, d) in outcome.items():
                if verdict == "confirmed" and d["kind"] == "changed":
                    # the columns that differ, read while the source row is still locked
                    values = column_values(conn, table, cols, list(k), self.version), \
                        column_values(tmon, table, cols, list(k), self.version)
                    if values[0] is not None and values[1] is not None:
                        d["columns"] = validate.changed_columns(*values)
            return outcome, len(locked), None
        except Exception as exc:  # a lock not granted in time, a privilege, a deadlock: fall back
            return {}, 0, validate.lock_failure(table["table"], getattr(exc, "sqlstate", None), str(exc), budget)
        finally:
            try:
                if conn is not None:
                    conn.execute("ROLLBACK")  # releases the locks (the transaction changed nothing)
            except Exception:  # the session is gone (its locks with it): a new one next time
                try:
                    conn.close()
                except Exception:
                    pass

    def lock_step(self, coord, items, record):
        """Settle the keyed differences of a round with their source rows locked (live_lock_rows > 0).

        items: [[table, range, confirmed, in_flight]] from the snapshot settle, updated in place; record: the
        round's data, given locked_rows, settled_by_lock, lock_resolved, lock_confirmed, lock_fallback and
        lock_problems when the lock step had rows to check. Returns the resolved count."""
        groups, tables = [], {}
        for table, rng, confirmed, in_flight in items:
            candidates = validate.lock_candidates(confirmed + in_flight)
            if candidates:
                tables[_ident(table)] = table
                groups.append((_ident(table), candidates))
        if not groups or not self.o.get("live_lock_rows"):
            return 0
        merged = {}
        for ident, differences in groups:  # one entry per table, its ranges in order
            merged.setdefault(ident, []).extend(differences)
        groups = list(merged.items())
        problems = []
        try:
            rights = may_lock(coord.locker(), [tables[i]["oid"] for i, d in groups])
        except Exception as exc:
            rights = {}
            problems.append(validate.lock_failure(", ".join(tables[i]["table"] for i, d in groups),
                                                  getattr(exc, "sqlstate", None), str(exc),
                                                  float(self.o["live_lock_timeout"])))
        kept, refused = validate.lockable(groups, dict((i, rights.get(tables[i]["oid"])) for i, d in groups))
        if rights:
            problems += [validate.lock_refused(tables[i]["table"]) for i in refused]
        outcome, locked_rows = {}, 0
        for ident, differences in validate.lock_batches(kept, self.o["live_lock_rows"]):
            found, n, problem = self.locked_check(coord, tables[ident], differences)
            locked_rows += n
            if problem:
                problems.append(problem)
            outcome.setdefault(ident, {}).update(found)
        resolved_n = settled_n = 0
        for item in items:
            item[2], item[3], resolved, settled = validate.after_lock(item[2], item[3], outcome.get(_ident(item[0]), {}))
            resolved_n += resolved
            settled_n += settled
        confirmed_n = sum(1 for found in outcome.values() for verdict, d in found.values() if verdict == "confirmed")
        checked = sum(len(d) for i, d in groups)
        record.update(locked_rows=locked_rows, settled_by_lock=settled_n, lock_resolved=resolved_n,
                      lock_confirmed=confirmed_n, lock_fallback=checked - settled_n, lock_problems=problems)
        return resolved_n

    def live_rounds(self, coord, workers, results, by_name, rounds):
        """Compare the differing ranges again after the target confirmed the source's position; a difference
        stays only when it is confirmed (the source row did not change meanwhile, or the lock step saw the target
        without the locked value) or never settles (in flight after the last round: reported, marked unsettled).
        redo: (table, range, differences, those not settled yet)."""
        final = dict((name, [(rng, d) for rng, d in items if not d]) for name, items in results.items())
        redo = [(by_name[name], rng, d, d) for name, items in results.items() for rng, d in items if d]
        for number in range(2, self.o["live_rounds"] + 2):
            if not redo:
                break
            src_snap, lsn = coord.source_snapshot()
            ok, positions = self.wait_caught_up(coord, lsn)
            if not ok:
                rounds.append(dict(round=number, source_lsn=lsn, caught_up=False, slots=positions))
                break
            tgt_snap = coord.target_snapshot()
            for table, rng, found, pending in redo:
                table["_budget"] = [self.o["max_differences"]]
            again = self.run_round(workers, [(t, rng) for t, rng, found, pending in redo], src_snap, tgt_snap)
            fresh = dict(((name, validate.describe_range(rng)), d) for name, items in again.items() for rng, d in items)
            items, resolved_n = [], 0
            for table, rng, old, pending in redo:
                found = fresh.get((_ident(table), validate.describe_range(rng)), old)
                confirmed, in_flight, resolved = self.settle(coord, table, found) if found else ([], [], 0)
                resolved_n += resolved
                items.append([table, rng, confirmed, in_flight])
            record = dict(round=number, source_lsn=lsn, caught_up=True, slots=positions, ranges=len(redo))
            resolved_n += self.lock_step(coord, items, record)
            still, confirmed_n, in_flight_n = [], 0, 0
            for table, rng, confirmed, in_flight in items:
                confirmed_n += len(confirmed)
                in_flight_n += len(in_flight)
                if in_flight:
                    still.append((table, rng, confirmed + in_flight, in_flight))
                else:
                    final.setdefault(_ident(table), []).append((rng, confirmed))
            record.update(confirmed=confirmed_n, in_flight=in_flight_n, resolved=resolved_n)
            rounds.append(record)
            redo = still
        for table, rng, found, pending in redo:  # reported; what never settled is marked
            for d in pending:
                d["unsettled"] = True
            final.setdefault(_ident(table), []).append((rng, found))
        return final

    # -- everything ---------------------------------------------------------------------------
    def run(self, table_list):
        """Compare every table ({table (display), schema, name, key, compared, est_rows}); returns per-table results
        and the live-mode rounds."""
        self.started = time.time()
        self.rows_expected = sum(max(0, t["est_rows"] or 0) for t in table_list)
        for t in table_list:
            t["_counts"] = {}
            t["_seconds"] = 0.0
        coord = Coordinator(self.source_params, self.target_params)
        workers = []
        rounds = []
        try:
            self.version = min(coord.src.info.server_version, coord.tgt.info.server_version)
            workers = [Worker(self.source_params, self.target_params) for i in range(max(1, self.o["parallel"]))]
            src_snap, lsn = coord.source_snapshot()
            tgt_snap = coord.target_snapshot()
            results = self.run_round(workers, [(t, None) for t in table_list], src_snap, tgt_snap)
            rounds.append(dict(round=1, source_lsn=lsn, ranges=len([1 for r in results.values() for x in r]),
                               differing=sum(1 for r in results.values() for rng, d in r if d)))
            by_name = dict((_ident(t), t) for t in table_list)
            if self.o["mode"] == "live":
                results = self.live_rounds(coord, workers, results, by_name, rounds)
        finally:
            for w in workers:
                w.close()
            coord.close()
        elapsed = time.time() - self.started
        self.write_progress(done=True)
        out = []
        for t in table_list:
            diffs = [validate.public(d) for rng, found in results.get(_ident(t), []) for d in found]
            counts = list(t["_counts"].values())
            entry = dict(table=t["table"], rows_source=sum(c[0] for c in counts), rows_target=sum(c[1] for c in counts),
                         seconds=round(t["_seconds"], 3), key=[c["name"] for c in t["key"]] or None,
                         ranges=len(results.get(_ident(t), [])), differences=diffs,
                         difference_count=sum(d.get("count", 1) for d in diffs),
                         truncated=len(diffs) >= self.o["max_differences"])
            if t.get("error"):
                entry.update(result="error", error=t["error"])
            elif t.get("problems"):
                entry.update(result="error", error="; ".join(t["problems"]))
            else:
                # live mode: the counts are of snapshots taken apart (the target later); the rows decide
                counts_differ = self.o["mode"] != "live" and entry["rows_source"] != entry["rows_target"]
                entry["result"] = "different" if diffs or counts_differ else "equal"
            out.append(entry)
        return out, rounds, elapsed
