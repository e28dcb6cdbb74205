"""The decisions of pg_replication_plan, from crafted catalog relations."""

from __future__ import annotations

import itertools
import json

import pytest

from ansible_collections.pgshift.aurora.plugins.module_utils import names, plan, scope

from factsbuilder import table

GB = 1024 ** 3
MB = 1024 ** 2


def shipping():
    """A small shipping schema: partitions with a default, an inheritance tree, plain and mixed-case tables."""
    return [
        table("public", "shipments", relkind="p", oid=10, has_children=True, bytes_=0),
        table("public", "shipments_2025_01", is_partition=True, parents=[10], oid=11, bytes_=400 * MB),
        table("public", "shipments_2025_02", is_partition=True, parents=[10], oid=12, bytes_=420 * MB),
        table("public", "shipments_default", is_partition=True, parents=[10], oid=13, bytes_=10 * MB),
        table("public", "tracking_events", oid=20, has_children=True, bytes_=16384, rows=0),
        table("public", "tracking_events_2025_01", parents=[20], oid=21, bytes_=300 * MB),
        table("public", "tracking_events_2025_02", parents=[20], oid=22, bytes_=310 * MB),
        table("public", "customers", oid=30, bytes_=50 * MB),
        table("billing", "VatRates", oid=31, bytes_=32768),
        table("public", "session_cache", oid=40, persistence="u"),
        table("public", "remote_items", oid=41, relkind="f", bytes_=0),
        table("public", "shipment_daily_stats", oid=42, relkind="m"),
    ]


def make(rels=None, excluded=(), **opts):
    rels = shipping() if rels is None else rels
    opts.setdefault("migration_name", "shipping")
    return plan.build_plan(scope.select(rels), list(excluded), opts)


def placement(result):
    return {t["qualified"]: s["number"] for s in result["streams"] for t in s["tables"]}


def stream_of(result, qualified):
    return placement(result)[qualified]


# --- names -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["shipping", "a", "orders_2025", "x" * 40, "0_9"])
def test_valid_migration_names(name):
    assert plan.validate_migration_name(name) == name


@pytest.mark.parametrize("name", ["", "x" * 41, "Shipping", "ship-ping", "ship ping", "schöne", None, "a.b"])
def test_invalid_migration_names_say_the_rule(name):
    with pytest.raises(plan.PlanError, match=r"\[a-z0-9_\]\{1,40\}"):
        plan.validate_migration_name(name)


def test_stream_names_round_trip_and_dms_identifier():
    assert names.stream_name("shipping", 3) == "pgshift_shipping_s3"
    assert names.stream_number("shipping", "pgshift_shipping_s3") == 3
    assert names.stream_number("shipping", "pgshift_shipping_s12") == 12
    for other in ("pgshift_shipping_s0", "pgshift_shipping_s01", "pgshift_shipping_s1_old", "pgshift_ship_s1",
                  "pgshift_shipping_x_s1", "shipping_s1", None):
        assert names.stream_number("shipping", other) is None
    # A migration named shipping_x never claims shipping's streams and vice versa.
    assert names.stream_number("shipping_x", "pgshift_shipping_s1") is None
    assert plan.dms_task_identifier("pgshift_a__b_s1") == "pgshift-a-b-s1"


def test_build_plan_rejects_a_bad_name_before_anything_else():
    with pytest.raises(plan.PlanError, match="migration_name 'Bad-Name'"):
        make(migration_name="Bad-Name")


# --- units: leaves, children, ONLY ---------------------------------------------------------------

def test_units_are_physical_tables_each_exactly_once():
    result = make(streams=3)
    names = [t["qualified"] for s in result["streams"] for t in s["tables"]]
    assert sorted(names) == sorted(set(names))
    assert set(names) == {
        "public.shipments_2025_01", "public.shipments_2025_02", "public.shipments_default",
        "public.tracking_events", "public.tracking_events_2025_01", "public.tracking_events_2025_02",
        "public.customers", 'billing."VatRates"'}
    entries = {t["qualified"]: t for s in result["streams"] for t in s["tables"]}
    assert entries["public.tracking_events"]["only"] is True
    assert entries["public.tracking_events"]["kind"] == "inheritance_parent"
    assert entries["public.tracking_events_2025_01"]["only"] is False
    assert entries["public.tracking_events_2025_01"]["kind"] == "inheritance_child"
    assert entries["public.shipments_default"]["kind"] == "partition"
    assert entries["public.shipments_default"]["root"] == "public.shipments"
    assert all(not e["only"] for q, e in entries.items() if q != "public.tracking_events")


def test_partitioned_parent_is_in_no_stream_but_listed_as_a_parent():
    result = make()
    assert [p["qualified"] for p in result["parents"]] == ["public.shipments"]
    assert result["parents"][0]["covered_by"] == "partitions"


