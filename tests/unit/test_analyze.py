"""Planner statistics on the target (module_utils/analyze.py) and the cutover's statistics gate (cutover.py)."""

from __future__ import annotations

import json

import pytest

from ansible_collections.pgshift.aurora.plugins.module_utils import analyze, cutover, scope
from ansible_collections.pgshift.aurora.plugins.module_utils.runners import analyze as runner

PG16, PG17, PG18 = 160004, 170002, 180001


def rel(oid, name, relkind="r", parents=(), has_children=False, is_partition=False, schema="public"):
    return dict(oid=oid, schema=schema, name=name, relkind=relkind, parents=list(parents), has_children=has_children,
                is_partition=is_partition, owner="app_owner")


def st(heap=8192, reltuples=-1.0, analysed=False, mods=0, own=0, inherited=0, visible=True, can=True,
       owner="app_owner"):
    return dict(heap_bytes=heap, reltuples=reltuples, analysed=analysed, analysed_at=None, mod_since_analyze=mods,
                own_stats=own, inherited_stats=inherited, stats_visible=visible, can_analyze=can, owner=owner)


def records(*pairs):
    """observe() over (relation, statistics) pairs, classified as the module classifies them."""
    rels = scope.classify([r for r, stats in pairs])
    return analyze.observe(rels, dict((r["oid"], s) for r, s in pairs))


def by_name(recs):
    return dict((r["name"], r) for r in recs)


def tree():
    """A partitioned table (one leaf sub-partitioned), an inheritance parent with two children, a plain table,
    an empty table and a hard-named one: nothing analysed."""
    return records(
        (rel(1, "shipments", "p", has_children=True), st(heap=0)),
        (rel(2, "shipments_2025_01", parents=[1], is_partition=True), st(heap=4000)),
        (rel(3, "shipments_2025_02", "p", parents=[1], is_partition=True, has_children=True), st(heap=0)),
        (rel(4, "shipments_2025_02a", parents=[3], is_partition=True), st(heap=3000)),
        (rel(5, "shipments_2025_02b", parents=[3], is_partition=True), st(heap=0)),
        (rel(6, "tracking_events", has_children=True), st(heap=0)),
        (rel(7, "tracking_events_2025_01", parents=[6]), st(heap=500)),
        (rel(8, "tracking_events_2025_02", parents=[6]), st(heap=700)),
        (rel(9, "parcels"), st(heap=9000)),
        (rel(10, "empty"), st(heap=0)),
        (rel(11, "order", schema="Shipping Ops"), st(heap=100)),
    )


# ----------------------------------------------------------------------------------------------
# observe


def test_observe_sums_trees_and_names_descendants():
    recs = by_name(tree())
    assert recs["shipments"]["tree_bytes"] == 7000 and recs["shipments"]["is_parent"]
    assert sorted(recs["shipments"]["descendants"]) == [2, 3, 4, 5]
    assert recs["shipments_2025_02"]["tree_bytes"] == 3000 and recs["shipments_2025_02"]["is_parent"]
    assert recs["shipments_2025_02"]["kind"] == "partition"
    assert recs["tracking_events"]["tree_bytes"] == 1200 and recs["tracking_events"]["kind"] == "inheritance_parent"
    assert recs["parcels"]["tree_bytes"] == 9000 and not recs["parcels"]["is_parent"]
    assert recs["order"]["table"] == '"Shipping Ops"."order"' and recs["order"]["schema"] == "Shipping Ops"


def test_observe_leaves_out_relations_without_statistics_rows_and_counts_children_with_stats():
    recs = records((rel(1, "p", "p", has_children=True), st(heap=0)),
                   (rel(2, "p1", parents=[1], is_partition=True), st(own=2, analysed=True, reltuples=5)),
                   (rel(3, "gone"), None))
    assert [r["name"] for r in recs] == ["p", "p1"]
    assert by_name(recs)["p"]["descendants_with_stats"] == 1


# ----------------------------------------------------------------------------------------------
# statistics_need and blockers


def one(relation=None, **stats):
    relation = relation or rel(1, "t")
    return records((relation, st(**stats)))[0]


