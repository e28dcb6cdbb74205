"""Validation decisions: canonical expressions, range splitting, row differences, schema diff, verdict."""

from __future__ import annotations

import pytest

from ansible_collections.pgshift.aurora.plugins.module_utils import validate
from ansible_collections.pgshift.aurora.plugins.module_utils import native, scope


def col(name, base, category="N", typ=None):
    return dict(name=name, base_type=base, category=category, type=typ or base, typtype="b")


def text(composable):
    """Render a psycopg Composable without a connection (identifiers and literals quoted simply)."""
    from psycopg import sql

    def render(c):
        if isinstance(c, sql.Composed):
            return "".join(render(x) for x in c._obj)
        if isinstance(c, sql.SQL):
            return c._obj
        if isinstance(c, sql.Identifier):
            return ".".join('"%s"' % p for p in c._obj)
        if isinstance(c, sql.Literal):
            return "'%s'" % c._obj if isinstance(c._obj, str) else str(c._obj)
        raise TypeError(c)
    return render(composable)


@pytest.mark.parametrize("column, version, expected", [
    (col("f", "float8"), 150000, 'float8send("f")'),
    (col("f", "float4"), 150000, 'float4send("f")'),
    (col("n", "numeric"), 150000, 'trim_scale("n")'),
    (col("n", "numeric"), 120000, '"n"'),
    (col("m", "money"), 150000, '"m"::numeric'),
    (col("j", "jsonb", "U"), 150000, '"j"'),
    (col("b", "bytea", "U"), 150000, 'md5("b")'),
    (col("ts", "timestamptz", "D"), 150000, '"ts"'),
    (dict(col("c", "bpchar", "S"), typmod=88), 150000, '"c"'),
])
def test_column_expression(column, version, expected):
    assert text(validate.column_expression(column, version)) == expected


def test_long_text_enters_as_md5_and_arrays_element_wise():
    assert "md5" in text(validate.column_expression(col("t", "text", "S"), 150000))
    assert "2048" in text(validate.column_expression(col("t", "varchar", "S"), 150000))
    floats = text(validate.column_expression(col("a", "_float8", "A"), 150000))
    assert "float8send(x)" in floats and "ORDER BY o" in floats
    assert "trim_scale(x)" in text(validate.column_expression(col("a", "_numeric", "A"), 150000))
    assert text(validate.column_expression(col("a", "_numeric", "A"), 120000)) == '"a"'


def test_row_hash_over_every_column_in_order():
    h = text(validate.row_hash([col("id", "int8"), col("f", "float8")], 150000))
    assert h == 'hashtextextended(ROW("id", float8send("f"))::text, 0)'


def test_common_columns_names_type_differences_and_missing():
    src = [col("id", "int8", typ="bigint"), col("a", "text", "S"), col("b", "int4", typ="integer"), col("c", "text", "S")]
    tgt = [col("id", "int8", typ="bigint"), col("a", "text", "S"), col("b", "int8", typ="bigint"), col("d", "text", "S")]
    compared, problems = validate.common_columns(src, tgt)
    assert [c["name"] for c in compared] == ["id", "a"]
    assert problems == ["column b is integer on the source and bigint on the target",
                        "column c is missing on the target", "column d is only on the target"]


def test_key_mode():
    assert validate.key_mode([]) is None
    assert validate.key_mode([col("id", "int8")]) == "int"
    assert validate.key_mode([col("id", "int8"), col("at", "timestamptz")]) == "ordered"
    assert validate.key_mode([col("id", "uuid")]) == "ordered"


@pytest.mark.parametrize("lo, hi, parts", [(0, 100, 4), (1, 2, 16), (5, 21, 16), (-50, 50, 3), (0, 1000003, 7)])
def test_split_int_range_covers_exactly(lo, hi, parts):
    pieces = validate.split_int_range(lo, hi, parts)
    assert pieces[0][0] == lo and pieces[-1][1] == hi
    assert all(a < b for a, b in pieces)
    assert all(pieces[i][1] == pieces[i + 1][0] for i in range(len(pieces) - 1))
    assert len(pieces) == min(parts, hi - lo)


def test_int_ranges_open_ended_and_sized():
    ranges = validate.int_ranges(1, 1000, 1000, 100)
    assert len(ranges) == 10
    assert ranges[0]["lo"] is None and ranges[-1]["hi"] is None
    assert ranges[0]["hi"] == ["101"] and ranges[1] == dict(lo=["101"], hi=["201"])
    # sparse keys: the estimate of rows decides, not the span
    assert len(validate.int_ranges(1, 10 ** 9, 500, 100)) == 5
    assert validate.int_ranges(None, None, 0, 100) == [dict(lo=None, hi=None)]


