"""PgBouncer's [databases] entry changed in place and put back (module_utils/pgbouncer_conf)."""

import json

import pytest

from ansible_collections.pgshift.aurora.plugins.module_utils import pgbouncer_conf as conf
from ansible_collections.pgshift.aurora.plugins.module_utils._pg import pgbouncer

# Several databases, per-database options, comments, blank lines, CRLF on one line, trailing spaces,
# a tab before '=', a password (that must never reach the undo record), the fallback entry.
DATABASES = (
    ";; databases PgBouncer serves\n"
    "# another comment style\n"
    "\n"
    "[databases]\n"
    "reports = host=10.0.0.9 port=5433 dbname=reports pool_size=3\n"
    "  app\t=  host=10.0.0.1 port=5432 dbname=app pool_size=20 auth_user=pgb_auth "
    "connect_query='SELECT set_config(''app.mode'', ''a=b c'', false)' password=s3cr3t-pw   \n"
    "billing = host=10.0.0.1 dbname=billing_prod max_db_connections=7\r\n"
    "; a commented-out entry for app = host=old\n"
    "* = host=10.0.0.250 port=6000\n"
)
SOURCE = ("10.0.0.1", 5432, "app")
TARGET = ("aurora.cluster-x.internal", 25433, "app")


def reader(files):
    def read(path):
        if path not in files:
            raise FileNotFoundError(2, "No such file or directory", path)
        return files[path]
    return read


def lines_changed(before, after):
    a, b = before.split("\n"), after.split("\n")
    assert len(a) == len(b)
    return [(x, y) for x, y in zip(a, b) if x != y]


def switch(files, path, database, where, undo=None):
    return conf.plan_switch(reader(files), path, database, *where, undo=undo)


def test_only_the_entrys_host_port_dbname_change_and_rollback_gives_back_the_bytes():
    files = {"/etc/pgbouncer/databases.ini": DATABASES}
    plan = switch(files, "/etc/pgbouncer/databases.ini", "app", TARGET)
    assert plan["path"] == "/etc/pgbouncer/databases.ini" and plan["line"] == 6 and not plan["restored"]
    (old, new), = lines_changed(DATABASES, plan["after"])
    assert new == ("  app\t=  host=aurora.cluster-x.internal port=25433 dbname=app pool_size=20 auth_user=pgb_auth "
                   "connect_query='SELECT set_config(''app.mode'', ''a=b c'', false)' password=s3cr3t-pw   ")
    # the options kept, as PgBouncer reads them
    pairs = conf.parse_connstr(conf.parse_line(1, new).value)
    assert [(p.key, p.value) for p in pairs] == [
        ("host", "aurora.cluster-x.internal"), ("port", "25433"), ("dbname", "app"), ("pool_size", "20"),
        ("auth_user", "pgb_auth"), ("connect_query", "SELECT set_config('app.mode', 'a=b c', false)"),
        ("password", "s3cr3t-pw")]
    # the undo record is JSON, and holds no secret
    record = json.loads(json.dumps(plan["record"]))
    assert "s3cr3t" not in json.dumps(record) and "connect_query" not in json.dumps(record)
    files["/etc/pgbouncer/databases.ini"] = plan["after"]
    back = switch(files, "/etc/pgbouncer/databases.ini", "app", SOURCE, undo=record)
    assert back["restored"] and back["record"] is None and back["after"] == DATABASES


def test_a_missing_port_or_dbname_is_added_next_to_the_address_and_removed_again():
    text = "[databases]\nbilling = host=10.0.0.1 dbname=billing_prod max_db_connections=7\r\n"
    files = {"/p/db.ini": text}
    plan = switch(files, "/p/db.ini", "billing", ("10.9.9.9", 6543, "billing_prod"))
    assert plan["after"] == ("[databases]\nbilling = host=10.9.9.9 dbname=billing_prod port=6543 "
                             "max_db_connections=7\r\n")
    files["/p/db.ini"] = plan["after"]
    assert switch(files, "/p/db.ini", "billing", ("10.0.0.1", 5432, "billing_prod"),
                  undo=plan["record"])["after"] == text
    # no address at all (the Unix socket, the entry's name as dbname): added first
    plan = switch({"/p": "[databases]\napp = pool_size=5\n"}, "/p", "app", ("h", 5432, "app"))
    assert plan["after"] == "[databases]\napp = host=h pool_size=5\n"
    plan = switch({"/p": "[databases]\napp =\n"}, "/p", "app", ("h", 5433, "appdb"))
    assert plan["after"] == "[databases]\napp = host=h port=5433 dbname=appdb\n"


