# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
'''Which tables a migration covers: include/exclude filters and partition trees (pure).

Names are catalog identities here: a relation is its OID, or its schema and its name as two
separate values, exactly as pg_namespace.nspname and pg_class.relname hold them. Nothing is
compared, filtered or looked up through a formatted ``schema.name`` string; ``qualified()`` makes
the quoted form for messages and reports only, and ``split_qualified()`` / ``parse_pattern()``
read what a person typed (an option), the way PostgreSQL reads a name.

The name and pattern syntax of the options (``include_tables``, ``exclude_tables``,
``replica_identity_full``, ``existing``), as in psql's ``\\d`` and pg_dump's ``-t``:

- ``schema.table``: an unquoted part is folded to lower case (``Public.Orders`` is
  ``public.orders``); a part in double quotes keeps its case and every character, dots and spaces
  included, and two double quotes inside it stand for one: ``"Shipping Ops"."order"``, and
  the schema ``eu.west "archive"`` with the table ``Zöll_Tarife`` is written
  ``"eu.west ""archive"""."Zöll_Tarife"``;
- in a pattern, outside quotes, ``*`` is any run of characters, ``?`` one character and
  ``[...]`` one of a set (``[!...]`` none of it); inside quotes they are themselves
  (``"50%_off*"`` is that one name);
- a pattern without a schema part (``orders``, ``tmp_*``) is matched in every schema; an exact
  name without one (``replica_identity_full``, ``existing``) means the public schema;
- more than two parts, an empty part, an unterminated quote, or an unquoted space is an error.

``include_schemas`` and ``exclude_schemas`` hold schema names as the catalog spells them, not
patterns: ``Shipping Ops`` (no quotes) is that schema.
'''

from __future__ import annotations

import re

# PostgreSQL's quote_ident(): a name is left bare only when it is all lower-case ASCII letters,
# digits and underscores, does not start with a digit and is not a keyword that needs quoting.
_SAFE = re.compile(r"[a-z_][a-z0-9_]*")
# Every keyword that is not UNRESERVED_KEYWORD in PostgreSQL 18's src/include/parser/kwlist.h
# (reserved, column-name and type/function-name keywords): quote_ident() quotes them.
QUOTED_KEYWORDS = frozenset("""
all analyse analyze and any array as asc asymmetric authorization between bigint binary bit boolean both case
cast char character check coalesce collate collation column concurrently constraint create cross
current_catalog current_date current_role current_schema current_time current_timestamp current_user dec
decimal default deferrable desc distinct do else end except exists extract false fetch float for foreign
freeze from full grant greatest group grouping having ilike in initially inner inout int integer intersect
interval into is isnull join json json_array json_arrayagg json_exists json_object json_objectagg json_query
json_scalar json_serialize json_table json_value lateral leading least left like limit localtime
localtimestamp merge_action national natural nchar none normalize not notnull null nullif numeric offset on
only or order out outer overlaps overlay placing position precision primary real references returning right
row select session_user setof similar smallint some substring symmetric system_user table tablesample then
time timestamp to trailing treat trim true union unique user using values varchar variadic verbose when where
window with xmlattributes xmlconcat xmlelement xmlexists xmlforest xmlnamespaces xmlparse xmlpi xmlroot
xmlserialize xmltable
""".split())
NAMEDATALEN = 64  # PostgreSQL keeps the first NAMEDATALEN - 1 bytes of a longer identifier

FILTER_OPTIONS = ("include_schemas", "exclude_schemas", "include_tables", "exclude_tables")
SYNTAX_HINT = ('write schema.table; quote a part that has upper case, spaces, dots or other special characters, '
               'doubling a double quote inside it: "Shipping Ops"."Order ""A"""')


def filter_argument_spec():
    """The include/exclude options (doc fragment pgshift.aurora.filters)."""
    return dict((name, dict(type="list", elements="str", default=[])) for name in FILTER_OPTIONS)


def filters_from(params):
    return dict((name, params[name]) for name in FILTER_OPTIONS)


# ----------------------------------------------------------------------------------------------
# Display
# ----------------------------------------------------------------------------------------------

def quote_ident(name):
    """A name as PostgreSQL's quote_ident() writes it (for messages and reports, never to build SQL)."""
    if _SAFE.fullmatch(name) and name not in QUOTED_KEYWORDS:
        return name
    return '"%s"' % name.replace('"', '""')


def qualified(schema, name):
    """schema.name, each part quoted as quote_ident() would: the display form of a relation (messages,
    reports, keys of returned data). Never split again: the schema and the name travel separately."""
    return "%s.%s" % (quote_ident(schema), quote_ident(name))


