#!/usr/bin/env python
"""The Markdown tables of the benchmark figures, generated from the result files tracked in git, so every figure
of bench/README.md and README.md traces to a file.

    python bench/tables.py                      # the tables of the newest bench/results/initial-load/*.json
    python bench/tables.py FILE.json            # of that file
    python bench/tables.py --write [FILE.json]  # and put them between the markers of bench/README.md
                                                # (<!-- initial-load:begin --> ... end) and README.md
                                                # (<!-- initial-load-summary:begin --> ... end)

Pure text work (no database, no network): tests/unit/test_bench_tables.py runs it on a made-up result.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INITIAL_LOAD = os.path.join(REPO, "bench", "results", "initial-load")
sys.path.insert(0, os.path.join(REPO, "bench", "initial_load"))
from summary import FLOORS, OURS, PEERS, paired_ratios  # noqa: E402  (bench/initial_load/summary.py: the tools, the pure parts)
MARKERS = {"bench/README.md": "initial-load", "README.md": "initial-load-summary"}


def newest(directory=INITIAL_LOAD):
    """The newest result file (names start with the UTC start time), or None."""
    files = sorted(glob.glob(os.path.join(directory, "*.json")))
    return files[-1] if files else None


def _num(value, digits=2):
    if value is None:
        return "-"
    if isinstance(value, int) or digits == 0:
        return "{:,}".format(int(round(value)))
    return "%.*f" % (digits, value)


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def header(result, name):
    """Where the figures come from: the file, commit, machine, versions, how they were measured."""
    m, v = result.get("machine") or {}, result.get("versions") or {}
    servers = sorted(set("%s -> %s" % (s["versions"]["source"], s["versions"]["target"])
                         for s in result.get("sizes") or []))
    return ("From `%s`: collection at %s; %s cores (%s), %s GB, kernel %s, load average %s at the start; "
            "PostgreSQL %s; pgcopydb %s, pg_dump %s, ansible-core %s; dataset `%s`; %d round(s) per size, the "
            "tools' order rotated each round; started %s, %s s in all. Command: `%s`." % (
                name, result.get("commit"), m.get("cores"), m.get("cpu"), m.get("memory_gb"), m.get("kernel"),
                " / ".join(str(x) for x in m.get("load_average") or []), ", ".join(servers) or "-",
                v.get("pgcopydb"), v.get("pg_dump"), v.get("ansible_core"), result.get("dataset"),
                result.get("repeat") or 0, result.get("started_utc"), result.get("total_seconds"),
                result.get("command")) + (
                " pgshift_playbook_baseline: the roles and modules of %s, this checkout's ansible.cfg." % (
                    result["baseline"].get("commit")) if result.get("baseline") else ""))


def size_table(size):
    """One pgbench scale: per tool the runs that passed, the median, min-max and spread of the seconds of those,
    rows/s, peak memory, and pgshift's ratios to each peer; then pgshift's one-off setup and the failed runs."""
    d = size["dataset"]
    lines = ["#### pgbench scale %d: %d tables, %s rows, %s MB of tables" % (
        size["pgbench_scale"], d["tables"], _num(d["rows"], 0), _num(d["table_bytes"] / 1e6, 0)), "",
        "| tool | runs passed | median s | min-max s | spread | rows/s | peak memory, process tree (MB) "
        "| largest process (MB) | / pgcopydb | / pg_dump_restore |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    ratios = size.get("ratios") or {}
    for tool, s in size["tools"].items():
        runs = [r for r in size["runs"] if r["tool"] == tool and r.get("ok")]
        sec, tree, proc = s["seconds"], s["peak_tree_rss_mb"], s["peak_process_rss_mb"]
        cells = [tool, "%d of %d" % (s["passed"], s["runs"]), _num(sec["median"]),
                 "%s-%s" % (_num(sec["min"]), _num(sec["max"])) if sec["n"] else "-",
                 "%s%%" % _num(sec["spread_pct"], 1) if sec["spread_pct"] is not None else "-",
                 _num(_median([r.get("rows_per_second") for r in runs]), 0),
                 _num(tree["median"], 0), _num(proc["median"], 0)]
        for peer in PEERS:
            cells.append(_num(ratios.get("%s_over_%s" % (tool, peer)), 3) if tool in OURS + FLOORS else "-")
        lines.append("| " + " | ".join(cells) + " |")
    paired = paired_table(size)
    if paired:
        lines += [""] + paired
    setup = size.get("pgshift_setup") or {}
    lines += ["", "pgshift's one-off setup, run once per size before the rounds and not in the seconds above: "
              "prepare_source.yml %s s + assess.yml %s s = %s s." % (
                  _num(setup.get("prepare_source_seconds")), _num(setup.get("assess_seconds")),
                  _num(setup.get("seconds")))]
    failed = [r for r in size["runs"] if not r.get("ok")]
    if failed:
        lines += ["", "Failed runs (not timed into the figures):", ""]
        for r in failed:
            lines.append("- %s, round %s: %s" % (r["tool"], r.get("round"), "; ".join(r.get("failures") or [])[:400]))
    parents = sorted(set(p for r in size["runs"] for p in (r.get("check") or {}).get("partitioned_without_statistics")
                         or []))
    if parents:
        who = sorted(set(r["tool"] for r in size["runs"]
                         if (r.get("check") or {}).get("partitioned_without_statistics")))
        lines += ["", "Partitioned parents left without statistics (not a failure): %s, by %s." % (
            ", ".join(parents), ", ".join(who))]
    return "\n".join(lines)


def _ratio_cell(r, unit=""):
    if r.get("n", 0) > 1:
        return "%s%s (%s-%s)" % (_num(r["median"], 3), unit, _num(r["min"], 3), _num(r["max"], 3))
    return _num(r["median"], 3) + unit


def paired_table(size):
    """The ratios round by round (each round runs the tools one after the other): their median and range, with the
    number of rounds where both passed. Read from the runs, so files written before it get it too."""
    paired = paired_ratios(size.get("runs") or [])
    tools = [t for t in OURS + FLOORS if any(k.startswith(t + "_over_") for k in paired)]
    if not tools:
        return []
    peers = [p for p in PEERS if any(k.endswith("_over_" + p) for k in paired)]
    lines = ["Round by round (each round runs every tool once, one after the other): median (min-max) of the "
             "round's ratio, over the rounds where both passed:", "",
             "| tool | rounds | " + " | ".join("/ %s" % p for p in peers) + " |",
             "|---|---:|" + "---:|" * len(peers)]
    for tool in tools:
        cells = [paired.get("%s_over_%s" % (tool, p)) for p in peers]
        n = max(c["n"] for c in cells if c)
        lines.append("| %s | %d | %s |" % (tool, n, " | ".join(_ratio_cell(c) if c else "-" for c in cells)))
    return lines


def render(result, name):
    """bench/README.md's section: the header, then one table per size."""
    return "\n\n".join([header(result, name)] + [size_table(s) for s in result.get("sizes") or []])


