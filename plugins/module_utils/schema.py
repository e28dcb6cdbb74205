# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Schema copy (pg_schema_copy): what to restore before the data, what to hold back, what conflicts.

Pure logic apart from the SQL text it holds. The module reads the source and
target catalogs with these queries, lists the source's schema-only dump with
``pg_restore -l -v`` (entries and their dependencies), and these functions decide:

- ``parse_toc``: the archive's table of contents as data;
- ``classify``: each entry goes to the pre-data restore (``pre``), is held back for
  the post stage (``held``: secondary indexes, foreign keys, triggers, rules,
  policies, ...), is left out by the migration's filters (``excluded``), is never
  restored (``dropped``: publications, subscriptions, large objects, the database
  entry), or sets the restore session up (``session``). Constraints are classified
  by the source catalog (pg_constraint.contype), indexes by pg_index, never by name;
- ``plan_restore``: which ``pre`` entries the target still lacks (a re-run restores
  nothing when the target already has them all);
- ``find_conflicts``: target objects that differ from the source's or do not come
  from it, in the migrated schemas (the run stops before changing anything);
- ``plan_roles`` / ``role_statements`` / ``database_statement``: roles without
  passwords and the target database as on the source;
- ``build_post_plan``: the statements of the post stage (indexes in parallel,
  foreign keys NOT VALID then VALIDATE, triggers with their enabled state, rules,
  policies, statistics, event triggers, comments), only for what the target lacks.