def test_sub_partitioned_tree_plans_only_the_leaves():
    rels = [
        table("public", "m", relkind="p", oid=1, has_children=True),
        table("public", "m_2025", relkind="p", is_partition=True, parents=[1], oid=2, has_children=True),
        table("public", "m_2025_01", is_partition=True, parents=[2], oid=3),
        table("public", "m_2025_02", is_partition=True, parents=[2], oid=4),
    ]
    result = make(rels, streams=1)
    assert sorted(placement(result)) == ["public.m_2025_01", "public.m_2025_02"]
    assert sorted(p["qualified"] for p in result["parents"]) == ["public.m", "public.m_2025"]
    assert {t["root"] for t in result["streams"][0]["tables"]} == {"public.m"}


def test_not_replicated_lists_unlogged_foreign_and_matviews_with_reasons():
    result = make()
    reasons = {t["qualified"]: t["reason"] for t in result["not_replicated"]}
    assert set(reasons) == {"public.session_cache", "public.remote_items", "public.shipment_daily_stats"}
    assert "unlogged" in reasons["public.session_cache"] and "WAL" in reasons["public.session_cache"]
    assert "foreign table" in reasons["public.remote_items"]
    assert "REFRESH MATERIALIZED VIEW" in reasons["public.shipment_daily_stats"]
    assert "public.session_cache" not in placement(result)


def test_excluded_by_filters_are_reported_and_not_planned():
    rels = shipping()
    kept = scope.select(rels, exclude_tables=["public.tracking_events"])
    kept_oids = {t["oid"] for t in kept}
    excluded = [t for t in scope.classify(rels) if t["oid"] not in kept_oids]
    result = plan.build_plan(kept, excluded, dict(migration_name="shipping", streams=2))
    assert [e["qualified"] for e in result["excluded"]] == [
        "public.tracking_events", "public.tracking_events_2025_01", "public.tracking_events_2025_02"]
    assert not any(q.startswith("public.tracking_events") for q in placement(result))
    assert result["totals"]["excluded"] == 3


# --- blockers --------------------------------------------------------------------------------------

def test_no_pk_and_no_identity_stops_the_plan_naming_tables_and_fixes():
    rels = shipping() + [table("public", "carrier_rates", has_pk=False, oid=50),
                         table("public", "nothing_ri", replident="n", oid=51)]
    with pytest.raises(plan.PlanError) as err:
        make(rels)
    msg = str(err.value)
    assert "public.carrier_rates, public.nothing_ri" in msg
    assert "REPLICA IDENTITY FULL" in msg and "migration_replica_identity_full" in msg
    assert "primary key" in msg and "exclude" in msg


def test_no_pk_table_is_fine_once_excluded_or_given_identity_full():
    nopk = table("public", "carrier_rates", has_pk=False, oid=50)
    rels = shipping() + [nopk]
    kept = scope.select(rels, exclude_tables=["public.carrier_rates"])
    assert "public.carrier_rates" not in placement(plan.build_plan(kept, [], dict(migration_name="x")))
    nopk["replident"] = "f"
    result = make(rels)
    assert "public.carrier_rates" in placement(result)
    assert [t for s in result["streams"] for t in s["tables"] if t["name"] == "carrier_rates"][0]["primary_key"] == []


def test_unique_index_identity_counts_as_usable():
    t = table("public", "u", has_pk=False, replident="i", oid=60)
    t["has_replident_index"] = True
    assert "public.u" in placement(make([t]))


def test_unlogged_or_excluded_kinds_without_pk_do_not_block():
    rels = [table("public", "cache", has_pk=False, persistence="u", oid=70), table("public", "t", oid=71)]
    assert list(placement(make(rels))) == ["public.t"]


def test_dms_refuses_tables_without_pk_even_with_identity_full_unless_allowed():
    rels = shipping() + [table("public", "carrier_rates", has_pk=False, replident="f", oid=50)]
    assert "public.carrier_rates" in placement(make(rels, engine="native"))
    with pytest.raises(plan.PlanError, match="AWS DMS ignores UPDATE and DELETE.*public.carrier_rates.*"
                                             "allow_no_pk_dms"):
        make(rels, engine="dms")
    assert "public.carrier_rates" in placement(make(rels, engine="dms", allow_no_pk_dms=True))


def test_dms_still_needs_a_replica_identity_with_allow_no_pk():
    rels = [table("public", "carrier_rates", has_pk=False, oid=50)]
    with pytest.raises(plan.PlanError, match="neither a primary key nor a usable replica identity"):
        make(rels, engine="dms", allow_no_pk_dms=True)


def test_all_problems_are_reported_at_once():
    rels = [table("public", "a", has_pk=False, oid=1), table("public", "b", has_pk=False, replident="f", oid=2)]
    with pytest.raises(plan.PlanError) as err:
        make(rels, engine="dms")
    assert "public.a" in str(err.value) and "public.b" in str(err.value)


# --- balance ------------------------------------------------------------------------------------------

def hot_month_partitions(n=6, hot=(4, 5, 6)):
    """Equal-sized monthly partitions; the recent months take the writes."""
    rels = [table("public", "events", relkind="p", oid=100, has_children=True, bytes_=0)]
    for i in range(1, n + 1):
        rels.append(table("public", "events_2025_%02d" % i, is_partition=True, parents=[100], oid=100 + i,
                          bytes_=GB))
    rates = {100 + i: (500.0 if i in hot else 0.0) for i in range(1, n + 1)}
    return rels, rates


