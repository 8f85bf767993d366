"""No IAM wildcard in any Action or Resource outside an explicit, reasoned allow-list.

Every policy in infra/ is either an aws_iam_policy_document or one of the JSON
templates in infra/policies/ rendered with templatefile() (checked below), so
reading their statements sees every permission; inline JSON policies are scanned
as text as a second net.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.infra import hcl
from tools.iam_policies import POLICIES

# (file under infra/, statement sid) -> (wildcard values allowed there, why AWS leaves no choice)
ALLOWED = {
    ("policies/mwaa-execution.json.tftpl", "MwaaCeleryQueues"): (
        {"arn:${partition}:sqs:${region}:*:airflow-celery-*"},
        "AWS requirement: MWAA's Celery queues live in an AWS-owned account with an unknown id",
    ),
    ("policies/mwaa-execution.json.tftpl", "MwaaLogs"): (
        {"arn:${partition}:logs:${region}:${account}:log-group:airflow-${mwaa_environment_name}-*"},
        "MWAA creates one log group per component, named airflow-<environment>-<component>",
    ),
    ("policies/mwaa-execution.json.tftpl", "MwaaAccountPublicAccessBlock"): (
        {"*"},
        "s3:GetAccountPublicAccessBlock has no resource-level permissions",
    ),
    ("policies/mwaa-execution.json.tftpl", "MwaaDescribeLogGroups"): (
        {"*"},
        "logs:DescribeLogGroups has no resource-level permissions",
    ),
    ("policies/mwaa-execution.json.tftpl", "PutPipelineMetrics"): (
        {"*"},
        "cloudwatch:PutMetricData has no resource-level permissions; scoped by a cloudwatch:namespace condition",
    ),
    ("policies/glue-job.json.tftpl", "GlueJobMetrics"): (
        {"*"},
        "cloudwatch:PutMetricData has no resource-level permissions; scoped by a cloudwatch:namespace condition",
    ),
    ("policies/glue-job.json.tftpl", "VpcDescribe"): (
        {"*"},
        "EC2 Describe* actions have no resource-level permissions; Glue reads the connection's subnet, "
        "security group, route tables and endpoints with the job's role before placing its workers",
    ),
    ("policies/glue-job.json.tftpl", "VpcNetworkInterfaces"): (
        {"arn:${partition}:ec2:${region}:${account}:network-interface/*"},
        "Glue creates the workers' network interfaces at run time (ids unknown before); the statement "
        "also names the one subnet and security group they may be created in",
    ),
    ("policies/glue-job.json.tftpl", "VpcNetworkInterfaceCleanup"): (
        {"arn:${partition}:ec2:${region}:${account}:network-interface/*"},
        "Glue deletes the interfaces it created (ids unknown before); limited to the connection's subnet by ec2:Subnet",
    ),
    ("policies/glue-job.json.tftpl", "VpcNetworkInterfaceTags"): (
        {"arn:${partition}:ec2:${region}:${account}:network-interface/*"},
        "Glue tags the interfaces it created (ids unknown before); limited to its aws-glue-service-resource tag key",
    ),
    ("modules/kms_key/main.tf", "KeyAdministration"): (
        {"kms:*", "*"},
        "AWS's default key policy: the account root keeps the key manageable; in a key policy '*' is the key",
    ),
    ("modules/kms_key/main.tf", "${statement.value.sid}"): (
        {"*"},
        "in a key policy Resource '*' is the key itself; service statements are limited by conditions",
    ),
    ("modules/storage/main.tf", "DenyInsecureTransport"): (
        {"s3:*"},
        "a Deny: the wildcard widens what is refused (any S3 call without TLS)",
    ),
    ("modules/storage/main.tf", "DenyOutsideVpcEndpoint"): (
        {"s3:*"},
        "a Deny: the wildcard widens what is refused (any S3 call that does not come through the VPC endpoint)",
    ),
}

# Resources scoped to one named bucket (optionally a prefix) or to the streams of one
# named log group: the trailing '*' covers object keys / stream names created at run time.
_OBJECTS_OF_NAMED_BUCKET = re.compile(r"^\$\{[^*]+\}/[^*]*\*$|^\$\{[^*]+\}/\$\{[^*]+\}\*$")
_STREAMS_OF_NAMED_LOG_GROUP = re.compile(
    r"^\$\{local\.logs_arn\}:[^*]+:\*$|^arn:\$\{partition\}:logs:\$\{region\}:\$\{account\}:log-group:[^*]+:\*$"
)
_TEMPLATE_POLICY = re.compile(
    r'^\$\{templatefile\("\$\{path\.module\}/\.\./\.\./policies/([\w.-]+\.json\.tftpl)", local\.\w+\)\}$'
)
_POLICY_ATTRIBUTES = {"policy", "assume_role_policy", "inline_policy"}
_INLINE_POLICY_WILDCARD = re.compile(r'"?(?:Action|Resource|NotAction|NotResource)"?\s*[=:]\s*(\[[^\]]*\]|"[^"]*")')


def _statements(body: dict) -> list[dict]:
    found = list(body.get("statement", []))
    for dynamic in body.get("dynamic", []):
        if "statement" in dynamic:
            found.extend(dynamic["statement"].get("content", []))
    return found


_TEMPLATE_FIELDS = {
    "Action": "actions",
    "NotAction": "not_actions",
    "Resource": "resources",
    "NotResource": "not_resources",
}


def _template_statements(path: Path) -> dict:
    """A JSON policy template in the shape python-hcl2 gives an aws_iam_policy_document."""
    statements = []
    for statement in json.loads(path.read_text())["Statement"]:
        converted = {"sid": statement["Sid"]} if "Sid" in statement else {}
        for field, name in _TEMPLATE_FIELDS.items():
            if field in statement:
                value = statement[field]
                converted[name] = [value] if isinstance(value, str) else value
        statements.append(converted)
    return {"statement": statements}


def _policy_documents() -> list[tuple[str, str, dict]]:
    documents = []
    for path in hcl.tf_files():
        for name, body in hcl.blocks(hcl.load(path), "data", "aws_iam_policy_document").items():
            documents.append((path.relative_to(hcl.INFRA).as_posix(), name, body))
    for path in sorted(POLICIES.glob("*.json.tftpl")):
        documents.append((path.relative_to(hcl.INFRA).as_posix(), path.name, _template_statements(path)))
    return documents


def scoped_resource(value: str) -> bool:
    return bool(_OBJECTS_OF_NAMED_BUCKET.match(value) or _STREAMS_OF_NAMED_LOG_GROUP.match(value))


def wildcard_violations(documents: list[tuple[str, str, dict]]) -> tuple[list[str], set]:
    violations, used = [], set()
    for file, name, body in documents:
        for statement in _statements(body):
            sid = statement.get("sid", "<no sid>")
            allowed, _ = ALLOWED.get((file, sid), (set(), ""))
            for field in ("actions", "not_actions", "resources", "not_resources"):
                for value in statement.get(field, []):
                    if "*" not in value:
                        continue
                    if value in allowed:
                        used.add((file, sid))
                    elif not (field == "resources" and scoped_resource(value)):
                        violations.append(f"{file} {name} statement {sid}: {field} {value!r}")
    return violations, used


def inline_policy_violations(text: str, where: str) -> list[str]:
    return [f"{where}: {m.group(0)}" for m in _INLINE_POLICY_WILDCARD.finditer(text) if "*" in m.group(1)]


def test_every_statement_has_a_sid():
    missing = [(f, n) for f, n, body in _policy_documents() for s in _statements(body) if "sid" not in s]
    assert not missing, f"statements without sid (the allow-list is keyed by sid): {missing}"


def test_no_wildcards_outside_the_allow_list():
    violations, used = wildcard_violations(_policy_documents())
    assert not violations, "IAM wildcards outside the allow-list:\n" + "\n".join(violations)
    assert used == set(ALLOWED), f"allow-list entries no longer needed: {set(ALLOWED) - used}"


def test_every_policy_is_a_policy_document():
    def walk(node, path: Path, trail: str):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in _POLICY_ATTRIBUTES and isinstance(value, str):
                    yield path, f"{trail}.{key}", value
                yield from walk(value, path, f"{trail}.{key}")
        elif isinstance(node, list):
            for item in node:
                yield from walk(item, path, trail)

    offenders = []
    for path in hcl.tf_files():
        for where, attribute, value in walk(hcl.load(path).get("resource", []), path, ""):
            template = _TEMPLATE_POLICY.match(value)
            if template:
                assert (POLICIES / template.group(1)).is_file(), f"{where}: no template {template.group(1)}"
            elif not value.startswith("${data.aws_iam_policy_document."):
                offenders.append(f"{where.relative_to(hcl.INFRA)} {attribute} = {value[:80]}")
            offenders.extend(inline_policy_violations(value, str(where)))
    assert not offenders, "policies must come from aws_iam_policy_document or infra/policies:\n" + "\n".join(offenders)


def test_no_inline_json_policy_text_with_wildcards():
    offenders = []
    for path in hcl.tf_files():
        text = path.read_text()
        for chunk in re.findall(r"jsonencode\((.*?)\n\s*\}\)", text, flags=re.S) + re.findall(
            r"<<-?(\w+)\n(.*?)\n\s*\1", text, flags=re.S
        ):
            offenders.extend(inline_policy_violations(chunk if isinstance(chunk, str) else chunk[1], str(path)))
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ({"sid": "X", "actions": ["s3:Get*"], "resources": ["${var.bucket_arn}/data/*"]}, 1),
        ({"sid": "X", "actions": ["s3:GetObject"], "resources": ["*"]}, 1),
        ({"sid": "X", "actions": ["s3:GetObject"], "resources": ["arn:aws:s3:::*"]}, 1),
        ({"sid": "X", "actions": ["logs:PutLogEvents"], "resources": ["${local.logs_arn}:*"]}, 1),
        ({"sid": "X", "actions": ["s3:GetObject"], "resources": ["${var.bucket_arn}/data/*"]}, 0),
        ({"sid": "X", "actions": ["s3:GetObject"], "resources": ["${local.landing}/${var.landing_prefix}*"]}, 0),
    ],
)
def test_checker_catches_wildcards(statement, expected):
    violations, _ = wildcard_violations([("modules/x/main.tf", "doc", {"statement": [statement]})])
    assert len(violations) == expected


def test_inline_checker_catches_wildcards():
    bad = 'jsonencode({ Statement = [{ Effect = "Allow", Action = ["s3:*"], Resource = "arn:aws:s3:::b" }] })'
    assert inline_policy_violations(bad, "x.tf")
    assert not inline_policy_violations('{"Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::b/k"}', "x.tf")
