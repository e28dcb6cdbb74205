"""The native engine's decisions (module_utils/native.py), without a database."""

from __future__ import annotations

import pytest

from ansible_collections.pgshift.aurora.plugins.module_utils import native, scope
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import replication


def sql_text(stmt):
    return stmt.as_string(None)


def table(name, schema="public", **extra):
    entry = dict(schema=schema, name=name, key=["id"])
    entry.update(extra)
    return entry


def stream(*tables, name="pgshift_m_s1"):
    return native.validate_stream(dict(name=name, tables=list(tables)))


# --------------------------------------------------------------------------------------------
# The stream option
# --------------------------------------------------------------------------------------------

def test_validate_stream_normalizes_the_plan_entry():
    s = native.validate_stream(dict(name="pgshift_m_s1", tables=[
        dict(schema="public", name="shipments_2025_01", qualified="public.shipments_2025_01", only=False,
             kind="partition", bytes=123, rows=10, key=["id"], split=1),
        dict(schema="app", name="Events", only=True, primary_key=["id"], split=3, bytes="900"),
    ]))
    first, second = s["tables"]
    assert first["qualified"] == "public.shipments_2025_01" and first["split_key"] == "id"
    assert second["qualified"] == 'app."Events"' and second["only"] is True and second["key"] == ["id"]
    assert second["split"] == 3 and second["bytes"] == 900 and second["rows"] == 0


def test_validate_stream_lists_every_problem():
    with pytest.raises(native.StreamError) as err:
        native.validate_stream(dict(name="Bad-Name", tables=[dict(schema="public"), table("a", split=0),
                                                             table("b"), table("b")]))
    msg = str(err.value)
    assert "stream.name 'Bad-Name'" in msg
    assert "stream.tables[0] needs a schema and a name" in msg
    assert "split must be 1 or more" in msg
    assert "public.b is listed twice" in msg


def test_validate_stream_needs_a_dict_and_a_short_name():
    with pytest.raises(native.StreamError):
        native.validate_stream(["pgshift_m_s1"])
    with pytest.raises(native.StreamError, match="longer than 63"):
        native.validate_stream(dict(name="s" * 64, tables=[]))
    assert native.validate_stream(dict(name="pgshift_m_s2"))["tables"] == []


def test_split_key_only_for_a_single_key():
    s = stream(table("a", key=["id", "at"], split=4), table("b", split_key="n", key=["n"], split=2))
    assert s["tables"][0]["split_key"] is None and s["tables"][1]["split_key"] == "n"
    assert "no single-column primary key" in native.split_key_problem(s["tables"][0], None)
    assert native.split_key_problem(s["tables"][1], "bigint") is None
    assert "not an integer" in native.split_key_problem(s["tables"][1], "uuid")
    assert native.split_key_problem(stream(table("c"))["tables"][0], "uuid") is None


def test_target_options_are_the_connection_options_prefixed():
    spec = dict(login_host=dict(type="str", default="127.0.0.1"), login_password=dict(type="str", no_log=True))
    prefixed = native.prefixed_spec(spec, "target_")
    assert prefixed == dict(target_login_host=dict(type="str", default="127.0.0.1"),
                            target_login_password=dict(type="str", no_log=True))
    prefixed["target_login_host"]["default"] = "changed"
    assert spec["login_host"]["default"] == "127.0.0.1"
    params = dict(login_host="src", target_login_host="tgt", target_login_password="pw")
    assert native.unprefixed(params, spec, "target_") == dict(login_host="tgt", login_password="pw")


def test_load_application_name_fits_in_an_identifier():
    assert native.load_application_name("pgshift_m_s1") == "pgshift load pgshift_m_s1"
    assert len(native.load_application_name("x" * 63)) == 63


# --------------------------------------------------------------------------------------------
# Publication
# --------------------------------------------------------------------------------------------

def test_publication_diff_adds_and_drops_only_what_changed():
    s = stream(table("a"), table("b"), table("c"))
    current = [dict(schema="public", name="a"), dict(schema="public", name="z"), dict(schema="public", name="b")]
    diff = native.publication_diff(s["tables"], current)
    assert [t["qualified"] for t in diff["add"]] == ["public.c"]
    assert [t["qualified"] for t in diff["drop"]] == ["public.z"]
    assert sql_text(replication.alter_publication_sql("p", "ADD", diff["add"])) == (
        'ALTER PUBLICATION "p" ADD TABLE "public"."c"')
    assert sql_text(replication.alter_publication_sql("p", "DROP", diff["drop"])) == (
        'ALTER PUBLICATION "p" DROP TABLE ONLY "public"."z"')
    same = native.publication_diff(s["tables"], [dict(schema="public", name=n) for n in "cba"])
    assert same == dict(add=[], drop=[])