def test_hot_partitions_are_spread_across_streams():
    rels, rates = hot_month_partitions()
    result = make(rels, streams=3, write_rates=rates)
    hot_streams = [stream_of(result, "public.events_2025_%02d" % i) for i in (4, 5, 6)]
    assert sorted(hot_streams) == [1, 2, 3]
    assert [s["table_count"] for s in result["streams"]] == [2, 2, 2]
    assert [s["bytes"] for s in result["streams"]] == [2 * GB] * 3


def test_a_big_cold_table_does_not_leave_every_hot_partition_to_the_other_stream():
    rels = [table("public", "archive", oid=1, bytes_=40 * GB)]
    rels += [table("public", "hot_%d" % i, oid=10 + i, bytes_=10 * MB) for i in range(4)]
    rates = {10 + i: 200.0 for i in range(4)}
    result = make(rels, streams=2, write_rates=rates)
    hot = [stream_of(result, "public.hot_%d" % i) for i in range(4)]
    assert sorted(hot) == [1, 1, 2, 2]
    writes = [s["writes_per_second"] for s in result["streams"]]
    assert writes == [400.0, 400.0]


def test_sizes_balance_when_nothing_writes():
    rels = [table("public", "t%d" % i, oid=i, bytes_=b) for i, b in enumerate([90, 60, 50, 40, 30, 20, 10], 1)]
    result = make(rels, streams=2)
    assert sorted(s["bytes"] for s in result["streams"]) == [150, 150]


def test_empty_tables_are_spread_by_count():
    rels = [table("public", "t%d" % i, oid=i, bytes_=0) for i in range(1, 7)]
    result = make(rels, streams=3)
    assert [s["table_count"] for s in result["streams"]] == [2, 2, 2]


def test_plan_is_deterministic_whatever_the_input_order():
    rels, rates = hot_month_partitions(n=12, hot=(3, 7, 11, 12))
    rels += [table("public", "same_%d" % i, oid=200 + i, bytes_=5 * MB) for i in range(5)]  # ties by name
    rels += shipping()
    for engine in ("native", "dms"):
        check_order_independent(rels, rates, engine)


def check_order_independent(rels, rates, engine):
    first = make(rels, streams=4, write_rates=rates, engine=engine)
    assert first["not_replicated"] and first["parents"]
    for order in (list(reversed(rels)), sorted(rels, key=lambda r: r["name"]), rels[3:] + rels[:3]):
        again = make(order, streams=4, write_rates=dict(reversed(list(rates.items()))), engine=engine)
        assert json.dumps(again, sort_keys=True) == json.dumps(first, sort_keys=True)


def test_ties_are_broken_by_name():
    rels = [table("public", name, oid=oid, bytes_=100) for name, oid in (("b", 1), ("a", 2), ("c", 3))]
    result = make(rels, streams=2)
    assert placement(result) == {"public.a": 1, "public.b": 2, "public.c": 1}


def test_auto_stream_count_from_sizes_and_writes():
    rels = [table("public", "t%d" % i, oid=i, bytes_=30 * GB) for i in range(1, 5)]
    result = make(rels, streams=0)
    assert result["suggested_streams"] == 3 and result["stream_count"] == 3  # 120 GB at ~50 GB per stream
    result = make(rels, streams=0, write_rates={1: 2500.0})  # one stream's worth of writes: the sizes decide
    assert result["stream_count"] == 3
    result = make(rels, streams=0, write_rates={1: 10000.0})  # 2500 row writes/s per stream
    assert result["suggested_streams"] == 4 and result["stream_count"] == 4
    assert make([table("public", "t", oid=1)], streams=0)["stream_count"] == 1


def test_the_vcpus_cap_the_automatic_count_and_a_larger_count_is_warned_about():
    """One stream per two vCPUs of the smaller instance: 120 GB asks for 3 streams, 4 vCPUs carry 2."""
    rels = [table("public", "t%d" % i, oid=i, bytes_=30 * GB) for i in range(1, 5)]
    result = make(rels, streams=0, vcpus=4)
    assert (result["suggested_streams"], result["stream_count"], result["vcpus"], result["stream_cap"]) == (2, 2, 4, 2)
    assert not [w for w in result["warnings"] if "vCPUs" in w]
    assert make(rels, streams=0, vcpus=16)["stream_count"] == 3  # the sizes decide below the cap
    assert make(rels, streams=0, vcpus=1)["stream_count"] == 1  # never fewer than one
    # asked for 3 on 4 vCPUs: planned as asked, with what it costs and what to do
    result = make(rels, streams=3, vcpus=4)
    assert result["stream_count"] == 3
    assert [w for w in result["warnings"] if "vCPUs" in w] == [
        "3 streams on 4 vCPUs (the fewer of the source's and the target's): each stream takes a WAL decoder on the "
        "source and an apply worker on the target, and more than 2 compete for the same cores with the "
        "application; plan 2 stream(s), or give the instances more vCPUs"]
    # without vcpus: no cap, no warning
    result = make(rels, streams=0)
    assert (result["stream_count"], result["vcpus"], result["stream_cap"]) == (3, None, None)