def test_values_that_need_quotes_are_quoted():
    plan = switch({"/p": "[databases]\napp = host=a dbname=app\n"}, "/p", "app", ("b", 5432, "it's my db"))
    assert plan["after"] == "[databases]\napp = host=b dbname='it''s my db'\n"
    assert conf.entry_address(plan["after"].split("\n")[1], "app") == ("b", 5432, "it's my db")
    with pytest.raises(conf.ConfError):
        conf.quote_value("a\nb")


def test_the_other_databases_and_the_fallback_are_never_touched():
    files = {"/p": DATABASES}
    for name, where in (("reports", ("r2", 5433, "reports")), ("billing", ("10.0.0.2", 5432, "billing_prod"))):
        plan = switch(files, "/p", name, where)
        (old, new), = lines_changed(DATABASES, plan["after"])
        assert old.split(" = ")[0] == new.split(" = ")[0] == name
    assert all("* = host=10.0.0.250 port=6000" in switch(files, "/p", n, TARGET)["after"]
               for n in ("app", "reports"))


def test_a_database_served_only_by_the_fallback_is_refused_with_what_to_do():
    with pytest.raises(conf.ConfError) as err:
        switch({"/p": DATABASES}, "/p", "crm", TARGET)
    msg = str(err.value)
    assert "only through the fallback entry * (/p:9)" in msg and "never changes *" in msg
    assert "crm = host=<host> port=<port> dbname=crm" in msg and "RELOAD" in msg


def test_a_missing_entry_is_a_clear_error():
    files = {"/etc/pgbouncer/pgbouncer.ini": "[pgbouncer]\nlisten_port = 6432\n[databases]\nother = host=x\n"}
    with pytest.raises(conf.ConfError) as err:
        switch(files, "/etc/pgbouncer/pgbouncer.ini", "app", TARGET)
    assert "no entry for database app" in str(err.value) and "/etc/pgbouncer/pgbouncer.ini" in str(err.value)
    assert "databases_file" in str(err.value)
    # a commented-out entry does not count; neither does an entry of another section
    files = {"/p": "[databases]\n; app = host=x\n[users]\napp = pool_mode=session\n"}
    with pytest.raises(conf.ConfError, match="no entry for database app"):
        switch(files, "/p", "app", TARGET)
    with pytest.raises(conf.ConfError, match="cannot read PgBouncer configuration file /nope"):
        switch({}, "/nope", "app", TARGET)


def test_quoted_database_names():
    text = ("[databases]\n"
            "\"my \"\"db\"\"\" = host=a port=1 dbname='my \"db\"'\n"
            "'sales eu' = host=a port=1\n"
            "my = host=untouched\n")
    files = {"/p": text}
    plan = switch(files, "/p", 'my "db"', ("b", 2, 'my "db"'))
    (old, new), = lines_changed(text, plan["after"])
    assert new == "\"my \"\"db\"\"\" = host=b port=2 dbname='my \"db\"'"
    plan = switch(files, "/p", "sales eu", ("b", 2, "sales"))
    assert lines_changed(text, plan["after"]) == [("'sales eu' = host=a port=1",
                                                  "'sales eu' = host=b port=2 dbname=sales")]


