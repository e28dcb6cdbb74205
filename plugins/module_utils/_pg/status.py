# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading the replication status of a migration's native streams (pg_replication_status).

Shared by the module and by the pg_replication_wait action, which with the local
connection reads it in the controller over connections it keeps open between polls
instead of starting the module at every poll.
"""

from __future__ import annotations

try:
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
except ImportError:  # ansible-core before 2.11: validated_params() returns None, callers run the module
    ArgumentSpecValidator = None

from ansible_collections.pgshift.aurora.plugins.module_utils import names, native
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import db, loader
from ansible_collections.pgshift.aurora.plugins.module_utils._pg.connection import connect, postgres_argument_spec

TARGET = "target_"
# An index build as pg_stat_progress_create_index shows it (PostgreSQL 12+): its table, its index (none before
# it is created), the session, the phase and how far it is; a query adds its WHERE and ORDER BY.
INDEX_BUILD_COLUMNS = ("n.nspname, c.relname, i.relname AS index, p.pid, p.phase, p.blocks_total, p.blocks_done, "
                       "p.tuples_total, p.tuples_done, p.partitions_total, p.partitions_done, p.lockers_total, "
                       "p.lockers_done FROM pg_stat_progress_create_index p JOIN pg_class c ON c.oid = p.relid "
                       "JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_class i ON i.oid = p.index_relid ")
# The index builds running in this database, one per table.
INDEX_BUILDS_SQL = ("SELECT DISTINCT ON (p.relid) " + INDEX_BUILD_COLUMNS +
                    "WHERE p.datid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                    "ORDER BY p.relid, p.pid")


def argument_spec():
    spec = postgres_argument_spec()
    spec.update(native.prefixed_spec(postgres_argument_spec(), TARGET))
    spec.update(
        migration=dict(type="str", required=True),
        max_lag_bytes=dict(type="int", default=1048576),
        max_lag_seconds=dict(type="float", default=5),
        barrier_lsn=dict(type="str"),
    )
    return spec


class Status:
    """Wiring: read both sides, classify (native.classify_stream), report. `params` are the module's (defaults
    applied)."""

    def __init__(self, params):
        self.p = params
        self.secrets = [self.p.get("login_password"), self.p.get("target_login_password")]
        self.prefix = names.stream_prefix(self.p["migration"])

    def read_source(self, conn):
        head = db.rows(conn, "SELECT pg_current_wal_lsn()::text AS lsn, current_database() AS db")[0]
        pubs = db.rows(conn, "SELECT p.pubname, count(r.prrelid)::int AS tables FROM pg_publication p "
                             "LEFT JOIN pg_publication_rel r ON r.prpubid = p.oid "
                             "WHERE starts_with(p.pubname, %s) GROUP BY p.pubname", (self.prefix,))
        slots = db.rows(conn, "SELECT slot_name, plugin, database, active, active_pid, confirmed_flush_lsn::text "
                              "AS confirmed_flush_lsn, restart_lsn::text AS restart_lsn, wal_status, "
                              "pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint AS lag_bytes, "
                              "pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint AS retained_bytes "
                              "FROM pg_replication_slots WHERE slot_type = 'logical' AND starts_with(slot_name, %s)",
                        (self.prefix,))
        senders = db.rows(conn, "SELECT pid, state, sent_lsn::text AS sent_lsn, replay_lsn::text AS replay_lsn, "
                                "extract(epoch FROM replay_lag)::float8 AS replay_lag, "
                                "extract(epoch FROM write_lag)::float8 AS write_lag, "
                                "extract(epoch FROM flush_lag)::float8 AS flush_lag FROM pg_stat_replication")
        loading = db.rows(conn, "SELECT application_name, count(*)::int AS sessions FROM pg_stat_activity "
                                "WHERE starts_with(application_name, %s) GROUP BY application_name",
                          (native.LOAD_APPLICATION_PREFIX,))
        return dict(lsn=head["lsn"], db=head["db"], pubs=dict((r["pubname"], r) for r in pubs),
                    slots=dict((r["slot_name"], r) for r in slots), senders=dict((r["pid"], r) for r in senders),
                    loading=dict((r["application_name"], r["sessions"]) for r in loading))

    def read_target(self, conn):
        version = conn.info.server_version
        subs = db.rows(conn, "SELECT s.oid::int AS oid, s.subname, s.subenabled, s.subslotname FROM pg_subscription s "
                             "WHERE s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                             "AND starts_with(s.subname, %s)", (self.prefix,))
        workers = db.rows(conn, "SELECT w.subname, w.pid, w.relid::int AS relid, w.received_lsn::text AS received_lsn, "
                                "w.latest_end_lsn::text AS latest_end_lsn, "
                                "extract(epoch FROM now() - w.last_msg_receipt_time)::float8 AS receipt_age, "
                                "to_jsonb(w) ->> 'leader_pid' AS leader_pid, to_jsonb(w) ->> 'worker_type' AS worker_type, "
                                "extract(epoch FROM now() - a.backend_start)::float8 AS worker_age "
                                "FROM pg_stat_subscription w LEFT JOIN pg_stat_activity a ON a.pid = w.pid "
                                "WHERE starts_with(w.subname, %s) AND w.pid IS NOT NULL",
                          (self.prefix,))
        stats = []
        if version >= 150000:
            stats = db.rows(conn, "SELECT subname, apply_error_count, sync_error_count FROM pg_stat_subscription_stats "
                                  "WHERE starts_with(subname, %s)", (self.prefix,))
        rels = db.rows(conn, "SELECT s.subname, n.nspname, c.relname, r.srsubstate::text AS srsubstate, "
                             "r.srsublsn::text AS srsublsn FROM pg_subscription_rel r "
                             "JOIN pg_subscription s ON s.oid = r.srsubid JOIN pg_class c ON c.oid = r.srrelid "
                             "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE starts_with(s.subname, %s) "
                             "ORDER BY 2, 3", (self.prefix,))
        now = conn.execute("SELECT extract(epoch FROM now())::float8").fetchone()[0]
        progress = loader.read_progress(conn, prefix=self.prefix)
        keys = {}
        for key in loader.deferred_keys(conn, prefix=self.prefix):
            per_table = keys.setdefault(key["stream"], {})
            per_table[key["table"]] = per_table.get(key["table"], 0) + 1
        builds = {}
        if keys:  # the keys being built again after the copy, as pg_stat_progress_create_index shows them
            for b in db.rows(conn, INDEX_BUILDS_SQL):
                builds[native.qualified(b.pop("nspname"), b.pop("relname"))] = b
        apply_workers = {}
        for w in workers:
            if w["relid"] is None and not w["leader_pid"] and w["worker_type"] in (None, "apply"):
                apply_workers[w["subname"]] = w
        return dict(subs=dict((r["subname"], r) for r in subs), apply=apply_workers,
                    stats=dict((r["subname"], r) for r in stats), rels=rels, progress=progress, now=now, keys=keys,
                    builds=builds)

    def stream(self, name, src, tgt):
        p = self.p
        slot = src["slots"].get(name)
        sub = tgt["subs"].get(name)
        worker = tgt["apply"].get(name)
        stat = tgt["stats"].get(name) or {}
        sender = src["senders"].get(slot["active_pid"]) if slot and slot["active_pid"] else None
        units = [u for u in tgt["progress"] if u["stream"] == name]
        load = native.unit_totals(units, tgt["now"]) if units else None
        sub_info = None
        if sub is not None:
            sub_info = dict(exists=True, enabled=sub["subenabled"], slot_name=sub["subslotname"],
                            worker_pid=worker["pid"] if worker else None,
                            worker_age_seconds=round(worker["worker_age"], 3)
                            if worker and worker["worker_age"] is not None else None,
                            received_lsn=worker["received_lsn"] if worker else None,
                            latest_end_lsn=worker["latest_end_lsn"] if worker else None,
                            last_msg_age_seconds=round(worker["receipt_age"], 3)
                            if worker and worker["receipt_age"] is not None else None,
                            apply_error_count=stat.get("apply_error_count"),
                            sync_error_count=stat.get("sync_error_count"))
        keys_pending = tgt["keys"].get(name, {})
        tables = self.tables(name, units, tgt["rels"], bool(sub and sub["subenabled"]), sub is not None, keys_pending)
        for t in tables:
            if t["table"] in keys_pending:  # dropped for the copy, not built again yet (or being built)
                t["keys_pending"] = keys_pending.get(t["table"], 0)
                t["index_build"] = tgt.get("builds", {}).get(t["table"])
        obs = dict(name=name, publication=name in src["pubs"], slot=slot, subscription=sub_info,
                   table_states=[t["state"] for t in tables], load=load, keys_pending=len(keys_pending))
        state, message = native.classify_stream(obs)
        # A load whose units were reset but none started yet may not have connected: not called dead in that window
        # (a load job that dies there is caught by whoever watches it: pg_replication_wait, job_progress).
        started = any(u.get("started_at") is not None for u in units or [])
        if state == "copying" and sub is None and started and native.load_application_name(name) not in src["loading"]:
            state = "error"
            message = ("the initial load of %s stopped before it ended (%d of %d unit(s) copied) and no load is "
                       "running: run pg_native_stream again, it drops the slot and copies again" % (
                           name, load["copied"], load["units"]))
        lag = slot["lag_bytes"] if slot else None
        if lag is not None:
            lag = max(int(lag), 0)
        seconds = None
        if sub is not None and slot is not None:
            seconds = native.lag_seconds(lag, sender["replay_lag"] if sender else None,
                                         bool(sender and sender["state"] == "streaming"),
                                         worker["receipt_age"] if worker else None)
        return dict(
            name=name, state=state, message=message,
            lag_bytes=lag if sub is not None else None, lag_seconds=seconds,
            retained_bytes=int(slot["retained_bytes"]) if slot and slot["retained_bytes"] is not None else None,
            caught_up=native.caught_up(state, lag, seconds, p["max_lag_bytes"], p["max_lag_seconds"]),
            barrier_reached=bool(p["barrier_lsn"]) and sub is not None and native.barrier_reached(
                slot["confirmed_flush_lsn"] if slot else None, p["barrier_lsn"]),
            publication=dict(exists=name in src["pubs"], tables=(src["pubs"].get(name) or {}).get("tables", 0)),
            slot=dict(exists=slot is not None, **(dict(
                active=slot["active"], active_pid=slot["active_pid"], confirmed_flush_lsn=slot["confirmed_flush_lsn"],
                restart_lsn=slot["restart_lsn"], wal_status=slot["wal_status"]) if slot else {})),
            walsender=dict(pid=sender["pid"], state=sender["state"], sent_lsn=sender["sent_lsn"],
                           replay_lsn=sender["replay_lsn"], replay_lag_seconds=sender["replay_lag"],
                           write_lag_seconds=sender["write_lag"], flush_lag_seconds=sender["flush_lag"])
            if sender else None,
            subscription=sub_info or dict(exists=False),
            load=load, tables=tables)

    @staticmethod
    def tables(name, units, rels, enabled, subscribed, keys_pending=()):
        by_table = {}
        for u in units:
            entry = by_table.setdefault(u["table_name"], dict(table=u["table_name"], units=0, units_copied=0, rows=0,
                                                              bytes=0, format=None, load_states=set()))
            entry["units"] += 1
            entry["units_copied"] += 1 if u["state"] == "copied" else 0
            entry["rows"] += u["rows"] or 0
            entry["bytes"] += u["bytes"] or 0
            entry["format"] = entry["format"] or u["format"]
            entry["load_states"].add(u["state"])
        sync = {}
        for r in rels:
            if r["subname"] == name:
                sync[native.qualified(r["nspname"], r["relname"])] = r
        result = []
        for table in sorted(set(by_table) | set(sync)):
            entry = by_table.get(table) or dict(table=table, units=0, units_copied=0, rows=0, bytes=0, format=None,
                                                load_states=set())
            states = entry.pop("load_states")
            load_state = None
            for candidate in ("failed", "copying", "pending", "copied"):
                if candidate in states:
                    load_state = candidate
                    break
            rel = sync.get(table)
            code = rel["srsubstate"] if rel else None
            entry.update(load_state=load_state,
                         sync_state=native.SUBSCRIPTION_REL_STATES.get(code, code) if code else None,
                         sync_lsn=rel["srsublsn"] if rel else None,
                         state=native.table_state(load_state if not subscribed or code is None else None, code,
                                                  enabled, keys_pending=table in keys_pending))
            result.append(entry)
        return result

    def source_params(self):
        return dict((k, self.p[k]) for k in postgres_argument_spec())

    def target_params(self):
        return native.unprefixed(self.p, postgres_argument_spec(), TARGET)

    def read(self, src_conn, tgt_conn):
        """The status (what the module returns, without changed) over two open autocommit connections."""
        src = self.read_source(src_conn)
        tgt = self.read_target(tgt_conn)
        found = names.stream_names(list(src["pubs"]) + list(src["slots"]) + list(tgt["subs"]) +
                                   [u["stream"] for u in tgt["progress"]], self.p["migration"])
        streams = [self.stream(name, src, tgt) for name in found]
        return dict(
            streams=streams, totals=native.totals(streams), source_lsn=src["lsn"],
            caught_up=bool(streams) and all(s["caught_up"] for s in streams),
            barrier_reached=bool(self.p["barrier_lsn"]) and bool(streams) and all(
                s["barrier_reached"] for s in streams),
            errors=[s["message"] for s in streams if s["state"] == "error"])

    def read_once(self):
        """Connects to both sides, reads, disconnects."""
        src_conn = connect(self.source_params())
        try:
            tgt_conn = connect(self.target_params())
            try:
                return self.read(src_conn, tgt_conn)
            finally:
                tgt_conn.close()
        finally:
            src_conn.close()


def check_params(params):
    """Problems with the options that the argument spec does not catch (a list of sentences)."""
    problems = []
    if params.get("barrier_lsn"):
        try:
            native.lsn_to_int(params["barrier_lsn"])
        except ValueError as exc:
            problems.append("barrier_lsn: %s" % exc)
    return problems


def validated_params(args):
    """The module's options from `args` with its defaults applied, as AnsibleModule would give them, or None when
    the module would refuse them (it then says what is wrong). For readers of the status without the module: the
    pg_replication_wait action, the initial load benchmark."""
    if ArgumentSpecValidator is None:
        return None
    checked = ArgumentSpecValidator(argument_spec()).validate(dict(args))
    if checked.error_messages or check_params(checked.validated_parameters):
        return None
    return checked.validated_parameters