@pytest.mark.parametrize("stats, state", [
    (dict(), analyze.MISSING),  # never analysed: reltuples -1, no pg_stats rows
    (dict(own=3, analysed=True, reltuples=10), analyze.PRESENT),
    (dict(own=3, reltuples=10), analyze.PRESENT),  # imported: pg_stats rows, last_analyze null
    (dict(reltuples=10), analyze.MISSING),  # vacuumed only: a row estimate, no column statistics
    (dict(analysed=True, reltuples=0, heap=0), analyze.PRESENT),  # analysed empty, still empty
    (dict(analysed=True, reltuples=0, mods=0), analyze.PRESENT),  # pages of dead rows, nothing written since
    (dict(analysed=True, reltuples=0, mods=500), analyze.STALE),  # analysed empty, loaded since
    (dict(visible=False, analysed=True), analyze.PRESENT),  # column statistics not readable: the counters say
    (dict(visible=False, reltuples=10), analyze.PRESENT),
    (dict(visible=False), analyze.MISSING),
])
def test_statistics_need_of_a_table(stats, state):
    found, reason = analyze.statistics_need(one(**stats))
    assert found == state
    assert (reason is None) == (state == analyze.PRESENT)


def test_a_parent_needs_its_inherited_statistics():
    parent = rel(1, "p", "p", has_children=True)
    leaf = rel(2, "p1", parents=[1], is_partition=True)
    # the leaves analysed by autovacuum, the parent never: missing (autovacuum never analyses a parent)
    recs = by_name(records((parent, st(heap=0)), (leaf, st(own=2, analysed=True, reltuples=50))))
    assert analyze.statistics_need(recs["p"])[0] == analyze.MISSING
    # own (non-inherited) rows do not count for a parent
    recs = by_name(records((parent, st(heap=0, own=2)), (leaf, st(own=2, analysed=True, reltuples=50))))
    assert analyze.statistics_need(recs["p"])[0] == analyze.MISSING
    recs = by_name(records((parent, st(heap=0, inherited=2, reltuples=50, analysed=True)),
                           (leaf, st(own=2, analysed=True, reltuples=50))))
    assert analyze.statistics_need(recs["p"])[0] == analyze.PRESENT
    # analysed while the tree was empty, the leaves measured since: stale; with an empty tree: present
    recs = by_name(records((parent, st(heap=0, reltuples=0, analysed=True)),
                           (leaf, st(own=2, analysed=True, reltuples=50))))
    assert analyze.statistics_need(recs["p"])[0] == analyze.STALE
    recs = by_name(records((parent, st(heap=0, reltuples=0, analysed=True)), (leaf, st(heap=0, analysed=True))))
    assert analyze.statistics_need(recs["p"])[0] == analyze.PRESENT


def test_blockers_are_non_empty_tables_without_any_statistics():
    recs = tree()
    found = analyze.blockers(recs)
    names = [b["name"] for b in found]
    # empty: the empty table and the empty leaf (shipments_2025_02b); every other one holds pages
    assert "empty" not in names and "shipments_2025_02b" not in names
    assert {"shipments", "shipments_2025_02", "tracking_events", "parcels", "order"} <= set(names)
    assert next(b for b in found if b["name"] == "shipments")["bytes"] == 7000
    assert next(b for b in found if b["name"] == "order")["table"] == '"Shipping Ops"."order"'
    stale = one(analysed=True, reltuples=0, mods=500)
    assert analyze.blockers([stale]) == []


# ----------------------------------------------------------------------------------------------
# selection, why_not, choose_method, dump_filter


def test_selection_keeps_what_needs_statistics_and_says_who_may_not():
    recs = records((rel(1, "a"), st()), (rel(2, "b"), st(own=2, analysed=True, reltuples=3)),
                   (rel(3, "c"), st(can=False, owner="billing_owner")))
    todo, cannot, present = analyze.selection(recs, False, "dbadmin", PG16)
    assert [t["name"] for t in todo] == ["a"] and todo[0]["reason"] == "never analysed"
    assert present == 1
    assert [c["name"] for c in cannot] == ["c"]
    assert "owned by billing_owner" in cannot[0]["why"] and "grant billing_owner to dbadmin" in cannot[0]["why"]
    assert "pg_maintain" not in cannot[0]["why"]
    todo, cannot, present = analyze.selection(recs, True, "dbadmin", PG17)
    assert [t["name"] for t in todo] == ["a", "b"] and todo[1]["reason"] == "force" and present == 0
    assert "grant pg_maintain or billing_owner to dbadmin" in cannot[0]["why"]


