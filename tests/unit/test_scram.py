"""SCRAM-SHA-256 verifiers and SASLprep as PostgreSQL computes them (RFC 5802, 7677, 4013)."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from ansible_collections.pgshift.aurora.plugins.module_utils import scram


def b64d(text):
    return base64.b64decode(text)


# RFC 7677 section 3: user "user", password "pencil".
RFC7677 = dict(
    password="pencil",
    salt="W22ZaJ0SNY7soEsUEjb6gQ==",
    iterations=4096,
    client_first_bare="n=user,r=rOprNGfwEbeRWgbNEkqO",
    server_first="r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
    client_final_without_proof="c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
    proof="dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
    server_signature="6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
)


def test_verifier_authenticates_the_rfc7677_exchange():
    """The server side of RFC 7677's example, with only what the verifier holds (StoredKey, ServerKey)."""
    v = RFC7677
    verifier = scram.scram_sha256_verifier(v["password"], salt=b64d(v["salt"]), iterations=v["iterations"])
    assert verifier.startswith("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$")
    iterations, salt, stored_key, server_key = scram.parse_verifier(verifier)
    assert (iterations, salt) == (4096, b64d(v["salt"]))
    auth_message = ",".join((v["client_first_bare"], v["server_first"], v["client_final_without_proof"])).encode()
    # The server checks the client's proof: ClientKey = proof XOR HMAC(StoredKey, AuthMessage),
    # and H(ClientKey) must be StoredKey.
    client_signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
    client_key = bytes(a ^ b for a, b in zip(b64d(v["proof"]), client_signature))
    assert hashlib.sha256(client_key).digest() == stored_key
    # And proves itself with ServerSignature = HMAC(ServerKey, AuthMessage).
    assert base64.b64encode(hmac.new(server_key, auth_message, hashlib.sha256).digest()).decode() == \
        v["server_signature"]


def test_a_wrong_password_does_not_match_the_rfc_proof():
    v = RFC7677
    iterations, salt, stored_key, server_key = scram.parse_verifier(
        scram.scram_sha256_verifier("pencil ", salt=b64d(v["salt"]), iterations=4096))
    auth_message = ",".join((v["client_first_bare"], v["server_first"], v["client_final_without_proof"])).encode()
    client_signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
    client_key = bytes(a ^ b for a, b in zip(b64d(v["proof"]), client_signature))
    assert hashlib.sha256(client_key).digest() != stored_key


def test_format_salt_and_iterations():
    verifier = scram.scram_sha256_verifier("s3cret")
    parsed = scram.parse_verifier(verifier)
    assert parsed is not None and parsed[0] == 4096 and len(parsed[1]) == 16
    assert verifier.count("$") == 2 and verifier.split("$")[1].startswith("4096:")
    # A fresh random salt every time: two verifiers of one password differ, and both match it.
    other = scram.scram_sha256_verifier("s3cret")
    assert other != verifier
    assert scram.verifier_matches(verifier, "s3cret") and scram.verifier_matches(other, "s3cret")
    assert not scram.verifier_matches(verifier, "s3cret ")
    custom = scram.scram_sha256_verifier("x", salt=b"0123456789abcdef", iterations=10000)
    assert scram.parse_verifier(custom)[:2] == (10000, b"0123456789abcdef")
    assert "s3cret" not in verifier


@pytest.mark.parametrize("bad", ["", "md5abc", "SCRAM-SHA-256$4096:c2FsdA==$abc:def", "SCRAM-SHA-256$x:a$b:c"])
def test_parse_rejects_what_is_not_a_verifier(bad):
    assert scram.parse_verifier(bad) is None
    assert scram.verifier_matches(bad, "anything") is False


@pytest.mark.parametrize("kwargs,match", [
    (dict(password=None), "password"),
    (dict(password="x", iterations=0), "iterations"),
    (dict(password="x", salt=b""), "salt"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        scram.scram_sha256_verifier(**kwargs)


@pytest.mark.parametrize("password,prepared", [
    # ASCII passes unchanged, even what SASLprep would prohibit (pg_is_ascii fast path).
    ("it \\ ' \" $ % secret", b"it \\ ' \" $ % secret"),
    ("bell\x07", b"bell\x07"),
    ("USER", b"USER"),
    # RFC 4013 section 3 examples.
    ("I\u00adX", b"IX"),                     # SOFT HYPHEN mapped to nothing
    ("\u00aa", b"a"),                        # FEMININE ORDINAL INDICATOR, NFKC
    ("\u2168", b"IX"),                       # ROMAN NUMERAL NINE, NFKC
    # Non-ASCII spaces become a space; U+200B is a space in PostgreSQL's (Unicode 3.2) table.
    ("a\u00a0b\u3000c", b"a b c"),
    ("a\u200bb", b"a b"),
    ("\ufb01x", b"fix"),                     # LATIN SMALL LIGATURE FI
    ("caf\u0065\u0301", "caf\u00e9".encode()),  # NFKC composes
    ("Zöll ü", "Zöll ü".encode()),
])
def test_saslprep(password, prepared):
    assert scram.saslprep(password) == prepared


@pytest.mark.parametrize("password", [
    "\u0627\u0031",         # RFC 4013: RandALCat not at both ends -> prohibited
    "\u0627a\u0627",        # RandALCat with an LCat character -> prohibited
    "é\u0007",              # a control character in a non-ASCII password
    "é\ue000",              # private use
    "é\u0221",              # unassigned in Unicode 3.2
    "\u00ad\u200c",         # maps to nothing at all
])
def test_saslprep_falls_back_to_the_raw_bytes_as_postgresql_does(password):
    assert scram.saslprep(password) == password.encode("utf-8")


def test_prohibited_characters_are_checked_before_normalisation():
    """U+2000 (EN QUAD) maps to a space before the checks, so it passes; U+0340 (prohibited, C.8) does not,
    although NFKC would turn it into an allowed U+0300."""
    assert scram.saslprep("é\u2000") == "é ".encode()
    assert scram.saslprep("é\u0340") == "é\u0340".encode()


def test_bidi_string_that_is_allowed():
    assert scram.saslprep("\u0627\u0031\u0628") == "\u0627\u0031\u0628".encode()


def test_bytes_are_accepted_and_invalid_utf8_is_used_raw():
    assert scram.saslprep(b"\xff\xfe") == b"\xff\xfe"
    assert scram.saslprep("I\u00adX".encode()) == b"IX"
    salt = b"0123456789abcdef"
    assert scram.scram_sha256_verifier("I\u00adX", salt=salt) == scram.scram_sha256_verifier("IX", salt=salt)
