# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Planner statistics on the target (pure): which tables have none, which of them the login may gather, in which
order they are analysed, how statistics get there (ANALYZE or an import of the source's), and the progress.

A relation is a record of observe(): its catalog identity (oid, schema and name as two values), its place in
a partition or inheritance tree, and what the planner has for it. The SQL that reads them is _pg/stats.py.

Why it matters: logical replication and COPY write rows but no statistics. Autovacuum analyses a table only once
50 rows + 10% of it changed, and never a partitioned parent (nor an inheritance parent whose own rows do not
change): after the switch the application meets tables the planner has never measured.
"""

from __future__ import annotations

from ansible_collections.pgshift.aurora.plugins.module_utils import scope

PRESENT = "present"  # column statistics the planner uses, or a table analysed when it was empty and unchanged since
MISSING = "missing"  # never analysed nor imported: the planner guesses
STALE = "stale"  # analysed while it was empty; rows were written since, and no column statistics exist

METHODS = ("auto", "analyze", "import")
IMPORT_MIN_MAJOR = 18  # pg_dump --statistics-only and pg_restore_*_stats() exist from PostgreSQL 18
ANALYZE_ONLY_VERSION = 180000  # ANALYZE ONLY parent (its children left alone) exists from PostgreSQL 18
MAINTAIN_VERSION = 170000


# ----------------------------------------------------------------------------------------------
# Observing
# ----------------------------------------------------------------------------------------------

def is_parent(rel):
    """A partitioned table (root or sub-partitioned) or an inheritance parent: its statistics for queries
    through it are the inherited ones, sampled from its whole tree."""
    return rel.get("relkind") == "p" or bool(rel.get("has_children"))


def observe(relations, stats):
    """One record per relation, from scope.select()'s classified relations and _pg/stats.statistics().

    Adds: heap_bytes (its own rows' main fork), tree_bytes (its own plus every descendant's), descendants (their
    oids), descendants_with_stats (how many have column statistics of their own), is_parent, and the statistics
    fields (reltuples, analysed, analysed_at, mod_since_analyze, own_stats, inherited_stats, stats_visible,
    can_analyze, owner). A relation the statistics do not name is left out (dropped meanwhile).
    """
    records = []
    for rel in relations:
        st = stats.get(rel["oid"])
        if st is None:
            continue
        analysed_at = st.get("analysed_at")
        records.append(dict(
            oid=rel["oid"], schema=rel["schema"], name=rel["name"], table=scope.qualified(rel["schema"], rel["name"]),
            kind=rel.get("kind"), relkind=rel["relkind"], has_children=bool(rel.get("has_children")),
            ancestors=list(rel.get("ancestors") or []), is_parent=is_parent(rel),
            owner=st.get("owner") or rel.get("owner"), reltuples=st.get("reltuples"),
            heap_bytes=int(st.get("heap_bytes") or 0), analysed=bool(st.get("analysed")),
            analysed_at=analysed_at.isoformat() if hasattr(analysed_at, "isoformat") else analysed_at,
            mod_since_analyze=int(st.get("mod_since_analyze") or 0), own_stats=int(st.get("own_stats") or 0),
            inherited_stats=int(st.get("inherited_stats") or 0), stats_visible=bool(st.get("stats_visible")),
            can_analyze=bool(st.get("can_analyze"))))
    by_oid = dict((r["oid"], r) for r in records)
    for r in records:
        r["tree_bytes"] = r["heap_bytes"]
        r["descendants"] = []
        r["descendants_with_stats"] = 0
    for r in records:
        for ancestor in r["ancestors"]:
            parent = by_oid.get(ancestor)
            if parent is None:
                continue
            parent["tree_bytes"] += r["heap_bytes"]
            parent["descendants"].append(r["oid"])
            if r["own_stats"]:
                parent["descendants_with_stats"] += 1
    return records


def empty(t):
    """Whether the relation (a parent: its whole tree) holds no pages of rows. A table whose pages hold only
    dead rows counts as not empty until vacuumed."""
    return (t["tree_bytes"] if t["is_parent"] else t["heap_bytes"]) == 0


def statistics_need(t):
    """(state, reason) of one record: PRESENT with reason None, or MISSING / STALE with a sentence."""
    rows = t["inherited_stats"] if t["is_parent"] else t["own_stats"]
    if rows:
        return PRESENT, None
    reltuples = t["reltuples"] if t["reltuples"] is not None else -1
    if not t["stats_visible"]:
        # This login cannot read the column statistics (pg_stats shows the columns it may SELECT only):
        # what pg_class and the cumulative statistics say.
        if t["analysed"] or reltuples >= 0:
            return PRESENT, None
        return MISSING, "never analysed (its column statistics are not readable by this login)"
    if t["analysed"]:
        if empty(t):
            return PRESENT, None
        if t["is_parent"]:
            if t["descendants_with_stats"]:
                return STALE, "analysed while its tree was empty; %d of its %s have statistics now" % (
                    t["descendants_with_stats"], "partitions" if t["relkind"] == "p" else "children")
            return PRESENT, None
        if t["mod_since_analyze"] > 0:
            return STALE, "analysed while empty; %d row(s) written since" % t["mod_since_analyze"]
        return PRESENT, None
    if reltuples >= 0 and not t["is_parent"]:
        return MISSING, "no column statistics (vacuumed or imported without them, never analysed)"
    return MISSING, "never analysed"


def blockers(tables):
    """The records a cutover must not meet: non-empty and with no statistics at all (MISSING). STALE ones
    have statistics the planner uses (a table measured empty) and are left to autovacuum and pg_analyze."""
    found = []
    for t in tables:
        state, reason = statistics_need(t)
        if state == MISSING and not empty(t):
            found.append(dict(table=t["table"], schema=t["schema"], name=t["name"], kind=t["kind"],
                              bytes=t["tree_bytes"] if t["is_parent"] else t["heap_bytes"], reason=reason))
    return found


# ----------------------------------------------------------------------------------------------
# Deciding what to do
# ----------------------------------------------------------------------------------------------

def why_not(t, login, server_version):
    """Why the login may not gather (ANALYZE or import) the statistics of a relation it cannot maintain."""
    grant = "pg_maintain or %s" % t["owner"] if server_version >= MAINTAIN_VERSION else t["owner"]
    return ("owned by %s: %s is not a member of %s%s and does not own the database; grant %s to %s, or analyse it "
            "as its owner" % (t["owner"], login, t["owner"],
                              " nor of pg_maintain, and has no MAINTAIN privilege on it"
                              if server_version >= MAINTAIN_VERSION else "", grant, login))


def selection(tables, force, login, server_version):
    """(todo, cannot, present): the records to gather statistics for, each with `reason`; those this login may
    not (each with `why`); how many already have them. force: every relation in scope."""
    todo, cannot, present = [], [], 0
    for t in tables:
        state, reason = statistics_need(t)
        if force:
            reason = reason or "force"
        elif state == PRESENT:
            present += 1
            continue
        entry = dict(t, state=state, reason=reason)
        if t["can_analyze"]:
            todo.append(entry)
        else:
            entry["why"] = why_not(t, login, server_version)
            cannot.append(entry)
    return todo, cannot, present


def choose_method(method, target_version, pg_dump_major, source_given):
    """(chosen, note, problem): the way statistics get to the target.

    import needs a PostgreSQL 18+ target (pg_restore_relation_stats), a pg_dump of 18 or later
    (--statistics-only) and the source's connection. auto takes import when all three hold, else analyze.
    problem is a sentence when method=import cannot run (the module fails with it).
    """
    if method == "analyze":
        return "analyze", "method analyze", None
    missing = []
    if target_version < 180000:
        missing.append("the target runs PostgreSQL %d (import needs 18 or later)" % (target_version // 10000))
    if not pg_dump_major:
        missing.append("no pg_dump of PostgreSQL %d or later was found (set pg_bin_dir)" % IMPORT_MIN_MAJOR)
    elif pg_dump_major < IMPORT_MIN_MAJOR:
        missing.append("pg_dump %d has no --statistics-only (it needs %d or later)" % (
            pg_dump_major, IMPORT_MIN_MAJOR))
    if not source_given:
        missing.append("no source connection (source_login_host)")
    if not missing:
        return "import", "import of the source's statistics (pg_dump %d --statistics-only)" % pg_dump_major, None
    if method == "import":
        return None, None, "method=import cannot run: %s" % "; ".join(missing)
    return "analyze", "analyze (import not possible: %s)" % "; ".join(missing), None


def dump_filter(tables):
    """pg_dump --filter lines selecting exactly these relations ((schema, name) as two values, each written as
    a quoted pattern: every character is itself). Returns (text, left_out): a name with a line break cannot be
    written in a filter file; those are left to ANALYZE."""
    lines, left_out = [], []
    for t in tables:
        if any(ch in part for part in (t["schema"], t["name"]) for ch in "\r\n"):
            left_out.append(t)
            continue
        lines.append('include table "%s"."%s"' % (t["schema"].replace('"', '""'), t["name"].replace('"', '""')))
    return "".join(line + "\n" for line in lines), left_out


# ----------------------------------------------------------------------------------------------
# Scheduling ANALYZE: biggest first, parents after their descendants
# ----------------------------------------------------------------------------------------------

def work_items(todo, server_version):
    """The ANALYZE statements to run: [{oid, schema, name, table, kind, only, weight, waits_for, covers}].

    PostgreSQL 18+: a parent is analysed ONLY (its inherited statistics, sampled from its tree), after every
    descendant that is analysed too. Before 18 ANALYZE of a partitioned table also analyses every partition
    (there is no ONLY): the partitions it covers are not analysed on their own (covers names them); an
    inheritance parent's ANALYZE does not recurse and runs after its children. weight orders the ready items
    (biggest first): a parent weighs its whole tree, which its ANALYZE samples.
    """
    only = server_version >= ANALYZE_ONLY_VERSION
    by_oid = dict((t["oid"], t) for t in todo)
    covered = {}
    if not only:
        for t in todo:
            if t["relkind"] == "p" and not any(a in by_oid and by_oid[a]["relkind"] == "p" for a in t["ancestors"]):
                for d in t["descendants"]:
                    if d in by_oid:
                        covered[d] = t["oid"]
    items = []
    for t in todo:
        if t["oid"] in covered:
            continue
        waits = set()
        if t["is_parent"] and (only or t["relkind"] != "p"):
            waits = set(d for d in t["descendants"] if d in by_oid and d not in covered)
        items.append(dict(oid=t["oid"], schema=t["schema"], name=t["name"], table=t["table"], kind=t["kind"],
                          only=bool(only and t["is_parent"]), reason=t.get("reason"),
                          weight=t["tree_bytes"] if t["is_parent"] else t["heap_bytes"], waits_for=waits,
                          covers=sorted(by_oid[o]["table"] for o, root in covered.items() if root == t["oid"])))
    return items


class Queue:
    """The work items as workers take them (not thread-safe: the runner holds a lock around it).

    take() gives the heaviest item whose descendants are all finished (name order on a tie), or None when
    nothing is ready now; finish() marks one done (a failed ANALYZE too: its parent still runs).
    """

    def __init__(self, items):
        self.pending = dict((i["oid"], i) for i in items)
        self.running = set()
        self.finished = set()

    def take(self):
        ready = [i for i in self.pending.values() if i["waits_for"] <= self.finished]
        if not ready:
            return None
        item = max(ready, key=lambda i: (i["weight"], _reverse_key(i["table"])))
        del self.pending[item["oid"]]
        self.running.add(item["oid"])
        return item

    def finish(self, oid):
        self.running.discard(oid)
        self.finished.add(oid)

    def done(self):
        return not self.pending and not self.running


def sequential_order(items):
    """The items in the order one worker would take them (check mode shows this order)."""
    queue = Queue(items)
    order = []
    while not queue.done():
        item = queue.take()
        order.append(item)
        queue.finish(item["oid"])
    return order


def _reverse_key(text):
    """A key that sorts text in reverse, so max() picks the first name in order among equal weights."""
    return tuple(-ord(ch) for ch in text)


# ----------------------------------------------------------------------------------------------
# Progress and results
# ----------------------------------------------------------------------------------------------

def progress(done, total, elapsed, current, phase=None):
    """The progress file (pgshift.aurora.job_progress reads it): tables done of how many, tables per second,
    an ETA, and what runs now."""
    rate = done / elapsed if elapsed > 0 else 0.0
    left = max(0, total - done)
    eta = round(left / rate, 1) if rate > 0 else None
    if phase is None and current:
        phase = "analysing " + ", ".join(current[:4])
        if len(current) > 4:
            phase += " and %d more" % (len(current) - 4)
    elif phase is None:
        phase = "done" if done >= total else "starting"
    return dict(unit="tables", rows=done, rows_expected=total, rows_per_second=round(rate, 2), eta_seconds=eta,
                percent=round(100.0 * done / total, 1) if total else 100.0, phase=phase)


ACTIONS = ("analyzed", "imported", "covered", "failed", "would_analyze", "would_import")


def summary(results, cannot, present, in_scope, method, parallel, seconds, import_seconds=None):
    """Counts and rates of one run. results: the per-table entries, each with its action (ACTIONS): analyzed,
    imported, covered (analysed by its partitioned parent's ANALYZE, before PostgreSQL 18), failed, or in
    check mode would_analyze / would_import; cannot: the tables this login may not analyse."""
    count = dict((a, sum(1 for r in results if r["action"] == a)) for a in ACTIONS)
    done = count["analyzed"] + count["imported"] + count["covered"]
    result = dict(in_scope=in_scope, had_statistics=present, needed=len(results) + len(cannot),
                  not_allowed=len(cannot), method=method, parallel=parallel, seconds=round(seconds, 3),
                  import_seconds=import_seconds,
                  analyze_seconds_total=round(sum(r.get("seconds") or 0 for r in results
                                                  if r["action"] == "analyzed"), 3),
                  tables_per_second=round(done / seconds, 2) if seconds > 0 and done else None)
    result.update(count)
    return result


def jobs_verdict(statuses):
    """Whether the background jobs pg_analyze waits for (wait_for_jobs) let it start. Pure.

    statuses: [(job file, what async_status says of it)] (progress.async_job_status). Returns ('wait', what is
    still running), ('go', None) once every job has finished, or ('stop', why) as soon as one has failed: the
    statistics of a table whose load or indexes did not get there are not worth gathering, and the phase stops
    on that job's own error anyway."""
    failed = [(path, status) for path, status in statuses if status.get("finished") and status.get("failed")]
    if failed:
        path, status = failed[0]
        return "stop", "not started: the job it waits for (%s) failed: %s" % (
            path, str(status.get("msg") or "no message").strip())
    running = [path for path, status in statuses if not status.get("finished")]
    if running:
        return "wait", "waiting for %d job(s) to end: %s" % (len(running), ", ".join(
            path.rsplit("/", 1)[-1] for path in running))
    return "go", None
