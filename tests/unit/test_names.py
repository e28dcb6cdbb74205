"""names.py: the names of what pgshift creates."""

from __future__ import annotations

from ansible_collections.pgshift.aurora.plugins.module_utils import names


def test_stream_names_of_one_migration_in_order():
    found = ["pgshift_app_s10", "pgshift_app_s2", "pgshift_app_s2_s1", "pgshift_other_s1", "pgshift_app_s1",
             "pgshift_app_sx", "pgshift_app_s1", "pgshift_app_s0"]
    assert names.stream_names(found, "app") == ["pgshift_app_s1", "pgshift_app_s2", "pgshift_app_s10"]
    assert names.stream_names(found, "app_s2") == ["pgshift_app_s2_s1"]


def test_prefix_reverse_and_validity():
    assert names.stream_prefix("orders") == "pgshift_orders_s"
    assert names.stream_name("orders", 4) == "pgshift_orders_s4"
    assert names.reverse_name("orders") == "pgshift_orders_r1"
    assert names.stream_number("orders", names.reverse_name("orders")) is None
    assert names.valid_migration_name("orders_2026")
    for bad in ("Orders", "", "a" * 41, "a-b", None, 3):
        assert not names.valid_migration_name(bad)