# ----------------------------------------------------------------------------------------------
# Reading what a person typed
# ----------------------------------------------------------------------------------------------

def _fold(ch):
    """PostgreSQL's downcase_identifier() in UTF-8: ASCII letters only."""
    return ch.lower() if "A" <= ch <= "Z" else ch


def _clip(name):
    """The first NAMEDATALEN - 1 bytes of a name, cut on a character boundary (as PostgreSQL truncates)."""
    data = name.encode("utf-8")
    if len(data) < NAMEDATALEN:
        return name
    return data[:NAMEDATALEN - 1].decode("utf-8", "ignore")


def _tokens(text, what):
    """Split text into its dot-separated parts: [[(char, quoted), ...], ...]; ValueError when malformed."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("%s %r is empty: %s" % (what, text, SYNTAX_HINT))
    source = text.strip()
    parts, current, quoted, i = [], [], False, 0
    while i < len(source):
        ch = source[i]
        if ch == '"':
            if quoted and source[i + 1:i + 2] == '"':
                current.append(('"', True))
                i += 1
            else:
                quoted = not quoted
        elif quoted:
            current.append((ch, True))
        elif ch == ".":
            parts.append(current)
            current = []
        elif ch.isspace():
            raise ValueError("%s %r has a space outside double quotes: %s" % (what, text, SYNTAX_HINT))
        else:
            current.append((ch, False))
        i += 1
    parts.append(current)
    if quoted:
        raise ValueError("%s %r has an unterminated double quote: %s" % (what, text, SYNTAX_HINT))
    if len(parts) > 2:
        raise ValueError("%s %r has more than two parts (a dot in a name must be inside double quotes): %s" % (
            what, text, SYNTAX_HINT))
    if not all(parts):
        raise ValueError("%s %r has an empty part: %s" % (what, text, SYNTAX_HINT))
    return parts


def split_qualified(text):
    """The (schema, name) a person means by a table name, read as PostgreSQL reads one:
    'billing."Customs"' -> ('billing', 'Customs'), 'Billing.Orders' -> ('billing', 'orders'),
    '"a.b ""c"" ".x' -> ('a.b "c" ', 'x'): quoted parts keep dots, spaces and doubled quotes.

    A name without a schema means the public schema. ValueError says what is wrong.
    """
    parts = _tokens(text, "table name")
    names = [_clip("".join(ch if quoted else _fold(ch) for ch, quoted in part)) for part in parts]
    if len(names) == 1:
        return "public", names[0]
    return names[0], names[1]


def _class(part, start):
    """A [...] set in an unquoted pattern part starting at `start` (the '['): (regex, next index) or None
    when the '[' has no closing ']' (then it is a literal '[')."""
    i = start + 1
    negate = False
    if i < len(part) and not part[i][1] and part[i][0] == "!":
        negate = True
        i += 1
    body = []
    first = True
    while i < len(part):
        ch, quoted = part[i]
        if ch == "]" and not quoted and not first:
            inner = "".join(body)
            return "[%s%s]" % ("^" if negate else "", inner), i + 1
        if ch == "-" and not quoted and body and i + 1 < len(part) and part[i + 1][0] != "]":
            body.append("-")
        else:
            body.append(re.escape(ch if quoted else _fold(ch)))
        first = False
        i += 1
    return None


def _part_regex(part):
    out = []
    i = 0
    while i < len(part):
        ch, quoted = part[i]
        if quoted:
            out.append(re.escape(ch))
        elif ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "[":
            found = _class(part, i)
            if found is not None:
                out.append(found[0])
                i = found[1]
                continue
            out.append(re.escape(ch))
        else:
            out.append(re.escape(_fold(ch)))
        i += 1
    return re.compile("".join(out), re.S)


class Pattern:
    """A parsed include/exclude table pattern: a schema part (None: any schema) and a table part."""

    def __init__(self, text):
        parts = _tokens(text, "table pattern")
        self.text = text
        self.schema = _part_regex(parts[0]) if len(parts) == 2 else None
        self.table = _part_regex(parts[-1])

    def matches(self, schema, name):
        return (self.schema is None or self.schema.fullmatch(schema) is not None) and \
            self.table.fullmatch(name) is not None

    def __repr__(self):
        return "Pattern(%r)" % self.text


def parse_pattern(text):
    return Pattern(text)


def filter_problems(filters):
    """Sentences for every include/exclude value that cannot be read (empty when all are fine)."""
    problems = []
    for option in ("include_tables", "exclude_tables"):
        for text in filters.get(option) or []:
            try:
                Pattern(text)
            except ValueError as exc:
                problems.append("%s: %s" % (option, exc))
    for option in ("include_schemas", "exclude_schemas"):
        for name in filters.get(option) or []:
            if not isinstance(name, str) or not name:
                problems.append("%s: %r is not a schema name" % (option, name))
    return problems


def compile_filters(include_schemas=(), exclude_schemas=(), include_tables=(), exclude_tables=()):
    """The filters with their patterns parsed (ValueError naming the bad one)."""
    problems = filter_problems(dict(include_tables=include_tables, exclude_tables=exclude_tables,
                                    include_schemas=include_schemas, exclude_schemas=exclude_schemas))
    if problems:
        raise ValueError("; ".join(problems))
    return dict(include_schemas=set(include_schemas or []), exclude_schemas=set(exclude_schemas or []),
                include_tables=[Pattern(p) for p in include_tables or []],
                exclude_tables=[Pattern(p) for p in exclude_tables or []])


# ----------------------------------------------------------------------------------------------
# Classification and selection
# ----------------------------------------------------------------------------------------------

def classify(relations):
    """Annotate relations with their kind and the root of their tree.

    kind: table, partitioned (declarative parent), partition (declarative leaf or
    sub-parent), inheritance_parent, inheritance_child, foreign, matview.
    The root is root_oid, root_schema and root_name (``root`` is its display form).
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
        rel["root_oid"] = root["oid"]
        rel["root_schema"] = root["schema"]
        rel["root_name"] = root["name"]
        rel["root"] = qualified(root["schema"], root["name"])
        rel["ancestors"] = ancestors
        rel["qualified"] = qualified(rel["schema"], rel["name"])
        result.append(rel)
    return result


