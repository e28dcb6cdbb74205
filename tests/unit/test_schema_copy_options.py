"""pg_schema_copy's options (runners/schema_copy.py): what is refused before anything runs."""

from __future__ import annotations

from ansible_collections.pgshift.aurora.plugins.module_utils.runners import schema_copy


def params(**kw):
    p = dict((name, spec.get("default")) for name, spec in schema_copy.argument_spec().items())
    p.update(stage="post", target_login_host="aurora.example")
    p.update(kw)
    return p


def test_good_options_have_no_problem():
    assert schema_copy.option_problems(params()) == []
    assert schema_copy.option_problems(params(maintenance_work_mem="512MB", wait_for_streams=["s1"],
                                              progress_file="/tmp/p.json")) == []


def test_bad_options_are_named():
    problems = schema_copy.option_problems(params(parallel=0, lock_wait_timeout=-1, maintenance_work_mem="lots",
                                                  pg_bin_dir="/nonexistent/bin", wait_timeout=0))
    assert problems == ["parallel must be at least 1 (got 0)", "lock_wait_timeout cannot be negative",
                        "maintenance_work_mem must be a size such as 512MB or 2GB (got 'lots')",
                        "pg_bin_dir /nonexistent/bin is not a directory",
                        "wait_timeout must be at least 1 second (got 0)"]
    assert schema_copy.option_problems(params(stage="pre", wait_for_streams=["s1"], progress_file="/tmp/p")) == [
        "wait_for_streams is for stage post (the stage pre comes before the loads)",
        "progress_file is for stage post"]


def test_the_target_database_defaults_to_the_source_database_and_no_statement_runs_in_check_mode():
    copy = schema_copy.SchemaCopy(params(login_db="app", target_login_db=None, login_password="pw1",
                                         target_login_password="pw2"), check_mode=True)
    assert copy.target["login_db"] == "app" and copy.target["login_host"] == "aurora.example"
    assert copy.target_maint["login_db"] == "postgres" and copy.source["login_password"] == "pw1"
    assert copy.journal.check_mode and copy.scrub("pw1 and pw2") == "******** and ********"