def test_ranges_from_boundaries_contiguous():
    ranges = validate.ranges_from_boundaries([["5", "a"], ["9", "b"]], None, ["20", "z"])
    assert ranges == [dict(lo=None, hi=["5", "a"]), dict(lo=["5", "a"], hi=["9", "b"]), dict(lo=["9", "b"], hi=["20", "z"])]
    assert validate.ranges_from_boundaries([]) == [dict(lo=None, hi=None)]


def test_split_range():
    assert validate.split_range(dict(lo=["0"], hi=["160"]), "int", 16)[1] == dict(lo=["10"], hi=["20"])
    assert validate.split_range(dict(lo=["7"], hi=["8"]), "int", 16) is None  # one key: cannot split
    assert validate.split_range(dict(lo=None, hi=["8"]), "int", 16) is None  # open: bounds are read first
    assert validate.split_range(dict(lo=["a"], hi=["b"]), "ordered", 16) is None
    assert validate.boundary_step(1000, 16) == 63
    assert validate.boundary_step(3, 16) == 1


def test_range_condition_typed_row_comparison():
    key = [col("id", "int8", typ="bigint"), col("at", "timestamptz", typ="timestamp with time zone")]
    cond = text(validate.range_condition(key, dict(lo=["5", "2025-01-01 00:00:00+00"], hi=None)))
    assert cond == "ROW(\"id\", \"at\") >= ROW('5'::bigint, '2025-01-01 00:00:00+00'::timestamp with time zone)"
    assert text(validate.range_condition(key[:1], dict(lo=["5"], hi=["9"]))) == \
        "ROW(\"id\") >= ROW('5'::bigint) AND ROW(\"id\") < ROW('9'::bigint)"
    assert text(validate.range_condition(key, dict(lo=None, hi=None))) == "true"
    assert validate.describe_range(dict(lo=["5"], hi=None)) == "[(5), end)"


def test_differs_and_needs_split():
    a = dict(count=10, sum="123")
    assert not validate.differs(a, dict(count=10, sum="123"))
    assert validate.differs(a, dict(count=10, sum="124"))
    assert validate.differs(a, dict(count=11, sum="123"))
    assert not validate.differs(dict(count=0, sum=None), dict(count=0, sum=None))
    assert validate.needs_split(dict(count=5), dict(count=2000), 1000)
    assert not validate.needs_split(dict(count=1000), dict(count=999), 1000)


def test_diff_rows_missing_extra_changed():
    src = [(("1",), 10), (("2",), 20), (("3",), 30)]
    tgt = [(("1",), 10), (("3",), 31), (("4",), 40)]
    assert validate.diff_rows(src, tgt) == [
        dict(kind="missing", key=["2"]), dict(kind="changed", key=["3"]), dict(kind="extra", key=["4"])]
    assert validate.diff_rows(src, src) == []


def test_diff_multisets_catches_a_duplicate():
    src = {1: (2, "(a)"), 2: (1, "(b)")}
    found = validate.diff_multisets(src, {1: (3, "(a)"), 2: (1, "(b)")})
    assert [validate.public(d) for d in found] == [dict(kind="extra", key=["(a)"], count=1)]
    assert (found[0]["_s"], found[0]["_t"]) == (2, 3)
    found = validate.diff_multisets(src, {1: (2, "(a)")})
    assert [validate.public(d) for d in found] == [dict(kind="missing", key=["(b)"], count=1)]
    assert validate.diff_multisets(src, dict(src)) == []


def test_settle_keyed_rows():
    lost = dict(kind="missing", key=["1"], _s=10, _t=None)        # unchanged on the source, target past it: confirmed
    real = dict(kind="changed", key=["2"], _s=20, _t=21)          # source unchanged, target differs: confirmed
    hot = dict(kind="changed", key=["3"], _s=30, _t=31)           # source written again meanwhile: in flight
    tail = dict(kind="extra", key=["4"], _s=None, _t=40)          # inserted after the source snapshot: resolved
    gone = dict(kind="extra", key=["5"], _s=None, _t=50)          # on the target only, never on the source
    now = {("1",): 10, ("2",): 20, ("3",): 32, ("4",): 40}
    confirmed, in_flight, resolved = validate.settle([lost, real, hot, tail, gone], now)
    assert confirmed == [lost, real, gone] and in_flight == [hot] and resolved == 1


