# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The way back of a cutover: the return stream new -> old, ``pgshift_<migration>_r1``.

The source *server* subscribes to the target's return slot (made in the cutover's step 7, while writes
are frozen), as the migration user, with the host, port and TLS settings of the connection that server
makes (``target_*_for_source``, from the inventory's ``db_replication_*``). The same code makes it:

- in the rehearsal, after its freeze is undone: created, checked and removed again (the proof the
  cutover's preflight reads from rehearsal.json);
- after the switch (step 9): created and checked; when that fails the subscription and the return
  slot are removed (a slot nobody reads holds the target's WAL) and the run says so;
- with ``mode=resume_reverse``: what ``cutover.resume_reverse_plan`` says, then checked.

"Checked" means ``cutover.return_stream_check``: the subscription exists and is enabled on the source,
the source found the publication's tables on the target, its apply worker runs, and the target sees a
WAL sender on the return slot connected as the migration user (with TLS when asked), streaming.
"""

from __future__ import annotations

import time

from ansible_collections.pgshift.aurora.plugins.module_utils import cutover, replication_conn
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import replication


def first_line(exc):
    """An error's text on one line (a server's message may span several), without a final period."""
    return " ".join(str(exc).split()).rstrip(".")


class ReturnPath:
    """source, target: open (autocommit) connections as the admin; connection: cutover.return_path_connection
    of the subscription (the password apart); journal: the run's journal.Journal (the password is among its
    secrets: shown masked); on_wait(problems, seconds left): called while it waits for the stream to stream."""

    def __init__(self, source, target, name, connection, password, journal, timeout=30.0, clock=time.monotonic,
                 sleep=time.sleep, on_wait=None):
        self.src, self.tgt = source, target
        self.name = name
        self.connection = connection
        self.password = password
        self.journal = journal
        journal.add_secret(password)
        self.timeout = float(timeout)
        self.clock = clock
        self.sleep = sleep
        self.on_wait = on_wait  # on_wait(problems, seconds left): told at each check while it waits to stream

    def conninfo(self):
        c = self.connection
        return replication_conn.subscription_conninfo(c["host"], c["port"], c["dbname"], c["user"], self.password,
                                                      c["sslmode"], c["sslrootcert"])

    def describe(self):
        c = self.connection
        return "%s@%s:%s/%s (sslmode %s%s)" % (c["user"], c["host"], c["port"], c["dbname"], c["sslmode"] or "-",
                                               ", sslrootcert %s" % c["sslrootcert"] if c["sslrootcert"] else "")

    # --- what exists ---------------------------------------------------------------------------

    def state(self):
        """dict(publication, slot, subscription) - which of the three parts exist."""
        return dict(publication=self.name in replication.publications(self.tgt, self.name),
                    slot=self.name in replication.slots(self.tgt, [self.name]),
                    subscription=self.name in replication.subscriptions(self.src))

    def observe(self):
        return dict(subscription=replication.subscription_state(self.src, self.name),
                    sender=replication.slot_sender(self.tgt, self.name))

    def check(self):
        """(ok, problems, observed, tables) once."""
        tables = len(replication.publication_tables(self.tgt, [self.name]))
        observed = self.observe()
        ok, problems = cutover.return_stream_check(observed, self.connection["user"], tables,
                                                   self.connection["sslmode"] in replication_conn.TLS_MODES)
        return ok, problems, observed, tables

    def detail(self, checked, seconds):
        """What a check found, as reports show it: subscription, connection (no password), tables, seen_by_target
        (the user, TLS and state of the WAL sender the target sees on the return slot), seconds."""
        ok, problems, observed, tables = checked
        sender = observed.get("sender") or {}
        seen = dict(user=sender.get("usename"), ssl=sender.get("ssl"), ssl_version=sender.get("ssl_version"),
                    client_addr=sender.get("client_addr"), state=sender.get("state")) if sender else None
        return dict(subscription=self.name, connection=self.connection, tables=tables, seen_by_target=seen,
                    seconds=round(seconds, 3))

    # --- acting --------------------------------------------------------------------------------

    def subscribe(self):
        """CREATE SUBSCRIPTION on the source: on the return slot, nothing copied, origin none (16+), enabled.
        The source server connects to the target at once (the table list): a connection, password or TLS
        problem fails here."""
        replication.create_subscription(self.src, self.name, self.conninfo(), origin_none=True, journal=self.journal)

    def reconnect(self):
        """The subscription's connection string set again (a password or address fixed since) and enabled."""
        replication.alter_subscription_connection(self.src, self.name, self.conninfo(), journal=self.journal)

    def wait_streaming(self):
        """Check until the stream streams or `timeout` s passed: (ok, problems, observed, tables)."""
        deadline = self.clock() + self.timeout
        while True:
            ok, problems, observed, tables = self.check()
            if ok or self.clock() > deadline:
                return ok, problems, observed, tables
            if self.on_wait is not None:
                self.on_wait(problems, deadline - self.clock())
            self.sleep(0.1)

    def establish(self, action="create_subscription"):
        """Subscribe (or reconnect) and wait until it streams: the detail of the proof; StepFailed saying why
        not (a subscription made here is left for the caller's remove())."""
        t0 = self.clock()
        try:
            if action == "alter_connection":
                self.reconnect()
            else:
                self.subscribe()
        except Exception as exc:  # the server's own words: could not connect, password, certificate ...
            raise cutover.StepFailed("the source server could not subscribe to the target's return slot %s as %s: %s" % (
                self.name, self.describe(), first_line(exc)), dict(connection=self.connection)) from None
        ok, problems, observed, tables = checked = self.wait_streaming()
        detail = self.detail(checked, self.clock() - t0)
        if not ok:
            raise cutover.StepFailed("the return stream %s (the source server connecting to the target as %s) does not "
                                     "stream after %.0f s: %s" % (self.name, self.describe(), self.timeout,
                                                                  "; ".join(problems)), detail)
        return detail

    def drop_subscription(self):
        if self.name not in replication.subscriptions(self.src):
            return []
        replication.drop_subscription(self.src, self.name, journal=self.journal)
        return ["subscription %s on the source" % self.name]

    def drop_slot(self):
        if not replication.drop_slot(self.tgt, self.name, journal=self.journal):
            return []
        return ["slot %s on the target" % self.name]

    def remove(self):
        """The subscription on the source and the return slot on the target (the publication holds nothing and
        stays): what was removed."""
        return self.drop_subscription() + self.drop_slot()