"""

from __future__ import annotations

import re

from ansible_collections.pgshift.aurora.plugins.module_utils import scope

try:
    from psycopg import sql
except ImportError:  # pragma: no cover - the module reports the missing library
    sql = None

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


def plan_restore(entries, present, attached):
    """The pre-data entries the target lacks, in archive order (session entries first when any).

    present: keys (object_key) of the objects the target has; attached: keys of the target's
    partitions and partition indexes that are attached to their parent. An entry that
    is a catalog object is restored when the target lacks the object; an entry that
    describes another (comment, privileges, ownership, default) when that one is
    restored; an ATTACH when the partition is restored or not attached yet.
    """
    pre = [e for e in entries if e["cls"] == "pre"]
    chosen = set()
    changed = True
    while changed:
        changed = False
        for e in pre:
            if e["dump_id"] in chosen:
                continue
            deps_chosen = any(d in chosen for d in e["deps"])
            if e["desc"] in ("TABLE ATTACH", "INDEX ATTACH"):
                need = deps_chosen or not e.get("child") or e["child"] not in attached
            elif e["key"]:
                need = e["key"] not in present
            else:
                need = deps_chosen
            if need:
                chosen.add(e["dump_id"])
                changed = True
    if not chosen:
        return []
    return [e for e in entries if e["cls"] == "session" or e["dump_id"] in chosen]


def restore_list(selected):
    """The text of the ``pg_restore -L`` list file for these entries."""
    return "".join(e["line"] + "\n" for e in selected)


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


# --------------------------------------------------------------------------------------------
# Catalog identities: an object's schema, owner and names as separate values
# --------------------------------------------------------------------------------------------

# Where each catalog keeps an object's schema and owner (None: it has none). Constraints, column
# defaults, triggers, rules and policies take their relation's (a domain constraint its domain's).
_OBJECT_COLUMNS = [
    ("pg_namespace", "oid", "nspowner"), ("pg_class", "relnamespace", "relowner"),
    ("pg_type", "typnamespace", "typowner"), ("pg_proc", "pronamespace", "proowner"),
    ("pg_collation", "collnamespace", "collowner"), ("pg_conversion", "connamespace", "conowner"),
    ("pg_operator", "oprnamespace", "oprowner"), ("pg_opclass", "opcnamespace", "opcowner"),
    ("pg_opfamily", "opfnamespace", "opfowner"), ("pg_ts_config", "cfgnamespace", "cfgowner"),
    ("pg_ts_dict", "dictnamespace", "dictowner"), ("pg_ts_parser", "prsnamespace", None),
    ("pg_ts_template", "tmplnamespace", None), ("pg_statistic_ext", "stxnamespace", "stxowner"),
    ("pg_default_acl", "nullif(x.defaclnamespace, 0)", "defaclrole"), ("pg_extension", None, "extowner"),
    ("pg_event_trigger", None, "evtowner"), ("pg_foreign_data_wrapper", None, "fdwowner"),
    ("pg_foreign_server", None, "srvowner"), ("pg_language", None, "lanowner"), ("pg_database", None, "datdba"),
    ("pg_publication", None, "pubowner"),
]
_RELATION_OBJECTS = [("pg_attrdef", "adrelid"), ("pg_trigger", "tgrelid"), ("pg_rewrite", "ev_class"),
                     ("pg_policy", "polrelid")]

# Catalogs whose objects pg_restore gives to their owner (ALTER ... OWNER TO): the owner must be a role
# the target login can SET ROLE to, with CREATE on the object's schema (or on the database, for a schema).
OWNED_CLASSES = frozenset([PG_NAMESPACE, PG_CLASS, PG_TYPE, PG_PROC, PG_COLLATION, PG_STATISTIC_EXT,
                           PG_EVENT_TRIGGER, PG_CONVERSION, PG_OPERATOR, PG_OPCLASS, PG_OPFAMILY, PG_TS_CONFIG,
                           PG_TS_DICT, PG_FOREIGN_DATA_WRAPPER, PG_FOREIGN_SERVER, PG_LANGUAGE])


def _column_case(c, o, pick):
    whens = []
    for catalog, nsp, owner in _OBJECT_COLUMNS:
        column = pick(nsp, owner)
        if column is None:
            continue
        expr = column if "(" in column else "x.%s" % column
        whens.append("WHEN '%s'::regclass THEN (SELECT %s FROM %s x WHERE x.oid = %s)" % (catalog, expr, catalog, o))
    rel_column = pick("relnamespace", "relowner")
    for catalog, relcol in _RELATION_OBJECTS:
        whens.append("WHEN '%s'::regclass THEN (SELECT r.%s FROM %s x JOIN pg_class r ON r.oid = x.%s "
                     "WHERE x.oid = %s)" % (catalog, rel_column, catalog, relcol, o))
    if rel_column == "relnamespace":
        whens.append("WHEN 'pg_constraint'::regclass THEN (SELECT x.connamespace FROM pg_constraint x "
                     "WHERE x.oid = %s)" % o)
    else:
        whens.append("WHEN 'pg_constraint'::regclass THEN (SELECT coalesce(r.relowner, y.typowner) "
                     "FROM pg_constraint x LEFT JOIN pg_class r ON r.oid = x.conrelid "
                     "LEFT JOIN pg_type y ON y.oid = x.contypid WHERE x.oid = %s)" % o)
    return "CASE %s::oid %s END" % (c, " ".join(whens))


def ref_sql(c, o):
    """SQL for the names of the object (c: its catalog's oid, o: its oid) as separate, unquoted values (jsonb):
    [names, arguments] of pg_identify_object_as_address, except where that formats a type name (types, domain
    constraints, function arguments): there the schema and the name of the type as pg_type holds them."""
    return """(CASE
  WHEN %(c)s::oid = 'pg_type'::regclass THEN
    (SELECT jsonb_build_array(jsonb_build_array(yn.nspname, y.typname), '[]'::jsonb)
       FROM pg_type y JOIN pg_namespace yn ON yn.oid = y.typnamespace WHERE y.oid = %(o)s)
  WHEN %(c)s::oid = 'pg_proc'::regclass THEN
    (SELECT jsonb_build_array(jsonb_build_array(pn.nspname, p.proname),
              coalesce((SELECT jsonb_agg(jsonb_build_array(yn.nspname, y.typname) ORDER BY k.i)
                          FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY k(typ, i)
                          JOIN pg_type y ON y.oid = k.typ JOIN pg_namespace yn ON yn.oid = y.typnamespace),
                       '[]'::jsonb))
       FROM pg_proc p JOIN pg_namespace pn ON pn.oid = p.pronamespace WHERE p.oid = %(o)s)
  WHEN %(c)s::oid = 'pg_constraint'::regclass
       AND (SELECT x.contypid FROM pg_constraint x WHERE x.oid = %(o)s) <> 0 THEN
    (SELECT jsonb_build_array(jsonb_build_array(yn.nspname, y.typname, x.conname), '[]'::jsonb)
       FROM pg_constraint x JOIN pg_type y ON y.oid = x.contypid JOIN pg_namespace yn ON yn.oid = y.typnamespace
      WHERE x.oid = %(o)s)
  ELSE (SELECT jsonb_build_array(coalesce(to_jsonb(a.object_names), '[]'::jsonb),
                                 coalesce(to_jsonb(a.object_args), '[]'::jsonb))
          FROM pg_identify_object_as_address(%(c)s, %(o)s, 0) a)
END)""" % dict(c=c, o=o)


def facts_sql(c, o):
    """A LATERAL subquery giving nspname (the object's schema, unquoted), owner (the role's name) and ref
    (ref_sql) of the object (c: its catalog's oid, o: its oid)."""
    return """LATERAL (
  SELECT (SELECT fn.nspname FROM pg_namespace fn WHERE fn.oid = f.nsp) AS nspname,
         CASE WHEN f.own IS NOT NULL THEN pg_get_userbyid(f.own) END AS owner, %(ref)s AS ref
    FROM (SELECT %(nsp)s AS nsp, %(own)s AS own) f
)""" % dict(ref=ref_sql(c, o), nsp=_column_case(c, o, lambda nsp, own: nsp),
            own=_column_case(c, o, lambda nsp, own: own))


# --------------------------------------------------------------------------------------------
# Inventory and conflicts
# --------------------------------------------------------------------------------------------

USER_SCHEMA = ("{n}.nspname NOT IN ('pg_catalog', 'information_schema') AND {n}.nspname NOT LIKE 'pg\\_toast%%' "
               "AND {n}.nspname NOT LIKE 'pg\\_temp%%'")


def display_ident_sql(expr):
    """SQL quoting a name for a signature the same way on every server version (quote_ident() depends on
    the server's keyword list): bare when lower-case ASCII letters, digits and underscores."""
    return "(CASE WHEN %s ~ '^[a-z_][a-z0-9_]*$' THEN %s ELSE '\"' || replace(%s, '\"', '\"\"') || '\"' END)" % (
        expr, expr, expr)


# The same query runs on the source and on the target: every object of the main catalogs
# in user schemas (extension members and the constraints cloned from a partitioned
# table's or for a referenced partition left out: their names vary by version), its identity (pg_identify_object), a signature to compare and the
# state the post stage needs. NOT NULL constraints (pg_constraint rows since
# PostgreSQL 18) are attributes of their column, not objects here.
INVENTORY_SQL = """
WITH objs AS (
  SELECT 'pg_namespace'::regclass AS classid, n.oid AS objid, n.nspname AS schema, ''::text AS sig,
         NULL::oid AS rel, NULL::bool AS attached, NULL::bool AS valid, NULL::text AS enabled
    FROM pg_namespace n WHERE {n}
  UNION ALL
  SELECT 'pg_class'::regclass, c.oid, n.nspname,
         CASE WHEN c.relkind IN ('i', 'I') THEN
                   CASE c.relkind WHEN 'i' THEN 'index on ' ELSE 'partitioned index on ' END
                   || (SELECT {qtn} || '.' || {qt} FROM pg_index x JOIN pg_class t ON t.oid = x.indrelid
                         JOIN pg_namespace tn ON tn.oid = t.relnamespace WHERE x.indexrelid = c.oid)
              WHEN c.relkind = 'S' THEN 'sequence ' || coalesce((
                SELECT format_type(s.seqtypid, NULL) || ' increment ' || s.seqincrement || ' min ' || s.seqmin
                       || ' max ' || s.seqmax || CASE WHEN s.seqcycle THEN ' cycle' ELSE '' END
                  FROM pg_sequence s WHERE s.seqrelid = c.oid), '')
              ELSE CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned table' WHEN 'v' THEN 'view'
                                  WHEN 'm' THEN 'materialized view' WHEN 'f' THEN 'foreign table'
                                  ELSE c.relkind::text END
                   || CASE WHEN c.relpersistence = 'u' THEN ' unlogged' ELSE '' END || ' ('
                   || coalesce((SELECT string_agg({qa} || ' ' || format_type(a.atttypid, a.atttypmod)
                                                  || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END, ', '
                                                  ORDER BY a.attnum)
                                  FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0
                                   AND NOT a.attisdropped), '') || ')'
         END,
         CASE WHEN c.relkind IN ('i', 'I') THEN (SELECT x.indrelid FROM pg_index x WHERE x.indexrelid = c.oid)
              ELSE c.oid END,
         EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhrelid = c.oid),
         CASE WHEN c.relkind IN ('i', 'I') THEN (SELECT x.indisvalid FROM pg_index x WHERE x.indexrelid = c.oid) END,
         CASE WHEN c.relkind IN ('r', 'p') THEN
              CASE WHEN c.relrowsecurity THEN 'rls' ELSE '' END || CASE WHEN c.relforcerowsecurity THEN ' force' ELSE '' END
         END
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'i', 'I') AND {n}
  UNION ALL
  SELECT 'pg_type'::regclass, t.oid, n.nspname,
         CASE t.typtype WHEN 'e' THEN 'enum (' || coalesce((SELECT string_agg(quote_literal(e.enumlabel), ', '
                                                                 ORDER BY e.enumsortorder)
                                                            FROM pg_enum e WHERE e.enumtypid = t.oid), '') || ')'
                        WHEN 'd' THEN 'domain ' || format_type(t.typbasetype, t.typtypmod)
                                      || CASE WHEN t.typnotnull THEN ' not null' ELSE '' END
                        WHEN 'r' THEN 'range ' || coalesce((SELECT format_type(r.rngsubtype, NULL) FROM pg_range r
                                                            WHERE r.rngtypid = t.oid), '')
                        WHEN 'c' THEN 'composite (' || coalesce((
                            SELECT string_agg({qa} || ' ' || format_type(a.atttypid, a.atttypmod), ', '
                                              ORDER BY a.attnum)
                              FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0
                               AND NOT a.attisdropped), '') || ')'
                        ELSE t.typtype::text END,
         NULL::oid, NULL::bool, NULL::bool, NULL::text
    FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
   WHERE {n} AND t.typtype IN ('b', 'c', 'd', 'e', 'r', 'p')
     AND (t.typrelid = 0 OR (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c')
     AND NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.typarray = t.oid)
  UNION ALL
  SELECT 'pg_proc'::regclass, p.oid, n.nspname,
         p.prokind::text || ' ' || format_type(p.prorettype, NULL) || ' ' || l.lanname || ' ' || md5(p.prosrc),
         NULL::oid, NULL::bool, NULL::bool, NULL::text
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang
   WHERE {n}
  UNION ALL
  SELECT 'pg_constraint'::regclass, co.oid, n.nspname,
         co.contype::text || coalesce(' (' || (SELECT string_agg({qa}, ', ' ORDER BY k.i)
                                              FROM unnest(co.conkey) WITH ORDINALITY k(attnum, i)
                                              JOIN pg_attribute a ON a.attrelid = co.conrelid AND a.attnum = k.attnum)
                                       || ')', ''),
         nullif(co.conrelid, 0), NULL::bool, co.convalidated, NULL::text
    FROM pg_constraint co JOIN pg_namespace n ON n.oid = co.connamespace
   WHERE {n} AND co.contype <> 'n' AND NOT (co.contype = 'f' AND co.conparentid <> 0)
  UNION ALL
  SELECT 'pg_attrdef'::regclass, d.oid, n.nspname, '', d.adrelid, NULL::bool, NULL::bool, NULL::text
    FROM pg_attrdef d JOIN pg_class c ON c.oid = d.adrelid JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE {n}
  UNION ALL
  SELECT 'pg_trigger'::regclass, tg.oid, n.nspname, '', tg.tgrelid, NULL::bool, NULL::bool, tg.tgenabled::text
    FROM pg_trigger tg JOIN pg_class c ON c.oid = tg.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE {n} AND NOT tg.tgisinternal
  UNION ALL
  SELECT 'pg_rewrite'::regclass, r.oid, n.nspname, '', r.ev_class, NULL::bool, NULL::bool, r.ev_enabled::text
    FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE {n} AND r.rulename <> '_RETURN'
  UNION ALL
  SELECT 'pg_policy'::regclass, po.oid, n.nspname, '', po.polrelid, NULL::bool, NULL::bool, NULL::text
    FROM pg_policy po JOIN pg_class c ON c.oid = po.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE {n}
  UNION ALL
  SELECT 'pg_statistic_ext'::regclass, s.oid, n.nspname, '', s.stxrelid, NULL::bool, NULL::bool, NULL::text
    FROM pg_statistic_ext s JOIN pg_namespace n ON n.oid = s.stxnamespace
   WHERE {n}
  UNION ALL
  SELECT 'pg_collation'::regclass, co.oid, n.nspname, '', NULL::oid, NULL::bool, NULL::bool, NULL::text
    FROM pg_collation co JOIN pg_namespace n ON n.oid = co.collnamespace
   WHERE {n}
  UNION ALL
  SELECT 'pg_default_acl'::regclass, d.oid, n.nspname, '', NULL::oid, NULL::bool, NULL::bool, NULL::text
    FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace
  UNION ALL
  SELECT 'pg_extension'::regclass, e.oid, NULL::name, e.extversion, NULL::oid, NULL::bool, NULL::bool, NULL::text
    FROM pg_extension e
  UNION ALL
  SELECT 'pg_event_trigger'::regclass, e.oid, NULL::name, '', NULL::oid, NULL::bool, NULL::bool,
         e.evtenabled::text
    FROM pg_event_trigger e
)
SELECT o.classid::oid::bigint AS classid, o.objid::bigint AS objid, o.schema, o.sig, o.attached, o.valid,
       o.enabled, i.type, i.identity, {ref} AS ref,
       obj_description(o.objid, o.classid::regclass::text) AS description
  FROM objs o, LATERAL pg_identify_object(o.classid, o.objid, 0) i
 WHERE NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = o.classid AND d.objid = o.objid AND d.deptype = 'e')
   AND (o.rel IS NULL OR NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                                     AND d.objid = o.rel AND d.deptype = 'e'))
""".format(n=USER_SCHEMA.format(n="n"), ref=ref_sql("o.classid", "o.objid"), qa=display_ident_sql("a.attname"),
           qtn=display_ident_sql("tn.nspname"), qt=display_ident_sql("t.relname"))

# Catalog facts about the source objects named in the archive's table of contents.
SOURCE_OBJECTS_SQL = """
SELECT t.classid::bigint AS classid, t.objid::bigint AS objid, i.type, i.identity, f.nspname, f.owner, f.ref,
       a.type AS address_type, a.object_names, a.object_args,
       co.contype::text AS contype, co.convalidated,
       CASE WHEN co.conindid <> 0 THEN {index_ref} END AS index_ref,
       EXISTS (SELECT 1 FROM pg_inherits h WHERE co.conindid <> 0 AND h.inhrelid = co.conindid) AS index_parent,
       c.relkind::text AS relkind, c.relispartition AS is_partition,
       x.indisreplident AS replident,
       EXISTS (SELECT 1 FROM pg_inherits h WHERE t.classid = 'pg_class'::regclass AND h.inhrelid = t.objid
                  AND c.relkind IN ('i', 'I')) AS parent,
       (SELECT e.extname FROM pg_extension e WHERE t.classid = 'pg_extension'::regclass AND e.oid = t.objid)
         AS extname,
       (SELECT pg_get_userbyid(r.relowner) FROM pg_statistic_ext s JOIN pg_class r ON r.oid = s.stxrelid
         WHERE t.classid = 'pg_statistic_ext'::regclass AND s.oid = t.objid) AS table_owner
  FROM unnest(%(classids)s::oid[], %(objids)s::oid[]) AS t(classid, objid)
  CROSS JOIN LATERAL pg_identify_object(t.classid, t.objid, 0) i
  CROSS JOIN LATERAL pg_identify_object_as_address(t.classid, t.objid, 0) a
  CROSS JOIN {facts} f
  LEFT JOIN pg_constraint co ON t.classid = 'pg_constraint'::regclass AND co.oid = t.objid
  LEFT JOIN pg_class c ON t.classid = 'pg_class'::regclass AND c.oid = t.objid
  LEFT JOIN pg_index x ON t.classid = 'pg_class'::regclass AND x.indexrelid = t.objid
""".format(facts=facts_sql("t.classid", "t.objid"), index_ref=ref_sql("'pg_class'::regclass", "co.conindid"))

SCHEMAS_SQL = ("SELECT n.nspname AS name FROM pg_namespace n WHERE " + USER_SCHEMA.format(n="n")
               + " AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_namespace'::regclass"
               " AND d.objid = n.oid AND d.deptype = 'e') ORDER BY 1")


def migrated_schemas(all_schemas, include_schemas, exclude_schemas):
    include = list(include_schemas or [])
    exclude = set(exclude_schemas or [])
    return set(s for s in all_schemas if (not include or s in include) and s not in exclude)


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


# --------------------------------------------------------------------------------------------
# Database and roles
# --------------------------------------------------------------------------------------------

def database_sql(version_num):
    """The source database's properties, as far as its version knows them."""
    provider = "d.datlocprovider::text" if version_num >= 150000 else "'c'::text"
    if version_num >= 170000:
        locale = "d.datlocale"
    elif version_num >= 150000:
        locale = "d.daticulocale"
    else:
        locale = "NULL::text"
    rules = "d.daticurules" if version_num >= 160000 else "NULL::text"
    return (
        "SELECT d.datname AS name, pg_encoding_to_char(d.encoding) AS encoding, d.datcollate AS collate, "
        "d.datctype AS ctype, " + provider + " AS locale_provider, " + locale + " AS locale, "
        + rules + " AS icu_rules, pg_get_userbyid(d.datdba) AS owner, d.datconnlimit AS connection_limit, "
        "ARRAY(SELECT json_build_object('grantee', CASE WHEN a.grantee <> 0 THEN pg_get_userbyid(a.grantee) END, "
        "                               'privilege', a.privilege_type) "
        "      FROM aclexplode(d.datacl) a WHERE a.grantee <> d.datdba "
        "     ORDER BY a.grantee <> 0, pg_get_userbyid(a.grantee), a.privilege_type) AS acl, "
        "d.datacl IS NOT NULL AS has_acl, "
        "ARRAY(SELECT unnest(s.setconfig) FROM pg_db_role_setting s "
        "      WHERE s.setdatabase = d.oid AND s.setrole = 0) AS settings "
        "FROM pg_database d WHERE d.datname = %(name)s"
    )


PROVIDERS = dict(c="libc", i="icu", b="builtin")


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


def database_statement(name, source_db, target_version):
    """CREATE DATABASE as on the source (owner set afterwards, once the role exists); (statement, warnings)."""
    warnings = []
    parts = [sql.SQL("CREATE DATABASE {} WITH TEMPLATE template0 ENCODING {}").format(
        sql.Identifier(name), sql.Literal(source_db["encoding"]))]
    provider = PROVIDERS.get(source_db.get("locale_provider") or "c", "libc")
    if target_version >= 150000:
        parts.append(sql.SQL("LOCALE_PROVIDER {}").format(sql.SQL(provider)))
    elif provider != "libc":
        warnings.append("the source database uses the %s locale provider, the target (before PostgreSQL 15) only "
                        "libc: created with LC_COLLATE/LC_CTYPE only" % provider)
    parts.append(sql.SQL("LC_COLLATE {} LC_CTYPE {}").format(sql.Literal(source_db["collate"]),
                                                             sql.Literal(source_db["ctype"])))
    if provider == "icu" and target_version >= 150000 and source_db.get("locale"):
        parts.append(sql.SQL("ICU_LOCALE {}").format(sql.Literal(source_db["locale"])))
        if source_db.get("icu_rules") and target_version >= 160000:
            parts.append(sql.SQL("ICU_RULES {}").format(sql.Literal(source_db["icu_rules"])))
    if provider == "builtin":
        if target_version >= 170000:
            parts.append(sql.SQL("BUILTIN_LOCALE {}").format(sql.Literal(source_db.get("locale") or "C")))
        else:
            warnings.append("the source database uses the builtin locale provider, which the target does not have")
    if source_db.get("connection_limit") not in (None, -1):
        parts.append(sql.SQL("CONNECTION LIMIT {}").format(sql.Literal(int(source_db["connection_limit"]))))
    return sql.SQL(" ").join(parts), warnings


# GUCs whose value pg_dump writes unquoted (list syntax).
LIST_SETTINGS = frozenset(["search_path", "temp_tablespaces", "session_preload_libraries",
                           "shared_preload_libraries", "local_preload_libraries", "unix_socket_directories"])


def database_setting_statement(name, setting):
    """ALTER DATABASE name SET from one pg_db_role_setting entry ('work_mem=64MB')."""
    key, dummy, value = setting.partition("=")
    if key in LIST_SETTINGS:
        # A list value as stored ('"$user", public') is valid SQL syntax as it is.
        rendered = sql.SQL(value)
    else:
        rendered = sql.Literal(value)
    return sql.SQL("ALTER DATABASE {} SET {} = {}").format(sql.Identifier(name), sql.Identifier(key), rendered)


def database_acl_statements(name, source_db):
    """REVOKE/GRANT on the new database as on the source (nothing when the source keeps the defaults)."""
    if not source_db.get("has_acl"):
        return []
    stmts = [sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(name))]
    for item in source_db.get("acl") or []:
        privilege = item["privilege"]
        if privilege not in ("CONNECT", "CREATE", "TEMPORARY"):
            continue
        grantee = item.get("grantee")  # None: PUBLIC (a role may be named "PUBLIC": it is an identifier)
        target = sql.SQL("PUBLIC") if grantee is None else sql.Identifier(grantee)
        stmts.append(sql.SQL("GRANT {} ON DATABASE {} TO {}").format(sql.SQL(privilege), sql.Identifier(name), target))
    return stmts


def acl_grantees(source_db):
    """The roles the source database's privileges are granted to (PUBLIC is no role)."""
    return sorted(set(item["grantee"] for item in source_db.get("acl") or [] if item.get("grantee") is not None))


# Roles the migrated objects need: owners and grantees (and grantors) of everything in the
# migrated schemas, roles of policies, default privileges' roles, the database's owner.
NEEDED_ROLES_SQL = """
WITH objs AS (
  SELECT n.nspname AS schema, n.nspowner AS owner, n.nspacl AS acl FROM pg_namespace n
  UNION ALL
  SELECT n.nspname, c.relowner, c.relacl FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')
  UNION ALL
  SELECT n.nspname, NULL::oid, a.attacl FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace WHERE a.attacl IS NOT NULL
  UNION ALL
  SELECT n.nspname, p.proowner, p.proacl FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
  UNION ALL
  SELECT n.nspname, t.typowner, t.typacl FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
  UNION ALL
  SELECT n.nspname, s.stxowner, NULL::aclitem[] FROM pg_statistic_ext s JOIN pg_namespace n ON n.oid = s.stxnamespace
  UNION ALL
  SELECT n.nspname, co.collowner, NULL::aclitem[] FROM pg_collation co JOIN pg_namespace n ON n.oid = co.collnamespace
  UNION ALL
  SELECT n.nspname, o.oprowner, NULL::aclitem[] FROM pg_operator o JOIN pg_namespace n ON n.oid = o.oprnamespace
  UNION ALL
  SELECT coalesce(n.nspname, %(any_schema)s), d.defaclrole, d.defaclacl FROM pg_default_acl d
    LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace
  UNION ALL
  SELECT %(any_schema)s, e.evtowner, NULL::aclitem[] FROM pg_event_trigger e
  UNION ALL
  SELECT n.nspname, r, NULL::aclitem[] FROM pg_policy po JOIN pg_class c ON c.oid = po.polrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace, unnest(po.polroles) r
), roles AS (
  SELECT owner AS role FROM objs WHERE schema = ANY(%(schemas)s)
  UNION SELECT (aclexplode(acl)).grantee FROM objs WHERE schema = ANY(%(schemas)s) AND acl IS NOT NULL
  UNION SELECT (aclexplode(acl)).grantor FROM objs WHERE schema = ANY(%(schemas)s) AND acl IS NOT NULL
  UNION SELECT datdba FROM pg_database WHERE datname = current_database()
)
SELECT r.rolname AS name, r.rolsuper AS superuser, r.rolinherit AS inherit, r.rolcreaterole AS createrole,
       r.rolcreatedb AS createdb, r.rolcanlogin AS login, r.rolreplication AS replication,
       r.rolconnlimit AS connection_limit, r.rolbypassrls AS bypassrls,
       ARRAY(SELECT json_build_object('role', g.rolname, 'admin', m.admin_option)
               FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
              WHERE m.member = r.oid ORDER BY g.rolname) AS member_of
  FROM pg_roles r
 WHERE r.oid IN (SELECT role FROM roles WHERE role IS NOT NULL AND role <> 0) OR r.rolname = ANY(%(extra)s)
 ORDER BY r.rolname
"""

ANY_SCHEMA = "*"  # default privileges and event triggers that are not tied to a schema


def plan_roles(source_roles, target_existing, target_superuser):
    """The roles to create on the target, without passwords.

    source_roles: NEEDED_ROLES_SQL rows; target_existing: role names the target has.
    Built-in roles (pg_*) and roles the target has are left alone. SUPERUSER is never
    given (RDS and Aurora forbid it); REPLICATION and BYPASSRLS only when the target
    login is a superuser (a self-managed target): each dropped attribute is listed.
    Memberships are granted between roles that this run creates or the target has.
    """
    existing = set(target_existing)
    plan = []
    for r in source_roles:
        name = r["name"]
        if name in existing or name.startswith("pg_"):
            continue
        attrs = ["LOGIN" if r["login"] else "NOLOGIN", "INHERIT" if r["inherit"] else "NOINHERIT"]
        dropped = []
        if r.get("createdb"):
            attrs.append("CREATEDB")
        if r.get("createrole"):
            attrs.append("CREATEROLE")
        for flag, word in (("replication", "REPLICATION"), ("bypassrls", "BYPASSRLS")):
            if r.get(flag):
                if target_superuser:
                    attrs.append(word)
                else:
                    dropped.append(word)
        if r.get("superuser"):
            dropped.append("SUPERUSER")
        plan.append(dict(name=name, attributes=attrs, connection_limit=r.get("connection_limit"),
                         dropped_attributes=dropped, member_of=list(r.get("member_of") or [])))
    creatable = set(p["name"] for p in plan) | existing
    for p in plan:
        grants = []
        for item in p.pop("member_of"):
            if item["role"] in creatable and item["role"] != p["name"]:
                grants.append(dict(role=item["role"], admin=bool(item.get("admin"))))
        p["member_of"] = grants
    return plan


def role_statements(role):
    stmts = [sql.SQL("CREATE ROLE {} WITH {}").format(
        sql.Identifier(role["name"]), sql.SQL(" ").join(sql.SQL(a) for a in role["attributes"]))]
    if role.get("connection_limit") not in (None, -1):
        stmts[0] = sql.SQL("{} CONNECTION LIMIT {}").format(stmts[0], sql.Literal(int(role["connection_limit"])))
    return stmts


def membership_statement(role, grant):
    stmt = sql.SQL("GRANT {} TO {}").format(sql.Identifier(grant["role"]), sql.Identifier(role))
    if grant.get("admin"):
        stmt = sql.SQL("{} WITH ADMIN OPTION").format(stmt)
    return stmt


# --------------------------------------------------------------------------------------------
# What a target login that is not a superuser needs (the RDS/Aurora master user)
# --------------------------------------------------------------------------------------------

def owner_requirements(entries):
    """What restoring these entries asks of the roles that will own them.

    Returns dict(roles=set of role names the target login must act as: pg_restore gives each object to
    its owner (ALTER ... OWNER TO needs SET ROLE to it) and grants privileges, comments and sets default
    privileges as that owner (privileges of the role: INHERIT); creates=set of (role, schema): the role
    will own an object in that schema and needs CREATE on it, or (role, None) for a schema it will own,
    which needs CREATE on the database). Roles and schemas are names as the catalog holds them.
    """
    roles, creates = set(), set()
    for e in entries:
        owner = e.get("owner")
        if not owner or e.get("class") == PG_EXTENSION:
            continue  # CREATE EXTENSION makes the login its owner on the target, whoever owns it on the source
        roles.add(owner)
        info = e.get("info") or {}
        if e.get("classid") not in OWNED_CLASSES or (e["classid"] == PG_CLASS and info.get("relkind") in ("i", "I")):
            continue
        if e["classid"] == PG_NAMESPACE:
            creates.add((owner, None))
        elif e.get("schema") is not None:
            creates.add((owner, e["schema"]))
    return dict(roles=roles, creates=creates)


def post_requirements(held):
    """The roles whose privileges the post stage needs: the owners of the tables (and domains) it builds
    indexes, constraints, triggers, rules, policies and statistics on. Event triggers need a superuser."""
    roles = set()
    for e in held:
        if e["desc"] == "EVENT TRIGGER":
            continue
        owner = (e.get("info") or {}).get("table_owner") if e["desc"] == "STATISTICS" else e.get("owner")
        if owner:
            roles.add(owner)
    return dict(roles=roles, creates=set())


def role_grant_sql(role, member, version):
    """GRANT role TO member so that member can both SET ROLE to it and use its privileges."""
    stmt = sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), member)
    if version >= 160000:
        stmt = sql.SQL("{} WITH INHERIT TRUE, SET TRUE").format(stmt)
    return stmt