def test_settle_rows_without_key():
    dup = dict(kind="extra", key=["(a)"], count=1, _hash=7, _s=2, _t=3)
    new = dict(kind="extra", key=["(b)"], count=1, _hash=8, _s=0, _t=1)
    confirmed, in_flight, resolved = validate.settle([dup, new], {7: 2, 8: 1})
    assert confirmed == [dup] and in_flight == [] and resolved == 1


def test_lock_candidates_are_rows_of_keyed_tables():
    keyed = dict(kind="changed", key=["3"], _s=1, _t=2)
    unkeyed = dict(kind="extra", key=["(a)"], count=1, _hash=7, _s=2, _t=3)
    assert validate.lock_candidates([keyed, unkeyed]) == [keyed]
    assert validate.lock_candidates([]) == []


def test_lock_batches_one_table_each_at_most_max_rows():
    a = [dict(key=[str(i)]) for i in range(5)]
    b = [dict(key=["x"])]
    batches = validate.lock_batches([("a", a), ("b", b)], 2)
    assert [(t, [d["key"][0] for d in ds]) for t, ds in batches] == [
        ("a", ["0", "1"]), ("a", ["2", "3"]), ("a", ["4"]), ("b", ["x"])]
    assert validate.lock_batches([("a", a), ("b", b)], 1000) == [("a", a), ("b", b)]
    # 0 disables the lock step
    assert validate.lock_batches([("a", a)], 0) == []


def test_lockable_leaves_out_tables_the_login_may_not_lock():
    groups = [("a", [1]), ("b", [2]), ("c", [3])]
    kept, refused = validate.lockable(groups, dict(a=True, b=False))
    assert kept == [("a", [1])] and refused == ["b", "c"]


def test_settle_locked_rows_held_still_decide():
    # hot: the source snapshot, the target snapshot and the source now all differ (the snapshot settle says
    # in flight); locked at 40, the target past the locked position holds 40: resolved
    hot = dict(kind="changed", key=["1"], columns=["v"], _s=10, _t=30)
    # a real difference on a row nobody writes: confirmed, with what was seen under the lock
    real = dict(kind="changed", key=["2"], columns=["v"], _s=20, _t=21)
    # deleted on the target only while the source keeps writing it: missing
    lost = dict(kind="changed", key=["3"], columns=["v"], _s=30, _t=31)
    # no source row under the lock (it cannot be locked): the target does not hold one either
    gone = dict(kind="missing", key=["4"], _s=40, _t=None)
    # on the target only, before and after the target read
    extra = dict(kind="extra", key=["5"], _s=None, _t=50)
    # inserted on the source after the lock, the target already has it
    fresh = dict(kind="extra", key=["6"], _s=None, _t=60)
    # inserted after the lock, the target read holds another version: compare again
    moving = dict(kind="extra", key=["7"], _s=None, _t=70)
    locked = {("1",): 40, ("2",): 20, ("3",): 33}
    target = {("1",): 40, ("2",): 21, ("5",): 50, ("6",): 60, ("7",): 70}
    after = {("6",): 60, ("7",): 71}
    out = validate.settle_locked([hot, real, lost, gone, extra, fresh, moving], locked, target, after)
    verdicts = dict((k[0], v) for k, (v, d) in out.items())
    assert verdicts == {"1": "resolved", "2": "confirmed", "3": "confirmed", "4": "resolved", "5": "confirmed",
                        "6": "resolved", "7": "in_flight"}
    assert out[("2",)][1] == dict(real, _s=20, _t=21)
    assert out[("3",)][1] == dict(kind="missing", key=["3"], _s=33, _t=None)  # no columns for a missing row
    assert out[("5",)][1] == dict(kind="extra", key=["5"], _s=None, _t=50)
    assert out[("7",)][1] is moving
    assert real["_s"] == 20 and lost["kind"] == "changed"  # the differences given are not changed


def test_settle_locked_value_seen_twice_is_not_a_difference():
    # the source row went 5 -> 6 -> 5 between its snapshot and the fresh read: the snapshot settle takes the
    # target's 6 for a real difference; with the row locked the target holds 5
    aba = dict(kind="changed", key=["1"], _s=5, _t=6)
    confirmed, in_flight, resolved = validate.settle([aba], {("1",): 5})
    assert confirmed == [aba]
    out = validate.settle_locked([aba], {("1",): 5}, {("1",): 5}, {})
    assert out[("1",)][0] == "resolved"


