# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""AWS DMS decisions, pure: task settings over recommended defaults, drift, table mappings,
what to do to reach a state, wait conditions, failures and progress. No AWS call here."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re

# --------------------------------------------------------------------------------------------
# Task settings
# --------------------------------------------------------------------------------------------

# Recommended for PostgreSQL -> Aurora PostgreSQL when the schema is copied first (copy_schema phase).
RECOMMENDED_TASK_SETTINGS = {
    "FullLoadSettings": {
        # The schema (tables, without secondary indexes and constraints held back) already exists:
        # DMS must neither drop nor truncate it.
        "TargetTablePrepMode": "DO_NOTHING",
        "MaxFullLoadSubTasks": 8,
    },
    "TargetMetadata": {
        "SupportLobs": True,
    },
    "ValidationSettings": {
        "EnableValidation": True,
        "ThreadCount": 5,
    },
    "Logging": {
        "EnableLogging": True,
    },
    "ErrorBehavior": {
        "DataErrorPolicy": "LOG_ERROR",
        "TableErrorPolicy": "SUSPEND_TABLE",
        "FailOnNoTablesCaptured": True,
    },
}

DEFAULT_LOB_CHUNK_KB = 64


def lob_settings(lob_max_size_kb):
    """TargetMetadata LOB settings so that nothing is truncated.

    lob_max_size_kb: the largest LOB value in KiB (from the assessment), or None when unknown.
    Known: limited LOB mode with LobMaxSize at least that size (rounded up to a whole KiB, 1 at least).
    Unknown: full LOB mode (slower, never truncates).
    """
    if lob_max_size_kb is None:
        return {"FullLobMode": True, "LimitedSizeLobMode": False, "LobChunkSize": DEFAULT_LOB_CHUNK_KB}
    size = max(1, int(math.ceil(float(lob_max_size_kb))))
    return {"FullLobMode": False, "LimitedSizeLobMode": True, "LobMaxSize": size}