def render_summary(result, name):
    """README.md's section: the median seconds per tool and size, and the ratios, with the file they come from."""
    sizes = result.get("sizes") or []
    tools = list(result.get("tools") or (sizes[0]["tools"] if sizes else []))
    lines = ["Initial load, empty target to every table loaded with indexes, validated foreign keys and planner "
             "statistics (median seconds of the runs that passed their checks, %d rounds, %s cores; from `%s`, "
             "collection at %s; bench/README.md has every figure):" % (
                 result.get("repeat") or 0, (result.get("machine") or {}).get("cores"), name, result.get("commit")),
             "", "| tool | " + " | ".join("scale %d (%s M rows)" % (
                 s["pgbench_scale"], _num(s["dataset"]["rows"] / 1e6, 1)) for s in sizes) + " |",
             "|---|" + "---:|" * len(sizes)]
    for tool in tools:
        cells = []
        for s in sizes:
            t = s["tools"].get(tool) or {}
            sec = (t.get("seconds") or {}).get("median")
            cells.append("%s s" % _num(sec) if sec is not None else "failed (%d of %d passed)" % (
                t.get("passed", 0), t.get("runs", 0)))
        lines.append("| %s | %s |" % (tool, " | ".join(cells)))
    paired = [paired_ratios(s.get("runs") or []) for s in sizes]
    for tool in [t for t in OURS + FLOORS if t in tools]:
        for peer in [p for p in PEERS if p in tools]:
            key = "%s_over_%s" % (tool, peer)
            lines.append("| %s / %s | %s |" % (tool, peer, " | ".join(
                "%sx" % _num((s.get("ratios") or {}).get(key), 3) if (s.get("ratios") or {}).get(key) is not None
                else "-" for s in sizes)))
            if any(key in p for p in paired):  # the same pair, round by round, on the next line
                lines.append("| %s / %s, round by round: median (min-max) | %s |" % (tool, peer, " | ".join(
                    _ratio_cell(p[key], "x") if key in p else "-" for p in paired)))
    floors = [t for t in FLOORS if t in tools]
    if floors:
        lines += ["", "%s: not tools. The largest table alone, created empty, then its copy (one COPY with FREEZE; "
                  "or two key ranges at once) and its indexes, timed in the same rounds: the part of every tool's "
                  "seconds that one table costs on this machine (bench/README.md)." % ", ".join(floors)]
    return "\n".join(lines)


NONE_YET = ("No run of bench/initial_load is recorded in `bench/results/initial-load/` yet: "
            "`python bench/initial_load/run.py` writes one, `python bench/tables.py --write` puts its tables here.")


def replace_between(text, marker, body):
    """text with what lies between <!-- marker:begin --> and <!-- marker:end --> replaced by body."""
    begin, end = "<!-- %s:begin -->" % marker, "<!-- %s:end -->" % marker
    i, j = text.find(begin), text.find(end)
    if i < 0 or j < i:
        raise ValueError("markers %s ... %s not found" % (begin, end))
    return text[:i + len(begin)] + "\n" + body.strip() + "\n" + text[j:]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("files", nargs="*", metavar="file",
                        help="result files, one section each in this order (default the newest in "
                             "bench/results/initial-load)")
    parser.add_argument("--write", action="store_true", help="write the tables into bench/README.md and README.md")
    opts = parser.parse_args(argv)
    paths = opts.files or [p for p in [newest()] if p]
    if paths:
        bodies = {"bench/README.md": [], "README.md": []}
        for path in paths:
            with open(path, encoding="utf-8") as f:
                result = json.load(f)
            path = os.path.abspath(path)
            name = os.path.relpath(path, REPO) if path.startswith(REPO + os.sep) else path
            bodies["bench/README.md"].append(render(result, name))
            bodies["README.md"].append(render_summary(result, name))
        bodies = dict((k, "\n\n".join(v)) for k, v in bodies.items())
    else:
        bodies = dict((k, NONE_YET) for k in MARKERS)
    if not opts.write:
        print(bodies["bench/README.md"])
        return 0
    for rel, marker in MARKERS.items():
        target = os.path.join(REPO, rel)
        with open(target, encoding="utf-8") as f:
            text = f.read()
        new = replace_between(text, marker, bodies[rel])
        if new != text:
            with open(target, "w", encoding="utf-8") as f:
                f.write(new)
        print("%s: %s" % (rel, "updated" if new != text else "unchanged"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