def test_after_lock_merges_and_keeps_what_it_did_not_check():
    cold = dict(kind="changed", key=["1"], _s=1, _t=2)          # confirmed by the snapshots, resolved by the lock
    real = dict(kind="missing", key=["2"], _s=2, _t=None)       # confirmed by both
    hot = dict(kind="changed", key=["3"], _s=3, _t=4)           # in flight, resolved by the lock
    lost = dict(kind="changed", key=["4"], _s=4, _t=5)          # in flight, confirmed by the lock
    failed = dict(kind="changed", key=["5"], _s=5, _t=6)        # in flight, its batch fell back
    moving = dict(kind="extra", key=["6"], _s=None, _t=7)       # in flight, still in flight under the lock
    unkeyed = dict(kind="extra", key=["(a)"], count=1, _hash=9, _s=1, _t=2)  # never locked
    lost_seen = dict(lost, kind="missing", _t=None)
    outcome = {("1",): ("resolved", cold), ("2",): ("confirmed", real), ("3",): ("resolved", hot),
               ("4",): ("confirmed", lost_seen), ("6",): ("in_flight", moving)}
    confirmed, in_flight, resolved, settled = validate.after_lock(
        [cold, real, unkeyed], [hot, lost, failed, moving], outcome)
    assert confirmed == [real, unkeyed, lost_seen]
    assert in_flight == [failed, moving]
    assert (resolved, settled) == (2, 4)
    # nothing checked: unchanged
    assert validate.after_lock([real], [hot], {}) == ([real], [hot], 0, 0)


@pytest.mark.parametrize("sqlstate, needle", [
    ("55P03", "stayed locked by other transactions longer than live_lock_timeout (5s)"),
    ("57014", "ran longer than live_lock_timeout (5s)"),
    ("40P01", "deadlock"),
    ("42501", "needs the UPDATE privilege"),
    ("25006", "read-only"),
    (None, "the lock step failed: server closed the connection"),
])
def test_lock_failure_says_why(sqlstate, needle):
    text = validate.lock_failure("public.hot", sqlstate, "server closed the connection\nunexpectedly", 5.0)
    assert text.startswith("public.hot: ") and needle in text
    assert text.endswith("; settled without the lock")
    assert "unexpectedly" not in text


def test_lock_refused_and_not_caught_up_say_what_to_do():
    assert "owner role" in validate.lock_refused('public."Hot"') and "UPDATE" in validate.lock_refused("t")
    text = validate.lock_not_caught_up("public.hot", "0/16B3748", 2.5)
    assert "0/16B3748" in text and "2.5s" in text and "released" in text


def test_changed_columns():
    assert validate.changed_columns(dict(a="x", b="y", c=None), dict(a="x", b="z", c="w")) == ["b", "c"]


def test_lsn_reached():
    to_int = native.lsn_to_int
    assert validate.lsn_reached(["0/20", "0/30"], to_int("0/20"), to_int)
    assert not validate.lsn_reached(["0/20", "0/1F"], to_int("0/20"), to_int)
    assert not validate.lsn_reached([], 0, to_int)
    assert not validate.lsn_reached([None], 0, to_int)  # a slot never confirmed anything


def test_throttle_and_progress():
    assert validate.throttle_delay(1000, 0.5, 0) == 0.0
    assert validate.throttle_delay(1000, 0.5, 1000) == pytest.approx(0.5)
    assert validate.throttle_delay(1000, 2.0, 1000) == 0.0
    p = validate.progress(500, 2000, 5.0)
    assert p == dict(rows=500, rows_expected=2000, rows_per_second=100.0, eta_seconds=15.0, percent=25.0)
    assert validate.progress(0, 0, 0)["eta_seconds"] is None


def schema(**tables):
    """schema_diff input from {display name: table}: keyed by (schema, name), as compare.schema_description does."""
    return dict(tables=dict((scope.split_qualified(k), v) for k, v in tables.items()))


def tbl(columns=(("id", "bigint NOT NULL"),), constraints=None, indexes=None, triggers=None):
    return dict(columns=[list(c) for c in columns], constraints=constraints or {}, indexes=indexes or {},
                triggers=triggers or {})


