# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_replication_plan's orchestration: read the source's relations, keys, write rates and existing publications
(_pg/catalog.py) -> decide the streams (plan.build_plan). It changes nothing.
"""

from __future__ import annotations

import traceback

from ansible_collections.pgshift.aurora.plugins.module_utils import plan, prereqs, scope
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import catalog
from ansible_collections.pgshift.aurora.plugins.module_utils.runners import end_with
from ansible_collections.pgshift.aurora.plugins.module_utils._pg.connection import (
    PgConnectError, connect, postgres_argument_spec, scrub)


def argument_spec():
    spec = postgres_argument_spec()
    spec.update(
        migration_name=dict(type="str", required=True),
        engine=dict(type="str", default="native", choices=["native", "dms"]),
        streams=dict(type="int", default=0),
        vcpus=dict(type="int"),
        existing=dict(type="dict", default={}),
        allow_no_pk_dms=dict(type="bool", default=False),
        split_bytes=dict(type="int", default=plan.DEFAULT_SPLIT_BYTES),
        load_rate_bytes_per_second=dict(type="int", default=plan.DEFAULT_LOAD_RATE),
        write_rate_sample_seconds=dict(type="float", default=0),
        write_counters=dict(type="dict"),
    )
    spec.update(scope.filter_argument_spec())
    return spec


def validate(p):
    """Bad input fails before connecting."""
    problems = []
    try:
        plan.validate_migration_name(p["migration_name"])
    except plan.PlanError as exc:
        problems.append(str(exc))
    if p["streams"] < 0:
        problems.append("streams must be 0 (automatic) or a number of streams from 1 (got %d)" % p["streams"])
    problems.extend(prereqs.vcpus_problems(p["vcpus"]))
    if p["split_bytes"] < 0:
        problems.append("split_bytes must be 0 (no key ranges) or a size in bytes (got %d)" % p["split_bytes"])
    if p["load_rate_bytes_per_second"] <= 0:
        problems.append("load_rate_bytes_per_second must be above 0")
    problems.extend(scope.filter_problems(scope.filters_from(p)))
    return problems


class ReplicationPlan:
    """One run of pg_replication_plan: read the source (_pg/catalog.py), decide (plan.build_plan)."""

    def __init__(self, params):
        self.p = params
        self.secrets = [params.get("login_password")]
        self.filters = scope.filters_from(self.p)
        self.filter_warnings = []

    def write_rates(self, conn, tables):
        db = catalog.database_facts(conn) or {}
        replicated = prereqs.replicated_tables(tables)
        why = None
        if self.p["write_counters"]:
            rates, how = plan.rates_since_reading(self.p["write_counters"], replicated, db.get("clock_epoch"),
                                                  db.get("stats_since_epoch"), db.get("name"))
            if rates is not None:
                return rates, how
            why = how
        rates, method = catalog.write_rates(conn, replicated, self.p["write_rate_sample_seconds"],
                                            db.get("stats_age_seconds") or 0)
        return rates, method if why is None else "%s (the given write counters were not used: %s)" % (method, why)

    def read(self, conn):
        relations = catalog.relations(conn)
        self.filter_warnings = scope.unmatched_filters(relations, **self.filters)
        tables = scope.select(relations, **self.filters)
        selected = {t["oid"] for t in tables}
        excluded = [r for r in scope.classify(relations) if r["oid"] not in selected]
        rates, method = self.write_rates(conn, tables)
        physical = [t for t in tables if t["relkind"] == "r"]
        opts = dict(
            write_rates=rates, write_rate_method=method,
            primary_keys=catalog.primary_keys(conn, [t["oid"] for t in physical]),
            own_rows=catalog.own_rows(conn, [t for t in physical if t.get("has_children") and t["persistence"] == "p"]))
        if self.p["engine"] == "native":
            opts["publication_names"], opts["publication_tables"] = catalog.publications(conn, self.p["migration_name"])
        return tables, excluded, opts

    def run(self):
        """The plan (plan.build_plan) with the filters' warnings first; raises PlanError or PgConnectError."""
        conn = connect(self.p)
        try:
            tables, excluded, opts = self.read(conn)
        finally:
            conn.close()
        opts.update(migration_name=self.p["migration_name"], engine=self.p["engine"], streams=self.p["streams"],
                    existing=self.p["existing"], allow_no_pk_dms=self.p["allow_no_pk_dms"], vcpus=self.p["vcpus"],
                    split_bytes=self.p["split_bytes"],
                    load_rate_bytes_per_second=self.p["load_rate_bytes_per_second"])
        result = plan.build_plan(tables, excluded, opts)
        result["warnings"] = self.filter_warnings + result["warnings"]
        return result


def execute(params, check_mode=False):  # pylint: disable=unused-argument
    """One whole run as the module's result, secrets masked: dict(changed=False, plan, warnings) or
    dict(failed=True, msg[, exception]). The module (plugins/modules/pg_replication_plan.py) and, with the local
    connection, the action plugin of the same name (run in the controller's process) both call it. It only
    reads, so check mode changes nothing."""
    problems = validate(params)
    if problems:
        return dict(failed=True, changed=False, msg="invalid options: " + "; ".join(problems))
    runner = ReplicationPlan(params)
    try:
        result = runner.run()
    except (PgConnectError, plan.PlanError) as exc:
        return dict(failed=True, changed=False, msg=scrub(str(exc), runner.secrets))
    except Exception as exc:  # pylint: disable=broad-except  # an unexpected database error: said without any secret
        return dict(failed=True, changed=False, msg=scrub("pg_replication_plan failed: %s" % exc, runner.secrets),
                    exception=scrub(traceback.format_exc(), runner.secrets))
    return dict(changed=False, plan=result, warnings=list(result["warnings"]))


def module_spec():
    return dict(argument_spec=argument_spec())


def run_module(module):
    end_with(module, execute(module.params, check_mode=module.check_mode))
