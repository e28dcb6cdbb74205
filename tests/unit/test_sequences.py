"""The pure sequence decisions: next_value and sequence_plan (what the target must hand out next)."""

from __future__ import annotations

import pytest

from ansible_collections.pgshift.aurora.plugins.module_utils import scope
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import freeze, sequences


def seq(name="public.orders_id_seq", last=None, called=True, inc=1, lo=1, hi=2 ** 63 - 1, cycle=False, start=1,
        cols=None):
    schema, relname = scope.split_qualified(name)
    return dict(sequence=name, schema=schema, name=relname, last_value=last, is_called=called,
                increment_by=inc, min_value=lo, max_value=hi, cycle=cycle, start_value=start,
                columns=[dict(table="public.orders", column="id", max=c, min=c) for c in (cols or [])])


@pytest.mark.parametrize("kwargs, expected", [
    (dict(last=1, called=False), 1),            # fresh: nextval returns last_value itself
    (dict(last=41, called=True), 42),
    (dict(last=40, called=True, inc=5), 45),
    (dict(last=-10, called=True, inc=-1, lo=-100, hi=-1, start=-1), -11),
    (dict(last=-1, called=False, inc=-1, lo=-100, hi=-1, start=-1), -1),
    (dict(last=10, called=True, hi=10, cycle=True), 1),  # wraps to min_value
    (dict(last=-100, called=True, inc=-1, lo=-100, hi=-1, cycle=True), -1),  # wraps to max_value
    (dict(last=10, called=True, hi=10, cycle=False), 11),  # exhausted: past the bound, still "ahead"
    (dict(last=None, start=7), 7),
])
def test_next_value(kwargs, expected):
    assert sequences.next_value(seq(**kwargs)) == expected


def test_plan_ok_when_target_ahead_of_source_and_columns():
    plan = sequences.sequence_plan([seq(last=100, cols=[100])], [seq(last=150, cols=[100])])
    assert plan == [dict(sequence="public.orders_id_seq", schema="public", name="orders_id_seq", source_next=101,
                         target_next=151, increment_by=1,
                         column_max=100, column_min=100, required_next=101, set_to=None, status="ok")]


def test_plan_behind_source_sets_to_required_minus_increment():
    (entry,) = sequences.sequence_plan([seq(last=100, cols=[100])], [seq(last=1, called=False, cols=[100])])
    assert entry["status"] == "behind"
    assert entry["required_next"] == 101
    assert entry["set_to"] == 100  # setval(seq, 100, true) -> nextval() = 101


def test_plan_behind_column_max_even_when_source_sequence_is_lower():
    # rows inserted with explicit ids above the sequence: the column wins
    (entry,) = sequences.sequence_plan([seq(last=10, cols=[500])], [seq(last=10, cols=[500])])
    assert entry["status"] == "behind"
    assert entry["required_next"] == 501
    assert entry["set_to"] == 500


def test_plan_target_column_max_counts_too():
    (entry,) = sequences.sequence_plan([seq(last=10, cols=[10])], [seq(last=10, cols=[20])])
    assert (entry["column_max"], entry["required_next"], entry["status"]) == (20, 21, "behind")


def test_plan_equal_next_value_is_ok_with_gap_zero_and_behind_with_gap():
    src, tgt = seq(last=100, cols=[100]), seq(last=100, cols=[100])
    assert sequences.sequence_plan([src], [tgt])[0]["status"] == "ok"
    (entry,) = sequences.sequence_plan([src], [tgt], gap=1000)
    assert entry["required_next"] == 1101
    assert entry["set_to"] == 1100
    assert entry["status"] == "behind"


def test_plan_increment_respected():
    (entry,) = sequences.sequence_plan([seq(last=100, inc=10, cols=[100])], [seq(last=1, called=False, inc=10)])
    assert entry["required_next"] == 110
    assert entry["set_to"] == 100


def test_plan_empty_table_fresh_sequences_ok():
    (entry,) = sequences.sequence_plan([seq(last=1, called=False)], [seq(last=1, called=False)])
    assert entry["status"] == "ok" and entry["set_to"] is None and entry["column_max"] is None