def test_more_streams_than_tables_warns_about_empty_streams():
    result = make([table("public", "t", oid=1)], streams=2)
    assert result["streams"][1]["tables"] == []
    assert any("pgshift_shipping_s2 has no table" in w for w in result["warnings"])
    assert result["streams"][1]["table_mapping"] == {"rules": []}


# --- stability -----------------------------------------------------------------------------------------

def test_existing_assignment_is_kept_and_only_new_tables_are_placed():
    rels, rates = hot_month_partitions()
    first = make(rels, streams=2, write_rates=rates)
    previous = {t["qualified"]: s["name"] for s in first["streams"] for t in s["tables"]}
    # Two new months arrive, a big one and a hot one, and the rates changed meanwhile.
    rels.append(table("public", "events_2025_07", is_partition=True, parents=[100], oid=107, bytes_=5 * GB))
    rels.append(table("public", "events_2025_08", is_partition=True, parents=[100], oid=108, bytes_=MB))
    new_rates = dict(rates)
    new_rates.update({101: 900.0, 108: 800.0})
    again = make(rels, streams=2, write_rates=new_rates, existing=previous)
    now = placement(again)
    for q, name in previous.items():
        assert now[q] == names.stream_number("shipping", name)
    placed = {t["qualified"]: t["placed"] for s in again["streams"] for t in s["tables"]}
    assert placed["public.events_2025_07"] == placed["public.events_2025_08"] == "new"
    assert placed["public.events_2025_01"] == "existing"
    assert again["totals"]["kept"] == 6 and again["totals"]["placed"] == 2
    assert again["existing_streams"] == [1, 2]


def test_existing_from_publications_keeps_tables_where_they_are():
    pubs = ["pgshift_shipping_s1", "pgshift_shipping_s2", "pgshift_other_s1", "pgshift_shipping_s2_old"]
    rows = [dict(pubname="pgshift_shipping_s2", schemaname="public", tablename="customers"),
            dict(pubname="pgshift_shipping_s2", schemaname="billing", tablename="VatRates"),
            dict(pubname="pgshift_other_s1", schemaname="public", tablename="shipments_2025_01")]
    result = make(streams=2, publication_names=pubs, publication_tables=rows)
    assert stream_of(result, "public.customers") == 2
    assert stream_of(result, 'billing."VatRates"') == 2
    assert result["existing_streams"] == [1, 2]
    assert result["totals"]["kept"] == 2


def test_publications_are_ignored_for_dms():
    rows = [dict(pubname="pgshift_shipping_s2", schemaname="public", tablename="customers")]
    result = make(streams=1, engine="dms", publication_names=["pgshift_shipping_s2"], publication_tables=rows)
    assert result["existing_streams"] == []


def test_a_partitioned_root_in_a_publication_stands_for_its_leaves():
    rows = [dict(pubname="pgshift_shipping_s3", schemaname="public", tablename="shipments")]
    result = make(streams=0, publication_names=["pgshift_shipping_s3"], publication_tables=rows)
    assert result["stream_count"] == 3
    for leaf in ("public.shipments_2025_01", "public.shipments_2025_02", "public.shipments_default"):
        assert stream_of(result, leaf) == 3


def test_a_table_in_two_streams_is_an_error():
    rows = [dict(pubname="pgshift_shipping_s1", schemaname="public", tablename="customers"),
            dict(pubname="pgshift_shipping_s2", schemaname="public", tablename="customers")]
    with pytest.raises(plan.PlanError, match="public.customers is assigned to two streams.*applied twice"):
        make(streams=2, publication_names=["pgshift_shipping_s1", "pgshift_shipping_s2"], publication_tables=rows)
    rows = [dict(pubname="pgshift_shipping_s1", schemaname="public", tablename="customers")]
    with pytest.raises(plan.PlanError, match="two streams"):
        make(streams=2, publication_names=["pgshift_shipping_s1"], publication_tables=rows,
             existing={"public.customers": "pgshift_shipping_s2"})


def test_fewer_streams_than_exist_is_an_error_that_says_why():
    with pytest.raises(plan.PlanError) as err:
        make(streams=2, existing={"public.customers": "pgshift_shipping_s3"})
    msg = str(err.value)
    assert "pgshift_shipping_s3 already exists" in msg and "cannot be merged" in msg and "3 or more" in msg
    # An empty publication is a stream too.
    with pytest.raises(plan.PlanError, match="pgshift_shipping_s4 already exists"):
        make(streams=3, publication_names=["pgshift_shipping_s4"])
    assert make(streams=0, publication_names=["pgshift_shipping_s4"])["stream_count"] == 4