def test_entry_in_the_main_file_inline():
    ini = ("[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = 6432\n\n"
           "[databases]\napp = host=10.0.0.1 port=5432 dbname=app pool_size=20\n"
           "other = host=10.0.0.3\n\n[users]\napp_user = pool_mode=session\n")
    files = {"/etc/pgbouncer/pgbouncer.ini": ini}
    plan = switch(files, "/etc/pgbouncer/pgbouncer.ini", "app", TARGET)
    assert plan["path"] == "/etc/pgbouncer/pgbouncer.ini" and plan["line"] == 6
    assert lines_changed(ini, plan["after"]) == [("app = host=10.0.0.1 port=5432 dbname=app pool_size=20",
                                                  "app = host=aurora.cluster-x.internal port=25433 dbname=app "
                                                  "pool_size=20")]
    files["/etc/pgbouncer/pgbouncer.ini"] = plan["after"]
    assert switch(files, "/etc/pgbouncer/pgbouncer.ini", "app", SOURCE, undo=plan["record"])["after"] == ini


def test_entry_in_an_included_file_and_the_section_carried_across_includes():
    main = ("[pgbouncer]\nlisten_port = 6432\n%include /etc/pgbouncer/databases.ini\n"
            "after = host=in-databases-too\n[pgbouncer]\n%include extra.ini\n")
    included = "[databases]\napp = host=10.0.0.1 port=5432 dbname=app\n"
    extra = "pool_mode = transaction\n"
    files = {"/etc/pgbouncer/pgbouncer.ini": main, "/etc/pgbouncer/databases.ini": included,
             "/etc/pgbouncer/extra.ini": extra}
    plan = switch(files, "/etc/pgbouncer/pgbouncer.ini", "app", TARGET)
    assert plan["path"] == "/etc/pgbouncer/databases.ini" and plan["line"] == 2
    assert plan["after"] == "[databases]\napp = host=aurora.cluster-x.internal port=25433 dbname=app\n"
    # the line after the %include is in [databases]: the section the included file ended in
    plan = switch(files, "/etc/pgbouncer/pgbouncer.ini", "after", TARGET)
    assert plan["path"] == "/etc/pgbouncer/pgbouncer.ini" and plan["line"] == 4
    # a file included under [databases] without a header of its own, given directly
    plan = switch({"/d.ini": "app = host=a\n"}, "/d.ini", "app", ("b", 5432, "app"))
    assert plan["after"] == "app = host=b\n"
    with pytest.raises(conf.ConfError, match="cannot read .*/etc/pgbouncer/missing.ini"):
        switch(dict(files, **{"/etc/pgbouncer/pgbouncer.ini": main + "%include missing.ini\n"}),
               "/etc/pgbouncer/pgbouncer.ini", "app", TARGET)
    with pytest.raises(conf.ConfError, match="nested more than"):
        switch({"/loop.ini": "%include /loop.ini\n"}, "/loop.ini", "app", TARGET)


def test_the_last_entry_counts_as_in_pgbouncer():
    text = "[databases]\napp = host=first\napp = host=second pool_size=2\n"
    plan = switch({"/p": text}, "/p", "app", ("new", 5432, "app"))
    assert plan["line"] == 3 and plan["after"] == "[databases]\napp = host=first\napp = host=new pool_size=2\n"


def test_an_entry_pgbouncer_would_refuse_is_not_edited():
    with pytest.raises(conf.ConfError, match="cannot read the entry of app at /p:2: .*no closing quote"):
        switch({"/p": "[databases]\napp = host=a connect_query='SELECT 1\n"}, "/p", "app", TARGET)
    with pytest.raises(conf.ConfError, match="expected key=value"):
        conf.parse_connstr("host=a ; comment")


def test_rollback_after_the_entry_was_edited_sets_the_address_only():
    files = {"/p": DATABASES}
    plan = switch(files, "/p", "app", TARGET)
    files["/p"] = plan["after"].replace("pool_size=20", "pool_size=200")
    back = switch(files, "/p", "app", SOURCE, undo=plan["record"])
    assert not back["restored"] and "changed since the cutover" in back["note"]
    assert back["after"] == DATABASES.replace("pool_size=20", "pool_size=200")
    # a record of another database or file is not used
    back = switch({"/p": plan["after"]}, "/p", "app", SOURCE, undo=dict(plan["record"], path="/other"))
    assert not back["restored"] and back["after"] == DATABASES
    # a record whose old address is not where the rollback goes is not used either
    back = switch({"/p": plan["after"]}, "/p", "app", ("10.0.0.5", 5432, "app"), undo=plan["record"])
    assert not back["restored"] and "pointed at 10.0.0.1:5432" in back["note"]
    assert "host=10.0.0.5 port=5432" in back["after"]


