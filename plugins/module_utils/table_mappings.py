# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""DMS table mappings, pure: canonical form, checks DMS would refuse, drift rule by rule, selection rules."""

from __future__ import annotations

import copy

from ansible_collections.pgshift.aurora.plugins.module_utils.drift import drift, parse_json


def normalise_table_mappings(mappings):
    """Canonical table mappings: rule-id and rule-name as strings, rules in rule-id order.

    Raises ValueError with a clear message for a mapping DMS would refuse.
    """
    data = copy.deepcopy(parse_json(mappings, "table_mappings"))
    if not data or not isinstance(data.get("rules"), list) or not data["rules"]:
        raise ValueError("table_mappings must hold a non-empty 'rules' list (the plan's per-stream selection rules)")
    seen = set()
    for i, rule in enumerate(data["rules"]):
        if not isinstance(rule, dict):
            raise ValueError("table_mappings rule %d is not an object" % (i + 1))
        if "rule-type" not in rule:
            raise ValueError("table_mappings rule %d has no rule-type" % (i + 1))
        if rule["rule-type"] in ("selection", "transformation") and "rule-action" not in rule:
            raise ValueError("table_mappings rule %d has no rule-action" % (i + 1))
        rule.setdefault("rule-id", str(i + 1))
        rule.setdefault("rule-name", str(rule["rule-id"]))
        rule["rule-id"] = str(rule["rule-id"])
        rule["rule-name"] = str(rule["rule-name"])
        if rule["rule-name"] in seen:
            raise ValueError("table_mappings has two rules named %s" % rule["rule-name"])
        seen.add(rule["rule-name"])
    data["rules"].sort(key=lambda r: (int(r["rule-id"]) if r["rule-id"].isdigit() else float("inf"), r["rule-id"]))
    return data


def mappings_drift(want, have):
    """Paths where the task's mappings differ from the wanted ones, rule by rule (matched by rule-name).

    want is normalised; have is what the service returns (it may add keys such as filters: []).
    """
    try:
        have = normalise_table_mappings(have)
    except ValueError:
        return ["rules"]
    by_name = dict((r["rule-name"], r) for r in have["rules"])
    diffs = []
    if len(by_name) != len(want["rules"]):
        diffs.append("rules")
    for rule in want["rules"]:
        other = by_name.get(rule["rule-name"])
        if other is None:
            diffs.append("rules[%s]" % rule["rule-name"])
            continue
        for path in drift(rule, other):
            diffs.append("rules[%s].%s" % (rule["rule-name"], path))
    return sorted(set(diffs))


def selection_rule(rule_id, schema, table, action="include", filters=None):
    """One selection rule (helper for callers building mappings from the plan)."""
    rule = {"rule-type": "selection", "rule-id": str(rule_id), "rule-name": str(rule_id),
            "object-locator": {"schema-name": schema, "table-name": table}, "rule-action": action}
    if filters:
        rule["filters"] = filters
    return rule
