# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The filter ``inventory_check``: the inventory against docs/inventory.md in one pass (docs: inventory_check.yml
next to this file; the decisions in module_utils/inventory_check.py)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.pgshift.aurora.plugins.module_utils import inventory_check as check


def inventory_check(groups, hostvars, required=check.REQUIRED_HOST_VARS):
    if not hasattr(groups, "get") or not hasattr(hostvars, "__getitem__"):
        raise AnsibleFilterError("inventory_check: give it Ansible's groups and hostvars "
                                 "({{ groups | pgshift.aurora.inventory_check(hostvars) }})")
    return check.inventory_check(groups, hostvars, tuple(required))


class FilterModule:
    def filters(self):
        return dict(inventory_check=inventory_check)