def plan_privileges(needs, login, roles, created, database, schemas, version):
    """What the target login must be given before the schema copy changes anything, or what stops it.

    needs: owner_requirements() (plus grantable=set of existing roles plan_roles grants to others);
    login: dict(name, superuser, createdb, createrole) of the target login; roles: {name: dict(set, usage,
    admin, superuser)} of the needed roles that exist on the target (can the login SET ROLE to it, use its
    privileges, grant it); created: roles this run creates (on 16+ the creator holds ADMIN OPTION on them);
    database: dict(name, exists, owner (on the target), source_owner, create=set of roles with CREATE on it);
    schemas: {name: dict(owner, create=set of roles with CREATE on it)} of the target's existing schemas the
    restore puts objects in, restored: {schema: owner} the restore creates (database.restored_schemas);
    version: the target's server_version_num.

    Returns dict(grants=[roles to grant to the login (role_grant_sql)], database_owner=the role to give the
    existing target database to (its owner is the login: it was created by the master user, as Aurora's
    DatabaseName does; the source's is another) or None, problems=[dict(problem, sql)]): when problems is
    not empty nothing may be changed; each names the SQL that solves it.
    """
    problems, grants = [], []
    member = sql.Identifier(login["name"])
    db_owner_after = database.get("owner") if database.get("exists") else database.get("source_owner")
    database_owner = None
    if database.get("exists") and database.get("owner") == login["name"] and database.get("source_owner") \
            and database["source_owner"] != login["name"] and (login.get("createdb") or login.get("superuser")):
        database_owner = db_owner_after = database["source_owner"]
    if login.get("superuser"):
        return dict(grants=[], database_owner=database_owner, problems=[])
    wanted = set(needs.get("roles") or ())
    if database_owner:
        wanted.add(database_owner)
    for name in sorted(wanted):
        if name == login["name"] or name.startswith("pg_"):
            continue
        facts = roles.get(name)
        if facts is None and name not in created:
            continue  # missing on the target and not created: pg_restore says so (create_roles)
        if facts is not None and facts.get("set") and facts.get("usage"):
            continue
        if name in created or (facts or {}).get("admin") or (
                version < 160000 and login.get("createrole") and not (facts or {}).get("superuser")):
            grants.append(name)
            continue
        problems.append(dict(
            problem="the target login %s cannot act as role %s (objects of the schema are given to it and granted "
                    "as it) and cannot grant that role to itself (no ADMIN OPTION on it): run this as a role that "
                    "has ADMIN OPTION on %s (the role that created it, or the operator)" % (
                        scope.quote_ident(login["name"]), scope.quote_ident(name), scope.quote_ident(name)),
            sql=role_grant_sql(name, member, version)))
    for name in sorted(set(needs.get("grantable") or ()) - set(created)):
        facts = roles.get(name) or {}
        if facts.get("admin") or (version < 160000 and login.get("createrole") and not facts.get("superuser")):
            continue
        problems.append(dict(
            problem="the schema copy grants role %s to roles it creates, and the target login %s has no ADMIN "
                    "OPTION on it: run this as a role that has it" % (scope.quote_ident(name),
                                                                      scope.quote_ident(login["name"])),
            sql=sql.SQL("GRANT {} TO {} WITH ADMIN OPTION").format(sql.Identifier(name), member)))
    restored = database.get("restored_schemas") or {}
    for role, schema_name in sorted(needs.get("creates") or (), key=lambda x: (x[0], x[1] or "")):
        if schema_name is None:
            if role == db_owner_after or role in (database.get("create") or ()) or not database.get("exists"):
                continue  # (a new database: its owner is the source's; the others are granted by the restore)
            problems.append(dict(
                problem="role %s will own a schema but has no CREATE privilege on the target database %s" % (
                    scope.quote_ident(role), scope.quote_ident(database["name"])),
                sql=sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
                    sql.Identifier(database["name"]), sql.Identifier(role))))
        elif schema_name in restored:
            if restored[schema_name] == role:
                continue
            problems.append(dict(
                problem="role %s will own objects in schema %s, which the restore creates for %s: pg_restore gives "
                        "schema privileges last, so create the schema and grant CREATE on it first (a second run "
                        "then leaves the schema as it is)" % (scope.quote_ident(role), scope.quote_ident(schema_name),
                                                              scope.quote_ident(restored[schema_name])),
                sql=sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}; GRANT CREATE ON SCHEMA {} TO {}").format(
                    sql.Identifier(schema_name), sql.Identifier(restored[schema_name]), sql.Identifier(schema_name),
                    sql.Identifier(role))))
        elif schema_name in schemas:
            target_schema = schemas[schema_name]
            if role == target_schema.get("owner") or role in (target_schema.get("create") or ()) or (
                    target_schema.get("owner") == "pg_database_owner" and role == db_owner_after):
                continue
            problems.append(dict(
                problem="role %s will own objects in schema %s of the target database %s but has no CREATE "
                        "privilege on that schema (ALTER ... OWNER TO needs it)" % (
                            scope.quote_ident(role), scope.quote_ident(schema_name),
                            scope.quote_ident(database["name"])),
                sql=sql.SQL("GRANT CREATE ON SCHEMA {} TO {}").format(
                    sql.Identifier(schema_name), sql.Identifier(role))))
    return dict(grants=grants, database_owner=database_owner, problems=problems)


