"""DMS certificates: PEM checks and fingerprinted names (module_utils/dms_certificates.py)."""

from __future__ import annotations

import pytest

from ansible_collections.pgshift.aurora.plugins.module_utils import dms_certificates


PEM = ("-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUY29tbW9uLWNhLWZvci10ZXN0czAKBggqhkjOPQQDAjAP\n"
       "-----END CERTIFICATE-----\n")


OTHER_PEM = PEM.replace("Y29tbW9u", "b3RoZXJz")


def test_certificate_identifier_follows_the_pem_not_its_line_endings():
    ident = dms_certificates.certificate_identifier("pgshift-orders-ca-", PEM)
    assert ident.startswith("pgshift-orders-ca-") and len(ident) == len("pgshift-orders-ca-") + 16
    assert dms_certificates.certificate_identifier_problem(ident) is None
    assert dms_certificates.certificate_identifier("pgshift-orders-ca-", "\n" + PEM.replace("\n", "\r\n") + "\n\n") == ident
    assert dms_certificates.certificate_identifier("pgshift-orders-ca-", OTHER_PEM) != ident
    with pytest.raises(ValueError, match="starts with a letter"):
        dms_certificates.certificate_identifier("1-orders-", PEM)
    with pytest.raises(ValueError, match="no two hyphens"):
        dms_certificates.certificate_identifier("pgshift--ca-", PEM)


def test_certificate_identifier_problems():
    assert dms_certificates.certificate_identifier_problem("rds-global-bundle") is None
    assert dms_certificates.certificate_identifier_problem("rds-global-bundle-") is not None
    assert dms_certificates.certificate_identifier_problem("rds_global") is not None
    assert dms_certificates.certificate_identifier_problem("") is not None
    assert dms_certificates.certificate_identifier_problem("a" * 256) is not None


def test_pem_problem():
    assert dms_certificates.pem_problem(PEM + OTHER_PEM) is None
    assert "no -----BEGIN CERTIFICATE-----" in dms_certificates.pem_problem("hello")
    assert "not closed" in dms_certificates.pem_problem(PEM.replace("-----END CERTIFICATE-----\n", ""))
    key = "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n"
    assert "private key" in dms_certificates.pem_problem(PEM + key)


def test_certificates_of_prefix_only_the_fingerprinted_names():
    ident = dms_certificates.certificate_identifier("pgshift-orders-ca-", PEM)
    listed = [{"CertificateIdentifier": ident}, {"CertificateIdentifier": "pgshift-orders-ca-manual"},
              {"CertificateIdentifier": dms_certificates.certificate_identifier("pgshift-orders-staging-ca-", PEM)},
              {"CertificateIdentifier": "rds-global-bundle"}]
    assert dms_certificates.certificates_of_prefix(listed, "pgshift-orders-ca-") == [{"CertificateIdentifier": ident}]
