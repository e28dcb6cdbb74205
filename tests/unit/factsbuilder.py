"""Crafted catalog facts for the pure functions, shaped like catalog.gather() returns them."""

from __future__ import annotations

import copy

from ansible_collections.pgshift.aurora.plugins.module_utils import scope

_OID = [1000]


def setting(name, value, context="postmaster", unit=None):
    return dict(name=name, setting=str(value), unit=unit, context=context, vartype="integer", source="default",
                pending_restart=False, boot_val=str(value))


def table(schema, name, relkind="r", has_pk=True, replident="d", persistence="p", is_partition=False,
          parents=(), has_children=False, owner="app_owner", rows=100, bytes_=8192, can_select=True, owns=True,
          usage=True, oid=None, writes=0):
    if oid is None:
        _OID[0] += 1
        oid = _OID[0]
    rel = dict(oid=oid, schema=schema, name=name, relkind=relkind, persistence=persistence, replident=replident,
               is_partition=is_partition, owner=owner, est_rows=rows, bytes=bytes_, has_pk=has_pk,
               has_replident_index=False, parents=list(parents), has_children=has_children, live_rows=rows,
               ins=writes, upd=0, user_can_select=can_select, user_owns=owns, user_schema_usage=usage)
    rel["del"] = 0
    return rel


def role(name, superuser=False, replication=True, member_of=(), create_on_database=True):
    return dict(name=name, superuser=superuser, replication=replication, can_login=True, createrole=False,
                member_of=list(member_of), create_on_database=create_on_database, connect_on_database=True)


def admin(name="postgres", superuser=True, createrole=True, replication=True, create_on_database=True,
          roles=None, version_num=150018, alter_system=None):
    """The connected user as catalog.admin_facts() returns it; roles: {name: dict of member, usage, set, admin,
    superuser, admin_holders} (missing keys False/empty). Default: a superuser, as the old lab's login was."""
    full = {}
    for rname, r in (roles or {}).items():
        full[rname] = dict(dict(name=rname, superuser=False, can_login=False, member=False, usage=False, set=False,
                                admin=False, admin_holders=[]), **r)
    return dict(name=name, superuser=superuser, createrole=createrole, createdb=True, replication=replication,
                inherit=True, create_on_database=create_on_database, grant_create_on_database=superuser,
                roles=full, alter_system=alter_system if alter_system is not None else {})


BASE_SETTINGS = dict(
    wal_level="logical", max_replication_slots=10, max_wal_senders=10, max_worker_processes=16,
    max_logical_replication_workers=8, max_sync_workers_per_subscription=2, max_slot_wal_keep_size=10240,
    wal_sender_timeout=60000, server_encoding="UTF8",
)


def facts(version_num=150018, settings=None, tables=(), roles=None, **extra):
    s = dict(BASE_SETTINGS)
    s.update(settings or {})
    result = dict(
        server=dict(version_num=version_num, version="x",
                    version_short="%d.%d" % (version_num // 10000, version_num % 100),
                    in_recovery=False, is_rds=False, is_aurora=False, login_user="postgres"),
        settings={k: setting(k, v) for k, v in s.items()},
        file_settings={},
        database=dict(name="app", encoding="UTF8", collate="C.UTF-8", ctype="C.UTF-8", size_bytes=10 ** 7,
                      owner="postgres", stats_age_seconds=100),
        roles=roles if roles is not None else {"pgshift": role("pgshift")},
        relations=list(tables),
        columns=[], triggers=[], rules=[], event_triggers=[], extensions=[dict(name="plpgsql", version="1.0")],
        available_extensions={"plpgsql": "1.0"}, long_transactions=[], prepared_transactions=[], slots=[],
        wal_senders_in_use=0, write_rates={}, types=[], sequences=[], large_objects=0, lob_samples={},
        admin=admin(), owners=[],
    )
    result.update(copy.deepcopy(extra))
    return result


def opts(f, role_name="source", engine="native", streams=1, **extra):
    o = dict(role=role_name, engine=engine, planned_streams=streams, reserved_slots=2, long_transaction_seconds=300,
             migration_user="pgshift", migration_password=None, rds=False, source=None,
             tables=scope.select(f["relations"]), replica_identity_full=[], system_settings=False)
    o.update(extra)
    return o
