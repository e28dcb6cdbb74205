# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Write a phase's report files (JSON, Markdown) into the report directory, on the controller.

Every phase play runs on localhost with the local connection and its reports are controller files:
running ansible.builtin.file + copy + template for them costs a module run each (0.25-0.7 s). This
action writes them in the controller process itself: the directory with its parents when missing,
then each file atomically (a temporary file in the same directory, then os.replace), and only when
its content differs. Reports are artifacts, not state: the result is never a change.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Mapping

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.pgshift.aurora.plugins.plugin_utils import report_render


ARGUMENT_SPEC = dict(
    dir=dict(type="path", required=True),
    files=dict(type="list", elements="dict", required=True, options=dict(
        name=dict(type="str", required=True),
        content=dict(type="raw", required=True),
    )),
    mode=dict(type="raw", default="0644"),
    dir_mode=dict(type="raw", default="0755"),
    index=dict(type="bool", default=True),
)


class ReportError(Exception):
    """Bad input or a file that cannot be written; the message says what to do."""


def parse_mode(value, option):
    """A permission mode as an int: an octal string ("0644", "644") or an int (YAML 0644 is already 420). Pure."""
    if isinstance(value, bool):
        raise ReportError("%s must be an octal mode such as \"0644\", not %r" % (option, value))
    if isinstance(value, int):
        mode = value
    else:
        text = str(value).strip()
        try:
            mode = int(text, 8)
        except ValueError:
            raise ReportError("%s must be an octal mode such as \"0644\" (quoted), not %r; symbolic modes are not "
                              "supported" % (option, value)) from None
    if not 0 <= mode <= 0o7777:
        raise ReportError("%s must be an octal mode between 0000 and 7777, not %r" % (option, value))
    return mode


def _kind(value):
    """What a value is, in words (Ansible's tagged types have private class names). Pure."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, Mapping):
        return "dictionary"
    if isinstance(value, (list, tuple)):
        return "list"
    return type(value).__name__.lstrip("_")


def check_files(files):
    """The (name, content) pairs to write, in order, or ReportError saying what is wrong. Pure."""
    checked = []
    seen = set()
    for index, item in enumerate(files or []):
        name = item.get("name")
        where = "files[%d]" % index
        if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\0" in name \
                or (os.sep != "/" and os.sep in name) or (os.altsep and os.altsep in name):
            raise ReportError("%s: name must be a file name inside dir (no '/', not '.' or '..'), got %r; put "
                              "sub-directories in dir instead" % (where, name))
        if name in seen:
            raise ReportError("%s: %s is listed twice; give each file once" % (where, name))
        seen.add(name)
        content = item.get("content")
        if not isinstance(content, str):
            kind = _kind(content)
            if isinstance(content, (Mapping, list, tuple)):
                hint = "render it first, for example content: \"{{ data | to_nice_json }}\\n\""
            else:
                hint = ("render it first: a template with lookup('ansible.builtin.template', 'name.md.j2'), "
                        "data with to_nice_json, anything else with | string")
            raise ReportError("%s (%s): content must be a string, got a %s; %s" % (where, name, kind, hint))
        checked.append((name, content))
    return checked


def _same(path, data):
    """Whether path is a regular file holding exactly data (bytes)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(st.st_mode):
        raise ReportError("%s is a directory, not a report file: remove it or choose another name" % path)
    if st.st_size != len(data):
        return False
    with open(path, "rb") as handle:
        return handle.read() == data


def make_dir(path, mode, check_mode=False):
    """Create path and its missing parents with mode (the umask does not apply); existing ones are left as they
    are. Returns the directories created (or that would be)."""
    missing = []
    current = path
    while not os.path.isdir(current):
        if os.path.lexists(current):
            raise ReportError("%s exists and is not a directory: remove it or choose another report directory"
                              % current)
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    if check_mode:
        return list(reversed(missing))
    for directory in reversed(missing):
        try:
            os.mkdir(directory, mode)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise
            continue
        os.chmod(directory, mode)
    return list(reversed(missing))


