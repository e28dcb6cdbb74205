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
