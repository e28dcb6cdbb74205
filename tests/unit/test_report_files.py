"""The report_files action plugin: name and content checks, atomic compare-and-write, check mode, bad input."""

from __future__ import annotations

import os
import stat
from types import SimpleNamespace

import pytest
from ansible.errors import AnsibleActionFail

from ansible_collections.pgshift.aurora.plugins.action import report_files as rf


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../x.json", "/etc/passwd", "x\0y", None, 3])
def test_check_files_refuses_names_that_leave_the_directory(name):
    with pytest.raises(rf.ReportError, match="name must be a file name inside dir"):
        rf.check_files([dict(name=name, content="x")])


@pytest.mark.parametrize("content", [{"a": 1}, [1, 2], 42, None, True])
def test_check_files_refuses_content_that_is_not_rendered(content):
    with pytest.raises(rf.ReportError, match=r"files\[0\] \(r.json\): content must be a string.*render it first"):
        rf.check_files([dict(name="r.json", content=content)])


@pytest.mark.parametrize("content,kind", [({"a": 1}, "dictionary"), ([1], "list")])
def test_check_files_hints_to_nice_json_for_data(content, kind):
    with pytest.raises(rf.ReportError, match="got a %s; render it first, .*to_nice_json" % kind):
        rf.check_files([dict(name="r.json", content=content)])


def test_check_files_refuses_a_name_twice():
    with pytest.raises(rf.ReportError, match="listed twice"):
        rf.check_files([dict(name="r.md", content="a"), dict(name="r.md", content="b")])


def test_check_files_keeps_order_and_odd_but_valid_names():
    files = [dict(name="b.md", content=""), dict(name=".hidden..json", content="{}\n"), dict(name="a b", content="x")]
    assert rf.check_files(files) == [("b.md", ""), (".hidden..json", "{}\n"), ("a b", "x")]


@pytest.mark.parametrize("value,expected", [("0644", 0o644), ("644", 0o644), (" 0600 ", 0o600), (0o640, 0o640),
                                            ("0755", 0o755)])
def test_parse_mode(value, expected):
    assert rf.parse_mode(value, "mode") == expected


@pytest.mark.parametrize("value", ["u=rw,g=r", "0999", "99999", True, -1])
def test_parse_mode_refuses(value):
    with pytest.raises(rf.ReportError, match="mode must be an octal mode"):
        rf.parse_mode(value, "mode")


def test_write_reports_creates_the_directory_and_its_parents(tmp_path):
    target = tmp_path / "a" / "b"
    out = rf.write_reports(str(target), [("r.json", '{"x": 1}\n'), ("r.md", "# R\n\né\n")], mode=0o640,
                           dir_mode=0o750)
    assert out["dir"] == str(target)
    assert out["files"] == [str(target / "r.json"), str(target / "r.md")]
    assert out["written"] == out["files"]
    assert out["created_dirs"] == [str(tmp_path / "a"), str(target)]
    assert (target / "r.json").read_text() == '{"x": 1}\n'
    assert (target / "r.md").read_bytes() == "# R\n\né\n".encode("utf-8")
    assert mode_of(target / "r.json") == 0o640 and mode_of(target / "r.md") == 0o640
    assert mode_of(tmp_path / "a") == 0o750 and mode_of(target) == 0o750
    assert sorted(os.listdir(target)) == ["r.json", "r.md"]  # no temporary file left


def test_write_reports_rewrites_only_what_differs(tmp_path):
    rf.write_reports(str(tmp_path), [("same.json", "1\n"), ("other.md", "old\n")])
    inode_same = os.stat(tmp_path / "same.json").st_ino
    os.chmod(tmp_path / "same.json", 0o600)
    out = rf.write_reports(str(tmp_path), [("same.json", "1\n"), ("other.md", "new\n")])
    assert out["written"] == [str(tmp_path / "other.md")]
    assert out["files"] == [str(tmp_path / "same.json"), str(tmp_path / "other.md")]
    assert out["created_dirs"] == []
    assert os.stat(tmp_path / "same.json").st_ino == inode_same  # untouched
    assert mode_of(tmp_path / "same.json") == 0o644  # but its mode put right
    assert (tmp_path / "other.md").read_text() == "new\n"


def test_write_reports_replaces_atomically(tmp_path):
    (tmp_path / "r.md").write_text("old\n")
    inode = os.stat(tmp_path / "r.md").st_ino
    rf.write_reports(str(tmp_path), [("r.md", "longer new content\n")])
    assert os.stat(tmp_path / "r.md").st_ino != inode  # a new file renamed over the old one
    assert (tmp_path / "r.md").read_text() == "longer new content\n"


def test_write_reports_leaves_existing_directory_modes_alone(tmp_path):
    os.chmod(tmp_path, 0o700)
    rf.write_reports(str(tmp_path), [("r.md", "x")], dir_mode=0o755)
    assert mode_of(tmp_path) == 0o700