def _any(patterns, schema, name):
    return any(p.matches(schema, name) for p in patterns)


def in_scope(rel, compiled):
    """Whether one classified relation is migrated, under compile_filters() output.

    Partitions and inheritance children follow their root for the schema filters
    (a leaf may live in another schema); table patterns match the relation's own
    schema and name, or its root's.
    """
    schema, name = rel["schema"], rel["name"]
    root_schema, root_name = rel["root_schema"], rel["root_name"]
    if compiled["include_schemas"] and root_schema not in compiled["include_schemas"]:
        return False
    if root_schema in compiled["exclude_schemas"]:
        return False
    include, exclude = compiled["include_tables"], compiled["exclude_tables"]
    if include and not (_any(include, schema, name) or _any(include, root_schema, root_name)):
        return False
    if exclude and (_any(exclude, schema, name) or _any(exclude, root_schema, root_name)):
        return False
    return True


def select(relations, include_schemas=(), exclude_schemas=(), include_tables=(), exclude_tables=()):
    """Classify and filter: the relations a migration covers, in a stable order (ValueError for a bad pattern)."""
    compiled = compile_filters(include_schemas, exclude_schemas, include_tables, exclude_tables)
    return [r for r in classify(relations) if in_scope(r, compiled)]


def unmatched_filters(relations, include_schemas=(), exclude_schemas=(), include_tables=(), exclude_tables=()):
    """Warnings for the filter values that match nothing in `relations` (a typo, or a name that needed quotes),
    with a hint when the value matches a name once letter case is ignored."""
    compiled = compile_filters(include_schemas, exclude_schemas, include_tables, exclude_tables)
    warnings = []
    schemas = sorted(set(r["schema"] for r in relations))
    for option in ("include_schemas", "exclude_schemas"):
        for name in sorted(compiled[option]):
            if name in schemas:
                continue
            near = [s for s in schemas if s.lower() == name.lower()]
            hint = " (did you mean %s? schema names are compared exactly)" % ", ".join(near) if near else ""
            warnings.append("%s: no schema is named %s%s" % (option, name, hint))
    for option in ("include_tables", "exclude_tables"):
        for pattern in compiled[option]:
            if any(pattern.matches(r["schema"], r["name"]) for r in relations):
                continue
            near = sorted(qualified(r["schema"], r["name"]) for r in relations
                          if pattern.matches(r["schema"].lower(), r["name"].lower())
                          or Pattern(pattern.text.lower()).matches(r["schema"].lower(), r["name"].lower()))
            hint = ""
            if near:
                hint = (" (names are case-sensitive inside double quotes and folded to lower case outside: did you "
                        "mean %s?)" % ", ".join(near[:5]))
            warnings.append("%s: %s matches no table%s" % (option, pattern.text, hint))
    return warnings
