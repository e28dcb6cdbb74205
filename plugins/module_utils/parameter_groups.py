# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""RDS and Aurora parameter groups, pure: which values to change, how each change applies, when a reboot is
done. The calls are in _aws/rds.py; pg_logical_prereqs (fix mode) and rds_parameter_group both decide here."""

from __future__ import annotations

# Static parameters: a change waits for the next reboot (used when the API does not say, e.g. a stand-in).
STATIC_PARAMETERS = ("rds.logical_replication", "max_replication_slots", "max_wal_senders",
                     "max_worker_processes", "max_logical_replication_workers", "shared_preload_libraries")
MAX_PARAMETERS_PER_CALL = 20


def desired_parameters(role_settings):
    """Parameter-group values for logical replication from the settings fix mode wants.

    role_settings: {setting name: value} as prereqs.desired_settings returns;
    wal_level maps to rds.logical_replication = 1 (RDS has no wal_level parameter).
    """
    desired = {}
    for name, value in role_settings.items():
        if name == "wal_level":
            desired["rds.logical_replication"] = "1"
        else:
            desired[name] = str(value)
    return desired


def is_default_group(name):
    """A default.* group cannot be modified."""
    return bool(name) and name.startswith("default.")


def normalise_value(value):
    """The API's string form of a YAML value: booleans as 1/0, numbers as digits."""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def apply_method_for(name, described):
    """pending-reboot for a static parameter (ApplyType from the API, else the known static list), else immediate."""
    apply_type = (described or {}).get("apply_type")
    if apply_type:
        return "pending-reboot" if apply_type == "static" else "immediate"
    return "pending-reboot" if name in STATIC_PARAMETERS else "immediate"


def compare_parameters(existing, desired):
    """(to_change, refused) to bring a parameter group's values to desired.

    existing: {name: {value, apply_type, modifiable}} as _aws/rds.describe_parameters returns (a parameter
    absent, or without a value, is at the engine default: that counts as different, the desired values being
    decided from the live settings already); desired: {name: value}.
    to_change: the modify_db_(cluster_)parameter_group entries, by name, only for values that differ.
    refused: one message per differing parameter the group lists as not modifiable (not a change).
    """
    to_change, refused = [], []
    for name in sorted(desired):
        want = normalise_value(desired[name])
        current = existing.get(name)
        if current is not None and current.get("value") is not None and str(current["value"]) == want:
            continue
        if current is not None and current.get("modifiable") is False:
            refused.append("parameter %s cannot be modified (it is %r, %r wanted)" % (name, current.get("value"), want))
            continue
        to_change.append(dict(ParameterName=name, ParameterValue=want, ApplyMethod=apply_method_for(name, current)))
    return to_change, refused


def reboot_pending(changes):
    """Whether one of the changes waits for a reboot of the instances."""
    return any(c["ApplyMethod"] == "pending-reboot" for c in changes)


def reboot_done(inst):
    """After a reboot: the instance is available and its parameter group no longer waits for a reboot."""
    return inst["status"] == "available" and inst["apply_status"] != "pending-reboot"
