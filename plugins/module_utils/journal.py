# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one path that runs a statement (or, in check mode, only records it) and renders what `queries` shows.

Every statement a module runs to change something goes through ``Journal.run``: it is built once with
``psycopg.sql`` (or is a constant string), its text is rendered from that very object (parameters bound
client-side, the way the server will see them), every secret the module knows is masked in that text, the
text is appended to ``queries`` and, unless the journal is in check mode, the statement is executed.
Nothing writes a display string by hand.

Reads (catalog queries) do not change anything and are not recorded: use ``_pg.db.rows`` / ``_pg.db.one``.
"""

from __future__ import annotations

REDACTED = "********"


def secret_variants(secret):
    """The forms a secret can take inside a rendered statement: as given or as a conninfo value's body
    (backslashes and quotes escaped), each also inside an SQL literal (quotes doubled) and an E'' literal
    (backslashes doubled too: how psycopg renders a literal that holds a backslash)."""
    secret = str(secret)
    variants = set()
    for form in (secret, secret.replace("\\", "\\\\").replace("'", "\\'")):
        variants.update((form, form.replace("'", "''"), form.replace("\\", "\\\\").replace("'", "''")))
    return sorted((v for v in variants if v), key=len, reverse=True)


def mask(text, secrets):
    """text with every form of every secret replaced by ********."""
    text = str(text)
    for secret in secrets or ():
        if secret:
            for variant in secret_variants(secret):
                text = text.replace(variant, REDACTED)
    return text


def render(stmt, conn=None, params=None):
    """The text of a statement as it runs: a psycopg.sql object rendered for conn, parameters bound the way
    psycopg binds them client-side; a string as it is."""
    if params is not None and conn is not None:
        try:
            import psycopg
            return psycopg.ClientCursor(conn).mogrify(stmt, params)
        except Exception:  # a statement that cannot be bound client-side is shown with its placeholders
            pass
    if hasattr(stmt, "as_string"):
        return stmt.as_string(conn)
    return str(stmt)


class Journal:
    """What a module ran (or would run): ``queries``, masked.

    run(conn, stmt, params) records and executes (in check mode: records only, returns None);
    note(text) records something run outside SQL (a replication command), masked the same way."""

    def __init__(self, check_mode=False, secrets=()):
        self.check_mode = bool(check_mode)
        self.secrets = [s for s in secrets if s]
        self.queries = []

    def add_secret(self, secret):
        if secret and secret not in self.secrets:
            self.secrets.append(secret)

    def text(self, stmt, conn=None, params=None):
        return mask(" ".join(render(stmt, conn, params).split()), self.secrets)

    def note(self, text):
        self.queries.append(mask(text, self.secrets))

    def run(self, conn, stmt, params=None, always=False):
        """Record stmt and execute it; in check mode only record it, unless `always` (a statement that changes
        nothing lasting, e.g. SET LOCAL, that later reads depend on). Returns the cursor or None."""
        self.queries.append(self.text(stmt, conn, params))
        if self.check_mode and not always:
            return None
        return conn.execute(stmt, params)

    def scrub(self, text):
        """Any message with the secrets masked (errors, warnings)."""
        return mask(text, self.secrets)
