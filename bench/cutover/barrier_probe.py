"""Probe: the cutover barrier as it was (every slot's confirmed_flush_lsn on the source, txid_current() nudges on
both sides) against the barrier now (every apply worker's received_lsn past it on the target, then a flushed
commit there), each right after half a second of writes, alternating, 8 of each, on the integration tests'
clusters and stream (tests/integration: test_cutover.py's `pair`). Prints PROBE {old, new: median, min, max,
runs [(seconds, polls)]}; asserts nothing (a measurement, not a test). Run from the repository root:

    PYTHONPATH=.build/collections:tests/integration python -m pytest -q -s -p conftest bench/cutover/barrier_probe.py
"""
import json
import statistics
import time

from ansible_collections.pgshift.aurora.plugins.module_utils import journal, native, names
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import freeze as db
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import replication
from test_cutover import Writer, pair  # pylint: disable=unused-import  # noqa: F401 (the fixture)

JOURNAL = journal.Journal()


def old_barrier(src, tgt, stream, migration):
    db.log_event(src, migration, "probe", "forward", "marker", JOURNAL)
    lsn = native.lsn_to_int(db.current_lsn(src))
    polls = 0
    while True:
        polls += 1
        c = native.lsn_to_int(replication.slots(src, [stream])[stream]["confirmed_flush_lsn"])
        if c is not None and c >= lsn:
            return polls
        db.nudge(tgt)
        db.nudge(src)
        time.sleep(0.01)


def new_barrier(src, tgt, stream, migration):
    lsn = native.lsn_to_int(db.mark_barrier(src, migration, "probe", "forward", JOURNAL))
    polls, start = 0, time.monotonic()
    nudged = start
    while True:
        polls += 1
        r = native.lsn_to_int(db.stream_receipts(tgt, [stream])[stream])
        if r is not None and r > lsn:
            db.flush_barrier(tgt, migration, "probe", "forward", "0/0", JOURNAL)
            return polls
        if time.monotonic() - nudged > 0.1:
            db.nudge(src)
            nudged = time.monotonic()
        time.sleep(0.005)


def test_barrier_probe(pair):  # noqa: F811
    env = pair
    src = env["source"].master_connect(env["db"])
    tgt = env["target"].master_connect(env["db"])
    for c in (src, tgt):
        db.ensure_log(c, JOURNAL)
    stream = names.stream_name(env["migration"], 1)
    out = dict(old=[], new=[])
    for i in range(16):
        w = Writer(env["bouncer"].port, env["db"], env["app"], 100 + i, pause=0.002)
        w.start()
        time.sleep(0.5)
        w.stop()
        kind = "old" if i % 2 == 0 else "new"
        t0 = time.monotonic()
        polls = (old_barrier if kind == "old" else new_barrier)(src, tgt, stream, env["migration"])
        out[kind].append((round(time.monotonic() - t0, 3), polls))
    summary = dict((k, dict(median=round(statistics.median(s for s, p in v), 3), min=min(s for s, p in v),
                            max=max(s for s, p in v), runs=v)) for k, v in out.items())
    print("PROBE", json.dumps(summary))
