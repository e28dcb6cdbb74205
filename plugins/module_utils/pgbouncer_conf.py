# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PgBouncer's configuration as lines: find one database's entry, change only its address, undo that.

Pure: no file is opened here. ``find_entry`` takes a ``read(path) -> text`` callable (the module gives
one that keeps every byte: ``_pg/pgbouncer.read_file``); everything else works on text.

The rules are PgBouncer's own (libusual ``cfparser.c``, PgBouncer ``loader.c``):

- a line is, after leading white space: empty; a comment (``;`` or ``#``, only at the start of a
  line: there are no comments after a value); ``%include <path>`` (the rest of the line, trimmed;
  the file is read at that point, and the section it ends in carries on after the line); a section
  ``[name]``; or ``key = value`` (the value is the rest of the line, trailing white space trimmed);
- a key is made of ``A-Z a-z 0-9 _ . - *``; PgBouncer 1.24 and later also read ``'any name'``; the
  documentation's SQL quoting (double quotes, ``""`` for one) is understood here too (PgBouncer 1.18 rejects both
  quoted forms). ``*`` is the fallback entry: databases without an entry of their own use it;
- in ``[databases]`` the value is a connection string: ``key=value`` pairs separated by spaces
  (only spaces), a value either bare (up to the next space) or in single quotes with ``''`` for a
  quote (``connect_query='SELECT ''a=b'''``). ``host`` absent means the Unix socket, ``port``
  absent 5432, ``dbname`` absent the entry's name. When a database has several entries (or a key
  appears twice in one), the last one counts.

