# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""dms_certificate's orchestration: read the PEM -> name it (dms_certificates) -> import it once, or delete the
certificates of the identifier or prefix.

Calls: _aws/dms.py. Decides: dms_certificates.py."""

from __future__ import annotations

from ansible.module_utils.common.dict_transformations import camel_dict_to_snake_dict

from ansible_collections.pgshift.aurora.plugins.module_utils import dms_certificates
from ansible_collections.pgshift.aurora.plugins.module_utils._aws import common
from ansible_collections.pgshift.aurora.plugins.module_utils._aws import dms as dms_api


def argument_spec():
    spec = dict(
        identifier=dict(type="str"),
        identifier_prefix=dict(type="str"),
        certificate_file=dict(type="path"),
        certificate_pem=dict(type="str"),
        tags=dict(type="dict"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
    )
    spec.update(common.aws_argument_spec())
    return spec


def result_of(cert):
    return camel_dict_to_snake_dict(dict((k, v) for k, v in cert.items()
                                         if k not in ("CertificatePem", "CertificateWallet") and v is not None))


def read_pem(module):
    p = module.params
    if p["certificate_pem"] is not None:
        pem = p["certificate_pem"]
    else:
        try:
            with open(p["certificate_file"], encoding="utf-8") as f:
                pem = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            module.fail_json(msg="certificate_file %s cannot be read: %s" % (p["certificate_file"], exc))
    problem = dms_certificates.pem_problem(pem)
    if problem:
        module.fail_json(msg="%s is not a PEM CA bundle: %s" % (p["certificate_file"] or "certificate_pem", problem))
    return pem


def absent(module, api):
    p = module.params
    if p["identifier"]:
        found = dms_api.find_certificate(api, p["identifier"])
        doomed = [found] if found else []
    else:
        doomed = dms_certificates.certificates_of_prefix(dms_api.all_certificates(api), p["identifier_prefix"])
    names = sorted(c["CertificateIdentifier"] for c in doomed)
    result = dict(changed=bool(doomed), deleted=names)
    if doomed:
        result["diff"] = dict(before=dict(certificates=names), after=dict(certificates=[]))
    if not module.check_mode:
        for cert in doomed:
            dms_api.delete_certificate(api, cert)
    return result


def present(module, api):
    p = module.params
    pem = read_pem(module)
    if p["identifier"]:
        ident = p["identifier"]
        problem = dms_certificates.certificate_identifier_problem(ident)
        if problem:
            module.fail_json(msg="identifier %s: %s" % (ident, problem))
    else:
        try:
            ident = dms_certificates.certificate_identifier(p["identifier_prefix"], pem)
        except ValueError as exc:
            module.fail_json(msg=str(exc))
    cert = dms_api.find_certificate(api, ident)
    if cert is not None:
        have = cert.get("CertificatePem")
        if have and dms_certificates.normalise_pem(have) != dms_certificates.normalise_pem(pem):
            module.fail_json(msg="certificate %s exists with another PEM, and a DMS certificate cannot change: use "
                                 "identifier_prefix (each bundle its own name) or another identifier, or delete it "
                                 "(state=absent) once no endpoint uses it" % ident)
        return dict(changed=False, arn=cert["CertificateArn"], identifier=ident, certificate=result_of(cert))
    result = dict(changed=True, identifier=ident,
                  diff=dict(before={}, after=dict(CertificateIdentifier=ident, Tags=p["tags"] or {})))
    if module.check_mode:
        result["arn"] = "(certificate %s, not imported yet)" % ident
        return result
    cert = dms_api.import_certificate(api, ident, pem, p["tags"])
    result.update(arn=cert["CertificateArn"], certificate=result_of(cert))
    return result


def run(module, api):
    return present(module, api) if module.params["state"] == "present" else absent(module, api)


def module_spec():
    return dict(argument_spec=argument_spec(),
                required_one_of=[("identifier", "identifier_prefix")],
                mutually_exclusive=[("identifier", "identifier_prefix"), ("certificate_file", "certificate_pem")],
                required_if=[("state", "present", ("certificate_file", "certificate_pem"), True)])


def run_module(module):
    name = module.params["identifier"] or "%s*" % module.params["identifier_prefix"]
    common.end_run(module, lambda: run(module, dms_api.api(module.params)), "certificate %s" % name)
