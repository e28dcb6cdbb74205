# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Schema I/O of pg_schema_copy (SQL): the catalog queries both sides answer (inventory, the archive's objects,
roles, privileges, the held-back objects' definitions) and the statements of the post stage.

Decisions are in module_utils/schema/ (toc, conflicts, predata, roles, postdata, schedule). Objects are named by
their names as separate values (ref_sql), never by a formatted identity.
"""

from __future__ import annotations

from ansible_collections.pgshift.aurora.plugins.module_utils import scope
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import loader, status
from ansible_collections.pgshift.aurora.plugins.module_utils._pg.connection import PgConnectError, connect
from ansible_collections.pgshift.aurora.plugins.module_utils._pg.db import first, one, rows, set_session
from ansible_collections.pgshift.aurora.plugins.module_utils.schema.schedule import StepFailed

try:
    from psycopg import errors as pg_errors
    from psycopg import sql
except ImportError:  # pragma: no cover - the module reports the missing library
    pg_errors = sql = None

POST_LOCK = "pgshift.schema_copy.post"  # the advisory lock one post stage holds on its target database

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


# --------------------------------------------------------------------------------------------
# Reads
# --------------------------------------------------------------------------------------------

def open_session(params, maintenance_work_mem=None):
    """A connection whose search_path is empty, so that every name pg_get_*def() and format_type() return is
    qualified; with maintenance_work_mem for the sessions that build indexes and validate constraints."""
    conn = connect(params)
    conn.execute("SET search_path = ''")
    if maintenance_work_mem:
        set_maintenance_work_mem(conn, maintenance_work_mem)
    return conn


def set_maintenance_work_mem(conn, value):
    conn.execute(sql.SQL("SET maintenance_work_mem = {}").format(sql.Literal(value)))


def server_version(conn):
    return one(conn, "SELECT current_setting('server_version_num')::int")


def database(conn, version, name):
    """The database's properties (database_sql), or None."""
    return first(conn, database_sql(version), dict(name=name))


def database_exists(conn, name):
    return bool(rows(conn, "SELECT 1 FROM pg_database WHERE datname = %s", (name,)))


def schema_names(conn):
    return [r["name"] for r in rows(conn, SCHEMAS_SQL)]


def sequences(conn, schemas):
    return rows(conn, SEQUENCES_SQL, dict(schemas=sorted(schemas)))


def large_objects(conn):
    return one(conn, LARGE_OBJECTS_SQL)


def unreadable_tables(conn):
    return rows(conn, UNREADABLE_TABLES_SQL)


def login(conn):
    """The login's name and attributes (LOGIN_FACTS_SQL)."""
    return first(conn, LOGIN_FACTS_SQL)


def inventory(conn):
    """Every object of the main catalogs in user schemas (INVENTORY_SQL rows)."""
    return rows(conn, INVENTORY_SQL)


def source_objects(conn, keys):
    """{(classid, objid): catalog facts} of the archive's catalog objects (SOURCE_OBJECTS_SQL)."""
    if not keys:
        return {}
    found = rows(conn, SOURCE_OBJECTS_SQL, dict(classids=[k[0] for k in keys], objids=[k[1] for k in keys]))
    return dict(((r["classid"], r["objid"]), r) for r in found)


def object_exists(conn, info):
    """Whether the target has an object of a catalog the inventory does not cover (an operator, a cast, ...),
    looked up by its address (pg_identify_object_as_address of the source)."""
    try:
        with conn.transaction():
            conn.execute("SELECT pg_get_object_address(%s, %s, %s)",
                         (info["address_type"], info["object_names"] or [], info["object_args"] or []))
        return True
    except pg_errors.Error:
        return False


def available_extensions(conn, names):
    return set(r["name"] for r in rows(conn, "SELECT name FROM pg_available_extensions WHERE name = ANY(%s)",
                                       (list(names),)))


def needed_roles(conn, schemas, extra, any_schema):
    """The roles the migrated objects need (NEEDED_ROLES_SQL rows)."""
    return rows(conn, NEEDED_ROLES_SQL, dict(schemas=sorted(schemas) + [any_schema], any_schema=any_schema,
                                             extra=extra))


