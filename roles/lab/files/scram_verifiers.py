"""Print PostgreSQL SCRAM-SHA-256 verifiers for the lab's passwords.

Reads a JSON object {"role name": "password", ...} on stdin and prints a JSON
object {"role name": "SCRAM-SHA-256$4096:<salt>$<StoredKey>:<ServerKey>"}.

The salt is derived from the role name and the password, so the verifier of a
given (name, password) pair is always the same: the server's pg_authid entry
and PgBouncer's userlist hold the identical string, which is what PgBouncer's
SCRAM pass-through needs, and re-running the lab changes nothing. This is a
throw-away lab on loopback; do not copy the fixed-salt idea to production.
Passwords are never printed or passed on the command line.
"""
import base64
import hashlib
import hmac
import json
import sys
import unicodedata

ITERATIONS = 4096


def _b64(raw):
    return base64.b64encode(raw).decode("ascii")


def verifier(name, password):
    # PostgreSQL applies SASLprep; NFKC covers the ASCII passwords a lab uses.
    secret = unicodedata.normalize("NFKC", password).encode("utf-8")
    salt = hashlib.sha256(b"pgshift-lab\0" + name.encode("utf-8") + b"\0" + secret).digest()[:16]
    salted = hashlib.pbkdf2_hmac("sha256", secret, salt, ITERATIONS)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return "SCRAM-SHA-256$%d:%s$%s:%s" % (ITERATIONS, _b64(salt), _b64(stored_key), _b64(server_key))


def main():
    wanted = json.load(sys.stdin)
    json.dump({name: verifier(name, pw) for name, pw in sorted(wanted.items())}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