def test_write_reports_in_check_mode_writes_nothing(tmp_path):
    (tmp_path / "keep.md").write_text("same")
    target = tmp_path / "new"
    out = rf.write_reports(str(target), [("r.json", "{}\n")], check_mode=True)
    assert not target.exists()
    assert out["files"] == out["written"] == [str(target / "r.json")]
    assert out["created_dirs"] == [str(target)]
    out = rf.write_reports(str(tmp_path), [("keep.md", "same"), ("r.md", "x")], check_mode=True)
    assert out["written"] == [str(tmp_path / "r.md")]
    assert sorted(os.listdir(tmp_path)) == ["keep.md"] and (tmp_path / "keep.md").read_text() == "same"


def test_write_reports_relative_dir_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = rf.write_reports("reports", [("r.md", "x")])
    assert out["dir"] == str(tmp_path / "reports") and (tmp_path / "reports" / "r.md").read_text() == "x"


def test_write_reports_refuses_a_file_where_the_directory_should_be(tmp_path):
    (tmp_path / "reports").write_text("")
    with pytest.raises(rf.ReportError, match="exists and is not a directory"):
        rf.write_reports(str(tmp_path / "reports" / "sub"), [("r.md", "x")])


def test_write_reports_refuses_a_directory_where_a_file_should_be(tmp_path):
    (tmp_path / "r.md").mkdir()
    with pytest.raises(rf.ReportError, match="is a directory, not a report file"):
        rf.write_reports(str(tmp_path), [("r.md", "x")])


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_write_reports_says_what_to_do_in_an_unwritable_directory(tmp_path):
    os.chmod(tmp_path, 0o500)
    try:
        with pytest.raises(rf.ReportError, match="cannot write the reports in .*make the directory writable"):
            rf.write_reports(str(tmp_path), [("r.md", "x")])
    finally:
        os.chmod(tmp_path, 0o700)


def test_write_reports_unwritable_directory_even_as_root(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(rf.tempfile, "mkstemp", refuse)
    with pytest.raises(rf.ReportError, match=r"cannot write the reports in .*Permission denied.*report_dir"):
        rf.write_reports(str(tmp_path), [("r.md", "x")])


def test_write_file_removes_its_temporary_file_on_failure(tmp_path, monkeypatch):
    def fail(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rf.os, "replace", fail)
    with pytest.raises(OSError):
        rf.write_file(str(tmp_path / "r.md"), "x", 0o644)
    assert os.listdir(tmp_path) == []


# The action itself, with a stand-in task and connection.

def run_action(args, check_mode=False):
    task = SimpleNamespace(args=args, check_mode=check_mode, async_val=0, action="pgshift.aurora.report_files")
    connection = SimpleNamespace(_shell=SimpleNamespace(tmpdir=None))
    action = rf.ActionModule(task, connection, play_context=None, loader=None, templar=None)
    action._load_name = "pgshift.aurora.report_files"
    return action.run(task_vars={})


def test_action_writes_and_never_reports_a_change(tmp_path):
    args = dict(dir=str(tmp_path / "reports"), files=[dict(name="r.json", content="{}\n"), dict(name="r.md", content="# r\n")])
    first = run_action(args)
    assert first["changed"] is False
    assert first["files"] == [str(tmp_path / "reports" / "r.json"), str(tmp_path / "reports" / "r.md")]
    assert first["written"] == first["files"] and first["dir"] == str(tmp_path / "reports")
    second = run_action(args)
    assert second["changed"] is False and second["written"] == []


def test_action_honours_check_mode(tmp_path):
    out = run_action(dict(dir=str(tmp_path / "reports"), files=[dict(name="r.json", content="{}\n")]), check_mode=True)
    assert out["files"] == [str(tmp_path / "reports" / "r.json")] and out["changed"] is False
    assert not (tmp_path / "reports").exists()


@pytest.mark.parametrize("args,message", [
    (dict(files=[]), "missing required arguments: dir"),
    (dict(dir="x"), "missing required arguments: files"),
    (dict(dir="x", files=[], content="y"), "Unsupported parameters .*content"),
    (dict(dir="x", files=[dict(name="r.md")]), "missing required arguments: content"),
    (dict(dir="x", files=["r.md"]), r"files\[0\] must be a dictionary with name and content, got 'r.md'"),
    (dict(dir="x", files="r.md"), "files must be a list of dictionaries with name and content, got a str"),
    (dict(dir="DIR", files=[dict(name="../r.md", content="x")]), "name must be a file name inside dir"),
    (dict(dir="DIR", files=[dict(name="r.json", content={"a": 1})]), "content must be a string"),
    (dict(dir="DIR", files=[dict(name="r.md", content="x")], mode="rw"), "mode must be an octal mode"),
    (dict(dir="", files=[dict(name="r.md", content="x")]), "dir must not be empty"),
])
def test_action_refuses_bad_input_and_writes_nothing(tmp_path, args, message):
    if args.get("dir") == "DIR":
        args["dir"] = str(tmp_path / "reports")
    with pytest.raises(AnsibleActionFail, match=message):
        run_action(args)
    assert not (tmp_path / "reports").exists()
