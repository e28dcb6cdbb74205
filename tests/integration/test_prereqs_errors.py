"""pg_logical_prereqs failures: clear messages, no secret anywhere, bad input refused before connecting."""

from __future__ import annotations

import uuid

import pytest

from pgcluster import APP_OWNER, MASTER_USER


@pytest.mark.parametrize("verbosity", [0, 4])
def test_wrong_password_is_clear_and_never_shown(prereqs, source_cluster, source_db, verbosity):
    wrong = "Wrong-pw-%s" % uuid.uuid4().hex
    params = source_cluster.module_params(source_db, role="source", login_password=wrong)
    result = prereqs.run_params(params, verbosity=verbosity, secrets=(wrong,))
    assert result["failed"]
    assert "authentication failed for user '%s' on 127.0.0.1:%d/%s" % (MASTER_USER, source_cluster.port, source_db) \
        in result["msg"]
    assert "password" in result["msg"]
    assert result["invocation"]["module_args"]["login_password"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"


def test_wrong_password_of_another_user_names_that_user(prereqs, source_cluster, source_db, new_role):
    user = new_role("login")
    right, wrong = "Right-%s" % uuid.uuid4().hex, "Wrong-%s" % uuid.uuid4().hex
    source_cluster.execute(source_db, "CREATE ROLE %s LOGIN PASSWORD '%s'" % (user, right), operator=True)
    params = source_cluster.module_params(source_db, role="source", login_user=user, login_password=wrong)
    result = prereqs.run_params(params, verbosity=4, secrets=(wrong, right))
    assert result["failed"] and "authentication failed for user '%s'" % user in result["msg"]


def test_unreachable_port_says_cannot_reach(prereqs, source_cluster, source_db, closed_port):
    params = source_cluster.module_params(source_db, role="source", login_port=closed_port, connect_timeout=3)
    result = prereqs.run_params(params)
    assert result["failed"]
    assert "cannot reach PostgreSQL at 127.0.0.1:%d" % closed_port in result["msg"]


def test_missing_database_is_named(prereqs, source_cluster):
    params = source_cluster.module_params("no_such_db_here", role="source")
    result = prereqs.run_params(params)
    assert result["failed"]
    assert "database 'no_such_db_here' does not exist on 127.0.0.1:%d" % source_cluster.port in result["msg"]


@pytest.mark.parametrize("side", ["source", "target"])
def test_unprivileged_login_still_gets_an_assessment(request, prereqs, new_db, new_role, side):
    """A plain login user cannot read pg_file_settings nor the tables' data: the module still assesses, and
    says what that login lacks to be the admin (act as the owner, CREATE on the database, subscriptions)."""
    cluster = request.getfixturevalue("%s_cluster" % side)
    db = new_db(cluster)
    user, password = new_role("reader"), "Reader-%s" % uuid.uuid4().hex
    cluster.execute(db, "CREATE ROLE %s LOGIN PASSWORD '%s'" % (user, password), operator=True)
    cluster.execute(db, ["CREATE TABLE public.docs (id int PRIMARY KEY, body text)",
                         "INSERT INTO public.docs VALUES (1, repeat('x', 5000))"])
    params = cluster.module_params(db, role=side, login_user=user, login_password=password, fail_on="never",
                                   write_rate_sample_seconds=0.1)
    result = prereqs.run_params(params, verbosity=4, secrets=(password,))
    prereqs.ok(result)
    assert result["server"]["version_num"] >= 150000
    assert result["settings"]["wal_level"]["setting"] == "logical"
    # The reader is both the login (the admin) and the migration user here.
    for check_id, severity in (("replication_privilege", "blocker"), ("create_privilege", "blocker"),
                               ("admin_replication", "blocker" if side == "source" else "warning")):
        f = prereqs.one(result, check_id)
        assert (f["severity"], f["object"]) == (severity, user), check_id
    owners = prereqs.one(result, "owner_roles") if side == "source" else None
    if side == "source":
        f = prereqs.one(result, "select_privilege")
        assert (f["severity"], f["object"]) == ("blocker", "public.docs")
        assert result["lob"]["columns"] == [dict(table="public.docs", column="body", type="text", max_bytes=None,
                                                 how=["no privilege"])]
        assert owners["object"] == APP_OWNER and owners["severity"] == "blocker"
        assert owners["remediation"].startswith('GRANT "%s" TO "%s" WITH INHERIT TRUE, SET TRUE (as '
                                                % (APP_OWNER, user))
    else:
        assert prereqs.one(result, "subscription_privilege")["severity"] == "blocker"
        assert prereqs.one(result, "target_not_empty")["object"] == "1 table(s)"


@pytest.mark.parametrize("options, message", [
    pytest.param(dict(planned_streams=-1), "planned_streams must be 0 (automatic) or more (got -1)", id="streams"),
    pytest.param(dict(reserved_slots=-1), "reserved_slots cannot be negative", id="reserved"),
    pytest.param(dict(vcpus=0), "vcpus must be the instances' vCPU count, from 1 (got 0)", id="vcpus"),
    pytest.param(dict(replica_identity_full=["a.b.c"]), "replica_identity_full: table name 'a.b.c' has more than "
                 "two parts", id="three-parts"),
    pytest.param(dict(replica_identity_full=['public."unclosed']), "has an unterminated double quote",
                 id="open-quote"),
    pytest.param(dict(replica_identity_full=["public."]), "table name 'public.' has an empty part", id="empty-name"),
    pytest.param(dict(role="target", state="present", replica_identity_full=["public.t"]),
                 "replica_identity_full applies to the source only", id="target-identity"),
    pytest.param(dict(rds_instance_id="db1"), "rds_instance_id needs aws_region", id="rds-no-region"),
])
def test_invalid_options_fail_before_connecting(prereqs, source_cluster, closed_port, options, message):
    """The port is closed: a message about the options proves nothing tried to connect."""
    options = dict(options)
    options.setdefault("role", "source")
    params = source_cluster.module_params("postgres", login_port=closed_port, **options)
    result = prereqs.run_params(params)
    assert result["failed"]
    assert result["msg"].startswith("invalid options: ")
    assert message in result["msg"]
    assert "cannot reach" not in result["msg"]


def test_two_invalid_options_are_reported_together(prereqs, source_cluster, closed_port):
    params = source_cluster.module_params("postgres", login_port=closed_port, role="source", planned_streams=-1,
                                          replica_identity_full=["a.b.c"])
    result = prereqs.run_params(params)
    assert result["failed"] and "planned_streams must be" in result["msg"] and "'a.b.c'" in result["msg"]


def test_unknown_choice_is_refused(prereqs, source_cluster, closed_port):
    params = source_cluster.module_params("postgres", login_port=closed_port, role="source", engine="pglogical")
    result = prereqs.run_params(params)
    assert result["failed"] and "engine" in result["msg"] and "pglogical" in result["msg"]


BLOCKER_AND_WARNING = ["CREATE TABLE public.nopk (a int)", "CREATE UNLOGGED TABLE public.scratch (id int PRIMARY KEY)"]


def test_fail_on_blocker_lists_the_blockers(prereqs, source_cluster, source_db):
    source_cluster.execute(source_db, BLOCKER_AND_WARNING)
    result = prereqs(source_cluster, source_db, role="source", fail_on="blocker")
    assert result["failed"]
    lines = result["msg"].splitlines()
    assert lines[0] == "1 finding(s) at or above 'blocker':"
    assert lines[1].startswith("- [blocker] no_replica_identity (public.nopk): ")
    assert "Fix: add a primary key" in lines[1]
    assert len(lines) == 2 and "unlogged" not in result["msg"]
    assert result["summary"] == {"blocker": 1, "warning": 1, "info": 3}  # the report comes with the failure
    assert result["checks"]["no_replica_identity"] == "blocker"


def test_fail_on_never_only_reports(prereqs, source_cluster, source_db):
    source_cluster.execute(source_db, BLOCKER_AND_WARNING)
    result = prereqs.ok(prereqs(source_cluster, source_db, role="source", fail_on="never"))
    assert result["summary"]["blocker"] == 1 and result["summary"]["warning"] == 1


def test_fail_on_warning_fails_on_warnings(prereqs, source_cluster, source_db):
    source_cluster.execute(source_db, ["CREATE UNLOGGED TABLE public.scratch (id int PRIMARY KEY)"])
    result = prereqs.ok(prereqs(source_cluster, source_db, role="source", fail_on="blocker"))
    assert result["summary"]["warning"] == 1 and result["summary"]["blocker"] == 0

    result = prereqs(source_cluster, source_db, role="source", fail_on="warning")
    assert result["failed"]
    assert result["msg"].splitlines() == [
        "1 finding(s) at or above 'warning':",
        "- [warning] unlogged_tables (public.scratch): unlogged tables are not replicated: public.scratch. "
        "Fix: copy them at cutover, or ALTER TABLE ... SET LOGGED before the migration"]


def test_fail_on_warning_also_fails_on_blockers(prereqs, source_cluster, source_db):
    source_cluster.execute(source_db, BLOCKER_AND_WARNING)
    result = prereqs(source_cluster, source_db, role="source", fail_on="warning")
    assert result["failed"] and result["msg"].startswith("2 finding(s) at or above 'warning':")
    assert "[blocker] no_replica_identity" in result["msg"] and "[warning] unlogged_tables" in result["msg"]