def test_plan_set_to_never_below_min_value():
    # required 1 on a sequence whose minimum is 1: setval(seq, 0, true) would be refused
    (entry,) = sequences.sequence_plan([seq(last=1, called=False)], [seq(last=1, called=False, lo=5, start=5)])
    assert entry["status"] == "ok"
    (entry,) = sequences.sequence_plan([seq(last=5, called=False, lo=5, start=5)],
                                       [seq(last=3, called=False, lo=3, start=3)])
    assert entry["status"] == "behind"
    assert entry["set_to"] == 4


def test_plan_missing_on_target():
    (entry,) = sequences.sequence_plan([seq(last=100)], [seq(name="public.other_seq", last=100)])
    assert entry["status"] == "missing_on_target"
    assert entry["set_to"] is None
    assert "missing" in sequences.plan_problems([entry])[0]


def test_plan_descending():
    src = seq(last=-50, inc=-1, lo=-1000, hi=-1, start=-1, cols=[-50, -20])
    tgt = seq(last=-1, called=False, inc=-1, lo=-1000, hi=-1, start=-1, cols=[-50])
    (entry,) = sequences.sequence_plan([src], [tgt])
    assert entry["column_min"] == -50
    assert entry["required_next"] == -51
    assert entry["status"] == "behind"
    assert entry["set_to"] == -50  # setval(seq, -50, true) -> nextval() = -51
    ahead = seq(last=-60, inc=-1, lo=-1000, hi=-1, start=-1)
    assert sequences.sequence_plan([src], [ahead])[0]["status"] == "ok"
    (gapped,) = sequences.sequence_plan([src], [ahead], gap=100)
    assert (gapped["required_next"], gapped["set_to"], gapped["status"]) == (-151, -150, "behind")


def test_plan_past_maximum_is_named():
    (entry,) = sequences.sequence_plan([seq(last=90, hi=100, cols=[99])], [seq(last=1, hi=100)], gap=50)
    assert entry["status"] == "behind"
    assert entry["set_to"] == 100
    assert "maximum" in entry["problem"]


def test_plan_problems_name_the_sequence_and_values():
    plan = sequences.sequence_plan([seq(last=100, cols=[100])], [seq(last=5)])
    (line,) = sequences.plan_problems(plan)
    assert "public.orders_id_seq" in line and "6" in line and "101" in line


def test_plan_rejects_negative_gap():
    with pytest.raises(ValueError):
        sequences.sequence_plan([], [], gap=-1)


def test_keep_columns_drops_partitions_covered_by_parent():
    cols = [dict(seq=1, column="id", relkind="p", is_partition=False, table="t"),
            dict(seq=1, column="id", relkind="r", is_partition=True, table="t_1"),
            dict(seq=2, column="id", relkind="r", is_partition=True, table="u_1")]
    assert [c["table"] for c in sequences.keep_columns(cols)] == ["t", "u_1"]


# --- names that need quoting ---------------------------------------------------------------------------------

def test_sides_are_matched_on_schema_and_name_not_on_a_display_string():
    # "eu.west"."order" and "eu"."west.order" join plainly to the same text: they are two sequences
    a_src, b_src = seq('"eu.west"."order"', last=100), seq('eu."west.order"', last=5)
    a_tgt, b_tgt = seq('"eu.west"."order"', last=1, called=False), seq('eu."west.order"', last=500)
    plan = sequences.sequence_plan([a_src, b_src], [b_tgt, a_tgt])
    assert [(e["schema"], e["name"], e["status"], e["set_to"]) for e in plan] == [
        ("eu.west", "order", "behind", 100), ("eu", "west.order", "ok", None)]
    assert plan[0]["sequence"] == '"eu.west"."order"'
    # a target sequence differing only in letter case is another sequence
    (entry,) = sequences.sequence_plan([seq('"Shipping Ops"."Order No."', last=7)],
                                       [seq('"Shipping Ops"."order no."', last=100)])
    assert entry["status"] == "missing_on_target"
    assert sequences.plan_problems([entry]) == ['sequence "Shipping Ops"."Order No." is missing on the target']


def test_setval_shown_as_a_statement_a_person_can_run():
    assert freeze.setval_sql("Shipping Ops", "Order No.", 1099).as_string(None) == \
        "SELECT setval('\"Shipping Ops\".\"Order No.\"', 1099, true)"
    assert freeze.setval_sql('eu.west "archive"', "it's", -5).as_string(None) == \
        "SELECT setval('\"eu.west \"\"archive\"\"\".\"it''s\"',  -5, true)"  # psycopg writes a negative literal with a space
