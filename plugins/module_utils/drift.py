# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a playbook sets against what an AWS service describes, pure: merged settings, drift (only the
keys set, values compared by value), JSON in and out, tags to add and remove."""

from __future__ import annotations

import copy
import json


def deep_merge(base, over):
    """base with over merged in, recursively for dicts (neither argument is changed)."""
    out = copy.deepcopy(base)
    for key, value in (over or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _scalar_equal(want, have):
    if isinstance(want, bool) or isinstance(have, bool):
        return str(want).lower() == str(have).lower()
    if isinstance(want, (int, float)) and not isinstance(want, bool):
        try:
            return float(want) == float(have)
        except (TypeError, ValueError):
            return False
    if want is None:
        return have is None
    return str(want) == str(have)


def drift(want, have, path=""):
    """Paths where want differs from have, looking only at the keys want sets.

    The service adds defaults (extra keys in have): that is no drift. Dicts recurse; lists of dicts
    compare element by element the same way (same length); numbers, booleans and their string forms
    compare by value.
    """
    diffs = []
    if isinstance(want, dict):
        if not isinstance(have, dict):
            return [path or "."]
        for key in sorted(want):
            sub = "%s.%s" % (path, key) if path else str(key)
            if key not in have:
                if want[key] is not None:
                    diffs.append(sub)
                continue
            diffs.extend(drift(want[key], have[key], sub))
        return diffs
    if isinstance(want, list):
        if not isinstance(have, list) or len(want) != len(have):
            return [path or "."]
        for i, (w, h) in enumerate(zip(want, have)):
            diffs.extend(drift(w, h, "%s[%d]" % (path, i)))
        return diffs
    return [] if _scalar_equal(want, have) else [path or "."]


def parse_json(value, what):
    """A dict from a dict or a JSON string; ValueError naming what on bad JSON."""
    if value is None or value == "":
        return None
    if isinstance(value, dict):
        return value
    try:
        parsed = json.loads(value)
    except (TypeError, ValueError) as exc:
        raise ValueError("%s is not valid JSON: %s" % (what, exc))
    if not isinstance(parsed, dict):
        raise ValueError("%s must be a JSON object, not %s" % (what, type(parsed).__name__))
    return parsed


def to_json(value):
    """The JSON string sent to the API (stable key order, so the same input sends the same text)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def tag_changes(want, have, purge=True):
    """(tags to add or change, keys to remove) to go from have to want; want None leaves tags alone."""
    if want is None:
        return {}, []
    want = dict((str(k), str(v)) for k, v in want.items())
    add = dict((k, v) for k, v in want.items() if have.get(k) != v)
    remove = sorted(k for k in have if k not in want and not k.startswith("aws:")) if purge else []
    return add, remove
