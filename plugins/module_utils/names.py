# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The names pgshift gives what it creates: one place.

- ``pgshift_<migration>_s<N>``: stream N's publication, slot and subscription (or DMS task);
- ``pgshift_<migration>_r1``: the return (reverse) stream the cutover makes, target -> source.
"""

from __future__ import annotations

import re

PREFIX = "pgshift_"
MIGRATION_NAME = re.compile(r"[a-z0-9_]{1,40}")


def valid_migration_name(name):
    """Whether name can name a migration ([a-z0-9_]{1,40})."""
    return isinstance(name, str) and bool(MIGRATION_NAME.fullmatch(name))


def stream_prefix(migration):
    """pgshift_<migration>_s: what every forward stream's name starts with."""
    return "%s%s_s" % (PREFIX, migration)


def stream_name(migration, number):
    """pgshift_<migration>_s<N>: the publication, slot and subscription (or DMS task) of stream N."""
    return "%s%d" % (stream_prefix(migration), number)


def stream_number(migration, name):
    """N for a name made by stream_name(), None for any other name."""
    match = re.fullmatch(re.escape(stream_prefix(migration)) + r"([1-9][0-9]{0,5})", name or "")
    return int(match.group(1)) if match else None


def stream_names(names, migration):
    """The names of migration's forward streams among names, ordered by N (each once)."""
    found = set((stream_number(migration, n), n) for n in names)
    return [name for number, name in sorted(f for f in found if f[0] is not None)]


def reverse_name(migration):
    """pgshift_<migration>_r1: the return stream's publication, slot and subscription."""
    return "%s%s_r1" % (PREFIX, migration)