def test_existing_option_is_validated():
    with pytest.raises(plan.PlanError, match="not a stream of migration shipping"):
        make(existing={"public.customers": "s2"})
    with pytest.raises(plan.PlanError, match="existing: .*schema.table"):
        make(existing={"a.b.c": "pgshift_shipping_s1"})


def test_existing_names_that_are_gone_or_not_replicated_only_warn():
    result = make(streams=2, existing={"public.dropped": "pgshift_shipping_s1",
                                       "public.session_cache": "pgshift_shipping_s2"})
    text = " ".join(result["warnings"])
    assert "public.dropped is assigned to pgshift_shipping_s1" in text
    assert "public.session_cache" in text and "not replicated" in text


# --- per table -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("pk,nbytes,expected", [
    ([dict(name="id", base_type="int8")], 5 * GB, ("id", 5)),
    ([dict(name="id", base_type="int4")], 5 * GB + 1, ("id", 6)),
    ([dict(name="id", base_type="int8")], GB, ("id", 1)),
    ([dict(name="id", base_type="int8")], 10, ("id", 1)),
    ([dict(name="id", base_type="uuid")], 5 * GB, (None, 1)),
    ([dict(name="id", base_type="int8"), dict(name="at", base_type="timestamptz")], 5 * GB, (None, 1)),
    ([], 5 * GB, (None, 1)),
])
def test_split_hint(pk, nbytes, expected):
    assert plan.split_hint(nbytes, pk, GB) == expected


def test_table_entries_carry_keys_sizes_rates_and_load_estimate():
    rels = [table("public", "orders", oid=1, bytes_=3 * GB, rows=1000), table("public", "x", oid=2, bytes_=GB)]
    pks = {1: [dict(name="id", type="bigint", base_type="int8")],
           2: [dict(name="a", type="integer", base_type="int4"), dict(name="b", type="text", base_type="text")]}
    result = make(rels, streams=1, primary_keys=pks, write_rates={1: 12.5}, load_rate_bytes_per_second=GB,
                  split_bytes=GB)
    s = result["streams"][0]
    t = {e["name"]: e for e in s["tables"]}
    assert t["orders"]["primary_key"] == ["id"] and t["orders"]["split"] == 3 and t["orders"]["split_key"] == "id"
    assert t["x"]["primary_key"] == ["a", "b"] and t["x"]["split"] == 1 and t["x"]["split_key"] is None
    assert t["orders"]["rows"] == 1000 and t["orders"]["writes_per_second"] == 12.5
    assert s["bytes"] == 4 * GB and s["estimated_load_seconds"] == 4.0
    assert result["totals"]["estimated_load_seconds"] == 4.0
    assert result["totals"]["bytes"] == 4 * GB


def test_load_estimate_is_the_slowest_stream():
    rels = [table("public", "a", oid=1, bytes_=300), table("public", "b", oid=2, bytes_=100)]
    result = make(rels, streams=2, load_rate_bytes_per_second=100)
    assert [s["estimated_load_seconds"] for s in result["streams"]] == [3.0, 1.0]
    assert result["totals"]["estimated_load_seconds"] == 3.0


def all_rules(result):
    return [r for s in result["streams"] for r in s["table_mapping"]["rules"]]


def test_dms_mappings_select_each_table_once_explicitly_without_wildcards():
    result = make(streams=3, engine="dms")
    rules = all_rules(result)
    selected = [(r["object-locator"]["schema-name"], r["object-locator"]["table-name"])
                for r in rules if r["rule-action"] == "explicit"]
    assert len(selected) == len(set(selected))
    assert set(selected) == {(t["schema"], t["name"]) for s in result["streams"] for t in s["tables"]}
    assert ("billing", "VatRates") in selected  # raw names, case kept, no quotes
    assert ("public", "shipments") not in selected
    assert ("public", "tracking_events") not in selected
    for r in rules:
        assert r["rule-type"] == "selection"
        assert r["rule-action"] in ("explicit", "exclude")
        assert "%" not in json.dumps(r["object-locator"])
        assert "filters" not in r
    for s in result["streams"]:
        ids = [r["rule-id"] for r in s["table_mapping"]["rules"]]
        assert ids == [str(i) for i in range(1, len(ids) + 1)]
        assert [r["rule-name"] for r in s["table_mapping"]["rules"]] == ids


def test_dms_excludes_inheritance_parents_in_every_mapping_with_their_children():
    result = make(streams=2, engine="dms", own_rows={20: False})
    assert "public.tracking_events" not in placement(result)
    assert [p["qualified"] for p in result["parents"]] == ["public.shipments", "public.tracking_events"]
    for s in result["streams"]:
        has_child = any(t["root"] == "public.tracking_events" for t in s["tables"])
        excludes = [r["object-locator"] for r in s["table_mapping"]["rules"] if r["rule-action"] == "exclude"]
        assert excludes == ([{"schema-name": "public", "table-name": "tracking[_]events"}] if has_child else [])
    assert not result["warnings"]


