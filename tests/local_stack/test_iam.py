"""The local AWS holds the pipeline's identities to their rendered policies, as IAM would."""

from __future__ import annotations

import copy

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.conftest import Stack
from tools import iam_report
from tools.aws_calls import Authorization
from tools.iam_enforcement import UnsupportedPolicy, evaluate
from tools.local_stack import FAKE_CREDENTIALS, POLICY_NAME, REGION, AccessKey, client, put_policy

DAY = "2026-11-24"


def _current_policy(stack: Stack, identity: AccessKey) -> dict:
    """The identity's rendered policy as the bootstrap stored it (with the KMS key ARNs moto generated)."""
    return client("iam", stack.endpoint).get_user_policy(UserName=identity.user, PolicyName=POLICY_NAME)[
        "PolicyDocument"
    ]


def _make_policy_without(stack: Stack, identity: AccessKey, sid: str, action: str | None = None) -> dict:
    """The identity's policy less one action of one statement (or the whole statement)."""
    document = copy.deepcopy(_current_policy(stack, identity))
    statement = next(s for s in document["Statement"] if s["Sid"] == sid)
    if action is None:
        document["Statement"].remove(statement)
    else:
        statement["Action"] = [a for a in statement["Action"] if a != action]
    return document


def _data_key(stack: Stack) -> str:
    kms = client("kms", stack.endpoint)
    return kms.describe_key(KeyId=f"alias/{stack.names.name_prefix}-data")["KeyMetadata"]["Arn"]


def _error(call) -> tuple[str, str]:
    with pytest.raises(ClientError) as failure:
        call()
    return failure.value.response["Error"]["Code"], failure.value.response["Error"].get("Message", "")


def test_a_delete_the_policy_lacks_is_refused_naming_action_and_resource_while_root_may(stack):
    lake = stack.names.lake_bucket
    key = f"{stack.settings.dataset}/dt={DAY}/part-m-00000.snappy.parquet"
    stack.s3.put_object(Bucket=lake, Key=key, Body=b"parquet")
    put_policy(
        stack.endpoint,
        stack.identities.glue,
        _make_policy_without(stack, stack.identities.glue, "DatasetWrite", "s3:DeleteObject"),
    )
    glue_s3 = client("s3", stack.endpoint, stack.identities.glue)

    code, message = _error(lambda: glue_s3.delete_object(Bucket=lake, Key=key))
    assert code == "AccessDenied"
    assert "s3:DeleteObject" in message
    assert f"arn:aws:s3:::{lake}/{key}" in message
    assert stack.identities.glue.arn in message
    assert "infra/policies/glue-job.json.tftpl" in message
    # What the policy still grants passes, and root is never refused.
    assert glue_s3.get_object(Bucket=lake, Key=key)["Body"].read() == b"parquet"
    stack.s3.delete_object(Bucket=lake, Key=key)
    assert stack.s3.list_objects_v2(Bucket=lake, Prefix=key)["KeyCount"] == 0
    denial = iam_report.denials(stack.endpoint, stack.identities.glue.user)[-1]
    assert (denial["action"], denial["resource"]) == ("s3:DeleteObject", f"arn:aws:s3:::{lake}/{key}")


def test_delete_objects_is_authorised_key_by_key(stack):
    lake = stack.names.lake_bucket
    allowed, refused = f"{stack.settings.dataset}/dt={DAY}/a.parquet", "elsewhere/b.json"
    for key in (allowed, refused):
        stack.s3.put_object(Bucket=lake, Key=key, Body=b"x")
    glue_s3 = client("s3", stack.endpoint, stack.identities.glue)
    response = glue_s3.delete_objects(
        Bucket=lake, Delete={"Objects": [{"Key": allowed}, {"Key": refused}], "Quiet": True}
    )
    assert [(e["Key"], e["Code"]) for e in response["Errors"]] == [(refused, "AccessDenied")]
    assert "s3:DeleteObject" in response["Errors"][0]["Message"]
    remaining = [o["Key"] for o in stack.s3.list_objects_v2(Bucket=lake).get("Contents", [])]
    assert remaining == [refused]


