# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""DMS certificates (CA bundles for verify-ca / verify-full endpoints), pure: PEM checks, names that follow
the bundle's fingerprint, and which certificates a prefix owns."""

from __future__ import annotations

import hashlib
import re

CERTIFICATE_FINGERPRINT_CHARS = 16

_CERTIFICATE_ID = re.compile(r"^[A-Za-z](?:-?[A-Za-z0-9])*$")


def normalise_pem(pem):
    """The PEM text with line endings and surrounding blanks normalised (what the fingerprint covers)."""
    lines = [line.strip() for line in str(pem).replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return "\n".join(line for line in lines if line) + "\n"


def pem_problem(pem):
    """None for PEM text holding at least one certificate, else what is wrong with it."""
    text = normalise_pem(pem)
    begin = text.count("-----BEGIN CERTIFICATE-----")
    if not begin:
        return "no -----BEGIN CERTIFICATE----- block"
    if begin != text.count("-----END CERTIFICATE-----"):
        return "a certificate block is not closed (-----END CERTIFICATE-----)"
    if "PRIVATE KEY-----" in text:
        return "it holds a private key: give the CA certificate(s) only"
    return None


def certificate_identifier(prefix, pem):
    """prefix + the first characters of the PEM's SHA-256: the same bundle gets the same name, another bundle another.

    DMS certificates cannot be modified: a changed CA bundle is imported under a new name.
    """
    digest = hashlib.sha256(normalise_pem(pem).encode("utf-8")).hexdigest()[:CERTIFICATE_FINGERPRINT_CHARS]
    ident = "%s%s" % (prefix, digest)
    problem = certificate_identifier_problem(ident)
    if problem:
        raise ValueError("identifier_prefix %s: %s" % (prefix, problem))
    return ident


def certificate_identifier_problem(ident):
    """None for a valid DMS certificate identifier, else why not (DMS's rules)."""
    if not ident or len(ident) > 255:
        return "a certificate identifier has 1 to 255 characters"
    if not _CERTIFICATE_ID.match(ident):
        return ("a certificate identifier starts with a letter, has only letters, digits and hyphens, no two hyphens in a "
                "row and does not end with a hyphen")
    return None


def certificates_of_prefix(certificates, prefix):
    """The certificates named prefix + a fingerprint (certificate_identifier), as DescribeCertificates lists them."""
    pattern = re.compile("^%s[0-9a-f]{%d}$" % (re.escape(prefix), CERTIFICATE_FINGERPRINT_CHARS))
    return [c for c in certificates if pattern.match(c.get("CertificateIdentifier") or "")]
