# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The schema-only archive's table of contents (``pg_restore -l -v``) as data, and each entry's class.

- ``parse_toc``: the entries and their dependencies;
- ``annotate``: each entry's source identity and catalog facts (read by _pg/schema.source_objects);
- ``classify``: each entry goes to the pre-data restore (``pre``), is held back for the post stage
  (``held``: secondary indexes, foreign keys, triggers, rules, policies, ...), is left out by the
  migration's filters (``excluded``), is never restored (``dropped``: publications, subscriptions, large
  objects, the database entry), or sets the restore session up (``session``). Constraints are classified by
  the source catalog (pg_constraint.contype), indexes by pg_index, never by name.

Pure: no I/O.
"""

from __future__ import annotations

import re

from ansible_collections.pgshift.aurora.plugins.module_utils import scope

# --------------------------------------------------------------------------------------------
# System catalog OIDs (fixed in every PostgreSQL version)
# --------------------------------------------------------------------------------------------

PG_CLASS = 1259
PG_TYPE = 1247
PG_PROC = 1255
PG_NAMESPACE = 2615
PG_CONSTRAINT = 2606
PG_ATTRDEF = 2604
PG_TRIGGER = 2620
PG_REWRITE = 2618
PG_POLICY = 3256
PG_STATISTIC_EXT = 3381
PG_EXTENSION = 3079
PG_COLLATION = 3456
PG_DEFAULT_ACL = 826
PG_EVENT_TRIGGER = 3466
PG_CONVERSION = 2607
PG_OPERATOR = 2617
PG_OPCLASS = 2616
PG_OPFAMILY = 2753
PG_TS_CONFIG = 3602
PG_TS_DICT = 3600
PG_FOREIGN_DATA_WRAPPER = 2328
PG_FOREIGN_SERVER = 1417
PG_LANGUAGE = 2612

# Catalogs the inventory query covers; objects of other catalogs (operators, casts,
# text search, foreign servers, ...) are looked up one by one on the target.
INVENTORY_CLASSES = frozenset([PG_CLASS, PG_TYPE, PG_PROC, PG_NAMESPACE, PG_CONSTRAINT, PG_ATTRDEF, PG_TRIGGER,
                               PG_REWRITE, PG_POLICY, PG_STATISTIC_EXT, PG_EXTENSION, PG_COLLATION, PG_DEFAULT_ACL,
                               PG_EVENT_TRIGGER])

# --------------------------------------------------------------------------------------------
# The archive's table of contents
# --------------------------------------------------------------------------------------------

# Entry descriptions pg_dump writes (several have spaces); the longest match wins.
KNOWN_DESCS = sorted([
    "ACCESS METHOD", "ACL", "AGGREGATE", "BLOB", "BLOB METADATA", "BLOBS", "CAST", "CHECK CONSTRAINT",
    "COLLATION", "COMMENT", "CONSTRAINT", "CONVERSION", "DATABASE", "DATABASE PROPERTIES", "DEFAULT",
    "DEFAULT ACL", "DOMAIN", "ENCODING", "EVENT TRIGGER", "EXTENSION", "FK CONSTRAINT", "FOREIGN DATA WRAPPER",
    "FOREIGN TABLE", "FUNCTION", "INDEX", "INDEX ATTACH", "LARGE OBJECT", "LARGE OBJECTS", "MATERIALIZED VIEW",
    "MATERIALIZED VIEW DATA", "OPERATOR", "OPERATOR CLASS", "OPERATOR FAMILY", "POLICY", "PROCEDURAL LANGUAGE",
    "PROCEDURE", "PUBLICATION", "PUBLICATION TABLE", "PUBLICATION TABLES IN SCHEMA", "REFRESH MATERIALIZED VIEW",
    "ROW SECURITY", "RULE", "SCHEMA", "SEARCHPATH", "SECURITY LABEL", "SEQUENCE", "SEQUENCE OWNED BY",
    "SEQUENCE SET", "SERVER", "SHELL TYPE", "STATISTICS", "STATISTICS DATA", "STDSTRINGS", "SUBSCRIPTION",
    "SUBSCRIPTION TABLE", "TABLE", "TABLE ATTACH", "TABLE DATA", "TEXT SEARCH CONFIGURATION",
    "TEXT SEARCH DICTIONARY", "TEXT SEARCH PARSER", "TEXT SEARCH TEMPLATE", "TRANSFORM", "TRIGGER", "TYPE",
    "USER MAPPING", "VIEW",
], key=len, reverse=True)

# Set the restore session up (encoding, standard_conforming_strings, search_path).
SESSION_DESCS = frozenset(["ENCODING", "STDSTRINGS", "SEARCHPATH"])

# Never restored by the schema copy.
DROPPED_DESCS = {
    "DATABASE": "the target database is created by the module itself",
    "DATABASE PROPERTIES": "database-level settings and comments: applied when the module creates the database",
    "PUBLICATION": "publications are the replication phase's business (--no-publications)",
    "PUBLICATION TABLE": "publications are the replication phase's business (--no-publications)",
    "PUBLICATION TABLES IN SCHEMA": "publications are the replication phase's business (--no-publications)",
    "SUBSCRIPTION": "subscriptions are not copied (--no-subscriptions)",
    "SUBSCRIPTION TABLE": "subscriptions are not copied (--no-subscriptions)",
    "BLOB": "large objects are not carried by logical replication",
    "BLOBS": "large objects are not carried by logical replication",
    "BLOB METADATA": "large objects are not carried by logical replication",
    "LARGE OBJECT": "large objects are not carried by logical replication",
    "LARGE OBJECTS": "large objects are not carried by logical replication",
    "TABLE DATA": "data is the replication phase's business",
    "SEQUENCE SET": "sequence values are synchronised at cutover",
    "MATERIALIZED VIEW DATA": "materialized views are refreshed at cutover",
    "REFRESH MATERIALIZED VIEW": "materialized views are refreshed at cutover",
    "STATISTICS DATA": "planner statistics: ANALYZE after the load",
}

# Post-data entries always held back for the post stage (reason shown in the report).
HELD_DESCS = {
    "TRIGGER": "trigger",
    "EVENT TRIGGER": "event trigger",
    "RULE": "rule",
    "POLICY": "row-level security policy",
    "ROW SECURITY": "row-level security switch",
    "STATISTICS": "extended statistics",
    "FK CONSTRAINT": "foreign key",
}

# Entries that describe another entry (follow it: restored with it, held back with it).
ATTACHED_DESCS = frozenset(["COMMENT", "ACL", "SECURITY LABEL", "SEQUENCE OWNED BY"])

_ENTRY = re.compile(r"^(\d+);\s+(\d+)\s+(\d+)\s+(.*)$")
_DEPENDS = re.compile(r"^;\s*depends on:\s*(.*)$")


def parse_toc(text):
    """Entries of ``pg_restore -l -v`` output, in archive order.

    Each entry: dump_id, classid (the catalog, 0 for entries that are no catalog
    object), objid, desc, text (what pg_restore prints after the description: the
    schema, the name and the owner, unquoted and separated by spaces), deps (dump ids
    of the entries it depends on: the -v listing prints them) and line (the line as
    pg_restore printed it, which ``pg_restore -L`` reads back: only its dump id counts).

    ``text`` is for display only: a schema, name or owner with a space or a dot in it
    makes it ambiguous, so nothing is ever looked up, compared or filtered by it. What an
    entry is comes from the catalog (``annotate``): its (classid, objid), or for the
    entries that describe another (comments, privileges, attachments) their dependencies.
    """
    entries = []
    for raw in text.splitlines():
        line = raw.rstrip("\n")
        m = _DEPENDS.match(line)
        if m and entries:
            entries[-1]["deps"].extend(int(d) for d in m.group(1).split() if d.isdigit())
            continue
        m = _ENTRY.match(line)
        if not m:
            continue
        rest = m.group(4)
        desc = None
        for known in KNOWN_DESCS:
            if rest == known or rest.startswith(known + " "):
                desc = known
                break
        if desc is None:
            desc = rest.split(" ", 1)[0]
        entries.append(dict(dump_id=int(m.group(1)), classid=int(m.group(2)), objid=int(m.group(3)), desc=desc,
                            text=rest[len(desc) + 1:], deps=[], line=line))
    return entries


def entry_label(entry):
    """What the report calls an entry: its catalog identity; for an entry that is no catalog object (a
    comment, privileges, an attachment) what pg_restore prints, without its owner (display only)."""
    if entry.get("identity"):
        return entry["identity"]
    text = (entry.get("text") or "").rstrip()
    owner = entry.get("owner")  # pg_dump writes an entry's owner last (a described object's owner)
    if owner and text.endswith(" " + owner):
        text = text[:-len(owner) - 1]
    if text.startswith("- "):
        text = text[2:]
    return text


def catalog_keys(entries):
    """(classid, objid) of the entries that are catalog objects: what to look up on the source."""
    return sorted(set((e["classid"], e["objid"]) for e in entries if e["classid"] and e["objid"]))


def freeze(value):
    """A JSON value as a hashable one (lists become tuples)."""
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def object_key(row):
    """The key of a catalog object on either side: (type, ref), ref being its names as separate, unquoted
    values (ref_sql), or None. Never the formatted identity: quote_ident() depends on the server's keyword
    list, which changes between major versions."""
    if not row or row.get("ref") is None or not row.get("type"):
        return None
    return (row["type"], freeze(row["ref"]))


def annotate(entries, catalog):
    """Add each entry's source identity and catalog facts (catalog: {(classid, objid): info}).

    info (SOURCE_OBJECTS_SQL) has at least type, identity (pg_identify_object's, for display), ref
    (the names as separate values), nspname (its schema, unquoted) and owner (role name: a relation's owner for
    what belongs to a relation - constraints, defaults, triggers, rules, policies); constraints
    add contype, convalidated, index_ref (their index); indexes add replident and parent; relations add
    relkind and is_partition; extensions extname. An entry that is no catalog object (a comment,
    privileges, ROW SECURITY, an ATTACH, SEQUENCE OWNED BY) takes the schema, owner and catalog (class) of the
    object it describes (its first dependency that is one).
    """
    by_id = dict((e["dump_id"], e) for e in entries)
    for e in entries:
        info = catalog.get((e["classid"], e["objid"])) if e["classid"] and e["objid"] else None
        e["info"] = info or {}
        e["identity"] = e["info"].get("identity")
        e["type"] = e["info"].get("type")
        e["key"] = object_key(e["info"])
        e["schema"] = e["info"].get("nspname")
        e["owner"] = e["info"].get("owner")
        e["class"] = e["classid"] if e["info"] else None
    for e in entries:
        if e["desc"] in ("TABLE ATTACH", "INDEX ATTACH"):
            e["child"] = _attach_child(e, by_id)
        if not e["info"]:
            described = [by_id[d] for d in e["deps"] if d in by_id and by_id[d]["info"]]
            if e.get("child"):  # an ATTACH is about its partition (or the partition's index)
                described.sort(key=lambda d: d["key"] != e["child"])
            if described:
                e["schema"], e["owner"], e["class"] = described[0]["schema"], described[0]["owner"], \
                    described[0]["class"]
    return entries


def _attach_child(entry, by_id):
    """The key of the partition (TABLE ATTACH) or partition's index (INDEX ATTACH) an ATTACH entry attaches."""
    for dep in entry["deps"]:
        d = by_id.get(dep)
        if d is None:
            continue
        info = d.get("info") or {}
        if entry["desc"] == "TABLE ATTACH" and info.get("is_partition"):
            return d["key"]
        if entry["desc"] == "INDEX ATTACH":
            if d["desc"] == "INDEX" and info.get("parent"):
                return d["key"]
            if d["desc"] == "CONSTRAINT" and info.get("index_parent"):
                return object_key(dict(type="index", ref=info.get("index_ref")))
    return None


def _own_class(entry):
    """(cls, reason) of one entry on its own, before its dependencies are considered."""
    desc = entry["desc"]
    info = entry.get("info") or {}
    if desc in SESSION_DESCS:
        return "session", "restore session setting"
    if desc in DROPPED_DESCS:
        return "dropped", DROPPED_DESCS[desc]
    if desc in HELD_DESCS:
        return "held", HELD_DESCS[desc]
    if desc == "INDEX":
        if info.get("replident"):
            return "pre", "replica identity index (logical replication needs it)"
        return "held", "secondary index"
    if desc in ("CONSTRAINT", "CHECK CONSTRAINT"):
        contype = info.get("contype")
        if contype == "p":
            return "pre", "primary key (replica identity)"
        if contype == "u":
            return "pre", "unique constraint"
        if contype == "f":
            return "held", "foreign key"
        if contype == "x":
            return "held", "exclusion constraint (index build)"
        if contype == "t":
            return "held", "constraint trigger"
        if contype in ("c", "n"):
            if info.get("convalidated", True):
                return "pre", "check constraint"
            return "held", "NOT VALID constraint (rows copied before it would be checked)"
        if desc == "CHECK CONSTRAINT":
            return "held", "NOT VALID constraint"
        return "pre", "constraint"
    return "pre", _PRE_REASONS.get(desc, "pre-data")


_PRE_REASONS = {
    "SCHEMA": "schema", "TABLE": "table", "SEQUENCE": "sequence", "VIEW": "view",
    "MATERIALIZED VIEW": "materialized view definition (WITH NO DATA)", "TYPE": "type", "DOMAIN": "domain",
    "FUNCTION": "function", "PROCEDURE": "procedure", "AGGREGATE": "aggregate", "EXTENSION": "extension",
    "DEFAULT": "column default", "TABLE ATTACH": "partition", "INDEX ATTACH": "partition's key index",
    "SEQUENCE OWNED BY": "sequence ownership", "COMMENT": "comment", "ACL": "privileges",
    "DEFAULT ACL": "default privileges",
}


def classify(entries, scope):
    """Give each entry its class: session, pre, held, excluded or dropped (with a reason).

    scope: dict(schemas=set of migrated schema names, relations_in=set of source relation
    oids the filters keep, relations_out=set of source relation oids they leave out).
    An entry is left out when its own object is out of scope, dropped when dropped,
    and in every case follows its dependencies: what depends on a dropped entry is
    dropped, on an excluded one excluded, on a held-back one held back.
    """
    by_id = dict((e["dump_id"], e) for e in entries)
    for e in entries:
        cls, reason = _own_class(e)
        if cls not in ("session", "dropped"):
            out = _out_of_scope(e, scope)
            if out:
                cls, reason = "excluded", out
        e["cls"], e["reason"] = cls, reason
    rank = dict(dropped=3, excluded=2, held=1, pre=0, session=-1)
    changed = True
    while changed:
        changed = False
        for e in entries:
            if e["cls"] in ("session", "dropped"):
                continue
            for dep in e["deps"]:
                d = by_id.get(dep)
                if d is None or d["cls"] == "session" or rank[d["cls"]] <= rank[e["cls"]]:
                    continue
                if d["cls"] == "held" and e["desc"] in ATTACHED_DESCS:
                    reason = "follows %s" % entry_label(d)
                elif d["cls"] == "held":
                    reason = "depends on held-back %s %s" % (d["desc"].lower(), entry_label(d))
                else:
                    reason = "depends on %s %s %s" % (d["cls"], d["desc"].lower(), entry_label(d))
                e["cls"], e["reason"] = d["cls"], reason
                changed = True
                break
    return entries


def _out_of_scope(entry, sc):
    """Why an entry's own object is left out (None: it is in scope). By catalog identity only: the
    relation's oid, or the schema's name as pg_namespace holds it (info nspname, never a quoted form)."""
    info = entry.get("info") or {}
    if not info:
        return None
    schemas = sc["schemas"]
    schema = info.get("nspname")
    if entry["classid"] == PG_NAMESPACE:
        if schema is not None and schema not in schemas:
            return "schema not migrated (include_schemas/exclude_schemas)"
        return None
    if entry["classid"] == PG_CLASS:
        relkind = info.get("relkind")
        if relkind in ("r", "p", "f", "m"):
            if entry["objid"] in sc["relations_out"]:
                return "left out by the migration's filters"
            if entry["objid"] in sc["relations_in"]:
                return None
        if relkind in ("i", "I"):
            return None  # follows its table
    if schema is not None and schema not in schemas:
        return "schema %s not migrated" % scope.quote_ident(schema)
    return None


def by_class(entries, cls):
    return [e for e in entries if e["cls"] == cls]


def summarize(entries):
    """Counts per class and per entry kind."""
    out = {}
    for e in entries:
        if e["cls"] == "session":
            continue
        kinds = out.setdefault(e["cls"], {})
        kinds[e["desc"].lower()] = kinds.get(e["desc"].lower(), 0) + 1
    return out


def report_entries(entries, cls=None):
    return [dict(kind=e["desc"].lower(), object=entry_label(e), owner=e.get("owner") or None, reason=e["reason"])
            for e in entries if e["cls"] != "session" and (cls is None or e["cls"] == cls)]


def migrated_schemas(all_schemas, include_schemas, exclude_schemas):
    include = list(include_schemas or [])
    exclude = set(exclude_schemas or [])
    return set(s for s in all_schemas if (not include or s in include) and s not in exclude)
