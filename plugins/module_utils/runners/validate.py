# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_validate's orchestration: read both sides' tables, schema and sequences (_pg/compare.py, _pg/sequences.py)
-> compare the rows (compare.Comparison, quiesced or live) -> the verdict (validate.py). It changes nothing.
"""

from __future__ import annotations

import datetime
import traceback

from ansible_collections.pgshift.aurora.plugins.module_utils import names, native, scope, validate
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import compare, sequences
from ansible_collections.pgshift.aurora.plugins.module_utils._pg.connection import (
    PgConnectError, connect, postgres_argument_spec, scrub)

TARGET = "target_"


def argument_spec():
    spec = postgres_argument_spec()
    spec.update(native.prefixed_spec(postgres_argument_spec(), TARGET))
    spec.update(scope.filter_argument_spec())
    spec.update(
        mode=dict(type="str", default="quiesced", choices=list(validate.MODES)),
        migration=dict(type="str"),
        slot_prefix=dict(type="str"),
        parallel=dict(type="int", default=2),
        chunk_rows=dict(type="int", default=100000),
        row_level_rows=dict(type="int", default=1000),
        max_differences=dict(type="int", default=100),
        max_rows_per_second=dict(type="int", default=0),
        live_rounds=dict(type="int", default=3),
        catch_up_timeout=dict(type="float", default=300),
        live_lock_rows=dict(type="int", default=1000),
        live_lock_timeout=dict(type="float", default=5),
        check_schema=dict(type="bool", default=True),
        check_sequences=dict(type="bool", default=True),
        sequences_gate=dict(type="str", default="auto", choices=["auto", "always", "never"]),
        progress_file=dict(type="path"),
    )
    return spec


def option_problems(p):
    problems = []
    for name, low in (("parallel", 1), ("chunk_rows", 1), ("row_level_rows", 1), ("max_differences", 1),
                      ("max_rows_per_second", 0), ("live_rounds", 0), ("live_lock_rows", 0)):
        if p[name] < low:
            problems.append("%s must be at least %d (got %d)" % (name, low, p[name]))
    if not p["live_lock_timeout"] > 0:
        problems.append("live_lock_timeout must be more than 0 seconds (got %g); live_lock_rows=0 disables the "
                        "lock step" % p["live_lock_timeout"])
    if p["mode"] == "live" and not (p["migration"] or p["slot_prefix"]):
        problems.append("mode=live needs migration (its slots pgshift_<migration>_s<N> are waited for) or slot_prefix")
    problems.extend(scope.filter_problems(scope.filters_from(p)))
    return problems


class Validation:
    """One run of pg_validate: read both sides (_pg/compare.py, _pg/sequences.py), compare the tables in parallel
    (compare.Comparison), decide the verdict (validate.py)."""

    def __init__(self, params):
        self.p = params
        self.secrets = [params.get("login_password"), params.get("target_login_password")]
        self.src_params = dict((k, self.p[k]) for k in postgres_argument_spec())
        self.tgt_params = native.unprefixed(self.p, postgres_argument_spec(), TARGET)

    def run(self):
        """The module's result (changed=False, verdict, tables, sequences, schema...)."""
        p = self.p
        filters = scope.filters_from(p)
        src = connect(self.src_params)
        tgt = connect(self.tgt_params)
        try:
            src_tables, skipped = compare.tables(src, filters)
            tgt_tables, tgt_skipped = compare.tables(tgt, filters)
            schema_diffs = []
            if p["check_schema"]:
                schema_diffs = validate.schema_diff(compare.schema_description(src, src_tables),
                                                    compare.schema_description(tgt, tgt_tables))
                for d in schema_diffs:
                    d["message"] = validate.describe_schema_difference(d)
            plan = []
            if p["check_sequences"]:
                schemas = p["include_schemas"] or sorted(set(t["schema"] for t in src_tables.values())) or None
                src_seqs = sequences.gather_sequences(src, schemas)
                tgt_seqs = sequences.gather_sequences(tgt, schemas)
                exclude = set(p["exclude_schemas"]) | set(compare.TOOL_SCHEMAS)
                plan = sequences.sequence_plan([s for s in src_seqs if s["schema"] not in exclude], tgt_seqs, gap=0)
            versions = dict(source=src.info.server_version, target=tgt.info.server_version)
        finally:
            src.close()
            tgt.close()

        work, missing = [], []
        for ident, t in src_tables.items():
            other = tgt_tables.get(ident)
            if other is None:
                missing.append(dict(table=t["table"], rows_source=None, rows_target=None, seconds=0, result="error",
                                    error="the table is missing on the target", differences=[], difference_count=0))
                continue
            compared, problems = validate.common_columns(t["columns"], other["columns"])
            key_names = [c["name"] for c in t["key"]]
            if key_names != [c["name"] for c in other["key"]]:
                problems.append("the primary key is (%s) on the source and (%s) on the target" % (
                    ", ".join(key_names), ", ".join(c["name"] for c in other["key"])))
            work.append(dict(t, compared=compared, problems=problems))

        options = dict((k, p[k]) for k in ("parallel", "chunk_rows", "row_level_rows", "max_differences",
                                           "max_rows_per_second", "progress_file", "mode", "catch_up_timeout",
                                           "live_rounds", "live_lock_rows", "live_lock_timeout"))
        options["slot_prefix"] = p["slot_prefix"] or (names.stream_prefix(p["migration"]) if p["migration"] else "")
        runnable = [t for t in work if not t["problems"]]
        results, rounds, seconds = compare.Comparison(self.src_params, self.tgt_params, options).run(runnable)
        by_ident = dict(((t["schema"], t["name"]), r) for t, r in zip(runnable, results))
        tables = []
        for t in work:
            if t["problems"]:
                tables.append(dict(table=t["table"], rows_source=None, rows_target=None, seconds=0, result="error",
                                   error="; ".join(t["problems"]), differences=[], difference_count=0))
            else:
                tables.append(by_ident[(t["schema"], t["name"])])
        tables += missing
        tables.sort(key=lambda r: r["table"])
        gate = validate.sequences_gate(p["sequences_gate"], p["mode"])
        verdict, reasons = validate.verdict(tables, plan, schema_diffs, gate)
        return dict(
            changed=False, verdict=verdict, reasons=reasons, mode=p["mode"], tables=tables, sequences=plan,
            sequences_gated=gate, schema=schema_diffs, skipped=skipped, rounds=rounds,
            summary=validate.summary(tables, seconds, schema_diffs, plan), versions=versions,
            finished_at=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))


def module_spec():
    return dict(argument_spec=argument_spec())


def run_module(module):
    problems = option_problems(module.params)
    if problems:
        module.fail_json(msg="invalid options: %s" % "; ".join(problems))
    runner = Validation(module.params)
    try:
        result = runner.run()
    except PgConnectError as exc:
        module.fail_json(msg=str(exc))
    except Exception as exc:  # pylint: disable=broad-except  # an unexpected database error: said without any secret
        module.fail_json(msg=scrub("pg_validate failed: %s (check the connection and SELECT privileges on both "
                                   "sides)" % exc, runner.secrets),
                         exception=scrub(traceback.format_exc(), runner.secrets))
    module.exit_json(**result)