def test_schema_diff_names_each_kind():
    src = schema(**{"public.a": tbl(columns=(("id", "bigint NOT NULL"), ("v", "text")),
                                    constraints={"a_pkey": "PRIMARY KEY (id)"}, indexes={"a_v": "USING btree (v)"},
                                    triggers={"a_audit": dict(enabled="O", function="audit")}),
                    "public.b": tbl()})
    tgt = schema(**{"public.a": tbl(columns=(("id", "bigint NOT NULL"), ("v", "varchar")),
                                    constraints={"a_pkey": "PRIMARY KEY (id)", "a_chk": "CHECK (id > 0)"},
                                    triggers={"a_audit": dict(enabled="D", function="audit")}),
                    "public.c": tbl()})
    found = validate.schema_diff(src, tgt)
    assert [(d["kind"], d["object"], d["difference"]) for d in found] == [
        ("column", "public.a.v", "differs"),
        ("constraint", "public.a: a_chk", "extra_on_target"),
        ("index", "public.a: a_v", "missing_on_target"),
        ("trigger", "public.a: a_audit", "differs"),
        ("table", "public.b", "missing_on_target"),
        ("table", "public.c", "extra_on_target"),
    ]
    messages = [validate.describe_schema_difference(d) for d in found]
    assert messages[3] == "trigger public.a: a_audit is enabled on the source and disabled on the target"
    assert messages[2] == "index public.a: a_v is missing on the target"
    assert validate.schema_diff(src, src) == []


def test_verdict():
    equal = dict(table="public.a", result="equal", differences=[])
    diff = dict(table="public.b", result="different", difference_count=1,
                differences=[dict(kind="changed", key=["7"], columns=["status"], range="[(0), (10))")])
    err = dict(table="public.c", result="error", error="permission denied", differences=[])
    seq = [dict(sequence="public.s", status="behind")]
    assert validate.verdict([equal], [], [], True) == ("GO", [])
    assert validate.verdict([equal], seq, [], False) == ("GO", [])
    v, reasons = validate.verdict([equal, diff, err], seq, [], True)
    assert v == "NO-GO"
    assert reasons == ["public.b differs (1 difference(s), first: changed (7) (columns status) in [(0), (10)))",
                       "public.c could not be compared: permission denied", "sequence public.s is behind"]
    assert validate.sequences_gate("auto", "live") is False
    assert validate.sequences_gate("auto", "quiesced") is True
    assert validate.sequences_gate("always", "live") is True
    assert validate.sequences_gate("never", "quiesced") is False


def test_summary():
    tables = [dict(table="a", result="equal", rows_source=100, differences=[]),
              dict(table="b", result="different", rows_source=50, differences=[dict(kind="extra", key=["x"], count=2)],
                   difference_count=2)]
    s = validate.summary(tables, 2.0, [], [dict(status="ok")])
    assert (s["rows_compared"], s["rows_per_second"], s["differences"], s["tables_different"]) == (150, 75.0, 2, 1)


def test_schema_diff_matches_hard_names_by_schema_and_name_and_shows_them_quoted():
    ops = ("Shipping Ops", "order")
    src = dict(tables={
        ops: tbl(columns=(("id", "bigint NOT NULL"), ('Unit "Price"', "numeric")),
                 constraints={"order pkey": "PRIMARY KEY (id)"}, indexes={"By Price": 'USING btree ("Unit ""Price""")'},
                 triggers={"Audit Order": dict(enabled="O", function="audit")}),
        ("eu.west", "order"): tbl(),
    })
    tgt = dict(tables={
        ops: tbl(columns=(("id", "bigint NOT NULL"), ('Unit "Price"', "integer")),
                 constraints={"order pkey": "PRIMARY KEY (id)"},
                 triggers={"Audit Order": dict(enabled="D", function="audit")}),
        ("eu", "west.order"): tbl(),  # joined plainly, the same text as "eu.west"."order": another table
    })
    found = validate.schema_diff(src, tgt)
    assert [(d["kind"], d["object"], d["difference"]) for d in found] == [
        ("column", '"Shipping Ops"."order"."Unit ""Price"""', "differs"),
        ("index", '"Shipping Ops"."order": "By Price"', "missing_on_target"),
        ("trigger", '"Shipping Ops"."order": "Audit Order"', "differs"),
        ("table", 'eu."west.order"', "extra_on_target"),
        ("table", '"eu.west"."order"', "missing_on_target"),
    ]
    assert validate.describe_schema_difference(found[2]) == (
        'trigger "Shipping Ops"."order": "Audit Order" is enabled on the source and disabled on the target')


# ----------------------------------------------------------------------------------------------
# The lock step's I/O (compare.py) against fake connections: what runs, what falls back, what is recorded


class FakeConn:
    """Records statements; renders composed ones as psycopg would (no server: default adapters, UTF-8)."""

    def __init__(self, name):
        import psycopg
        self.name, self.adapters, self.connection, self.closed = name, psycopg.adapters, None, False
        self.statements = []
        self.info = type("Info", (), dict(server_version=160004))()

    def execute(self, query, params=None):
        self.statements.append(query if isinstance(query, str) else query.as_string(self))
        return self

    def fetchone(self):
        return ["0/3000060"]

    def fetchall(self):
        return []


