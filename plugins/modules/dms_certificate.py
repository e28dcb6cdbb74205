#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dms_certificate
short_description: Import a CA certificate bundle into AWS DMS (for endpoints with verify-ca / verify-full), or delete it
version_added: 0.3.0
description:
  - Makes the DMS certificate exist with the given PEM (C(ImportCertificate)), or not exist. DMS endpoints with
    C(ssl_mode) C(verify-ca) or C(verify-full) need one, given to M(pgshift.aurora.dms_endpoint) as its
    C(certificate_arn); for RDS and Aurora it is the RDS CA bundle (C(global-bundle.pem)), the file the
    controller verifies the servers with (the inventory's C(db_sslrootcert)).
  - A DMS certificate cannot be modified. With O(identifier_prefix) the certificate is named after the PEM's
    SHA-256 (prefix + 16 hex characters), so the same bundle always gets the same name (a second run
    changes nothing) and a renewed bundle a new one. With O(identifier), a certificate of that name holding another PEM is
    an error.
  - O(state=absent) with O(identifier_prefix) deletes every certificate named prefix + fingerprint. A certificate
    an endpoint uses cannot be deleted; delete the endpoints first.
author:
  - pgshift.aurora developers (@pgshift)
extends_documentation_fragment:
  - pgshift.aurora.aws
  - pgshift.aurora.in_process
options:
  identifier:
    description: The certificate identifier. One of O(identifier) and O(identifier_prefix) is required.
    type: str
  identifier_prefix:
    description:
      - Name the certificate O(identifier_prefix) followed by the first 16 hexadecimal characters of the PEM's SHA-256
        (for example C(pgshift-orders-ca-)). With O(state=absent), every certificate so named is deleted.
    type: str
  certificate_file:
    description: A PEM file with the CA certificate(s), on the host the module runs on (the controller when plays run locally).
    type: path
  certificate_pem:
    description: The PEM text itself, instead of O(certificate_file).
    type: str
  tags:
    description: Tags given to the certificate when it is imported (not compared afterwards).
    type: dict
  state:
    description: Whether the certificate exists.
    type: str
    choices: [present, absent]
    default: present
"""

EXAMPLES = r"""
- name: The RDS CA bundle, for verify-full DMS endpoints
  pgshift.aurora.dms_certificate:
    identifier_prefix: pgshift-orders-ca-
    certificate_file: /etc/ssl/rds/global-bundle.pem
    tags:
      pgshift:migration: orders
    aws_region: eu-west-1
  register: rds_ca

- name: Source endpoint verifying the server with it
  pgshift.aurora.dms_endpoint:
    identifier: pgshift-orders-source
    endpoint_type: source
    server_name: orders.abcdefghijkl.eu-west-1.rds.amazonaws.com
    port: 5432
    database_name: orders
    username: pgshift
    password: "{{ migration_password }}"
    ssl_mode: verify-full
    certificate_arn: "{{ rds_ca.arn }}"
    aws_region: eu-west-1

- name: Delete the bundles imported for the migration (after its endpoints)
  pgshift.aurora.dms_certificate:
    identifier_prefix: pgshift-orders-ca-
    state: absent
    aws_region: eu-west-1
"""

RETURN = r"""
arn:
  description:
    - The certificate ARN. In check mode, for a certificate not imported yet, C((certificate <identifier>, not imported yet)).
  returned: when O(state=present)
  type: str
identifier:
  description: The certificate identifier (with O(identifier_prefix), the one derived from the PEM).
  returned: when O(state=present)
  type: str
certificate:
  description: The certificate as the service describes it, in snake_case, without its PEM text.
  returned: when the certificate exists and O(state=present)
  type: dict
  sample:
    certificate_identifier: pgshift-orders-ca-3f1c9a0b7d2e4c51
    certificate_arn: arn:aws:dms:eu-west-1:123456789012:cert:ABCDEFGHIJKLMNOPQRSTUVWXYZ
    valid_to_date: "2061-05-20T20:40:12+00:00"
    signing_algorithm: SHA384withRSA
deleted:
  description: The identifiers of the certificates deleted (or that check mode would delete).
  returned: when O(state=absent)
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.pgshift.aurora.plugins.module_utils._aws import common
from ansible_collections.pgshift.aurora.plugins.module_utils.runners import dms_certificate as runner


def main():
    module = AnsibleModule(supports_check_mode=True, **runner.module_spec())
    if common.BOTO3_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("boto3"), exception=common.BOTO3_IMPORT_ERROR)
    runner.run_module(module)


if __name__ == "__main__":
    main()
