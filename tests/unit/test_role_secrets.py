"""The verifier each application role gets on the new side (module_utils/role_secrets)."""

import pytest

from ansible_collections.pgshift.aurora.plugins.module_utils.role_secrets import desired_verifiers, parse_userlist
from ansible_collections.pgshift.aurora.plugins.module_utils.scram import scram_sha256_verifier, verifier_matches

HARD = 'p\\a\'s"s $ 100%'
ROLE = 'Ops "Team" é'


def test_userlist_is_read_with_quotes_doubled():
    v = scram_sha256_verifier("x", salt=b"0123456789abcdef")
    text = '"app_user" "%s"\n;; comment\n"Ops ""Team"" é" "%s"\n"plain" "md5abc"\n' % (v, v)
    assert parse_userlist(text) == {"app_user": v, ROLE: v, "plain": "md5abc"}


def test_pgbouncer_secret_wins_then_inventory_verifier_then_password():
    from_pgb = scram_sha256_verifier("pgb", salt=b"a" * 16)
    given = scram_sha256_verifier("given", salt=b"b" * 16)
    got = desired_verifiers(["app_user", "reporting", ROLE, "nobody"],
                            secrets={"app_user": "ignored", "reporting": given, ROLE: HARD},
                            userlist={"app_user": from_pgb, "nobody": "md5" + "0" * 32})
    assert got["app_user"] == (from_pgb, "PgBouncer auth_file")
    assert got["reporting"] == (given, "app_role_secrets (verifier)")
    verifier, source = got[ROLE]
    assert source == "app_role_secrets (computed on the controller)"
    assert HARD not in verifier and verifier_matches(verifier, HARD)
    # an md5 userlist entry cannot serve SCRAM pass-through, and no secret was given: left to the caller
    assert "nobody" not in got


def test_a_broken_verifier_is_refused_not_taken_for_a_password():
    with pytest.raises(ValueError, match="not a valid SCRAM-SHA-256"):
        desired_verifiers(["r"], secrets={"r": "SCRAM-SHA-256$4096:bad"})


def test_random_salt_per_role_unless_fixed():
    a = desired_verifiers(["r"], secrets={"r": "pw"})["r"][0]
    b = desired_verifiers(["r"], secrets={"r": "pw"})["r"][0]
    assert a != b and verifier_matches(a, "pw") and verifier_matches(b, "pw")
    assert desired_verifiers(["r"], {"r": "pw"}, salt=b"s" * 16) == desired_verifiers(["r"], {"r": "pw"}, salt=b"s" * 16)
