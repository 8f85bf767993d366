"""The bucket policies refuse what does not come through the VPC's S3 endpoint, and plain HTTP, with named exceptions.

The policies are rendered from infra/modules/storage (tests/infra/bucket_policies.py)
and evaluated as IAM evaluates a Deny (tools/iam_enforcement.py): each case is a
request with the condition keys AWS would put in its context.
"""

from __future__ import annotations

import pytest

from tests.infra import hcl
from tests.infra.bucket_policies import STORAGE, Deployment, render
from tools.aws_calls import Authorization
from tools.iam_enforcement import evaluate

DEPLOYMENT = Deployment()
GLUE_ROLE = f"arn:aws:iam::{DEPLOYMENT.account}:role/{DEPLOYMENT.name_prefix}-glue-job"
MWAA_ROLE = DEPLOYMENT.mwaa_execution_role_arn
WRITER = DEPLOYMENT.landing_writer_role_arns[0]
POLICIES = render(DEPLOYMENT)
BUCKETS = sorted(POLICIES)


def _request(
    principal: str | None = GLUE_ROLE,
    vpce: str | None = DEPLOYMENT.s3_vpc_endpoint_id,
    tls: bool = True,
    service_principal: bool = False,
    via_service: bool = False,
) -> dict[str, str]:
    """The request context of one S3 request (keys AWS leaves out are left out)."""
    context = {
        "aws:SecureTransport": str(tls).lower(),
        "aws:PrincipalIsAWSService": str(service_principal).lower(),
        "aws:ViaAWSService": str(via_service).lower(),
    }
    if principal:
        context["aws:PrincipalArn"] = principal
    if vpce:
        context["aws:SourceVpce"] = vpce
    return context


def _refused(bucket: str, action: str, context: dict[str, str], key: str | None = "events/x.json") -> str | None:
    """The Sid of the statement that refuses the request, or None."""
    arn = f"arn:aws:s3:::{DEPLOYMENT.name_prefix}-{bucket}"
    resource = f"{arn}/{key}" if key else arn
    decision = evaluate([POLICIES[bucket]], Authorization(action, resource), context)
    return decision.statement if decision.explicit_deny else None


def test_the_policies_only_refuse():
    for bucket, document in POLICIES.items():
        assert {s["Effect"] for s in document["Statement"]} == {"Deny"}, bucket
        assert all(s["Principal"] == "*" for s in document["Statement"]), bucket


@pytest.mark.parametrize("bucket", BUCKETS)
def test_the_pipeline_through_the_endpoint_is_not_refused(bucket):
    for principal in (GLUE_ROLE, MWAA_ROLE):
        for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject"):
            assert _refused(bucket, action, _request(principal)) is None
        assert _refused(bucket, "s3:ListBucket", _request(principal), key=None) is None


@pytest.mark.parametrize("bucket", BUCKETS)
def test_plain_http_is_refused_to_everyone(bucket):
    for principal in (GLUE_ROLE, DEPLOYMENT.deployer_role_arn, None):
        assert _refused(bucket, "s3:GetObject", _request(principal, tls=False)) == "DenyInsecureTransport"


@pytest.mark.parametrize("bucket", ["lake", "quarantine", "landing"])
def test_data_outside_the_endpoint_is_refused(bucket):
    for principal in (GLUE_ROLE, MWAA_ROLE, f"arn:aws:iam::{DEPLOYMENT.account}:role/admin", None):
        for action in ("s3:GetObject", "s3:PutObject", "s3:ListBucket"):
            assert _refused(bucket, action, _request(principal, vpce=None)) == "DenyOutsideVpcEndpoint"
    # Another endpoint (another VPC) is outside too.
    assert _refused(bucket, "s3:GetObject", _request(vpce="vpce-0another000000000")) == "DenyOutsideVpcEndpoint"


