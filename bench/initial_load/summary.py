"""The pure parts of bench/initial_load: the order of the tools in each round, the checks a run must pass,
the median and spread of the runs that passed, the ratios between tools (of the medians, and round by round),
and the pg_dump pattern of one table. No I/O: unit-tested in tests/unit/test_bench_initial_load.py."""

from __future__ import annotations

import statistics

OURS = ("pgshift_playbook", "pgshift_playbook_poll_1s", "pgshift_modules", "pgshift_playbook_baseline")
PEERS = ("pgcopydb", "pg_dump_restore")
# Not tools: the largest table alone, copied with one COPY (FREEZE) or two key ranges at once, and its indexes
# built; the part of every tool's seconds that copying and indexing that table costs on this machine.
FLOORS = ("largest_table_floor", "largest_table_floor_2_ranges")


def rotation(tools, round_index):
    """The order of the tools in round `round_index` (0-based): the list rotated left by the round's number, so
    that over len(tools) rounds each tool runs once in every position (first after the warm-up, last, ...)."""
    tools = list(tools)
    if not tools:
        return []
    k = round_index % len(tools)
    return tools[k:] + tools[:k]


def spread(values):
    """median, min, max, max - min and (max - min) / median of a list of seconds (None when empty)."""
    values = [v for v in values if v is not None]
    if not values:
        return dict(n=0, median=None, min=None, max=None, spread=None, spread_pct=None)
    med = statistics.median(values)
    lo, hi = min(values), max(values)
    return dict(n=len(values), median=round(med, 3), min=round(lo, 3), max=round(hi, 3), spread=round(hi - lo, 3),
                spread_pct=round(100.0 * (hi - lo) / med, 1) if med else None)


def check_failures(check):
    """Why a run does not count (an empty list: it passed). `check` holds what run.py read after the run:

    - tool_success: the tool's own exit (bool) and tool_error (its text);
    - mismatches: [{table, source, target, unlogged}] rows per table on both sides (an UNLOGGED table is exempt:
      logical replication cannot carry it, so no tool is required to);
    - schema_objects: {kind: {source, target}} for indexes, foreign_keys, triggers (equal counts required);
    - foreign_keys_not_validated_target: foreign keys on the target that are NOT VALID (none allowed);
    - tables_without_statistics: tables holding rows on the target without planner statistics (none allowed);
    - materialized_views: {populated, total} on the target (every one populated).
    """
    failures = []
    if not check.get("tool_success"):
        text = " ".join((check.get("tool_error") or "no error text").split())
        failures.append("tool failed: %s" % (text if len(text) <= 400 else text[:400] + " ..."))
    bad = [m for m in check.get("mismatches") or [] if not m.get("unlogged")]
    if bad:
        shown = ", ".join("%s %s/%s" % (m["table"], m["source"], m["target"]) for m in bad[:5])
        failures.append("rows differ on %d table(s) (source/target): %s%s" % (
            len(bad), shown, " ..." if len(bad) > 5 else ""))
    for kind, counts in sorted((check.get("schema_objects") or {}).items()):
        if kind == "foreign_keys_not_validated":
            continue
        if counts.get("source") != counts.get("target"):
            failures.append("%s: %s on the source, %s on the target" % (
                kind, counts.get("source"), counts.get("target")))
    if check.get("foreign_keys_not_validated_target"):
        failures.append("%d foreign key(s) not validated on the target" % check["foreign_keys_not_validated_target"])
    no_stats = check.get("tables_without_statistics") or []
    if no_stats:
        failures.append("%d table(s) with rows but no planner statistics: %s%s" % (
            len(no_stats), ", ".join(no_stats[:5]), " ..." if len(no_stats) > 5 else ""))
    mv = check.get("materialized_views") or {}
    if mv.get("populated") != mv.get("total"):
        failures.append("materialized views populated: %s of %s" % (mv.get("populated"), mv.get("total")))
    return failures


def summarize(runs):
    """One tool's runs at one size: how many passed their checks, and the median, min, max and spread of the
    seconds and of the peak memory of the runs that passed (a failed run is never timed into them)."""
    ok = [r for r in runs if r.get("ok")]
    out = dict(runs=len(runs), passed=len(ok), failed=len(runs) - len(ok),
               seconds=spread([r.get("seconds") for r in ok]),
               peak_tree_rss_mb=spread([(r.get("memory") or {}).get("peak_tree_rss_mb") for r in ok]),
               peak_process_rss_mb=spread([(r.get("memory") or {}).get("peak_process_rss_mb") for r in ok]))
    failures = sorted(set(f for r in runs if not r.get("ok") for f in r.get("failures") or []))
    if failures:
        out["failures"] = failures[:10]
    return out


def ratios(summaries, ours=OURS + FLOORS, peers=PEERS):
    """{ours_over_peer: median seconds of ours (or of a floor) / median of the peer} (below 1: ours is faster);
    None when either has no run that passed."""
    out = {}
    for a in ours:
        for b in peers:
            if a not in summaries or b not in summaries:
                continue
            x, y = summaries[a]["seconds"]["median"], summaries[b]["seconds"]["median"]
            out["%s_over_%s" % (a, b)] = round(x / y, 3) if x is not None and y else None
    return out


def paired_ratios(runs, ours=OURS + FLOORS, peers=PEERS):
    """{ours_over_peer: spread of the per-round ratios} (median, min, max, n): in each round where both ran and
    passed their checks, ours' seconds over the peer's. The tools of a round run one after the other, so a slower
    stretch of the machine weighs on both sides of a round's ratio: a tighter picture than the ratio of medians,
    whose two medians may come from different rounds. Rounds where either failed are left out."""
    by_round = {}
    for r in runs:
        if r.get("ok") and r.get("seconds"):
            by_round.setdefault(r.get("round"), {})[r["tool"]] = r["seconds"]
    out = {}
    for a in ours:
        for b in peers:
            values = [d[a] / d[b] for d in by_round.values() if a in d and b in d]
            if values:
                s = spread(values)
                out["%s_over_%s" % (a, b)] = dict(n=s["n"], median=s["median"], min=s["min"], max=s["max"])
    return out


def table_pattern(schema, name):
    """pg_dump's --table pattern that matches exactly this table: each part in double quotes (a quote doubled),
    so that case, dots, spaces and the pattern's wildcards are read as they are."""
    return ".".join('"%s"' % part.replace('"', '""') for part in (schema, name))