def hot_table(name="hot %s rows"):
    key = [dict(name="id", type="integer", base_type="int4"), dict(name="k %", type="text", base_type="text")]
    return dict(table='public."%s"' % name, schema="public", name=name, oid=4242, key=key,
                compared=key + [dict(name="v", type="integer", base_type="int4")])


def test_keyed_hashes_locks_in_key_order_with_keys_as_parameters():
    from ansible_collections.pgshift.aurora.plugins.module_utils._pg import compare
    conn = FakeConn("src")
    calls = []
    conn.execute = lambda q, p=None: calls.append((q.as_string(conn), p)) or conn
    compare.keyed_hashes(conn, hot_table(), hot_table()["compared"], [("1", "a"), ("2", "b'c")], 160000, lock=True)
    (query, params), = calls
    assert params == [["1", "2"], ["a", "b'c"]]  # the keys are parameters, not in the text
    assert "b'c" not in query
    assert 'FROM ONLY "public"."hot %%s rows" WHERE ROW("id", "k %%") IN (SELECT u."k0"::integer, u."k1"::text ' \
           'FROM unnest(%s::text[], %s::text[]) AS u("k0", "k1")) ORDER BY "id", "k %%" FOR SHARE NOWAIT' in query
    assert query.replace("%%", "").count("%") == 2  # psycopg sees exactly the two parameters
    calls.clear()
    compare.keyed_hashes(conn, hot_table(), hot_table()["compared"], [("1", "a")], 160000)
    assert "FOR SHARE" not in calls[0][0]
    assert compare.keyed_hashes(conn, hot_table(), hot_table()["compared"], [], 160000) == {}


def test_counts_for_hashes_takes_the_hashes_as_a_parameter_whatever_the_table_is_called():
    from ansible_collections.pgshift.aurora.plugins.module_utils._pg import compare
    conn = FakeConn("src")
    calls = []
    conn.execute = lambda q, p=None: calls.append((q.as_string(conn), p)) or conn
    table = dict(hot_table(), key=[])
    compare.counts_for_hashes(conn, table, table["compared"], [7, 8], 160000)
    (query, params), = calls
    assert params == ([7, 8],) and 'FROM ONLY "public"."hot %%s rows") s WHERE h = ANY(%s) GROUP BY h' in query
    assert query.replace("%%", "").count("%") == 1


def test_lock_step_falls_back_when_the_source_cannot_be_reached(monkeypatch):
    from ansible_collections.pgshift.aurora.plugins.module_utils._pg.connection import PgConnectError
    world = LockWorld(monkeypatch, source={}, target={})
    coord = FakeCoord()

    def unreachable():
        raise PgConnectError("could not connect to the source")
    coord.locker = unreachable
    table, items = lock_items()
    record = {}
    assert world.comparison.lock_step(coord, items, record) == 0
    assert record["lock_fallback"] == 3 and record["lock_problems"] == [
        'public."hot %s rows": the lock step failed: could not connect to the source; settled without the lock']


class FakeCoord:
    def __init__(self):
        self.src, self.tgt, self.mon = FakeConn("locker"), FakeConn("target"), FakeConn("mon")

    def locker(self):
        return self.src

    def tmon(self):
        return self.tgt


