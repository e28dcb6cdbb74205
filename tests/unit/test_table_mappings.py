"""DMS table mappings (module_utils/table_mappings.py)."""

from __future__ import annotations

import json

import pytest

from ansible_collections.pgshift.aurora.plugins.module_utils import table_mappings


RULES = [table_mappings.selection_rule(2, "public", "items"), table_mappings.selection_rule(1, "public", "orders"),
         {"rule-type": "transformation", "rule-id": 10, "rule-action": "rename", "rule-target": "schema",
          "object-locator": {"schema-name": "public"}, "value": "app"}]


def test_normalise_table_mappings():
    norm = table_mappings.normalise_table_mappings(json.dumps({"rules": RULES}))
    assert [r["rule-id"] for r in norm["rules"]] == ["1", "2", "10"]
    assert norm["rules"][2]["rule-name"] == "10"
    assert RULES[2]["rule-id"] == 10  # the input is not changed
    with pytest.raises(ValueError, match="non-empty 'rules'"):
        table_mappings.normalise_table_mappings({"rules": []})
    with pytest.raises(ValueError, match="rule 1 has no rule-action"):
        table_mappings.normalise_table_mappings({"rules": [{"rule-type": "selection"}]})
    with pytest.raises(ValueError, match="two rules named a"):
        table_mappings.normalise_table_mappings({"rules": [dict(RULES[0], **{"rule-name": "a"}), dict(RULES[1], **{"rule-name": "a"})]})


def test_mappings_drift_rule_by_rule():
    want = table_mappings.normalise_table_mappings({"rules": RULES})
    # The service returns its own order, string ids and an added "filters": [].
    have = {"rules": [dict(r, **{"filters": []}) for r in reversed(table_mappings.normalise_table_mappings({"rules": RULES})["rules"])]}
    assert table_mappings.mappings_drift(want, json.dumps(have)) == []
    have["rules"][0]["value"] = "other"
    assert table_mappings.mappings_drift(want, have) == ["rules[10].value"]
    assert table_mappings.mappings_drift(want, {"rules": have["rules"][1:]}) == ["rules", "rules[10]"]
    assert table_mappings.mappings_drift(want, "not json") == ["rules"]


def test_plan_mappings_and_table_settings_rules_are_accepted():
    from ansible_collections.pgshift.aurora.plugins.module_utils import plan

    tables = [dict(schema="public", name="orders", qualified="public.orders"),
              dict(schema="sales", name="shipments_2025_01", qualified="sales.shipments_2025_01")]
    mapping = plan.table_mapping(tables, [dict(schema="sales", name="legacy", qualified="sales.legacy")])
    parallel = {"rule-type": "table-settings", "rule-id": "100", "rule-name": "split-orders",
                "object-locator": {"schema-name": "public", "table-name": "orders"},
                "parallel-load": {"type": "ranges", "columns": ["id"], "boundaries": [["1000000"]]}}
    norm = table_mappings.normalise_table_mappings({"rules": mapping["rules"] + [parallel]})
    assert [(r["rule-name"], r.get("rule-action")) for r in norm["rules"]] == [
        ("1", "explicit"), ("2", "explicit"), ("3", "exclude"), ("split-orders", None)]
    assert table_mappings.mappings_drift(norm, json.dumps(norm)) == []
