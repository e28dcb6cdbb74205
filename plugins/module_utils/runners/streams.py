# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What carries the changes from the old side to the new one during a cutover: one strategy per kind of
stream, chosen once from the direction and the engine (streams_for).

- NativeForward: the migration's native streams pgshift_<m>_s<N> (source -> target);
- DmsForward: the DMS tasks (their state from dms_task_info; the barrier is a marker row);
- Reverse: the return stream pgshift_<m>_r1 (target -> source), a rollback after a native migration;
  ReverseAfterDms: the same, after a DMS migration (no forward slots to make again).

Each says how the preflight sees the streams, when the barrier is reached, which tables the verify step
counts, what step 7 prepares while writes are frozen (the way back, or the way forward again after a
rollback) and what step 9 does once traffic moved.
"""

from __future__ import annotations

import time

from ansible_collections.pgshift.aurora.plugins.module_utils import cutover, native
from ansible_collections.pgshift.aurora.plugins.module_utils import names as naming
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import freeze as db
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import replication, status


class Streams:
    """Native streams old -> new, named by names()."""

    marker = False  # the barrier and the verify step look for the marker row instead of the slots' positions

    def __init__(self, run):
        self.run = run
        self.p = run.p
        self.names = []  # the streams found by the preflight

    def names_of(self, subscriptions):
        raise NotImplementedError

    def read(self):
        """The streams old -> new for the preflight: [{name, state, message, lag_bytes, lag_seconds}], classified
        by native.classify_stream from what the old side (publication, slot, WAL sender) and the new side
        (subscription, apply worker) show."""
        run = self.run
        old, new = run.conn(run.old), run.conn(run.new)
        subs = replication.subscriptions(new)
        names = self.names_of(subs)
        slots = replication.slots(old, names)
        published = set(replication.publications(old, naming.PREFIX))
        lsn = db.current_lsn(old)
        senders = db.senders(old)
        workers = db.apply_workers(new)
        found = []
        for name in sorted(names):
            slot, worker = slots.get(name), workers.get(name)
            sender = senders.get(slot["active_pid"]) if slot and slot["active_pid"] else None
            state, message = native.classify_stream(dict(
                name=name, publication=name in published, slot=slot, load=None, table_states=[],
                subscription=dict(enabled=subs[name]["enabled"], worker_pid=worker["pid"] if worker else None)))
            lag = native.lag_bytes(lsn, slot["confirmed_flush_lsn"] if slot else None)
            found.append(dict(name=name, state=state, message=message, lag_bytes=lag, lag_seconds=native.lag_seconds(
                lag, sender["replay_lag"] if sender else None, bool(sender and sender["state"] == "streaming"), None)))
        return found

    def gate(self):
        """The preflight's look at the streams: (reasons, detail). A stream just made (a rollback right after the
        cutover) may still be starting its apply worker, or catching up: looked at again for up to preflight_wait
        seconds before it says no-go."""
        p = self.p
        deadline = time.monotonic() + p["preflight_wait"]
        while True:
            streams = self.read()
            go, why = cutover.stream_gate(streams, p["max_lag_bytes"], p["max_lag_seconds"])
            if go or not streams or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.names = [s["name"] for s in streams]
        return why, dict(streams=len(streams), max_lag_bytes=max([s["lag_bytes"] or 0 for s in streams] or [0]))

    def barrier(self, target):
        """(reached, behind) for the barrier LSN `target` (an int): whether the apply worker of every stream the
        preflight found received a position past it on the new side (cutover.barrier_behind says why that proves
        every commit before it applied; the caller then flushes the new side's WAL), and ["<stream> received up
        to <lsn>"] of those that did not yet."""
        run = self.run
        received = dict((n, native.lsn_to_int(v)) for n, v in db.stream_receipts(run.conn(run.new),
                                                                                 self.names).items())
        behind = ["%s received up to %s" % (n, native.int_to_lsn(received.get(n)) if received.get(n) else "nothing")
                  for n in cutover.barrier_behind(received, self.names, target)]
        return cutover.barrier_done(received, self.names, target), behind

    def marker_seen(self):
        """For the verify step: whether the marker row arrived (None when the streams do not carry it)."""
        return None

    def replicated_tables(self):
        raise NotImplementedError


class Forward(Streams):
    """source -> target; step 7 makes the way back (the return publication and slot on the target), step 9 stops
    the forward streams and makes the source subscribe to the return slot."""

    def prepare(self):
        """Step 7, inside the freeze."""
        run = self.run
        src, tgt = run.conn("source"), run.conn("target")
        run.remove_reverse(src, tgt)
        tables = run.return_publication(src, tgt)
        lsn = run.return_slot(tgt)
        run.positions["return_slot_lsn"] = lsn
        return dict(stream=run.reverse_name, tables=len(tables), slot_lsn=lsn)

    def stop_forward(self):
        run = self.run
        src, tgt = run.conn("source"), run.conn("target")
        for name in self.names:
            replication.drop_subscription(tgt, name, journal=run.journal)
            replication.drop_slot(src, name, journal=run.journal)

    def replicate(self):
        """Step 9, after the switch."""
        run = self.run
        self.stop_forward()
        detail = run.establish_return_path()
        return dict(detail, stopped=self.names, subscribed=run.reverse_name)


class NativeForward(Forward):
    """The migration's native streams, as pg_replication_status reads them (_pg/status.py)."""

    def names_of(self, subscriptions):
        return naming.stream_names(list(subscriptions), self.run.migration)

    def read(self):
        run = self.run
        found = status.Status(dict(self.p, barrier_lsn=None)).read(run.conn("source"), run.conn("target"))["streams"]
        return [s for s in found if s["subscription"]["exists"]]

    def replicated_tables(self):
        src = self.run.conn("source")
        return replication.publication_tables(src, replication.publications(src, self.run.forward_prefix))


class DmsForward(Forward):
    """The DMS tasks carry the changes: their state comes from dms_task_info; a marker row written after the
    freeze proves the barrier (DMS has no slot position to compare)."""

    marker = True

    def gate(self):
        tasks = cutover.dms_streams(self.p["dms_tasks"])
        go, why = cutover.stream_gate(tasks, self.p["max_lag_bytes"], self.p["max_lag_seconds"], engine="dms")
        return why, dict(streams=len(tasks))

    def barrier(self, target):
        run = self.run
        seen = db.marker_seen(run.conn(run.new), run.migration, run.run_id)
        return cutover.barrier_done({}, [], target, engine="dms", marker_seen=seen), (
            [] if seen else ["the marker row is not on the %s" % run.new])

    def marker_seen(self):
        run = self.run
        return db.marker_seen(run.conn(run.new), run.migration, run.run_id)

    def replicated_tables(self):
        # DMS has no publication: every table both sides have (outside the system and pgshift schemas)
        both = set(db.user_tables(self.run.conn("source"))) & set(db.user_tables(self.run.conn("target")))
        return sorted(both)

    def replicate(self):
        run = self.run
        self.stop_forward()
        run.warnings.append("migration_engine dms: stop the migration's DMS tasks now (the target takes the writes; "
                            "the source receives them back through %s)" % run.reverse_name)
        detail = run.establish_return_path()
        return dict(detail, stopped=self.names, subscribed=run.reverse_name)


class Reverse(Streams):
    """target -> source (a rollback): the return stream. Step 7 makes the way forward again (fresh forward slots
    on the source, while writes are frozen), step 9 removes the return stream and subscribes the target to them."""

    def names_of(self, subscriptions):
        return [n for n in subscriptions if n == self.run.reverse_name]

    def replicated_tables(self):
        return replication.publication_tables(self.run.conn("target"), [self.run.reverse_name])

    def prepare(self):
        run = self.run
        src = run.conn("source")
        names = naming.stream_names(replication.publications(src, run.forward_prefix), run.migration)
        if not names:
            raise cutover.StepFailed("the source has no forward publication %s<N> left: a second cutover would have "
                                     "nothing to stream" % run.forward_prefix)
        existing = replication.slots(src, names)
        for name in names:
            if name in existing:
                replication.drop_slot(src, name, journal=run.journal)
            lsn = replication.create_slot(src, name, journal=run.journal)
            run.created["slots"].append(("source", name))
            run.positions["forward_slot_lsn_" + name] = lsn
        return dict(streams=names)

    def replicate(self):
        run = self.run
        src, tgt = run.conn("source"), run.conn("target")
        removed = run.remove_reverse(src, tgt)
        conninfo = run.forward_conninfo()
        names = [name for side, name in run.created["slots"] if side == "source"]
        for name in names:
            replication.create_subscription(tgt, name, conninfo, origin_none=True, journal=run.journal)
        return dict(stopped=run.reverse_name, removed=removed, subscribed=names)


class ReverseAfterDms(Reverse):
    """A rollback after a DMS migration: no forward slots to make again; the DMS tasks restart from the source's
    LSN taken while writes are frozen."""

    def prepare(self):
        run = self.run
        lsn = db.current_lsn(run.conn("source"))
        run.positions["dms_cdc_start_lsn"] = lsn
        run.warnings.append("migration_engine dms: after this rollback restart the DMS tasks with CDC from the "
                            "source's LSN %s (CdcStartPosition) before a second cutover" % lsn)
        return dict(dms_cdc_start_lsn=lsn)


def streams_for(direction, engine, run):
    """The streams old -> new of a run in `direction` with migration `engine`."""
    if direction == "reverse":
        return (ReverseAfterDms if engine == "dms" else Reverse)(run)
    return (DmsForward if engine == "dms" else NativeForward)(run)
