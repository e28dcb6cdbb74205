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
      - A partition or an inheritance child follows its root's schema.
    type: list
    elements: str
    default: []
  exclude_schemas:
    description: Schemas never migrated (the inventory's C(migration_exclude_schemas)).
    type: list
    elements: str
    default: []
  include_tables:
    description:
      - Tables to migrate, as C(schema.table) patterns (shell wildcards); empty means all
        (the inventory's C(migration_include_tables)).
      - A partition or an inheritance child follows its root.
    type: list
    elements: str
    default: []
  exclude_tables:
    description:
      - Tables never migrated, as C(schema.table) patterns (the inventory's C(migration_exclude_tables)).
    type: list
    elements: str
    default: []
"""
