# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SCRAM-SHA-256 password verifiers computed on the controller, as PostgreSQL stores them (pure).

A role's password is set with ``ALTER ROLE ... PASSWORD '<verifier>'``: PostgreSQL stores a
string that parses as a SCRAM verifier as it is, so the clear password never reaches the
server, its statement log, ``pg_stat_activity`` or a replica's WAL.

``scram_sha256_verifier(password)`` follows RFC 5802 and RFC 7677 with PostgreSQL's choices
(``src/common/scram-common.c``, ``src/common/saslprep.c``):

- the password is prepared with SASLprep (RFC 4013) exactly as ``pg_saslprep()`` does it, so the
  same bytes are hashed as when libpq and the server prepare it at login: a pure ASCII password
  is used unchanged (control characters included); otherwise non-ASCII spaces become a space,
  the characters "commonly mapped to nothing" are removed, and the result is NFKC-normalised.
  The prohibited-character and bidirectional checks run, as in PostgreSQL, on the mapped text
  before normalisation. When the password fails them (or is not valid UTF-8, or maps to
  nothing) PostgreSQL hashes the raw bytes instead, and so does this function;
- a 16-byte random salt (``SCRAM_DEFAULT_SALT_LEN``) and 4096 iterations by default;
- the format ``SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>``.

The RFC 3454 tables come from Python's ``stringprep`` module (Unicode 3.2 data, as the RFC and
PostgreSQL's tables); NFKC is stable for every character assigned in Unicode 3.2, the only ones
that reach it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import stringprep
import unicodedata

SCHEME = "SCRAM-SHA-256"
DEFAULT_ITERATIONS = 4096
SALT_LENGTH = 16
_VERIFIER = re.compile(r"SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)")


def _non_ascii_space(ch):
    # RFC 3454 C.1.2 (Unicode 3.2: U+200B ZERO WIDTH SPACE is still a space there, as in PostgreSQL's table).
    return stringprep.in_table_c12(ch)


def _prohibited(ch):
    """RFC 4013 section 2.3: C.1.2, C.2.1, C.2.2, C.3, C.4, C.5, C.6, C.7, C.8, C.9 and A.1 (unassigned)."""
    return (stringprep.in_table_c12(ch) or stringprep.in_table_c21_c22(ch) or stringprep.in_table_c3(ch)
            or stringprep.in_table_c4(ch) or stringprep.in_table_c5(ch) or stringprep.in_table_c6(ch)
            or stringprep.in_table_c7(ch) or stringprep.in_table_c8(ch) or stringprep.in_table_c9(ch)
            or stringprep.in_table_a1(ch))


def saslprep(password):
    """The bytes PostgreSQL hashes for ``password`` (str or bytes): pg_saslprep()'s result, or the raw
    UTF-8 bytes where PostgreSQL falls back to them."""
    raw = password if isinstance(password, bytes) else password.encode("utf-8", "surrogatepass")
    if all(b < 0x80 for b in raw):
        return raw  # pure ASCII: no further processing (pg_is_ascii)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw  # SASLPREP_INVALID_UTF8: the raw password is used
    mapped = []
    for ch in text:
        if _non_ascii_space(ch):
            mapped.append(" ")
        elif stringprep.in_table_b1(ch):
            continue  # commonly mapped to nothing
        else:
            mapped.append(ch)
    if not mapped:
        return raw  # an empty result is prohibited
    # PostgreSQL checks the mapped characters (not the normalised ones) against the prohibited tables.
    if any(_prohibited(ch) for ch in mapped):
        return raw
    if any(stringprep.in_table_d1(ch) for ch in mapped):
        if any(stringprep.in_table_d2(ch) for ch in mapped) or not (
                stringprep.in_table_d1(mapped[0]) and stringprep.in_table_d1(mapped[-1])):
            return raw
    return unicodedata.normalize("NFKC", "".join(mapped)).encode("utf-8")


def _b64(data):
    return base64.b64encode(data).decode("ascii")


def scram_sha256_verifier(password, salt=None, iterations=DEFAULT_ITERATIONS):
    """PostgreSQL's SCRAM-SHA-256 verifier of password (str or bytes); salt: bytes (16 random ones by default)."""
    if password is None:
        raise ValueError("a password is needed to compute a SCRAM verifier")
    if not isinstance(iterations, int) or iterations < 1:
        raise ValueError("SCRAM iterations must be a positive integer, got %r" % (iterations,))
    if salt is None:
        salt = os.urandom(SALT_LENGTH)
    if not isinstance(salt, bytes) or not salt:
        raise ValueError("the SCRAM salt must be non-empty bytes")
    salted = hashlib.pbkdf2_hmac("sha256", saslprep(password), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return "%s$%d:%s$%s:%s" % (SCHEME, iterations, _b64(salt), _b64(stored_key), _b64(server_key))


def parse_verifier(text):
    """(iterations, salt, stored_key, server_key) of a SCRAM-SHA-256 verifier, or None when text is not one."""
    m = _VERIFIER.fullmatch(text or "")
    if not m:
        return None
    try:
        parts = [base64.b64decode(p, validate=True) for p in m.group(2, 3, 4)]
    except ValueError:
        return None
    if len(parts[1]) != 32 or len(parts[2]) != 32:
        return None
    return int(m.group(1)), parts[0], parts[1], parts[2]


def verifier_matches(verifier, password):
    """Whether password logs in against verifier (what the server checks), in constant time."""
    parsed = parse_verifier(verifier)
    if parsed is None:
        return False
    iterations, salt, stored_key, server_key = parsed
    again = parse_verifier(scram_sha256_verifier(password, salt=salt, iterations=iterations))
    return hmac.compare_digest(again[2], stored_key) and hmac.compare_digest(again[3], server_key)