RESTORE_PRIVILEGE_HINT = (
    "The target login lacked a privilege during the restore. As a login that is not a superuser it must be able to "
    "SET ROLE to (and have the privileges of) every role the schema's objects belong to, and each of those roles "
    "needs CREATE on the schemas its objects go to (CREATE on the database for a schema it owns). The database was "
    "created or kept, nothing of the schema was restored: grant what is missing on the target and run again.")


def privilege_message(problems, login, conn=None):
    """The error for plan_privileges() problems: what is missing and the SQL to run, nothing changed."""
    lines = ["the target login %s lacks privileges the schema copy needs; nothing was changed. Run this SQL on the "
             "target, then run again:" % scope.quote_ident(login)]
    for p in problems:
        lines.append("- %s:\n    %s;" % (p["problem"], p["sql"].as_string(conn)))
    return "\n".join(lines)


# What the target login can do with the roles the schema copy needs (ROLE_FACTS_SQL[version >= 16]).
ROLE_FACTS_SQL = {
    True: """
SELECT r.rolname AS name, r.rolsuper AS superuser, pg_has_role(current_user, r.oid, 'SET') AS set,
       pg_has_role(current_user, r.oid, 'USAGE') AS usage,
       pg_has_role(current_user, r.oid, 'USAGE WITH ADMIN OPTION') AS admin
  FROM pg_roles r WHERE r.rolname = ANY(%(roles)s)
""",
    False: """
SELECT r.rolname AS name, r.rolsuper AS superuser, pg_has_role(current_user, r.oid, 'MEMBER') AS set,
       pg_has_role(current_user, r.oid, 'USAGE') AS usage,
       pg_has_role(current_user, r.oid, 'USAGE WITH ADMIN OPTION') AS admin
  FROM pg_roles r WHERE r.rolname = ANY(%(roles)s)
""",
}

