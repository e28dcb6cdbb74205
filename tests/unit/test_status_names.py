"""pg_replication_status: a table's load rows and its subscription state meet on the same name, hard names too."""

from __future__ import annotations

from ansible_collections.pgshift.aurora.plugins.module_utils import native
from ansible_collections.pgshift.aurora.plugins.module_utils._pg.status import Status


def test_load_rows_and_subscription_states_of_hard_names_are_one_table_each():
    tables = native.validate_stream(dict(name="pgshift_m_s1", tables=[
        dict(schema="eu.west", name="order", split=2, split_key="id", key=["id"]),
        dict(schema="eu", name="west.order", key=["id"]),
        dict(schema='eu.west "archive"', name="Zöll_Tarife", key=["id"])]))["tables"]
    units = native.work_units(tables, {("eu.west", "order"): [(None, 10), (10, None)]})
    progress = [dict(table_name=u["table"], state="copied", rows=5, bytes=50, format="binary") for u in units]
    rels = [dict(subname="pgshift_m_s1", nspname=s, relname=n, srsubstate="r", srsublsn=None)
            for s, n in (("eu.west", "order"), ("eu", "west.order"), ('eu.west "archive"', "Zöll_Tarife"))]
    rels.append(dict(subname="pgshift_other_s1", nspname="eu", relname="west.order", srsubstate="d", srsublsn=None))
    found = Status.tables("pgshift_m_s1", progress, rels, True, True)
    assert [(t["table"], t["units"], t["rows"], t["state"]) for t in found] == [
        ('"eu.west ""archive"""."Zöll_Tarife"', 1, 5, "streaming"),
        ('"eu.west"."order"', 2, 10, "streaming"),
        ('eu."west.order"', 1, 5, "streaming")]
