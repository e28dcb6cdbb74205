"""DMS task settings over the recommended defaults (module_utils/dms_task_settings.py)."""

from __future__ import annotations

from ansible_collections.pgshift.aurora.plugins.module_utils import dms_task_settings


def test_lob_mode_from_the_assessment():
    assert dms_task_settings.lob_settings(None) == {"FullLobMode": True, "LimitedSizeLobMode": False, "LobChunkSize": 64}
    assert dms_task_settings.lob_settings(100.2) == {"FullLobMode": False, "LimitedSizeLobMode": True, "LobMaxSize": 101}
    assert dms_task_settings.lob_settings(0) == {"FullLobMode": False, "LimitedSizeLobMode": True, "LobMaxSize": 1}
    assert dms_task_settings.lob_settings(32) == {"FullLobMode": False, "LimitedSizeLobMode": True, "LobMaxSize": 32}


def test_settings_merge_over_recommended_defaults():
    merged = dms_task_settings.task_settings({"FullLoadSettings": {"MaxFullLoadSubTasks": 16}, "Logging": {"EnableLogging": False},
                                             "ChangeProcessingTuning": {"BatchApplyMemoryLimit": 500}}, 2048)
    assert merged["FullLoadSettings"] == {"TargetTablePrepMode": "DO_NOTHING", "MaxFullLoadSubTasks": 16}
    assert merged["Logging"] == {"EnableLogging": False}
    assert merged["ChangeProcessingTuning"] == {"BatchApplyMemoryLimit": 500}
    assert merged["TargetMetadata"] == {"SupportLobs": True, "FullLobMode": False, "LimitedSizeLobMode": True, "LobMaxSize": 2048}
    assert merged["ValidationSettings"]["EnableValidation"] is True
    # The user can still choose full LOB mode over the assessment.
    assert dms_task_settings.task_settings({"TargetMetadata": {"FullLobMode": True, "LimitedSizeLobMode": False}}, 10)["TargetMetadata"]["FullLobMode"]
    # The defaults themselves are never changed by a merge.
    assert dms_task_settings.RECOMMENDED_TASK_SETTINGS["FullLoadSettings"] == {"TargetTablePrepMode": "DO_NOTHING", "MaxFullLoadSubTasks": 8}


def test_user_set_settings_and_what_a_modification_sends():
    assert dms_task_settings.user_task_settings(None) == {}
    assert dms_task_settings.user_task_settings({"Logging": {"EnableLogging": False}}, 64) == {
        "TargetMetadata": {"FullLobMode": False, "LimitedSizeLobMode": True, "LobMaxSize": 64}, "Logging": {"EnableLogging": False}}
    have = {"Logging": {"EnableLogging": True, "CloudWatchLogGroup": "dms-tasks-ri", "CloudWatchLogStream": "dms-task-X",
                        "LogComponents": [{"Id": "SOURCE_UNLOAD", "Severity": "LOGGER_SEVERITY_DEFAULT"}]},
            "FullLoadSettings": {"TargetTablePrepMode": "DROP_AND_CREATE"}}
    sent = dms_task_settings.modify_settings(have, {"Logging": {"EnableLogging": False}})
    assert sent == {"Logging": {"EnableLogging": False, "LogComponents": [{"Id": "SOURCE_UNLOAD", "Severity": "LOGGER_SEVERITY_DEFAULT"}]},
                    "FullLoadSettings": {"TargetTablePrepMode": "DROP_AND_CREATE"}}
    assert have["Logging"]["CloudWatchLogGroup"] == "dms-tasks-ri"  # the described settings are not changed
