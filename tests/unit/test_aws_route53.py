"""The cutover's Route 53 calls (module_utils/_aws/route53.py) against botocore's Stubber."""

from __future__ import annotations

import datetime

import boto3
import pytest
from botocore.stub import Stubber

from ansible_collections.pgshift.aurora.plugins.module_utils import cutover
from ansible_collections.pgshift.aurora.plugins.module_utils._aws import common, route53

ZONE = "Z0123456789ABCDEFGHIJ"
T0 = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.timezone.utc)


@pytest.fixture
def stubbed():
    client = boto3.client("route53", region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing", endpoint_url="http://127.0.0.1:9")
    with Stubber(client) as stub:
        yield common.Api(client, route53.HINTS, sleep=lambda s: None, rand=lambda: 0.5), stub
        stub.assert_no_pending_responses()


def rrset(name, value, ttl=300, kind="CNAME"):
    return {"Name": name, "Type": kind, "TTL": ttl, "ResourceRecords": [{"Value": value}]}


def test_current_record_is_the_named_one_or_none(stubbed):
    r53, stub = stubbed
    query = dict(HostedZoneId=ZONE, StartRecordName="db.example.internal.", StartRecordType="CNAME", MaxItems="1")
    stub.add_response("list_resource_record_sets", {"ResourceRecordSets": [rrset("db.example.internal.", "blue")],
                                                    "IsTruncated": False, "MaxItems": "1"}, query)
    stub.add_response("list_resource_record_sets", {"ResourceRecordSets": [rrset("dc.example.internal.", "x")],
                                                    "IsTruncated": False, "MaxItems": "1"}, query)
    assert route53.current_record(r53, ZONE, "db.example.internal", "CNAME")["ResourceRecords"] == [{"Value": "blue"}]
    assert route53.current_record(r53, ZONE, "db.example.internal.", "CNAME") is None


def test_change_then_wait_until_insync(stubbed):
    r53, stub = stubbed
    batch = cutover.route53_change("db.example.internal.", "CNAME", "green", 30)
    stub.add_response("change_resource_record_sets", {"ChangeInfo": {"Id": "/change/C1", "Status": "PENDING",
                                                                     "SubmittedAt": T0}},
                      dict(HostedZoneId=ZONE, ChangeBatch=batch))
    stub.add_response("get_change", {"ChangeInfo": {"Id": "/change/C1", "Status": "PENDING", "SubmittedAt": T0}},
                      dict(Id="/change/C1"))
    stub.add_response("get_change", {"ChangeInfo": {"Id": "/change/C1", "Status": "INSYNC", "SubmittedAt": T0}},
                      dict(Id="/change/C1"))
    change = route53.change_records(r53, ZONE, batch)
    slept = []
    assert route53.wait_insync(r53, change, timeout=60, sleep=slept.append, clock=lambda: 0.0) == "INSYNC"
    assert slept == [1, 1]


def test_wait_gives_up_after_the_timeout_with_the_last_status(stubbed):
    r53, stub = stubbed
    stub.add_response("get_change", {"ChangeInfo": {"Id": "/change/C1", "Status": "PENDING", "SubmittedAt": T0}},
                      dict(Id="/change/C1"))
    ticks = iter([0.0, 0.0, 61.0])
    assert route53.wait_insync(r53, {"Id": "/change/C1", "Status": "PENDING"}, timeout=60, sleep=lambda s: None,
                               clock=lambda: next(ticks)) == "PENDING"


def test_errors_say_what_failed_and_what_to_do(stubbed):
    r53, stub = stubbed
    stub.add_client_error("change_resource_record_sets", "NoSuchHostedZone", "No hosted zone found", http_status_code=404)
    with pytest.raises(common.AwsError) as err:
        route53.change_records(r53, ZONE, cutover.route53_change("db.example.internal.", "CNAME", "green", 30))
    assert str(err.value) == ("changing the Route 53 record db.example.internal.: NoSuchHostedZone: No hosted zone "
                              "found (check route53.zone_id)")
    assert err.value.code == "NoSuchHostedZone"