LOGIN_FACTS_SQL = ("SELECT current_user AS name, rolsuper AS superuser, rolcreatedb AS createdb, "
                   "rolcreaterole AS createrole FROM pg_roles WHERE rolname = current_user")

# The target database's owner and which of some roles may create schemas in it.
DATABASE_FACTS_SQL = """
SELECT pg_get_userbyid(d.datdba) AS owner,
       ARRAY(SELECT r.rolname FROM pg_roles r WHERE r.rolname = ANY(%(roles)s)
                AND has_database_privilege(r.oid, d.oid, 'CREATE')) AS create
  FROM pg_database d WHERE d.datname = %(name)s
"""

# Schemas of the target database: owner and which of some roles may create in them.
SCHEMA_FACTS_SQL = """
SELECT n.nspname AS name, pg_get_userbyid(n.nspowner) AS owner,
       ARRAY(SELECT r.rolname FROM pg_roles r WHERE r.rolname = ANY(%(roles)s)
                AND has_schema_privilege(r.oid, n.oid, 'CREATE')) AS create
  FROM pg_namespace n WHERE n.nspname = ANY(%(schemas)s)
"""

# Tables pg_dump locks (ACCESS SHARE: SELECT, and USAGE on their schema) that the source login cannot,
# by owner: pg_dump would stop on the first one.
UNREADABLE_TABLES_SQL = """
SELECT pg_get_userbyid(c.relowner) AS owner, count(*) AS tables,
       (array_agg(json_build_array(n.nspname, c.relname) ORDER BY n.nspname, c.relname))[1:3] AS examples
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND {n}
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                   AND d.deptype = 'e')
   AND NOT (has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'SELECT'))
 GROUP BY c.relowner ORDER BY 1
""".format(n=USER_SCHEMA.format(n="n"))


def unreadable_message(rows, login, version):
    """The error when the source login cannot lock tables pg_dump dumps (UNREADABLE_TABLES_SQL rows)."""
    lines = ["pg_dump cannot dump the source: the source login %s cannot read (lock) %d table(s); nothing was "
             "changed. Make it a member of their owner on the source (as a role with ADMIN OPTION on it, the role "
             "that created it, or the master user that did), then run again:" % (
                 scope.quote_ident(login), sum(r["tables"] for r in rows))]
    for r in rows:
        examples = ", ".join(scope.qualified(s, n) for s, n in r["examples"] or [])
        grant = sql.SQL("GRANT {} TO {}").format(sql.Identifier(r["owner"]), sql.Identifier(login))
        if version >= 160000:
            grant = sql.SQL("{} WITH INHERIT TRUE").format(grant)
        more = ", ..." if r["tables"] > len(r["examples"] or []) else ""
        lines.append("- %d table(s) of %s (%s%s):\n    %s;" % (
            r["tables"], scope.quote_ident(r["owner"]), examples, more, grant.as_string(None)))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# What logical replication does not carry
# --------------------------------------------------------------------------------------------

SEQUENCES_SQL = """
SELECT n.nspname AS schema, c.relname AS name,
       (SELECT json_build_array(tn.nspname, t.relname, a.attname)
          FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
          JOIN pg_class t ON t.oid = d.refobjid JOIN pg_namespace tn ON tn.oid = t.relnamespace
         WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass
           AND d.deptype IN ('a', 'i') LIMIT 1) AS owned_by,
       EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                AND d.deptype = 'i') AS identity
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'S' AND n.nspname = ANY(%(schemas)s)
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                   AND d.deptype = 'e')
 ORDER BY 1, 2
"""

LARGE_OBJECTS_SQL = "SELECT count(*) AS n FROM pg_largeobject_metadata"


def column_label(column):
    """[schema, table, column] as separate values -> 'schema.table.column', quoted for display (None stays None)."""
    if not column:
        return None
    return "%s.%s" % (scope.qualified(column[0], column[1]), scope.quote_ident(column[2]))