def test_dms_inheritance_parent_with_own_rows_is_not_replicated_and_warned():
    result = make(streams=2, engine="dms", own_rows={20: True})
    entry = [t for t in result["not_replicated"] if t["qualified"] == "public.tracking_events"][0]
    assert "separate path" in entry["reason"] and "ONLY" in entry["reason"]
    assert any("DMS reads inheritance parents including their children" in w and "public.tracking_events" in w
               for w in result["warnings"])


def test_dms_own_rows_unknown_goes_by_statistics():
    rels = shipping()
    rels[4]["est_rows"] = 12
    result = make(rels, engine="dms")
    assert any(t["qualified"] == "public.tracking_events" for t in result["not_replicated"])
    assert any("by its statistics" in w for w in result["warnings"])


def test_native_keeps_the_parent_with_only_and_its_mapping_still_excludes_it():
    result = make(streams=1, own_rows={20: True})
    s = result["streams"][0]
    assert [t["only"] for t in s["tables"] if t["name"] == "tracking_events"] == [True]
    explicit = [r["object-locator"]["table-name"] for r in s["table_mapping"]["rules"]
                if r["rule-action"] == "explicit"]
    assert "tracking_events" not in explicit
    assert {"schema-name": "public", "table-name": "tracking[_]events"} in [
        r["object-locator"] for r in s["table_mapping"]["rules"] if r["rule-action"] == "exclude"]


def test_exclude_rule_names_are_escaped_so_they_catch_the_parent_only():
    rels = [table("public", "ev_a", oid=1, has_children=True),
            table("public", "ev_1", parents=[1], oid=2),
            table("public", "ev2a", oid=3)]  # ev_a as a DMS pattern (_ is any one character) matches ev2a
    result = make(rels, engine="dms", streams=1, own_rows={1: False})
    rules = result["streams"][0]["table_mapping"]["rules"]
    assert [(r["rule-action"], r["object-locator"]) for r in rules] == [
        ("explicit", {"schema-name": "public", "table-name": "ev2a"}),
        ("explicit", {"schema-name": "public", "table-name": "ev_1"}),
        ("exclude", {"schema-name": "public", "table-name": "ev[_]a"})]
    assert not plan.dms_like("ev[_]a", "ev2a") and plan.dms_like("ev[_]a", "ev_a")
    assert not result["warnings"]


@pytest.mark.parametrize("pattern,name,expected", [
    ("shipments_2025_01", "shipments_2025_01", True),
    ("shipments_2025_01", "shipmentsX2025X01", True),
    ("shipments_2025_01", "shipments_2025_011", False),
    ("ship%", "shipments", True),
    ("a[_]b", "a_b", True),
    ("a[_]b", "axb", False),
    ("Vat.Rates", "VatXRates", False),
    ("VatRates", "vatrates", False),
])
def test_dms_like(pattern, name, expected):
    assert plan.dms_like(pattern, name) is expected


def test_dms_mappings_never_select_a_table_twice_across_many_plans():
    rels, rates = hot_month_partitions(n=9, hot=(2, 9))
    rels += shipping()
    for streams, engine in itertools.product((1, 2, 5), ("native", "dms")):
        result = make(rels, streams=streams, engine=engine, write_rates=rates)
        selected = [(r["object-locator"]["schema-name"], r["object-locator"]["table-name"])
                    for r in all_rules(result) if r["rule-action"] == "explicit"]
        assert len(selected) == len(set(selected))


# --- options -----------------------------------------------------------------------------------------------

def test_bad_engine_and_streams():
    with pytest.raises(plan.PlanError, match="engine"):
        make(engine="pglogical")
    with pytest.raises(plan.PlanError, match="streams must be 0"):
        make(streams=-1)


def test_totals():
    result = make(streams=2, write_rates={11: 3.0, 21: 1.5})
    totals = result["totals"]
    assert totals["streams"] == 2 and totals["tables"] == 8
    assert totals["not_replicated"] == 3 and totals["parents"] == 1
    assert totals["writes_per_second"] == 4.5
    assert totals["bytes"] == sum(s["bytes"] for s in result["streams"])
    assert totals["placed"] == 8 and totals["kept"] == 0


def test_split_hint_is_capped():
    pk = [dict(name="id", base_type="int8")]
    assert plan.split_hint(100 * GB, pk, GB) == ("id", plan.MAX_SPLIT)
    assert plan.split_hint(570 * 1024 ** 2, pk, 128 * 1024 ** 2) == ("id", 5)
    assert plan.split_hint(570 * 1024 ** 2, pk, GB) == ("id", 1)


def test_no_key_ranges_by_default():
    """Every table whole (COPY FREEZE) unless split_bytes asks for ranges."""
    pk = [dict(name="id", base_type="int8")]
    assert plan.DEFAULT_SPLIT_BYTES == 0
    assert plan.split_hint(100 * GB, pk, plan.DEFAULT_SPLIT_BYTES) == ("id", 1)
    rels = [table("public", "orders", oid=1, bytes_=3 * GB, rows=1000)]
    result = make(rels, streams=1, primary_keys={1: pk})
    assert [t["split"] for t in result["streams"][0]["tables"]] == [1]
    assert result["split_bytes"] == 0