class FakeTime:
    """time.time and time.sleep for _pg/compare.py: sleeping advances the clock and is recorded."""

    def __init__(self):
        self.now, self.slept = 1000.0, []

    def time(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


class LockWorld:
    """What the fake source and target hold: {key: hash} per side; how the lock behaves (a fake clock: the tries
    of a held row pass no real time)."""

    def __init__(self, monkeypatch, source, target, lock_error=None, caught_up=True, may_lock=True):
        from ansible_collections.pgshift.aurora.plugins.module_utils._pg import compare
        self.clock = FakeTime()
        monkeypatch.setattr(compare, "time", self.clock)
        self.locks = []
        self.comparison = compare.Comparison({}, {}, dict(live_lock_rows=1000, live_lock_timeout=5, slot_prefix="p_",
                                                          catch_up_timeout=60))
        self.comparison.version = 160000

        def keyed_hashes(conn, table, columns, keys, version, lock=False):
            if lock:
                self.locks.append(list(keys))
                if lock_error:
                    raise lock_error
            side = source if conn.name == "locker" else target
            return dict((k, side[k]) for k in keys if k in side)

        monkeypatch.setattr(compare, "keyed_hashes", keyed_hashes)
        monkeypatch.setattr(compare, "may_lock", lambda conn, oids: dict((o, may_lock) for o in oids))
        monkeypatch.setattr(compare, "column_values", lambda conn, table, cols, key, version: (
            dict(v="s") if conn.name == "locker" else dict(v="t")))
        monkeypatch.setattr(self.comparison, "wait_caught_up", lambda coord, lsn, timeout=None, interval=0.2: (
            caught_up, {}))


class SqlError(Exception):
    def __init__(self, sqlstate, text):
        super().__init__(text)
        self.sqlstate = sqlstate


def lock_items():
    table = hot_table()
    hot = dict(kind="changed", key=["1", "a"], columns=["v"], _s=10, _t=30)       # in flight by the snapshots
    lost = dict(kind="changed", key=["2", "b"], columns=["v"], _s=20, _t=21)      # in flight by the snapshots
    real = dict(kind="changed", key=["3", "c"], columns=["v"], _s=30, _t=31)      # confirmed by the snapshots
    return table, [[table, dict(lo=None, hi=None), [real], [hot, lost]]]


def test_lock_step_settles_hot_rows_and_confirms_real_ones(monkeypatch):
    world = LockWorld(monkeypatch, source={("1", "a"): 40, ("2", "b"): 22, ("3", "c"): 30},
                      target={("1", "a"): 40, ("3", "c"): 31})
    coord = FakeCoord()
    table, items = lock_items()
    record = {}
    resolved = world.comparison.lock_step(coord, items, record)
    assert resolved == 1
    assert world.locks == [[("3", "c"), ("1", "a"), ("2", "b")]]
    (t, rng, confirmed, in_flight), = items
    assert in_flight == []
    assert [(d["kind"], d["key"], d.get("columns"), d["_s"], d["_t"]) for d in confirmed] == [
        ("changed", ["3", "c"], ["v"], 30, 31), ("missing", ["2", "b"], None, 22, None)]
    assert record == dict(locked_rows=3, settled_by_lock=3, lock_resolved=1, lock_confirmed=2, lock_fallback=0,
                          lock_problems=[])
    src = coord.src.statements
    assert src[0] == "BEGIN ISOLATION LEVEL READ COMMITTED" and src[-1] == "ROLLBACK"
    assert any("pg_current_wal_insert_lsn" in q for q in src)
    assert coord.mon.statements == ["SELECT pg_current_xact_id()"]  # the locked position gets flushed, then sent


def test_lock_step_falls_back_when_the_lock_is_not_granted(monkeypatch):
    world = LockWorld(monkeypatch, source={}, target={}, lock_error=SqlError("55P03", "canceling statement due to lock timeout"))
    coord = FakeCoord()
    table, items = lock_items()
    before = [list(x) for x in items]
    record = {}
    assert world.comparison.lock_step(coord, items, record) == 0
    assert items == before  # every difference keeps its snapshot classification: the hot ones stay in flight
    assert record["settled_by_lock"] == 0 and record["lock_fallback"] == 3
    assert record["lock_problems"] == [validate.lock_failure(table["table"], "55P03", "", 5.0)]
    assert coord.src.statements[-1] == "ROLLBACK"  # released
    # tried again within live_lock_timeout (5 s), each try in a transaction of its own, rolled back
    assert len(world.locks) > 5 and world.clock.now - 1000.0 <= 5.0
    assert coord.src.statements.count("BEGIN ISOLATION LEVEL READ COMMITTED") == len(world.locks)


def test_lock_rows_tries_a_held_row_again_and_gives_up_on_anything_else(monkeypatch):
    """NOWAIT: a held row (55P03) rolls the try back and a new one follows, 10 ms apart doubling up to 200 ms;
    any other error is raised at once."""
    from ansible_collections.pgshift.aurora.plugins.module_utils._pg import compare
    clock = FakeTime()
    monkeypatch.setattr(compare, "time", clock)
    outcomes = [SqlError("55P03", "could not obtain lock on row")] * 6 + [{("1", "a"): 7}]

    def keyed_hashes(conn, table, columns, keys, version, lock=False):
        assert lock
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome
    monkeypatch.setattr(compare, "keyed_hashes", keyed_hashes)
    conn = FakeConn("locker")
    got = compare.lock_rows(conn, hot_table(), [], [("1", "a")], 160000, 5.0, clock.time() + 5.0)
    assert got == {("1", "a"): 7}
    assert clock.slept == [0.01, 0.02, 0.04, 0.08, 0.16, 0.2]
    assert conn.statements.count("BEGIN ISOLATION LEVEL READ COMMITTED") == 7
    assert conn.statements.count("ROLLBACK") == 6 and conn.statements[-1] != "ROLLBACK"  # the last try holds
    # the deadline passes: the last error is raised, its try rolled back
    outcomes[:] = [SqlError("55P03", "could not obtain lock on row")] * 50
    conn = FakeConn("locker")
    with pytest.raises(SqlError):
        compare.lock_rows(conn, hot_table(), [], [("1", "a")], 160000, 0.5, clock.time() + 0.5)
    assert conn.statements[-1] == "ROLLBACK"
    # a privilege error is not waited out
    outcomes[:] = [SqlError("42501", "permission denied for table hot")]
    conn = FakeConn("locker")
    with pytest.raises(SqlError, match="permission denied"):
        compare.lock_rows(conn, hot_table(), [], [("1", "a")], 160000, 5.0, clock.time() + 5.0)
    assert conn.statements.count("BEGIN ISOLATION LEVEL READ COMMITTED") == 1


def test_lock_step_falls_back_when_the_slots_do_not_catch_up(monkeypatch):
    world = LockWorld(monkeypatch, source={("1", "a"): 40}, target={("1", "a"): 40}, caught_up=False)
    coord = FakeCoord()
    table, items = lock_items()
    record = {}
    world.comparison.lock_step(coord, items, record)
    assert [len(items[0][2]), len(items[0][3])] == [1, 2]
    assert record["settled_by_lock"] == 0 and record["locked_rows"] == 1
    assert "did not confirm the locked position 0/3000060" in record["lock_problems"][0]
    assert coord.tgt.statements == []  # the target was not read
    assert coord.src.statements[-1] == "ROLLBACK"


def test_lock_step_without_the_privilege_locks_nothing_and_says_why(monkeypatch):
    world = LockWorld(monkeypatch, source={}, target={}, may_lock=False)
    coord = FakeCoord()
    table, items = lock_items()
    record = {}
    world.comparison.lock_step(coord, items, record)
    assert world.locks == [] and record["lock_fallback"] == 3
    assert record["lock_problems"] == [validate.lock_refused(table["table"])]


def test_lock_step_disabled_or_nothing_to_lock(monkeypatch):
    world = LockWorld(monkeypatch, source={}, target={})
    world.comparison.o["live_lock_rows"] = 0
    table, items = lock_items()
    record = {}
    assert world.comparison.lock_step(FakeCoord(), items, record) == 0
    assert record == {} and world.locks == []
    world.comparison.o["live_lock_rows"] = 1000
    unkeyed = dict(kind="extra", key=["(a)"], count=1, _hash=7, _s=1, _t=2)
    items = [[table, dict(lo=None, hi=None), [unkeyed], []]]
    assert world.comparison.lock_step(FakeCoord(), items, record) == 0
    assert record == {} and items[0][2] == [unkeyed]


def test_report_shows_what_the_lock_step_settled():
    import os
    import jinja2
    root = os.path.join(os.path.dirname(__file__), "..", "..", "roles", "validate", "templates")
    env = jinja2.Environment(trim_blocks=True, loader=jinja2.FileSystemLoader(root))
    rounds = [dict(round=1, source_lsn="0/10", ranges=3, differing=1),
              dict(round=2, source_lsn="0/20", caught_up=True, confirmed=1, in_flight=0, resolved=4, locked_rows=5,
                   settled_by_lock=5, lock_resolved=4, lock_confirmed=1, lock_fallback=0, lock_problems=[]),
              dict(round=3, source_lsn="0/30", caught_up=True, confirmed=0, in_flight=1, resolved=0, locked_rows=0,
                   settled_by_lock=0, lock_resolved=0, lock_confirmed=0, lock_fallback=1,
                   lock_problems=["public.hot: the rows stayed locked"])]
    report = dict(migration_name="m", finished_at="2025-01-01T00:00:00Z", mode="live", verdict="GO", reasons=[],
                  summary={}, tables=[], schema=[], sequences=[], skipped=[], rounds=rounds)
    text = env.get_template("validation.md.j2").render(validate_report=report)
    assert ("- round 2: source LSN 0/20, caught up True, 1 confirmed, 0 in flight, 4 resolved; lock step: 5 row(s) "
            "locked, 5 settled by it (4 resolved, 1 confirmed), 0 settled without it\n") in text
    assert "1 settled without it\n  - public.hot: the rows stayed locked\n" in text
    assert "- round 1: source LSN 0/10\n" in text