``switch_entry`` changes the ``host``, ``port`` and ``dbname`` values of one entry line (adding a
pair only when the current value, or its default, is not the wanted one) and keeps every other
byte of the file. It returns, with the new text, an *undo record*: where in the new line the
changed values are, what they were and what was written. That record holds nothing but
offsets and host/port/dbname text (never a ``password=`` of the entry), so it can be kept in the
cutover log; ``restore_entry`` applies it to put back the exact bytes of the line.
"""

from __future__ import annotations

import posixpath

DATABASES = "databases"
FALLBACK = "*"
DEFAULT_PORT = 5432
MAX_INCLUDE = 10  # libusual's include nesting limit
ADDRESS_KEYS = ("host", "port", "dbname")

_BARE_KEY = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-*")
_SPACE = " \t\n\r\v\f"  # C isspace()
_BLANK = " \t"  # C isblank()


class ConfError(Exception):
    """The configuration cannot be read or changed as asked; the message says where and what to do."""


class Line:
    """One line of a configuration file (``text`` without its end of line).

    kind: ``blank``, ``comment``, ``include``, ``section``, ``entry`` or ``invalid``. ``name`` is the
    section's name, the include's path or the entry's key (unquoted); for an entry ``value_start`` and
    ``value_end`` are the offsets of its value in ``text``.
    """

    __slots__ = ("number", "text", "kind", "name", "value_start", "value_end")

    def __init__(self, number, text, kind, name=None, value_start=None, value_end=None):
        self.number, self.text, self.kind, self.name = number, text, kind, name
        self.value_start, self.value_end = value_start, value_end

    @property
    def value(self):
        return self.text[self.value_start:self.value_end] if self.kind == "entry" else None

    def __repr__(self):
        return "Line(%d, %s, %r)" % (self.number, self.kind, self.text)


def split_lines(text):
    """The lines of text without their "\\n" (a last line without one included): "\\n".join() gives text back."""
    return text.split("\n")


def _rstrip_space(text, start, end):
    while end > start and text[end - 1] in _SPACE:
        end -= 1
    return end


def parse_line(number, text):
    """One line as PgBouncer reads it (see the module's docstring)."""
    p = 0
    n = len(text)
    while p < n and text[p] in _SPACE:
        p += 1
    if p == n:
        return Line(number, text, "blank")
    if text.startswith("%include", p) and p + 8 < n and text[p + 8] in _BLANK:
        q = p + 8
        while q < n and text[q] in _BLANK:
            q += 1
        return Line(number, text, "include", text[q:_rstrip_space(text, q, n)])
    if text[p] in "#;":
        return Line(number, text, "comment")
    if text[p] == "[":
        end = text.find("]", p + 1)
        if end < 0:
            return Line(number, text, "invalid")
        return Line(number, text, "section", text[p + 1:end])
    if text[p] == "'":
        end = text.find("'", p + 1)
        if end <= p + 1:
            return Line(number, text, "invalid")
        name, q = text[p + 1:end], end + 1
    elif text[p] == '"':
        chars, q = [], p + 1
        while True:
            if q >= n:
                return Line(number, text, "invalid")
            if text[q] == '"':
                if q + 1 < n and text[q + 1] == '"':
                    chars.append('"')
                    q += 2
                    continue
                q += 1
                break
            chars.append(text[q])
            q += 1
        name = "".join(chars)
        if not name:
            return Line(number, text, "invalid")
    else:
        q = p
        while q < n and text[q] in _BARE_KEY:
            q += 1
        name = text[p:q]
    while q < n and text[q] in _BLANK:
        q += 1
    if q >= n or text[q] != "=":
        return Line(number, text, "invalid")
    q += 1
    while q < n and text[q] in _BLANK:
        q += 1
    return Line(number, text, "entry", name, q, _rstrip_space(text, q, n))


def parse(text):
    """[Line] of text, numbered from 1."""
    return [parse_line(i + 1, line) for i, line in enumerate(split_lines(text))]


# ----------------------------------------------------------------------------------------------
# Connection strings: host=... port=... dbname=... pool_size=... connect_query='...'
# ----------------------------------------------------------------------------------------------

class Pair:
    """One key=value of a connection string; offsets are into the string parsed."""

    __slots__ = ("key", "value", "key_start", "raw_start", "raw_end")

    def __init__(self, key, value, key_start, raw_start, raw_end):
        self.key, self.value, self.key_start, self.raw_start, self.raw_end = key, value, key_start, raw_start, raw_end

    def __repr__(self):
        return "Pair(%s=%r)" % (self.key, self.value)


def parse_connstr(text):
    """[Pair] of a connection string as PgBouncer's loader reads it; ConfError on what it would refuse."""
    pairs = []
    p, n = 0, len(text)

    def skip(i):
        while i < n and text[i] == " ":
            i += 1
        return i

    p = skip(p)
    while p < n:
        key_start = p
        while p < n and text[p] not in "= ":
            p += 1
        key = text[key_start:p]
        p = skip(p)
        if p >= n or text[p] != "=" or not key:
            raise ConfError("expected key=value at %r" % text[key_start:key_start + 30])
        p = skip(p + 1)
        raw_start = p
        if p < n and text[p] == "'":
            chars = []
            p += 1
            while True:
                if p >= n:
                    raise ConfError("the quoted value of %s has no closing quote" % key)
                if text[p] == "'":
                    if p + 1 < n and text[p + 1] == "'":
                        chars.append("'")
                        p += 2
                        continue
                    break
                chars.append(text[p])
                p += 1
            p += 1
            value = "".join(chars)
        else:
            while p < n and text[p] != " ":
                p += 1
            value = text[raw_start:p]
        if not value:
            raise ConfError("%s has an empty value" % key)
        pairs.append(Pair(key, value, key_start, raw_start, p))
        if p < n:
            p += 1  # the loader cuts the character after a value (the separating space)
        p = skip(p)
    return pairs


def quote_value(value):
    """value as a connection string writes it: bare when it can be, else in single quotes."""
    value = str(value)
    if any(c in value for c in "\n\r\0"):
        raise ConfError("%r cannot be written into a PgBouncer connection string (line break or NUL)" % value)
    if value and " " not in value and not value.startswith("'"):
        return value
    return "'%s'" % value.replace("'", "''")


def address(name, pairs):
    """(host, port, dbname) an entry named name with these pairs points at (the last pair of a key counts)."""
    found = dict((p.key, p.value) for p in pairs)
    try:
        port = int(found.get("port", DEFAULT_PORT))
    except ValueError:
        port = found.get("port")
    return found.get("host"), port, found.get("dbname", name)


def _wanted(key, current, value):
    if key == "port":
        return str(current) == str(int(value))
    return current == (None if value is None else str(value))


def address_splices(name, connstr, host, port, dbname):
    """The splices (start, end, new text) of connstr that point the entry at host:port/dbname.

    A value already right (or right by default: no port and 5432, no dbname and the entry's name)
    is left as it is; a wrong one has its value replaced in place; a missing one is added after the
    last host/port/dbname pair (or first, when there is none).
    """
    pairs = parse_connstr(connstr)
    last = {}
    for pair in pairs:
        last[pair.key] = pair
    current = dict(zip(ADDRESS_KEYS, address(name, pairs)))
    wanted = dict(host=host, port=int(port), dbname=dbname)
    splices, added = [], []
    for key in ADDRESS_KEYS:
        if wanted[key] is None or _wanted(key, current[key], wanted[key]):
            continue
        if key in last:
            splices.append((last[key].raw_start, last[key].raw_end, quote_value(wanted[key])))
        else:
            added.append("%s=%s" % (key, quote_value(wanted[key])))
    if added:
        anchors = [last[k] for k in ADDRESS_KEYS if k in last]
        if anchors:
            at = max(a.raw_end for a in anchors)
            splices.append((at, at, " " + " ".join(added)))
        elif pairs:
            splices.append((pairs[0].key_start, pairs[0].key_start, " ".join(added) + " "))
        else:
            splices.append((len(connstr), len(connstr), " ".join(added)))
    return sorted(splices)


def apply_splices(text, splices):
    """text with splices (start, end, new) applied (non-overlapping, any order); also the undo splices
    (start, end, old) in the new text's offsets, as a list of dicts {at, new, old}."""
    out, undo, pos, shift = [], [], 0, 0
    for start, end, new in sorted(splices):
        out.append(text[pos:start])
        out.append(new)
        undo.append(dict(at=start + shift, new=new, old=text[start:end]))
        shift += len(new) - (end - start)
        pos = end
    out.append(text[pos:])
    return "".join(out), undo


# ----------------------------------------------------------------------------------------------
# Files: find the entry (following %include), switch it, restore it
# ----------------------------------------------------------------------------------------------

class Found:
    """Where a database's entry is: path, the file's text, its Line; also the files read."""

    def __init__(self, path, text, line, files):
        self.path, self.text, self.line, self.files = path, text, line, files

    def where(self):
        return "%s:%d" % (self.path, self.line.number)


def include_path(including, path):
    """An %include's file: absolute as written, else next to the file that includes it.

    (PgBouncer itself reads a relative path from its working directory: write absolute paths.)"""
    return path if posixpath.isabs(path) else posixpath.join(posixpath.dirname(including), path)


def _walk(read, path, section, depth, found, files):
    if depth > MAX_INCLUDE:
        raise ConfError("%%include nested more than %d deep at %s (a loop?)" % (MAX_INCLUDE, path))
    try:
        text = read(path)
    except (OSError, UnicodeError) as exc:
        what = getattr(exc, "strerror", None) or str(exc)
        raise ConfError("cannot read PgBouncer configuration file %s: %s" % (path, what)) from None
    files.append(path)
    for line in parse(text):
        if line.kind == "section":
            section = line.name
        elif line.kind == "include":
            section = _walk(read, include_path(path, line.name), section, depth + 1, found, files)
        elif line.kind == "entry" and section in (DATABASES, None):
            # section None: entries before any section header, as in a file included under [databases]
            found.append((line.name, Found(path, text, line, files)))
    return section


def find_entry(read, path, database):
    """The entry PgBouncer uses for database, reading path and the files it includes, in PgBouncer's order.

    ConfError when there is none; when only the fallback entry ``*`` serves the database, the error
    says so and what to do (the switch never changes ``*``: it serves every other database too).
    """
    entries, files = [], []
    _walk(read, path, None, 0, entries, files)
    mine = [f for name, f in entries if name == database]
    if mine:
        return mine[-1]
    fallback = [f for name, f in entries if name == FALLBACK]
    read_files = ", ".join(files)
    if fallback:
        raise ConfError(
            "PgBouncer serves %s only through the fallback entry * (%s): the switch never changes * (every other "
            "database behind PgBouncer uses it too). Add an entry of its own pointing where * points now, e.g. "
            "`%s = host=<host> port=<port> dbname=%s` with the options of *, to [databases] (in %s), RELOAD "
            "PgBouncer, and run again" % (database, fallback[-1].where(), database, database, fallback[-1].path))
    raise ConfError("no entry for database %s in PgBouncer's [databases] (read %s): set pgbouncer.databases_file "
                    "(traffic_switch_pgbouncer.databases_file) to the pgbouncer.ini PgBouncer runs with, or to the "
                    "file with its [databases] section" % (database, read_files))


def _replace_line(text, number, new_line):
    lines = split_lines(text)
    lines[number - 1] = new_line
    return "\n".join(lines)


def switch_entry(found, database, host, port, dbname):
    """(new text of found.path, undo record) pointing database's entry at host:port/dbname.

    Only that line changes, and in it only host/port/dbname values. The undo record (JSON-able,
    no secret in it) lets ``restore_entry`` put the line back byte for byte.
    """
    line = found.line
    try:
        splices = address_splices(database, line.value, host, port, dbname)
    except ConfError as exc:
        raise ConfError("cannot read the entry of %s at %s: %s (PgBouncer would not accept it either)" % (
            database, found.where(), exc)) from None
    shifted = [(s + line.value_start, e + line.value_start, new) for s, e, new in splices]
    if shifted and not line.value and line.text[line.value_start - 1:line.value_start] == "=":
        shifted[0] = (shifted[0][0], shifted[0][1], " " + shifted[0][2])  # `app =` gets `app = host=...`
    new_line, undo = apply_splices(line.text, shifted)
    record = dict(database=database, path=found.path, line=line.number, before_length=len(line.text),
                  after_length=len(new_line), splices=undo)
    return _replace_line(found.text, line.number, new_line), record


def restore_entry(found, record):
    """The text of found.path with the entry put back as it was before switch_entry made record.

    ConfError when the entry is no longer the line switch_entry wrote (edited since): then only a
    fresh switch_entry towards the old address is possible.
    """
    text = found.line.text
    if record.get("database") is None or len(text) != record.get("after_length"):
        raise ConfError("the entry at %s changed since the cutover" % found.where())
    for splice in record.get("splices", []):
        at, new = splice["at"], splice["new"]
        if text[at:at + len(new)] != new:
            raise ConfError("the entry at %s changed since the cutover" % found.where())
    restored = text
    for splice in sorted(record["splices"], key=lambda s: s["at"], reverse=True):
        at, new = splice["at"], splice["new"]
        restored = restored[:at] + splice["old"] + restored[at + len(new):]
    if len(restored) != record.get("before_length"):
        raise ConfError("the entry at %s changed since the cutover" % found.where())
    return _replace_line(found.text, found.line.number, restored)


def entry_address(text, database):
    """(host, port, dbname) of the line text of database's entry (a whole configuration line)."""
    line = parse_line(1, text)
    return address(database, parse_connstr(line.value or ""))


def plan_switch(read, path, database, host, port, dbname, undo=None):
    """What the switch writes: dict(path, before, after (texts of that file), line (number), record, restored, note).

    With undo (the record of the cutover being rolled back) and the entry as that cutover left it,
    the line gets its exact bytes back when they point at host:port; otherwise (no record, the line
    edited since, another file) only host/port/dbname are set, and note says why.
    """
    found = find_entry(read, path, database)
    note = None
    if undo:
        if undo.get("database") != database or undo.get("path") != found.path:
            note = "the cutover's record is for %s in %s" % (undo.get("database"), undo.get("path"))
        else:
            try:
                text = restore_entry(found, undo)
                back = split_lines(text)[found.line.number - 1]
                h, p, dummy = entry_address(back, database)
                if str(h) == str(host) and str(p) == str(int(port)):
                    return dict(path=found.path, before=found.text, after=text, line=found.line.number, record=None,
                                restored=True, note=None)
                note = "the entry before the cutover pointed at %s:%s, not at %s:%s" % (h, p, host, port)
            except ConfError as exc:
                note = str(exc)
    text, record = switch_entry(found, database, host, port, dbname)
    return dict(path=found.path, before=found.text, after=text, line=found.line.number, record=record,
                restored=False, note=note)


def serving_side(found, source, target):
    """Which side ("source" or "target") a found entry sends clients to, given their (host, port); None when
    neither."""
    host, port, dummy = address(found.line.name, parse_connstr(found.line.value or ""))
    for side, (s_host, s_port) in (("target", target), ("source", source)):
        if host == s_host and str(port) == str(int(s_port)):
            return side
    return None
