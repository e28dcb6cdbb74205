"""Progress lines, rates, ETAs and the wait's end conditions (module_utils/progress.py)."""

from __future__ import annotations

from ansible_collections.pgshift.aurora.plugins.module_utils import progress


def stream(name="pgshift_m_s1", state="copying", tables=(), load=None, lag=None, seconds=None, **extra):
    s = dict(name=name, state=state, message="%s is %s" % (name, state), lag_bytes=lag, lag_seconds=seconds,
             retained_bytes=None, tables=list(tables), load=load or {})
    s.update(extra)
    return s


def test_table_rates_and_eta():
    rates = progress.table_rates({"t": (100, 1000)}, {"t": (600, 6000), "u": (10, 10)}, 5.0)
    assert rates == {"t": (100.0, 1000.0), "u": (2.0, 2.0)}
    assert progress.table_rates({}, {"t": (1, 1)}, 0) == {}
    assert progress.table_eta(600, 1600, 100.0) == 10.0
    assert progress.table_eta(600, 500, 100.0) is None
    assert progress.table_eta(600, 1600, 0) is None


def test_lines_show_streams_and_copying_tables_with_rates():
    status = dict(streams=[stream(
        tables=[dict(table="public.big", state="copying", rows=600, bytes=6000),
                dict(table="public.small", state="copied", rows=5, bytes=50)],
        load=dict(units=2, copied=1, percent=50.0, rows=605, bytes=6050, bytes_per_second=1210.0, eta_seconds=5))])
    out = progress.lines(status, 65, {"public.big": (100.0, 1000.0)}, {"public.big": dict(rows=1600, bytes=16000)})
    assert out[0].startswith("[0:01:05] pgshift_m_s1")
    assert "load 1/2 units  50.0% 605 rows" in out[0] and "ETA 0:00:05" in out[0]
    assert len(out) == 2 and "public.big" in out[1] and "600/1,600 rows" in out[1] and "ETA 0:00:10" in out[1]


def test_lines_show_lag_and_errors():
    out = progress.lines(dict(streams=[stream(state="error", lag=2048, seconds=1.5, message="disabled: fix it")]),
                         1, {}, {})
    assert "lag 2.0 kB 1.5s" in out[0]
    assert out[1].strip() == "ERROR: disabled: fix it"
    assert progress.lines(dict(streams=[]), 0, {}, {}) == ["[0:00:00] no stream found yet"]


def test_reached():
    loading = dict(streams=[stream(load=dict(done=False))])
    loaded = dict(streams=[stream(load=dict(done=True))])
    assert progress.reached("loaded", loading, True)[0] is False
    assert progress.reached("loaded", loaded, False)[0] is False   # the job has not returned yet
    assert progress.reached("loaded", loaded, True)[0] is True
    assert progress.reached("loaded", dict(streams=[]), True)[0] is False
    assert progress.reached("caught_up", dict(streams=[], caught_up=True), True)[0] is True
    assert progress.reached("barrier", dict(streams=[], barrier_reached=False), True)[0] is False


def test_failure():
    assert progress.failure(dict(errors=[]), [dict(jid="1", failed=False)]) is None
    msg = progress.failure(dict(errors=["s1 disabled"]), [dict(jid="9", stream="s2", failed=True, msg="boom")])
    assert msg == "s1 disabled; load job s2 failed: boom"


def test_csv_rows_and_estimates():
    status = dict(streams=[stream(lag=10, seconds=0.5, load=dict(rows=3, bytes=4, percent=100.0))])
    assert progress.csv_rows(status, 12.34) == [[12.3, "pgshift_m_s1", "copying", 10, 0.5, None, 3, 4, 100.0]]
    plan = dict(streams=[dict(tables=[dict(qualified="public.a", rows=7, bytes=8)])])
    assert progress.estimates(plan) == {"public.a": dict(rows=7, bytes=8)}


def test_index_build_units_follow_the_phase():
    assert progress.index_build_units(dict(blocks_total=100, blocks_done=40, tuples_total=0)) == (40, 100, "blocks")
    assert progress.index_build_units(dict(blocks_total=0, tuples_total=500, tuples_done=None)) == (0, 500, "tuples")
    assert progress.index_build_units(dict(phase="building index: sorting live tuples")) == (None, None, None)


