"""scope: names that need quoting, read and matched as PostgreSQL reads them, never split from a display string."""

from __future__ import annotations

import pytest

from ansible_collections.pgshift.aurora.plugins.module_utils import scope

from factsbuilder import table

OPS = "Shipping Ops"
ARCHIVE = 'eu.west "archive"'
ZOLL = "Zöll_Tarife"
LONG = "r" * 61 + "ö"  # 63 bytes: the longest name PostgreSQL keeps
assert len(LONG.encode("utf-8")) == 63


# --- display ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,shown", [
    ("orders", "orders"),
    ("order", '"order"'),            # reserved word
    ("user", '"user"'),
    ("json", '"json"'),              # a column-name keyword in PostgreSQL 18
    ("name", "name"),                # unreserved keyword: bare, as quote_ident() leaves it
    ("Orders", '"Orders"'),
    (OPS, '"Shipping Ops"'),
    (ARCHIVE, '"eu.west ""archive"""'),
    (ZOLL, '"Zöll_Tarife"'),         # non-ASCII letters are quoted, as quote_ident() does
    ("a$b", '"a$b"'),
    ("1st", '"1st"'),
    ('Unit "Price"', '"Unit ""Price"""'),
])
def test_quote_ident_is_postgresql_quote_ident(name, shown):
    assert scope.quote_ident(name) == shown


@pytest.mark.parametrize("schema,name", [
    (OPS, "order"), (ARCHIVE, ZOLL), ("public", LONG), ("a.b", "c"), ("a", "b.c"), ('x"', '"y'), ("Order No.", "1"),
])
def test_qualified_reads_back_to_the_same_parts(schema, name):
    text = scope.qualified(schema, name)
    assert scope.split_qualified(text) == (schema, name)


def test_qualified_keeps_apart_names_a_plain_join_would_confuse():
    # "a.b" + "c" and "a" + "b.c" join to the same "a.b.c"; their display forms differ
    assert scope.qualified("a.b", "c") != scope.qualified("a", "b.c")


# --- exact names as typed ----------------------------------------------------------------------

@pytest.mark.parametrize("text,parts", [
    ('"Shipping Ops"."order"', (OPS, "order")),
    ('"Shipping Ops".ORDER', (OPS, "order")),
    ('"eu.west ""archive"""."Zöll_Tarife"', (ARCHIVE, ZOLL)),
    ("Billing.CustomsDeclarations", ("billing", "customsdeclarations")),
    ('billing."CustomsDeclarations"', ("billing", "CustomsDeclarations")),
    ("Zöll_Tarife", ("public", "zöll_tarife")),   # only ASCII letters fold, as in PostgreSQL
    ("  public.orders  ", ("public", "orders")),
    ('"a"b."c"d', ("ab", "cd")),                  # quoted and unquoted pieces of one part join
])
def test_split_qualified_reads_like_postgresql(text, parts):
    assert scope.split_qualified(text) == parts


def test_split_qualified_truncates_like_postgresql():
    typed = '"%s"' % (LONG + "_and_more")
    assert scope.split_qualified(typed) == ("public", LONG)
    # never in the middle of a character: 62 ASCII bytes then a 2-byte letter keeps 62 bytes
    assert scope.split_qualified('"%s"' % ("x" * 62 + "öö")) == ("public", "x" * 62)


@pytest.mark.parametrize("bad,why", [
    ("a.b.c", "more than two parts"),
    ('"Shipping Ops.order', "unterminated"),
    ("Shipping Ops.order", "space outside double quotes"),
    (".x", "empty part"),
    ("x.", "empty part"),
    ("", "empty"),
])
def test_split_qualified_says_what_is_wrong(bad, why):
    with pytest.raises(ValueError, match=why):
        scope.split_qualified(bad)


# --- patterns ------------------------------------------------------------------------------------

@pytest.mark.parametrize("pattern,schema,name,expected", [
    ('"Shipping Ops"."order"', OPS, "order", True),
    ('"Shipping Ops".order', OPS, "order", True),
    ('"Shipping Ops".order', "shipping ops", "order", False),
    ('"Shipping Ops".*', OPS, ZOLL, True),
    ('"eu.west ""archive""".*', ARCHIVE, ZOLL, True),
    ('"eu.west ""archive""".*', "eu", ZOLL, False),
    ('"eu.west ""archive"""."Zöll_*"', ARCHIVE, ZOLL, False),     # * inside quotes is a star
    ('"eu.west ""archive"""."Zöll_"*', ARCHIVE, ZOLL, True),      # quoted prefix, unquoted wildcard
    ("eu.west*", "eu", "west_1", True),                           # unquoted: the dot separates
    ("eu.west*", ARCHIVE, "x", False),
    ("public.ship*", "public", "shipments_2025_01", True),
    ("public.ship*", "public", "Shipments", False),
    ('public."Ship"*', "public", "Shipments", True),
    ("public.ship_?", "public", "ship_1", True),
    ("public.ship_?", "public", "ship_12", False),
    ("public.[ab]*", "public", "audit", True),
    ("public.[!ab]*", "public", "audit", False),
    ("public.[!ab]*", "public", "carriers", True),
    ("public.t[0-9]", "public", "t7", True),
    ("public.[x", "public", "[x", True),                          # an unclosed [ is a character
    ("orders", "billing", "orders", True),                        # no schema part: every schema
    ("orders", "billing", "orders_old", False),
    ("*.%s" % LONG, "public", LONG, True),
    ('"50%_off"', "public", "50%_off", True),
    ('"50%_off"', "public", "50x_off", False),
    ('public."Unit ""Price"""', "public", 'Unit "Price"', True),
])
def test_patterns_match_schema_and_name_separately(pattern, schema, name, expected):
    assert scope.parse_pattern(pattern).matches(schema, name) is expected