def test_inheritance_parent_without_only_is_refused():
    s = stream(table("events"), table("events_scan"), table("logs", only=True))
    msg = native.inheritance_problems(s["tables"], {("public", "events"), ("public", "logs")})
    assert "public.events has inheritance children" in msg and "logs" not in msg
    assert native.inheritance_problems(s["tables"], set()) is None


# --------------------------------------------------------------------------------------------
# Slot, ranges, units, COPY
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("version,export,expected", [
    (150004, True, "CREATE_REPLICATION_SLOT \"s\" LOGICAL pgoutput (SNAPSHOT 'export')"),
    (180000, False, "CREATE_REPLICATION_SLOT \"s\" LOGICAL pgoutput (SNAPSHOT 'nothing')"),
    (140010, True, "CREATE_REPLICATION_SLOT \"s\" LOGICAL pgoutput EXPORT_SNAPSHOT"),
    (130000, False, "CREATE_REPLICATION_SLOT \"s\" LOGICAL pgoutput NOEXPORT_SNAPSHOT"),
])
def test_slot_command_follows_the_server_version(version, export, expected):
    assert native.create_slot_command("s", version, export) == expected


def covered(ranges, keys):
    """Which range each key falls in; every key must fall in exactly one."""
    for k in keys:
        hits = [i for i, (lo, hi) in enumerate(ranges) if (lo is None or k >= lo) and (hi is None or k < hi)]
        assert len(hits) == 1, (k, ranges)


@pytest.mark.parametrize("lowest,highest,count,expected", [
    (1, 100, 4, [(None, 26), (26, 51), (51, 76), (76, None)]),
    (1, 100, 1, [(None, None)]),
    (None, None, 4, [(None, None)]),
    (5, 6, 4, [(None, 6), (6, None)]),
    (7, 7, 3, [(None, None)]),
    (-10, 9, 2, [(None, 0), (0, None)]),
])
def test_split_ranges(lowest, highest, count, expected):
    ranges = native.split_ranges(lowest, highest, count)
    assert ranges == expected
    if lowest is not None:
        covered(ranges, range(lowest - 5, highest + 5))