def not_replicated(relations, sequences, large_objects):
    """What logical replication cannot carry, from the in-scope relations (scope.select rows)."""
    return dict(
        unlogged_tables=[r["qualified"] for r in relations if r.get("persistence") == "u"
                         and r["relkind"] in ("r", "p")],
        materialized_views=[r["qualified"] for r in relations if r["relkind"] == "m"],
        foreign_tables=[r["qualified"] for r in relations if r["relkind"] == "f"],
        large_objects=int(large_objects or 0),
        sequences=[dict(sequence=scope.qualified(s["schema"], s["name"]), owned_by=column_label(s.get("owned_by")),
                        identity=bool(s.get("identity"))) for s in sequences],
    )


# --------------------------------------------------------------------------------------------
# The post stage
# --------------------------------------------------------------------------------------------

# Details of the held-back objects, read on the source with search_path = '' so that every
# definition pg_get_*def() returns is schema-qualified.
POST_DETAILS_SQL = dict(
    indexes="""
SELECT c.oid::bigint AS oid, i.identity, {ref_class} AS ref, n.nspname AS schema, c.relname AS name,
       c.relkind::text AS index_kind,
       pg_get_indexdef(c.oid) AS def, x.indisvalid AS valid, x.indisunique AS is_unique,
       t.relname AS table_name, tn.nspname AS table_schema, t.relkind::text AS table_kind,
       pg_relation_size(t.oid) AS table_bytes,
       (SELECT pi.identity FROM pg_inherits h, LATERAL pg_identify_object('pg_class'::regclass, h.inhparent, 0) pi
         WHERE h.inhrelid = c.oid) AS parent,
       (SELECT pn.nspname FROM pg_inherits h JOIN pg_class p ON p.oid = h.inhparent
          JOIN pg_namespace pn ON pn.oid = p.relnamespace WHERE h.inhrelid = c.oid) AS parent_schema,
       (SELECT p.relname FROM pg_inherits h JOIN pg_class p ON p.oid = h.inhparent
         WHERE h.inhrelid = c.oid) AS parent_name,
       (WITH RECURSIVE up(oid, depth) AS (SELECT c.oid, 0 UNION ALL
            SELECT h.inhparent, up.depth + 1 FROM pg_inherits h JOIN up ON h.inhrelid = up.oid)
        SELECT max(depth) FROM up) AS depth,
       obj_description(c.oid, 'pg_class') AS description
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_index x ON x.indexrelid = c.oid
  JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace tn ON tn.oid = t.relnamespace,
  LATERAL pg_identify_object('pg_class'::regclass, c.oid, 0) i
 WHERE c.oid = ANY(%(oids)s::oid[])
""",
    constraints="""
SELECT co.oid::bigint AS oid, i.identity, i.type, {ref_constraint} AS ref, co.conname AS name,
       co.contype::text AS contype,
       co.convalidated, pg_get_constraintdef(co.oid) AS def,
       tn.nspname AS table_schema, t.relname AS table_name, t.relkind::text AS table_kind,
       coalesce(pg_relation_size(nullif(co.conrelid, 0)), 0) AS table_bytes,
       dn.nspname AS domain_schema, dt.typname AS domain_name,
       (SELECT ii.identity FROM pg_identify_object('pg_class'::regclass, co.conindid, 0) ii
         WHERE co.conindid <> 0) AS index,
       CASE WHEN co.conindid <> 0 THEN {ref_index} END AS index_ref,
       EXISTS (SELECT 1 FROM pg_inherits h WHERE co.conindid <> 0 AND h.inhrelid = co.conindid) AS index_parent,
       (SELECT ic.relname FROM pg_class ic WHERE co.conindid <> 0 AND ic.oid = co.conindid) AS index_name,
       (SELECT pn.nspname FROM pg_inherits h JOIN pg_class p ON p.oid = h.inhparent
          JOIN pg_namespace pn ON pn.oid = p.relnamespace
         WHERE co.conindid <> 0 AND h.inhrelid = co.conindid) AS index_parent_schema,
       (SELECT p.relname FROM pg_inherits h JOIN pg_class p ON p.oid = h.inhparent
         WHERE co.conindid <> 0 AND h.inhrelid = co.conindid) AS index_parent_name,
       obj_description(co.oid, 'pg_constraint') AS description
  FROM pg_constraint co
  LEFT JOIN pg_class t ON t.oid = co.conrelid LEFT JOIN pg_namespace tn ON tn.oid = t.relnamespace
  LEFT JOIN pg_type dt ON dt.oid = co.contypid LEFT JOIN pg_namespace dn ON dn.oid = dt.typnamespace,
  LATERAL pg_identify_object('pg_constraint'::regclass, co.oid, 0) i
 WHERE co.oid = ANY(%(oids)s::oid[])
""",
    triggers="""
SELECT tg.oid::bigint AS oid, i.identity, {ref_trigger} AS ref, tg.tgname AS name, tg.tgenabled::text AS enabled,
       pg_get_triggerdef(tg.oid) AS def, n.nspname AS table_schema, c.relname AS table_name,
       obj_description(tg.oid, 'pg_trigger') AS description
  FROM pg_trigger tg JOIN pg_class c ON c.oid = tg.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace,
  LATERAL pg_identify_object('pg_trigger'::regclass, tg.oid, 0) i
 WHERE tg.oid = ANY(%(oids)s::oid[])
""",
    # Triggers cloned on partitions from their partitioned table's: their enabled state may differ.
    trigger_clones="""
SELECT tg.tgname AS name, tg.tgenabled::text AS enabled, n.nspname AS table_schema, c.relname AS table_name,
       i.identity, {ref_trigger} AS ref, p.tgenabled::text AS parent_enabled
  FROM pg_trigger tg JOIN pg_trigger p ON p.oid = tg.tgparentid
  JOIN pg_class c ON c.oid = tg.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace,
  LATERAL pg_identify_object('pg_trigger'::regclass, tg.oid, 0) i
 WHERE tg.tgparentid <> 0 AND NOT tg.tgisinternal AND p.oid = ANY(%(oids)s::oid[])
""",
    rules="""
SELECT r.oid::bigint AS oid, i.identity, {ref_rule} AS ref, r.rulename AS name, r.ev_enabled::text AS enabled,
       pg_get_ruledef(r.oid) AS def, n.nspname AS table_schema, c.relname AS table_name,
       obj_description(r.oid, 'pg_rewrite') AS description
  FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace,
  LATERAL pg_identify_object('pg_rewrite'::regclass, r.oid, 0) i
 WHERE r.oid = ANY(%(oids)s::oid[])
""",
    policies="""
SELECT po.oid::bigint AS oid, i.identity, {ref_policy} AS ref, po.polname AS name, po.polpermissive AS permissive,
       po.polcmd::text AS cmd,
       ARRAY(SELECT CASE WHEN r = 0 THEN 'public' ELSE pg_get_userbyid(r) END FROM unnest(po.polroles) r
             ORDER BY 1) AS roles,
       pg_get_expr(po.polqual, po.polrelid) AS qual, pg_get_expr(po.polwithcheck, po.polrelid) AS with_check,
       n.nspname AS table_schema, c.relname AS table_name,
       obj_description(po.oid, 'pg_policy') AS description
  FROM pg_policy po JOIN pg_class c ON c.oid = po.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace,
  LATERAL pg_identify_object('pg_policy'::regclass, po.oid, 0) i
 WHERE po.oid = ANY(%(oids)s::oid[])
""",
    row_security="""
SELECT c.oid::bigint AS oid, i.identity, {ref_class} AS ref, n.nspname AS table_schema, c.relname AS table_name,
       c.relrowsecurity AS enabled, c.relforcerowsecurity AS forced
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
  LATERAL pg_identify_object('pg_class'::regclass, c.oid, 0) i
 WHERE c.oid = ANY(%(oids)s::oid[])
""",
    statistics="""
SELECT s.oid::bigint AS oid, i.identity, {ref_statistics} AS ref, n.nspname AS schema, s.stxname AS name,
       pg_get_statisticsobjdef(s.oid) AS def, obj_description(s.oid, 'pg_statistic_ext') AS description
  FROM pg_statistic_ext s JOIN pg_namespace n ON n.oid = s.stxnamespace,
  LATERAL pg_identify_object('pg_statistic_ext'::regclass, s.oid, 0) i
 WHERE s.oid = ANY(%(oids)s::oid[])
""",
    event_triggers="""
SELECT e.oid::bigint AS oid, i.identity, {ref_event} AS ref, e.evtname AS name, e.evtevent AS event, e.evttags AS tags,
       e.evtenabled::text AS enabled, pn.nspname AS function_schema, p.proname AS function_name,
       obj_description(e.oid, 'pg_event_trigger') AS description
  FROM pg_event_trigger e JOIN pg_proc p ON p.oid = e.evtfoid JOIN pg_namespace pn ON pn.oid = p.pronamespace,
  LATERAL pg_identify_object('pg_event_trigger'::regclass, e.oid, 0) i
 WHERE e.oid = ANY(%(oids)s::oid[])
""",
)
_REFS = dict(ref_class=ref_sql("'pg_class'::regclass", "c.oid"),
             ref_constraint=ref_sql("'pg_constraint'::regclass", "co.oid"),
             ref_index=ref_sql("'pg_class'::regclass", "co.conindid"),
             ref_trigger=ref_sql("'pg_trigger'::regclass", "tg.oid"),
             ref_rule=ref_sql("'pg_rewrite'::regclass", "r.oid"), ref_policy=ref_sql("'pg_policy'::regclass", "po.oid"),
             ref_statistics=ref_sql("'pg_statistic_ext'::regclass", "s.oid"),
             ref_event=ref_sql("'pg_event_trigger'::regclass", "e.oid"))