# ----------------------------------------------------------- write rates since the assessment's reading ----

def counted(schema, name, oid, ins=0, upd=0, dele=0):
    t = table(schema, name, oid=oid)
    t.update(ins=ins, upd=upd, **{"del": dele})
    return t


def test_rates_since_reading_divides_the_writes_since_by_the_window():
    before = [counted("public", "hot", 1, ins=100, upd=50), counted("public", "cold", 2, ins=10),
              counted("Billing", "Mixed.Case", 3, dele=5)]
    reading = plan.write_counter_reading(before, taken_at=1000.0, stats_since=10.0, database="app")
    assert reading["tables"] == [["public", "hot", 150], ["public", "cold", 10], ["Billing", "Mixed.Case", 5]]
    reading = json.loads(json.dumps(reading))  # as kept in assessment.json and passed back through Ansible
    now = [counted("public", "hot", 1, ins=1100, upd=1050), counted("public", "cold", 2, ins=10),
           counted("Billing", "Mixed.Case", 3, dele=25), counted("public", "new_table", 4, ins=40)]
    rates, how = plan.rates_since_reading(reading, now, now=1100.0, stats_since=10.0, database="app")
    assert rates == {1: 20.0, 2: 0.0, 3: 0.2, 4: 0.4}
    assert "100s since the assessment" in how


@pytest.mark.parametrize("change, why", [
    (dict(database="other"), "of database other, not app"),
    (dict(stats_since=500.0), "reset or the server restarted"),
    (dict(now=1000.5), "only 0.5 s old"),
    (dict(now=900.0), "only 0.0 s old"),
    (dict(lower=True), "public.hot went down"),
])
def test_rates_since_reading_refuses_what_it_cannot_trust(change, why):
    reading = plan.write_counter_reading([counted("public", "hot", 1, ins=100)], 1000.0, 10.0, "app")
    if change.get("database"):
        reading["database"] = change["database"]
    now = [counted("public", "hot", 1, ins=50 if change.get("lower") else 200)]
    rates, reason = plan.rates_since_reading(reading, now, now=change.get("now", 1100.0),
                                             stats_since=change.get("stats_since", 10.0), database="app")
    assert rates is None
    assert why in reason


@pytest.mark.parametrize("reading", [None, {}, {"tables": "x"}, {"tables": [["a"]], "taken_at": 1, "stats_since": 1},
                                     {"tables": [], "taken_at": "soon", "stats_since": 1}])
def test_rates_since_reading_refuses_a_malformed_reading(reading):
    rates, reason = plan.rates_since_reading(reading, [counted("public", "hot", 1)], 2000.0, 10.0, "app")
    assert rates is None and reason


# --- names that need quoting ---------------------------------------------------------------------------------

OPS = "Shipping Ops"
ARCHIVE = 'eu.west "archive"'
LONG = "z" * 59 + "Zöl"  # 63 bytes


def hard_names():
    return [
        table(OPS, "order", relkind="p", oid=100, has_children=True, bytes_=0),
        table(OPS, "order 2025_01", is_partition=True, parents=[100], oid=101, bytes_=30 * MB),
        table(ARCHIVE, "order 2025_02", is_partition=True, parents=[100], oid=102, bytes_=20 * MB),
        table(ARCHIVE, "Zöll_Tarife", oid=103, bytes_=5 * MB, has_children=True, rows=0),
        table(ARCHIVE, "Zöll_Tarife_1", parents=[103], oid=104, bytes_=4 * MB),
        table("public", "50%_off", oid=105, bytes_=MB),
        table("public", "50x_off", oid=106, bytes_=MB),
        table("public", LONG, oid=107, bytes_=MB),
        table("eu", "west.order", oid=108, bytes_=MB),
        table("eu.west", "order", oid=109, bytes_=MB),
    ]


@pytest.mark.parametrize("name,escaped", [
    ("orders", "orders"), ("tracking_events", "tracking[_]events"), ("50%_off", "50[%][_]off"),
    ("a[b]", "a[[]b]"), (OPS, OPS), (ARCHIVE, ARCHIVE), ("Zöll_Tarife", "Zöll[_]Tarife"),
])
def test_dms_literal_escapes_every_dms_wildcard(name, escaped):
    assert plan.dms_literal(name) == escaped
    assert plan.dms_like(escaped, name)


@pytest.mark.parametrize("name,other", [
    ("50%_off", "50x_off"), ("50%_off", "50%%off"), ("50%_off", "50abc_off"), ("ev_a", "ev2a"), ("a[b]", "ab"),
    ("Zöll_Tarife", "ZöllxTarife"),
])
def test_dms_literal_matches_that_name_only(name, other):
    assert plan.dms_like(name, other)  # written as it is, the name is a pattern that catches the other one
    assert not plan.dms_like(plan.dms_literal(name), other)