@pytest.mark.parametrize("method, version, major, source, chosen, problem", [
    ("analyze", PG18, 18, True, "analyze", False),
    ("auto", PG18, 18, True, "import", False),
    ("auto", PG16, 18, True, "analyze", False),
    ("auto", PG18, 17, True, "analyze", False),
    ("auto", PG18, None, True, "analyze", False),
    ("auto", PG18, 18, False, "analyze", False),
    ("import", PG18, 18, True, "import", False),
    ("import", PG17, 18, True, None, True),
    ("import", PG18, None, True, None, True),
    ("import", PG18, 18, False, None, True),
])
def test_choose_method(method, version, major, source, chosen, problem):
    got, note, why = analyze.choose_method(method, version, major, source)
    assert got == chosen
    assert bool(why) == problem
    if method == "auto" and chosen == "analyze":
        assert note.startswith("analyze (import not possible: ")


def test_choose_method_says_every_missing_condition():
    chosen, note, why = analyze.choose_method("import", PG16, 16, False)
    assert "PostgreSQL 16" in why and "pg_dump 16 has no --statistics-only" in why and "source_login_host" in why


def test_dump_filter_quotes_every_name_exactly():
    recs = records((rel(1, "order", schema="Shipping Ops"), st()), (rel(2, 'Zöll "A".b*', schema='eu.west "x"'), st()),
                   (rel(3, "line\nbreak"), st()))
    text, left_out = analyze.dump_filter(recs)
    assert text.splitlines() == ['include table "Shipping Ops"."order"',
                                 'include table "eu.west ""x"""."Zöll ""A"".b*"']
    assert [t["oid"] for t in left_out] == [3]


# ----------------------------------------------------------------------------------------------
# Scheduling


def todo_of(recs, version=PG18):
    return analyze.selection(recs, False, "dbadmin", version)[0]


def test_pg18_parents_are_analysed_only_after_their_descendants():
    items = analyze.work_items(todo_of(tree()), PG18)
    by = dict((i["name"], i) for i in items)
    assert len(items) == 11  # every relation: nothing is covered on 18
    assert by["shipments"]["only"] and by["shipments_2025_02"]["only"] and by["tracking_events"]["only"]
    assert not by["parcels"]["only"] and not by["shipments_2025_01"]["only"]
    assert by["shipments"]["waits_for"] == {2, 3, 4, 5}
    assert by["shipments_2025_02"]["waits_for"] == {4, 5}
    assert by["tracking_events"]["waits_for"] == {7, 8}
    order = [i["name"] for i in analyze.sequential_order(items)]
    for parent, children in (("shipments", ["shipments_2025_01", "shipments_2025_02", "shipments_2025_02a"]),
                             ("shipments_2025_02", ["shipments_2025_02a", "shipments_2025_02b"]),
                             ("tracking_events", ["tracking_events_2025_01", "tracking_events_2025_02"])):
        assert all(order.index(c) < order.index(parent) for c in children), order
    # biggest first among what is ready; equal weights in name order
    assert order[:4] == ["parcels", "shipments_2025_01", "shipments_2025_02a", "tracking_events_2025_02"]
    assert order.index("empty") < order.index("shipments_2025_02b")


def test_before_18_a_partitioned_parent_covers_its_partitions():
    items = analyze.work_items(todo_of(tree(), PG16), PG16)
    by = dict((i["name"], i) for i in items)
    # ANALYZE shipments analyses every partition, sub-partitions included: they are not analysed on their own
    assert not any(n.startswith("shipments_") for n in by)
    assert by["shipments"]["covers"] == ["public.shipments_2025_01", "public.shipments_2025_02",
                                         "public.shipments_2025_02a", "public.shipments_2025_02b"]
    assert not by["shipments"]["only"] and by["shipments"]["waits_for"] == set()
    # an inheritance parent does not recurse: it runs (without ONLY) after its children
    assert not by["tracking_events"]["only"] and by["tracking_events"]["waits_for"] == {7, 8}