POST_DETAILS_SQL = dict((kind, query.format(**_REFS)) for kind, query in POST_DETAILS_SQL.items())

# Which detail query serves a held-back entry, by its description.
POST_KIND_BY_DESC = {
    "INDEX": "indexes", "CONSTRAINT": "constraints", "CHECK CONSTRAINT": "constraints",
    "FK CONSTRAINT": "constraints", "TRIGGER": "triggers", "RULE": "rules", "POLICY": "policies",
    "ROW SECURITY": "row_security", "STATISTICS": "statistics", "EVENT TRIGGER": "event_triggers",
}


def post_oids(held):
    """{detail query: [source oids]} for the held-back entries the post stage builds."""
    wanted = {}
    for e in held:
        kind = POST_KIND_BY_DESC.get(e["desc"])
        if kind:
            wanted.setdefault(kind, []).append(e["objid"])
    if "triggers" in wanted:
        wanted["trigger_clones"] = list(wanted["triggers"])
    return wanted


_TRIGGER_STATE = dict(D="DISABLE TRIGGER", A="ENABLE ALWAYS TRIGGER", R="ENABLE REPLICA TRIGGER",
                      O="ENABLE TRIGGER")
_RULE_STATE = dict(D="DISABLE RULE", A="ENABLE ALWAYS RULE", R="ENABLE REPLICA RULE", O="ENABLE RULE")
_EVENT_STATE = dict(D="DISABLE", A="ENABLE ALWAYS", R="ENABLE REPLICA", O="ENABLE")
STATE_NAMES = dict(O="enabled (origin)", D="disabled", A="enabled always", R="enabled replica")
_POLICY_CMD = {"*": "ALL", "r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE"}


def _table(schema, name):
    return sql.Identifier(schema, name)


def _step(phase, kind, obj, statement, **extra):
    step = dict(phase=phase, kind=kind, object=obj, sql=statement)
    step.update(extra)
    return step


def _strip_not_valid(definition):
    if definition.endswith(" NOT VALID"):
        return definition[:-len(" NOT VALID")], True
    return definition, False