def test_connstr_parsing_follows_pgbouncer():
    pairs = conf.parse_connstr("  host = a  port=5432 connect_query='a''b c=d' dbname=x=y")
    assert [(p.key, p.value) for p in pairs] == [("host", "a"), ("port", "5432"), ("connect_query", "a'b c=d"),
                                                 ("dbname", "x=y")]
    assert conf.address("app", pairs) == ("a", 5432, "x=y")
    assert conf.address("app", []) == (None, 5432, "app")
    with pytest.raises(conf.ConfError, match="empty value"):
        conf.parse_connstr("port=1 host=")
    with pytest.raises(conf.ConfError, match="empty value"):
        conf.parse_connstr("host='' port=1")
    # as in PgBouncer, the spaces after '=' are skipped: this host is "port=1"
    assert [(p.key, p.value) for p in conf.parse_connstr("host= port=1")] == [("host", "port=1")]


def test_lines_are_read_as_pgbouncer_reads_them():
    kinds = [(line.kind, line.name) for line in conf.parse(
        "  ; c\n#c\n\n[databases]\n%include\t/x.ini \n%includex\nfoo.bar-1 = v \n= v\n'' = v\n[broken\n")]
    assert kinds == [("comment", None), ("comment", None), ("blank", None), ("section", "databases"),
                     ("include", "/x.ini"), ("invalid", None), ("entry", "foo.bar-1"), ("entry", ""),
                     ("invalid", None), ("invalid", None), ("blank", None)]
    line = conf.parse_line(1, "app =  host=a   \r")
    assert line.value == "host=a"


def test_rewrite_file_keeps_bytes_mode_and_writes_only_a_change(tmp_path):
    path = tmp_path / "databases.ini"
    raw = b"; caf\xe9 latin-1 comment\r\n[databases]\napp = host=a\n"
    path.write_bytes(raw)
    path.chmod(0o640)
    text = pgbouncer.read_file(str(path))
    before = path.stat().st_mtime_ns, path.stat().st_ino
    assert pgbouncer.rewrite_file(str(path), text) == text
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == before  # unchanged: not written
    plan = switch({str(path): text}, str(path), "app", ("b", 5432, "app"))
    pgbouncer.rewrite_file(str(path), plan["after"])
    assert path.read_bytes() == raw.replace(b"host=a", b"host=b")
    assert (path.stat().st_mode & 0o777) == 0o640
    # through a symlink: the file it points at is replaced, the link stays
    link = tmp_path / "link.ini"
    link.symlink_to(path)
    pgbouncer.rewrite_file(str(link), pgbouncer.read_file(str(link)).replace("host=b", "host=c"))
    assert link.is_symlink() and b"host=c" in path.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["databases.ini", "link.ini"]


def test_serving_side_reads_the_entrys_address():
    from ansible_collections.pgshift.aurora.plugins.module_utils import pgbouncer_conf as pc

    files = {"/p/pgbouncer.ini": "[databases]\napp = host=127.0.0.1 port=25433 dbname=app pool_size=5\n"
                                 "other = dbname=x\n"}
    found = pc.find_entry(files.__getitem__, "/p/pgbouncer.ini", "app")
    assert pc.serving_side(found, ("127.0.0.1", 25432), ("127.0.0.1", 25433)) == "target"
    assert pc.serving_side(found, ("127.0.0.1", 25433), ("10.0.0.9", 5432)) == "source"
    assert pc.serving_side(found, ("h1", 1), ("h2", 2)) is None
    other = pc.find_entry(files.__getitem__, "/p/pgbouncer.ini", "other")
    assert pc.serving_side(other, ("127.0.0.1", 25432), ("127.0.0.1", 25433)) is None