@pytest.mark.parametrize("bucket", BUCKETS)
def test_the_deploying_role_and_aws_acting_for_us_are_not_refused_outside_the_endpoint(bucket):
    outside = {"vpce": None}
    assert _refused(bucket, "s3:PutBucketPolicy", _request(DEPLOYMENT.deployer_role_arn, **outside), key=None) is None
    assert _refused(bucket, "s3:PutObject", _request(DEPLOYMENT.deployer_role_arn, **outside)) is None
    # A service with its own principal (no principal ARN), or a service using a caller's credentials (Athena).
    assert _refused(bucket, "s3:GetObject", _request(None, service_principal=True, **outside)) is None
    assert _refused(bucket, "s3:GetObject", _request(GLUE_ROLE, via_service=True, **outside)) is None
    slr = f"arn:aws:iam::{DEPLOYMENT.account}:role/aws-service-role/access-analyzer.amazonaws.com/AccessAnalyzer"
    assert _refused(bucket, "s3:GetBucketPolicy", _request(slr, **outside), key=None) is None


def test_mwaa_reads_its_source_from_outside_the_endpoint_and_nothing_more():
    outside = _request(MWAA_ROLE, vpce=None)
    assert _refused("assets", "s3:GetObject", outside, key="plugins/plugins.zip") is None
    assert _refused("assets", "s3:GetObjectVersion", outside, key="requirements/requirements.txt") is None
    assert _refused("assets", "s3:ListBucket", outside, key=None) is None
    assert _refused("assets", "s3:GetBucketVersioning", outside, key=None) is None
    assert _refused("assets", "s3:PutObject", outside, key="dags/x.py") == "DenyMwaaAnythingButReadsOutsideVpcEndpoint"
    assert (
        _refused("assets", "s3:DeleteObject", outside, key="dags/x.py") == "DenyMwaaAnythingButReadsOutsideVpcEndpoint"
    )
    assert _refused("lake", "s3:GetObject", outside) == "DenyOutsideVpcEndpoint"


def test_landing_writers_only_write_landing_files_from_outside_the_endpoint():
    outside = _request(WRITER, vpce=None)
    deny_others = "DenyLandingWritersAnythingButWritesOutsideVpcEndpoint"
    assert _refused("landing", "s3:PutObject", outside) is None
    assert _refused("landing", "s3:AbortMultipartUpload", outside) is None
    assert _refused("landing", "s3:GetObject", outside) == deny_others
    assert _refused("landing", "s3:ListBucket", outside, key=None) == deny_others
    assert _refused("landing", "s3:DeleteObject", outside) == deny_others
    for bucket in ("lake", "quarantine", "assets"):
        assert _refused(bucket, "s3:PutObject", outside) == "DenyOutsideVpcEndpoint"


def test_without_landing_writers_the_landing_bucket_has_no_exception():
    document = render(Deployment(landing_writer_role_arns=()))["landing"]
    assert [s["Sid"] for s in document["Statement"]] == ["DenyInsecureTransport", "DenyOutsideVpcEndpoint"]
    exempt = document["Statement"][1]["Condition"]["ArnNotLikeIfExists"]["aws:PrincipalArn"]
    assert WRITER not in exempt


def test_every_bucket_gets_the_policy_and_the_endpoint_is_the_networks_s3_gateway():
    policy = hcl.blocks(hcl.module_doc(STORAGE), "resource", "aws_s3_bucket_policy")["this"]
    assert policy["for_each"] == "${aws_s3_bucket.this}"
    assert policy["policy"] == "${data.aws_iam_policy_document.bucket[each.key].json}"
    call = hcl.blocks(hcl.module_doc(hcl.ENV_ROOT), "module")["storage"]
    assert call["s3_vpc_endpoint_id"] == '${module.network.endpoint_ids["s3"]}'
    assert call["deployer_role_arn"] == "${var.deployer_role_arn}"
    assert call["mwaa_execution_role_arn"] == "${module.iam.mwaa_execution_role_arn}"