def build_post_plan(held, details, target):
    """The post stage's statements for what the target lacks, grouped in phases.

    held: the held-back entries (classify); details: {detail query: rows} read on the
    source (POST_DETAILS_SQL); target: {object_key: inventory row} of the target (inventory_map): objects
    are found there by their names as separate values (each row's ref), never by a formatted identity.
    Returns dict(steps=[...], existing=[identities already there], not_handled=[entries
    no builder covers], warnings=[...]). Each step: phase, kind, object, sql (psycopg
    Composable) and, for the parallel phases, weight (bytes of the table); index and
    exclusion constraint steps also name their table (scope.qualified), which a post
    stage waiting for the initial loads builds as soon as that table is loaded.

    Phases, in order:
      indexes_parent  partitioned indexes, created ON ONLY their table (instant, serial)
      indexes         every other index and exclusion constraint (parallel, largest table first)
      attach          ALTER INDEX ... ATTACH PARTITION, deepest level first (serial)
      constraints     foreign keys NOT VALID, NOT VALID checks (serial: short locks)
      validate        VALIDATE CONSTRAINT of the foreign keys valid on the source (parallel)
      objects         triggers and their enabled state, rules, policies, row security,
                      statistics, event triggers, comments (serial)
    """
    steps, existing, warnings, not_handled = [], [], [], []
    handled = set()
    index_rows = dict((r["oid"], r) for r in details.get("indexes", []))
    constraint_rows = dict((r["oid"], r) for r in details.get("constraints", []))
    attach = []
    comments = []

    def there(kind, row, ref="ref"):
        return target.get((kind, freeze(row.get(ref))))

    for e in held:
        if e["desc"] != "INDEX":
            continue
        r = index_rows.get(e["objid"])
        if r is None:
            continue
        handled.add(e["dump_id"])
        if not r["valid"] and r["index_kind"] == "i":
            warnings.append("index %s is invalid on the source (a failed CREATE INDEX CONCURRENTLY?): not copied"
                            % r["identity"])
            continue
        tgt = there("index", r)
        if tgt is not None and (tgt.get("valid") or r["index_kind"] == "I"):
            existing.append(r["identity"])
        else:
            if tgt is not None:  # an invalid leftover of an interrupted build: rebuilt
                steps.append(_step("indexes", "drop invalid index", r["identity"],
                                   sql.SQL("DROP INDEX {}").format(_table(r["schema"], r["name"])),
                                   weight=r["table_bytes"] or 0,
                                   table=scope.qualified(r["table_schema"], r["table_name"])))
            phase = "indexes_parent" if r["index_kind"] == "I" else "indexes"
            steps.append(_step(phase, "index", r["identity"], sql.SQL(r["def"]), weight=r["table_bytes"] or 0,
                               depth=r.get("depth") or 0, table=scope.qualified(r["table_schema"], r["table_name"])))
        if r.get("parent"):
            attach.append(dict(child=r["identity"], child_ref=r["ref"], child_sql=_table(r["schema"], r["name"]),
                               parent_sql=_table(r["parent_schema"], r["parent_name"]), depth=r.get("depth") or 0))
        if r.get("description") is not None:
            comments.append(("index", r, sql.SQL("COMMENT ON INDEX {} IS {}").format(
                _table(r["schema"], r["name"]), sql.Literal(r["description"]))))

    for e in held:
        if e["desc"] not in ("CONSTRAINT", "CHECK CONSTRAINT", "FK CONSTRAINT"):
            continue
        r = constraint_rows.get(e["objid"])
        if r is None:
            continue
        handled.add(e["dump_id"])
        on_domain = r.get("domain_name") is not None
        key = (r["type"], freeze(r["ref"]))
        tgt = target.get(key)
        if on_domain:
            owner = sql.SQL("DOMAIN {}").format(_table(r["domain_schema"], r["domain_name"]))
        else:
            owner = _table(r["table_schema"], r["table_name"])
        if r.get("description") is not None:
            comments.append((r["type"], r, sql.SQL("COMMENT ON CONSTRAINT {} ON {} IS {}").format(
                sql.Identifier(r["name"]), owner, sql.Literal(r["description"]))))
        if r["contype"] == "x":
            if tgt is not None:
                existing.append(r["identity"])
            else:
                only = sql.SQL("ONLY ") if r["table_kind"] in ("r", "p") else sql.SQL("")
                steps.append(_step("indexes_parent" if r["table_kind"] == "p" else "indexes",
                                   "exclusion constraint", r["identity"],
                                   sql.SQL("ALTER TABLE {}{} ADD CONSTRAINT {} {}").format(
                                       only, owner, sql.Identifier(r["name"]), sql.SQL(r["def"])),
                                   weight=r["table_bytes"] or 0, depth=0,
                                   table=scope.qualified(r["table_schema"], r["table_name"])))
            if r.get("index_parent"):
                attach.append(dict(child=r["index"], child_ref=r["index_ref"],
                                   child_sql=_table(r["table_schema"], r["index_name"]),
                                   parent_sql=_table(r["index_parent_schema"], r["index_parent_name"]), depth=1))
            continue
        definition, source_not_valid = _strip_not_valid(r["def"])
        if tgt is None:
            if on_domain:
                stmt = sql.SQL("ALTER DOMAIN {} ADD CONSTRAINT {} {} NOT VALID").format(
                    _table(r["domain_schema"], r["domain_name"]), sql.Identifier(r["name"]), sql.SQL(definition))
            else:
                only = sql.SQL("ONLY ") if (r["contype"] == "f" and r["table_kind"] == "r") else sql.SQL("")
                stmt = sql.SQL("ALTER TABLE {}{} ADD CONSTRAINT {} {} NOT VALID").format(
                    only, owner, sql.Identifier(r["name"]), sql.SQL(definition))
            plain = None
            if r["contype"] == "f" and r["table_kind"] == "p" and not source_not_valid:
                # Targets before PostgreSQL 18 refuse NOT VALID foreign keys on partitioned tables.
                plain = sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                    owner, sql.Identifier(r["name"]), sql.SQL(definition))
            steps.append(_step("constraints", "foreign key" if r["contype"] == "f" else "check constraint",
                               r["identity"], stmt, plain=plain, validate=not source_not_valid))
        else:
            existing.append(r["identity"])
        if not source_not_valid and (tgt is None or not tgt.get("valid")):
            steps.append(_step("validate", "validate constraint", r["identity"],
                               sql.SQL("ALTER {} {} VALIDATE CONSTRAINT {}").format(
                                   sql.SQL("DOMAIN") if on_domain else sql.SQL("TABLE"),
                                   _table(r["domain_schema"], r["domain_name"]) if on_domain
                                   else _table(r["table_schema"], r["table_name"]),
                                   sql.Identifier(r["name"])),
                               weight=r["table_bytes"] or 0))

    for e in held:
        if e["desc"] == "INDEX ATTACH":
            handled.add(e["dump_id"])
    for a in sorted(attach, key=lambda x: (-x["depth"], x["child"])):
        tgt = there("index", a, "child_ref")
        if tgt is not None and tgt.get("attached"):
            continue
        steps.append(_step("attach", "attach index", a["child"], sql.SQL("ALTER INDEX {} ATTACH PARTITION {}").format(
            a["parent_sql"], a["child_sql"])))

    for r in details.get("triggers", []):
        handled.update(e["dump_id"] for e in held if e["desc"] == "TRIGGER" and e["objid"] == r["oid"])
        table = _table(r["table_schema"], r["table_name"])
        tgt = there("trigger", r)
        if tgt is None:
            steps.append(_step("objects", "trigger", r["identity"], sql.SQL(r["def"])))
            current = "O"
        else:
            existing.append(r["identity"])
            current = tgt.get("enabled") or "O"
        if r["enabled"] != current:
            steps.append(_step("objects", "trigger state", r["identity"], sql.SQL("ALTER TABLE {} {} {}").format(
                table, sql.SQL(_TRIGGER_STATE[r["enabled"]]), sql.Identifier(r["name"])),
                state=STATE_NAMES.get(r["enabled"], r["enabled"])))
        if r["enabled"] in ("A", "R"):
            warnings.append("trigger %s is %s: it fires when logical replication applies changes on the target "
                            "(session_replication_role = replica does not stop it)" % (
                                r["identity"], STATE_NAMES[r["enabled"]]))
        if r.get("description") is not None:
            comments.append(("trigger", r, sql.SQL("COMMENT ON TRIGGER {} ON {} IS {}").format(
                sql.Identifier(r["name"]), table, sql.Literal(r["description"]))))
    for r in details.get("trigger_clones", []):
        # A partition's clone of a partitioned table's trigger takes the parent's state when the
        # parent's is set; mirror the clones whose state differs from what they will have.
        tgt = there("trigger", r)
        current = (tgt.get("enabled") or "O") if tgt is not None else r["parent_enabled"]
        if r["enabled"] == current:
            continue
        steps.append(_step("objects", "trigger state", r["identity"], sql.SQL("ALTER TABLE {} {} {}").format(
            _table(r["table_schema"], r["table_name"]), sql.SQL(_TRIGGER_STATE[r["enabled"]]),
            sql.Identifier(r["name"])), state=STATE_NAMES.get(r["enabled"], r["enabled"]), clone=True))

    for r in details.get("rules", []):
        handled.update(e["dump_id"] for e in held if e["desc"] == "RULE" and e["objid"] == r["oid"])
        table = _table(r["table_schema"], r["table_name"])
        tgt = there("rule", r)
        if tgt is None:
            steps.append(_step("objects", "rule", r["identity"], sql.SQL(r["def"].rstrip().rstrip(";"))))
            current = "O"
        else:
            existing.append(r["identity"])
            current = tgt.get("enabled") or "O"
        if r["enabled"] != current:
            steps.append(_step("objects", "rule state", r["identity"], sql.SQL("ALTER TABLE {} {} {}").format(
                table, sql.SQL(_RULE_STATE[r["enabled"]]), sql.Identifier(r["name"])),
                state=STATE_NAMES.get(r["enabled"], r["enabled"])))
        if r.get("description") is not None:
            comments.append(("rule", r, sql.SQL("COMMENT ON RULE {} ON {} IS {}").format(
                sql.Identifier(r["name"]), table, sql.Literal(r["description"]))))

    for r in details.get("policies", []):
        handled.update(e["dump_id"] for e in held if e["desc"] == "POLICY" and e["objid"] == r["oid"])
        table = _table(r["table_schema"], r["table_name"])
        if there("policy", r) is None:
            roles = sql.SQL(", ").join(sql.SQL("PUBLIC") if name == "public" else sql.Identifier(name)
                                       for name in r["roles"] or ["public"])
            parts = [sql.SQL("CREATE POLICY {} ON {} AS {} FOR {} TO {}").format(
                sql.Identifier(r["name"]), table, sql.SQL("PERMISSIVE" if r["permissive"] else "RESTRICTIVE"),
                sql.SQL(_POLICY_CMD.get(r["cmd"], "ALL")), roles)]
            if r.get("qual") is not None:
                parts.append(sql.SQL("USING ({})").format(sql.SQL(r["qual"])))
            if r.get("with_check") is not None:
                parts.append(sql.SQL("WITH CHECK ({})").format(sql.SQL(r["with_check"])))
            steps.append(_step("objects", "policy", r["identity"], sql.SQL(" ").join(parts)))
        else:
            existing.append(r["identity"])
        if r.get("description") is not None:
            comments.append(("policy", r, sql.SQL("COMMENT ON POLICY {} ON {} IS {}").format(
                sql.Identifier(r["name"]), table, sql.Literal(r["description"]))))

    for r in details.get("row_security", []):
        handled.update(e["dump_id"] for e in held if e["desc"] == "ROW SECURITY" and e["objid"] == r["oid"])
        table = _table(r["table_schema"], r["table_name"])
        tgt = there("table", r) or there("partitioned table", r) or {}
        state = (tgt.get("enabled") or "").split()
        if r["enabled"] and "rls" not in state:
            steps.append(_step("objects", "row security", r["identity"],
                               sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(table)))
        if r["forced"] and "force" not in state:
            steps.append(_step("objects", "row security", r["identity"],
                               sql.SQL("ALTER TABLE {} FORCE ROW LEVEL SECURITY").format(table)))

    for r in details.get("statistics", []):
        handled.update(e["dump_id"] for e in held if e["desc"] == "STATISTICS" and e["objid"] == r["oid"])
        if there("statistics object", r) is None:
            steps.append(_step("objects", "statistics", r["identity"], sql.SQL(r["def"])))
        else:
            existing.append(r["identity"])
        if r.get("description") is not None:
            comments.append(("statistics object", r, sql.SQL("COMMENT ON STATISTICS {} IS {}").format(
                _table(r["schema"], r["name"]), sql.Literal(r["description"]))))

    for r in details.get("event_triggers", []):
        handled.update(e["dump_id"] for e in held if e["desc"] == "EVENT TRIGGER" and e["objid"] == r["oid"])
        tgt = there("event trigger", r)
        if tgt is None:
            parts = [sql.SQL("CREATE EVENT TRIGGER {} ON {}").format(sql.Identifier(r["name"]), sql.SQL(r["event"]))]
            if r.get("tags"):
                parts.append(sql.SQL("WHEN TAG IN ({})").format(
                    sql.SQL(", ").join(sql.Literal(t) for t in r["tags"])))
            parts.append(sql.SQL("EXECUTE FUNCTION {}()").format(_table(r["function_schema"], r["function_name"])))
            steps.append(_step("objects", "event trigger", r["identity"], sql.SQL(" ").join(parts)))
            current = "O"
        else:
            existing.append(r["identity"])
            current = tgt.get("enabled") or "O"
        if r["enabled"] != current:
            steps.append(_step("objects", "event trigger state", r["identity"], sql.SQL("ALTER EVENT TRIGGER {} {}").format(
                sql.Identifier(r["name"]), sql.SQL(_EVENT_STATE[r["enabled"]])),
                state=STATE_NAMES.get(r["enabled"], r["enabled"])))
        if r.get("description") is not None:
            comments.append(("event trigger", r, sql.SQL("COMMENT ON EVENT TRIGGER {} IS {}").format(
                sql.Identifier(r["name"]), sql.Literal(r["description"]))))

    commented = set()
    for kind, row, stmt in comments:
        identity = row["identity"]
        tgt = there(kind, row)
        if tgt is not None and tgt.get("description") is not None:
            continue
        steps.append(_step("objects", "comment", identity, stmt))
        commented.add(identity)
    by_id = dict((e["dump_id"], e) for e in held)
    for e in held:
        if e["dump_id"] in handled:
            continue
        if e["desc"] == "COMMENT" and any(by_id.get(d, {}).get("dump_id") in handled for d in e["deps"]):
            continue
        not_handled.append(dict(kind=e["desc"].lower(), object=entry_label(e), reason=e["reason"]))
    return dict(steps=steps, existing=sorted(set(existing)), not_handled=not_handled, warnings=warnings)


PHASES = ["indexes_parent", "indexes", "attach", "constraints", "validate", "objects"]
PARALLEL_PHASES = frozenset(["indexes", "validate"])


def phase_steps(plan, phase):
    steps = [s for s in plan["steps"] if s["phase"] == phase]
    if phase in PARALLEL_PHASES:
        # Largest tables first: the long builds start early and the pool ends evenly.
        steps.sort(key=lambda s: -(s.get("weight") or 0))
    elif phase == "indexes_parent":
        steps.sort(key=lambda s: s.get("depth") or 0, reverse=True)
    return steps