def deep_merge(base, over):
    """base with over merged in, recursively for dicts (neither argument is changed)."""
    out = copy.deepcopy(base)
    for key, value in (over or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def task_settings(user_settings, lob_max_size_kb=None):
    """The settings to send: recommended defaults, the LOB mode, then what the user set (the user wins)."""
    merged = deep_merge(RECOMMENDED_TASK_SETTINGS, {"TargetMetadata": lob_settings(lob_max_size_kb)})
    return deep_merge(merged, user_settings or {})


def user_task_settings(user_settings, lob_max_size_kb=None):
    """What the playbook itself sets: its task_settings, and the LOB mode when lob_max_size_kb is given.

    On an existing task only these are compared and changed: the recommended defaults apply when the
    task is created, and a task that only gets stopped or started keeps its settings.
    """
    lob = {"TargetMetadata": lob_settings(lob_max_size_kb)} if lob_max_size_kb is not None else {}
    return deep_merge(lob, user_settings or {})


# Set by DMS itself (the task's CloudWatch log group and stream): never sent back.
READ_ONLY_SETTINGS = (("Logging", "CloudWatchLogGroup"), ("Logging", "CloudWatchLogStream"))


def modify_settings(have, user_set):
    """The settings sent to modify_replication_task: the task's current ones with the user's over them,
    without the read-only ones, so nothing the playbook does not set changes whatever the API does with
    a partial document."""
    out = deep_merge(have or {}, user_set)
    for section, key in READ_ONLY_SETTINGS:
        if isinstance(out.get(section), dict):
            out[section].pop(key, None)
    return out


# --------------------------------------------------------------------------------------------
# Drift: only what we set, against what the service returns
# --------------------------------------------------------------------------------------------

def _scalar_equal(want, have):
    if isinstance(want, bool) or isinstance(have, bool):
        return str(want).lower() == str(have).lower()
    if isinstance(want, (int, float)) and not isinstance(want, bool):
        try:
            return float(want) == float(have)
        except (TypeError, ValueError):
            return False
    if want is None:
        return have is None
    return str(want) == str(have)


def drift(want, have, path=""):
    """Paths where want differs from have, looking only at the keys want sets.

    The service adds defaults (extra keys in have): that is no drift. Dicts recurse; lists of dicts
    compare element by element the same way (same length); numbers, booleans and their string forms
    compare by value.
    """
    diffs = []
    if isinstance(want, dict):
        if not isinstance(have, dict):
            return [path or "."]
        for key in sorted(want):
            sub = "%s.%s" % (path, key) if path else str(key)
            if key not in have:
                if want[key] is not None:
                    diffs.append(sub)
                continue
            diffs.extend(drift(want[key], have[key], sub))
        return diffs
    if isinstance(want, list):
        if not isinstance(have, list) or len(want) != len(have):
            return [path or "."]
        for i, (w, h) in enumerate(zip(want, have)):
            diffs.extend(drift(w, h, "%s[%d]" % (path, i)))
        return diffs
    return [] if _scalar_equal(want, have) else [path or "."]


def parse_json(value, what):
    """A dict from a dict or a JSON string; ValueError naming what on bad JSON."""
    if value is None or value == "":
        return None
    if isinstance(value, dict):
        return value
    try:
        parsed = json.loads(value)
    except (TypeError, ValueError) as exc:
        raise ValueError("%s is not valid JSON: %s" % (what, exc))
    if not isinstance(parsed, dict):
        raise ValueError("%s must be a JSON object, not %s" % (what, type(parsed).__name__))
    return parsed


# --------------------------------------------------------------------------------------------
# Table mappings
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Keys: snake_case options -> API names
# --------------------------------------------------------------------------------------------

POSTGRES_SETTINGS_KEYS = {
    "after_connect_script": "AfterConnectScript",
    "babelfish_database_name": "BabelfishDatabaseName",
    "capture_ddls": "CaptureDdls",
    "database_mode": "DatabaseMode",
    "ddl_artifacts_schema": "DdlArtifactsSchema",
    "disable_unicode_source_filter": "DisableUnicodeSourceFilter",
    "execute_timeout": "ExecuteTimeout",
    "fail_tasks_on_lob_truncation": "FailTasksOnLobTruncation",
    "heartbeat_enable": "HeartbeatEnable",
    "heartbeat_frequency": "HeartbeatFrequency",
    "heartbeat_schema": "HeartbeatSchema",
    "map_boolean_as_boolean": "MapBooleanAsBoolean",
    "map_jsonb_as_clob": "MapJsonbAsClob",
    "map_long_varchar_as": "MapLongVarcharAs",
    "max_file_size": "MaxFileSize",
    "plugin_name": "PluginName",
    "slot_name": "SlotName",
    "trim_space_in_char": "TrimSpaceInChar",
}


def snake_to_camel(key):
    return "".join(part[:1].upper() + part[1:] for part in key.split("_"))


def postgres_settings(options, session_replication_role=None):
    """PostgreSQLSettings from the snake_case option (unknown keys CamelCased), with the after-connect
    script that sets session_replication_role when asked."""
    out = {}
    for key, value in (options or {}).items():
        if value is None:
            continue
        out[POSTGRES_SETTINGS_KEYS.get(key, snake_to_camel(key))] = value
    if session_replication_role:
        stmt = "SET session_replication_role = %s" % session_replication_role
        script = out.get("AfterConnectScript")
        if not script:
            out["AfterConnectScript"] = stmt
        elif stmt.lower() not in script.lower():
            out["AfterConnectScript"] = script.rstrip().rstrip(";") + "; " + stmt
    return out


def tag_changes(want, have, purge=True):
    """(tags to add or change, keys to remove) to go from have to want; want None leaves tags alone."""
    if want is None:
        return {}, []
    want = dict((str(k), str(v)) for k, v in want.items())
    add = dict((k, v) for k, v in want.items() if have.get(k) != v)
    remove = sorted(k for k in have if k not in want and not k.startswith("aws:")) if purge else []
    return add, remove


# --------------------------------------------------------------------------------------------
# Task states
# --------------------------------------------------------------------------------------------

BUSY = ("creating", "modifying", "deleting", "moving", "testing", "starting", "stopping")
ACTIVE = ("running", "starting")
STARTABLE = ("ready", "stopped", "failed")
FAILED_STOP = re.compile(r"ERROR|LOW_MEMORY|LOW_DISK", re.I)


def ever_started(task):
    stats = task.get("ReplicationTaskStats") or {}
    return bool(task.get("ReplicationTaskStartDate") or stats.get("StartDate") or stats.get("FreshStartDate")
                or task.get("Status") in ("running", "stopping", "stopped", "failed"))


def start_type(task, requested):
    """The StartReplicationTaskType: the user's, else start-replication the first time, resume-processing after."""
    if requested:
        return requested
    return "resume-processing" if ever_started(task) else "start-replication"


def task_steps(task, state, modify_needed):
    """The steps to reach state from task (None: the task does not exist), in order.

    Steps: create, stop, modify, start, delete. A change to a running task is stop, modify, start
    (resume-processing). state is present | running | stopped | absent.
    """
    if state == "absent":
        if task is None:
            return []
        return (["stop"] if task.get("Status") in ACTIVE else []) + ["delete"]
    if task is None:
        return ["create", "start"] if state == "running" else ["create"]
    status = task.get("Status")
    active = status in ACTIVE
    steps = []
    if modify_needed:
        if active:
            steps.append("stop")
        steps.append("modify")
        if state == "running" or (state == "present" and active):
            steps.append("start")
        return steps
    if state == "running" and not active:
        steps.append("start")
    elif state == "stopped" and active:
        steps.append("stop")
    return steps


def task_failure(task):
    """The failure message of a failed task (status failed, or stopped with an error), else None."""
    status = task.get("Status")
    reason = task.get("StopReason") or ""
    last = task.get("LastFailureMessage") or ""
    if status == "failed" or (status == "stopped" and FAILED_STOP.search(reason)):
        return "replication task %s is %s: %s%s" % (
            task.get("ReplicationTaskIdentifier"), status, last or "(no LastFailureMessage)",
            " [%s]" % reason if reason else "")
    return None


def failure_advice(task, instance_id):
    return ("look at the CloudWatch log group dms-tasks-%s (stream dms-task-<task resource id>) and the task's "
            "table statistics; fix the cause and run again with state=running (resume-processing), or "
            "start_type=reload-target to load again" % (instance_id or "<replication instance>"))


def full_load_done(task):
    stats = task.get("ReplicationTaskStats") or {}
    status = (task.get("Status") or "").lower()
    if "load complete" in status:  # the console's "Load complete, replication ongoing"
        return True
    if task.get("MigrationType") == "cdc":
        return status == "running"
    loaded = (stats.get("FullLoadProgressPercent") == 100 and not stats.get("TablesLoading")
              and not stats.get("TablesQueued"))
    if task.get("MigrationType") == "full-load":
        return status == "stopped" and loaded and not task_failure(task)
    return status == "running" and loaded


def wait_verdict(condition, task):
    """For poll(): 'ok' when condition holds, 'failed' when the task failed, None to keep waiting.

    A task that does not exist (None) is 'ok' for absent, 'gone' otherwise. 'settled' (used between the
    module's own calls) only waits for the task to be neither creating, modifying, starting, stopping nor
    deleting, without failing on an earlier failure: a failed task must stay modifiable and restartable.
    """
    if condition == "absent":
        return "ok" if task is None else None
    if task is None:
        return "gone"
    status = task.get("Status")
    if condition == "settled":  # internal: nothing in progress, an earlier failure notwithstanding
        return "ok" if status not in BUSY else None
    if task_failure(task):
        return "failed"
    if condition == "ready":
        return "ok" if status not in BUSY else None
    if condition == "running":
        return "ok" if status == "running" else None
    if condition == "stopped":  # a task never started (ready) does not run either
        return "ok" if status in ("stopped", "ready") else None
    if condition == "full_load_complete":
        if (task.get("ReplicationTaskStats") or {}).get("TablesErrored"):
            return "failed"
        return "ok" if full_load_done(task) else None
    raise ValueError("unknown wait condition %s" % condition)


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------

LOADED_STATES = ("table completed",)
LOADING_STATES = ("full load", "before load", "table loading")
ERRORED_STATES = ("table error", "table cancelled", "error")


def table_row(stat):
    return {
        "schema": stat.get("SchemaName"),
        "table": stat.get("TableName"),
        "state": stat.get("TableState"),
        "full_load_rows": stat.get("FullLoadRows", 0),
        "full_load_error_rows": stat.get("FullLoadErrorRows", 0),
        "inserts": stat.get("Inserts", 0),
        "updates": stat.get("Updates", 0),
        "deletes": stat.get("Deletes", 0),
        "ddls": stat.get("Ddls", 0),
        "validation_state": stat.get("ValidationState"),
        "validation_failed_records": stat.get("ValidationFailedRecords", 0),
        "validation_pending_records": stat.get("ValidationPendingRecords", 0),
    }


def progress(rows, task):
    """tables_total/loaded/loading/errored, full_load_rows and percent: from the table statistics when there
    are any, else from the task's ReplicationTaskStats."""
    stats = task.get("ReplicationTaskStats") or {} if task else {}
    if rows:
        states = [(r.get("state") or "").lower() for r in rows]
        loaded = sum(1 for s in states if s in LOADED_STATES)
        errored = sum(1 for s in states if s in ERRORED_STATES)
        loading = sum(1 for s in states if s in LOADING_STATES)
        total = len(rows)
        percent = stats.get("FullLoadProgressPercent")
        if percent is None:
            percent = int(100 * loaded / total) if total else 0
        return dict(tables_total=total, tables_loaded=loaded, tables_loading=loading, tables_errored=errored,
                    full_load_rows=sum(int(r.get("full_load_rows") or 0) for r in rows), percent=percent)
    loaded = stats.get("TablesLoaded") or 0
    loading = (stats.get("TablesLoading") or 0) + (stats.get("TablesQueued") or 0)
    errored = stats.get("TablesErrored") or 0
    return dict(tables_total=loaded + loading + errored, tables_loaded=loaded, tables_loading=loading,
                tables_errored=errored, full_load_rows=None, percent=stats.get("FullLoadProgressPercent") or 0)


def progress_line(task_id, status, prog, latency):
    lat = ""
    if latency and latency.get("target_seconds") is not None:
        lat = ", CDC latency source %ss target %ss" % (latency.get("source_seconds"), latency.get("target_seconds"))
    return "%s: %s, %s%% (%s/%s tables loaded, %s loading, %s errored)%s" % (
        task_id, status, prog["percent"], prog["tables_loaded"], prog["tables_total"], prog["tables_loading"],
        prog["tables_errored"], lat)


def max_latency(latencies):
    values = [v for lat in latencies if lat for v in lat.values() if v is not None]
    return max(values) if values else None


# --------------------------------------------------------------------------------------------
# Replication instance and endpoint changes
# --------------------------------------------------------------------------------------------

def instance_changes(want, have):
    """(modify_replication_instance arguments, names of settings that cannot change in place).

    want: the module's options (None = not set); have: the described ReplicationInstance.
    """
    modify = {}
    fixed = []
    if want.get("instance_class") and want["instance_class"] != have.get("ReplicationInstanceClass"):
        modify["ReplicationInstanceClass"] = want["instance_class"]
    if want.get("allocated_storage") is not None and int(want["allocated_storage"]) != int(have.get("AllocatedStorage") or 0):
        modify["AllocatedStorage"] = int(want["allocated_storage"])
    if want.get("engine_version") and want["engine_version"] != have.get("EngineVersion"):
        modify["EngineVersion"] = want["engine_version"]
        modify["AllowMajorVersionUpgrade"] = (want["engine_version"].split(".", maxsplit=1)[0]
                                              != str(have.get("EngineVersion") or "").split(".", maxsplit=1)[0])
    if want.get("multi_az") is not None and bool(want["multi_az"]) != bool(have.get("MultiAZ")):
        modify["MultiAZ"] = bool(want["multi_az"])
    if want.get("vpc_security_group_ids") is not None:
        current = sorted(g.get("VpcSecurityGroupId") for g in have.get("VpcSecurityGroups") or [])
        if sorted(want["vpc_security_group_ids"]) != current:
            modify["VpcSecurityGroupIds"] = list(want["vpc_security_group_ids"])
    if want.get("preferred_maintenance_window") and want["preferred_maintenance_window"] != have.get("PreferredMaintenanceWindow"):
        modify["PreferredMaintenanceWindow"] = want["preferred_maintenance_window"]
    subnet = (have.get("ReplicationSubnetGroup") or {}).get("ReplicationSubnetGroupIdentifier")
    if want.get("subnet_group") and want["subnet_group"] != subnet:
        fixed.append("subnet_group")
    if want.get("publicly_accessible") is not None and bool(want["publicly_accessible"]) != bool(have.get("PubliclyAccessible")):
        fixed.append("publicly_accessible")
    if want.get("kms_key_id") and not str(have.get("KmsKeyId") or "").endswith(want["kms_key_id"]):
        fixed.append("kms_key_id")
    if want.get("availability_zone") and want["availability_zone"] != have.get("AvailabilityZone"):
        fixed.append("availability_zone")
    return modify, fixed


def endpoint_changes(want, have):
    """modify_endpoint arguments for what differs between want (create_endpoint arguments without
    identifier, tags nor password) and have (the described Endpoint); PostgreSQLSettings compared key by key."""
    modify = {}
    for key, value in want.items():
        if value is None or key in ("EndpointIdentifier", "Tags", "Password"):
            continue
        if key == "PostgreSQLSettings":
            if drift(value, have.get("PostgreSQLSettings") or {}):
                modify[key] = value
        elif drift(value, have.get(key)):
            modify[key] = value
    return modify


def to_json(value):
    """The JSON string sent to the API (stable key order, so the same input sends the same text)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


# --------------------------------------------------------------------------------------------
# Endpoint TLS: never weaker than what the controller's libpq connection asks for
# --------------------------------------------------------------------------------------------

DMS_SSL_MODES = ("none", "require", "verify-ca", "verify-full")
LIBPQ_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
VERIFYING = ("verify-ca", "verify-full")
# libpq sslmode -> DMS SslMode. allow and prefer become require: against a server that requires TLS (RDS with
# rds.force_ssl, Aurora) libpq ends up encrypted, and DMS's none would not be. disable has no mapping: TLS off
# must be asked for explicitly (ssl_mode none).
LIBPQ_TO_DMS = {"allow": "require", "prefer": "require", "require": "require",
                "verify-ca": "verify-ca", "verify-full": "verify-full"}


class TlsError(ValueError):
    """The endpoint's TLS settings cannot be decided; the message says what to set."""


def endpoint_tls(endpoint, ssl_mode=None, libpq_sslmode=None, certificate_arn=None):
    """(SslMode, CertificateArn, warnings) of a DMS endpoint, or TlsError.

    ssl_mode: DMS's mode asked for explicitly (the inventory's dms_ssl_mode), wins when set, none included.
    libpq_sslmode: the mode the controller connects to that database with (db_sslmode); mapped by LIBPQ_TO_DMS.
    Neither: require. verify-ca / verify-full need certificate_arn; the certificate is sent as given.
    """
    warnings = []
    if ssl_mode:
        if ssl_mode not in DMS_SSL_MODES:
            raise TlsError("endpoint %s: ssl_mode %s is not one of %s" % (endpoint, ssl_mode, ", ".join(DMS_SSL_MODES)))
        mode = ssl_mode
        if mode == "none" and libpq_sslmode and libpq_sslmode != "disable":
            warnings.append("endpoint %s: DMS connects without TLS (ssl_mode none) although the database is reached "
                            "with sslmode %s" % (endpoint, libpq_sslmode))
    elif libpq_sslmode:
        if libpq_sslmode not in LIBPQ_SSL_MODES:
            raise TlsError("endpoint %s: sslmode %s is not one of %s" % (endpoint, libpq_sslmode,
                                                                         ", ".join(LIBPQ_SSL_MODES)))
        if libpq_sslmode == "disable":
            raise TlsError("endpoint %s: the database's sslmode is disable, and a DMS endpoint never drops TLS "
                           "silently: set ssl_mode none to connect DMS without TLS (replicate role: dms_ssl_mode: none "
                           "in the inventory), or give the database a TLS sslmode (require, verify-full)" % endpoint)
        mode = LIBPQ_TO_DMS[libpq_sslmode]
    else:
        mode = "require"
    if mode in VERIFYING and not certificate_arn:
        raise TlsError("endpoint %s: ssl_mode %s needs certificate_arn, the DMS certificate of the server's CA (import "
                       "the CA bundle with aws dms import-certificate or pgshift.aurora.dms_certificate; replicate "
                       "role: dms_certificate_arn, or db_sslrootcert, which it imports itself), or use ssl_mode "
                       "require (dms_ssl_mode: require)" % (endpoint, mode))
    return mode, certificate_arn or None, warnings


CERTIFICATE_FINGERPRINT_CHARS = 16
_CERTIFICATE_ID = re.compile(r"^[A-Za-z](?:-?[A-Za-z0-9])*$")


def normalise_pem(pem):
    """The PEM text with line endings and surrounding blanks normalised (what the fingerprint covers)."""
    lines = [line.strip() for line in str(pem).replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return "\n".join(line for line in lines if line) + "\n"


def pem_problem(pem):
    """None for PEM text holding at least one certificate, else what is wrong with it."""
    text = normalise_pem(pem)
    begin = text.count("-----BEGIN CERTIFICATE-----")
    if not begin:
        return "no -----BEGIN CERTIFICATE----- block"
    if begin != text.count("-----END CERTIFICATE-----"):
        return "a certificate block is not closed (-----END CERTIFICATE-----)"
    if "PRIVATE KEY-----" in text:
        return "it holds a private key: give the CA certificate(s) only"
    return None


def certificate_identifier(prefix, pem):
    """prefix + the first characters of the PEM's SHA-256: the same bundle gets the same name, another bundle another.

    DMS certificates cannot be modified: a changed CA bundle is imported under a new name.
    """
    digest = hashlib.sha256(normalise_pem(pem).encode("utf-8")).hexdigest()[:CERTIFICATE_FINGERPRINT_CHARS]
    ident = "%s%s" % (prefix, digest)
    problem = certificate_identifier_problem(ident)
    if problem:
        raise ValueError("identifier_prefix %s: %s" % (prefix, problem))
    return ident


def certificate_identifier_problem(ident):
    """None for a valid DMS certificate identifier, else why not (DMS's rules)."""
    if not ident or len(ident) > 255:
        return "a certificate identifier has 1 to 255 characters"
    if not _CERTIFICATE_ID.match(ident):
        return ("a certificate identifier starts with a letter, has only letters, digits and hyphens, no two hyphens in a "
                "row and does not end with a hyphen")
    return None


def certificates_of_prefix(certificates, prefix):
    """The certificates named prefix + a fingerprint (certificate_identifier), as DescribeCertificates lists them."""
    pattern = re.compile("^%s[0-9a-f]{%d}$" % (re.escape(prefix), CERTIFICATE_FINGERPRINT_CHARS))
    return [c for c in certificates if pattern.match(c.get("CertificateIdentifier") or "")]