def test_a_missing_key_is_403_unless_the_caller_may_list_the_bucket(stack):
    landing = stack.names.landing_bucket
    read = {
        "Sid": "Read",
        "Effect": "Allow",
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{landing}/incoming/*",
    }
    listing = {"Sid": "List", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{landing}"}
    by_prefix = {**listing, "Condition": {"StringLike": {"s3:prefix": "incoming/*"}}}
    glue_s3 = client("s3", stack.endpoint, stack.identities.glue)

    def get_missing():
        return glue_s3.get_object(Bucket=landing, Key="incoming/gone.ndjson")

    put_policy(stack.endpoint, stack.identities.glue, {"Version": "2012-10-17", "Statement": [read]})
    code, message = _error(get_missing)
    assert code == "AccessDenied"
    assert "s3:ListBucket" in message
    assert "incoming/gone.ndjson" in message
    # A request for one key carries no s3:prefix, so a prefix-scoped ListBucket does not tell 404 either.
    put_policy(stack.endpoint, stack.identities.glue, {"Version": "2012-10-17", "Statement": [read, by_prefix]})
    assert _error(get_missing)[0] == "AccessDenied"
    put_policy(stack.endpoint, stack.identities.glue, {"Version": "2012-10-17", "Statement": [read, listing]})
    assert _error(get_missing)[0] == "NoSuchKey"
    assert _error(lambda: glue_s3.head_object(Bucket=landing, Key="incoming/gone.ndjson"))[0] == "404"


def test_list_bucket_honours_the_s3_prefix_condition(stack):
    mwaa_s3 = client("s3", stack.endpoint, stack.identities.mwaa)
    landing = stack.names.landing_bucket
    assert mwaa_s3.list_objects_v2(Bucket=landing, Prefix=f"incoming/dt={DAY}/")["KeyCount"] == 0
    code, message = _error(lambda: mwaa_s3.list_objects_v2(Bucket=landing, Prefix="other/"))
    assert code == "AccessDenied"
    assert "s3:ListBucket" in message
    assert "s3:prefix='other/'" in message
    assert _error(lambda: mwaa_s3.list_objects_v2(Bucket=landing))[0] == "AccessDenied"  # no prefix: no s3:prefix key


def test_transactions_are_authorised_per_item_action(stack):
    put_policy(
        stack.endpoint,
        stack.identities.mwaa,
        _make_policy_without(stack, stack.identities.mwaa, "Ledger", "dynamodb:ConditionCheckItem"),
    )
    ddb = client("dynamodb", stack.endpoint, stack.identities.mwaa)
    table = stack.names.ledger_table
    key = {"pk": {"S": "file#a"}, "sk": {"S": "v#1"}}
    items = [
        {"Put": {"TableName": table, "Item": {"pk": {"S": "file#b"}, "sk": {"S": "v#1"}}}},
        {"ConditionCheck": {"TableName": table, "Key": key, "ConditionExpression": "attribute_not_exists(pk)"}},
    ]
    code, message = _error(lambda: ddb.transact_write_items(TransactItems=items))
    assert code == "AccessDeniedException"
    assert "dynamodb:ConditionCheckItem" in message
    assert f"table/{table}" in message
    ddb.transact_write_items(TransactItems=items[:1])
    assert stack.dynamodb.get_item(TableName=table, Key={"pk": {"S": "file#b"}, "sk": {"S": "v#1"}})["Item"]


def test_queries_are_authorised_on_the_table_or_index_they_read(stack):
    ddb = client("dynamodb", stack.endpoint, stack.identities.glue)  # the Glue role has no ledger access at all
    code, message = _error(
        lambda: ddb.query(
            TableName=stack.names.ledger_table,
            IndexName="work-by-day",
            KeyConditionExpression="work_pk = :p",
            ExpressionAttributeValues={":p": {"S": "x"}},
        )
    )
    assert code == "AccessDeniedException"
    assert f"table/{stack.names.ledger_table}/index/work-by-day" in message
    mwaa = client("dynamodb", stack.endpoint, stack.identities.mwaa)
    page = mwaa.query(
        TableName=stack.names.ledger_table,
        IndexName="work-by-day",
        KeyConditionExpression="work_pk = :p",
        ExpressionAttributeValues={":p": {"S": "x"}},
    )
    assert page["Count"] == 0


def test_copy_needs_read_on_its_source(stack):
    lake = stack.names.lake_bucket
    stack.s3.put_object(Bucket=stack.names.assets_bucket, Key="dags/x.py", Body=b"x")
    glue_s3 = client("s3", stack.endpoint, stack.identities.glue)
    code, message = _error(
        lambda: glue_s3.copy_object(
            Bucket=lake,
            Key=f"{stack.settings.dataset}/dt={DAY}/x.py",
            CopySource={"Bucket": stack.names.assets_bucket, "Key": "dags/x.py"},
        )
    )
    assert code == "AccessDenied"
    assert f"s3:GetObject on resource: arn:aws:s3:::{stack.names.assets_bucket}/dags/x.py" in message


def test_sse_kms_objects_need_the_data_key_through_s3(stack):
    lake, key = stack.names.lake_bucket, f"{stack.settings.dataset}/dt={DAY}/a.parquet"
    stack.s3.put_object(Bucket=lake, Key=key, Body=b"x")  # encrypted with the bucket's default key
    put_policy(stack.endpoint, stack.identities.glue, _make_policy_without(stack, stack.identities.glue, "DataKey"))
    glue_s3 = client("s3", stack.endpoint, stack.identities.glue)
    code, message = _error(lambda: glue_s3.put_object(Bucket=lake, Key=key, Body=b"y"))
    assert code == "AccessDenied"
    assert f"kms:GenerateDataKey on resource: {_data_key(stack)}" in message
    code, message = _error(lambda: glue_s3.get_object(Bucket=lake, Key=key))
    assert f"kms:Decrypt on resource: {_data_key(stack)}" in message
    assert glue_s3.head_object(Bucket=lake, Key=key)["ContentLength"] == 1  # metadata needs no key


def test_the_mwaa_roles_key_grant_holds_only_through_the_named_services(stack):
    mwaa_s3 = client("s3", stack.endpoint, stack.identities.mwaa)
    report = "_pipeline/reports/dt=2026-11-24/report.json"
    mwaa_s3.put_object(Bucket=stack.names.lake_bucket, Key=report, Body=b"{}")
    document = _current_policy(stack, stack.identities.mwaa)
    grant = next(s for s in document["Statement"] if s["Sid"] == "DataKeyViaServices")
    grant["Condition"]["StringEquals"]["kms:ViaService"] = ["sqs.us-east-1.amazonaws.com"]
    put_policy(stack.endpoint, stack.identities.mwaa, document)
    code, message = _error(lambda: mwaa_s3.put_object(Bucket=stack.names.lake_bucket, Key=report, Body=b"{}"))
    assert code == "AccessDenied"
    assert "kms:GenerateDataKey" in message
    assert "kms:ViaService='s3.us-east-1.amazonaws.com'" in message


def test_reading_the_encrypted_queue_needs_its_key(stack):
    stack.sqs.send_message(QueueUrl=stack.queue_url, MessageBody="{}")
    mwaa_sqs = client("sqs", stack.endpoint, stack.identities.mwaa)
    put_policy(
        stack.endpoint, stack.identities.mwaa, _make_policy_without(stack, stack.identities.mwaa, "EventQueueKey")
    )
    code, message = _error(lambda: mwaa_sqs.receive_message(QueueUrl=stack.queue_url, WaitTimeSeconds=0))
    assert code == "AccessDenied"
    assert "kms:Decrypt" in message
    assert "kms:ViaService='sqs.us-east-1.amazonaws.com'" in message


def test_metrics_are_scoped_by_namespace(stack):
    cloudwatch = client("cloudwatch", stack.endpoint, stack.identities.mwaa)
    cloudwatch.put_metric_data(Namespace=stack.settings.metrics_namespace, MetricData=[{"MetricName": "m", "Value": 1}])
    code, message = _error(
        lambda: cloudwatch.put_metric_data(Namespace="Other", MetricData=[{"MetricName": "m", "Value": 1}])
    )
    assert code == "AccessDenied"
    assert "cloudwatch:namespace='Other'" in message


def test_an_unknown_access_key_is_refused(stack):
    stranger = AccessKey("nobody", "arn:aws:iam::123456789012:user/nobody", "AKIAUNKNOWN000000000", "secret")
    assert _error(lambda: client("sqs", stack.endpoint, stranger).list_queues())[0] == "InvalidClientTokenId"
    assert _error(lambda: client("s3", stack.endpoint, stranger).list_buckets())[0] == "InvalidAccessKeyId"


@pytest.mark.parametrize(
    ("statement", "auth", "allowed"),
    [
        (
            {"Effect": "Allow", "Action": "s3:Get*", "Resource": "arn:aws:s3:::b/a?c"},
            ("s3:getobject", "arn:aws:s3:::b/abc"),
            True,
        ),
        (
            {"Effect": "Allow", "Action": "s3:Get*", "Resource": "arn:aws:s3:::b/a?c"},
            ("s3:GetObject", "arn:aws:s3:::b/abbc"),
            False,
        ),
        (
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::B/*"},
            ("s3:GetObject", "arn:aws:s3:::b/k"),
            False,
        ),
        (
            {"Effect": "Allow", "NotAction": "s3:Delete*", "Resource": "*"},
            ("s3:DeleteObject", "arn:aws:s3:::b/k"),
            False,
        ),
        ({"Effect": "Allow", "NotAction": "s3:Delete*", "Resource": "*"}, ("s3:PutObject", "arn:aws:s3:::b/k"), True),
        (
            {
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": "*",
                "Condition": {"StringLikeIfExists": {"s3:prefix": "a/*"}},
            },
            ("s3:ListBucket", "arn:aws:s3:::b"),
            True,
        ),
        (
            {
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": "*",
                "Condition": {"StringNotLike": {"s3:prefix": "a/*"}},
            },
            ("s3:ListBucket", "arn:aws:s3:::b"),
            True,
        ),
    ],
)
def test_evaluation_follows_iam_rules(statement, auth, allowed):
    assert evaluate([{"Statement": [statement]}], Authorization(*auth), {}).allowed is allowed


def test_an_explicit_deny_wins_and_an_unknown_operator_is_named():
    allow = {"Effect": "Allow", "Action": "*", "Resource": "*"}
    deny = {"Sid": "NoDeletes", "Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*"}
    decision = evaluate(
        [{"Statement": [allow]}, {"Statement": [deny]}], Authorization("s3:DeleteObject", "arn:aws:s3:::b/k"), {}
    )
    assert (decision.allowed, decision.statement, decision.explicit_deny) == (False, "NoDeletes", True)
    odd = {
        "Effect": "Allow",
        "Action": "*",
        "Resource": "*",
        "Condition": {"DateGreaterThan": {"aws:CurrentTime": "x"}},
    }
    with pytest.raises(UnsupportedPolicy, match="DateGreaterThan"):
        evaluate([{"Statement": [odd]}], Authorization("s3:GetObject", "arn:aws:s3:::b/k"), {"aws:CurrentTime": "y"})


def test_a_request_the_checker_cannot_read_is_refused_unless_root(stack):
    items = [{}]  # an item without an action: nothing to authorise
    unchecked = Config(parameter_validation=False, retries={"total_max_attempts": 1})
    ddb = boto3.client(
        "dynamodb",
        endpoint_url=stack.endpoint,
        region_name=REGION,
        config=unchecked,
        **stack.identities.mwaa.client_kwargs(),
    )
    code, message = _error(lambda: ddb.transact_write_items(TransactItems=items))
    assert code == "AccessDeniedException"
    assert "could not read this request" in message
    root = boto3.client(
        "dynamodb", endpoint_url=stack.endpoint, region_name=REGION, config=unchecked, **FAKE_CREDENTIALS
    )
    with pytest.raises(ClientError) as moto_answer:  # root's request reaches moto, which judges it
        root.transact_write_items(TransactItems=items)
    assert "could not read this request" not in str(moto_answer.value)
