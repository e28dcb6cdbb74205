# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The password verifier each application role gets on the new side of a cutover (pure).

The application must log in on the new side with the password it has. On RDS and Aurora
nobody reads ``pg_authid``, so the old side's verifier cannot be copied; the controller gives
it instead, from (first that has the role):

1. PgBouncer's ``auth_file`` (SCRAM secrets): with SCRAM pass-through PgBouncer logs in to the
   server with the client's proof, which works only when the server holds the very same
   verifier (salt and iterations) as that file;
2. the inventory's ``app_role_secrets``: a SCRAM verifier used as given, or a password turned
   into a SCRAM-SHA-256 verifier here, on the controller (the password never reaches a server);
3. otherwise nothing: the caller copies ``pg_authid`` where it may (a superuser) or warns.
"""

from __future__ import annotations

import re

from ansible_collections.pgshift.aurora.plugins.module_utils.scram import parse_verifier, scram_sha256_verifier

_USERLIST_LINE = re.compile(r'^\s*"((?:[^"]|"")*)"\s+"((?:[^"]|"")*)"')


def parse_userlist(text):
    """{user: secret} of a PgBouncer auth_file ("user" "secret" lines, "" inside quotes is one ")."""
    found = {}
    for line in text.splitlines():
        m = _USERLIST_LINE.match(line)
        if m:
            found[m.group(1).replace('""', '"')] = m.group(2).replace('""', '"')
    return found


def desired_verifiers(roles, secrets=None, userlist=None, salt=None):
    """{role: (verifier, source)} for the roles the controller can give a verifier; the others are absent.

    secrets: {role: password or SCRAM verifier} (the inventory); userlist: parse_userlist() of PgBouncer's
    auth_file. salt: fixed salt for tests (a random one per role otherwise).
    """
    secrets = secrets or {}
    userlist = userlist or {}
    out = {}
    for role in roles:
        from_pgbouncer = userlist.get(role)
        if from_pgbouncer and parse_verifier(from_pgbouncer):
            out[role] = (from_pgbouncer, "PgBouncer auth_file")
            continue
        given = secrets.get(role)
        if not given:
            continue
        if parse_verifier(given):
            out[role] = (given, "app_role_secrets (verifier)")
        elif given.startswith("SCRAM-SHA-256$") or (given.startswith("md5") and len(given) == 35):
            raise ValueError("the secret of role %s looks like a verifier but is not a valid SCRAM-SHA-256 one: "
                             "give the password or the verifier exactly as PostgreSQL stores it" % role)
        else:
            out[role] = (scram_sha256_verifier(given, salt=salt), "app_role_secrets (computed on the controller)")
    return out