def test_split_ranges_cover_big_keys_without_gaps():
    ranges = native.split_ranges(1, 10 ** 12, 7)
    assert len(ranges) == 7
    assert all(ranges[i][1] == ranges[i + 1][0] for i in range(6))
    covered(ranges, [1, 10 ** 12, 10 ** 12 // 7, 10 ** 12 // 7 + 1, 5 * 10 ** 11])


def test_work_units_largest_first_and_ranges_truncated_up_front():
    s = stream(table("small", bytes=10), table("big", bytes=900, rows=90, split=3), table("mid", bytes=500))
    units = native.work_units(s["tables"], {("public", "big"): [(None, 10), (10, 20), (20, None)]})
    assert [(u["table"], u["unit"]) for u in units] == [
        ("public.mid", "all"), ("public.big", "1/3"), ("public.big", "2/3"), ("public.big", "3/3"),
        ("public.small", "all")]
    big = [u for u in units if u["table"] == "public.big"]
    assert [u["est_bytes"] for u in big] == [300, 300, 300] and all(not u["truncate"] for u in big)
    assert all(u["truncate"] for u in units if u["count"] == 1)
    assert [t["qualified"] for t in native.split_tables(units)] == ["public.big"]
    assert sql_text(native.truncate(native.split_tables(units))) == 'TRUNCATE ONLY "public"."big"'


def test_copy_statements():
    s = stream(table("events", only=True), table("big", split=2))
    whole = native.work_units([s["tables"][0]], {})[0]
    assert sql_text(native.copy_out(whole, ["id", "Note"], "binary")) == (
        'COPY (SELECT "id", "Note" FROM ONLY "public"."events") TO STDOUT (FORMAT binary)')
    assert sql_text(native.copy_in(whole, ["id", "Note"], "binary", freeze=True)) == (
        'COPY "public"."events" ("id", "Note") FROM STDIN (FORMAT binary, FREEZE)')
    first, last = native.work_units([s["tables"][1]], {("public", "big"): [(None, 50), (50, None)]})
    assert sql_text(native.copy_out(first, ["id"], "text")) == (
        'COPY (SELECT "id" FROM "public"."big" WHERE "id" < 50) TO STDOUT (FORMAT text)')
    assert sql_text(native.copy_out(last, ["id"], "text")).endswith('WHERE "id" >= 50) TO STDOUT (FORMAT text)')
    middle = dict(first, lower=10, upper=20)
    assert 'WHERE "id" >= 10 AND "id" < 20' in sql_text(native.copy_out(middle, ["id"], "text"))


@pytest.mark.parametrize("columns,expected", [
    ([dict(resolved_oid=23, resolved_typtype="b")], "binary"),
    ([dict(resolved_oid=3802, resolved_typtype="b")], "binary"),                       # jsonb
    ([dict(type_oid=16500, resolved_oid=16500, resolved_typtype="e")], "binary"),      # enum
    ([dict(type_oid=16510, resolved_oid=1700, resolved_typtype="b")], "binary"),       # domain over numeric
    ([dict(type_oid=16520, resolved_oid=16520, resolved_typtype="c")], "binary"),      # composite
    ([dict(type_oid=16530, resolved_oid=16530, resolved_typtype="b")], "text"),        # extension type
    ([dict(type_oid=16540, resolved_oid=16530, resolved_typtype="b")], "text"),        # array of it
])
def test_copy_format(columns, expected):
    assert native.copy_format(columns) == expected


def test_text_fallback_only_for_user_types():
    assert native.fallback_format("binary", [dict(type_oid=16500, resolved_oid=16500)]) == "text"
    assert native.fallback_format("binary", [dict(type_oid=16540, resolved_oid=1033)]) == "text"
    assert native.fallback_format("binary", [dict(type_oid=23, resolved_oid=23)]) is None
    assert native.fallback_format("text", [dict(type_oid=16500, resolved_oid=16500)]) is None


def test_column_problems():
    src = [dict(name="id"), dict(name="note"), dict(name="total")]
    same = [dict(name="id", generated=False), dict(name="note"), dict(name="total", generated=False)]
    assert native.column_problems("public.t", src, same) == []
    problems = native.column_problems("public.t", src, [dict(name="id"), dict(name="total", generated=True)])
    assert problems == ["public.t lacks column(s) note on the target",
                        "public.t has column(s) total generated on the target but not on the source"]
    assert native.column_problems("public.t", [], []) == ["public.t has no column to copy"]


# --------------------------------------------------------------------------------------------
# The resume decision
# --------------------------------------------------------------------------------------------

SLOT = dict(plugin="pgoutput", database="app", confirmed_flush_lsn="0/3000", active_pid=None)


def observed(**kw):
    base = dict(database="app", publication=None, slot=None, subscription=None, progress=[], loading_pids=[])
    base.update(kw)
    return base


def desired(tables, copy=True, enabled=True, create_enabled=True):
    return dict(name="pgshift_m_s1", tables=tables, copy=copy, enabled=enabled, create_enabled=create_enabled)


def published(*names):
    return dict(tables=[dict(schema="public", name=n) for n in names])


def progress(lsn, states):
    return [dict(table_name=t, unit=u, state=s, lsn=lsn) for t, u, s in states]


TABLES = stream(table("a"), table("b"))["tables"]


def test_fresh_stream_publishes_creates_the_slot_copies_and_subscribes():
    d = native.decide(observed(), desired(TABLES))
    assert d["steps"] == ["publication_create", "slot_create_export", "copy", "subscription_create"]
    assert d["restart"] is None


def test_without_copy_the_slot_needs_no_snapshot():
    d = native.decide(observed(), desired(TABLES, copy=False))
    assert d["steps"] == ["publication_create", "slot_create", "subscription_create"]


def test_a_finished_load_of_the_same_slot_is_not_copied_again():
    done = progress("0/3000", [("public.a", "all", "copied"), ("public.b", "1/2", "copied"),
                               ("public.b", "2/2", "copied")])
    d = native.decide(observed(publication=published("a", "b"), slot=SLOT, progress=done), desired(TABLES))
    assert d["steps"] == ["subscription_create"] and d["restart"] is None


def test_an_unfinished_load_drops_the_slot_and_copies_again():
    half = progress("0/3000", [("public.a", "all", "copied"), ("public.b", "all", "copying")])
    d = native.decide(observed(publication=published("a", "b"), slot=SLOT, progress=half), desired(TABLES))
    assert d["steps"] == ["slot_drop", "slot_create_export", "copy", "subscription_create"]
    assert "did not finish (1 of 2 units copied" in d["restart"] and "0/3000" in d["restart"]


def test_a_load_of_another_slot_incarnation_does_not_count():
    old = progress("0/1000", [("public.a", "all", "copied"), ("public.b", "all", "copied")])
    d = native.decide(observed(publication=published("a", "b"), slot=SLOT, progress=old), desired(TABLES))
    assert d["steps"][0] == "slot_drop"
    assert "existed without a finished load" in d["restart"]


def test_progress_without_a_slot_means_the_copy_starts_over():
    old = progress("0/1000", [("public.a", "all", "failed")])
    d = native.decide(observed(publication=published("a", "b"), progress=old), desired(TABLES))
    assert d["steps"] == ["slot_create_export", "copy", "subscription_create"]
    assert "left progress rows but no slot" in d["restart"]


def test_a_running_load_is_never_interrupted():
    with pytest.raises(native.StreamError, match="running right now"):
        native.decide(observed(publication=published("a", "b"), slot=SLOT, loading_pids=[42]), desired(TABLES))


def test_a_foreign_slot_is_refused():
    with pytest.raises(native.StreamError, match="not a pgoutput slot"):
        native.decide(observed(slot=dict(SLOT, plugin="wal2json")), desired(TABLES))
    with pytest.raises(native.StreamError, match="database other"):
        native.decide(observed(slot=dict(SLOT, database="other")), desired(TABLES))


def test_tables_added_before_the_slot_are_published_first():
    d = native.decide(observed(publication=published("a", "z")), desired(TABLES))
    assert d["steps"] == ["publication_drop_tables", "publication_add_tables", "slot_create_export", "copy",
                          "subscription_create"]


def test_tables_added_after_a_finished_load_are_synced_by_postgresql():
    done = progress("0/3000", [("public.a", "all", "copied")])
    d = native.decide(observed(publication=published("a"), slot=SLOT, progress=done), desired(TABLES))
    assert d["steps"] == ["subscription_create", "publication_add_tables", "truncate_added", "subscription_refresh"]
    with pytest.raises(native.StreamError, match="needs the subscription enabled"):
        native.decide(observed(publication=published("a"), slot=SLOT, progress=done),
                      desired(TABLES, enabled=None, create_enabled=False))


def test_streaming_stream_is_left_alone():
    sub = dict(enabled=True, slot_name="pgshift_m_s1")
    d = native.decide(observed(publication=published("a", "b"), slot=SLOT, subscription=sub), desired(TABLES))
    assert d["steps"] == []


def test_streaming_stream_follows_table_changes_and_enable():
    sub = dict(enabled=False, slot_name="pgshift_m_s1")
    obs = observed(publication=published("a", "old"), slot=SLOT, subscription=sub)
    d = native.decide(obs, desired(TABLES))
    assert d["steps"] == ["publication_drop_tables", "publication_add_tables", "subscription_enable",
                          "truncate_added", "subscription_refresh"]
    assert [t["qualified"] for t in d["adds"]] == ["public.b"] and [t["qualified"] for t in d["drops"]] == [
        "public.old"]
    no_copy = native.decide(obs, desired(TABLES, copy=False))
    assert "truncate_added" not in no_copy["steps"]
    with pytest.raises(native.StreamError, match="not allowed while the subscription is disabled"):
        native.decide(obs, desired(TABLES, enabled=None, create_enabled=False))


def test_enable_false_never_disables_but_state_disabled_does():
    running = observed(publication=published("a", "b"), slot=SLOT,
                       subscription=dict(enabled=True, slot_name="pgshift_m_s1"))
    assert native.decide(running, desired(TABLES, enabled=None, create_enabled=False))["steps"] == []
    assert native.decide(running, desired(TABLES, enabled=False, create_enabled=False))["steps"] == [
        "subscription_disable"]


@pytest.mark.parametrize("obs,match", [
    (observed(publication=published("a", "b"), slot=SLOT, subscription=dict(enabled=True, slot_name="x")),
     "uses slot 'x'"),
    (observed(slot=SLOT, subscription=dict(enabled=True, slot_name="pgshift_m_s1")), "publication is missing"),
    (observed(publication=published("a", "b"), subscription=dict(enabled=True, slot_name="pgshift_m_s1")),
     "replication slot is missing"),
])
def test_broken_streams_need_a_person(obs, match):
    with pytest.raises(native.StreamError, match=match):
        native.decide(obs, desired(TABLES))


def test_absent_steps():
    everything = observed(publication=published("a"), slot=SLOT, progress=[dict(table_name="a")],
                          subscription=dict(enabled=True, slot_name="pgshift_m_s1"))
    assert native.absent_steps(everything) == ["subscription_disable", "subscription_detach", "subscription_drop",
                                               "slot_drop", "publication_drop", "progress_clear"]
    detached = observed(subscription=dict(enabled=False, slot_name=None), loading_pids=[7])
    assert native.absent_steps(detached) == ["subscription_drop", "load_stop"]
    assert native.absent_steps(observed()) == []


# --------------------------------------------------------------------------------------------
# Status: lag, load progress, classification
# --------------------------------------------------------------------------------------------

def test_lsn_arithmetic():
    assert native.lsn_to_int("16/B374D848") == 0x16B374D848
    assert native.int_to_lsn(native.lsn_to_int("16/B374D848")) == "16/B374D848"
    assert native.lsn_to_int(None) is None
    with pytest.raises(ValueError, match="not an LSN"):
        native.lsn_to_int("12345")
    with pytest.raises(ValueError, match="not an LSN"):
        native.lsn_to_int("G/1")
    assert native.lag_bytes("1/10", "0/FFFFFFF0") == 0x20
    assert native.lag_bytes("0/10", "0/20") == 0
    assert native.lag_bytes("0/10", None) is None


def test_barrier():
    assert native.barrier_reached("1/0", "0/FFFFFFFF") is True
    assert native.barrier_reached("0/10", "0/10") is True
    assert native.barrier_reached("0/F", "0/10") is False
    assert native.barrier_reached(None, "0/10") is False


@pytest.mark.parametrize("lag,replay,streaming,age,expected", [
    (0, 3.5, True, 20.0, 0.0),
    (4096, 1.25, True, None, 1.25),
    (4096, None, True, 25.0, 0.0),
    (4096, None, False, 12.5, 12.5),
    (4096, None, False, None, None),
    (None, None, False, None, None),
])
def test_lag_seconds(lag, replay, streaming, age, expected):
    assert native.lag_seconds(lag, replay, streaming, age) == expected


def test_unit_totals_rates_and_eta():
    units = [
        dict(state="copied", rows=1000, bytes=4000, est_bytes=4000, started_at=100.0, finished_at=104.0),
        dict(state="copying", rows=500, bytes=2000, est_bytes=4000, started_at=104.0, finished_at=None),
        dict(state="pending", rows=0, bytes=0, est_bytes=8000, started_at=None, finished_at=None),
    ]
    tot = native.unit_totals(units, now_epoch=110.0)
    assert (tot["units"], tot["copied"], tot["copying"], tot["pending"], tot["done"]) == (3, 1, 1, 1, False)
    assert tot["rows"] == 1500 and tot["elapsed_seconds"] == 10.0 and tot["rows_per_second"] == 150.0
    assert tot["percent"] == 37.5
    assert tot["eta_seconds"] == pytest.approx(10.0 * 0.625 / 0.375, abs=0.1)
    done = native.unit_totals([dict(units[0])], now_epoch=500.0)
    assert done["done"] and done["eta_seconds"] == 0.0 and done["elapsed_seconds"] == 4.0
    failed = native.unit_totals([dict(units[0]), dict(units[1], state="failed")], now_epoch=110.0)
    assert failed["failed"] == 1 and failed["eta_seconds"] is None
    assert native.unit_totals([], now_epoch=1.0)["units"] == 0


def test_table_state():
    assert native.table_state("copying", None, False) == "copying"
    assert native.table_state("copied", None, False) == "copied"
    assert native.table_state(None, "d", True) == "syncing"
    assert native.table_state(None, "r", True) == "streaming"
    assert native.table_state(None, "r", False) == "stopped"
    assert native.table_state(None, None, False) == "pending"


STREAMING_SLOT = dict(confirmed_flush_lsn="0/500", wal_status="reserved")
SUB = dict(enabled=True, worker_pid=77, apply_error_count=0, sync_error_count=0)


@pytest.mark.parametrize("obs,state,words", [
    (dict(publication=True, slot=STREAMING_SLOT, subscription=SUB, table_states=["streaming"]), "streaming",
     "streams from LSN 0/500"),
    (dict(publication=True, slot=STREAMING_SLOT, subscription=SUB, table_states=["syncing", "streaming"]),
     "copying", "1 table(s)"),
    (dict(publication=True, slot=STREAMING_SLOT, subscription=dict(SUB, enabled=False)), "disabled",
     "disabled at LSN 0/500"),
    (dict(publication=True, slot=STREAMING_SLOT, subscription=dict(SUB, enabled=False, apply_error_count=3)),
     "error", "disabled after 3 apply/sync error(s); it stopped at LSN 0/500"),
    (dict(publication=True, slot=STREAMING_SLOT, subscription=dict(SUB, worker_pid=None, sync_error_count=2)),
     "error", "fails and restarts in a loop"),
    (dict(publication=True, slot=STREAMING_SLOT, subscription=dict(SUB, apply_error_count=1, worker_age_seconds=2.0)),
     "error", "failing and restarting in a loop"),
    (dict(publication=True, slot=STREAMING_SLOT, subscription=dict(SUB, apply_error_count=1, worker_age_seconds=600),
          table_states=["streaming"]), "streaming", "streams from"),
    (dict(publication=True, slot=STREAMING_SLOT, subscription=dict(SUB, worker_pid=None)), "starting",
     "apply worker is starting"),
    (dict(publication=True, slot=None, subscription=SUB), "error", "slot of s1 is missing"),
    (dict(publication=False, slot=STREAMING_SLOT, subscription=SUB), "error", "publication of s1 is missing"),
    (dict(publication=True, slot=dict(STREAMING_SLOT, wal_status="lost"), subscription=SUB), "error",
     "lost WAL"),
    (dict(publication=True, slot=STREAMING_SLOT, subscription=None,
          load=dict(done=False, failed=0, copied=2, units=5, percent=40.0)), "copying", "2 of 5 unit(s)"),
    (dict(publication=True, slot=STREAMING_SLOT, subscription=None,
          load=dict(done=False, failed=1, copied=2, units=5, percent=40.0)), "error", "failed on 1 unit"),
    (dict(publication=True, slot=None, subscription=None), "missing", "has no replication slot, no subscription"),
])
def test_classify_stream(obs, state, words):
    got, message = native.classify_stream(dict(obs, name="s1"))
    assert got == state
    assert words in message


def test_caught_up_needs_streaming_and_both_lags_within_limits():
    assert native.caught_up("streaming", 100, 0.5, 1000, 1) is True
    assert native.caught_up("streaming", 2000, 0.5, 1000, 1) is False
    assert native.caught_up("streaming", 100, 3.0, 1000, 1) is False
    assert native.caught_up("streaming", 100, None, 1000, 1) is False
    assert native.caught_up("disabled", 0, 0.0, 1000, 1) is False


def test_totals():
    streams = [dict(state="streaming", lag_bytes=10, lag_seconds=0.5, retained_bytes=100, tables=[1, 2],
                    load=dict(rows=5, bytes=50)),
               dict(state="error", lag_bytes=None, lag_seconds=None, retained_bytes=None, tables=[], load=None)]
    tot = native.totals(streams)
    assert tot["streams"] == 2 and tot["states"]["streaming"] == 1 and tot["states"]["error"] == 1
    assert tot["lag_bytes"] == 10 and tot["max_lag_seconds"] == 0.5 and tot["retained_bytes"] == 100
    assert tot["errors"] == 1 and tot["tables"] == 2 and tot["rows_copied"] == 5


# --- keys built after the copy -------------------------------------------------------------------

def _key(table, name, contype="p", relkind="r", is_partition=False, referenced=False, **extra):
    schema, relname = scope.split_qualified(table)
    key = dict(table=table, schema=schema, relname=relname, name=name, contype=contype, relkind=relkind,
               is_partition=is_partition, referenced=referenced, deferrable=False, initially_deferred=False,
               replident=False, index_name=name, indexdef="CREATE UNIQUE INDEX %s ON %s USING btree (id)" % (name, table))
    key.update(extra)
    return key


def test_deferrable_keys_only_big_ordinary_unreferenced_tables():
    tables = [dict(schema="public", name="big", bytes=100), dict(schema="public", name="small", bytes=99),
              dict(schema="public", name="leaf", bytes=500), dict(schema="public", name="parent", bytes=500)]
    keys = [_key("public.big", "big_pkey"), _key("public.big", "big_code_key", contype="u"),
            _key("public.small", "small_pkey"), _key("public.leaf", "leaf_pkey", is_partition=True),
            _key("public.parent", "parent_pkey", referenced=True), _key("public.other", "other_pkey")]
    deferred, kept = native.deferrable_keys(tables, keys, 100)
    assert [k["name"] for k in deferred] == ["big_pkey", "big_code_key"]
    assert [(t, n) for t, n, why in kept] == [("public.leaf", "leaf_pkey"), ("public.parent", "parent_pkey")]
    assert "foreign key" in kept[1][2] and "partition" in kept[0][2]
    # min_bytes 0: every table of the stream, never a table outside it
    deferred, kept = native.deferrable_keys(tables, keys, 0)
    assert [k["name"] for k in deferred] == ["big_pkey", "big_code_key", "small_pkey"]


def test_key_statements_rebuild_index_constraint_timing_and_replica_identity():
    plain = [s.as_string(None) for s in native.key_statements(_key("public.big", "big_pkey"))]
    assert plain == ["CREATE UNIQUE INDEX big_pkey ON public.big USING btree (id)",
                     'ALTER TABLE "public"."big" ADD CONSTRAINT "big_pkey" PRIMARY KEY USING INDEX "big_pkey"']
    unique = [s.as_string(None) for s in native.key_statements(_key(
        "public.big", "Big Code", contype="u", deferrable=True, initially_deferred=True, replident=True,
        index_name="big_code_idx"))]
    assert unique[1] == ('ALTER TABLE "public"."big" ADD CONSTRAINT "Big Code" UNIQUE USING INDEX "big_code_idx" '
                         'DEFERRABLE INITIALLY DEFERRED')
    assert unique[2] == 'ALTER TABLE "public"."big" REPLICA IDENTITY USING INDEX "Big Code"'
    assert native.drop_key(_key("public.big", "big_pkey")).as_string(None) == \
        'ALTER TABLE "public"."big" DROP CONSTRAINT "big_pkey"'


def test_a_copied_table_whose_keys_are_pending_is_indexing_and_its_stream_still_copying():
    assert native.table_state("copied", None, False, keys_pending=True) == "indexing"
    assert native.table_state("copied", None, False) == "copied"
    assert native.table_state("copied", "r", True, keys_pending=True) == "streaming"
    load = dict(done=True, copied=3, units=3, percent=100.0)
    state, message = native.classify_stream(dict(name="s1", publication=True, slot={}, subscription=None, load=load,
                                                 keys_pending=2))
    assert state == "copying" and "building 2 key(s)" in message
    assert native.classify_stream(dict(name="s1", publication=True, slot={}, subscription=None, load=load))[0] == "missing"


# ------------------------------------------------- a post stage waiting for the initial loads ----

def _unit(stream, table, state, finished_at=None, error=None, unit="1"):
    return dict(stream=stream, table_name=table, unit=unit, state=state, finished_at=finished_at, error=error)


def test_readiness_before_every_stream_recorded_its_units():
    r = native.load_readiness([_unit("m_s1", "public.a", "copied")], [], ["m_s1", "m_s2"])
    assert r["loaded"] == {"public.a"} and not r["done"] and not r["all_registered"]
    assert native.table_ready(r, "public.a")
    # A table no recorded stream loads may still belong to the stream not recorded yet: it waits.
    assert not native.table_ready(r, "public.b")
    assert not native.table_ready(r, None)


def test_readiness_per_table_while_a_big_table_still_copies_or_builds_its_key():
    rows = [_unit("m_s1", "public.big", "copied", unit="1"), _unit("m_s1", "public.big", "copying", unit="2"),
            _unit("m_s2", "public.small", "copied"), _unit("m_s2", "public.keyed", "copied"),
            _unit("m_s3", "public.other", "pending")]
    keys = [dict(stream="m_s2", table="public.keyed"), dict(stream="x_s1", table="public.small")]
    r = native.load_readiness(rows, keys, ["m_s1", "m_s2", "m_s3"])
    assert r["loaded"] == {"public.small"}
    assert r["loading"] == {"public.big", "public.keyed", "public.other"}
    assert native.table_ready(r, "public.small")
    assert not native.table_ready(r, "public.keyed")  # copied, its key not built yet
    assert native.table_ready(r, "public.parent_without_rows")  # every stream recorded, none loads it
    assert not r["done"] and not native.table_ready(r, None)


def test_readiness_done_when_every_unit_is_copied_and_every_key_built():
    rows = [_unit("m_s1", "public.big", "copied"), _unit("m_s2", "public.small", "copied")]
    r = native.load_readiness(rows + [_unit("other_s1", "public.x", "copying")], [], ["m_s1", "m_s2"])
    assert r["done"] and native.table_ready(r, None) and r["failed"] == []


def test_readiness_reports_failures_of_this_run_only():
    rows = [_unit("m_s1", "public.a", "failed", finished_at=100.0, error="old"),
            _unit("m_s2", "public.b", "failed", finished_at=205.0, error="disk full")]
    r = native.load_readiness(rows, [], ["m_s1", "m_s2"], since=200.0)
    assert r["failed"] == [("m_s2", "public.b", "disk full")]
    assert not r["done"]


def test_readiness_names_the_streams_not_done():
    rows = [_unit("m_s1", "public.big", "copied"), _unit("m_s2", "public.small", "copied")]
    r = native.load_readiness(rows, [dict(stream="m_s1", table="public.big")], ["m_s1", "m_s2", "m_s3"])
    assert r["pending"] == ["m_s1", "m_s3"]  # s1 builds its key, s3 has not recorded its units
    assert native.load_readiness(rows, [], ["m_s1", "m_s2"])["pending"] == []


def test_a_load_without_a_session_for_longer_than_the_grace_has_stalled():
    last = {}
    assert native.stalled_loads(["s1", "s2"], set(), last, 100.0, 60) == []  # first look: counts from now
    assert native.stalled_loads(["s1", "s2"], {"s1"}, last, 150.0, 60) == []
    assert native.stalled_loads(["s1", "s2"], {"s1"}, last, 161.0, 60) == ["s2"]
    assert last["s1"] == 161.0
    # A stream that is done is no longer pending: never stalled.
    assert native.stalled_loads(["s1"], set(), last, 200.0, 60) == []
    assert native.stalled_loads(["s1"], set(), last, 222.0, 60) == ["s1"]


# --------------------------------------------------------------------------------------------
# Names that need quoting: SQL from separate parts, lookups by (schema, name)
# --------------------------------------------------------------------------------------------

OPS = "Shipping Ops"
ARCHIVE = 'eu.west "archive"'
LONG = "p" * 61 + "ö"  # 63 bytes
PRICE = 'Unit "Price"'


def hard_stream():
    return stream(table("order", schema=OPS, key=["Order No."]),
                  table("Zöll_Tarife", schema=ARCHIVE, only=True, key=[PRICE]),
                  table(LONG, key=["id"], split=2, split_key="id"),
                  table("order", schema="eu.west", key=["id"]),
                  table("west.order", schema="eu", key=["id"]))


def test_hard_names_in_publications_and_diffs():
    s = hard_stream()
    assert [t["qualified"] for t in s["tables"]] == [
        '"Shipping Ops"."order"', '"eu.west ""archive"""."Zöll_Tarife"', 'public."%s"' % LONG, '"eu.west"."order"',
        'eu."west.order"']
    assert sql_text(replication.publication_sql("pgshift_m_s1", s["tables"])) == (
        'CREATE PUBLICATION "pgshift_m_s1" FOR TABLE "Shipping Ops"."order", ONLY "eu.west ""archive"""."Zöll_Tarife", '
        '"public"."%s", "eu.west"."order", "eu"."west.order"' % LONG)
    # "eu.west"."order" and "eu"."west.order" are two tables: the one published stays, the other is added
    diff = native.publication_diff(s["tables"], [dict(schema="eu", name="west.order"), dict(schema=OPS, name="Order")])
    assert [(t["schema"], t["name"]) for t in diff["add"]] == [
        (OPS, "order"), (ARCHIVE, "Zöll_Tarife"), ("public", LONG), ("eu.west", "order")]
    assert [(t["schema"], t["name"]) for t in diff["drop"]] == [(OPS, "Order")]
    assert sql_text(replication.alter_publication_sql("p", "DROP", diff["drop"])) == (
        'ALTER PUBLICATION "p" DROP TABLE ONLY "Shipping Ops"."Order"')
    msg = native.inheritance_problems(s["tables"], {("eu.west", "order"), (ARCHIVE, "Zöll_Tarife")})
    assert msg.startswith('"eu.west"."order" has inheritance children')


def test_hard_names_in_copy_and_truncate():
    s = hard_stream()
    units = native.work_units(s["tables"], {("public", LONG): [(None, 5), (5, None)], ("eu", "west.order"): [(1, 2)]})
    by_ident = {}
    for u in units:
        by_ident.setdefault((u["schema"], u["name"]), []).append(u)
    assert len(by_ident[("public", LONG)]) == 2 and len(by_ident[("eu.west", "order")]) == 1
    zoll = by_ident[(ARCHIVE, "Zöll_Tarife")][0]
    assert sql_text(native.copy_out(zoll, [PRICE, "Order No."], "binary")) == (
        'COPY (SELECT "Unit ""Price""", "Order No." FROM ONLY "eu.west ""archive"""."Zöll_Tarife") TO STDOUT '
        '(FORMAT binary)')
    assert sql_text(native.copy_in(zoll, [PRICE], "text", freeze=True)) == (
        'COPY "eu.west ""archive"""."Zöll_Tarife" ("Unit ""Price""") FROM STDIN (FORMAT text, FREEZE)')
    assert [t["qualified"] for t in native.split_tables(units)] == ['public."%s"' % LONG]
    ranged = dict(by_ident[("public", LONG)][0], key='Order "No"', lower=3, upper=9)
    assert sql_text(native.copy_out(ranged, ["id"], "text")).endswith(
        'FROM "public"."%s" WHERE "Order ""No""" >= 3 AND "Order ""No""" < 9) TO STDOUT (FORMAT text)' % LONG)
    assert sql_text(native.truncate([zoll, by_ident[("eu", "west.order")][0]])) == (
        'TRUNCATE ONLY "eu.west ""archive"""."Zöll_Tarife", ONLY "eu"."west.order"')


def test_hard_names_in_deferred_keys():
    tables = [dict(schema="eu.west", name="order", bytes=500), dict(schema="eu", name="west.order", bytes=1)]
    keys = [_key('"eu.west"."order"', "order pkey"), _key('eu."west.order"', "west pkey")]
    deferred, kept = native.deferrable_keys(tables, keys, 100)
    assert [(k["schema"], k["relname"], k["name"]) for k in deferred] == [("eu.west", "order", "order pkey")]
    key = _key('"Shipping Ops"."order"', "Order pkey", index_name="order idx", replident=True,
               indexdef='CREATE UNIQUE INDEX "order idx" ON "Shipping Ops"."order" USING btree ("Order No.")')
    assert sql_text(native.drop_key(key)) == 'ALTER TABLE "Shipping Ops"."order" DROP CONSTRAINT "Order pkey"'
    assert [sql_text(s) for s in native.key_statements(key)] == [
        'CREATE UNIQUE INDEX "order idx" ON "Shipping Ops"."order" USING btree ("Order No.")',
        'ALTER TABLE "Shipping Ops"."order" ADD CONSTRAINT "Order pkey" PRIMARY KEY USING INDEX "order idx"',
        'ALTER TABLE "Shipping Ops"."order" REPLICA IDENTITY USING INDEX "Order pkey"']
    assert native.column_problems('"Shipping Ops"."order"', [dict(name=PRICE)], []) == [
        '"Shipping Ops"."order" lacks column(s) "Unit ""Price""" on the target']


def test_a_table_listed_twice_is_found_by_schema_and_name():
    with pytest.raises(native.StreamError, match='"eu.west"."order" is listed twice'):
        stream(table("order", schema="eu.west"), table("west.order", schema="eu"), table("order", schema="eu.west"))
