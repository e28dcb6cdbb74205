# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which tables a migration covers: include/exclude filters and partition trees (pure)."""

from __future__ import annotations

import fnmatch
import re

_PLAIN = re.compile(r"[a-z_][a-z0-9_$]*")


FILTER_OPTIONS = ("include_schemas", "exclude_schemas", "include_tables", "exclude_tables")


def filter_argument_spec():
    """The include/exclude options (doc fragment pgshift.aurora.filters)."""
    return dict((name, dict(type="list", elements="str", default=[])) for name in FILTER_OPTIONS)


def filters_from(params):
    return dict((name, params[name]) for name in FILTER_OPTIONS)


def qualified(schema, name):
    """schema.name, quoting only the parts that need it (for messages and keys)."""
    def quote(part):
        if _PLAIN.fullmatch(part):
            return part
        return '"%s"' % part.replace('"', '""')
    return "%s.%s" % (quote(schema), quote(name))


def split_qualified(text):
    """Inverse of qualified() for the user's table names: 'billing."Customs"' -> ('billing', 'Customs').

    A name without a schema means the public schema.
    """
    parts = []
    current = []
    quoted = False
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == '"':
            if quoted and i + 1 < len(text) and text[i + 1] == '"':
                current.append('"')
                i += 1
            else:
                quoted = not quoted
        elif ch == "." and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    if quoted or len(parts) > 2 or not all(parts):
        raise ValueError("%r is not a table name: write it as schema.table (quote mixed case: schema.\"Table\")" % text)
    if len(parts) == 1:
        return "public", parts[0]
    return parts[0], parts[1]


def _matches(patterns, schema, name):
    plain = "%s.%s" % (schema, name)
    return any(fnmatch.fnmatchcase(plain, p) or fnmatch.fnmatchcase(qualified(schema, name), p) for p in patterns)


def classify(relations):
    """Annotate relations with their kind and the root of their tree.

    kind: table, partitioned (declarative parent), partition (declarative leaf or
    sub-parent), inheritance_parent, inheritance_child, foreign, matview.
    """
    by_oid = {r["oid"]: r for r in relations}
    result = []
    for rel in relations:
        rel = dict(rel)
        parents = rel.get("parents") or []
        if rel["relkind"] == "f":
            kind = "foreign"
        elif rel["relkind"] == "m":
            kind = "matview"
        elif rel.get("is_partition"):
            kind = "partition"
        elif rel["relkind"] == "p":
            kind = "partitioned"
        elif parents:
            kind = "inheritance_child"
        elif rel.get("has_children"):
            kind = "inheritance_parent"
        else:
            kind = "table"
        root = rel
        seen = set()
        ancestors = []
        while root.get("parents") and root["oid"] not in seen:
            seen.add(root["oid"])
            parent = by_oid.get(root["parents"][0])
            if parent is None:
                break
            root = parent
            ancestors.append(root["oid"])
        rel["kind"] = kind
        rel["root"] = qualified(root["schema"], root["name"])
        rel["ancestors"] = ancestors
        rel["qualified"] = qualified(rel["schema"], rel["name"])
        result.append(rel)
    return result


def in_scope(rel, include_schemas, exclude_schemas, include_tables, exclude_tables):
    """Whether one classified relation is migrated.

    Partitions and inheritance children follow their root for the schema filters
    (a leaf may live in another schema); table patterns match the relation's own
    name or its root's.
    """
    schema, name = rel["schema"], rel["name"]
    root_schema, root_name = split_qualified(rel["root"])
    if include_schemas and root_schema not in include_schemas:
        return False
    if root_schema in exclude_schemas:
        return False
    if include_tables and not (_matches(include_tables, schema, name) or _matches(include_tables, root_schema, root_name)):
        return False
    if exclude_tables and (_matches(exclude_tables, schema, name) or _matches(exclude_tables, root_schema, root_name)):
        return False
    return True


def select(relations, include_schemas=(), exclude_schemas=(), include_tables=(), exclude_tables=()):
    """Classify and filter: the relations a migration covers, in a stable order."""
    classified = classify(relations)
    return [r for r in classified
            if in_scope(r, list(include_schemas or []), list(exclude_schemas or []),
                        list(include_tables or []), list(exclude_tables or []))]
