"""bench/initial_load's pure parts: the rotated order, median and spread, the checks a run must pass, the ratios,
and the /proc parsing of the memory sampler. No database, no lab, no clock."""

import os
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bench")
sys.path.insert(0, os.path.join(BENCH, "initial_load"))

import procmem  # noqa: E402
import summary  # noqa: E402

TOOLS = ["a", "b", "c"]


def test_rotation_puts_every_tool_once_in_every_position():
    rounds = [summary.rotation(TOOLS, r) for r in range(3)]
    assert rounds == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"]]
    for position in range(3):
        assert sorted(r[position] for r in rounds) == TOOLS
    assert summary.rotation(TOOLS, 4) == ["b", "c", "a"]
    assert summary.rotation([], 2) == []


def test_spread_of_seconds():
    s = summary.spread([10.0, 12.0, 11.0, 20.0, None])
    assert s == dict(n=4, median=11.5, min=10.0, max=20.0, spread=10.0, spread_pct=87.0)
    assert summary.spread([])["median"] is None
    assert summary.spread([5.0]) == dict(n=1, median=5.0, min=5.0, max=5.0, spread=0.0, spread_pct=0.0)


def good_check(**over):
    check = dict(tool_success=True, mismatches=[],
                 schema_objects=dict(indexes=dict(source=46, target=46), foreign_keys=dict(source=16, target=16),
                                     triggers=dict(source=3, target=3)),
                 foreign_keys_not_validated_target=0, tables_without_statistics=[],
                 partitioned_without_statistics=["public.shipments"],
                 materialized_views=dict(populated=1, total=1))
    check.update(over)
    return check


def test_a_run_with_the_same_end_state_passes():
    assert summary.check_failures(good_check()) == []


def test_an_unlogged_table_left_empty_does_not_fail_a_run():
    check = good_check(mismatches=[dict(table="public.session_cache", source=200, target=0, unlogged=True)])
    assert summary.check_failures(check) == []


@pytest.mark.parametrize("over, expected", [
    (dict(tool_success=False, tool_error="pgcopydb clone exited with 12"),
     "tool failed: pgcopydb clone exited with 12"),
    (dict(mismatches=[dict(table="public.parcels", source=10, target=None, unlogged=False)]),
     "rows differ on 1 table(s) (source/target): public.parcels 10/None"),
    (dict(schema_objects=dict(indexes=dict(source=46, target=45))), "indexes: 46 on the source, 45 on the target"),
    (dict(foreign_keys_not_validated_target=2), "2 foreign key(s) not validated on the target"),
    (dict(tables_without_statistics=["public.parcels"]),
     "1 table(s) with rows but no planner statistics: public.parcels"),
    (dict(materialized_views=dict(populated=0, total=1)), "materialized views populated: 0 of 1"),
])
def test_each_failed_check_marks_the_run_failed(over, expected):
    assert summary.check_failures(good_check(**over)) == [expected]


def test_a_failed_run_is_not_timed_into_the_median():
    runs = [dict(ok=True, seconds=10.0, memory=dict(peak_tree_rss_mb=100.0, peak_process_rss_mb=60.0)),
            dict(ok=False, seconds=1.0, failures=["indexes: 46 on the source, 0 on the target"],
                 memory=dict(peak_tree_rss_mb=5.0, peak_process_rss_mb=5.0)),
            dict(ok=True, seconds=14.0, memory=dict(peak_tree_rss_mb=120.0, peak_process_rss_mb=70.0))]
    s = summary.summarize(runs)
    assert (s["runs"], s["passed"], s["failed"]) == (3, 2, 1)
    assert s["seconds"]["median"] == 12.0 and s["seconds"]["min"] == 10.0
    assert s["peak_tree_rss_mb"]["max"] == 120.0
    assert s["failures"] == ["indexes: 46 on the source, 0 on the target"]


def test_ratios_of_medians_and_none_without_a_passing_run():
    tools = dict(pgshift_modules=summary.summarize([dict(ok=True, seconds=9.0)]),
                 pgcopydb=summary.summarize([dict(ok=True, seconds=10.0)]),
                 pg_dump_restore=summary.summarize([dict(ok=False, seconds=3.0)]))
    assert summary.ratios(tools) == dict(pgshift_modules_over_pgcopydb=0.9, pgshift_modules_over_pg_dump_restore=None)


def test_a_floor_gets_its_ratios_to_the_peers():
    tools = dict(largest_table_floor=summary.summarize([dict(ok=True, seconds=22.0), dict(ok=True, seconds=24.0)]),
                 pgcopydb=summary.summarize([dict(ok=True, seconds=27.5)]))
    assert summary.ratios(tools) == dict(largest_table_floor_over_pgcopydb=0.836)


