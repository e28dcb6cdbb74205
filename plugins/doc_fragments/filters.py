# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which tables a migration covers: the include/exclude options every module shares."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  include_schemas:
    description:
      - Schemas to migrate; empty means every non-system schema (the inventory's C(migration_include_schemas)).
      - Schema names exactly as the catalog spells them, without quotes and without wildcards (C(Shipping Ops)).
      - A partition or an inheritance child follows its root's schema.
    type: list
    elements: str
    default: []
  exclude_schemas:
    description: Schemas never migrated, named exactly as the catalog spells them (the inventory's
      C(migration_exclude_schemas)).
    type: list
    elements: str
    default: []
  include_tables:
    description:
      - Tables to migrate, as C(schema.table) patterns; empty means all (the inventory's C(migration_include_tables)).
      - Names are read as PostgreSQL (psql's C(\d), pg_dump's C(-t)) reads them. Outside double quotes a part is
        folded to lower case and C(*) (any characters), C(?) (one character) and C([...]) (one of a set,
        C([!...]) none of it) are wildcards. Inside double quotes every character is itself (case, spaces, dots,
        C(*), C(%)) and two double quotes are one - C('"Shipping Ops"."order"'), C('"eu.west"."Zöll_Tarife"'),
        C('public."Order ""A"" copy"'), C('"Shipping Ops".*').
      - A pattern without a schema part (C(tmp_*)) matches in every schema. More than two parts, an empty part,
        an unterminated quote or an unquoted space is an error.
      - A partition or an inheritance child follows its root.
    type: list
    elements: str
    default: []
  exclude_tables:
    description:
      - Tables never migrated, as C(schema.table) patterns written as for O(include_tables) (the inventory's
        C(migration_exclude_tables)).
    type: list
    elements: str
    default: []
"""