def test_filter_problems_name_each_bad_value():
    problems = scope.filter_problems(dict(include_tables=["ok.*", "a.b.c"], exclude_tables=['"x'],
                                          include_schemas=[""], exclude_schemas=[OPS]))
    assert len(problems) == 3
    assert problems[0].startswith("include_tables: table pattern 'a.b.c' has more than two parts")
    assert problems[1].startswith("exclude_tables: table pattern '\"x' has an unterminated double quote")
    assert problems[2] == "include_schemas: '' is not a schema name"
    assert scope.filter_problems(dict(include_tables=['"Shipping Ops".*'], exclude_schemas=[ARCHIVE])) == []


def test_select_refuses_a_bad_pattern():
    with pytest.raises(ValueError, match="more than two parts"):
        scope.select([table("public", "a")], include_tables=["a.b.c"])


# --- selection on catalog identities -------------------------------------------------------------

def hard_relations():
    root = table(OPS, "order", relkind="p", has_children=True, oid=10)
    leaf = table(ARCHIVE, "order 2025", is_partition=True, parents=[10], oid=11)
    zoll = table(ARCHIVE, ZOLL, oid=12)
    long_ = table("public", LONG, oid=13)
    dotted = table("eu", "west.order", oid=14)   # joined plainly, the same text as schema "eu.west", table "order"
    trap = table("eu.west", "order", oid=15)
    return [root, leaf, zoll, long_, dotted, trap]


def names(rels):
    return set((r["schema"], r["name"]) for r in rels)


def test_classify_keeps_the_root_as_catalog_identity():
    by_oid = {r["oid"]: r for r in scope.classify(hard_relations())}
    leaf = by_oid[11]
    assert (leaf["root_oid"], leaf["root_schema"], leaf["root_name"]) == (10, OPS, "order")
    assert leaf["root"] == '"Shipping Ops"."order"'
    assert leaf["qualified"] == '"eu.west ""archive"""."order 2025"'
    assert (by_oid[15]["root_schema"], by_oid[15]["root_name"]) == ("eu.west", "order")


def test_schema_filters_compare_exact_names_and_leaves_follow_their_root():
    rels = hard_relations()
    assert names(scope.select(rels, include_schemas=[OPS])) == {(ARCHIVE, "order 2025"), (OPS, "order")}
    assert names(scope.select(rels, include_schemas=[ARCHIVE])) == {(ARCHIVE, ZOLL)}
    assert names(scope.select(rels, exclude_schemas=[OPS, ARCHIVE, "eu.west"])) == {("eu", "west.order"),
                                                                                    ("public", LONG)}
    assert scope.select(rels, include_schemas=['"Shipping Ops"']) == []


def test_table_patterns_tell_a_dot_in_a_schema_from_a_dot_in_a_name():
    rels = hard_relations()
    assert names(scope.select(rels, include_tables=['"eu.west".order'])) == {("eu.west", "order")}
    assert names(scope.select(rels, include_tables=['eu."west.order"'])) == {("eu", "west.order")}
    assert names(scope.select(rels, exclude_tables=['"eu.west".*', "eu.*"])) == {
        (ARCHIVE, "order 2025"), (ARCHIVE, ZOLL), (OPS, "order"), ("public", LONG)}


def test_table_patterns_select_a_partition_tree_by_its_root():
    rels = hard_relations()
    assert names(scope.select(rels, include_tables=['"Shipping Ops"."order"'])) == {
        (ARCHIVE, "order 2025"), (OPS, "order")}
    assert names(scope.select(rels, exclude_tables=['"Shipping Ops"."order"', "*.*z*"])) == {
        (ARCHIVE, ZOLL), ("eu", "west.order"), ("eu.west", "order"), ("public", LONG)}
    # the leaf alone, by its own name
    assert names(scope.select(rels, include_tables=['"eu.west ""archive"""."order 2025"'])) == {
        (ARCHIVE, "order 2025")}


def test_unmatched_filters_warn_with_the_quoted_spelling():
    rels = hard_relations()
    warnings = scope.unmatched_filters(rels, include_schemas=["shipping ops", OPS], exclude_tables=[
        'public."R"*', '"Shipping Ops".ORDER', "*.zöll_tarife", "nothing.here"])
    assert warnings == [
        "include_schemas: no schema is named shipping ops (did you mean Shipping Ops? schema names are compared "
        "exactly)",
        "exclude_tables: public.\"R\"* matches no table (names are case-sensitive inside double quotes and "
        "folded to lower case outside: did you mean public.\"%s\"?)" % LONG,
        "exclude_tables: *.zöll_tarife matches no table (names are case-sensitive inside double quotes and folded "
        "to lower case outside: did you mean \"eu.west \"\"archive\"\"\".\"Zöll_Tarife\"?)",
        "exclude_tables: nothing.here matches no table",
    ]
