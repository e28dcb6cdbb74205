"""bench/tables.py: the Markdown of a result file of bench/initial_load, and the markers it writes between."""

import os
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bench")
sys.path.insert(0, os.path.join(BENCH, "initial_load"))
sys.path.insert(0, BENCH)

import summary  # noqa: E402
import tables  # noqa: E402

NAME = "bench/results/initial-load/20261206T1500-abc1234.json"


def run(tool, seconds, ok=True, failures=(), rnd=1, tree=150.0):
    return dict(tool=tool, seconds=seconds, ok=ok, failures=list(failures), round=rnd, rows_per_second=1000,
                memory=dict(peak_tree_rss_mb=tree, peak_process_rss_mb=tree / 2),
                check=dict(partitioned_without_statistics=["public.shipments"] if tool == "pgcopydb" else []))


def size(scale, runs):
    tools = ["pgshift_playbook", "pgshift_modules", "pgcopydb", "pg_dump_restore"]
    per_tool = dict((t, summary.summarize([r for r in runs if r["tool"] == t])) for t in tools)
    return dict(pgbench_scale=scale, versions=dict(source="16.15", target="18.6"),
                dataset=dict(tables=28, rows=100000 * scale, table_bytes=15e6 * scale),
                pgshift_setup=dict(prepare_source_seconds=3.0, assess_seconds=4.5, seconds=7.5),
                tools=per_tool, ratios=summary.ratios(per_tool), runs=runs)


@pytest.fixture(name="result")
def fixture_result():
    s1 = size(50, [run("pgshift_playbook", 12.0), run("pgshift_playbook", 14.0, rnd=2),
                   run("pgshift_modules", 6.0), run("pgshift_modules", 6.0, rnd=2),
                   run("pgcopydb", 8.0), run("pgcopydb", 1.0, ok=False, rnd=2,
                                             failures=["indexes: 46 on the source, 0 on the target"]),
                   run("pg_dump_restore", 10.0), run("pg_dump_restore", 10.0, rnd=2)])
    s2 = size(200, [run("pgshift_playbook", 40.0), run("pgshift_modules", 30.0),
                    run("pgcopydb", 2.0, ok=False, failures=["tool failed: boom"]), run("pg_dump_restore", 50.0)])
    return dict(commit="abc1234", machine=dict(cores=2, cpu="AMD EPYC", memory_gb=23.4, kernel="6.18",
                                               load_average=[0.1, 0.2, 0.3]),
                versions=dict(pgcopydb="0.10-1", pg_dump="pg_dump (PostgreSQL) 18.6", ansible_core="2.18.1"),
                dataset="comparable", repeat=2, started_utc="2026-12-06T15:00:00Z", total_seconds=600.0,
                command="python bench/initial_load/run.py --scales 50,200 --repeat 2",
                tools=["pgshift_playbook", "pgshift_modules", "pgcopydb", "pg_dump_restore"], sizes=[s1, s2])


def test_the_tables_name_their_file_and_only_time_the_runs_that_passed(result):
    text = tables.render(result, NAME)
    assert text.startswith("From `%s`: collection at abc1234; 2 cores" % NAME)
    assert "pgcopydb 0.10-1" in text and "ansible-core 2.18.1" in text and "dataset `comparable`" in text
    rows = [ln for ln in text.splitlines() if ln.startswith("| pgcopydb |")]
    # scale 50: the failed run (1.0 s) is left out of median, min and max
    assert rows[0].startswith("| pgcopydb | 1 of 2 | 8.00 | 8.00-8.00 | 0.0% |")
    # scale 200: no run passed, no figure
    assert rows[1].startswith("| pgcopydb | 0 of 1 | - | - | - |")
    modules = [ln for ln in text.splitlines() if ln.startswith("| pgshift_modules |")][0]
    assert modules.endswith("| 0.750 | 0.600 |")  # 6 / 8 and 6 / 10
    assert "- pgcopydb, round 2: indexes: 46 on the source, 0 on the target" in text
    assert "- pgcopydb, round 1: tool failed: boom" in text
    assert "prepare_source.yml 3.00 s + assess.yml 4.50 s = 7.50 s" in text
    assert "#### pgbench scale 200: 28 tables, 20,000,000 rows, 3,000 MB of tables" in text
    assert "Partitioned parents left without statistics (not a failure): public.shipments, by pgcopydb." in text