def test_before_18_partitions_of_a_parent_with_statistics_run_on_their_own():
    recs = records((rel(1, "p", "p", has_children=True), st(heap=0, inherited=2, reltuples=9, analysed=True)),
                   (rel(2, "p1", parents=[1], is_partition=True), st(heap=10)),
                   (rel(3, "p2", parents=[1], is_partition=True), st(heap=20, own=1, analysed=True, reltuples=3)))
    items = analyze.work_items(todo_of(recs, PG16), PG16)
    assert [(i["name"], i["covers"], i["waits_for"]) for i in items] == [("p1", [], set())]


def test_queue_waits_for_running_descendants_and_releases_parents_after_a_failure():
    items = analyze.work_items(todo_of(records(
        (rel(1, "p", "p", has_children=True), st(heap=0)),
        (rel(2, "p1", parents=[1], is_partition=True), st(heap=10)),
        (rel(3, "big"), st(heap=1000)))), PG18)
    q = analyze.Queue(items)
    first, second = q.take(), q.take()
    assert (first["name"], second["name"]) == ("big", "p1")
    assert q.take() is None  # p waits for p1, still running
    q.finish(first["oid"])
    assert q.take() is None
    q.finish(second["oid"])  # p1 failed or not: the parent runs
    assert q.take()["name"] == "p"
    assert not q.done()
    q.finish(1)
    assert q.done()


# ----------------------------------------------------------------------------------------------
# Progress and summary


def test_progress_file_content():
    data = analyze.progress(3, 10, 6.0, ["public.parcels", '"Shipping Ops"."order"'])
    assert data == dict(unit="tables", rows=3, rows_expected=10, rows_per_second=0.5, eta_seconds=14.0,
                        percent=30.0, phase='analysing public.parcels, "Shipping Ops"."order"')
    many = analyze.progress(0, 10, 0, ["t%d" % i for i in range(6)])
    assert many["phase"] == "analysing t0, t1, t2, t3 and 2 more" and many["eta_seconds"] is None
    assert analyze.progress(10, 10, 2.0, [])["phase"] == "done"
    assert analyze.progress(0, 0, 0, [], "reading")["percent"] == 100.0


def test_summary_counts_each_action():
    results = [dict(action="analyzed", seconds=0.5), dict(action="analyzed", seconds=0.25),
               dict(action="imported", seconds=None), dict(action="covered"), dict(action="failed", seconds=0.1)]
    s = analyze.summary(results, [dict(table="x")], 7, 13, "import", 2, 2.0, import_seconds=0.8)
    assert (s["analyzed"], s["imported"], s["covered"], s["failed"], s["not_allowed"]) == (2, 1, 1, 1, 1)
    assert s["needed"] == 6 and s["had_statistics"] == 7 and s["in_scope"] == 13
    assert s["analyze_seconds_total"] == 0.75 and s["tables_per_second"] == 2.0 and s["import_seconds"] == 0.8


# ----------------------------------------------------------------------------------------------
# The cutover's preflight gate


def test_statistics_gate_no_go_names_the_tables_and_the_way_out():
    found = analyze.blockers(tree())
    reasons, note, overridden = cutover.statistics_gate(found)
    assert not overridden and len(reasons) == 1 and reasons[0] == note
    assert "public.parcels" in note and '"Shipping Ops"."order"' in note and "pg_analyze" in note
    assert "statistics_override" in note


def test_statistics_gate_go_when_every_table_has_statistics_or_overridden():
    assert cutover.statistics_gate([]) == ([], "every non-empty table has planner statistics", False)
    found = [dict(table="public.t%d" % i) for i in range(12)]
    reasons, note, overridden = cutover.statistics_gate(found, True, "CAB-123: analysed right after the switch")
    assert reasons == [] and overridden
    assert "CAB-123: analysed right after the switch" in note and "12 non-empty table(s)" in note
    assert "and 2 more" in note


