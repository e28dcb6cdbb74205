# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The AWS connection options every AWS module of the collection shares."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  aws_region:
    description: The AWS region (else the environment's or the profile's).
    type: str
    aliases: [region]
  aws_endpoint_url:
    description:
      - An endpoint URL instead of the region's (a moto server in tests, or a VPC endpoint).
    type: str
    aliases: [endpoint_url]
  aws_access_key:
    description: AWS access key id (else the environment, the profile or the instance role).
    type: str
    aliases: [access_key]
  aws_secret_key:
    description: AWS secret access key. Never shown in the output.
    type: str
    aliases: [secret_key]
  aws_session_token:
    description: AWS session token for temporary credentials. Never shown in the output.
    type: str
    aliases: [session_token]
  aws_profile:
    description: A profile of the AWS shared credentials and config files.
    type: str
    aliases: [profile]
notes:
  - Throttling errors (C(ThrottlingException) and the like) are retried up to 8 times with jittered
    exponential backoff; any other AWS error fails the task at once with its code and what to do.
requirements:
  - boto3
"""