def write_file(path, content, mode, check_mode=False):
    """Write content (str, UTF-8) to path atomically unless it holds it already; set mode. Returns whether the
    content was (or would be) written."""
    data = content.encode("utf-8")
    if _same(path, data):
        if not check_mode and stat.S_IMODE(os.stat(path).st_mode) != mode:
            os.chmod(path, mode)
        return False
    if check_mode:
        return True
    directory, name = os.path.split(path)
    fd, tmp = tempfile.mkstemp(prefix=".%s." % name, suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return True


def write_reports(directory, files, mode=0o644, dir_mode=0o755, check_mode=False):
    """Create directory when missing and write each (name, content) into it; in check mode only say what would be
    written. Returns dict(dir, files, written, created_dirs) with absolute paths."""
    directory = os.path.abspath(directory)
    try:
        created = make_dir(directory, dir_mode, check_mode)
        paths, written = [], []
        for name, content in files:
            path = os.path.join(directory, name)
            if write_file(path, content, mode, check_mode):
                written.append(path)
            paths.append(path)
    except OSError as exc:
        raise ReportError("cannot write the reports in %s: %s; make the directory writable by the user running "
                          "ansible-playbook, or point the report directory (report_dir) elsewhere"
                          % (directory, exc)) from None
    return dict(dir=directory, files=paths, written=written, created_dirs=created)


def write_index(directory, inventory=None, mode=0o644, dir_mode=0o755, check_mode=False):
    """Rebuild directory/index.html and runbook.md from the reports in it, and keep rehearsal.json in
    directory/rehearsals/ when it is a rehearsal not kept yet. Returns the paths written (or that would be)."""
    directory = os.path.abspath(directory)
    if check_mode and not os.path.isdir(directory):
        return []
    try:
        pages, keep = report_render.render(directory, inventory)
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError("cannot read the reports in %s to build index.html: %s" % (directory, exc)) from None
    written = []
    if keep is not None:
        history = os.path.join(directory, report_render.ri.HISTORY_DIR)
        try:
            make_dir(history, dir_mode, check_mode)
            if write_file(os.path.join(history, keep[0]), keep[1], mode, check_mode):
                written.append(os.path.join(history, keep[0]))
        except OSError as exc:
            raise ReportError("cannot keep the rehearsal in %s: %s" % (history, exc)) from None
    written += write_reports(directory, sorted(pages.items()), mode=mode, dir_mode=dir_mode,
                             check_mode=check_mode)["written"]
    return written


def inventory_text(task_vars):
    """The inventory source(s) the play runs with, for the runbook's commands (None when unknown)."""
    sources = (task_vars or {}).get("ansible_inventory_sources")
    if isinstance(sources, (list, tuple)) and sources:
        return " -i ".join(str(s) for s in sources)
    return None


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        files = self._task.args.get("files")
        if files is not None and not isinstance(files, list):
            raise AnsibleActionFail("files must be a list of dictionaries with name and content, got a %s"
                                    % _kind(files))
        if isinstance(files, list):
            for index, item in enumerate(files):
                if not isinstance(item, dict):
                    raise AnsibleActionFail("files[%d] must be a dictionary with name and content, got %r"
                                            % (index, item))
        dummy, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        try:
            if not args["dir"]:
                raise ReportError("dir must not be empty: give the report directory")
            files = check_files(args["files"])
            mode = parse_mode(args["mode"], "mode")
            dir_mode = parse_mode(args["dir_mode"], "dir_mode")
            written = write_reports(args["dir"], files, mode=mode, dir_mode=dir_mode,
                                    check_mode=bool(self._task.check_mode))
        except ReportError as exc:
            raise AnsibleActionFail(str(exc)) from None
        # The migration report: rebuilt from every phase's JSON present, after each phase's report. The phase's own
        # report is written by then; a migration report that cannot be built (a report it cannot read) is a warning
        # with what to do, never the phase's failure: a cutover that switched did switch.
        if args["index"]:
            try:
                written["index"] = write_index(args["dir"], inventory_text(task_vars), mode=mode, dir_mode=dir_mode,
                                               check_mode=bool(self._task.check_mode))
            except ReportError as exc:
                written["index_error"] = str(exc)
                result.setdefault("warnings", []).append("index.html and runbook.md were not rebuilt: %s" % exc)
            except Exception as exc:  # a report shaped as the renderer did not expect: say it, keep the phase's result
                written["index_error"] = "%s: %s" % (type(exc).__name__, exc)
                result.setdefault("warnings", []).append(
                    "index.html and runbook.md were not rebuilt (%s: %s); the phase's own reports are written. "
                    "Please report this with the JSON reports of %s" % (type(exc).__name__, exc, args["dir"]))
        result.update(written)
        # Reports are artifacts, not state: writing them is never a change (a second run would rewrite them with
        # a new timestamp, and that must not break idempotence checks).
        result["changed"] = False
        return result