def test_the_summary_gives_medians_and_ratios_per_size(result):
    text = tables.render_summary(result, NAME)
    assert "from `%s`, collection at abc1234" % NAME in text
    assert "| tool | scale 50 (5.0 M rows) | scale 200 (20.0 M rows) |" in text
    assert "| pgshift_playbook | 13.00 s | 40.00 s |" in text
    assert "| pgcopydb | 8.00 s | failed (0 of 1 passed) |" in text
    assert "| pgshift_modules / pgcopydb | 0.750x | - |" in text
    assert "| pgshift_modules / pg_dump_restore | 0.600x | 0.600x |" in text


def test_the_ratios_round_by_round_come_from_the_runs(result):
    text = tables.render(result, NAME)
    assert "Round by round (each round runs every tool once, one after the other)" in text
    # scale 50: playbook 12/10 and 14/10; pgcopydb passed in round 1 only (12/8)
    assert "| pgshift_playbook | 2 | 1.500 | 1.300 (1.200-1.400) |" in text
    assert "| pgshift_modules | 2 | 0.750 | 0.600 (0.600-0.600) |" in text
    # scale 200: pgcopydb failed, so its table has pg_dump_restore's column only
    assert "| tool | rounds | / pg_dump_restore |\n|---|---:|---:|\n| pgshift_playbook | 1 | 0.800 |" in text
    summary_text = tables.render_summary(result, NAME)
    assert ("| pgshift_playbook / pg_dump_restore, round by round: median (min-max) | 1.300x (1.200-1.400) "
            "| 0.800x |") in summary_text


def test_the_summary_says_what_a_floor_is(result):
    assert "not tools" not in tables.render_summary(result, NAME)
    for s in result["sizes"]:
        s["runs"].append(run("largest_table_floor", 5.0))
        floor_runs = [r for r in s["runs"] if r["tool"] == "largest_table_floor"]
        s["tools"]["largest_table_floor"] = summary.summarize(floor_runs)
        s["ratios"] = summary.ratios(s["tools"])
    result["tools"].append("largest_table_floor")
    text = tables.render_summary(result, NAME)
    assert "| largest_table_floor | 5.00 s | 5.00 s |" in text
    assert "| largest_table_floor / pg_dump_restore | 0.500x | 0.100x |" in text
    assert "largest_table_floor: not tools. The largest table alone" in text
    assert "| largest_table_floor | 1 of 1 | 5.00 |" in tables.render(result, NAME)


def test_replace_between_markers():
    text = "intro\n<!-- x:begin -->\nold\n<!-- x:end -->\nrest\n"
    expected = "intro\n<!-- x:begin -->\nnew table\n<!-- x:end -->\nrest\n"
    assert tables.replace_between(text, "x", "new table") == expected
    with pytest.raises(ValueError):
        tables.replace_between("no markers", "x", "body")


def test_both_readmes_hold_the_markers():
    for rel, marker in tables.MARKERS.items():
        with open(os.path.join(tables.REPO, rel), encoding="utf-8") as f:
            text = f.read()
        assert "<!-- %s:begin -->" % marker in text and "<!-- %s:end -->" % marker in text


def test_newest_file_by_name(tmp_path):
    assert tables.newest(str(tmp_path)) is None
    for name in ("20261206T1500-aaa.json", "20261207T0900-bbb.json", "20261206T1600-ccc.json"):
        (tmp_path / name).write_text("{}")
    assert tables.newest(str(tmp_path)).endswith("20261207T0900-bbb.json")


def test_the_header_names_the_baseline_commit(result):
    assert "pgshift_playbook_baseline" not in tables.header(result, NAME)
    result["baseline"] = dict(commit="597dddf")
    assert tables.header(result, NAME).endswith(
        " pgshift_playbook_baseline: the roles and modules of 597dddf, this checkout's ansible.cfg.")