def test_the_override_needs_a_reason():
    base = dict(direction="forward", freeze_method="read_only", switch_method="none", freeze_timeout=5,
                app_roles=["app"])
    assert cutover.check_options(base) == []
    assert any("statistics_override_reason" in p for p in cutover.check_options(dict(base, statistics_override=True)))
    assert any("statistics_override_reason" in p
               for p in cutover.check_options(dict(base, statistics_override=True, statistics_override_reason=" ")))
    assert cutover.check_options(dict(base, statistics_override=True, statistics_override_reason="why")) == []


# --- waiting for the loads and the post stage (wait_for_jobs) ---------------------------------------------------

RUNNING = dict(started=1, finished=0, ansible_job_id="j1")


def test_jobs_verdict_waits_while_a_job_runs_and_goes_once_all_ended():
    verdict, why = analyze.jobs_verdict([("/a/j1", RUNNING), ("/a/j2", dict(finished=True, changed=True))])
    assert verdict == "wait" and why == "waiting for 1 job(s) to end: j1"
    assert analyze.jobs_verdict([("/a/j1", dict(finished=True)), ("/a/j2", dict(finished=True))]) == ("go", None)
    assert analyze.jobs_verdict([]) == ("go", None)


def test_jobs_verdict_stops_on_the_first_failed_job_even_while_others_run():
    verdict, why = analyze.jobs_verdict([("/a/j1", RUNNING),
                                         ("/a/j2", dict(finished=True, failed=True, msg="initial load failed "))])
    assert verdict == "stop"
    assert why == "not started: the job it waits for (/a/j2) failed: initial load failed"


def analyze_params(tmp_path, jobs, timeout=60):
    params = dict((k, v.get("default")) for k, v in runner.argument_spec().items())
    params.update(login_host="127.0.0.1", login_password="pw", wait_for_jobs=jobs, wait_timeout=timeout,
                  progress_file=str(tmp_path / "progress.json"))
    return params


def test_the_wait_reads_the_job_files_until_they_hold_results(tmp_path, monkeypatch):
    job = tmp_path / "j1"
    job.write_text(json.dumps(RUNNING))
    params = analyze_params(tmp_path, [str(job)])
    sleeps = []

    def sleep(seconds):  # the job ends after the second check
        sleeps.append(seconds)
        if len(sleeps) == 2:
            job.write_text(json.dumps(dict(changed=True, stream="s1")))

    monkeypatch.setattr(runner.time, "sleep", sleep)
    assert runner.Analyze(params).wait_for_jobs() >= 0
    assert sleeps == [runner.JOB_CHECK_SECONDS] * 2
    assert "waiting for 1 job(s) to end: j1" in (tmp_path / "progress.json").read_text()


@pytest.mark.parametrize("content, message", [
    (dict(failed=True, msg="initial load of stream s1 failed"), "failed: initial load of stream s1 failed"),
    (None, "could not find job"),
])
def test_the_wait_stops_on_a_failed_or_missing_job(tmp_path, monkeypatch, content, message):
    job = tmp_path / "j1"
    if content is not None:
        job.write_text(json.dumps(content))
    params = analyze_params(tmp_path, [str(job)])
    monkeypatch.setattr(runner.time, "sleep", lambda s: pytest.fail("no wait after a failed job"))
    with pytest.raises(runner.AnalyzeError, match=message):
        runner.Analyze(params).wait_for_jobs()


def test_the_wait_gives_up_after_wait_timeout(tmp_path, monkeypatch):
    job = tmp_path / "j1"
    job.write_text(json.dumps(RUNNING))
    params = analyze_params(tmp_path, [str(job)], timeout=5)
    clock = iter(range(0, 100, 2))
    monkeypatch.setattr(runner.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(runner.time, "sleep", lambda s: None)
    with pytest.raises(runner.AnalyzeError, match=r"did not end within 5 s \(wait_timeout\); waiting for 1 job"):
        runner.Analyze(params).wait_for_jobs()


def test_wait_timeout_must_be_positive(tmp_path):
    params = analyze_params(tmp_path, [], timeout=0)
    assert "wait_timeout must be at least 1 second (got 0)" in runner.option_problems(params)