def test_index_rates_only_within_one_index_and_phase():
    scan = "building index: scanning table"
    before = {"public.a": ("a_pkey", scan, 100), "public.b": ("b_pkey", scan, 900)}
    after = {"public.a": ("a_pkey", scan, 600), "public.b": ("b_pkey", "building index: loading tuples in tree", 10),
             "public.c": ("c_pkey", scan, 5)}
    assert progress.index_rates(before, after, 5.0) == {"public.a": 100.0}
    assert progress.index_rates(before, after, 0) == {}


def test_lines_show_each_key_build_with_rate_and_eta():
    build = dict(index="big_pkey", phase="building index: scanning table", blocks_total=1000, blocks_done=250)
    status = dict(streams=[stream(tables=[
        dict(table="public.big", state="indexing", keys_pending=2, index_build=build),
        dict(table="public.next", state="indexing", keys_pending=1, index_build=None)])])
    out = progress.lines(status, 10, {}, {}, index_speeds={"public.big": 50.0})
    line = [x for x in out if "public.big" in x][0]
    assert "building big_pkey (2 key(s) of the table left): building index: scanning table" in line
    # 750 blocks left at 50 blocks/s; 50 blocks of 8 KiB a second (human_bytes counts in 1024s)
    assert " 25.0% 2.0 MB/7.8 MB 400.0 kB/s ETA 0:00:15" in line, line
    assert out[-1].strip() == "key(s) dropped for the copy, to build: public.next"
    # the first look at a build has no rate yet: said, not made up
    first = progress.lines(status, 0, {}, {})
    assert "ETA -" in [x for x in first if "public.big" in x][0]


def test_an_index_build_line_in_tuples_and_in_a_phase_without_counts():
    line = progress.index_build_line("public.t", dict(index="t_pkey", phase="building index: loading tuples in tree",
                                                      tuples_total=10000, tuples_done=4000), 2000.0)
    assert "40.0% 4,000/10,000 tuples 2,000 tuples/s ETA 0:00:03" in line
    line = progress.index_build_line("public.t", dict(index="t_pkey", phase="building index: sorting live tuples"),
                                     None)
    assert line.endswith("building t_pkey: building index: sorting live tuples, rate - ETA -")


def test_steps_progress_counts_steps_and_the_wait_for_a_wal_sender():
    waiting = progress.steps_progress(5, 3, 6.0, "waiting for the WAL sender (pid 42) of slot s1 to stop",
                                      retained_bytes=3 * 1024 ** 3, wait_left=20.0)
    # 3 steps in 6 s: 0.5 steps/s; the wait (20 s at most) then one more step at that rate
    assert waiting == dict(unit="steps", rows=3, rows_expected=5, rows_per_second=0.5, eta_seconds=22.0, percent=60.0,
                           phase="waiting for the WAL sender (pid 42) of slot s1 to stop; the slot holds 3.0 GB of "
                                 "WAL on the source")
    assert progress.steps_progress(4, 2, 2.0, "slot drop of s1")["eta_seconds"] == 2.0
    assert progress.steps_progress(4, 0, 0.0, "subscription disable of s1")["eta_seconds"] is None
    done = progress.steps_progress(4, 4, 2.0, "s1 removed")
    assert done["eta_seconds"] == 0.0 and done["percent"] == 100.0
    assert progress.steps_progress(0, 0, 0.1, "s1: nothing to remove")["percent"] == 100.0


def test_progress_file_is_written_whole_and_not_too_often(tmp_path):
    path = tmp_path / "sub" / "p.json"
    f = progress.ProgressFile(str(path))
    f.SECONDS = 3600  # (no clock in the test: the next unforced write comes "too soon")
    f.write(dict(rows=1), force=True)
    f.write(dict(rows=2))  # too soon: skipped
    assert path.read_text() == '{"rows": 1}'
    f.write(dict(rows=3), force=True)
    assert path.read_text() == '{"rows": 3}'
    progress.ProgressFile(None).write(dict(rows=1), force=True)  # no path, no file