def test_paired_ratios_are_taken_round_by_round_and_skip_a_round_either_failed():
    runs = [dict(tool="pgshift_playbook", round=1, ok=True, seconds=80.0),
            dict(tool="pg_dump_restore", round=1, ok=True, seconds=100.0),
            dict(tool="pgshift_playbook", round=2, ok=True, seconds=60.0),
            dict(tool="pg_dump_restore", round=2, ok=True, seconds=100.0),
            dict(tool="pgshift_playbook", round=3, ok=True, seconds=70.0),
            dict(tool="pg_dump_restore", round=3, ok=False, seconds=1.0),
            dict(tool="pgshift_playbook", round=4, ok=True, seconds=35.0),
            dict(tool="pg_dump_restore", round=4, ok=True, seconds=50.0)]
    paired = summary.paired_ratios(runs)
    # rounds 1, 2 and 4: 0.8, 0.6, 0.7; round 3's peer failed; no pgcopydb run: no key for it
    assert paired == dict(pgshift_playbook_over_pg_dump_restore=dict(n=3, median=0.7, min=0.6, max=0.8))
    # the ratio of the medians counts round 3's playbook run too: 65 s / 100 s, another figure
    names = ("pgshift_playbook", "pg_dump_restore")
    tools = dict((t, summary.summarize([r for r in runs if r["tool"] == t])) for t in names)
    assert summary.ratios(tools) == dict(pgshift_playbook_over_pg_dump_restore=0.65)
    # no peer run at all: no figure
    assert summary.paired_ratios([r for r in runs if r["tool"] != "pg_dump_restore"]) == {}


def test_the_floor_dumps_exactly_its_table_whatever_its_name():
    assert summary.table_pattern("public", "pgbench_accounts") == '"public"."pgbench_accounts"'
    assert summary.table_pattern("Shipping Ops", 'Parcel "Events".*') == '"Shipping Ops"."Parcel ""Events"".*"'


def test_descendants_of_a_process_tree():
    parents = {10: 1, 11: 10, 12: 11, 13: 10, 20: 1, 21: 20}
    assert procmem.descendants(parents, 10) == {11, 12, 13}
    assert procmem.descendants(parents, 99) == set()


def test_proc_parsing():
    assert procmem.parse_stat("4242 (ansible-playbook (x)) S 4200 4242 1 0") == (4242, "ansible-playbook (x)", 4200)
    text = "Name:\tpython\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n"
    assert procmem.parse_status_kb(text, "VmRSS", "VmHWM") == dict(VmRSS=102400, VmHWM=204800)
    assert procmem.parse_status_kb("Name:\tkthreadd\n", "VmRSS") == dict(VmRSS=0)


def test_the_tree_pss_is_read_once_per_pss_interval_and_the_peaks_every_sample():
    import subprocess

    child = subprocess.Popen(["sleep", "30"])
    try:
        mem = procmem.PeakMemory(root=os.getpid(), interval=0.2, pss_interval=1.0)
        for now in (100.0, 100.2, 100.4, 100.99, 101.0, 101.3):
            mem.sample(now=now)
        result = mem.result()
        assert result["samples"] == 6 and result["pss_samples"] == 2  # at 100.0 and 101.0
        assert result["peak_tree_rss_mb"] > 0 and result["peak_process"] == "sleep"
        assert result["interval"] == 0.2 and result["pss_interval"] == 1.0
    finally:
        child.kill()
        child.wait()


def test_a_tool_error_is_one_line_of_bounded_length():
    failures = summary.check_failures(good_check(tool_success=False, tool_error="first line\n  second\tline " + "x" * 900))
    assert len(failures) == 1 and "\n" not in failures[0]
    assert failures[0].startswith("tool failed: first line second line xxx") and failures[0].endswith(" ...")
    assert len(failures[0]) < 450


def test_result_files_are_named_by_start_and_commit_and_say_what_measured(tmp_path, monkeypatch):
    import datetime
    import json
    sys.path.insert(0, BENCH)
    import benchlab
    monkeypatch.setattr(benchlab, "collection_commit", lambda: "abc1234")
    started = datetime.datetime(2026, 12, 6, 18, 30, 5, tzinfo=datetime.timezone.utc)
    first = benchlab.write_result("validate", dict(benchmark="validate"), started, out_dir=str(tmp_path))
    second = benchlab.write_result("validate", dict(benchmark="validate"), started, out_dir=str(tmp_path))
    assert os.path.basename(first) == "20261206T1830-abc1234.json"
    assert os.path.basename(second) == "20261206T183005-abc1234.json"  # same minute: the seconds too
    with open(first, encoding="utf-8") as f:
        data = json.load(f)
    assert data["commit"] == "abc1234" and data["started_utc"] == "2026-12-06T18:30:05Z"
    assert data["machine"]["cores"] == os.cpu_count() and data["command"].startswith("python ")
    kept = benchlab.write_result("cdc", dict(commit="def5678 (with uncommitted changes)"), started, out_dir=str(tmp_path))
    assert os.path.basename(kept) == "20261206T1830-def5678.json"