def test_dms_mappings_carry_hard_names_raw_and_exclude_rules_escaped():
    result = make(hard_names(), engine="dms", streams=1, own_rows={103: False})
    rules = result["streams"][0]["table_mapping"]["rules"]
    explicit = [(r["object-locator"]["schema-name"], r["object-locator"]["table-name"])
                for r in rules if r["rule-action"] == "explicit"]
    assert explicit == sorted([(OPS, "order 2025_01"), (ARCHIVE, "order 2025_02"), (ARCHIVE, "Zöll_Tarife_1"),
                               ("public", "50%_off"), ("public", "50x_off"), ("public", LONG), ("eu", "west.order"),
                               ("eu.west", "order")])
    excludes = [r["object-locator"] for r in rules if r["rule-action"] == "exclude"]
    assert excludes == [{"schema-name": ARCHIVE, "table-name": "Zöll[_]Tarife"}]
    # the exclude rule, read the way DMS reads it, drops the parent and no selected table
    for schema, name in explicit:
        assert not (plan.dms_like(excludes[0]["schema-name"], schema) and plan.dms_like(excludes[0]["table-name"], name))
    assert plan.dms_like(excludes[0]["table-name"], "Zöll_Tarife")
    assert not result["warnings"]


def test_hard_names_keep_their_identity_through_the_plan():
    result = make(hard_names(), streams=3)
    tables = {(t["schema"], t["name"]): t for s in result["streams"] for t in s["tables"]}
    assert (OPS, "order") not in tables  # the partitioned parent: its leaves are planned
    leaf = tables[(ARCHIVE, "order 2025_02")]
    assert leaf["root"] == '"Shipping Ops"."order"'
    assert leaf["qualified"] == '"eu.west ""archive"""."order 2025_02"'
    assert tables[("eu.west", "order")]["qualified"] == '"eu.west"."order"'
    assert tables[("eu", "west.order")]["qualified"] == 'eu."west.order"'
    assert tables[(ARCHIVE, "Zöll_Tarife")]["only"] is True
    assert len(tables) == 9


def test_existing_assignment_reads_hard_names_and_the_plans_own_output():
    first = make(hard_names(), streams=2)
    existing = dict((t["qualified"], s["name"]) for s in first["streams"] for t in s["tables"])
    assert '"Shipping Ops"."order 2025_01"' in existing
    again = make(hard_names(), streams=2, existing=existing)
    assert placement(again) == placement(first)
    assert again["totals"]["kept"] == 9 and not again["warnings"]
    # a partitioned root named with quotes stands for its leaves, wherever they live
    pinned = make(hard_names(), streams=2, existing={'"Shipping Ops"."order"': "pgshift_shipping_s2"})
    assert stream_of(pinned, '"Shipping Ops"."order 2025_01"') == 2
    assert stream_of(pinned, '"eu.west ""archive"""."order 2025_02"') == 2
    # unquoted, the name folds to lower case and names no table: said, not guessed
    folded = make(hard_names(), streams=2, existing={"Shipping_Ops.Order": "pgshift_shipping_s1"})
    assert any(w.startswith('shipping_ops."order" is assigned to pgshift_shipping_s1') for w in folded["warnings"])


def test_existing_from_publications_keeps_schema_and_name_apart():
    numbers, entries = plan.existing_from_publications("shipping", ["pgshift_shipping_s1"], [
        dict(pubname="pgshift_shipping_s1", schemaname="eu.west", tablename="order"),
        dict(pubname="pgshift_shipping_s1", schemaname="eu", tablename="west.order")])
    assert numbers == {1}
    assigned, warnings = plan.resolve_existing(entries, scope.select(hard_names()),
                                               plan.classify_units(scope.select(hard_names()), "native")[0],
                                               "shipping")
    assert assigned == {109: 1, 108: 1} and warnings == []


def test_blocking_problems_name_hard_tables_quoted():
    rels = [table(OPS, "order", oid=1, has_pk=False, replident="d"),
            table(ARCHIVE, "Zöll_Tarife", oid=2, has_pk=False, replident="f")]
    with pytest.raises(plan.PlanError) as err:
        make(rels, engine="dms")
    text = str(err.value)
    assert '1 table(s) have neither a primary key nor a usable replica identity' in text
    assert '"Shipping Ops"."order"' in text
    assert '1 table(s) have no primary key' in text and '"eu.west ""archive"""."Zöll_Tarife"' in text


def test_write_counters_of_hard_names_match_by_schema_and_name():
    rels = [table("eu.west", "order", oid=1, writes=100), table("eu", "west.order", oid=2, writes=10)]
    reading = plan.write_counter_reading(rels, 1000.0, 10.0, "app")
    later = [table("eu.west", "order", oid=1, writes=300), table("eu", "west.order", oid=2, writes=10)]
    rates, how = plan.rates_since_reading(reading, later, 1100.0, 10.0, "app")
    assert rates == {1: 2.0, 2: 0.0}
    lower = [table("eu.west", "order", oid=1, writes=50), table("eu", "west.order", oid=2, writes=10)]
    rates, why = plan.rates_since_reading(reading, lower, 1100.0, 10.0, "app")
    assert rates is None and '"eu.west"."order" went down' in why
