# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Conflicts between the source's schema and what the target already has (pg_schema_copy stage pre).

Both sides' inventories (_pg/schema.INVENTORY_SQL) are matched by object keys (toc.object_key: the names as
separate values), never by a formatted identity. Pure.
"""

from __future__ import annotations

import re

from ansible_collections.pgshift.aurora.plugins.module_utils import scope
from ansible_collections.pgshift.aurora.plugins.module_utils.schema.toc import object_key


def inventory_map(rows):
    """{object_key: row} of an inventory (INVENTORY_SQL rows)."""
    return dict((object_key(r), r) for r in rows if object_key(r) is not None)


# Identity types that share a name space per schema with relations (pg_class and pg_type).
_RELATION_TYPES = frozenset(["table", "view", "materialized view", "sequence", "foreign table", "index",
                             "index column", "type", "composite type"])
# Types whose signature is informative only (an extension's version: the target's own is fine).
_SIG_IGNORED = frozenset(["extension"])
# Types never reported as "not from the source" (present on the target for its own reasons).
_EXTRA_IGNORED = frozenset(["extension", "default acl", "event trigger", "schema"])


def find_conflicts(source_inv, target_inv, schemas, compared_keys):
    """Target objects that stop the schema copy, each dict(object, type, problem).

    source_inv/target_inv: {object_key: row} (inventory_map); schemas: the migrated schemas
    (names as pg_namespace holds them); compared_keys: keys of the source objects the copy
    restores or holds back (their target namesakes must be the same object). Objects are
    matched by their names as separate values (object_key), never by a formatted identity;
    each conflict names its object by its identity, for display. Conflicts are:
    - same identity, other definition (a table with other columns, a domain over
      another type, an enum with other labels, a function with another body);
    - a name the source uses for a relation or type held on the target by an object
      of another kind (a view where the source has a table);
    - an object of a migrated schema the source does not have.
    """
    conflicts = []
    reported = set()
    for key in sorted(compared_keys, key=lambda k: (str(k[1]), str(k[0]))):
        src = source_inv.get(key)
        tgt = target_inv.get(key)
        if src is None or tgt is None:
            continue
        if key[0] in _SIG_IGNORED:
            continue
        difference = signature_difference(src.get("sig") or "", tgt.get("sig") or "")
        if difference:
            conflicts.append(dict(object=_shown(tgt, key), type=key[0],
                                  problem="differs from the source's: " + difference))
            reported.add(key)
    by_name = {}
    for key in target_inv:
        if key[0] in _RELATION_TYPES:
            by_name.setdefault(key[1], []).append(key)
    for key in sorted(compared_keys, key=lambda k: (str(k[1]), str(k[0]))):
        if key[0] not in _RELATION_TYPES or key in target_inv:
            continue
        for other in by_name.get(key[1], []):
            if other in source_inv or other in reported:
                continue
            conflicts.append(dict(object=_shown(target_inv[other], other), type=other[0],
                                  problem="the source has a %s of this name, the target a %s" % (key[0], other[0])))
            reported.add(other)
    for key in sorted(target_inv, key=lambda k: (str(k[1]), str(k[0]))):
        row = target_inv[key]
        if key in source_inv or key in reported or key[0] in _EXTRA_IGNORED:
            continue
        if row.get("schema") not in schemas:
            continue
        conflicts.append(dict(object=_shown(row, key), type=key[0],
                              problem="is in migrated schema %s but not on the source" % scope.quote_ident(
                                  row.get("schema"))))
    return conflicts


def _shown(row, key):
    """An object's name in a message: its identity as its server formats it."""
    return row.get("identity") or str(key[1])


_COLUMN_KINDS = frozenset(["table", "partitioned table", "view", "materialized view", "foreign table", "composite"])
_COLUMNS_SIG = re.compile(r"^([a-z ]+) \((.*)\)$", re.S)


def signature_difference(src, tgt):
    """None when two signatures describe the same object, else what differs, in words.

    Relations and composite types compare their columns as sets (logical replication
    matches columns by name, so their order does not matter).
    """
    if src == tgt:
        return None
    ms, mt = _COLUMNS_SIG.match(src), _COLUMNS_SIG.match(tgt)
    if not (ms and mt and ms.group(1).split(" unlogged")[0] in _COLUMN_KINDS
            and mt.group(1).split(" unlogged")[0] in _COLUMN_KINDS):
        return "the source has %s, the target has %s" % (_short(src), _short(tgt))
    parts = []
    if ms.group(1) != mt.group(1):
        parts.append("the source has a %s, the target a %s" % (ms.group(1), mt.group(1)))
    scols = [c for c in ms.group(2).split(", ") if c]
    tcols = [c for c in mt.group(2).split(", ") if c]
    only_source = [c for c in scols if c not in tcols]
    only_target = [c for c in tcols if c not in scols]
    if only_source:
        parts.append("column(s) only on the source: %s" % ", ".join(only_source))
    if only_target:
        parts.append("column(s) only on the target: %s" % ", ".join(only_target))
    return "; ".join(parts) or None


def _short(text, limit=200):
    text = text or "nothing"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def conflict_message(conflicts, database, limit=30):
    lines = ["the target database %s has %d object(s) that conflict with the source's schema; nothing was changed. "
             "Drop or rename them on the target (or point the migration at an empty database), then run again:"
             % (database, len(conflicts))]
    for c in conflicts[:limit]:
        lines.append("- %s %s %s" % (c["type"], c["object"], c["problem"]))
    if len(conflicts) > limit:
        lines.append("- ... and %d more (see conflicts in the result)" % (len(conflicts) - limit))
    return "\n".join(lines)


def database_differences(source_db, target_db):
    """(conflicts, warnings) between the source database and an existing target database."""
    conflicts, warnings = [], []
    if source_db["encoding"] != target_db["encoding"]:
        problem = "has encoding %s, the source %s: text would not round-trip; create the target database with " \
                  "ENCODING %s" % (target_db["encoding"], source_db["encoding"], source_db["encoding"])
        conflicts.append(dict(object=target_db["name"], type="database", problem=problem))
    for field in ("collate", "ctype", "locale_provider", "locale"):
        if (source_db.get(field) or None) != (target_db.get(field) or None):
            warnings.append("target database %s has %s %r, the source %r: sort orders and indexes on text may differ"
                            % (target_db["name"], field, target_db.get(field), source_db.get(field)))
    return conflicts, warnings