def existing_roles(conn, names):
    return [r["rolname"] for r in rows(conn, "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (list(names),))]


def role_facts(conn, version, names):
    """{name: what the login can do with the role} (ROLE_FACTS_SQL)."""
    return dict((r["name"], r) for r in rows(conn, ROLE_FACTS_SQL[version >= 160000], dict(roles=names)))


def database_creators(conn, name, roles):
    """The roles among `roles` that may create schemas in the database (DATABASE_FACTS_SQL)."""
    found = first(conn, DATABASE_FACTS_SQL, dict(name=name, roles=roles))
    return set(found["create"]) if found else set()


def schema_facts(conn, roles, schemas):
    """{schema: dict(owner, create=set of the roles that may create in it)} (SCHEMA_FACTS_SQL)."""
    return dict((r["name"], dict(owner=r["owner"], create=set(r["create"])))
                for r in rows(conn, SCHEMA_FACTS_SQL, dict(roles=roles, schemas=schemas)))


def post_details(conn, wanted):
    """{detail query: rows} of the held-back objects (wanted: postdata.post_oids)."""
    return dict((kind, rows(conn, POST_DETAILS_SQL[kind], dict(oids=oids))) for kind, oids in wanted.items())


def try_post_lock(conn):
    """Take the post stage's session advisory lock on the target database if it is free."""
    return bool(one(conn, "SELECT pg_try_advisory_lock(hashtext(%s))", (POST_LOCK,)))


# --------------------------------------------------------------------------------------------
# The initial loads, seen from the post stage
# --------------------------------------------------------------------------------------------

def clock(conn):
    """The server's clock (epoch seconds), as pgshift.load_progress.finished_at."""
    return one(conn, "SELECT extract(epoch FROM now())::float8")


def observe_loads(conn, names):
    """What the post stage needs of the loads: (load_progress rows, deferred keys, the application names among
    `names` that have a session on the target)."""
    progress = loader.read_progress(conn, prefix="")
    keys = loader.deferred_keys(conn, prefix="")
    alive = set(r["application_name"] for r in rows(
        conn, "SELECT DISTINCT application_name FROM pg_stat_activity WHERE application_name = ANY(%s)",
        (list(names),)))
    return progress, keys, alive


MONITOR_TIMEOUT_MS = 5000  # a look at the index builds that takes longer is given up (the post stage goes on)


def open_monitor(params):
    """A session that only reads the progress views, each read cut short after MONITOR_TIMEOUT_MS."""
    conn = connect(params)
    set_session(conn, "statement_timeout", MONITOR_TIMEOUT_MS)
    return conn


def index_builds(conn, pids):
    """The index builds the sessions `pids` run now: [{'pid', 'table', 'index' (both qualified; index None until
    it is created), 'phase' and pg_stat_progress_create_index's counters}]."""
    out = []
    for b in rows(conn, "SELECT " + status.INDEX_BUILD_COLUMNS + "WHERE p.pid = ANY(%s) ORDER BY p.pid",
                  (list(pids),)):
        schema, table = b.pop("nspname"), b.pop("relname")
        b["table"] = scope.qualified(schema, table)
        b["index"] = scope.qualified(schema, b["index"]) if b["index"] else None
        out.append(b)
    return out


# --------------------------------------------------------------------------------------------
# Changes
# --------------------------------------------------------------------------------------------

def try_run(journal, conn, stmt):
    """Run a statement whose failure is only a warning: None, or the error's first line."""
    try:
        journal.run(conn, stmt)
        return None
    except pg_errors.Error as exc:
        return str(exc).strip().splitlines()[0]


def post_connect(params, maintenance_work_mem):
    """A post stage worker's session; a connection failure is a StepFailed of the scheduler."""
    try:
        return open_session(params, maintenance_work_mem)
    except PgConnectError as exc:
        raise StepFailed(str(exc))


def run_step(journal, conn, step, retry=None):
    """Run one post-stage step (postdata.build_post_plan) through the journal; returns the notes for the result.

    A VALIDATE CONSTRAINT whose foreign key finds a referenced row missing is tried again by
    retry(attempt, retryable) when given (schedule.retry_validation; recorded once); a foreign key NOT VALID
    that the target refuses on a partitioned table (before PostgreSQL 18) is added with its plain form
    (step["plain"]). A database error becomes StepFailed with its first line (secrets masked)."""
    notes = []
    try:
        if step["kind"] == "validate constraint" and retry is not None:
            tries = retry(_attempts(journal, conn, step["sql"]),
                          lambda exc: isinstance(exc, pg_errors.ForeignKeyViolation))
            if tries:
                notes.append("%s validated after %d retries: a row it references reached the target through its "
                             "stream after the first try" % (step["object"], tries))
            return notes
        try:
            journal.run(conn, step["sql"])
        except (pg_errors.FeatureNotSupported, pg_errors.WrongObjectType, pg_errors.InvalidTableDefinition) as exc:
            if not step.get("plain"):
                raise
            journal.run(conn, step["plain"])
            step["validate_done"] = True
            notes.append("foreign key %s added and checked at once, not as NOT VALID: the target refused NOT VALID "
                         "on a partitioned table (%s)" % (step["object"], str(exc).strip().splitlines()[0]))
    except pg_errors.Error as exc:
        raise StepFailed(journal.scrub(str(exc).strip().splitlines()[0]))
    return notes


def _attempts(journal, conn, stmt):
    """The tries of one statement: the first through the journal (recorded), the next ones the same statement."""
    state = dict(first=True)

    def attempt():
        if state["first"]:
            state["first"] = False
            journal.run(conn, stmt)
        else:
            conn.execute(stmt)
    return attempt
