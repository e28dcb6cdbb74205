"""The way back, proven (issue 12, item 6): aurora_cutover on the RDS/Aurora-shaped clusters (PG16 source, PG18
target, the master user over TLS verify-full), with the return stream connecting as a migration user (LOGIN,
rds_replication, nothing else) with the TLS settings of the connection the *source server* makes.

- a rehearsal really subscribes the source to the target's return slot, checks it streams (the target sees the
  migration user over TLS), removes it, and says so in rehearsal.json; a cutover then passes its preflight;
- a cutover without that proof is no-go and the source keeps serving;
- a rehearsal whose return connection cannot work (a CA file the source server cannot read, a wrong host) fails
  with the server's error in its report, leaves nothing behind, and blocks the cutover;
- a return stream that fails after the switch (the migration user's password changed on the target since the
  rehearsal) is reported as switched_without_return_path, leaves no slot behind, and mode=resume_reverse (once
  the password is fixed) makes it again: a write on the target reaches the source.

Uses the `pair` fixture of test_cutover.py (its own databases, application role, PgBouncer and forward stream).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import psycopg
import pytest

import test_cutover
from modrunner import run_module
from pgcluster import ca_cert, wait_for
from test_cutover import APP_PASSWORD, SECRETS, ledger_exact, params, start_writer, stop_writers, wait_same

# The fixture (pytest finds fixtures among a module's names).
pair = test_cutover.pair

MODULE = "aurora_cutover"
MIG_PASSWORD = "it-return mig 'pw' \\ $ %"
NEW_PASSWORD = "it-return rotated \"pw\" 2"


@pytest.fixture
def way(pair, new_role, tmp_path):
    """The pair plus a migration user on the target (the one the return stream connects as) and a report dir."""
    env = pair
    mig = new_role("retmig")
    env["target"].create_migration_user(mig, MIG_PASSWORD)
    env["target"].execute(env["db"], "ANALYZE", operator=True)  # as replicate.yml leaves it: the planner measured
    env.update(mig=mig, reports=tmp_path / "reports", secrets=SECRETS + (MIG_PASSWORD, NEW_PASSWORD))
    try:
        yield env
    finally:
        # the pair's teardown removes subscriptions and slots; the role goes once nothing uses it
        stop_writers(env)
        for sub in env["source"].query(env["db"], "SELECT subname FROM pg_subscription WHERE subname LIKE %s",
                                       ("pgshift_%s_%%" % env["migration"],), operator=True):
            env["source"].execute(env["db"], ["ALTER SUBSCRIPTION %s DISABLE" % sub[0],
                                              "ALTER SUBSCRIPTION %s SET (slot_name = NONE)" % sub[0],
                                              "DROP SUBSCRIPTION %s" % sub[0]], operator=True)
        wait_for(lambda: not env["target"].query("postgres", "SELECT count(*) FROM pg_stat_replication WHERE "
                                                             "usename = %s", (mig,))[0][0], 15)
        try:
            env["target"].execute("postgres", "DROP ROLE IF EXISTS %s" % mig)
        except psycopg.Error:
            pass


def run(env, check_mode=False, **extra):
    """aurora_cutover with the return stream as the migration user over verify-full (the lab CA, which the source
    server can read); no password may appear in its output."""
    args = params(env, report_dir=str(env["reports"]), target_replication_user=env["mig"],
                  target_replication_password=MIG_PASSWORD)
    args.pop("return_path_requirement")  # test_cutover's tests ignore the gate; these are about it
    args.update(extra)
    result, raw = run_module(MODULE, args, check_mode=check_mode)
    for secret in env["secrets"]:
        assert secret not in raw, "a secret leaked into the module output"
    return result


def report(env, name):
    text = (env["reports"] / name).read_text()
    for secret in env["secrets"]:
        assert secret not in text, "a secret in %s" % name
    return json.loads(text) if name.endswith(".json") else text


def leftovers(env):
    """What of the return stream exists: subscriptions on the source, slots and publications on the target."""
    src, tgt, db, name = env["source"], env["target"], env["db"], "pgshift_%s_r1" % env["migration"]
    return dict(subscriptions=[r[0] for r in src.query(db, "SELECT subname FROM pg_subscription WHERE subname = %s",
                                                       (name,), operator=True)],
                slots=[r[0] for r in tgt.query("postgres", "SELECT slot_name FROM pg_replication_slots WHERE "
                                                           "slot_name = %s", (name,))],
                publications=[r[0] for r in tgt.query(db, "SELECT pubname FROM pg_publication WHERE pubname = %s",
                                                      (name,))])


NOTHING = dict(subscriptions=[], slots=[], publications=[])


def source_serving(env, result):
    assert result.get("failed") and result["serving"] == "source"
    assert env["bouncer"].points_at() == env["source"].port
    assert env["target"].query(env["db"], "SELECT subenabled FROM pg_subscription WHERE subname = %s",
                               ("pgshift_%s_s1" % env["migration"],))[0][0] is True


def return_sender(env):
    """The WAL sender on the target serving the return slot: (user, ssl) or None."""
    found = env["target"].query(
        "postgres", "SELECT r.usename::text, s.ssl, r.state FROM pg_replication_slots l JOIN pg_stat_replication r "
                    "ON r.pid = l.active_pid JOIN pg_stat_ssl s ON s.pid = r.pid WHERE l.slot_name = %s",
        ("pgshift_%s_r1" % env["migration"],))
    return tuple(found[0]) if found else None


def test_the_rehearsal_proves_the_way_back_and_the_cutover_then_goes(way):
    env = way
    src, tgt, db = env["source"], env["target"], env["db"]
    writer = start_writer(env, 1)
    result = run(env, rehearsal=True)
    assert not result.get("failed"), result.get("msg")
    assert result["status"] == "rehearsed" and result["serving"] == "source"
    assert [u["step"] for u in result["undone"]] == ["freeze", "return_path"]
    (check,) = [e for e in result["timeline"] if e["kind"] == "check"]
    assert check["step"] == "return_path" and check["status"] == "ok"
    assert "the source server streams from the target as %s@127.0.0.1:%d/%s (sslmode verify-full" % (
        env["mig"], tgt.port, db) in check["message"]
    # the proof is outside the write pause: it ran after the freeze was undone
    undo_freeze = [e for e in result["timeline"] if e["kind"] == "undo" and e["step"] == "freeze"][0]
    # (at and seconds are each rounded to the millisecond: their sum may pass the true end by 1 ms, and the
    # check's own at may be 0.5 ms early)
    assert check["at"] >= undo_freeze["at"] + undo_freeze["seconds"] - 0.002
    proof = report(env, "rehearsal.json")["return_path_proof"]
    assert proof["status"] == "ok" and proof["error"] is None and proof["proven_at"].endswith("Z")
    assert proof["connection"] == dict(user=env["mig"], host="127.0.0.1", port=tgt.port, dbname=db,
                                       sslmode="verify-full", sslrootcert=ca_cert())
    # what the target saw: the source server, as the migration user, over TLS, streaming from the return slot
    assert proof["seen_by_target"]["user"] == env["mig"] and proof["seen_by_target"]["ssl"] is True
    assert proof["seen_by_target"]["state"] == "streaming" and proof["tables"] == 3
    assert "## The way back" in report(env, "rehearsal.md")
    created = " ".join(q for q in result["queries"] if "CREATE SUBSCRIPTION" in q)
    assert "password=" in created and "********" in created and "it-return mig" not in created
    # nothing left behind: no subscription on the source, no slot (nor publication) on the target
    assert leftovers(env) == NOTHING
    assert tgt.query("postgres", "SELECT count(*) FROM pg_replication_slots")[0][0] == 0
    assert src.query(db, "SELECT count(*) FROM pg_subscription", operator=True)[0][0] == 0

    # the cutover's preflight reads the proof: go; the return stream is the one proven
    go = run(env)
    assert not go.get("failed"), go.get("msg")
    assert go["status"] == "switched" and go["serving"] == "target"
    (preflight,) = [e for e in go["timeline"] if e["step"] == "preflight"]
    assert preflight["detail"]["return_path"].startswith("the way back proven by the rehearsal")
    (replication,) = [e for e in go["timeline"] if e["step"] == "replication"]
    assert replication["detail"]["seen_by_target"]["user"] == env["mig"]
    assert return_sender(env) == (env["mig"], True, "streaming")
    before = writer.seq
    assert wait_for(lambda: writer.seq > before + 10, 20)
    stop_writers(env)
    assert writer.errors == []
    wait_same(env)
    ledger_exact(src, db, [writer])


def test_a_cutover_without_a_proven_rehearsal_is_no_go(way):
    env = way
    writer = start_writer(env, 2)
    result = run(env)
    source_serving(env, result)
    assert result["status"] == "aborted" and result["failed_step"] == "preflight"
    assert "no rehearsal report (rehearsal.json)" in result["msg"] and "run rehearsal.yml" in result["msg"]
    assert report(env, "cutover.json")["status"] == "aborted"
    assert leftovers(env) == NOTHING
    # a rehearsal that did not get to the return path proves nothing either
    failed = run(env, rehearsal=True, hooks=dict(after_barrier="exit 4"))
    assert failed["failed"] and failed["failed_step"] == "barrier"
    assert "return_path_proof" not in report(env, "rehearsal.json")
    again = run(env)
    assert again["failed_step"] == "preflight" and "did not prove the way back" in again["msg"]
    # return_path_requirement if_present lets a missing proof pass (check mode: the preflight only)
    checked = run(env, check_mode=True, return_path_requirement="if_present")
    assert checked["status"] == "checked", checked.get("msg")
    (preflight,) = [e for e in checked["preflight"]["timeline"] if e["step"] == "preflight"]
    assert preflight["detail"]["return_path"].endswith("did not prove the way back (return_path_requirement="
                                                       "if_present)")
    before = writer.seq
    assert wait_for(lambda: writer.seq > before + 10, 20), "the writer is stuck on the source"
    stop_writers(env)
    assert writer.errors == []
    wait_same(env)


def unreadable_ca(tmp):
    """A copy of the CA the controller can read and the source server (the postgres OS user) cannot."""
    if os.geteuid() != 0:
        return os.path.join(tmp, "no-such-dir", "ca.crt")
    root = tempfile.mkdtemp(prefix="pgshift-it-ca-", dir=tmp)
    os.chmod(root, 0o700)
    path = os.path.join(root, "ca.crt")
    shutil.copy(ca_cert(), path)
    os.chmod(path, 0o600)
    return path


@pytest.mark.parametrize("fault", ["ca_the_server_cannot_read", "wrong_host"])
def test_a_rehearsal_whose_way_back_cannot_work_fails_and_blocks_the_cutover(way, fault, tmp_path):
    env = way
    if fault == "ca_the_server_cannot_read":
        bad = dict(target_ssl_mode_for_source="verify-full",
                   target_ssl_root_cert_for_source=unreadable_ca(str(tmp_path)))
        words = "root certificate"
    else:
        bad = dict(target_host_for_source="127.0.0.2")
        words = "127.0.0.2"
    writer = start_writer(env, 3)
    result = run(env, rehearsal=True, **bad)
    source_serving(env, result)
    assert result["status"] == "aborted" and result["failed_step"] == "return_path"
    assert "the way back could not be proven" in result["msg"] and words in result["msg"]
    assert [u["step"] for u in result["undone"]] == ["freeze", "return_path"]
    assert all(u["status"] == "ok" for u in result["undone"])
    proof = report(env, "rehearsal.json")["return_path_proof"]
    assert proof["status"] == "failed" and words in proof["error"]
    assert "could not subscribe to the target's return slot" in proof["error"]
    assert proof["connection"]["user"] == env["mig"]
    assert "status: **failed**" in report(env, "rehearsal.md")
    assert leftovers(env) == NOTHING
    # the cutover with those settings is refused, saying why
    refused = run(env, **bad)
    source_serving(env, refused)
    assert refused["failed_step"] == "preflight" and "could not create the return stream" in refused["msg"]
    assert words in refused["msg"] and "rehearsal.yml" in refused["msg"]
    # with the settings fixed the old proof does not count either: rehearse again
    fixed = run(env)
    assert fixed["failed_step"] == "preflight"
    before = writer.seq
    assert wait_for(lambda: writer.seq > before + 10, 20)
    stop_writers(env)
    assert writer.errors == []


def test_a_return_stream_failing_after_the_switch_is_reported_and_resume_reverse_makes_it(way):
    env = way
    src, tgt, db, name = env["source"], env["target"], env["db"], "pgshift_%s_r1" % env["migration"]
    rehearsed = run(env, rehearsal=True)
    assert rehearsed["status"] == "rehearsed", rehearsed.get("msg")
    # between the rehearsal and the cutover the migration user's password changes on the target; the
    # inventory still has the old one
    tgt.create_migration_user(env["mig"], NEW_PASSWORD)
    writer = start_writer(env, 4)
    result = run(env)
    assert result["failed"] and result["status"] == "switched_without_return_path"
    assert result["failed_step"] == "replication" and result["serving"] == "target"
    assert "THERE IS NO WAY BACK" in result["msg"] and "password authentication failed" in result["msg"]
    assert "cutover_mode=resume_reverse" in result["msg"]
    assert "slot %s on the target" % name in result["msg"]
    warnings = " ".join(str(w) for w in result.get("warnings") or [])
    assert "NO WAY BACK" in warnings
    saved = report(env, "cutover.json")
    assert saved["status"] == "switched_without_return_path" and saved["serving"] == "target"
    assert "switched_without_return_path" in report(env, "cutover.md")
    # traffic is on the target, nothing holds its WAL: no return slot, no subscription
    assert env["bouncer"].points_at() == tgt.port
    assert leftovers(env)["slots"] == [] and leftovers(env)["subscriptions"] == []
    before = writer.seq
    assert wait_for(lambda: writer.seq > before + 10, 20)

    # resume_reverse with the wrong password still fails the same way, and leaves no slot behind
    still = run(env, mode="resume_reverse")
    assert still["failed"] and still["status"] == "switched_without_return_path"
    assert "password authentication failed" in still["msg"]
    assert leftovers(env)["slots"] == []
    # fixed (the inventory gets the new password): the return stream is made again and streams
    resumed = run(env, mode="resume_reverse", target_replication_password=NEW_PASSWORD)
    assert not resumed.get("failed"), resumed.get("msg")
    assert resumed["status"] == "resumed" and resumed["changed"]
    info = resumed["return_path"]
    assert info["actions"] == ["create_slot", "create_subscription"] and info["gap"] is True
    assert info["gap_from_lsn"] == saved["positions"]["return_slot_lsn"] and info["gap_to_lsn"]
    assert info["seen_by_target"]["user"] == env["mig"] and info["seen_by_target"]["ssl"] is True
    assert any("NOT on the source" in str(w) for w in resumed.get("warnings") or [])
    assert report(env, "resume_reverse.json")["status"] == "resumed"
    assert "**gap**" in report(env, "resume_reverse.md")
    assert return_sender(env) == (env["mig"], True, "streaming")
    # a write on the target comes back to the source through the return stream
    with psycopg.connect(host="127.0.0.1", port=env["bouncer"].port, dbname=db, user=env["app"],
                         password=APP_PASSWORD, autocommit=True, prepare_threshold=None) as c:
        c.execute("INSERT INTO public.ledger (client_id, seq, note) VALUES (99, 1, 'back home')")
    assert wait_for(lambda: src.query(db, "SELECT count(*) FROM public.ledger WHERE note = 'back home'")[0][0] == 1,
                    30), "the write on the target did not reach the source"
    # a second resume changes nothing
    again = run(env, mode="resume_reverse", target_replication_password=NEW_PASSWORD)
    assert not again.get("failed") and not again["changed"] and again["return_path"]["actions"] == []
    stop_writers(env)
    assert writer.errors == []


# --------------------------------------------------------------------------------------------
# Through the playbooks: rehearsal.yml proves the way back as the inventory's migration user (db_user), cutover.yml
# reads it, cutover.yml -e cutover_mode=resume_reverse checks the return stream
# --------------------------------------------------------------------------------------------

def test_playbooks_rehearsal_then_cutover_then_resume_reverse(source_cluster, target_cluster, new_db, new_role,
                                                              tmp_path):
    import yaml

    from ansible_collections.pgshift.aurora.plugins.module_utils import replication_conn
    from modrunner import run_playbook
    from pgcluster import MASTER_PASSWORD, MASTER_USER

    migration, user, password = new_role("pbret"), new_role("pbretmig"), "it-pb-return-migrator 'x' $"
    secrets = SECRETS + (password,)
    sdb, tdb = new_db(source_cluster), new_db(target_cluster)
    for cluster in (source_cluster, target_cluster):
        cluster.create_migration_user(user, password)
    schema = ["CREATE TABLE public.accounts (id bigserial PRIMARY KEY, balance bigint NOT NULL DEFAULT 0)"]
    source_cluster.execute(sdb, schema + ["INSERT INTO public.accounts (balance) SELECT g FROM generate_series(1, 40) g"])
    target_cluster.execute(tdb, schema)
    stream = "pgshift_%s_s1" % migration
    source_cluster.execute(sdb, "CREATE PUBLICATION %s FOR TABLE public.accounts" % stream)
    conninfo = replication_conn.subscription_conninfo("127.0.0.1", source_cluster.port, sdb, MASTER_USER, MASTER_PASSWORD,
                                                      "verify-full", ca_cert())
    with target_cluster.master_connect(tdb) as conn:
        conn.execute("CREATE SUBSCRIPTION %s CONNECTION '%s' PUBLICATION %s" % (
            stream, conninfo.replace("'", "''"), stream))
    assert wait_for(lambda: target_cluster.query(tdb, "SELECT count(*) FROM public.accounts")[0][0] == 40, 60)
    target_cluster.execute(tdb, "ANALYZE", operator=True)

    root, reports = tmp_path / "inventory", tmp_path / "reports"
    (root / "host_vars").mkdir(parents=True)
    (root / "group_vars" / "all").mkdir(parents=True)
    (root / "hosts.yml").write_text(yaml.safe_dump(dict(all=dict(
        vars=dict(ansible_connection="local", ansible_python_interpreter="{{ ansible_playbook_python }}"),
        children=dict(source=dict(hosts={"it-source": None}), target=dict(hosts={"it-target": None}))))))
    for host, cluster, db in (("it-source", source_cluster, sdb), ("it-target", target_cluster, tdb)):
        (root / "host_vars" / (host + ".yml")).write_text(yaml.safe_dump(dict(
            db_host="127.0.0.1", db_port=cluster.port, db_name=db, db_user=user, db_password=password,
            db_admin_user=MASTER_USER, db_admin_password=MASTER_PASSWORD, db_sslmode="verify-full",
            db_sslrootcert=ca_cert(), db_replication_sslmode="verify-full", db_replication_sslrootcert=ca_cert())))
    (root / "group_vars" / "all" / "migration.yml").write_text(yaml.safe_dump(dict(
        migration_name=migration, migration_engine="native", migration_streams=1, traffic_switch="none",
        report_dir=str(reports))))
    freeze = ["-e", "cutover_freeze_method=command", "-e", "cutover_freeze_command=true",
              "-e", "cutover_unfreeze_command=true"]

    def play(name, *args):
        rc, out, dummy = run_playbook("pgshift.aurora.%s" % name, str(root / "hosts.yml"), *(freeze + list(args)),
                                      cwd=str(tmp_path), timeout=300, secrets=secrets)
        return rc, out

    def saved(name):
        text = (reports / name).read_text()
        assert not any(s in text for s in secrets)
        return json.loads(text)

    try:
        rc, out = play("cutover")
        assert rc != 0 and "run rehearsal.yml" in out, out[-3000:]
        assert saved("cutover.json")["failed_step"] == "preflight"
        rc, out = play("rehearsal")
        assert rc == 0, out[-3000:]
        proof = saved("rehearsal.json")["return_path_proof"]
        assert proof["status"] == "ok" and proof["connection"]["user"] == user
        assert proof["seen_by_target"]["user"] == user and proof["seen_by_target"]["ssl"] is True
        rc, out = play("cutover")
        assert rc == 0, out[-3000:]
        assert saved("cutover.json")["status"] == "switched"
        rc, out = play("cutover", "-e", "cutover_mode=resume_reverse")
        assert rc == 0, out[-3000:]
        resumed = saved("resume_reverse.json")
        assert resumed["status"] == "resumed" and resumed["return_path"]["actions"] == []
        assert resumed["return_path"]["seen_by_target"]["user"] == user
    finally:
        for cluster, db in ((source_cluster, sdb), (target_cluster, tdb)):
            for (sub,) in cluster.query(db, "SELECT subname FROM pg_subscription", operator=True):
                cluster.execute(db, ["ALTER SUBSCRIPTION %s DISABLE" % sub, "ALTER SUBSCRIPTION %s SET (slot_name = "
                                     "NONE)" % sub, "DROP SUBSCRIPTION %s" % sub], operator=True)
        for cluster in (source_cluster, target_cluster):
            for (slot,) in cluster.query("postgres", "SELECT slot_name FROM pg_replication_slots WHERE slot_name "
                                                     "LIKE %s", ("pgshift_%s_%%" % migration,)):
                wait_for(lambda: not cluster.query("postgres", "SELECT active FROM pg_replication_slots WHERE "
                                                               "slot_name = %s", (slot,))[0][0], 15)
                cluster.execute("postgres", "SELECT pg_drop_replication_slot('%s')" % slot)
