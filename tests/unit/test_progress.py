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
