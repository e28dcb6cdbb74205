"""What is set against what an AWS service describes (module_utils/drift.py)."""

from __future__ import annotations

import pytest

from ansible_collections.pgshift.aurora.plugins.module_utils import dms_task_settings
from ansible_collections.pgshift.aurora.plugins.module_utils import drift


def test_drift_ignores_what_the_service_adds():
    want = dms_task_settings.task_settings(None, 512)
    have = drift.deep_merge({"TargetMetadata": {"TargetSchema": "", "ParallelLoadThreads": 0},
                            "ChangeProcessingTuning": {"CommitTimeout": 1}}, want)
    assert drift.drift(want, have) == []
    have["Logging"]["EnableLogging"] = False
    have["TargetMetadata"]["LobMaxSize"] = 256
    assert drift.drift(want, have) == ["Logging.EnableLogging", "TargetMetadata.LobMaxSize"]
    del have["ValidationSettings"]
    assert "ValidationSettings" in drift.drift(want, have)


def test_drift_compares_values_not_spellings():
    assert drift.drift({"a": True, "b": 5, "c": "x"}, {"a": "true", "b": "5", "c": "x"}) == []
    assert drift.drift({"a": 5}, {"a": 5.0}) == []
    assert drift.drift({"a": 5}, {"a": "five"}) == ["a"]
    assert drift.drift({"a": False}, {"a": True}) == ["a"]
    assert drift.drift({"a": None}, {}) == []
    assert drift.drift({"l": [{"Id": "X", "Severity": "S"}]}, {"l": [{"Id": "X", "Severity": "S", "Extra": 1}]}) == []
    assert drift.drift({"l": [1, 2]}, {"l": [1]}) == ["l"]
    assert drift.drift({"d": {"x": 1}}, {"d": "flat"}) == ["d"]


def test_parse_json():
    assert drift.parse_json('{"a": 1}', "x") == {"a": 1}
    assert drift.parse_json({"a": 1}, "x") == {"a": 1}
    assert drift.parse_json("", "x") is None
    with pytest.raises(ValueError, match="x is not valid JSON"):
        drift.parse_json("{", "x")
    with pytest.raises(ValueError, match="x must be a JSON object, not list"):
        drift.parse_json("[1]", "x")


def test_tag_changes():
    assert drift.tag_changes(None, {"a": "1"}) == ({}, [])
    assert drift.tag_changes({"a": 1, "b": "2"}, {"a": "1", "c": "3", "aws:x": "y"}) == ({"b": "2"}, ["c"])
    assert drift.tag_changes({"a": "2"}, {"a": "1", "c": "3"}, purge=False) == ({"a": "2"}, [])
